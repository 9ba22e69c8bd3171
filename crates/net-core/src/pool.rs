//! A pool: a set of backends and the balancer that chooses among them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use crate::backend::Backend;
use crate::balance::{BalanceKind, Balancer};

/// What a pool does when no backend is available (all down, ejected or weight 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Try the backends that are not drained anyway: a health check can be wrong, a refused
    /// connection is certain (HAProxy and Envoy's panic mode do the same). The default.
    TryAll,
    /// Refuse: no backend is picked.
    Refuse,
}

/// Passive health: after `failures` consecutive connect failures a backend is ejected for
/// `ejection`, doubled for every further consecutive failure, up to `max_ejection`. A successful
/// connect ends it. `failures = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    pub failures: u32,
    pub ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            failures: 3,
            ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
        }
    }
}

impl PassiveHealth {
    /// How long to eject a backend after its `consecutive`-th failure in a row, if at all.
    pub fn ejection_after(&self, consecutive: u32) -> Option<Duration> {
        if self.failures == 0 || consecutive < self.failures {
            return None;
        }
        let doublings = (consecutive - self.failures).min(20);
        Some(
            self.ejection
                .saturating_mul(1 << doublings)
                .min(self.max_ejection),
        )
    }
}

/// A pool as one snapshot sees it: the backend list is fixed, their state is live.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    backends: Box<[Arc<Backend>]>,
    balancer: Balancer,
    when_all_down: WhenAllDown,
    passive: PassiveHealth,
    /// Fingerprint of the backend state (up, drained, weight) the balancer tables were built
    /// from, so a pool can tell that its tables are stale.
    built_from: AtomicU64,
    /// A refresh was asked for and no rebuild has read the backend state since.
    refresh_wanted: AtomicBool,
    /// Held by the one thread rebuilding the tables.
    rebuilding: Mutex<()>,
}

