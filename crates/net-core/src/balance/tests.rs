use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::maglev::{self, Member, TABLE_SIZES};
use super::schedule::{self, MAX_SCHEDULE_LEN};
use super::*;
use crate::backend::{ActiveConnection, BackendKey};
use crate::hash::{hash_ip, mix64};
use crate::pool::{Pool, WhenAllDown};

fn backend(i: usize, weight: u32) -> Arc<Backend> {
    let octets = [10, 0, (i / 250) as u8, (i % 250 + 1) as u8];
    let key = BackendKey {
        pool: Arc::from("test"),
        addr: SocketAddr::from((octets, 30080)),
    };
    Arc::new(Backend::new(key, None, weight))
}

fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| backend(i, w))
        .collect()
}

fn available(_: usize, b: &Backend) -> bool {
    b.is_available()
}

/// Client hash number `k`, as the data paths compute it.
fn client(k: u32) -> u64 {
    hash_ip(IpAddr::V4(Ipv4Addr::from(0xc000_0000 + k)))
}

fn picks(balancer: &Balancer, pool: &[Arc<Backend>], n: usize) -> Vec<usize> {
    (0..n)
        .map(|k| balancer.pick(pool, mix64(k as u64), available).unwrap())
        .collect()
}

fn counts(picked: &[usize], len: usize) -> Vec<usize> {
    let mut counts = vec![0; len];
    for &i in picked {
        counts[i] += 1;
    }
    counts
}

fn load(backend: &Arc<Backend>, connections: usize) -> Vec<ActiveConnection> {
    (0..connections).map(|_| backend.track()).collect()
}

#[test]
fn kind_names_round_trip() {
    for kind in BalanceKind::ALL {
        assert_eq!(BalanceKind::parse(kind.as_str()), Some(kind));
        assert_eq!(Balancer::new(kind, &[]).kind(), kind);
    }
    assert_eq!(BalanceKind::parse("leastconn"), None);
}

// ---- round robin ----

