use super::model::*;
use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn conf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf")
}

fn example() -> String {
    std::fs::read_to_string(conf_dir().join("example.yaml")).unwrap()
}

fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, "test.yaml", &conf_dir())
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

const MINIMAL: &str = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  app:
    backends: [127.0.0.1:3001]
routes:
  - upstream: app
";

#[test]
fn the_issue_example_is_accepted_with_its_values() {
    let c = parse_str(&example()).unwrap();
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.grace_period_seconds, Some(10));
    assert_eq!(c.drain_window, Duration::from_secs(9), "the window fits in the grace period");
    assert_eq!(c.listeners.len(), 2);
    assert!(c.listeners[1].tls.as_ref().unwrap().certificates[0].cert.ends_with("conf/tls/cert.pem"));
    assert_eq!(c.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    let chat = c.upstreams.iter().find(|u| u.name == "chat").unwrap();
    assert_eq!(chat.backends[1].weight, 2);
    assert_eq!(chat.connect_timeout, Duration::from_secs(2));
    assert_eq!(chat.health_check.kind, HealthCheckKind::Http);
    assert_eq!(chat.health_check.path, "/healthz");
    assert_eq!(chat.health_check.unhealthy_after, 2);
    let web = c.upstreams.iter().find(|u| u.name == "web").unwrap();
    assert_eq!(web.balance, Balance::ConsistentHash(HashKey::ClientIp));
    assert_eq!(c.routes[0].host, Some(HostPattern::Exact("chat.example.com".into())));
    assert_eq!(c.routes[0].websocket.allowed_origins, Some(vec!["https://chat.example.com".to_string()]));
    assert_eq!(c.routes[1].websocket.idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.routes[2].host_header, HostHeader::Backend);
    assert_eq!(c.routes[2].set_headers[0].0.as_str(), "x-served-by");
}

#[test]
fn defaults_are_applied() {
    let c = parse_str(MINIMAL).unwrap();
    let app = &c.upstreams[0];
    assert_eq!(app.balance, Balance::RoundRobin);
    assert_eq!(app.connect_timeout, Duration::from_secs(5));
    assert_eq!(app.read_timeout, Duration::from_secs(60));
    assert_eq!(app.retries, 2);
    assert_eq!(app.health_check.kind, HealthCheckKind::Tcp);
    assert_eq!(app.health_check.interval, Duration::from_secs(5));
    let r = &c.routes[0];
    assert_eq!(r.path_prefix, "/");
    assert_eq!(r.name, "route0");
    assert!(r.websocket.enabled);
    assert_eq!(r.websocket.idle_timeout, Duration::from_secs(3600));
}

#[test]
fn a_typo_key_names_its_path_and_line() {
    let text = example().replace("      unhealthy_after: 2", "      unhealty_after: 2");
    let e = &errors(&text)[0];
    assert_eq!(e.key, "upstreams.chat.health_check.unhealty_after");
    assert!(e.message.contains("unknown field `unhealty_after`"), "{e}");
    let line = text.lines().position(|l| l == "      unhealty_after: 2").map(|i| i + 1);
    assert_eq!(e.line, line);
    assert_eq!(e.file, "test.yaml");
}

#[test]
fn a_bad_duration_names_its_path_and_line() {
    let text = example().replace("interval: 2s", "interval: 2 seconds");
    let e = &errors(&text)[0];
    assert_eq!(e.key, "upstreams.chat.health_check.interval");
    assert!(e.message.contains("invalid duration"), "{e}");
    let line = text.lines().position(|l| l.contains("interval: 2 seconds")).map(|i| i + 1);
    assert_eq!(e.line, line);
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("test.yaml:{}:", line.unwrap())), "{shown}");
}

#[test]
fn an_unknown_upstream_is_located() {
    let text = example().replace("    upstream: web", "    upstream: webb");
    let e = &errors(&text)[0];
    assert_eq!(e.key, "routes[2].upstream");
    assert!(e.message.contains("unknown upstream `webb`"), "{e}");
    let line = text.lines().position(|l| l == "    upstream: webb").map(|i| i + 1);
    assert_eq!(e.line, line);
}

#[test]
fn a_missing_cert_is_a_config_error() {
    let text = example().replace("tls/cert.pem", "tls/missing.pem");
    let e = &errors(&text)[0];
    assert_eq!(e.key, "listeners[1].tls.cert");
    assert!(e.message.contains("missing.pem"), "{e}");
    assert_eq!(e.line, Some(12));
}

