//! Each token place: the token is found there, and `prepare` takes it out and leaves
//! everything else as the client sent it (unless `keep_token`).

use super::*;

/// A route that takes its token from `places` and forwards `sub` as `X-User-Id`.
fn route(places: &str, keep_token: bool) -> Arc<RouteAuth> {
    route_auth(&format!(
        "keys: jwks.json\nalgorithms: [RS256]\ntoken_from: [{places}]\nkeep_token: {keep_token}\nforward_claims: {{sub: X-User-Id}}"
    ))
}

/// Authenticates `req`, then prepares it for the backend; returns where the token was.
fn admit(auth: &RouteAuth, req: &mut RequestHeader) -> TokenPlace {
    let identity = jwt(auth).authenticate(req, at(NOW)).unwrap_or_else(|f| panic!("{f}"));
    jwt(auth).prepare(req, &identity);
    assert_eq!(req.headers.get("x-user-id").unwrap(), "alice");
    identity.found_in
}

fn header(req: &RequestHeader, name: &str) -> Vec<String> {
    req.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
}

fn target(req: &RequestHeader) -> String {
    String::from_utf8_lossy(req.raw_path()).into_owned()
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_the_header_is_removed() {
    let auth = route("header:authorization", false);
    let token = rs256(&claims());
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut req = request("/ws", &[("Authorization", &format!("{scheme}  {token} "))]);
        assert_eq!(admit(&auth, &mut req), TokenPlace::Bearer);
        assert!(header(&req, "authorization").is_empty());
    }
}

#[test]
fn another_header_holds_the_raw_token() {
    let auth = route("header:X-Access-Token", false);
    let mut req = request("/ws", &[("X-Access-Token", &rs256(&claims())), ("X-Other", "kept")]);
    assert_eq!(admit(&auth, &mut req), TokenPlace::Header(http::HeaderName::from_static("x-access-token")));
    assert!(header(&req, "x-access-token").is_empty());
    assert_eq!(header(&req, "x-other"), ["kept"]);
}

#[test]
fn a_query_parameter_is_decoded_and_removed_keeping_the_others_in_order() {
    let auth = route("query:access_token", false);
    let token = rs256(&claims());
    let cases = [
        (format!("/ws?a=1&access_token={token}&b=%20x&c"), "/ws?a=1&b=%20x&c"),
        (format!("/ws?access_token={token}"), "/ws"),
        // The name and the value percent-encoded; every parameter of that name goes.
        (format!("/ws/x?z=0&access%5Ftoken={}&access_token=stale", token.replace('.', "%2E")), "/ws/x?z=0"),
    ];
    for (sent, forwarded) in cases {
        let mut req = request(&sent, &[]);
        assert_eq!(admit(&auth, &mut req), TokenPlace::Query("access_token".into()));
        assert_eq!(target(&req), forwarded);
    }
}

#[test]
fn a_cookie_is_removed_keeping_the_others() {
    let auth = route("cookie:session", false);
    let token = rs256(&claims());
    let mut req = request("/ws", &[("Cookie", &format!("a=1; session={token}; b=2"))]);
    assert_eq!(admit(&auth, &mut req), TokenPlace::Cookie("session".into()));
    assert_eq!(header(&req, "cookie"), ["a=1; b=2"]);
    // Quoted (RFC 6265 allows it), in the second of two Cookie headers (as HTTP/2 sends
    // them), and the only cookie of its header: that header goes, the other stays.
    let mut req = request("/ws", &[("Cookie", "theme=dark"), ("Cookie", &format!("session=\"{token}\""))]);
    admit(&auth, &mut req);
    assert_eq!(header(&req, "cookie"), ["theme=dark"]);
    let mut req = request("/ws", &[("Cookie", &format!("session={token}"))]);
    admit(&auth, &mut req);
    assert!(header(&req, "cookie").is_empty());
}

#[test]
fn a_subprotocol_entry_is_removed_keeping_the_others() {
    let auth = route("subprotocol", false);
    let token = rs256(&claims());
    let mut req = request("/ws", &[("Sec-WebSocket-Protocol", &format!("chat.v1.example, {token}, json"))]);
    assert_eq!(admit(&auth, &mut req), TokenPlace::Subprotocol);
    assert_eq!(header(&req, "sec-websocket-protocol"), ["chat.v1.example, json"]);
    let mut req = request("/ws", &[("Sec-WebSocket-Protocol", &token)]);
    admit(&auth, &mut req);
    assert!(header(&req, "sec-websocket-protocol").is_empty());
    // A protocol name with dots is not taken for a token.
    let only_names = request("/ws", &[("Sec-WebSocket-Protocol", "v1.chat.example, mqtt")]);
    assert_eq!(result_of(jwt(&auth), &only_names), AuthResult::Missing);
}

#[test]
fn places_are_tried_in_the_listed_order_and_only_the_found_one_is_emptied() {
    let auth = route("query:access_token, header:Authorization", false);
    let token = rs256(&claims());
    let bearer = format!("Bearer {token}");
    let mut req = request(&format!("/ws?access_token={token}"), &[("Authorization", &bearer)]);
    assert_eq!(admit(&auth, &mut req), TokenPlace::Query("access_token".into()));
    assert_eq!((target(&req), header(&req, "authorization")), ("/ws".to_string(), vec![bearer.clone()]));
    // An empty parameter is no token: the next place is looked at.
    let mut req = request("/ws?access_token=", &[("Authorization", &bearer)]);
    assert_eq!(admit(&auth, &mut req), TokenPlace::Bearer);
    // The first token found decides, even a bad one: no falling through to the next.
    let req = request("/ws?access_token=bad.to.ken", &[("Authorization", &bearer)]);
    assert_eq!(result_of(jwt(&auth), &req), AuthResult::Invalid);
}

#[test]
fn keep_token_leaves_the_request_as_sent_but_for_the_claims() {
    let auth = route("query:access_token, cookie:session, subprotocol", true);
    let token = rs256(&claims());
    for (target_sent, headers) in [
        (format!("/ws?access_token={token}&a=1"), vec![]),
        ("/ws".to_string(), vec![("Cookie", format!("session={token}"))]),
        ("/ws".to_string(), vec![("Sec-WebSocket-Protocol", format!("chat, {token}"))]),
    ] {
        let sent: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut req = request(&target_sent, &sent);
        admit(&auth, &mut req);
        assert_eq!(target(&req), target_sent);
        for (name, value) in &headers {
            assert_eq!(header(&req, name), std::slice::from_ref(value));
        }
    }
}

#[test]
fn token_places_parse_and_print_as_configured() {
    for text in ["header:Authorization", "header:x-token", "query:access_token", "cookie:session", "subprotocol"] {
        assert_eq!(TokenPlace::parse(text).unwrap().to_string(), text);
    }
    assert_eq!(TokenPlace::parse("header: AUTHORIZATION"), Ok(TokenPlace::Bearer));
    for bad in ["header:", "header:bad name", "query:", "cookie:", "cookie:a;b", "form:token", "Authorization", ""] {
        assert!(TokenPlace::parse(bad).is_err(), "{bad}");
    }
}