impl Pool {
    pub fn new(
        name: Arc<str>,
        kind: BalanceKind,
        backends: Vec<Arc<Backend>>,
        when_all_down: WhenAllDown,
        passive: PassiveHealth,
    ) -> Self {
        let built_from = AtomicU64::new(state_fingerprint(&backends));
        let balancer = Balancer::new(kind, &backends);
        Self {
            name,
            backends: backends.into_boxed_slice(),
            balancer,
            when_all_down,
            passive,
            built_from,
            refresh_wanted: AtomicBool::new(false),
            rebuilding: Mutex::new(()),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    pub fn balance_kind(&self) -> BalanceKind {
        self.balancer.kind()
    }

    /// Picks a backend for a new connection. `hash` is the client's balancing key
    /// (`hash::hash_ip`); `tried` holds the indexes that already failed for this connection.
    pub fn pick(&self, hash: u64, tried: &[usize]) -> Option<usize> {
        let picked = self.balancer.pick(&self.backends, hash, |i, b| {
            b.is_available() && !tried.contains(&i)
        });
        match (picked, self.when_all_down) {
            (Some(i), _) => Some(i),
            (None, WhenAllDown::Refuse) => None,
            (None, WhenAllDown::TryAll) if self.any_available() => None,
            (None, WhenAllDown::TryAll) => self.balancer.pick(&self.backends, hash, |i, b| {
                !b.is_drained() && !tried.contains(&i)
            }),
        }
    }

    fn any_available(&self) -> bool {
        self.backends.iter().any(|b| b.is_available())
    }

    pub fn backend(&self, index: usize) -> &Arc<Backend> {
        &self.backends[index]
    }

    /// A connect to backend `index` failed: count it and, per the passive health policy, eject
    /// the backend for a while.
    pub fn report_connect_failure(&self, index: usize) {
        let backend = &self.backends[index];
        let consecutive = backend.record_connect_failure();
        if let Some(ejection) = self.passive.ejection_after(consecutive) {
            backend.eject_for(u64::try_from(ejection.as_millis()).unwrap_or(u64::MAX));
            tracing::warn!(
                pool = %self.name,
                backend = %backend.addr(),
                consecutive_failures = consecutive,
                ejected_for = ?ejection,
                "backend ejected after connect failures"
            );
        }
    }

    /// A connect to backend `index` succeeded (after `elapsed`, when the caller timed it):
    /// passive health forgets its failures.
    pub fn report_connect_success(&self, index: usize, elapsed: Option<Duration>) {
        let backend = &self.backends[index];
        if backend.consecutive_failures() >= self.passive.failures.max(1) {
            tracing::info!(pool = %self.name, backend = %backend.addr(), "backend answers again; ejection over");
        }
        backend.record_connect_success(elapsed);
    }

    /// Rebuilds weight- and health-derived balancer tables after backend state changed.
    ///
    /// Health checkers call this from their own tasks, so refreshes overlap. One thread
    /// rebuilds at a time; a refresh asked for meanwhile returns at once and leaves the work
    /// to that thread, which reads the state again before it stops. So the last table stored
    /// is always built from state at least as new as every change reported, and no caller
    /// waits for another's build.
    pub fn refresh(&self) {
        self.refresh_wanted.store(true, Ordering::SeqCst);
        loop {
            let rebuilding = match self.rebuilding.try_lock() {
                Ok(guard) => guard,
                // A rebuild panicked; the tables it left are whole (swapped in one store).
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // The thread holding it sees `refresh_wanted` before it lets go.
                Err(TryLockError::WouldBlock) => return,
            };
            while self.refresh_wanted.swap(false, Ordering::SeqCst) {
                let fingerprint = state_fingerprint(&self.backends);
                self.balancer.rebuild(&self.backends);
                self.built_from.store(fingerprint, Ordering::Relaxed);
            }
            drop(rebuilding);
            // A request made between the last swap and the unlock found the lock taken.
            if !self.refresh_wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Rebuilds the tables only if backend state changed since they were built (a health
    /// result that arrived while a reload was building this pool). Returns whether it did.
    pub fn refresh_if_stale(&self) -> bool {
        let stale = state_fingerprint(&self.backends) != self.built_from.load(Ordering::Relaxed);
        if stale {
            self.refresh();
        }
        stale
    }
}

/// A hash of what balancer tables depend on: each backend's up, drained and weight.
fn state_fingerprint(backends: &[Arc<Backend>]) -> u64 {
    backends.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        let state =
            u64::from(b.weight()) << 2 | u64::from(b.is_up()) << 1 | u64::from(b.is_drained());
        crate::hash::mix64(h ^ state)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pool `p` balancing `kind` over a backend (weight 1) at each address, and its backends.
    fn pool_of(kind: BalanceKind, addrs: &[&str]) -> (Pool, Vec<Arc<Backend>>) {
        let backends: Vec<Arc<Backend>> = addrs
            .iter()
            .map(|addr| {
                let key = crate::BackendKey {
                    pool: Arc::from("p"),
                    addr: addr.parse().unwrap(),
                };
                Arc::new(Backend::new(key, None, 1))
            })
            .collect();
        let pool = Pool::new(
            Arc::from("p"),
            kind,
            backends.clone(),
            WhenAllDown::TryAll,
            PassiveHealth::default(),
        );
        (pool, backends)
    }

    #[test]
    fn stale_tables_are_noticed_and_rebuilt_once() {
        let (pool, backends) = pool_of(BalanceKind::RoundRobin, &["127.0.0.1:1", "127.0.0.1:2"]);
        assert!(!pool.refresh_if_stale());
        backends[0].set_learned_weight(Some(3));
        assert!(pool.refresh_if_stale());
        assert!(!pool.refresh_if_stale());
        let picks: Vec<usize> = (0..8).filter_map(|_| pool.pick(0, &[])).collect();
        assert_eq!(
            picks.iter().filter(|&&i| i == 0).count(),
            6,
            "3:1 after the rebuild: {picks:?}"
        );
    }

    /// Health checkers of different backends refresh one pool from their own threads. However
    /// their rebuilds overlap, the table left behind is the one of the latest state: an older
    /// build finishing last must not win (a 1:1 Maglev table stayed under 2:1 weights).
    #[test]
    fn concurrent_refreshes_leave_the_table_of_the_latest_state() {
        const THREADS: usize = 4;
        const ROUNDS: u32 = 6;
        const ADDRS: [&str; THREADS] = [
            "127.0.0.1:80",
            "127.0.0.2:80",
            "127.0.0.3:80",
            "127.0.0.4:80",
        ];
        for round in 0..ROUNDS {
            let (pool, backends) = pool_of(BalanceKind::Maglev, &ADDRS);
            // Each thread moves its own backend through a few weights, as endpoint counts
            // change, and refreshes after each change; all start together.
            let start = std::sync::Barrier::new(THREADS);
            std::thread::scope(|scope| {
                for (i, backend) in backends.iter().enumerate() {
                    let (start, pool) = (&start, &pool);
                    scope.spawn(move || {
                        start.wait();
                        for step in 0..4 {
                            let weight = 1 + (i as u32 + step + round) % 4;
                            backend.set_learned_weight(Some(weight));
                            pool.refresh();
                        }
                    });
                }
            });
            let settled = Pool::new(
                Arc::from("p"),
                BalanceKind::Maglev,
                backends.clone(),
                WhenAllDown::TryAll,
                PassiveHealth::default(),
            );
            let differ = (0..2_000_u64)
                .map(crate::hash::mix64)
                .filter(|&h| pool.pick(h, &[]) != settled.pick(h, &[]))
                .count();
            assert_eq!(
                differ, 0,
                "round {round}: {differ} of 2000 clients go elsewhere than the final weights say"
            );
        }
    }

    #[test]
    fn ejection_doubles_up_to_the_cap() {
        let p = PassiveHealth {
            failures: 2,
            ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
        };
        let got: Vec<Option<u64>> = (1..=6)
            .map(|n| p.ejection_after(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(got, [None, Some(1), Some(2), Some(4), Some(5), Some(5)]);
        let off = PassiveHealth { failures: 0, ..p };
        assert_eq!(off.ejection_after(100), None);
        assert_eq!(p.ejection_after(u32::MAX), Some(Duration::from_secs(5)));
    }
}
