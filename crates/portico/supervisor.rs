//! The supervisor: owns the snapshot and the registries, binds listeners, and runs the reload
//! (SIGHUP) and shutdown (SIGTERM/SIGINT) sequences.

mod listeners;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use net_core::health::{HealthChecks, OnChange};
use net_core::lifecycle::{self, TaskTracker};
use net_core::metric_names;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{self, Config, ConfigErrors};
use crate::logging::LogHandle;
use crate::systemd;
use listeners::ListenerRegistry;
use snapshot::{BackendRegistry, Snapshot, SnapshotSource};

/// Where the config comes from, for the first load and every reload.
pub enum ConfigOrigin {
    File(PathBuf),
    Embedded(&'static str),
}

impl ConfigOrigin {
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            ConfigOrigin::File(path) => config::load_file(path),
            ConfigOrigin::Embedded(text) => config::load_str(text, "the embedded demo config"),
        }
    }
}

struct Supervisor {
    origin: ConfigOrigin,
    snapshot: Arc<ArcSwap<Snapshot>>,
    backends: BackendRegistry,
    health: HealthChecks,
    listeners: ListenerRegistry,
    log: LogHandle,
}

/// Runs until SIGTERM/SIGINT, then drains. Errors only when the first start fails.
pub async fn run(
    origin: ConfigOrigin,
    config: Config,
    log: LogHandle,
    demo: bool,
) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let config = Arc::new(config);
    let mut backends = BackendRegistry::default();
    // No check has run yet: every backend starts in its pool's initial state.
    let (first, subscriptions) = backends.build(Arc::clone(&config), |_| None);
    let snapshot = Arc::new(ArcSwap::from_pointee(first));
    // Health-check results rebuild the tables of the pools they touch, in whatever snapshot
    // is current when they arrive.
    let on_change: OnChange = {
        let snapshot = Arc::clone(&snapshot);
        Arc::new(move |pools: &[Arc<str>]| snapshot.load().refresh_pools(pools))
    };
    let mut health = HealthChecks::new(on_change);
    health.reconcile(subscriptions);
    let tracker = TaskTracker::new();
    let source = Arc::new(SnapshotSource(Arc::clone(&snapshot)));
    let mut listeners = ListenerRegistry::new(source, tracker.clone());
    let prepared = listeners.prepare(&config)?;
    listeners.apply(&config, prepared).await?;

    let mut sup = Supervisor {
        origin,
        snapshot,
        backends,
        health,
        listeners,
        log,
    };
    let status = sup.status_line();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "portico ready: {status}"
    );
    if demo {
        crate::demo::print_instructions(&config);
    }
    systemd::ready(&status);
    systemd::spawn_watchdog();

    loop {
        tokio::select! {
            _ = hangup.recv() => sup.reload().await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    systemd::stopping();
    sup.health.stop_all();
    let grace = sup.snapshot.load().config.runtime.shutdown_grace;
    sup.listeners.stop_all().await;
    let open = tracker.len();
    tracing::info!(open_connections = open, grace = ?grace, "shutting down: stopped accepting, draining");
    if lifecycle::drain(&tracker, grace).await {
        tracing::info!("all connections finished; exiting");
    } else {
        tracing::warn!(
            cut = tracker.len(),
            "shutdown grace expired; closing the remaining connections"
        );
    }
    Ok(())
}

impl Supervisor {
    /// Reloads the config. A config that does not validate, or a listener that cannot bind,
    /// changes nothing: every error is logged and the old snapshot keeps serving.
    async fn reload(&mut self) {
        systemd::reloading();
        let result = self.try_reload().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(metric_names::CONFIG_RELOADS_TOTAL, "result" => outcome).increment(1);
        match result {
            Ok(diff) => tracing::info!(changes = %diff, "reload applied"),
            Err(err) => tracing::error!("reload failed, keeping the running config: {err:#}"),
        }
        systemd::ready(&self.status_line());
    }

    async fn try_reload(&mut self) -> anyhow::Result<config::ConfigDiff> {
        let new = Arc::new(self.origin.load()?);
        let old = Arc::clone(&self.snapshot.load().config);
        let diff = config::diff(&old, &new);
        let prepared = self.listeners.prepare(&new)?;
        let health = &self.health;
        let (snapshot, subscriptions) =
            self.backends.build(Arc::clone(&new), |k| health.verdict(k));
        self.snapshot.store(Arc::new(snapshot));
        self.health.reconcile(subscriptions);
        self.listeners.apply(&new, prepared).await?;
        self.log.apply(&new.log);
        for key in &diff.needs_restart {
            tracing::warn!(
                key,
                "this setting changed but only takes effect after a restart"
            );
        }
        Ok(diff)
    }

    fn status_line(&self) -> String {
        let snap = self.snapshot.load();
        let (mut up, mut total) = (0, 0);
        for pool in snap.pools.values() {
            for b in pool.backends() {
                total += 1;
                up += usize::from(b.is_available());
            }
        }
        format!(
            "serving {} listeners, {up}/{total} backends up",
            self.listeners.len()
        )
    }
}
