//! PLACEHOLDER: interface only; a helper replaces this file with the real balancers.

use std::sync::Arc;

use crate::backend::Backend;

/// How a pool chooses among its backends (config key `balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceKind {
    RoundRobin,
    LeastConn,
    P2c,
    Random,
    Maglev,
}

impl BalanceKind {
    pub const ALL: [BalanceKind; 5] = [
        BalanceKind::RoundRobin,
        BalanceKind::LeastConn,
        BalanceKind::P2c,
        BalanceKind::Random,
        BalanceKind::Maglev,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BalanceKind::RoundRobin => "round_robin",
            BalanceKind::LeastConn => "least_conn",
            BalanceKind::P2c => "p2c",
            BalanceKind::Random => "random",
            BalanceKind::Maglev => "maglev",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug)]
pub struct Balancer {
    kind: BalanceKind,
}

impl Balancer {
    pub fn new(kind: BalanceKind, _backends: &[Arc<Backend>]) -> Self {
        Self { kind }
    }

    pub fn kind(&self) -> BalanceKind {
        self.kind
    }

    pub fn pick<F: Fn(usize, &Backend) -> bool>(
        &self,
        backends: &[Arc<Backend>],
        _hash: u64,
        eligible: F,
    ) -> Option<usize> {
        (0..backends.len()).find(|&i| eligible(i, &backends[i]))
    }

    pub fn rebuild(&self, _backends: &[Arc<Backend>]) {}
}
