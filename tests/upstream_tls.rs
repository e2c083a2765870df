//! TLS to backends: verified against the pool's `ca_file` by default, failing (502) when the
//! certificate cannot be verified, and never silently unverified: an empty SNI with
//! verification on is a config error; `verify: false` must be explicit.
mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// An HTTPS backend answering every request with 200 and `X-Backend: tls`.
async fn https_backend(cert: &std::path::Path, key: &std::path::Path) -> SocketAddr {
    use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nX-Backend: tls\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_over_tls_are_verified_unless_explicitly_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let backend = https_backend(&cert, &key).await;
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
    std::fs::write(dir.path().join("bad.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let (ok, out) = check_config_in(dir.path(), "w.yaml", &yaml.replace("tls: {}", "tls: {sni: x, ca_file: bad.pem}"));
    assert!(!ok);
    assert!(out.contains("upstreams.a.tls.ca_file"), "{out}");
}