#[test]
fn round_robin_equal_weights_rotate_exactly() {
    let pool = backends(&[1, 1, 1]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    assert_eq!(picks(&rr, &pool, 7), [0, 1, 2, 0, 1, 2, 0]);
    // Equal weights other than 1 reduce to the same rotation.
    let pool = backends(&[5, 5, 5]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    assert_eq!(picks(&rr, &pool, 6), [0, 1, 2, 0, 1, 2]);
}

#[test]
fn round_robin_weighted_3_to_1_per_cycle() {
    let pool = backends(&[3, 1]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    for _ in 0..5 {
        assert_eq!(counts(&picks(&rr, &pool, 4), 2), [3, 1]);
    }
}

#[test]
fn round_robin_follows_nginx_smooth_order() {
    // The example from nginx's ngx_http_upstream_round_robin.c: weights 5, 1, 1.
    assert_eq!(schedule::smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(schedule::smooth_schedule(&[3, 1]), [0, 0, 1, 0]);
}

#[test]
fn round_robin_skips_ineligible_backend() {
    let pool = backends(&[1, 1, 1]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    let not_b = |i: usize, _: &Backend| i != 1;
    let picked: Vec<usize> = (0..6).map(|_| rr.pick(&pool, 0, not_b).unwrap()).collect();
    assert_eq!(picked, [0, 2, 0, 2, 0, 2]);
    // Marked down without a rebuild: skipped all the same.
    pool[2].set_up(false);
    assert_eq!(counts(&picks(&rr, &pool, 10), 3), [5, 5, 0]);
}

#[test]
fn round_robin_weight_zero_is_never_scheduled_but_fails_open() {
    assert_eq!(schedule::smooth_schedule(&[0, 2, 0]), [1]);
    assert!(schedule::smooth_schedule(&[0, 0]).is_empty());
    let pool = backends(&[0, 0, 0]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    assert_eq!(rr.pick(&pool, 0, available), None);
    let fail_open = |_: usize, b: &Backend| !b.is_drained();
    let picked: Vec<usize> = (0..6)
        .map(|_| rr.pick(&pool, 0, fail_open).unwrap())
        .collect();
    assert_eq!(counts(&picked, 3), [2, 2, 2]);
}

#[test]
fn round_robin_schedule_is_reduced_and_capped() {
    assert_eq!(schedule::smooth_schedule(&[1_000_000, 3_000_000]).len(), 4);
    // Coprime weights would need a 20,016-entry cycle: scaled to about half each.
    let capped = schedule::smooth_schedule(&[10_007, 10_009]);
    assert!(capped.len() <= MAX_SCHEDULE_LEN, "{}", capped.len());
    let c = counts(&capped.iter().map(|&i| i as usize).collect::<Vec<_>>(), 2);
    assert!(c[0].abs_diff(c[1]) <= 2, "{c:?}");
    // A huge weight does not starve a small one out of the schedule.
    let lopsided = schedule::smooth_schedule(&[u32::MAX, 1]);
    assert!(lopsided.len() <= MAX_SCHEDULE_LEN + 1);
    assert!(lopsided.contains(&1));
}

#[test]
fn round_robin_rebuild_follows_weight_change() {
    let pool = backends(&[1, 1]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    pool[0].set_configured_weight(3);
    rr.rebuild(&pool);
    assert_eq!(counts(&picks(&rr, &pool, 400), 2), [300, 100]);
    pool[1].set_learned_weight(Some(0));
    rr.rebuild(&pool);
    assert_eq!(counts(&picks(&rr, &pool, 10), 2), [10, 0]);
}

#[test]
fn round_robin_counter_is_atomic_across_threads() {
    const THREADS: usize = 4;
    const PICKS: usize = 10_000;
    let pool = backends(&[3, 1, 2, 2]);
    let rr = Balancer::new(BalanceKind::RoundRobin, &pool);
    let per_thread: Vec<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| s.spawn(|| counts(&picks(&rr, &pool, PICKS), pool.len())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = [0; 4];
    for c in per_thread {
        for (t, n) in total.iter_mut().zip(c) {
            *t += n;
        }
    }
    // 40,000 picks = 5,000 whole cycles of 8: exact shares.
    assert_eq!(total, [15_000, 5_000, 10_000, 10_000]);
}

// ---- least connections ----

#[test]
fn least_conn_prefers_the_idle_backend() {
    let pool = backends(&[1, 1, 1]);
    let lc = Balancer::new(BalanceKind::LeastConn, &pool);
    let _a = load(&pool[0], 2);
    let _b = load(&pool[1], 1);
    assert!(picks(&lc, &pool, 20).iter().all(|&i| i == 2));
    let _c = load(&pool[2], 1);
    assert_eq!(counts(&picks(&lc, &pool, 20), 3), [0, 10, 10]);
}

#[test]
fn least_conn_spreads_ties_among_idle_backends() {
    let pool = backends(&[1, 1, 1]);
    let lc = Balancer::new(BalanceKind::LeastConn, &pool);
    assert_eq!(counts(&picks(&lc, &pool, 300), 3), [100, 100, 100]);
}

#[test]
fn least_conn_divides_load_by_weight() {
    let pool = backends(&[2, 1]);
    let lc = Balancer::new(BalanceKind::LeastConn, &pool);
    let _a = load(&pool[0], 1);
    let _b = load(&pool[1], 1);
    // 1/2 < 1/1.
    assert!(picks(&lc, &pool, 10).iter().all(|&i| i == 0));
    let _a2 = load(&pool[0], 1);
    // 2/2 = 1/1: a tie, shared.
    assert_eq!(counts(&picks(&lc, &pool, 10), 2), [5, 5]);
}

// ---- power of two choices ----

#[test]
fn p2c_picks_the_idle_one_of_two() {
    fastrand::seed(1);
    let pool = backends(&[1, 1]);
    let p2c = Balancer::new(BalanceKind::P2c, &pool);
    let _busy = load(&pool[0], 10);
    assert!(picks(&p2c, &pool, 1_000).iter().all(|&i| i == 1));
}

#[test]
fn p2c_uses_the_only_eligible_backend() {
    fastrand::seed(2);
    let pool = backends(&[1, 1, 1, 1, 1]);
    let p2c = Balancer::new(BalanceKind::P2c, &pool);
    let _busy = load(&pool[3], 10);
    let only_3 = |i: usize, _: &Backend| i == 3;
    assert!((0..100).all(|_| p2c.pick(&pool, 0, only_3) == Some(3)));
}

#[test]
fn p2c_never_picks_the_most_loaded() {
    fastrand::seed(3);
    let pool = backends(&[1, 1, 1, 1]);
    let p2c = Balancer::new(BalanceKind::P2c, &pool);
    let _busy = load(&pool[2], 5);
    let c = counts(&picks(&p2c, &pool, 3_000), 4);
    assert_eq!(c[2], 0, "{c:?}");
    assert!(
        c.iter().enumerate().all(|(i, &n)| i == 2 || n > 500),
        "{c:?}"
    );
}

// ---- weighted random ----

#[test]
fn random_follows_weights() {
    fastrand::seed(4);
    let pool = backends(&[1, 3, 0]);
    let random = Balancer::new(BalanceKind::Random, &pool);
    let c = counts(&picks(&random, &pool, 100_000), 3);
    // Expected 25,000 / 75,000; the standard deviation is about 140.
    assert!(c[0].abs_diff(25_000) < 1_500, "{c:?}");
    assert_eq!(c[2], 0, "{c:?}");
}

#[test]
fn random_skips_ineligible() {
    fastrand::seed(5);
    let pool = backends(&[1, 1, 1]);
    let random = Balancer::new(BalanceKind::Random, &pool);
    pool[0].set_drained(true);
    let c = counts(&picks(&random, &pool, 10_000), 3);
    assert_eq!(c[0], 0);
    assert!(c[1].abs_diff(5_000) < 500, "{c:?}");
}

// ---- maglev ----

fn owners(balancer: &Balancer, pool: &[Arc<Backend>], keys: u32) -> Vec<SocketAddr> {
    (0..keys)
        .map(|k| pool[balancer.pick(pool, client(k), available).unwrap()].addr())
        .collect()
}

fn moved(before: &[SocketAddr], after: &[SocketAddr]) -> usize {
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}

#[test]
fn maglev_same_hash_same_backend_in_every_process() {
    let pool = backends(&[1; 10]);
    let one = Balancer::new(BalanceKind::Maglev, &pool);
    // Another process: other Backend objects, same addresses.
    let pool2 = backends(&[1; 10]);
    let two = Balancer::new(BalanceKind::Maglev, &pool2);
    assert_eq!(owners(&one, &pool, 1_000), owners(&one, &pool, 1_000));
    assert_eq!(owners(&one, &pool, 1_000), owners(&two, &pool2, 1_000));
}

#[test]
fn maglev_permutation_is_pinned() {
    // Pinned: changing these remaps clients between versions of Portico.
    let m = Member::new(0, "10.0.0.1:30080", 1, TABLE_SIZES[0]);
    let slots = maglev::populate(TABLE_SIZES[0], &[m]);
    assert!(slots.iter().all(|&i| i == 0));
    let pool = backends(&[1, 1, 1]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    let picked: Vec<usize> = (0..8)
        .map(|k| mg.pick(&pool, client(k), available).unwrap())
        .collect();
    assert_eq!(picked, PINNED_PICKS);
}

const PINNED_PICKS: [usize; 8] = [2, 1, 0, 2, 2, 1, 2, 2];

#[test]
fn maglev_table_size_is_smallest_prime_with_100_slots_per_backend() {
    assert_eq!(maglev::table_size(0), 65_537);
    assert_eq!(maglev::table_size(655), 65_537);
    assert_eq!(maglev::table_size(656), 131_071);
    assert_eq!(maglev::table_size(100_000), 1_048_573);
    let pool = backends(&[1; 3]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    assert!(format!("{mg:?}").contains("65537"));
}

#[test]
fn maglev_spreads_evenly_over_ten_backends() {
    let pool = backends(&[1; 10]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    let picked: Vec<usize> = (0..100_000)
        .map(|k| mg.pick(&pool, client(k), available).unwrap())
        .collect();
    for (i, n) in counts(&picked, 10).into_iter().enumerate() {
        assert!(n.abs_diff(10_000) <= 1_000, "backend {i}: {n}");
    }
}

#[test]
fn maglev_follows_weights() {
    let pool = backends(&[2, 1, 0]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    let picked: Vec<usize> = (0..100_000)
        .map(|k| mg.pick(&pool, client(k), available).unwrap())
        .collect();
    let c = counts(&picked, 3);
    let ratio = c[0] as f64 / c[1] as f64;
    assert!((1.9..2.1).contains(&ratio), "{c:?}");
    assert_eq!(c[2], 0);
    // Slots follow weights exactly.
    let table = maglev::populate(
        TABLE_SIZES[0],
        &[
            Member::new(0, "a", 2, TABLE_SIZES[0]),
            Member::new(1, "b", 1, TABLE_SIZES[0]),
        ],
    );
    let zeros = table.iter().filter(|&&i| i == 0).count();
    assert_eq!(zeros, (TABLE_SIZES[0] * 2).div_ceil(3));
}

#[test]
fn maglev_removing_one_of_ten_remaps_few_keys() {
    const KEYS: u32 = 1_000;
    let pool = backends(&[1; 10]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    let before = owners(&mg, &pool, KEYS);
    let removed = pool[3].addr();
    let on_removed = before.iter().filter(|&&a| a == removed).count();

    // Marked down, then rebuilt (what a health check does).
    pool[3].set_up(false);
    mg.rebuild(&pool);
    let after = owners(&mg, &pool, KEYS);
    assert!(!after.contains(&removed));
    let moved_down = moved(&before, &after);
    assert!(moved_down >= on_removed);
    assert!(moved_down <= KEYS as usize * 15 / 100, "{moved_down} moved");

    // Removed from the list (what a reload does): same table, indexes shifted.
    let mut shorter = backends(&[1; 10]);
    shorter.remove(3);
    let mg9 = Balancer::new(BalanceKind::Maglev, &shorter);
    let after9 = owners(&mg9, &shorter, KEYS);
    assert_eq!(after9, after);

    // Back up: every key returns.
    pool[3].set_up(true);
    mg.rebuild(&pool);
    assert_eq!(owners(&mg, &pool, KEYS), before);
}

#[test]
fn maglev_probes_past_ineligible_deterministically() {
    const KEYS: u32 = 1_000;
    let pool = backends(&[1; 10]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    let before = owners(&mg, &pool, KEYS);
    // Down without a rebuild: only the down backend's keys move, always to the same place.
    pool[6].set_up(false);
    let after = owners(&mg, &pool, KEYS);
    assert_eq!(after, owners(&mg, &pool, KEYS));
    for (b, a) in before.iter().zip(&after) {
        assert!(b == a || *b == pool[6].addr(), "{b} moved to {a}");
        assert_ne!(*a, pool[6].addr());
    }
}

#[test]
fn maglev_fails_open_consistently_when_all_are_down() {
    let pool = backends(&[1, 1, 1, 1]);
    let mg = Balancer::new(BalanceKind::Maglev, &pool);
    for b in &pool {
        b.set_up(false);
    }
    mg.rebuild(&pool);
    assert_eq!(mg.pick(&pool, client(1), available), None);
    let fail_open = |_: usize, b: &Backend| !b.is_drained();
    let picked: Vec<usize> = (0..4_000)
        .map(|k| mg.pick(&pool, client(k), fail_open).unwrap())
        .collect();
    assert!(counts(&picked, 4).iter().all(|&n| n > 800), "{picked:?}");
    let again: Vec<usize> = (0..4_000)
        .map(|k| mg.pick(&pool, client(k), fail_open).unwrap())
        .collect();
    assert_eq!(picked, again);
}

// ---- every kind ----

#[test]
fn nothing_eligible_gives_none_and_never_panics() {
    let none = |_: usize, _: &Backend| false;
    let everything = |_: usize, _: &Backend| true;
    for kind in BalanceKind::ALL {
        let empty = Balancer::new(kind, &[]);
        empty.rebuild(&[]);
        assert_eq!(empty.pick(&[], 7, everything), None, "{kind:?}");

        let pool = backends(&[1, 2, 3]);
        let balancer = Balancer::new(kind, &pool);
        assert_eq!(balancer.pick(&pool, 7, none), None, "{kind:?}");

        let zero = backends(&[0, 0]);
        let balancer = Balancer::new(kind, &zero);
        assert_eq!(balancer.pick(&zero, 7, available), None, "{kind:?}");

        for b in &pool {
            b.set_up(false);
        }
        let balancer = Balancer::new(kind, &pool);
        for k in 0..100 {
            assert_eq!(balancer.pick(&pool, mix64(k), available), None, "{kind:?}");
        }
    }
}

#[test]
fn stale_tables_never_index_out_of_range() {
    let pool = backends(&[1, 2, 3, 4, 5, 6]);
    for kind in BalanceKind::ALL {
        let balancer = Balancer::new(kind, &pool);
        let fewer = &pool[..2];
        for k in 0..200 {
            let picked = balancer.pick(fewer, mix64(k), available);
            assert!(picked.is_some_and(|i| i < 2), "{kind:?}: {picked:?}");
        }
        assert_eq!(balancer.pick(&[], 1, available), None);
    }
}

#[test]
fn pools_fail_open_with_every_kind() {
    for kind in BalanceKind::ALL {
        let list = backends(&[0, 1, 1]);
        list[1].set_up(false);
        list[2].set_drained(true);
        let pool = Pool::new(
            Arc::from("p"),
            kind,
            list,
            WhenAllDown::TryAll,
            Default::default(),
        );
        pool.refresh();
        // Nothing is available; the weight-0 one and the down one are not drained.
        for k in 0..50 {
            let picked = pool.pick(client(k), &[]);
            assert!(matches!(picked, Some(0 | 1)), "{kind:?}: {picked:?}");
        }
        assert_eq!(pool.pick(client(0), &[0, 1]), None, "{kind:?}");
    }
}
