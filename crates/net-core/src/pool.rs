//! A pool: a set of backends and the balancer that chooses among them.

use std::sync::Arc;

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

/// A pool as one snapshot sees it: the backend list is fixed, their state is live.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    backends: Box<[Arc<Backend>]>,
    balancer: Balancer,
    when_all_down: WhenAllDown,
}

impl Pool {
    pub fn new(
        name: Arc<str>,
        kind: BalanceKind,
        backends: Vec<Arc<Backend>>,
        when_all_down: WhenAllDown,
    ) -> Self {
        let balancer = Balancer::new(kind, &backends);
        Self {
            name,
            backends: backends.into_boxed_slice(),
            balancer,
            when_all_down,
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

    pub fn when_all_down(&self) -> WhenAllDown {
        self.when_all_down
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

    /// Rebuilds weight- and health-derived balancer tables after backend state changed.
    pub fn refresh(&self) {
        self.balancer.rebuild(&self.backends);
    }
}
