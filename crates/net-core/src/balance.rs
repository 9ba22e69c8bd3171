//! Balancers: how a pool chooses one of its backends for a new connection.
//!
//! `pick` runs on every new connection, concurrently from every worker thread, through `&self`:
//! it reads atomics and tables published through `ArcSwap`, never locks and never allocates.
//! Tables derived from weights (and, for Maglev, from health) are computed by `new` and
//! `rebuild`; between two rebuilds `pick` still honours the caller's predicate by skipping the
//! backends it rejects, and falls back to a plain scan, so it returns `None` only when the
//! predicate rejects every backend.

mod least_loaded;
mod maglev;
mod schedule;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::Backend;

use self::maglev::Maglev;
use self::schedule::Schedule;

/// How a pool chooses among its backends (config key `balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceKind {
    /// Smooth weighted round robin (nginx's order), precomputed into a schedule.
    RoundRobin,
    /// The eligible backend with the fewest active connections per unit of weight.
    LeastConn,
    /// Power of two choices: the less loaded of two random eligible backends.
    P2c,
    /// Weighted random.
    Random,
    /// Maglev consistent hashing of the client's address.
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

/// One pool's balancer: the algorithm and the state it keeps between picks.
pub struct Balancer {
    kind: BalanceKind,
    state: State,
}

enum State {
    RoundRobin(Schedule),
    LeastConn(Rotor),
    P2c,
    Random(Schedule),
    Maglev(Maglev),
}

impl Balancer {
    pub fn new(kind: BalanceKind, backends: &[Arc<Backend>]) -> Self {
        let state = match kind {
            BalanceKind::RoundRobin => State::RoundRobin(Schedule::new(backends)),
            BalanceKind::LeastConn => State::LeastConn(Rotor::default()),
            BalanceKind::P2c => State::P2c,
            BalanceKind::Random => State::Random(Schedule::new(backends)),
            BalanceKind::Maglev => State::Maglev(Maglev::new(backends)),
        };
        Self { kind, state }
    }

    pub fn kind(&self) -> BalanceKind {
        self.kind
    }

    /// Picks the index of a backend that `eligible` accepts, or `None` when it accepts none.
    /// `hash` is the client's stable balancing key; only Maglev uses it.
    pub fn pick<F: Fn(usize, &Backend) -> bool>(
        &self,
        backends: &[Arc<Backend>],
        hash: u64,
        eligible: F,
    ) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        match &self.state {
            State::RoundRobin(schedule) => schedule.pick_next(backends, &eligible),
            State::LeastConn(rotor) => least_loaded::least_conn(backends, rotor, &eligible),
            State::P2c => least_loaded::p2c(backends, &eligible),
            State::Random(schedule) => schedule.pick_random(backends, &eligible),
            State::Maglev(maglev) => maglev.pick(backends, hash, &eligible),
        }
    }

    /// Recomputes the tables derived from weights and health (call after either changed).
    pub fn rebuild(&self, backends: &[Arc<Backend>]) {
        match &self.state {
            State::RoundRobin(schedule) | State::Random(schedule) => schedule.rebuild(backends),
            State::Maglev(maglev) => maglev.rebuild(backends),
            State::LeastConn(_) | State::P2c => {}
        }
    }
}

impl fmt::Debug for Balancer {
    // Tables can hold a million slots: show their sizes, not their contents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Balancer");
        d.field("kind", &self.kind);
        match &self.state {
            State::RoundRobin(schedule) | State::Random(schedule) => {
                d.field("schedule_len", &schedule.len());
            }
            State::Maglev(maglev) => {
                d.field("table_len", &maglev.len());
            }
            State::LeastConn(_) | State::P2c => {}
        }
        d.finish()
    }
}

/// A shared counter that hands out successive start offsets.
#[derive(Debug, Default)]
struct Rotor(AtomicUsize);

impl Rotor {
    fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }

    fn advance(&self, by: usize) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}

/// Whether `index` names a backend the predicate accepts (a stale index names none).
fn accepts<F: Fn(usize, &Backend) -> bool>(
    backends: &[Arc<Backend>],
    index: usize,
    eligible: &F,
) -> bool {
    backends.get(index).is_some_and(|b| eligible(index, b))
}

/// The first backend the predicate accepts, checking each once in index order from
/// `start % len`, wrapping around.
fn scan<F: Fn(usize, &Backend) -> bool>(
    backends: &[Arc<Backend>],
    start: usize,
    eligible: &F,
) -> Option<usize> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    let start = start % len;
    (start..len)
        .chain(0..start)
        .find(|&i| eligible(i, &backends[i]))
}

/// A backend's load as the fraction active / weight, compared exactly by cross-multiplication.
/// A weight of 0 counts as 1: the backend passed the caller's predicate, so it may be used.
#[derive(Debug, Clone, Copy)]
struct Load {
    active: u128,
    weight: u128,
}

impl Load {
    fn of(backend: &Backend) -> Self {
        Self {
            active: backend.active() as u128,
            weight: u128::from(backend.weight().max(1)),
        }
    }

    fn lighter_than(self, other: Load) -> bool {
        self.active * other.weight < other.active * self.weight
    }

    fn same_as(self, other: Load) -> bool {
        self.active * other.weight == other.active * self.weight
    }
}
