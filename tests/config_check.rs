//! `wsgate -t`: the shipped example passes; each broken variant fails naming the key and
//! the line; every error is listed; and the binary refuses to start on a broken file.
//!
//! The configs here stay raw text (`RawYaml`), not `Config`: they are the shipped example
//! and edits of its text, and the line numbers in the errors are part of what is checked.
mod common;
use common::*;
use std::path::Path;

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/example.yaml")).unwrap()
}

/// Checks `yaml` placed next to copies of the example's certificates.
fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped_certs(dir.path());
    check_config_in(dir.path(), "wsgate.yaml", &RawYaml(yaml))
}

#[test]
fn the_shipped_configs_pass() {
    let (ok, out) = check(&example());
    assert!(ok, "{out}");
    assert!(out.contains("is valid"), "{out}");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wsgate.yaml");
    let out = std::process::Command::new(wsgate_bin()).arg("-t").arg("-c").arg(&shipped).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn broken_variants_name_the_key_and_line() {
    // (what, replaced by, the key the error names); the line expected is wherever the
    // replaced text sits in the example.
    let cases = [
        ("      unhealthy_after: 2", "      unhealthy_afterr: 2", "upstreams.chat.health_check.unhealthy_afterr"),
        ("    upstream: web", "    upstream: webb", "routes[2].upstream"),
        ("      interval: 2s", "      interval: 2 s", "upstreams.chat.health_check.interval"),
        ("      cert: tls/cert.pem", "      cert: tls/nope.pem", "listeners[1].tls.cert"),
        ("  threads: 2", "  threadz: 2", "server.threadz"),
    ];
    for (from, to, key) in cases {
        let text = example().replacen(from, to, 1);
        assert_ne!(text, example(), "{from} not found in the example");
        let line = format!(":{}:", text.lines().position(|l| l == to).expect("the replaced line") + 1);
        let (ok, out) = check(&text);
        assert!(!ok, "{to} must fail");
        assert!(out.contains(key), "{to}: output must name {key}:\n{out}");
        assert!(out.contains(&format!("wsgate.yaml{line}")), "{to}: output must give the line {line}:\n{out}");
    }
}

#[test]
fn every_error_is_listed_and_the_exit_code_is_1() {
    let text = example()
        .replace("    upstream: web", "    upstream: webb")
        .replace("  - address: 127.0.0.1:8443", "  - address: 127.0.0.1:8080");
    let dir = tempfile::tempdir().unwrap();
    copy_shipped_certs(dir.path());
    std::fs::write(dir.path().join("w.yaml"), text).unwrap();
    let out =
        std::process::Command::new(wsgate_bin()).arg("-t").arg("-c").arg(dir.path().join("w.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("routes[2].upstream") && stderr.contains("listeners[1].address"), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn a_broken_config_does_not_start_and_version_and_help_work() {
    let out = std::process::Command::new(wsgate_bin()).arg("-c").arg("/nonexistent/wsgate.yaml").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
    let out = std::process::Command::new(wsgate_bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wsgate "));
    let out = std::process::Command::new(wsgate_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["-c", "-t", "-d", "-u"] {
        assert!(help.contains(flag), "{help}");
    }
}
