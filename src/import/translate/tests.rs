//! Whole configs through the translation: what nginx's scoping does to a location, what
//! wsgate's global routes and shared pools change, and every key the writer can emit read
//! back by wsgate's own config parser.

use super::translate;
use crate::import::model::Output;
use crate::import::parser::parse;
use crate::import::paths::PathRules;
use crate::import::report::Report;
use crate::import::yaml::render;
use std::path::Path;

fn run(text: &str) -> (Option<Output>, Vec<String>) {
    let tree = parse(text, 0).unwrap();
    let files = ["t.conf".to_string()];
    let paths = PathRules { prefix: "".into(), out_dir: "".into() };
    let mut report = Report::new();
    let out = translate(&tree, &files, &paths, &mut report);
    (out, report.lines(&files))
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn a_lone_proxy_set_header_in_a_location_drops_the_servers_others() {
    let (out, lines) =
        run("server { listen 80; proxy_set_header Host $host; proxy_set_header Upgrade $http_upgrade;\n\
         location /a { proxy_pass http://127.0.0.1:1; proxy_set_header X-A 1; }\n\
         location /b { proxy_pass http://127.0.0.1:1; } }");
    let out = out.unwrap();
    assert_eq!(out.routes[0].set_headers, [("X-A".to_string(), "1".to_string())]);
    assert!(out.routes[1].set_headers.is_empty());
    // /a lost Host (and Upgrade) as nginx scopes them; /b kept both.
    assert!(has(&lines, "t.conf:2: info: location: no proxy_set_header Host"), "{lines:?}");
    assert!(!has(&lines, "t.conf:3: info: location: no proxy_set_header Host"), "{lines:?}");
    assert_eq!(out.upstreams.len(), 1, "one pool for one address");
}

#[test]
fn one_route_per_host_and_path_on_every_listener() {
    let (out, lines) = run("server { listen 8080; location / { proxy_pass http://127.0.0.1:1; } }\n\
         server { listen 8081; location / { proxy_pass http://127.0.0.1:2; } }");
    let out = out.unwrap();
    assert_eq!(out.routes.len(), 1);
    assert_eq!(out.listeners.len(), 1, "the second server proxies nothing that is kept");
    assert!(
        has(&lines, "t.conf:2: warning: location: host (any) and path / are already routed by t.conf:1"),
        "{lines:?}"
    );
}

#[test]
fn tls_servers_share_a_port_the_default_servers_certificate_first() {
    let (out, lines) = run(
        "server { listen 443 ssl; server_name a.test; ssl_certificate a.pem; ssl_certificate_key a.key;\n\
           location / { proxy_pass http://127.0.0.1:1; } }\n\
         server { listen 443 ssl default_server; server_name b.test; ssl_certificate b.pem; ssl_certificate_key b.key;\n\
           location / { proxy_pass http://127.0.0.1:2; } }",
    );
    let out = out.unwrap();
    let tls = out.listeners[0].tls.clone().unwrap();
    assert_eq!((tls.cert.as_str(), tls.more.clone()), ("b.pem", vec![("a.pem".to_string(), "a.key".to_string())]));
    assert!(!tls.http2);
    assert!(has(&lines, "written as tls.http2: false"), "{lines:?}");
    assert!(render(&out).contains("        - {cert: a.pem, key: a.key}\n      http2: false\n"), "{}", render(&out));
}

#[test]
fn http2_on_at_the_http_level_and_quic_listens() {
    let (out, lines) = run("http { http2 on; ssl_certificate c.pem; ssl_certificate_key c.key;\n\
         server { listen 443 ssl; listen 443 quic reuseport; location / { proxy_pass http://127.0.0.1:1; } } }");
    let out = out.unwrap();
    assert_eq!(out.listeners.len(), 1);
    assert!(out.listeners[0].tls.as_ref().unwrap().http2, "http2 on is inherited from http");
    assert!(has(&lines, "t.conf:2: info: listen: not translated: QUIC"), "{lines:?}");
    assert!(!has(&lines, "mistake"), "{lines:?}");
}

#[test]
fn a_tls_server_without_a_certificate_has_no_listener() {
    let (out, lines) = run("server { listen 443 ssl; listen 80; location / { proxy_pass http://127.0.0.1:1; } }");
    let addresses: Vec<String> = out.unwrap().listeners.into_iter().map(|l| l.address).collect();
    assert_eq!(addresses, ["0.0.0.0:80"]);
    assert!(has(&lines, "mistake: server: listens with ssl but has no usable ssl_certificate"), "{lines:?}");
}

#[test]
fn https_backends_and_a_pool_used_both_ways() {
    let (out, lines) = run("upstream api { server 10.0.0.1:443; }\n\
         server { listen 80; location /a { proxy_pass https://api; } location /b { proxy_pass http://api; } }");
    let out = out.unwrap();
    let pools: Vec<(&str, bool)> = out.upstreams.iter().map(|p| (p.name.as_str(), p.tls.is_some())).collect();
    assert_eq!(pools, [("api", true), ("api_tls", false)]);
    assert!(!out.upstreams[0].tls.as_ref().unwrap().verify);
    assert!(has(&lines, "nginx does not check its certificate"), "{lines:?}");
}

#[test]
fn pool_timeouts_are_merged_longest_first() {
    let (out, lines) = run("upstream u { server 127.0.0.1:1; }\n\
         server { listen 80;\n location /a { proxy_pass http://u; proxy_connect_timeout 2s; proxy_read_timeout 5s; }\n\
         location /b { proxy_pass http://u; proxy_connect_timeout 4s; } }");
    let pool = &out.unwrap().upstreams[0];
    assert_eq!(pool.connect_timeout, Some(std::time::Duration::from_secs(4)));
    assert_eq!(pool.read_timeout, Some(std::time::Duration::from_secs(5)));
    assert!(
        has(&lines, "t.conf:4: warning: proxy_connect_timeout: approximately: pool u's connect_timeout"),
        "{lines:?}"
    );
}

#[test]
fn a_missing_semicolon_before_a_brace_is_a_mistake_but_read() {
    let (out, lines) = run("server {\n listen 80;\n location / {\n  proxy_pass http://127.0.0.1:1\n }\n}");
    assert_eq!(out.unwrap().routes.len(), 1);
    assert!(has(&lines, "t.conf:4: mistake: proxy_pass: missing `;` before `}`"), "{lines:?}");
}

#[test]
fn nothing_proxied_is_an_error() {
    let (out, lines) = run("server { listen 80; root /srv; }");
    assert!(out.is_none());
    assert_eq!(
        lines[0],
        "t.conf: error: nothing to route: no server has a location whose proxy_pass could be translated"
    );
}

#[test]
fn a_server_whose_listens_do_not_translate_has_no_listener() {
    let (out, lines) = run("server { listen unix:/run/a.sock; location / { proxy_pass http://127.0.0.1:1; } }");
    assert!(out.is_none());
    assert!(has(&lines, "t.conf: error: nowhere to listen"), "{lines:?}");
}

#[test]
fn defaults_nginx_assumes_are_said() {
    let (out, lines) = run("server { location / { proxy_pass http://127.0.0.1:1; } }\nset_real_ip_from 10.0.0.0/8;\nreal_ip_header X-Forwarded-For;");
    let out = out.unwrap();
    assert_eq!(out.listeners[0].address, "0.0.0.0:80");
    assert_eq!(out.trusted_proxies, ["10.0.0.0/8"]);
    assert!(has(&lines, "t.conf:1: info: server: no listen: nginx listens on *:80"), "{lines:?}");
}

/// Every key the writer can emit, read back by wsgate's own parser (which refuses unknown
/// keys): the writer's spelling is the configuration reference's.
#[test]
fn every_key_the_writer_emits_is_one_wsgate_reads() {
    let (out, lines) = run(
        "worker_processes 2; pid run/w.pid;\n\
         http { access_log off; keepalive_timeout 30; send_timeout 20; client_header_timeout 5;\n\
         set_real_ip_from 10.0.0.0/8; real_ip_header X-Forwarded-For;\n\
         limit_conn_zone $binary_remote_addr zone=c:1m; limit_req_zone $remote_addr zone=r:1m rate=600r/m;\n\
         limit_conn c 50; limit_req zone=r;\n\
         upstream chat { hash $cookie_sid; sticky cookie pin expires=2h; server 127.0.0.1:3001 max_fails=2 fail_timeout=20s slow_start=30s; server 127.0.0.1:3002 weight=3; }\n\
         upstream rt { least_conn; server 127.0.0.1:3003; }\n\
         server { listen 127.0.0.1:8080 proxy_protocol; server_name .example.com;\n\
           location /ws { proxy_pass http://chat; proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 2h; proxy_connect_timeout 1s; }\n\
           location /rt { proxy_pass http://rt; proxy_set_header Host $proxy_host; proxy_set_header X-Env \"a b\"; proxy_set_header Cookie \"\"; proxy_read_timeout 90s; }\n\
           location /tls { proxy_pass https://localhost:8443; proxy_ssl_verify on; proxy_ssl_name backend.example.com; }\n\
           location /ip { proxy_pass http://127.0.0.1:3004; proxy_set_header Host $proxy_host; } } }",
    );
    let out = out.unwrap_or_else(|| panic!("{lines:?}"));
    let yaml = render(&out);
    for needle in [
        "server:\n  threads: 2\n  pid_file: run/w.pid\n",
        "trusted_proxies:\n  - 10.0.0.0/8\n",
        "access_log:\n  path: off\n",
        "    hash_key: cookie:sid\n    connect_timeout: 1s\n    passive_health:\n      failures: 2\n      eject: 20s\n    slow_start: 30s\n    affinity:\n      cookie: pin\n      ttl: 2h\n",
        "    balance: least_sessions\n    read_timeout: 90s\n",
        "    tls:\n      sni: backend.example.com\n",
        "  - host: \"*.example.com\"\n",
        "    host_header: rt\n    request_headers:\n      set:\n        X-Env: \"a b\"\n      remove:\n        - Cookie\n",
        "    host_header: backend\n",
        "limits:\n  max_concurrent_per_ip: 50\n  requests_per_second_per_ip: 10\n  header_timeout: 5s\n  keepalive_timeout: 30s\n  send_timeout: 20s\n",
        "    proxy_protocol: true\n",
    ] {
        assert!(yaml.contains(needle), "{needle:?} not in\n{yaml}");
    }
    let config = crate::config::parse(&yaml, "out.yaml", Path::new("/nonexistent"));
    let config = config.unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!((config.upstreams.len(), config.routes.len()), (4, 8));
}

mod random {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "server",
        "upstream",
        "location",
        "listen",
        "proxy_pass",
        "proxy_set_header",
        "server_name",
        "map",
        "http",
        "include",
        "ssl_certificate",
        "ssl_certificate_key",
        "proxy_read_timeout",
        "proxy_connect_timeout",
        "limit_conn",
        "limit_req",
        "limit_req_zone",
        "hash",
        "ip_hash",
        "least_conn",
        "keepalive",
        "pid",
        "worker_processes",
        "access_log",
        "off",
        "on",
        "http://a",
        "https://b:1/x",
        "http://127.0.0.1:3000/",
        "127.0.0.1:3000",
        "127.0.0.1:300",
        "[::1]:8080",
        "443",
        "80",
        "ssl",
        "http2",
        "default_server",
        "$host",
        "$http_upgrade",
        "Host",
        "Upgrade",
        "Connection",
        "upgrade",
        "\"\"",
        "~",
        "=",
        "^~",
        "/ws",
        "/",
        "/a/",
        "*.x.test",
        ".y.test",
        "_",
        "weight=2",
        "max_fails=0",
        "fail_timeout=5s",
        "backup",
        "down",
        "$cookie_a",
        "zone=z:1m",
        "rate=5r/s",
        "z",
        "10",
        "1h",
        "0",
        "-1",
        "a b",
        "'q\\'x'",
        "@named",
        "unix:/s",
    ];

    fn directive(depth: u32) -> BoxedStrategy<String> {
        let words = prop::collection::vec(prop::sample::select(WORDS), 1..4).prop_map(|w| w.join(" "));
        if depth == 0 {
            return words.prop_map(|w| format!("{w};")).boxed();
        }
        let block = prop::collection::vec(directive(depth - 1), 0..5);
        (words, prop::option::of(block))
            .prop_map(|(w, block)| match block {
                None => format!("{w};"),
                Some(inner) => format!("{w} {{\n{}\n}}", inner.join("\n")),
            })
            .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// Any tree of known directives with odd arguments: no panic, and whatever is
        /// written is YAML whose every route names a pool that is written too.
        #[test]
        fn never_panics_and_writes_consistent_yaml(config in prop::collection::vec(directive(3), 0..8)) {
            let (out, lines) = run(&config.join("\n"));
            prop_assert!(lines.iter().all(|l| l.starts_with("t.conf")));
            if let Some(out) = out {
                let yaml: serde_yaml::Value = serde_yaml::from_str(&render(&out)).unwrap();
                for route in yaml["routes"].as_sequence().unwrap() {
                    let pool = route["upstream"].as_str().unwrap();
                    prop_assert!(yaml["upstreams"].get(pool).is_some(), "{pool} not written");
                }
                prop_assert!(!yaml["listeners"].as_sequence().unwrap().is_empty());
            }
        }
    }
}
