//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016), weighted.
//!
//! A lookup table of prime size M maps `hash % M` to a backend. Each backend prefers the slots
//! of its own permutation of the table, `(offset + j * skip) % M`, with offset and skip derived
//! from stable hashes of its address, so every Portico process with the same backend list (and
//! the same health view) builds the same table. Backends take turns claiming their next
//! preferred free slot; a backend takes a turn only once its accumulated credit (weight / max
//! weight per round) reaches one, so slots follow weights. When a backend leaves, only its
//! slots and a few others change owner.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::hash::stable_hash;

use super::{accepts, scan};

/// Candidate table sizes (primes, 4 bytes per slot). The smallest that gives every backend of
/// the pool about `SLOTS_PER_BACKEND` slots is used, else the largest.
pub(super) const TABLE_SIZES: [usize; 5] = [65_537, 131_071, 262_147, 524_287, 1_048_573];

/// Slots per backend below which the table's imbalance would exceed about 1%.
const SLOTS_PER_BACKEND: usize = 100;

/// Table slots tried after the hashed one when its backend is not eligible, before scanning.
const MAX_PROBES: usize = 64;

/// Prefixes that make the two permutation hashes of one address independent. Changing them
/// remaps every client: they are part of the consistent-hashing contract between instances.
const OFFSET_SEED: &str = "portico/maglev/offset/";
const SKIP_SEED: &str = "portico/maglev/skip/";

/// Marks a slot no backend has claimed yet (only while building).
const FREE: u32 = u32::MAX;

pub(super) struct Maglev {
    table: ArcSwap<Table>,
}

/// Backend index per slot; empty when no backend could be placed.
struct Table(Box<[u32]>);

impl Maglev {
    pub(super) fn new(backends: &[Arc<Backend>]) -> Self {
        Self {
            table: ArcSwap::from_pointee(Table::of(backends)),
        }
    }

    pub(super) fn rebuild(&self, backends: &[Arc<Backend>]) {
        self.table.store(Arc::new(Table::of(backends)));
    }

    pub(super) fn len(&self) -> usize {
        self.table.load().0.len()
    }

    /// The backend owning the client's slot; if the predicate rejects it, the owners of the
    /// following slots in turn (deterministic, so a client of a down backend keeps going to
    /// the same substitute); after `MAX_PROBES`, a scan starting at a hash-derived index.
    pub(super) fn pick<F: Fn(usize, &Backend) -> bool>(
        &self,
        backends: &[Arc<Backend>],
        hash: u64,
        eligible: &F,
    ) -> Option<usize> {
        let table = self.table.load();
        let slots = &table.0;
        if !slots.is_empty() {
            let start = (hash % slots.len() as u64) as usize;
            let (before, after) = slots.split_at(start);
            let probed = after.iter().chain(before).take(MAX_PROBES + 1);
            for &index in probed {
                if accepts(backends, index as usize, eligible) {
                    return Some(index as usize);
                }
            }
        }
        let start = (hash % backends.len().max(1) as u64) as usize;
        scan(backends, start, eligible)
    }
}

impl Table {
    fn of(backends: &[Arc<Backend>]) -> Self {
        let size = table_size(backends.len());
        Self(populate(size, &members(backends, size)).into_boxed_slice())
    }
}

/// The table size for a pool of `backends` backends (all of them, healthy or not, so that a
/// health change never resizes the table and remaps everyone).
pub(super) fn table_size(backends: usize) -> usize {
    let wanted = backends.saturating_mul(SLOTS_PER_BACKEND);
    TABLE_SIZES
        .into_iter()
        .find(|&size| size >= wanted)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// One backend placed in the table: its index in the pool, weight and permutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) index: u32,
    pub(super) weight: u32,
    offset: u64,
    skip: u64,
}

impl Member {
    /// `weight` must be positive. `key` identifies the backend across processes (its address).
    pub(super) fn new(index: u32, key: &str, weight: u32, size: usize) -> Self {
        // Table sizes are primes >= 65537; the floor only keeps a misuse from dividing by 0.
        let size = (size as u64).max(3);
        let h1 = stable_hash(format!("{OFFSET_SEED}{key}").as_bytes());
        let h2 = stable_hash(format!("{SKIP_SEED}{key}").as_bytes());
        Self {
            index,
            weight,
            offset: h1 % size,
            skip: h2 % (size - 1) + 1,
        }
    }
}

/// The backends the table is built over, with their current weights: those that are up, not
/// drained and weighted. Passive ejection is deliberately ignored: it expires on its own, with
/// no rebuild to follow, and the predicate already probes past an ejected backend. When no
/// backend qualifies, the non-drained ones (weight 0 counted as 1), so that a pool failing
/// open still hashes clients consistently.
fn members(backends: &[Arc<Backend>], size: usize) -> Vec<Member> {
    let placed = |weight_of: &dyn Fn(&Backend) -> Option<u32>| -> Vec<Member> {
        backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let weight = weight_of(b)?;
                let index = u32::try_from(i).ok().filter(|&i| i != FREE)?;
                Some(Member::new(index, &b.addr().to_string(), weight, size))
            })
            .collect()
    };
    let healthy = placed(&|b| {
        let weight = b.weight();
        (b.is_up() && !b.is_drained() && weight > 0).then_some(weight)
    });
    if !healthy.is_empty() {
        return healthy;
    }
    placed(&|b| (!b.is_drained()).then(|| b.weight().max(1)))
}

/// Fills a table of `size` slots. Turns go in rounds; in each round, members whose credit
/// reaches the maximum weight take one slot, in member order. A member of weight w takes its
/// (k+1)-th slot in round ceil(max * (k+1) / w); a heap keyed on (round, member) replays the
/// rounds without visiting members that have no turn in them.
pub(super) fn populate(size: usize, members: &[Member]) -> Vec<u32> {
    let Some(max_weight) = members.iter().map(|m| u64::from(m.weight)).max() else {
        return Vec::new();
    };
    if max_weight == 0 || size < 2 {
        return Vec::new();
    }
    let due = |m: &Member, taken: u64| {
        let w = u64::from(m.weight);
        (max_weight * (taken + 1)).div_ceil(w)
    };
    let modulus = size as u64;
    let mut slots = vec![FREE; size];
    let mut next: Vec<u64> = members.iter().map(|m| m.offset).collect();
    let mut taken = vec![0_u64; members.len()];
    let mut turns: BinaryHeap<Reverse<(u64, usize)>> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.weight > 0)
        .map(|(k, m)| Reverse((due(m, 0), k)))
        .collect();
    let mut filled = 0;
    while filled < size {
        let Some(Reverse((_, k))) = turns.pop() else {
            break;
        };
        let member = &members[k];
        // A permutation visits every slot once in `size` steps and filled slots stay filled,
        // so a free one comes within `size` steps while any is left.
        for _ in 0..size {
            let slot = next[k] as usize;
            next[k] = (next[k] + member.skip) % modulus;
            if slots[slot] == FREE {
                slots[slot] = member.index;
                filled += 1;
                break;
            }
        }
        taken[k] += 1;
        turns.push(Reverse((due(member, taken[k]), k)));
    }
    slots
}
