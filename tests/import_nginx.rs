//! `wsgate import-nginx` on a corpus of real-world-shaped nginx configs
//! (tests/fixtures/nginx/, described in its README.md): for each, the exit code, the YAML
//! (golden `NAME.yaml`) and the report (golden `NAME.report`) are exactly as committed;
//! every usable output passes `wsgate -t` and is byte-identical run after run; and wsgate
//! started on it (listeners and backends moved to free loopback ports) proxies a WebSocket
//! echo and an HTTP request on every route to real backends.
//!
//! `UPDATE_GOLDEN=1 cargo test --test import_nginx` rewrites the goldens from the current
//! output (review the diff before committing it).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nginx");

/// A fixture: its golden files' stem, the nginx file (relative to FIXTURES), the exit code.
struct Case {
    name: &'static str,
    file: &'static str,
    exit: i32,
}

const CASES: &[Case] = &[
    Case { name: "recipe", file: "recipe.conf", exit: 0 },
    Case { name: "seed", file: "seed.conf", exit: 0 },
    Case { name: "pool", file: "pool.conf", exit: 0 },
    Case { name: "tls", file: "tls.conf", exit: 0 },
    Case { name: "servers", file: "servers.conf", exit: 0 },
    Case { name: "ip_hash", file: "ip_hash.conf", exit: 0 },
    Case { name: "cookie_hash", file: "cookie_hash.conf", exit: 0 },
    Case { name: "least_conn", file: "least_conn.conf", exit: 0 },
    Case { name: "includes", file: "includes/nginx.conf", exit: 0 },
    Case { name: "typos", file: "typos.conf", exit: 0 },
    Case { name: "syntax_error", file: "syntax_error.conf", exit: 2 },
    Case { name: "no_proxy", file: "no_proxy.conf", exit: 1 },
];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `wsgate import-nginx FILE ARGS...` with FIXTURES as the current directory.
fn import(file: &str, args: &[&str]) -> Run {
    let out = Command::new(wsgate_bin())
        .arg("import-nginx")
        .arg(file)
        .args(args)
        .current_dir(FIXTURES)
        .stdin(Stdio::null())
        .output()
        .expect("run wsgate import-nginx");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn golden(name: &str, ext: &str) -> PathBuf {
    Path::new(FIXTURES).join(format!("{name}.{ext}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn each_fixture_gives_its_golden_yaml_report_and_exit_code() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut wrong = Vec::new();
    for case in CASES {
        let run = import(case.file, &[]);
        let (yaml_path, report_path) = (golden(case.name, "yaml"), golden(case.name, "report"));
        if update {
            if run.stdout.is_empty() {
                let _ = std::fs::remove_file(&yaml_path);
            } else {
                std::fs::write(&yaml_path, &run.stdout).unwrap();
            }
            std::fs::write(&report_path, &run.stderr).unwrap();
        }
        if run.code != case.exit {
            wrong.push(format!("{}: exit {} instead of {}\n{}", case.name, run.code, case.exit, run.stderr));
        }
        if run.stdout != read(&yaml_path) {
            wrong.push(format!("{}: stdout differs from {}:\n{}", case.name, yaml_path.display(), run.stdout));
        }
        if run.stderr != read(&report_path) {
            wrong.push(format!("{}: report differs from {}:\n{}", case.name, report_path.display(), run.stderr));
        }
        // Every report line names a file and line (or, for the whole config, the file);
        // the last one sums up.
        let lines: Vec<&str> = run.stderr.lines().collect();
        let (summary, findings) = lines.split_last().expect("a report");
        assert!(summary.starts_with("wsgate import-nginx: "), "{}: {summary}", case.name);
        for line in findings {
            let place = line.split(": ").next().unwrap_or_default();
            assert!(
                place.ends_with(".conf") || place.rsplit_once(':').is_some_and(|(_, n)| n.parse::<usize>().is_ok()),
                "{}: {line}",
                case.name
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// `-o OUT` writes exactly the YAML of stdout (certificate paths aside, which are written as
/// seen from OUT's directory), and that file passes `wsgate -t`; a second run gives the
/// same bytes.
#[test]
fn every_usable_output_is_stable_and_passes_wsgate_t() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES.iter().filter(|c| c.exit == 0) {
        let out = dir.path().join(format!("{}.yaml", case.name));
        let run = import(case.file, &["-o", out.to_str().unwrap()]);
        assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}: {}", case.name, run.stderr);
        let written = read(&out);
        // A relative certificate is written as an absolute path for an output elsewhere.
        assert_eq!(written.replace(&format!("{FIXTURES}/"), ""), read(&golden(case.name, "yaml")), "{}", case.name);
        assert_eq!(import(case.file, &[]).stdout, import(case.file, &[]).stdout, "{}: not stable", case.name);
        let check = Command::new(wsgate_bin()).args(["-t", "-c"]).arg(&out).output().unwrap();
        let said = String::from_utf8_lossy(&check.stdout).to_string() + &String::from_utf8_lossy(&check.stderr);
        assert!(check.status.success(), "{}: wsgate -t refuses the output:\n{said}\n{written}", case.name);
    }
}

#[test]
fn the_typo_recipe_reports_each_mistake_on_its_line_and_uses_the_suggested_pool() {
    let run = import("typos.conf", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "typos.conf:5: mistake: map: stray `upgrade` after the last entry",
        "typos.conf:10: mistake: server: `127.0.0.1:3001` has no `server` keyword",
        "typos.conf:11: mistake: server: port 300 looks truncated: port 3000 (typos.conf:9) is in the same pool",
        "typos.conf:17: mistake: proxy_pass: no upstream `websockets`; the only upstream is `websocket` (typos.conf:8): using it",
        "typos.conf:18: info: proxy_http_version: 1.0: nginx cannot pass a WebSocket upgrade",
        "typos.conf:20: info: proxy_set_header: `Connection: upgrade` on every request",
        "typos.conf:16: info: location: no proxy_read_timeout for this WebSocket location: nginx closed sessions idle for 60s",
    ] {
        assert!(run.stderr.lines().any(|l| l.starts_with(expected)), "no line starting {expected:?} in\n{}", run.stderr);
    }
    assert!(run.stdout.contains("  - path_prefix: /ws/\n    upstream: websocket\n"), "{}", run.stdout);
    assert!(run.stdout.contains("      - 127.0.0.1:3001\n"), "the entry without `server` is read as one");
}

#[test]
fn a_syntax_error_names_file_line_and_what_was_expected() {
    let run = import("syntax_error.conf", &[]);
    assert_eq!((run.code, run.stdout.as_str()), (2, ""));
    assert_eq!(
        run.stderr.lines().next(),
        Some("syntax_error.conf:13: error: unexpected end of file; expected \"}\" closing `location` opened on line 8")
    );
}

#[test]
fn includes_are_read_from_nginx_prefix_with_globs_in_sorted_order() {
    let run = import("includes/nginx.conf", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header: Vec<&str> = run.stdout.lines().skip(1).take_while(|l| l.starts_with("#   ")).collect();
    assert_eq!(
        header,
        [
            "#   includes/nginx.conf",
            "#   includes/conf.d/chat.conf",
            "#   includes/snippets/websocket.conf",
            "#   includes/snippets/proxy-headers.conf",
            "#   includes/conf.d/map.conf",
            "#   includes/conf.d/upstreams.conf",
        ]
    );
    // The snippet's timeout reached the location that includes it; the report names the snippet.
    assert!(run.stdout.contains("    upstream: chat\n    websocket:\n      idle_timeout: 1h\n"), "{}", run.stdout);
    assert!(run.stderr.contains("includes/snippets/websocket.conf:5: info: proxy_read_timeout"), "{}", run.stderr);
    // With another prefix the snippets are not found: said, with the way out.
    let run = import("includes/nginx.conf", &["--prefix", "."]);
    assert!(
        run.stderr.contains("includes/nginx.conf:7: info: include: `./conf.d/*.conf` matches no file"),
        "{}",
        run.stderr
    );
}

/// docs/operations.md's worked example is the seed recipe's output and report, and the
/// typo'd recipe's mistakes, as the command prints them today.
#[test]
fn the_worked_example_in_the_docs_is_what_the_command_prints() {
    let docs = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"));
    for file in ["seed.yaml", "seed.report"] {
        let text = read(&Path::new(FIXTURES).join(file));
        assert!(docs.contains(&text), "docs/operations.md does not show {file} as it is:\n{text}");
    }
    let typos = read(&golden("typos", "report"));
    for line in typos.lines().filter(|l| l.contains(": mistake: ")) {
        assert!(docs.contains(line), "docs/operations.md does not show {line}");
    }
}

// ---------------------------------------------------------------- the outputs, live

/// Starts wsgate on fixture `name`'s golden YAML with every listener moved to a free
/// loopback port and every backend (but those in `unreachable`, left as written) replaced
/// by a WebSocket echo backend named after the address it stands for; then on every route
/// a WebSocket echo and a plain GET (200 from one of the route's pool) must go through.
fn proxies_every_route(name: &str, unreachable: &[&str]) {
    let text = read(&golden(name, "yaml"));
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut backends: BTreeMap<String, WsBackend> = BTreeMap::new();
    let mut pools: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pool, spec) in doc["upstreams"].as_mapping_mut().unwrap() {
        let mut names = Vec::new();
        for entry in spec["backends"].as_sequence_mut().unwrap() {
            let slot = if entry.is_mapping() { &mut entry["address"] } else { entry };
            let original = slot.as_str().unwrap().to_string();
            names.push(original.clone());
            if unreachable.contains(&original.as_str()) {
                continue;
            }
            let backend = backends.entry(original.clone()).or_insert_with(|| WsBackend::start(&original));
            *slot = serde_yaml::Value::from(backend.addr().to_string());
        }
        pools.insert(pool.as_str().unwrap().to_string(), names);
    }
    // The fixtures' certificate (the demo one, a CA) is for `wsgate -t`; clients here want
    // an end-entity certificate for localhost.
    let dir = tempfile::tempdir().unwrap();
    let (ca, key) = write_self_signed_cert(dir.path());
    let mut ports = Vec::new();
    for listener in doc["listeners"].as_sequence_mut().unwrap() {
        let port = free_port();
        listener["address"] = serde_yaml::Value::from(loopback(port));
        let tls = listener.get("tls").is_some();
        if tls {
            listener["tls"]["cert"] = serde_yaml::Value::from(ca.to_str().unwrap());
            listener["tls"]["key"] = serde_yaml::Value::from(key.to_str().unwrap());
        }
        ports.push((port, tls));
    }
    if let Some(server) = doc.get_mut("server").and_then(|s| s.as_mapping_mut()) {
        if server.contains_key("pid_file") {
            server.insert("pid_file".into(), dir.path().join("wsgate.pid").to_str().unwrap().into());
        }
    }
    let config = serde_yaml::to_string(&doc).unwrap();
    let all_ports: Vec<u16> = ports.iter().map(|p| p.0).collect();
    let gw = Wsgate::start_in_and_wait(dir, &RawYaml(&config), &all_ports);
    let (port, tls) = ports[0];
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for route in doc["routes"].as_sequence().unwrap() {
        let host =
            route.get("host").and_then(|h| h.as_str()).map_or("localhost".to_string(), |h| h.replace('*', "www"));
        let path = route["path_prefix"].as_str().unwrap();
        let pool = &pools[route["upstream"].as_str().unwrap()];
        let ca = tls.then_some(ca.as_path());
        runtime.block_on(async {
            let text = format!("hello {host}{path}");
            let echoed = connect_echo_close_as(addr, &host, path, ca, &text).await;
            assert_eq!(echoed, Ok(()), "{name}: WebSocket to {host}{path}\n{}", gw.logs());
            let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let (status, headers, body) = match ca {
                Some(ca) => https_request(addr, "localhost", ca, &raw).await,
                None => http_request(addr, &raw).await,
            };
            let answered_by = header(&headers, "x-backend").unwrap_or("-").to_string();
            assert_eq!((status, body.as_str()), (200, "ok"), "{name}: GET {host}{path}\n{}", gw.logs());
            assert!(pool.contains(&answered_by), "{name}: {host}{path} answered by {answered_by}, not one of {pool:?}");
        });
    }
    let sessions: usize = backends.values().map(WsBackend::sessions).sum();
    assert_eq!(sessions, doc["routes"].as_sequence().unwrap().len(), "{name}: one session per route");
}

#[test]
fn live_recipe() {
    proxies_every_route("recipe", &[]);
}

#[test]
fn live_seed() {
    proxies_every_route("seed", &[]);
}

#[test]
fn live_pool() {
    proxies_every_route("pool", &[]);
}

#[test]
fn live_tls() {
    proxies_every_route("tls", &[]);
}

#[test]
fn live_servers() {
    proxies_every_route("servers", &[]);
}

#[test]
fn live_ip_hash() {
    proxies_every_route("ip_hash", &[]);
}

#[test]
fn live_cookie_hash() {
    proxies_every_route("cookie_hash", &[]);
}

#[test]
fn live_least_conn() {
    proxies_every_route("least_conn", &[]);
}

#[test]
fn live_includes() {
    proxies_every_route("includes", &[]);
}

/// The typo'd recipe works as translated, with the suggested pool, even with the truncated
/// port left pointing at nothing (wsgate retries a refused connect on another backend).
#[test]
fn live_typos() {
    proxies_every_route("typos", &["127.0.0.1:300"]);
}
