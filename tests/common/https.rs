//! An HTTPS backend for TLS-to-backend tests (rustls, ring provider as Pingora uses).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::backends::read_head;

/// An HTTPS backend (on the caller's runtime) answering every request with 200 `ok`,
/// `X-Backend: tls` and `Connection: close`; requests for `/healthz` are counted.
pub struct HttpsBackend {
    pub addr: SocketAddr,
    health_hits: Arc<AtomicUsize>,
}

impl HttpsBackend {
    pub async fn start(cert: &std::path::Path, key: &std::path::Path) -> HttpsBackend {
        use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health_hits = Arc::new(AtomicUsize::new(0));
        let hits = health_hits.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, hits) = (acceptor.clone(), hits.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = Vec::new();
                    let Ok(Some(head)) = read_head(&mut tls, &mut buf).await else { return };
                    if head.path == "/healthz" {
                        hits.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nX-Backend: tls\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsBackend { addr, health_hits }
    }

    /// `/healthz` requests answered so far.
    pub fn health_hits(&self) -> usize {
        self.health_hits.load(Ordering::SeqCst)
    }
}

/// A TLS connection to wsgate on 127.0.0.1:`port` that negotiated HTTP/2 by ALPN (as
/// `localhost`, trusting `cert`); nothing sent on it yet.
pub async fn h2_tls_connect(
    port: u16,
    cert: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let mut config = (*super::client::tls_client_config(cert)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 is offered");
    tls
}

/// An HTTP/2 client (the `h2` crate) over `h2_tls_connect`, its connection driven by a task
/// of its own, ready for a request.
pub async fn h2_client(port: u16, cert: &std::path::Path) -> h2::client::SendRequest<bytes::Bytes> {
    let (client, connection) = h2::client::handshake(h2_tls_connect(port, cert).await).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}