#[test]
fn a_broken_cert_is_a_config_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::copy(conf_dir().join("tls/key.pem"), dir.path().join("key.pem")).unwrap();
    let text = "listeners:\n  - address: 127.0.0.1:8443\n    tls: {cert: cert.pem, key: key.pem}\nupstreams:\n  a: {backends: [127.0.0.1:1]}\nroutes:\n  - upstream: a\n";
    let e = parse(text, "t.yaml", dir.path()).unwrap_err().0;
    assert_eq!(e[0].key, "listeners[0].tls.cert", "{}", e[0]);
}

#[test]
fn every_semantic_error_is_reported_at_once() {
    let text = "\
listeners:
  - address: 127.0.0.1:8080
  - address: 127.0.0.1:8080
upstreams:
  empty:
    backends: []
  bad:
    backends: [127.0.0.1:1]
    balance: round_robin
    hash_key: client_ip
routes:
  - upstream: nowhere
    path_prefix: api
  - upstream: bad
    host: 'bad host'
";
    let keys: Vec<String> = errors(text).into_iter().map(|e| e.key).collect();
    for expected in [
        "listeners[1].address",
        "upstreams.empty.backends",
        "upstreams.bad.hash_key",
        "routes[0].upstream",
        "routes[0].path_prefix",
        "routes[1].host",
    ] {
        assert!(keys.contains(&expected.to_string()), "missing {expected} in {keys:?}");
    }
}

#[test]
fn server_settings_pass_through_and_unknown_ones_are_refused() {
    let good = format!("server:\n  threads: 3\n  pid_file: run/w.pid\n  error_log: w.log\n{MINIMAL}");
    let c = parse_str(&good).unwrap();
    assert_eq!(c.server.threads, 3);
    assert!(c.server.pid_file.ends_with("conf/run/w.pid"), "relative to the config dir: {}", c.server.pid_file);
    let bad = format!("server:\n  threds: 3\n{MINIMAL}");
    let e = &errors(&bad)[0];
    assert_eq!(e.key, "server.threds");
    assert_eq!(e.line, Some(2));
    let wrong_type = format!("server:\n  threads: many\n{MINIMAL}");
    assert_eq!(errors(&wrong_type)[0].key, "server");
}

#[test]
fn route_and_pool_values_are_checked() {
    let cases = [
        ("    backends: [127.0.0.1:3001]", "    backends: [not-an-address]", "upstreams.app.backends[0]"),
        (
            "    backends: [127.0.0.1:3001]",
            "    backends: [127.0.0.1:3001, 127.0.0.1:3001]",
            "upstreams.app.backends[1]",
        ),
        (
            "    backends: [127.0.0.1:3001]",
            "    backends: [{address: 127.0.0.1:3001, weight: 0}]",
            "upstreams.app.backends[0].weight",
        ),
        (
            "    backends: [127.0.0.1:3001]",
            "    backends: [127.0.0.1:3001]\n    balance: consistent_hash\n    hash_key: 'header:'",
            "upstreams.app.hash_key",
        ),
        (
            "    backends: [127.0.0.1:3001]",
            "    backends: [127.0.0.1:3001]\n    balance: fastest",
            "upstreams.app.balance",
        ),
        (
            "  - upstream: app",
            "  - upstream: app\n    request_headers: {set: {Connection: close}}",
            "routes[0].request_headers.set.Connection",
        ),
        (
            "  - upstream: app",
            "  - upstream: app\n    websocket: {idle_timeout: 0s}",
            "routes[0].websocket.idle_timeout",
        ),
        ("  - upstream: app", "  - upstream: app\n  - upstream: app", "routes[1]"),
    ];
    for (from, to, key) in cases {
        let text = MINIMAL.replace(from, to);
        let errs = errors(&text);
        assert!(errs.iter().any(|e| e.key == key), "expected an error at {key}, got {errs:?}");
    }
}

#[test]
fn the_drain_window_and_pingoras_grace_period_agree() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.drain_window, Duration::from_secs(30));
    assert_eq!(c.server.grace_period_seconds, Some(32));
    assert_eq!(c.server.graceful_shutdown_timeout_seconds, Some(5));
    let c = parse_str(&format!("drain: {{window: 5s}}\n{MINIMAL}")).unwrap();
    assert_eq!((c.drain_window, c.server.grace_period_seconds), (Duration::from_secs(5), Some(7)));
    let e = errors(&format!("server: {{grace_period_seconds: 3}}\ndrain: {{window: 5s}}\n{MINIMAL}"));
    assert_eq!(e[0].key, "drain.window");
}

