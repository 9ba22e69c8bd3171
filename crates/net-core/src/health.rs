//! Active health checks. One prober runs per distinct check (probe address, kind, timing), shared
//! by every backend of every pool that needs it: 200 Services on 50 nodes that share a
//! healthCheckNodePort are probed 50 times per interval, not 10,000. A prober turns probe
//! results into a verdict with `rise`/`fall` counts and pushes verdict and endpoint weight into
//! its subscribers (lock-free `Backend` state the balancers read).
//!
//! A new backend starts in its pool's initial state (up by default) until its prober has a
//! result; the first result then decides at once, and later changes need `rise` successes or
//! `fall` failures in a row.

mod probe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::backend::Backend;
use crate::lifecycle::CancellationToken;

pub use probe::{ProbeKind, ProbeOutcome, ProbeSpec, probe};

/// What makes two checks the same check (and so shares one prober).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckKey {
    pub spec: ProbeSpec,
    pub interval: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// A backend that follows a prober's verdict.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub key: CheckKey,
    pub backend: Arc<Backend>,
    /// Take the node's endpoint count (kube-proxy's answer) as the backend's weight.
    pub use_endpoint_weight: bool,
}

/// The last probe of a check, for status pages.
#[derive(Debug, Clone)]
pub struct LastCheck {
    pub at: SystemTime,
    pub healthy: bool,
    pub detail: String,
}

/// A prober's verdict so far.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// None until the first probe answered.
    pub up: Option<bool>,
    /// Endpoint weight the last answer reported.
    pub weight: Option<u32>,
    pub last: Option<LastCheck>,
}

/// Called with the pools whose backends changed state, so their balancer tables are rebuilt.
pub type OnChange = Arc<dyn Fn(&[Arc<str>]) + Send + Sync>;

#[derive(Debug, Default)]
struct ProberState {
    verdict: Verdict,
    successes: u32,
    failures: u32,
}

struct Prober {
    key: CheckKey,
    state: Mutex<ProberState>,
    subscribers: Mutex<Vec<Subscription>>,
    stop: CancellationToken,
}

/// First probe of a new check within this much, spread at random (checked at once, but 1,000
/// new backends are not probed in one burst).
const FIRST_PROBE_SPREAD: Duration = Duration::from_millis(200);
/// Each later interval varies by up to this fraction either way.
const JITTER_FRACTION: f64 = 0.1;

impl Prober {
    /// Applies one probe outcome; returns the pools to refresh when the verdict changed.
    fn record(&self, outcome: ProbeOutcome) -> Vec<Arc<str>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if outcome.healthy {
            state.successes = state.successes.saturating_add(1);
            state.failures = 0;
        } else {
            state.failures = state.failures.saturating_add(1);
            state.successes = 0;
        }
        let was = state.verdict.up;
        let up = match was {
            None => outcome.healthy,
            Some(true) => state.failures < self.key.fall,
            Some(false) => state.successes >= self.key.rise,
        };
        let old_weight = state.verdict.weight;
        // A probe that failed without an answer (a timeout, a refused connection) says nothing
        // of the endpoint count: the last one reported stands. Otherwise one missed probe below
        // `fall` would drop a node to its configured weight and back, moving a share of every
        // Maglev pool's clients twice.
        let weight = match outcome.weight {
            None if !outcome.healthy => old_weight,
            reported => reported,
        };
        state.verdict.up = Some(up);
        state.verdict.weight = weight;
        state.verdict.last = Some(LastCheck {
            at: SystemTime::now(),
            healthy: outcome.healthy,
            detail: outcome.detail.clone(),
        });
        let verdict = state.verdict.clone();
        drop(state);

        if was == Some(up) && old_weight == weight {
            return Vec::new();
        }
        let target = self.key.spec.addr;
        match (was, up) {
            (Some(a), b) if a == b => tracing::info!(
                %target, old = ?old_weight, new = ?weight, "endpoint weight changed ({})", outcome.detail
            ),
            (_, true) => tracing::info!(%target, reason = %outcome.detail, "health check: up"),
            (_, false) => tracing::warn!(%target, reason = %outcome.detail, "health check: down"),
        }
        let subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let mut pools: Vec<Arc<str>> = Vec::new();
        for s in subscribers.iter() {
            apply(&verdict, s);
            if !pools.contains(&s.backend.key().pool) {
                pools.push(Arc::clone(&s.backend.key().pool));
            }
        }
        pools
    }
}

fn apply(verdict: &Verdict, s: &Subscription) {
    if let Some(up) = verdict.up {
        s.backend.set_up(up);
    }
    if s.use_endpoint_weight {
        s.backend.set_learned_weight(verdict.weight);
    }
}

/// Every prober, keyed by check. Long-lived: reconciled on reload, so a check that stays keeps
/// its verdict and counts.
pub struct HealthChecks {
    probers: HashMap<CheckKey, Arc<Prober>>,
    on_change: OnChange,
}

impl HealthChecks {
    pub fn new(on_change: OnChange) -> Self {
        Self {
            probers: HashMap::new(),
            on_change,
        }
    }

    /// The current verdict of a check, if a prober runs it.
    pub fn verdict(&self, key: &CheckKey) -> Option<Verdict> {
        self.probers.get(key).map(|p| {
            p.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .verdict
                .clone()
        })
    }

    /// Makes the probers match `wanted`: new checks start (probed at once), checks nobody
    /// wants any more stop, and every prober gets its new subscriber list. Subscribers of a
    /// check that already has a verdict take it over at once. Must run inside a tokio runtime.
    pub fn reconcile(&mut self, wanted: Vec<Subscription>) {
        let mut by_key: HashMap<CheckKey, Vec<Subscription>> = HashMap::new();
        for s in wanted {
            by_key.entry(s.key.clone()).or_default().push(s);
        }
        self.probers.retain(|key, prober| {
            let keep = by_key.contains_key(key);
            if !keep {
                prober.stop.cancel();
            }
            keep
        });
        for (key, subscribers) in by_key {
            let prober = self.probers.entry(key.clone()).or_insert_with(|| {
                let prober = Arc::new(Prober {
                    key,
                    state: Mutex::new(ProberState::default()),
                    subscribers: Mutex::new(Vec::new()),
                    stop: CancellationToken::new(),
                });
                tokio::spawn(run(Arc::clone(&prober), Arc::clone(&self.on_change)));
                prober
            });
            let verdict = prober
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .verdict
                .clone();
            for s in &subscribers {
                apply(&verdict, s);
            }
            *prober.subscribers.lock().unwrap_or_else(|e| e.into_inner()) = subscribers;
        }
    }

    /// Probers running (one per distinct check).
    pub fn len(&self) -> usize {
        self.probers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probers.is_empty()
    }

    pub fn stop_all(&mut self) {
        for (_, p) in self.probers.drain() {
            p.stop.cancel();
        }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn run(prober: Arc<Prober>, on_change: OnChange) {
    let first = FIRST_PROBE_SPREAD
        .min(prober.key.interval)
        .mul_f64(fastrand::f64());
    let mut wait = first;
    loop {
        tokio::select! {
            () = prober.stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let outcome = tokio::select! {
            () = prober.stop.cancelled() => return,
            outcome = probe(&prober.key.spec) => outcome,
        };
        let pools = prober.record(outcome);
        if !pools.is_empty() {
            on_change(&pools);
        }
        let jitter = 1.0 + JITTER_FRACTION * (2.0 * fastrand::f64() - 1.0);
        wait = prober.key.interval.mul_f64(jitter);
    }
}

#[cfg(test)]
mod tests;
