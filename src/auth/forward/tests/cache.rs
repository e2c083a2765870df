//! `cache`: one subrequest per credential per period, never for a request without one, never
//! for a refusal; entries expire and their number is bounded.

use super::super::cache::{key, Cache, MAX_ENTRIES};
use super::*;
use std::time::Instant;

fn cached(addr: SocketAddr, names: &[&str], ttl: Duration) -> ForwardAuth {
    let copy_headers = names.iter().map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect();
    ForwardAuth::new(ForwardSettings { copy_headers, cache: Some(ttl), ..settings(addr) })
}

#[tokio::test]
async fn one_subrequest_per_credential_and_every_one_without() {
    let service = AuthService::answering("HTTP/1.1 200 OK\r\nX-User-Id: 42", b"").await;
    let auth = cached(service.addr, &["x-user-id"], Duration::from_secs(30));
    let admitted = ForwardVerdict::Admit(pairs(&[("x-user-id", b"42")]));
    let alice = request("GET", "/ws", &[("Authorization", b"Bearer alice")]);
    for _ in 0..100 {
        assert_eq!(check(&auth, &alice).await, admitted, "a cached answer is the answer");
    }
    assert_eq!(service.requests(), 1, "100 checks with one credential");

    check(&auth, &request("GET", "/ws", &[("Authorization", b"Bearer bob")])).await;
    assert_eq!(service.requests(), 2, "another credential asks again");
    let cookie = request("GET", "/ws", &[("Cookie", b"session=alice")]);
    check(&auth, &cookie).await;
    check(&auth, &cookie).await;
    assert_eq!(service.requests(), 3, "a cookie is a credential too");

    for _ in 0..5 {
        assert_eq!(check(&auth, &request("GET", "/ws?token=x", &[])).await, admitted);
    }
    assert_eq!(service.requests(), 8, "no credential: every check goes out");
    assert_eq!(auth.cache.as_ref().map(Cache::len), Some(3));
}

#[tokio::test]
async fn refusals_and_failures_are_not_cached() {
    let service = AuthService::answering("HTTP/1.1 403 Forbidden", b"").await;
    let auth = cached(service.addr, &[], Duration::from_secs(30));
    let alice = request("GET", "/ws", &[("Authorization", b"Bearer alice")]);
    for _ in 0..3 {
        assert!(matches!(check(&auth, &alice).await, ForwardVerdict::Refuse { status: 403, .. }));
    }
    assert_eq!(service.requests(), 3);
    let failing = AuthService::answering("HTTP/1.1 502 Bad Gateway", b"").await;
    let auth = cached(failing.addr, &[], Duration::from_secs(30));
    for _ in 0..3 {
        assert!(matches!(check(&auth, &alice).await, ForwardVerdict::Unavailable(_)));
    }
    assert_eq!((failing.requests(), auth.cache.as_ref().map(Cache::len)), (3, Some(0)));
}

#[test]
fn entries_expire_after_the_period() {
    let cache = Cache::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let headers = pairs(&[("x-user-id", b"42")]);
    cache.insert([1; 32], headers.clone(), t0);
    assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(29)), Some(headers.clone()));
    assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(30)), None);
    assert_eq!(cache.get(&[2; 32], t0), None);
    // An expired entry makes room before any live one is evicted.
    cache.insert([2; 32], headers, t0 + Duration::from_secs(31));
    assert_eq!(cache.len(), 1);
}

#[test]
fn the_bound_holds_by_evicting_the_oldest() {
    let cache = Cache::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let key_of = |i: u32| {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    };
    for i in 0..=MAX_ENTRIES as u32 {
        cache.insert(key_of(i), vec![], t0 + Duration::from_micros(i as u64));
    }
    assert_eq!(cache.len(), MAX_ENTRIES);
    assert_eq!(cache.get(&key_of(0), t0), None, "the oldest went");
    assert!(cache.get(&key_of(1), t0).is_some() && cache.get(&key_of(MAX_ENTRIES as u32), t0).is_some());
    // The same credential again and again replaces its entry; the order queue stays bounded too.
    for i in 0..3 * MAX_ENTRIES as u64 {
        cache.insert(key_of(7), vec![], t0 + Duration::from_millis(i));
    }
    assert!(cache.len() <= MAX_ENTRIES && cache.get(&key_of(7), t0).is_some());
}

#[test]
fn the_key_tells_credentials_apart_and_needs_one() {
    let k = |headers: &[(&str, &[u8])]| key(&request("GET", "/", headers));
    assert_eq!(k(&[]), None);
    assert_eq!(k(&[("X-Api-Key", b"secret")]), None, "only Authorization and Cookie are credentials here");
    let a = k(&[("Authorization", b"Bearer a")]).unwrap();
    assert_eq!(k(&[("authorization", b"Bearer a")]), Some(a), "names are case-insensitive");
    assert_eq!(k(&[("Authorization", b"Bearer a"), ("X-Other", b"1")]), Some(a));
    let distinct = [
        k(&[("Authorization", b"Bearer a")]),
        k(&[("Authorization", b"Bearer b")]),
        k(&[("Cookie", b"Bearer a")]),
        k(&[("Authorization", b"ab"), ("Cookie", b"c")]),
        k(&[("Authorization", b"a"), ("Cookie", b"bc")]),
        k(&[("Cookie", b"ab")]),
        k(&[("Cookie", b"a"), ("Cookie", b"b")]),
        k(&[("Authorization", b"\xff\xfe")]),
    ];
    for (i, x) in distinct.iter().enumerate() {
        assert!(x.is_some());
        assert!(distinct[i + 1..].iter().all(|y| y != x), "key {i} collides");
    }
}