#[test]
fn wildcard_hosts_and_prefixes_are_normalized() {
    let text =
        MINIMAL.replace("  - upstream: app", "  - upstream: app\n    host: '*.Example.com'\n    path_prefix: /api/");
    let c = parse_str(&text).unwrap();
    assert_eq!(c.routes[0].host, Some(HostPattern::WildcardSuffix(".example.com".into())));
    assert_eq!(c.routes[0].path_prefix, "/api");
    // Prefixes are compared with normalised request paths, so they are normalised alike.
    for (written, normal) in [("/%77s/", "/ws"), ("//a/./b/../ws", "/a/ws"), ("/a%2fb", "/a%2Fb")] {
        let c = parse_str(
            &MINIMAL.replace("  - upstream: app", &format!("  - upstream: app\n    path_prefix: '{written}'")),
        )
        .unwrap();
        assert_eq!(c.routes[0].path_prefix, normal, "{written}");
    }
}

#[test]
fn tls_listeners_take_several_certificates_and_name_the_bad_one() {
    let tls = |body: &str| {
        format!("listeners:\n  - address: 127.0.0.1:8443\n    tls: {body}\nupstreams:\n  a: {{backends: [127.0.0.1:1]}}\nroutes:\n  - upstream: a\n")
    };
    let ok = parse(
        &tls("{cert: tls/cert.pem, key: tls/key.pem, certificates: [{cert: tls/cert.pem, key: tls/key.pem}]}"),
        "t.yaml",
        &conf_dir(),
    )
    .unwrap();
    assert_eq!(ok.listeners[0].tls.as_ref().unwrap().certificates.len(), 2);
    let only_list =
        parse(&tls("{certificates: [{cert: tls/cert.pem, key: tls/key.pem}], http2: false}"), "t.yaml", &conf_dir())
            .unwrap();
    assert!(!only_list.listeners[0].tls.as_ref().unwrap().http2);
    let ws_over_h2 = |body: &str| parse(&tls(body), "t.yaml", &conf_dir()).map(|c| c.listeners[0].tls.clone().unwrap());
    assert!(ws_over_h2("{cert: tls/cert.pem, key: tls/key.pem}").unwrap().websocket_over_http2, "on by default");
    assert!(!ws_over_h2("{cert: tls/cert.pem, key: tls/key.pem, http2: false}").unwrap().websocket_over_http2);
    let off = "{cert: tls/cert.pem, key: tls/key.pem, websocket_over_http2: false}";
    assert!(!ws_over_h2(off).unwrap().websocket_over_http2);
    let e =
        ws_over_h2("{cert: tls/cert.pem, key: tls/key.pem, http2: false, websocket_over_http2: true}").unwrap_err().0;
    assert_eq!(
        (e[0].key.as_str(), e[0].message.as_str()),
        ("listeners[0].tls.websocket_over_http2", "needs `http2: true`")
    );

    let e = parse(&tls("{cert: tls/cert.pem}"), "t.yaml", &conf_dir()).unwrap_err().0;
    assert_eq!((e[0].key.as_str(), e[0].message.as_str()), ("listeners[0].tls.key", "`cert` needs its `key`"));
    let e = parse(&tls("{http2: true}"), "t.yaml", &conf_dir()).unwrap_err().0;
    assert_eq!(e[0].key, "listeners[0].tls");
    let e = parse(&tls("{cert: tls/cert.pem, key: tls/key.pem, certificates: [{cert: tls/cert.pem, key: tls/key.pem}, {cert: tls/none.pem, key: tls/key.pem}]}"), "t.yaml", &conf_dir()).unwrap_err().0;
    assert_eq!(e[0].key, "listeners[0].tls.certificates[1].cert", "{}", e[0]);
    assert!(e[0].message.contains("none.pem"), "{}", e[0]);
}

#[test]
fn limits_timeouts_and_ipv6_prefix_are_checked() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.send_timeout, Duration::from_secs(60));
    let c = parse_str(&format!("{MINIMAL}limits: {{keepalive_timeout: 2m, ipv6_prefix: 120, send_timeout: 1500ms}}\n"))
        .unwrap();
    assert_eq!(c.limits.keepalive_timeout, Duration::from_secs(120));
    assert_eq!(c.limits.send_timeout, Duration::from_millis(1500));
    assert_eq!(c.limits.ipv6_prefix, 120);
    assert_eq!(parse_str(MINIMAL).unwrap().limits.ipv6_prefix, 64);
    for (value, key) in [
        ("header_timeout: 0s", "limits.header_timeout"),
        ("keepalive_timeout: 0s", "limits.keepalive_timeout"),
        ("keepalive_timeout: 1500ms", "limits.keepalive_timeout"),
        ("send_timeout: 999ms", "limits.send_timeout"),
        ("send_timeout: 0s", "limits.send_timeout"),
        ("send_timeout: soon", "limits.send_timeout"),
        ("ipv6_prefix: 0", "limits.ipv6_prefix"),
        ("ipv6_prefix: 129", "limits.ipv6_prefix"),
    ] {
        let errs = errors(&format!("{MINIMAL}limits: {{{value}}}\n"));
        assert!(
            errs.iter().any(|e| e.key == key && e.line.is_some()),
            "expected an error at {key} with its line, got {errs:?}"
        );
    }
}

