//! Places, series and moves of `Loads`.
use super::*;
use pingora_prometheus::prometheus::core::Collector;

fn loads() -> Arc<Loads> {
    // A pool name of its own per test: the metrics are process-wide.
    Loads::new(&format!("pool{}", fastrand::u64(..)), &Metrics::new())
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn series(l: &Loads) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = l
        .gauge
        .collect()
        .iter()
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label()[1].value() == l.pool)
        .map(|m| (m.get_label()[0].value().to_string(), m.get_gauge().value() as i64))
        .collect();
    out.sort();
    out
}

#[test]
fn places_count_while_held() {
    let l = loads();
    let s1 = l.place(addr(1), Kind::Session);
    let s2 = l.place(addr(1), Kind::Session);
    let r = l.place(addr(1), Kind::Request);
    assert_eq!((l.load(&addr(1)), l.sessions(&addr(1))), (3, 2));
    assert_eq!(series(&l), [("10.0.0.1:1".to_string(), 2)]);
    drop((s1, r));
    assert_eq!((l.load(&addr(1)), l.sessions(&addr(1))), (1, 1));
    drop(s2);
    assert_eq!(l.load(&addr(1)), 0);
    assert_eq!(series(&l), [("10.0.0.1:1".to_string(), 0)]);
    assert_eq!(l.load(&addr(2)), 0, "a backend nothing went to");
}

#[test]
fn a_capped_place_is_refused_at_the_cap_and_freed_on_drop() {
    let l = loads();
    let held: Vec<Place> = (0..3).map(|_| l.try_session(addr(1), 3).expect("under the cap")).collect();
    assert!(l.try_session(addr(1), 3).is_none(), "at the cap");
    let waiting = l.queue.join(1).unwrap();
    drop(held);
    assert_eq!(l.sessions(&addr(1)), 0);
    assert!(waiting.blocking_recv().is_ok(), "a freed place wakes the waiter");
    assert!(l.try_session(addr(1), 3).is_some());
}

#[test]
fn a_backend_that_leaves_loses_its_series_but_keeps_its_count_while_sessions_last() {
    let l = loads();
    l.members(&[addr(1), addr(2)].into());
    let held = l.place(addr(2), Kind::Session);
    l.members(&[addr(1)].into());
    assert_eq!(series(&l), [("10.0.0.1:1".to_string(), 0)], "the series of a removed backend is gone");
    assert_eq!(l.sessions(&addr(2)), 1, "its session still counts");
    drop(held);
    assert_eq!(series(&l).len(), 1, "a session ending on a removed backend brings no series back");
    l.members(&[addr(1), addr(2)].into());
    assert_eq!(l.sessions(&addr(2)), 0, "back, it starts from what it has");
    assert_eq!(series(&l).len(), 2);
    l.remove_all();
    assert!(series(&l).is_empty());
}
