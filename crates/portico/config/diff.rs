//! What a reload changes, computed from two validated configs. The supervisor acts on it
//! (which listeners to bind, keep, or stop) and logs it as one line.

use std::collections::BTreeMap;
use std::fmt;

use super::Config;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub listeners_added: Vec<String>,
    pub listeners_removed: Vec<String>,
    /// Same name, different settings (a new bind address among them: see `listeners_rebound`).
    pub listeners_changed: Vec<String>,
    /// Same name, new bind address or protocol: a new socket is bound, the old one drains.
    pub listeners_rebound: Vec<String>,
    pub pools_added: Vec<String>,
    pub pools_removed: Vec<String>,
    pub pools_changed: Vec<String>,
    pub clusters_added: Vec<String>,
    pub clusters_removed: Vec<String>,
    pub clusters_changed: Vec<String>,
    /// Settings a reload cannot apply (they need a restart), by key.
    pub needs_restart: Vec<&'static str>,
    /// Other sections that changed and are applied (log, admin, runtime.shutdown_grace).
    pub other_changed: Vec<&'static str>,
}

pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    compare(
        &old.listeners,
        &new.listeners,
        &mut d.listeners_added,
        &mut d.listeners_removed,
        &mut d.listeners_changed,
    );
    d.listeners_rebound = d
        .listeners_changed
        .iter()
        .filter(|n| {
            let (a, b) = (&old.listeners[*n], &new.listeners[*n]);
            a.bind != b.bind || a.protocol != b.protocol
        })
        .cloned()
        .collect();
    compare(
        &old.pools,
        &new.pools,
        &mut d.pools_added,
        &mut d.pools_removed,
        &mut d.pools_changed,
    );
    compare(
        &old.clusters,
        &new.clusters,
        &mut d.clusters_added,
        &mut d.clusters_removed,
        &mut d.clusters_changed,
    );
    if old.runtime.worker_threads != new.runtime.worker_threads {
        d.needs_restart.push("runtime.worker_threads");
    }
    if old.admin != new.admin {
        d.other_changed.push("admin");
    }
    if old.log != new.log {
        d.other_changed.push("log");
    }
    if old.runtime.shutdown_grace != new.runtime.shutdown_grace
        || old.runtime.shutdown_delay != new.runtime.shutdown_delay
        || old.runtime.state_dir != new.runtime.state_dir
        || old.runtime.upgrade_socket != new.runtime.upgrade_socket
    {
        d.other_changed.push("runtime");
    }
    d
}

fn compare<T: PartialEq>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    added: &mut Vec<String>,
    removed: &mut Vec<String>,
    changed: &mut Vec<String>,
) {
    for (name, value) in new {
        match old.get(name) {
            None => added.push(name.clone()),
            Some(o) if o != value => changed.push(name.clone()),
            Some(_) => {}
        }
    }
    removed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

/// One line: `listeners +web -old ~db; pools ~api; clusters ~prod; log` or `no changes`.
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut parts = Vec::new();
        for (label, added, removed, changed) in [
            (
                "listeners",
                &self.listeners_added,
                &self.listeners_removed,
                &self.listeners_changed,
            ),
            (
                "pools",
                &self.pools_added,
                &self.pools_removed,
                &self.pools_changed,
            ),
            (
                "clusters",
                &self.clusters_added,
                &self.clusters_removed,
                &self.clusters_changed,
            ),
        ] {
            let items: Vec<String> = added
                .iter()
                .map(|n| format!("+{n}"))
                .chain(removed.iter().map(|n| format!("-{n}")))
                .chain(changed.iter().map(|n| format!("~{n}")))
                .collect();
            if !items.is_empty() {
                parts.push(format!("{label} {}", items.join(" ")));
            }
        }
        parts.extend(self.other_changed.iter().map(|s| s.to_string()));
        if !self.needs_restart.is_empty() {
            parts.push(format!("needs restart: {}", self.needs_restart.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}
