//! Weighted round robin and weighted random, both over one precomputed schedule: the backend
//! indexes in nginx's smooth weighted round robin order, each backend appearing in proportion
//! to its weight. Round robin walks the schedule with a shared counter; random draws slots.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::Backend;

use super::{Rotor, accepts, scan};

/// Cap on a schedule's length (4 bytes per entry). A longer cycle has its weights scaled down
/// proportionally, each staying at least 1, so only a pool with more weighted backends than
/// this gets a longer schedule (one entry per weighted backend). Building costs
/// O(length x weighted backends), once per rebuild.
pub(super) const MAX_SCHEDULE_LEN: usize = 8 * 1024;

/// Random slots drawn before weighted random walks the schedule instead.
const RANDOM_DRAWS: usize = 4;

/// A schedule and the cursor round robin walks it with.
pub(super) struct Schedule {
    slots: ArcSwap<Slots>,
    /// Position of the next round robin pick (modulo the schedule's length).
    cursor: Rotor,
    /// Start of the backend scan used when the schedule has no eligible entry.
    spill: Rotor,
}

/// Backend indexes in schedule order; empty when no backend has a weight.
struct Slots(Box<[u32]>);

impl Schedule {
    pub(super) fn new(backends: &[Arc<Backend>]) -> Self {
        Self {
            slots: ArcSwap::from_pointee(Slots::of(backends)),
            cursor: Rotor::default(),
            spill: Rotor::default(),
        }
    }

    pub(super) fn rebuild(&self, backends: &[Arc<Backend>]) {
        self.slots.store(Arc::new(Slots::of(backends)));
    }

    pub(super) fn len(&self) -> usize {
        self.slots.load().0.len()
    }

    /// The next eligible entry in schedule order. Skipped entries advance the shared cursor
    /// too, so a rejected backend's turns go to the entries after it (A B C with B down gives
    /// A C A C), not twice to the same neighbour.
    pub(super) fn pick_next<F: Fn(usize, &Backend) -> bool>(
        &self,
        backends: &[Arc<Backend>],
        eligible: &F,
    ) -> Option<usize> {
        let slots = self.slots.load();
        let slots = &slots.0;
        if !slots.is_empty() {
            let start = self.cursor.next() % slots.len();
            if let Some((index, skipped)) = walk(slots, start, backends, eligible) {
                if skipped > 0 {
                    self.cursor.advance(skipped);
                }
                return Some(index);
            }
        }
        scan(backends, self.spill.next(), eligible)
    }

    /// A random entry of the schedule (so chosen in proportion to weight); rejected draws are
    /// retried a few times, then the schedule is walked from a random slot.
    pub(super) fn pick_random<F: Fn(usize, &Backend) -> bool>(
        &self,
        backends: &[Arc<Backend>],
        eligible: &F,
    ) -> Option<usize> {
        let slots = self.slots.load();
        let slots = &slots.0;
        if !slots.is_empty() {
            for _ in 0..RANDOM_DRAWS {
                let index = slots[fastrand::usize(..slots.len())] as usize;
                if accepts(backends, index, eligible) {
                    return Some(index);
                }
            }
            let start = fastrand::usize(..slots.len());
            if let Some((index, _)) = walk(slots, start, backends, eligible) {
                return Some(index);
            }
        }
        scan(backends, fastrand::usize(..backends.len().max(1)), eligible)
    }
}

impl Slots {
    fn of(backends: &[Arc<Backend>]) -> Self {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight()).collect();
        Self(smooth_schedule(&weights).into_boxed_slice())
    }
}

/// The first accepted entry from `start`, each entry checked once, with how many were skipped.
fn walk<F: Fn(usize, &Backend) -> bool>(
    slots: &[u32],
    start: usize,
    backends: &[Arc<Backend>],
    eligible: &F,
) -> Option<(usize, usize)> {
    let (before, after) = slots.split_at(start.min(slots.len()));
    after
        .iter()
        .chain(before)
        .enumerate()
        .find_map(|(skipped, &index)| {
            let index = index as usize;
            accepts(backends, index, eligible).then_some((index, skipped))
        })
}

/// nginx's smooth weighted round robin over `weights` (index = backend index), one cycle long:
/// each step adds every weight to its backend's credit, picks the backend with the most credit
/// (the lowest index on a tie) and takes the total weight off it. Weights are first divided by
/// their greatest common divisor, so equal weights give a plain rotation, and scaled down when
/// the cycle would exceed `MAX_SCHEDULE_LEN`. Backends of weight 0 never appear.
pub(super) fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let (members, weights) = cycle_weights(weights);
    if weights.iter().all(|&w| w == 1) {
        return members;
    }
    let total: u64 = weights.iter().sum();
    let weights: Vec<i64> = weights.iter().map(|&w| w as i64).collect();
    let total_i = total as i64;
    let mut credit = vec![0_i64; members.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for k in 0..members.len() {
            credit[k] += weights[k];
            if credit[k] > credit[best] {
                best = k;
            }
        }
        credit[best] -= total_i;
        out.push(members[best]);
    }
    out
}

/// The backends with a weight and their weights reduced to one schedule cycle: divided by
/// their gcd, and scaled to about `MAX_SCHEDULE_LEN` in all (each at least 1) if longer.
fn cycle_weights(weights: &[u32]) -> (Vec<u32>, Vec<u64>) {
    let (members, weights): (Vec<u32>, Vec<u64>) = weights
        .iter()
        .enumerate()
        .filter(|&(_, &w)| w > 0)
        .filter_map(|(i, &w)| Some((u32::try_from(i).ok()?, u64::from(w))))
        .unzip();
    let weights = reduce(weights);
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let cap = MAX_SCHEDULE_LEN as u128;
    if total <= cap {
        return (members, weights);
    }
    let scaled = weights
        .iter()
        .map(|&w| {
            // Round to nearest; the result is at most `cap`, so it fits.
            let w = (u128::from(w) * cap + total / 2) / total;
            (w as u64).max(1)
        })
        .collect();
    (members, reduce(scaled))
}

/// Divides every weight by their greatest common divisor.
fn reduce(weights: Vec<u64>) -> Vec<u64> {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    if g <= 1 {
        return weights;
    }
    weights.into_iter().map(|w| w / g).collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
