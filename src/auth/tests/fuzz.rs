//! Tokens, cookies and query strings are the attacker's: `authenticate` and `prepare` must
//! never panic on any of them, and after `prepare` the place a token was found in holds
//! none any more.

use super::*;
use http::HeaderValue;
use proptest::prelude::*;
use std::sync::LazyLock;

/// A good token, so some generated requests carry one whole and reach `prepare` for real.
static TOKEN: LazyLock<String> = LazyLock::new(|| rs256(&claims()));

static ROUTE: LazyLock<Arc<RouteAuth>> = LazyLock::new(|| {
    route_auth(
        "keys: jwks.json\nalgorithms: [RS256, ES256]\ntoken_from: [query:access_token, header:Authorization, \
         header:X-Token, cookie:session, subprotocol]\nforward_claims: {sub: X-User-Id, tenant: X-Tenant}",
    )
});

/// What token parsing splits on and looks for.
const PIECES: &str =
    "Bearer |bearer\t|eyJ|ey|.|..|%|%2E|%zz|%5F|=|&|;|,| |\"|?|access_token|access%5Ftoken|session|a|-_|\u{e9}";

/// The good token, alone or as a place would hold it.
fn good_token(prefix: &str) -> Vec<u8> {
    format!("{prefix}{}", *TOKEN).into_bytes()
}

/// Bytes made of pieces, random bytes and the good token.
fn messy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(PIECES.split('|').collect::<Vec<_>>()).prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
        prop::sample::select(vec!["", "Bearer ", "access_token=", "session="]).prop_map(good_token),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A request with `query` after `/ws?` (or none, if Pingora refuses the target) and each
/// header whose bytes make a header value.
fn request_of(query: &[u8], headers: &[(&'static str, &[u8])]) -> RequestHeader {
    let target = [b"/ws?".as_slice(), query].concat();
    let mut req = RequestHeader::build("GET", &target, None)
        .or_else(|_| RequestHeader::build("GET", b"/ws", None))
        .expect("a plain path is a valid target");
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            req.append_header(*name, value).expect("a valid name and value");
        }
    }
    req
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authenticate_and_prepare_never_panic(
        query in messy(), authorization in messy(), x_token in messy(), cookie in messy(), protocol in messy()
    ) {
        let headers: [(&'static str, &[u8]); 5] = [
            ("Authorization", &authorization),
            ("X-Token", &x_token),
            ("Cookie", &cookie),
            ("Cookie", &query),
            ("Sec-WebSocket-Protocol", &protocol),
        ];
        let jwt = jwt(&ROUTE);
        if let Ok(identity) = jwt.authenticate(&request_of(&query, &headers), at(NOW)) {
            let mut req = request_of(&query, &headers);
            jwt.prepare(&mut req, &identity);
            prop_assert!(identity.found_in.find(&req).is_none(), "{} still holds a token", identity.found_in);
            prop_assert_eq!(req.headers.get("x-user-id").map(HeaderValue::as_bytes), Some(b"alice".as_slice()));
        }
        // Whatever place a token is said to be in, preparing empties it and keeps the rest parseable.
        let places = ["query:access_token", "header:Authorization", "header:X-Token", "cookie:session", "subprotocol"];
        for place in places.map(|p| TokenPlace::parse(p).unwrap()) {
            let mut req = request_of(&query, &headers);
            let identity = Identity { user: None, expires_at: None, found_in: place.clone(), forward: vec![] };
            jwt.prepare(&mut req, &identity);
            prop_assert!(place.find(&req).is_none(), "{} still holds a token", place);
            prop_assert!(req.headers.get("x-user-id").is_none());
            let _ = jwt.authenticate(&req, at(NOW));
        }
    }
}
