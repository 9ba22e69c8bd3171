//! The supervisor: owns the snapshot and the long-lived registries (backends, health checks,
//! listeners), binds the listeners and the admin server, and runs every change one at a time:
//! SIGHUP reloads, admin API commands, and the shutdown sequence (SIGTERM/SIGINT).

mod commands;
mod listeners;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use net_core::health::{HealthChecks, OnChange};
use net_core::lifecycle::{self, CancellationToken, TaskTracker};
use net_core::metric_names;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::admin::{self, AdminContext, Command};
use crate::api_state::ApiState;
use crate::config::{self, Config, ConfigDiff, ConfigErrors};
use crate::logging::LogHandle;
use crate::systemd;
use crate::upgrade::{self, Takeover};
pub use listeners::Inherited;
use listeners::ListenerRegistry;
pub use snapshot::Snapshot;
use snapshot::{BackendRegistry, SnapshotSource};

/// Admin API commands waiting for the supervisor.
const COMMAND_QUEUE: usize = 64;
/// Upgrade requests waiting for the supervisor (one exchange runs at a time).
const UPGRADE_QUEUE: usize = 4;

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

    /// The config file, as an absolute path (none for the embedded demo).
    pub fn file_path(&self) -> Option<PathBuf> {
        match self {
            ConfigOrigin::File(path) => std::path::absolute(path).ok(),
            ConfigOrigin::Embedded(_) => None,
        }
    }
}

/// Why a reload or an API change was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The file does not validate: every error.
    Invalid(ConfigErrors),
    /// It validated but could not be put in place (a listener cannot bind...).
    Failed(anyhow::Error),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Invalid(errors) => write!(f, "{errors}"),
            ApplyError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

struct Supervisor {
    origin: ConfigOrigin,
    /// The validated file config, before the API's changes.
    file: Arc<Config>,
    /// The admin API's changes, applied on top of `file`.
    api: ApiState,
    /// The effective config's snapshot, read by every connection.
    snapshot: Arc<ArcSwap<Snapshot>>,
    backends: BackendRegistry,
    health: HealthChecks,
    listeners: ListenerRegistry,
    log: LogHandle,
    ready: Arc<AtomicBool>,
}