#[test]
fn session_balancing_keys_are_read_with_their_defaults() {
    let text = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  chat:
    backends: [127.0.0.1:3001, 127.0.0.1:3002]
    balance: least_sessions
    max_sessions_per_backend: 5000
    queue: {size: 1000, timeout: 5s}
    slow_start: 30s
    passive_health: {failures: 3, eject: 30s}
    on_backend_down: keep
    rebalance: {max_skew: 1.25, closes_per_second: 20}
  plain:
    backends: [127.0.0.1:3003]
routes:
  - {path_prefix: /ws, upstream: chat, websocket: {max_lifetime: 24h}}
  - {upstream: plain}
";
    let c = parse_str(text).unwrap();
    let chat = &c.upstreams[0];
    assert_eq!(chat.balance, Balance::LeastSessions);
    assert_eq!(chat.max_sessions_per_backend, Some(5000));
    assert_eq!(chat.queue, Some(SessionQueue { size: 1000, timeout: Duration::from_secs(5) }));
    assert_eq!(chat.slow_start, Some(Duration::from_secs(30)));
    assert_eq!(chat.passive_health, Some(PassiveHealth { failures: 3, eject: Duration::from_secs(30) }));
    assert_eq!(chat.on_backend_down, OnBackendDown::Keep);
    assert_eq!(chat.rebalance, Some(Rebalance { max_skew: 1.25, closes_per_second: 20 }));
    assert_eq!(c.routes[0].websocket.max_lifetime, Some(Duration::from_secs(86_400)));
    let plain = &c.upstreams[1];
    assert_eq!((plain.max_sessions_per_backend, plain.queue, plain.slow_start), (None, None, None));
    assert_eq!((plain.passive_health, plain.rebalance), (None, None));
    assert_eq!(plain.on_backend_down, OnBackendDown::Close, "moving sessions off a dead backend is the default");
    assert_eq!(c.routes[1].websocket.max_lifetime, None);
}

#[test]
fn session_balancing_mistakes_name_their_keys() {
    let text = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  chat:
    backends: [127.0.0.1:3001]
    max_sessions_per_backend: 0
    queue: {size: 0, timeout: 0s}
    passive_health: {failures: 0, eject: 0s}
    rebalance: {max_skew: 1.0, closes_per_second: 0}
    slow_start: 0s
routes:
  - {upstream: chat, websocket: {max_lifetime: 0s}}
";
    let keys: Vec<String> = errors(text).into_iter().map(|e| e.key).collect();
    for key in [
        "upstreams.chat.max_sessions_per_backend",
        "upstreams.chat.queue.size",
        "upstreams.chat.queue.timeout",
        "upstreams.chat.passive_health.failures",
        "upstreams.chat.passive_health.eject",
        "upstreams.chat.rebalance.max_skew",
        "upstreams.chat.rebalance.closes_per_second",
        "upstreams.chat.slow_start",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not reported: {keys:?}");
    }
    assert!(keys.contains(&"routes[0].websocket.max_lifetime".to_string()), "{keys:?}");
    // A wrong value of an enum stops the file's parse: reported alone, at its key and line.
    let bad_enum = text.replace("    slow_start: 0s\n", "    on_backend_down: drop\n");
    let e = errors(&bad_enum).remove(0);
    assert_eq!((e.key.as_str(), e.line), ("upstreams.chat.on_backend_down", Some(10)), "{e:?}");
    let queue_alone = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  other:
    backends: [127.0.0.1:3002]
    queue: {size: 10, timeout: 1s}
routes:
  - {upstream: other}
";
    let keys: Vec<String> = errors(queue_alone).into_iter().map(|e| e.key).collect();
    assert!(keys.contains(&"upstreams.other.queue".to_string()), "a queue needs a cap: {keys:?}");
}

