use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::backend::BackendKey;

fn key(addr: SocketAddr, rise: u32, fall: u32) -> CheckKey {
    CheckKey {
        spec: ProbeSpec {
            addr,
            kind: ProbeKind::Tcp,
            timeout: Duration::from_millis(500),
        },
        interval: Duration::from_millis(50),
        rise,
        fall,
    }
}

fn backend(pool: &str, addr: SocketAddr) -> Arc<Backend> {
    let key = BackendKey {
        pool: Arc::from(pool),
        addr,
    };
    Arc::new(Backend::new(key, None, 1))
}

fn outcome(healthy: bool, weight: Option<u32>) -> ProbeOutcome {
    ProbeOutcome {
        healthy,
        weight,
        detail: String::from(if healthy { "ok" } else { "refused" }),
    }
}

fn prober(k: CheckKey, subscribers: Vec<Subscription>) -> Prober {
    Prober {
        key: k,
        state: Mutex::new(ProberState::default()),
        subscribers: Mutex::new(subscribers),
        stop: CancellationToken::new(),
    }
}

#[test]
fn first_result_decides_then_rise_and_fall_apply() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let b = backend("p", addr);
    let k = key(addr, 2, 3);
    let sub = Subscription {
        key: k.clone(),
        backend: Arc::clone(&b),
        use_endpoint_weight: true,
    };
    let p = prober(k, vec![sub]);

    // Starts up (the pool's initial state); the first failing probe takes it down at once.
    assert!(b.is_up());
    assert_eq!(p.record(outcome(false, None)), vec![Arc::<str>::from("p")]);
    assert!(!b.is_up());
    // One success is not enough with rise = 2.
    assert!(p.record(outcome(true, None)).is_empty());
    assert!(!b.is_up());
    assert_eq!(p.record(outcome(true, None)).len(), 1);
    assert!(b.is_up());
    // Two failures are not enough with fall = 3; a success in between resets the count.
    p.record(outcome(false, None));
    p.record(outcome(false, None));
    p.record(outcome(true, None));
    p.record(outcome(false, None));
    p.record(outcome(false, None));
    assert!(b.is_up());
    p.record(outcome(false, None));
    assert!(!b.is_up());
}

#[test]
fn endpoint_weight_follows_answers_unless_opted_out() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let weighted = backend("a", addr);
    let plain = backend("b", addr);
    plain.set_configured_weight(5);
    let k = key(addr, 1, 1);
    let p = prober(
        k.clone(),
        vec![
            Subscription {
                key: k.clone(),
                backend: Arc::clone(&weighted),
                use_endpoint_weight: true,
            },
            Subscription {
                key: k,
                backend: Arc::clone(&plain),
                use_endpoint_weight: false,
            },
        ],
    );
    let pools = p.record(outcome(true, Some(3)));
    assert_eq!(pools.len(), 2);
    assert_eq!(weighted.weight(), 3);
    assert_eq!(plain.weight(), 5);
    // Weight 0 (no local pod) keeps it out of selection even while "up".
    p.record(outcome(true, Some(0)));
    assert!(!weighted.is_available());
    assert!(plain.is_available());
    // An answer without a weight falls back to the configured weight.
    p.record(outcome(true, None));
    assert_eq!(weighted.weight(), 1);
    // Nothing changed: nothing to refresh.
    assert!(p.record(outcome(true, None)).is_empty());
}

#[test]
fn a_probe_that_gets_no_answer_keeps_the_last_reported_weight() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let node = backend("a", addr);
    let k = key(addr, 2, 3);
    let p = prober(
        k.clone(),
        vec![Subscription {
            key: k,
            backend: Arc::clone(&node),
            use_endpoint_weight: true,
        }],
    );
    p.record(outcome(true, Some(2)));
    assert_eq!(node.weight(), 2);
    // A timeout below `fall`: still up, same weight, no table to rebuild.
    assert!(p.record(outcome(false, None)).is_empty());
    assert_eq!(node.weight(), 2);
    assert!(node.is_available());
    // A failing answer that reports a count (kube-proxy's 503 with no local endpoint) counts.
    p.record(outcome(false, Some(0)));
    assert_eq!(node.weight(), 0);
    p.record(outcome(true, Some(1)));
    assert_eq!(node.weight(), 1);
}

#[tokio::test]
async fn one_prober_per_check_shared_by_pools_and_reconciled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let changes = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&changes);
    let mut checks = HealthChecks::new(Arc::new(move |_: &[Arc<str>]| {
        seen.fetch_add(1, Ordering::SeqCst);
    }));
    let k = key(addr, 1, 1);
    let subs: Vec<Subscription> = ["a", "b", "c"]
        .iter()
        .map(|pool| Subscription {
            key: k.clone(),
            backend: backend(pool, addr),
            use_endpoint_weight: false,
        })
        .collect();
    checks.reconcile(subs.clone());
    assert_eq!(checks.len(), 1, "three pools, one endpoint: one prober");

    // It probes at once: a verdict within a few intervals.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while checks.verdict(&k).and_then(|v| v.up).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no verdict");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(checks.verdict(&k).unwrap().up, Some(true));

    // A new subscriber to a known check takes its verdict at once.
    let late = backend("d", addr);
    late.set_up(false);
    let mut more = subs.clone();
    more.push(Subscription {
        key: k.clone(),
        backend: Arc::clone(&late),
        use_endpoint_weight: false,
    });
    checks.reconcile(more);
    assert!(late.is_up());

    // Nobody wants the check any more: the prober stops probing.
    checks.reconcile(Vec::new());
    assert!(checks.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_stop = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), after_stop);
}
