//! TLS to backends: verified against the pool's `ca_file` by default, failing (502) when the
//! certificate cannot be verified, and never silently unverified: an empty SNI with
//! verification on is a config error; `verify: false` must be explicit.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_over_tls_are_verified_unless_explicitly_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let backend = HttpsBackend::start(&cert, &key).await.addr;
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n\
         upstreams:\n\
         \x20 verified: {{backends: ['{backend}'], tls: {{sni: localhost, ca_file: '{ca}'}}, retries: 0}}\n\
         \x20 unknown_ca: {{backends: ['{backend}'], tls: {{sni: localhost}}, retries: 0, health_check: {{interval: 1h, unhealthy_after: 5}}}}\n\
         \x20 unverified: {{backends: ['{backend}'], tls: {{verify: false}}, retries: 0}}\n\
         routes:\n  - {{path_prefix: /verified, upstream: verified}}\n  - {{path_prefix: /unknown, upstream: unknown_ca}}\n  - {{path_prefix: /unverified, upstream: unverified}}\n",
        ca = cert.display()
    );
    let gw = Wsgate::start_and_wait(&yaml, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, headers, body) = get(addr, "x", "/verified").await;
    assert_eq!((status, header(&headers, "x-backend"), body.as_str()), (200, Some("tls"), "ok"), "{}", gw.log());
    let (status, _, _) = get(addr, "x", "/unknown").await;
    assert_eq!(status, 502, "a certificate no trusted CA signed is refused");
    assert_eq!(get(addr, "x", "/unverified").await.0, 200, "{}\n{}", gw.log(), gw.stdout());
}

#[test]
fn an_empty_sni_with_verification_on_is_a_config_error() {
    let yaml = "listeners:\n  - address: 127.0.0.1:1\nupstreams:\n  a: {backends: ['127.0.0.1:2'], tls: {}}\nroutes:\n  - upstream: a\n";
    let (ok, out) = check_config(yaml);
    assert!(!ok);
    assert!(out.contains("upstreams.a.tls.sni") && out.contains("verify: false"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    let (ok, out) = check_config_in(dir.path(), "w.yaml", &yaml.replace("tls: {}", "tls: {sni: x, ca_file: bad.pem}"));
    assert!(!ok);
    assert!(out.contains("upstreams.a.tls.ca_file"), "{out}");
}
