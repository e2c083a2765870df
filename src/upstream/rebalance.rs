//! `rebalance`: when a backend holds more than `max_skew` times its fair share of the
//! pool's sessions (by weight, among healthy backends), the pool is rebalanced: every
//! backend above its fair share has its surplus told to move, idle sessions first, at most
//! `closes_per_second` per pool, round after round until all are within one session of
//! their share (stopping at the skew would leave a scale-out's new backend at 1/max_skew of
//! its share for good). With `least_sessions` the reconnects land on the backends with
//! room. A session is told at most once (it closes).

use std::net::SocketAddr;

/// A healthy backend as the rebalancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    pub(crate) sessions: usize,
    pub(crate) weight: usize,
}

/// How many sessions each backend sheds this round, at most `budget` in all, largest
/// surplus first, and whether the pool is (still) being rebalanced. A round starts when a
/// backend is over `max_skew` × its fair share, or goes on from the last (`active`); then
/// every backend more than one session over its fair share sheds down to it.
pub(crate) fn plan(members: &[Member], max_skew: f64, budget: usize, active: bool) -> (Vec<(SocketAddr, usize)>, bool) {
    let total: usize = members.iter().map(|m| m.sessions).sum();
    let weights: usize = members.iter().map(|m| m.weight.max(1)).sum();
    if total == 0 || weights == 0 {
        return (Vec::new(), false);
    }
    let fair = |m: &Member| total as f64 * m.weight.max(1) as f64 / weights as f64;
    let skewed = members.iter().any(|m| m.sessions as f64 > max_skew * fair(m));
    if !(skewed || active) {
        return (Vec::new(), false);
    }
    let mut surplus: Vec<(SocketAddr, usize)> = members
        .iter()
        .map(|m| (m.addr, m.sessions.saturating_sub(fair(m).ceil() as usize)))
        .filter(|(_, n)| *n > 1)
        .collect();
    if surplus.is_empty() {
        return (Vec::new(), false);
    }
    surplus.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut left = budget;
    let moves = surplus
        .into_iter()
        .filter_map(|(addr, n)| {
            let take = n.min(left);
            left -= take;
            (take > 0).then_some((addr, take))
        })
        .collect();
    (moves, true)
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
        let (p, active) = plan(&[m(1, 150, 1), m(2, 150, 1), m(3, 0, 1)], 1.25, 1000, false);
        assert_eq!(p, [(m(1, 0, 0).addr, 50), (m(2, 0, 0).addr, 50)]);
        assert!(active);
        // The budget bounds each round, largest surplus first.
        let (p, _) = plan(&[m(1, 170, 1), m(2, 130, 1), m(3, 0, 1)], 1.25, 20, false);
        assert_eq!(p, [(m(1, 0, 0).addr, 20)]);
    }

    #[test]
    fn a_started_rebalance_goes_on_under_the_skew_until_every_backend_is_near_its_share() {
        // 110 / 110 / 80: nobody over 1.25 x 100, but the rebalance under way goes on.
        let members = [m(1, 110, 1), m(2, 110, 1), m(3, 80, 1)];
        assert_eq!(plan(&members, 1.25, 100, false), (vec![], false), "not started: within the skew");
        let (p, active) = plan(&members, 1.25, 100, true);
        assert_eq!((p.len(), active), (2, true));
        assert_eq!(plan(&[m(1, 101, 1), m(2, 100, 1), m(3, 99, 1)], 1.25, 100, true), (vec![], false), "done");
    }

    #[test]
    fn within_the_skew_or_by_weight_nothing_moves() {
        let idle = |members: &[Member]| plan(members, 1.25, 100, false).0.is_empty();
        assert!(idle(&[m(1, 120, 1), m(2, 100, 1), m(3, 80, 1)]), "120 < 1.25 x 100");
        assert!(idle(&[m(1, 100, 1), m(2, 200, 2)]), "weight 2 holds twice as many");
        assert!(idle(&[]));
        assert!(idle(&[m(1, 0, 1)]));
        assert!(idle(&[m(1, 10, 1)]), "a lone backend holds its fair share");
    }
}
