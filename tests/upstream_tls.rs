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
    let pool = |tls: UpstreamTls| Upstream::one(backend).tls(tls).retries(0);
    let cfg = Config::new()
        .listen(port)
        .upstream("verified", pool(UpstreamTls::new().sni("localhost").ca_file(&cert)))
        .upstream(
            "unknown_ca",
            pool(UpstreamTls::new().sni("localhost"))
                .health_check(HealthCheck::new().interval("1h").unhealthy_after(5)),
        )
        .upstream("unverified", pool(UpstreamTls::new().verify(false)))
        .route(Route::to("verified").path_prefix("/verified"))
        .route(Route::to("unknown_ca").path_prefix("/unknown"))
        .route(Route::to("unverified").path_prefix("/unverified"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, headers, body) = get(addr, "x", "/verified").await;
    assert_eq!((status, header(&headers, "x-backend"), body.as_str()), (200, Some("tls"), "ok"), "{}", gw.log());
    let (status, _, _) = get(addr, "x", "/unknown").await;
    assert_eq!(status, 502, "a certificate no trusted CA signed is refused");
    assert_eq!(get(addr, "x", "/unverified").await.0, 200, "{}\n{}", gw.log(), gw.stdout());
}

#[test]
fn an_empty_sni_with_verification_on_is_a_config_error() {
    let with_tls = |tls: UpstreamTls| {
        Config::new().listen(1).upstream("a", Upstream::one("127.0.0.1:2").tls(tls)).route(Route::to("a"))
    };
    let (ok, out) = check_config(&with_tls(UpstreamTls::new()));
    assert!(!ok);
    assert!(out.contains("upstreams.a.tls.sni") && out.contains("verify: false"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    let (ok, out) = check_config_in(dir.path(), "w.yaml", &with_tls(UpstreamTls::new().sni("x").ca_file("bad.pem")));
    assert!(!ok);
    assert!(out.contains("upstreams.a.tls.ca_file"), "{out}");
}
