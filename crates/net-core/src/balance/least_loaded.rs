//! Load-aware balancers: least connections (exact) and power of two choices (sampled). Both
//! compare active connections per unit of weight, read live from each backend.

use std::sync::Arc;

use crate::backend::Backend;

use super::{Load, Rotor, accepts, scan};

/// Random draws p2c makes to find each of its two candidates before it scans instead.
const P2C_DRAWS: usize = 8;

/// The eligible backend with the lowest active/weight. When several share it (idle backends in
/// particular), they take turns: a first pass finds the lowest load and how many have it, a
/// second pass (as nginx's least_conn does) takes the n-th of them, n from a rotating counter.
pub(super) fn least_conn<F: Fn(usize, &Backend) -> bool>(
    backends: &[Arc<Backend>],
    rotor: &Rotor,
    eligible: &F,
) -> Option<usize> {
    let mut best: Option<(usize, Load)> = None;
    let mut ties = 0_usize;
    for (i, backend) in backends.iter().enumerate() {
        if !eligible(i, backend) {
            continue;
        }
        let load = Load::of(backend);
        match best {
            Some((_, best_load)) if best_load.lighter_than(load) => {}
            Some((_, best_load)) if !load.lighter_than(best_load) => ties += 1,
            _ => {
                best = Some((i, load));
                ties = 1;
            }
        }
    }
    let (first, best_load) = best?;
    if ties == 1 {
        return Some(first);
    }
    // Loads move concurrently: if the n-th tie is gone by now, the first one found will do.
    let mut nth = rotor.next() % ties;
    for (i, backend) in backends.iter().enumerate().skip(first) {
        if eligible(i, backend) && Load::of(backend).same_as(best_load) {
            if nth == 0 {
                return Some(i);
            }
            nth -= 1;
        }
    }
    Some(first)
}

/// Power of two choices: two distinct random eligible backends, the lighter one wins (the first
/// drawn on a tie). With a single eligible backend, that one.
pub(super) fn p2c<F: Fn(usize, &Backend) -> bool>(
    backends: &[Arc<Backend>],
    eligible: &F,
) -> Option<usize> {
    let first = random_eligible(backends, None, eligible)?;
    let Some(second) = random_eligible(backends, Some(first), eligible) else {
        return Some(first);
    };
    if Load::of(&backends[second]).lighter_than(Load::of(&backends[first])) {
        Some(second)
    } else {
        Some(first)
    }
}

/// A random eligible backend other than `except`: a few random draws, then a scan from a random
/// offset (so that a pool where few backends are eligible still finds them, in bounded time).
fn random_eligible<F: Fn(usize, &Backend) -> bool>(
    backends: &[Arc<Backend>],
    except: Option<usize>,
    eligible: &F,
) -> Option<usize> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    let wanted = |i: usize| Some(i) != except && accepts(backends, i, eligible);
    for _ in 0..P2C_DRAWS {
        let i = fastrand::usize(..len);
        if wanted(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..len);
    scan(backends, start, &|i, b: &Backend| {
        Some(i) != except && eligible(i, b)
    })
}
