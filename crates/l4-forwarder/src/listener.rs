//! The accept loop of one TCP listener and the listener's long-lived shared state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge};
use net_core::lifecycle::{Acceptor, CancellationToken, ConnectionLimit, TaskTracker};
use net_core::{clock, metric_names};
use tokio::net::TcpListener;

use crate::ConfigSource;
use crate::connection;

/// At most one "connection limit reached" warning per listener per this interval.
const REJECT_LOG_INTERVAL_MS: u64 = 1_000;

/// What outlives snapshots for one listener: its name, connection limit and metric handles.
/// The daemon keeps it in its listener registry and reuses it across reloads.
#[derive(Debug)]
pub struct ListenerShared {
    name: Arc<str>,
    limit: Arc<ConnectionLimit>,
    pub(crate) metrics: ListenerMetrics,
    last_reject_log_ms: AtomicU64,
    rejects_since_log: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct ListenerMetrics {
    pub connections_total: Counter,
    pub connections_active: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub rejected: Counter,
}

impl ListenerShared {
    pub fn new(name: &str, max_connections: usize) -> Arc<Self> {
        let label = [("listener", name.to_owned())];
        let bytes = |direction: &'static str| {
            metrics::counter!(
                metric_names::BYTES_TOTAL,
                "listener" => name.to_owned(),
                "direction" => direction
            )
        };
        Arc::new(Self {
            name: Arc::from(name),
            limit: ConnectionLimit::new(max_connections),
            metrics: ListenerMetrics {
                connections_total: metrics::counter!(metric_names::CONNECTIONS_TOTAL, &label),
                connections_active: metrics::gauge!(metric_names::CONNECTIONS_ACTIVE, &label),
                bytes_in: bytes("in"),
                bytes_out: bytes("out"),
                rejected: metrics::counter!(metric_names::CONNECTIONS_REJECTED_TOTAL, &label),
            },
            last_reject_log_ms: AtomicU64::new(0),
            rejects_since_log: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections open right now.
    pub fn active_connections(&self) -> usize {
        self.limit.active()
    }

    pub fn max_connections(&self) -> usize {
        self.limit.max()
    }

    /// Applies a reloaded `max_connections`; open connections above it are left to finish.
    pub fn set_max_connections(&self, max: usize) {
        self.limit.set_max(max);
    }

    fn note_rejected(&self) {
        self.metrics.rejected.increment(1);
        let pending = self.rejects_since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let now = clock::now_millis();
        let last = self.last_reject_log_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= REJECT_LOG_INTERVAL_MS)
            && self
                .last_reject_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.rejects_since_log.fetch_sub(pending, Ordering::Relaxed);
            tracing::warn!(
                listener = %self.name,
                max_connections = self.limit.max(),
                rejected = pending,
                "connection limit reached; closing new connections at once"
            );
        }
    }
}

/// Accepts connections on `listener` until `stop` is cancelled, spawning one task per
/// connection on `tracker`. Accept errors back off and never end the loop.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    source: Arc<dyn ConfigSource>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    let mut acceptor = Acceptor::new(&listener, &stop, &shared.name);
    while let Some((stream, peer)) = acceptor.next().await {
        shared.metrics.connections_total.increment(1);
        let Some(permit) = shared.limit.try_acquire() else {
            shared.note_rejected();
            drop(stream);
            continue;
        };
        let Some(config) = source.tcp_listener(&shared.name) else {
            // The listener is being removed by a reload; its stop signal follows shortly.
            continue;
        };
        let local = match local {
            Some(addr) => addr,
            None => match stream.local_addr() {
                Ok(addr) => addr,
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        tracker.spawn(async move {
            let _permit = permit;
            connection::handle(stream, peer, local, config, &shared).await;
        });
    }
    tracing::debug!(listener = %shared.name, "stopped accepting");
}
