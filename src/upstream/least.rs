//! `balance: least_sessions`: the healthy backend with the fewest open sessions plus
//! in-flight requests relative to its weight, ties broken at random.
//!
//! Every candidate is looked at (not two at random, as power-of-two choices would): wsgate
//! holds the exact counts locally and a pool has tens of backends, so the exact minimum costs
//! a few lookups, and it matters for sessions, which stay where they land for hours.
//! Power-of-two choices pays off with stale or remote counts, not here.

use pingora::lb::Backend;

/// The least loaded of `candidates` (`(backend, load)`), load compared relative to weight;
/// among equals, each has the same chance (`random(n)` is uniform in `0..n`).
pub(crate) fn least_loaded<'a>(
    candidates: impl Iterator<Item = (&'a Backend, usize)>,
    mut random: impl FnMut(usize) -> usize,
) -> Option<&'a Backend> {
    let mut best: Option<(&Backend, usize)> = None;
    let mut ties = 0;
    for (backend, load) in candidates {
        let Some((current, current_load)) = best else {
            best = Some((backend, load));
            ties = 1;
            continue;
        };
        // load / weight < current_load / current_weight, without division.
        let (lhs, rhs) = (load * current.weight.max(1), current_load * backend.weight.max(1));
        if lhs < rhs {
            best = Some((backend, load));
            ties = 1;
        } else if lhs == rhs {
            // Reservoir sampling: the k-th equal replaces the pick with probability 1/k.
            ties += 1;
            if random(ties) == 0 {
                best = Some((backend, load));
            }
        }
    }
    best.map(|(b, _)| b)
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
            let candidates = [(&a, loads[0]), (&b, loads[1]), (&c, loads[2])];
            least_loaded(candidates.into_iter(), |_| 1).unwrap().addr.to_string()
        };
        assert_eq!(pick([3, 4, 5]), "10.0.0.1:2", "4 sessions on weight 2 is less than 3 on weight 1");
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
            let candidates = backends.iter().map(|b| (b, 2));
            let pick = least_loaded(candidates, |n| rng.usize(0..n)).unwrap();
            seen[backends.iter().position(|b| b == pick).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (850..=1150).contains(&n)), "{seen:?}");
    }
}