/// Runs until SIGTERM/SIGINT (or until a new process took the sockets over), then drains.
/// Errors only when the start fails. `inherited`: sockets from systemd socket activation or
/// from the previous process (`takeover`, a binary upgrade), adopted by address or owner.
pub async fn run(
    origin: ConfigOrigin,
    file: Config,
    inherited: Vec<Inherited>,
    mut takeover: Option<Takeover>,
    log: LogHandle,
    prometheus: PrometheusHandle,
    demo: bool,
) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let file = Arc::new(file);
    let mut api = ApiState::load(file.runtime.state_dir.as_deref())?;
    // The file may have changed a cluster while Portico was down: the file wins, and the
    // override goes, so it cannot come back if the file later returns to the old list.
    let before = api.clone();
    api.prune(&file);
    if api != before {
        if let Some(dir) = &file.runtime.state_dir {
            api.save(dir)?;
        }
    }
    let (effective, notes) = api.apply(&file);
    for note in notes {
        tracing::warn!("{note}");
    }
    let effective = Arc::new(effective);

    let mut backends = BackendRegistry::default();
    // No check has run yet: every backend starts in its pool's initial state.
    let (first, subscriptions) = backends.build(Arc::clone(&effective), |_| None);
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

    // Everything is bound before anything accepts: a start that fails half-way (in an upgrade,
    // with the previous process still serving) never accepted a connection it would drop.
    listeners.adopt(inherited);
    let handed = listeners.unclaimed_listeners();
    let prepared = listeners.prepare(&effective)?;
    if let Some(t) = &takeover {
        if handed > 0
            && listeners.unclaimed_listeners() == handed
            && !effective.listeners.is_empty()
        {
            anyhow::bail!(
                "none of the {handed} listeners of the process on the upgrade socket (pid {}) is a listener of this config: is it another instance? Nothing was changed",
                t.old_pid
            );
        }
    }
    // The admin address is read at start only (a change needs a restart).
    let admin_bind = effective.admin.listen;
    let admin_socket = listeners::bind_admin(
        admin_bind,
        listeners.take_inherited(effective.admin.listen, "admin.listen"),
    )?;
    let upgrade_endpoint =
        upgrade_endpoint(&effective, takeover.as_mut(), demo, origin.file_path())?;
    listeners.close_unclaimed();
    listeners.apply(&effective, prepared).await?;

    let ready = Arc::new(AtomicBool::new(false));
    let (commands_tx, mut commands) = mpsc::channel(COMMAND_QUEUE);
    let admin_stop = CancellationToken::new();
    let admin_listener = tokio::net::TcpListener::from_std(
        admin_socket
            .try_clone()
            .context("duplicating the admin socket")?,
    )?;
    tracing::info!(addr = %admin_listener.local_addr()?, "admin server listening");
    let ctx = Arc::new(AdminContext {
        commands: commands_tx,
        snapshot: Arc::clone(&snapshot),
        prometheus,
        ready: Arc::clone(&ready),
    });
    tokio::spawn(admin::serve(admin_listener, ctx, admin_stop.clone()));
    let upgrade_stop = CancellationToken::new();
    let (upgrade_tx, mut upgrades) = mpsc::channel(UPGRADE_QUEUE);
    if let Some(endpoint) = &upgrade_endpoint {
        tokio::spawn(upgrade::serve(
            Arc::clone(endpoint),
            upgrade_tx,
            upgrade_stop.clone(),
        ));
    }

    let mut sup = Supervisor {
        origin,
        file,
        api,
        snapshot,
        backends,
        health,
        listeners,
        log,
        ready: Arc::clone(&ready),
    };
    ready.store(true, Ordering::Relaxed);
    let status = sup.status_line();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "portico ready: {status}"
    );
    if let Some(t) = takeover {
        if let Err(err) = complete_takeover(t, upgrade_endpoint.is_some()).await {
            // The previous process never heard that this one serves: it still does, alone
            // from here on.
            upgrade_stop.cancel();
            sup.shutdown(&tracker, &mut commands).await;
            admin_stop.cancel();
            return Err(err);
        }
    }
    if demo {
        crate::demo::print_instructions(&effective);
    }
    systemd::ready(&status);
    systemd::spawn_watchdog();

    let mut handed_over = None;
    loop {
        tokio::select! {
            _ = hangup.recv() => { let _ = sup.reload().await; }
            Some(command) = commands.recv() => sup.handle(command).await,
            Some(request) = upgrades.recv() => match request {
                upgrade::Request::Sockets(reply) => {
                    let _ = reply.send(sup.handover(admin_bind, &admin_socket));
                }
                upgrade::Request::Drain { kept_upgrade_socket } => {
                    handed_over = Some(kept_upgrade_socket);
                    break;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    upgrade_stop.cancel();
    if handed_over.is_none() {
        sup.delay_shutdown(&mut commands, &mut terminate, &mut interrupt)
            .await;
    }
    if handed_over.is_some() {
        // The new process answers the admin API (and /readyz) from now on.
        admin_stop.cancel();
        drop(admin_socket);
        tracing::info!("a new Portico took over the listening sockets");
    }
    sup.shutdown(&tracker, &mut commands).await;
    admin_stop.cancel();
    if let Some(endpoint) = upgrade_endpoint {
        if handed_over != Some(true) {
            endpoint.remove_file();
        }
    }
    Ok(())
}

/// The upgrade socket to serve: the one handed over by the previous process when it is at the
/// configured path, else a new one (none for the demo unless configured).
fn upgrade_endpoint(
    config: &Config,
    takeover: Option<&mut Takeover>,
    demo: bool,
    config_path: Option<PathBuf>,
) -> anyhow::Result<Option<Arc<upgrade::Endpoint>>> {
    let Some((path, explicit)) =
        upgrade::socket_path(config.runtime.upgrade_socket.as_deref(), demo)
    else {
        return Ok(None);
    };
    let handed = takeover.and_then(|t| t.upgrade_socket.take());
    let endpoint = match handed {
        Some((old_path, listener)) if old_path == path => {
            Some(upgrade::Endpoint::adopt(&path, listener)?)
        }
        _ => upgrade::Endpoint::bind(&path, explicit)?,
    };
    Ok(endpoint.map(|mut e| {
        e.set_config(config_path);
        Arc::new(e)
    }))
}

/// Tells the previous process that this one serves, and waits for it to confirm it drains.
/// An error means it never heard it.
async fn complete_takeover(
    mut takeover: Takeover,
    kept_upgrade_socket: bool,
) -> anyhow::Result<()> {
    let old_pid = takeover.old_pid;
    let confirmed = tokio::task::spawn_blocking(move || {
        takeover.ready(kept_upgrade_socket)?;
        anyhow::Ok(takeover.confirmed())
    })
    .await
    .context("the upgrade task failed")??;
    match confirmed {
        Ok(()) => tracing::info!(
            old_pid,
            "upgrade complete: the previous process stops accepting and drains its connections"
        ),
        Err(err) => tracing::warn!(old_pid, "serving, but {err:#}; check that process"),
    }
    Ok(())
}

impl Supervisor {
    /// Reloads the config file (SIGHUP or `POST /api/v1/reload`). A file that does not
    /// validate, or a listener that cannot bind, changes nothing: every error is logged and
    /// the old snapshot keeps serving. The log line of an applied reload says how long it took,
    /// from reading the file to the last listener change (`took_ms`).
    async fn reload(&mut self) -> Result<ConfigDiff, ApplyError> {
        systemd::reloading();
        let start = std::time::Instant::now();
        let result = self.load_and_apply().await;
        let took_ms = start.elapsed().as_millis() as u64;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(metric_names::CONFIG_RELOADS_TOTAL, "result" => outcome).increment(1);
        match &result {
            Ok(diff) => {
                tracing::info!(changes = %diff, took_ms, "reload applied");
                systemd::ready(&self.status_line());
            }
            Err(err) => {
                tracing::error!("reload failed, keeping the running config: {err}");
                systemd::ready(&format!(
                    "reload failed, still serving the previous config: {err}; {}",
                    self.status_line()
                ));
            }
        }
        result
    }

    async fn load_and_apply(&mut self) -> Result<ConfigDiff, ApplyError> {
        // Reading, parsing and validating a 10,000-route file takes tens of milliseconds of
        // CPU: on the runtime thread (the only one with `worker_threads = 1`) every connection
        // would wait for it. A blocking-pool thread does it while traffic flows.
        let origin = match &self.origin {
            ConfigOrigin::File(path) => ConfigOrigin::File(path.clone()),
            ConfigOrigin::Embedded(text) => ConfigOrigin::Embedded(text),
        };
        let file = tokio::task::spawn_blocking(move || origin.load())
            .await
            .context("loading the config")
            .map_err(ApplyError::Failed)?
            .map_err(ApplyError::Invalid)?;
        let mut api = self.api.clone();
        api.prune(&file);
        if api != self.api {
            self.persist(&api, &file).map_err(ApplyError::Failed)?;
        }
        self.apply(Arc::new(file), api)
            .await
            .map_err(ApplyError::Failed)
    }

    /// Puts `file` with `api` on top in place: listeners first bound (so a bind error changes
    /// nothing), then the snapshot published in one store, then health checks and listeners
    /// reconciled.
    ///
    /// The pure work (the effective config, the diff, the snapshot with its 10,000 route
    /// targets, freeing the old ones) runs on blocking-pool threads; the runtime thread only
    /// binds, reads health verdicts and publishes, so traffic keeps flowing meanwhile. The
    /// supervisor awaits all of it: one change at a time still holds.
    async fn apply(&mut self, file: Arc<Config>, api: ApiState) -> anyhow::Result<ConfigDiff> {
        let start = std::time::Instant::now();
        let running = self.snapshot.load_full();
        let (effective, notes, diff, diff_took) = {
            let (file, api, old) = (Arc::clone(&file), api.clone(), Arc::clone(&running.config));
            tokio::task::spawn_blocking(move || {
                let (effective, notes) = api.apply(&file);
                let diff_start = std::time::Instant::now();
                let diff = config::diff(&old, &effective);
                (Arc::new(effective), notes, diff, diff_start.elapsed())
            })
            .await
            .context("computing the effective config")?
        };
        for note in notes {
            tracing::warn!("{note}");
        }
        let computed = start.elapsed();
        let prepared = self.listeners.prepare(&effective)?;
        let verdicts = snapshot::Verdicts::collect(&effective, |k| self.health.verdict(k));
        let prepared_at = start.elapsed();
        let built = {
            let registry = self.backends.clone();
            let (effective, running) = (Arc::clone(&effective), Arc::clone(&running));
            tokio::task::spawn_blocking(move || registry.build_next(effective, &running, &verdicts))
                .await
                .context("building the snapshot")?
        };
        let built_at = start.elapsed();
        let snapshot = Arc::new(built.snapshot);
        let previous = self.snapshot.swap(Arc::clone(&snapshot));
        self.backends = built.registry;
        self.health.reconcile(built.subscriptions);
        // A health result that arrived while the snapshot was being built refreshed the old
        // snapshot's pools, not these.
        snapshot.refresh_stale_pools();
        let health_at = start.elapsed();
        self.listeners.apply(&effective, prepared).await?;
        self.log.apply(&effective.log);
        for key in &diff.needs_restart {
            tracing::warn!(
                key,
                "this setting changed but only takes effect after a restart"
            );
        }
        let old_file = std::mem::replace(&mut self.file, file);
        self.api = api;
        let published_at = start.elapsed();
        // The old config and snapshot are freed off the runtime thread too (a connection that
        // still holds a part of them frees that part when it ends).
        drop(tokio::task::spawn_blocking(move || {
            drop((previous, running, old_file))
        }));
        let us = |d: std::time::Duration| d.as_micros() as u64;
        tracing::debug!(
            effective_us = us(computed - diff_took),
            diff_us = us(diff_took),
            prepare_us = us(prepared_at - computed),
            build_us = us(built_at - prepared_at),
            health_us = us(health_at - built_at),
            listeners_us = us(published_at - health_at),
            "config applied"
        );
        Ok(diff)
    }

    /// Writes API state to `runtime.state_dir` (when set) before anything uses it.
    fn persist(&self, api: &ApiState, file: &Config) -> anyhow::Result<bool> {
        match &file.runtime.state_dir {
            Some(dir) => {
                api.save(dir)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The first step of a shutdown: /readyz answers 503 while the listeners keep accepting
    /// for `runtime.shutdown_delay`, so that health checkers take this instance out before it
    /// refuses anything. Another SIGTERM/SIGINT ends it early; API commands are refused.
    async fn delay_shutdown(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        terminate: &mut tokio::signal::unix::Signal,
        interrupt: &mut tokio::signal::unix::Signal,
    ) {
        if self.ready.swap(false, Ordering::Relaxed) {
            systemd::stopping();
        }
        let delay = self.snapshot.load().config.runtime.shutdown_delay;
        if delay.is_zero() {
            return;
        }
        tracing::info!(delay = ?delay, "shutting down: /readyz answers 503, still accepting until the delay is over");
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                Some(command) = commands.recv() => commands::refuse(command),
            }
        }
        tracing::info!("second signal: ending the shutdown delay early");
    }

    /// Stops accepting, answers /readyz with 503, drains open connections up to the grace
    /// period. API commands that arrive meanwhile are refused.
    async fn shutdown(&mut self, tracker: &TaskTracker, commands: &mut mpsc::Receiver<Command>) {
        if self.ready.swap(false, Ordering::Relaxed) {
            systemd::stopping();
        }
        self.health.stop_all();
        let grace = self.snapshot.load().config.runtime.shutdown_grace;
        self.listeners.stop_all().await;
        tracing::info!(open_connections = tracker.len(), grace = ?grace, "shutting down: stopped accepting, draining");
        let drained = lifecycle::drain(tracker, grace);
        tokio::pin!(drained);
        let finished = loop {
            tokio::select! {
                finished = &mut drained => break finished,
                Some(command) = commands.recv() => commands::refuse(command),
            }
        };
        if finished {
            tracing::info!("all connections finished; exiting");
        } else {
            tracing::warn!(
                cut = tracker.len(),
                "shutdown grace expired; closing the remaining connections"
            );
        }
    }

    /// Duplicates of every listening socket (traffic and admin), for a binary upgrade.
    fn handover(
        &self,
        admin_bind: std::net::SocketAddr,
        admin_socket: &std::net::TcpListener,
    ) -> anyhow::Result<Vec<upgrade::Handed>> {
        let mut sockets = self.listeners.handover()?;
        sockets.push((
            "admin.listen".to_owned(),
            admin_bind,
            admin_socket.local_addr()?,
            admin_socket
                .try_clone()
                .context("admin.listen: duplicating its socket")?,
        ));
        Ok(sockets
            .into_iter()
            .map(|(owner, bind, local, socket)| upgrade::Handed {
                info: upgrade::SocketInfo {
                    owner,
                    bind: Some(bind),
                    local: Some(local),
                    path: None,
                },
                fd: socket.into(),
            })
            .collect())
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
