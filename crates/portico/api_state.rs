//! Changes made through the admin API: node lists and drains. They are persisted in
//! `runtime.state_dir` (written to a temporary file, fsynced, renamed) before the API answers,
//! and applied on top of the file config at start and on every reload.
//!
//! How file and API combine:
//! - A node list set by the API wins over the file's list for that cluster **until the file
//!   changes that cluster**: the override remembers the file's list it replaced, and is
//!   dropped (with a log line) once the file says something else.
//! - A drain or enable from the API wins over the file's `drain` flag for that node or backend.
//!   It stays until the API says otherwise, even across reloads and restarts.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, Config, NodeConfig, PoolSource, cluster_members};

/// File name of the persisted state inside `runtime.state_dir`.
pub const STATE_FILE: &str = "api-state.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiState {
    /// Node lists set through the API, by cluster.
    #[serde(default)]
    pub clusters: BTreeMap<String, NodesOverride>,
    /// Drain (true) or enable (false) of nodes, by cluster and node address.
    #[serde(default)]
    pub node_drains: BTreeMap<String, BTreeMap<IpAddr, bool>>,
    /// Drain (true) or enable (false) of backends, by pool and backend address.
    #[serde(default)]
    pub backend_drains: BTreeMap<String, BTreeMap<SocketAddr, bool>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesOverride {
    pub nodes: Vec<NodeRecord>,
    /// The file's node list when the override was made.
    pub replaced: Vec<NodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub address: IpAddr,
    pub weight: u32,
    pub drain: bool,
}

impl NodeRecord {
    fn list(cluster: &ClusterConfig) -> Vec<NodeRecord> {
        cluster
            .nodes
            .iter()
            .map(|n| NodeRecord {
                address: n.ip,
                weight: n.weight,
                drain: n.drain,
            })
            .collect()
    }

    fn node(&self) -> NodeConfig {
        NodeConfig {
            ip: self.address,
            weight: self.weight,
            drain: self.drain,
        }
    }
}

impl ApiState {
    /// Loads the persisted state, or an empty one when there is none yet. A file that exists
    /// but cannot be read is an error: starting without it would silently undo API changes.
    pub fn load(state_dir: Option<&Path>) -> anyhow::Result<ApiState> {
        let Some(dir) = state_dir else {
            return Ok(ApiState::default());
        };
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid Portico API state", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ApiState::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the state atomically: a crash leaves the old file or the new one, never a mix.
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let path = state_dir.join(STATE_FILE);
        let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).context("encoding API state")?;
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        // The rename itself must reach the disk too.
        std::fs::File::open(state_dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", state_dir.display()))?;
        Ok(path)
    }

    /// Records a node list for `cluster` that replaces the file's current list.
    pub fn set_nodes(&mut self, file: &Config, cluster: &str, nodes: &ClusterConfig) {
        let replaced = file
            .clusters
            .get(cluster)
            .map(NodeRecord::list)
            .unwrap_or_default();
        self.clusters.insert(
            cluster.to_owned(),
            NodesOverride {
                nodes: NodeRecord::list(nodes),
                replaced,
            },
        );
    }

    /// The file config with the API's changes on top, and a note for every override that no
    /// longer applies (the file changed that cluster since).
    pub fn apply(&self, file: &Config) -> (Config, Vec<String>) {
        let mut config = file.clone();
        let mut notes = Vec::new();
        for (name, over) in &self.clusters {
            let Some(cluster) = config.clusters.get_mut(name) else {
                notes.push(format!(
                    "cluster {name} is gone from the file; its API node list no longer applies"
                ));
                continue;
            };
            if NodeRecord::list(cluster) != over.replaced {
                notes.push(format!(
                    "the file changed cluster {name}; its node list now comes from the file"
                ));
                continue;
            }
            cluster.nodes = over.nodes.iter().map(NodeRecord::node).collect();
        }
        for (name, drains) in &self.node_drains {
            if let Some(cluster) = config.clusters.get_mut(name) {
                for node in &mut cluster.nodes {
                    if let Some(&drain) = drains.get(&node.ip) {
                        node.drain = drain;
                    }
                }
            }
        }
        for pool in config.pools.values_mut() {
            if let PoolSource::Cluster { name, node_port } = &pool.source {
                if let Some(cluster) = config.clusters.get(name) {
                    pool.members = cluster_members(cluster, *node_port);
                }
            }
        }
        for (name, drains) in &self.backend_drains {
            if let Some(pool) = config.pools.get_mut(name) {
                for m in &mut pool.members {
                    if let Some(&drain) = drains.get(&m.addr) {
                        m.drain = drain;
                    }
                }
            }
        }
        (config, notes)
    }

    /// Forgets overrides the file made obsolete, so they do not come back if the file later
    /// returns to the old list.
    pub fn prune(&mut self, file: &Config) {
        self.clusters.retain(|name, over| {
            file.clusters
                .get(name)
                .is_some_and(|c| NodeRecord::list(c) == over.replaced)
        });
    }
}

#[cfg(test)]
mod tests;
