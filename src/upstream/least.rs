//! `balance: least_sessions`: the healthy backend with the fewest open sessions plus
//! in-flight requests relative to its weight, ties broken at random.
//!
//! Every candidate is looked at (not two at random, as power-of-two choices would): wsgate
//! holds the exact counts locally and a pool has tens of backends, so the exact minimum costs
//! a few lookups, and it matters for sessions, which stay where they land for hours.
//! Power-of-two choices pays off with stale or remote counts, not here.

use pingora::lb::Backend;

/// The least loaded of `candidates` (`(backend, load, weight)`): the one whose load with
/// this session added is least relative to its weight (with the +1, a backend at 0 still
/// weighs its weight: one in slow start, with a small weight, is not chosen first just for
/// being empty). Among equals each has the same chance (`random(n)` is uniform in `0..n`).
pub(crate) fn least_loaded<'a>(
    candidates: impl Iterator<Item = (&'a Backend, usize, u64)>,
    mut random: impl FnMut(usize) -> usize,
) -> Option<&'a Backend> {
    let mut best: Option<(&Backend, u128, u128)> = None;
    let mut ties = 0;
    for (backend, load, weight) in candidates {
        let (load, weight) = (load as u128 + 1, weight.max(1) as u128);
        let Some((_, best_load, best_weight)) = best else {
            best = Some((backend, load, weight));
            ties = 1;
            continue;
        };
        // load / weight < best_load / best_weight, without division.
        let (lhs, rhs) = (load * best_weight, best_load * weight);
        if lhs < rhs {
            best = Some((backend, load, weight));
            ties = 1;
        } else if lhs == rhs {
            // Reservoir sampling: the k-th equal replaces the pick with probability 1/k.
            ties += 1;
            if random(ties) == 0 {
                best = Some((backend, load, weight));
            }
        }
    }
    best.map(|(b, _, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(port: u16, weight: usize) -> Backend {
        Backend::new_with_weight(&format!("10.0.0.1:{port}"), weight).unwrap()
    }

    #[test]
    fn the_least_loaded_relative_to_weight_wins() {
        let (a, b, c) = (backend(1, 1), backend(2, 2), backend(3, 1));
        let pick = |loads: [usize; 3]| {
            let candidates = [&a, &b, &c].into_iter().zip(loads).map(|(x, l)| (x, l, x.weight as u64 * 1000));
            least_loaded(candidates, |_| 1).unwrap().addr.to_string()
        };
        assert_eq!(pick([3, 4, 5]), "10.0.0.1:2", "4+1 sessions on weight 2 is less than 3+1 on weight 1");
        assert_eq!(pick([1, 4, 5]), "10.0.0.1:1");
        assert_eq!(pick([3, 8, 2]), "10.0.0.1:3");
        assert!(least_loaded(std::iter::empty(), |_| 0).is_none());
    }

    #[test]
    fn ties_are_broken_uniformly() {
        let backends: Vec<Backend> = (1..=4).map(|p| backend(p, 1)).collect();
        let mut seen = [0usize; 4];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4000 {
            let candidates = backends.iter().map(|b| (b, 2, 1000));
            let pick = least_loaded(candidates, |n| rng.usize(0..n)).unwrap();
            seen[backends.iter().position(|b| b == pick).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (850..=1150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_backend_in_slow_start_fills_in_proportion_to_its_ramp() {
        // Fresh (0 sessions) at 10% of its weight, beside one holding 20: it is chosen only
        // while its sessions stay under about a tenth of the other's.
        let (fresh, old) = (backend(1, 1), backend(2, 1));
        let mut fresh_load = 0;
        for _ in 0..22 {
            let pick = least_loaded([(&fresh, fresh_load, 100), (&old, 20, 1000)].into_iter(), |_| 1).unwrap();
            if pick == &fresh {
                fresh_load += 1;
            }
        }
        assert_eq!(fresh_load, 2, "(2+1)/0.1 > (20+1)/1");
    }
}
