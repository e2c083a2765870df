//! `rebalance`: when a backend holds more than `max_skew` times its fair share of the
//! pool's sessions (by weight, among healthy backends), its surplus sessions are told to
//! move, idle ones first, at most `closes_per_second` per pool. With `least_sessions` the
//! reconnects land on the backends with room. A session is told at most once (it closes).

use std::net::SocketAddr;

/// A healthy backend as the rebalancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    pub(crate) sessions: usize,
    pub(crate) weight: usize,
}

/// How many sessions each over-loaded backend sheds now, at most `budget` in all, largest
/// surplus first: a backend over `max_skew` × its fair share sheds down to its fair share.
pub(crate) fn plan(members: &[Member], max_skew: f64, budget: usize) -> Vec<(SocketAddr, usize)> {
    let total: usize = members.iter().map(|m| m.sessions).sum();
    let weights: usize = members.iter().map(|m| m.weight.max(1)).sum();
    if total == 0 || weights == 0 {
        return Vec::new();
    }
    let mut surplus: Vec<(SocketAddr, usize)> = members
        .iter()
        .filter_map(|m| {
            let fair = total as f64 * m.weight.max(1) as f64 / weights as f64;
            let over = m.sessions as f64 > max_skew * fair;
            over.then(|| (m.addr, m.sessions - (fair.ceil() as usize).min(m.sessions)))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    surplus.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut left = budget;
    surplus
        .into_iter()
        .filter_map(|(addr, n)| {
            let take = n.min(left);
            left -= take;
            (take > 0).then_some((addr, take))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(port: u16, sessions: usize, weight: usize) -> Member {
        Member { addr: SocketAddr::from(([10, 0, 0, 1], port)), sessions, weight }
    }

    #[test]
    fn a_new_backend_draws_the_surplus_of_the_old_ones_down_to_fair_shares() {
        // 300 sessions on two backends, a third joins: fair share 100 each.
        let p = plan(&[m(1, 150, 1), m(2, 150, 1), m(3, 0, 1)], 1.25, 1000);
        assert_eq!(p, [(m(1, 0, 0).addr, 50), (m(2, 0, 0).addr, 50)]);
        // The budget bounds each round, largest surplus first.
        let p = plan(&[m(1, 170, 1), m(2, 130, 1), m(3, 0, 1)], 1.25, 20);
        assert_eq!(p, [(m(1, 0, 0).addr, 20)]);
    }

    #[test]
    fn within_the_skew_or_by_weight_nothing_moves() {
        assert!(plan(&[m(1, 120, 1), m(2, 100, 1), m(3, 80, 1)], 1.25, 100).is_empty(), "120 < 1.25 x 100");
        assert!(plan(&[m(1, 100, 1), m(2, 200, 2)], 1.25, 100).is_empty(), "weight 2 holds twice as many");
        assert!(plan(&[], 1.25, 100).is_empty());
        assert!(plan(&[m(1, 0, 1)], 1.25, 100).is_empty());
        assert_eq!(plan(&[m(1, 10, 1)], 1.25, 100), [], "a lone backend holds its fair share");
    }
}
