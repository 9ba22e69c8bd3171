//! A backend (one address a pool can send to) and its live state: health, weight, drain and
//! active connections. Backends are long-lived: the daemon keeps them across reloads so a
//! backend that stays keeps its state, and balancers read that state without locks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use metrics::{Counter, Gauge, Histogram};

use crate::clock;
use crate::metric_names;

/// Identity of a backend inside the daemon's registries: the pool and the address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    pub pool: Arc<str>,
    pub addr: SocketAddr,
}

/// One backend of one pool and its live state.
#[derive(Debug)]
pub struct Backend {
    key: BackendKey,
    /// The cluster node this backend is a NodePort of, when the pool comes from a cluster.
    node: Option<IpAddr>,
    /// Weight from the config (or the API); reloads update it in place.
    configured_weight: AtomicU32,
    /// Weight learned from health checks (kube-proxy's local endpoint count); `u32::MAX` = none.
    learned_weight: AtomicU32,
    /// Active health verdict.
    up: AtomicBool,
    /// Drained by config or operator: no new connections, open ones finish.
    drained: AtomicBool,
    /// Connections (or requests) currently using this backend.
    active: AtomicUsize,
    /// Consecutive connect failures (passive health).
    consecutive_failures: AtomicU32,
    /// Passive ejection: not picked before this instant (`clock::now_millis`); 0 = not ejected.
    ejected_until_ms: AtomicU64,
    connect_errors: Counter,
    connect_duration: Histogram,
    active_gauge: Gauge,
    up_gauge: Gauge,
}

const NO_LEARNED_WEIGHT: u32 = u32::MAX;

impl Backend {
    pub fn new(key: BackendKey, node: Option<IpAddr>, weight: u32) -> Self {
        let labels = [
            ("pool", key.pool.to_string()),
            ("backend", key.addr.to_string()),
        ];
        let connect_errors = metrics::counter!(metric_names::BACKEND_CONNECT_ERRORS_TOTAL, &labels);
        let active_gauge = metrics::gauge!(metric_names::BACKEND_CONNECTIONS_ACTIVE, &labels);
        let up_gauge = metrics::gauge!(metric_names::BACKEND_UP, &labels);
        let connect_duration =
            metrics::histogram!(metric_names::BACKEND_CONNECT_DURATION_SECONDS, &labels);
        up_gauge.set(1.0);
        Self {
            key,
            node,
            configured_weight: AtomicU32::new(weight),
            learned_weight: AtomicU32::new(NO_LEARNED_WEIGHT),
            up: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            connect_errors,
            connect_duration,
            active_gauge,
            up_gauge,
        }
    }

    pub fn key(&self) -> &BackendKey {
        &self.key
    }

    pub fn addr(&self) -> SocketAddr {
        self.key.addr
    }

    pub fn node(&self) -> Option<IpAddr> {
        self.node
    }

    /// The weight balancers use: the learned one when health checks report it, else the
    /// configured one. 0 means "send nothing here".
    pub fn weight(&self) -> u32 {
        match self.learned_weight.load(Ordering::Relaxed) {
            NO_LEARNED_WEIGHT => self.configured_weight.load(Ordering::Relaxed),
            learned => learned,
        }
    }

    pub fn configured_weight(&self) -> u32 {
        self.configured_weight.load(Ordering::Relaxed)
    }

    pub fn set_configured_weight(&self, weight: u32) {
        self.configured_weight.store(weight, Ordering::Relaxed);
    }

    /// Sets (Some) or clears (None) the weight learned from health checks.
    pub fn set_learned_weight(&self, weight: Option<u32>) {
        let v = weight.map_or(NO_LEARNED_WEIGHT, |w| w.min(NO_LEARNED_WEIGHT - 1));
        self.learned_weight.store(v, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.up_gauge.set(if up { 1.0 } else { 0.0 });
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether passive health has ejected this backend right now.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && clock::now_millis() < until
    }

    /// May a balancer send a new connection here: up, not drained, not ejected, weight > 0.
    pub fn is_available(&self) -> bool {
        self.is_up() && !self.is_drained() && self.weight() > 0 && !self.is_ejected()
    }

    /// Counts a connection (or request) against this backend until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> ActiveConnection {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.active_gauge.increment(1.0);
        ActiveConnection {
            backend: Arc::clone(self),
        }
    }

    /// A connect attempt failed. Returns the number of consecutive failures so far.
    pub fn record_connect_failure(&self) -> u32 {
        self.connect_errors.increment(1);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connect attempt succeeded (after `elapsed`, when timed): passive health forgets
    /// earlier failures.
    pub fn record_connect_success(&self, elapsed: Option<std::time::Duration>) {
        if let Some(elapsed) = elapsed {
            self.connect_duration.record(elapsed.as_secs_f64());
        }
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Ejects the backend from selection for `millis` from now.
    pub fn eject_for(&self, millis: u64) {
        let until = clock::now_millis().saturating_add(millis.max(1));
        self.ejected_until_ms.store(until, Ordering::Relaxed);
    }
}

/// Keeps a backend's active count raised while it lives.
#[derive(Debug)]
pub struct ActiveConnection {
    backend: Arc<Backend>,
}

impl ActiveConnection {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.active_gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(weight: u32) -> Arc<Backend> {
        let key = BackendKey {
            pool: Arc::from("p"),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        Arc::new(Backend::new(key, None, weight))
    }

    #[test]
    fn learned_weight_overrides_configured_until_cleared() {
        let b = backend(3);
        assert_eq!(b.weight(), 3);
        b.set_learned_weight(Some(0));
        assert_eq!(b.weight(), 0);
        assert!(!b.is_available());
        b.set_learned_weight(None);
        assert_eq!(b.weight(), 3);
        assert!(b.is_available());
    }

    #[test]
    fn active_guard_counts_and_releases() {
        let b = backend(1);
        let g1 = b.track();
        let g2 = b.track();
        assert_eq!(b.active(), 2);
        drop(g1);
        assert_eq!(b.active(), 1);
        drop(g2);
        assert_eq!(b.active(), 0);
    }

    #[test]
    fn drain_and_down_make_unavailable() {
        let b = backend(1);
        b.set_drained(true);
        assert!(!b.is_available());
        b.set_drained(false);
        b.set_up(false);
        assert!(!b.is_available());
    }

    #[test]
    fn ejection_expires_and_success_clears_it() {
        let b = backend(1);
        assert_eq!(b.record_connect_failure(), 1);
        assert_eq!(b.record_connect_failure(), 2);
        b.eject_for(60_000);
        assert!(b.is_ejected());
        b.record_connect_success(None);
        assert!(!b.is_ejected());
        assert_eq!(b.consecutive_failures(), 0);
    }
}