#[test]
fn keepalive_and_client_rates_parse_with_their_defaults() {
    let text = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  chat: {backends: [127.0.0.1:3001]}
routes:
  - path_prefix: /ws
    upstream: chat
    websocket:
      ping_interval: 30s
      client_messages_per_second: {rate: 50, burst: 200}
      client_bytes_per_second: {rate: 1MiB, burst: 4MiB}
      on_rate_exceeded: close
  - {upstream: chat, websocket: {client_bytes_per_second: {rate: 1000}}}
";
    let c = parse_str(text).unwrap();
    let ws = &c.routes[0].websocket;
    let keepalive = Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(10) };
    assert_eq!(ws.keepalive, Some(keepalive), "ping_timeout defaults to 10 s");
    assert_eq!(ws.client_rate.messages, Some(Bucket { rate: 50.0, burst: 200.0 }));
    assert_eq!(ws.client_rate.bytes, Some(Bucket { rate: 1_048_576.0, burst: 4_194_304.0 }));
    assert_eq!(ws.client_rate.on_exceeded, OnRateExceeded::Close);
    let other = &c.routes[1].websocket;
    assert_eq!(other.keepalive, None, "keepalive is off by default");
    assert_eq!(other.client_rate.bytes, Some(Bucket { rate: 1000.0, burst: 1000.0 }), "burst: one second's worth");
    assert_eq!((other.client_rate.messages, other.client_rate.on_exceeded), (None, OnRateExceeded::Throttle));
}

#[test]
fn keepalive_and_client_rate_mistakes_name_their_keys() {
    let text = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  chat: {backends: [127.0.0.1:3001]}
routes:
  - {path_prefix: /a, upstream: chat, websocket: {ping_timeout: 5s}}
  - {path_prefix: /b, upstream: chat, websocket: {ping_interval: 0s, ping_timeout: 0s}}
  - {path_prefix: /c, upstream: chat, websocket: {client_messages_per_second: {rate: 0, burst: 0.5}}}
";
    let keys: Vec<String> = errors(text).into_iter().map(|e| e.key).collect();
    for key in [
        "routes[0].websocket.ping_timeout",
        "routes[1].websocket.ping_interval",
        "routes[1].websocket.ping_timeout",
        "routes[2].websocket.client_messages_per_second.rate",
        "routes[2].websocket.client_messages_per_second.burst",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not reported: {keys:?}");
    }
    let bad_size = text.replace("{rate: 0, burst: 0.5}", "{rate: 1, burst: 2}").replace(
        "  - {path_prefix: /a, upstream: chat, websocket: {ping_timeout: 5s}}\n",
        "  - {path_prefix: /a, upstream: chat, websocket: {client_bytes_per_second: {rate: lots}}}\n",
    );
    let e = errors(&bad_size).remove(0);
    assert_eq!(e.key, "routes[0].websocket.client_bytes_per_second.rate", "{e:?}");
}

#[test]
fn config_watch_is_off_by_default_and_the_named_files_are_every_file_the_config_reads() {
    let c = parse_str(MINIMAL).unwrap();
    assert!(!c.config_watch);
    assert!(c.named_files.is_empty(), "{:?}", c.named_files);
    let text = "\
config_watch: true
listeners:
  - address: 127.0.0.1:8443
    tls: {cert: tls/cert.pem, key: tls/key.pem, certificates: [{cert: tls/cert.pem, key: tls/key.pem}]}
access_log: {path: /tmp/wsgate-access.jsonl}
upstreams:
  a: {backends: [127.0.0.1:1], tls: {ca_file: tls/cert.pem, sni: backend.test}}
routes:
  - upstream: a
";
    let c = parse_str(text).unwrap();
    assert!(c.config_watch);
    let tls = conf_dir().join("tls");
    assert_eq!(c.named_files, [tls.join("cert.pem"), tls.join("key.pem")], "deduplicated, outputs left out");
}

#[test]
fn a_type_error_names_its_key_once_and_sizes_take_units() {
    let text = format!("{MINIMAL}    websocket: {{max_message_bytes: [1]}}\n");
    let e = parse_str(&text).unwrap_err().0;
    assert_eq!(e[0].key, "routes[0].websocket.max_message_bytes");
    assert!(e[0].message.starts_with("invalid type"), "{}", e[0]);
    let text =
        format!("{MINIMAL}    websocket: {{max_message_bytes: 1MiB}}\nlimits: {{max_request_header_bytes: 16KiB}}\n");
    let c = parse_str(&text).unwrap();
    assert_eq!(c.routes[0].websocket.max_message_bytes, 1 << 20);
    assert_eq!(c.limits.max_request_header_bytes, 16 << 10);
    let plain = parse_str(&format!("{MINIMAL}    websocket: {{max_message_bytes: 70000}}\n")).unwrap();
    assert_eq!(plain.routes[0].websocket.max_message_bytes, 70_000);
}
