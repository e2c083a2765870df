//! How a load subcommand reaches the WebSocket: `ws://` over plain TCP (the default, as
//! run.sh uses it), `wss://` over TLS with ALPN `http/1.1` (an HTTP/1.1 upgrade), or
//! `wss://` with `--h2`: TLS with ALPN `h2` and an HTTP/2 extended CONNECT (RFC 8441, see
//! `h2ws.rs`). All three hand tokio-tungstenite a byte stream, so the workloads are generic
//! over it.

use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::WebSocketStream;

use crate::{Header, STEP_TIMEOUT};

/// What a WebSocket can run over here.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// `ws://`: plain TCP, HTTP/1.1 upgrade.
    Ws,
    /// `wss://`: TLS (ALPN `http/1.1`), HTTP/1.1 upgrade.
    Wss,
    /// `wss://` with `--h2`: TLS (ALPN `h2`), one HTTP/2 stream per session.
    H2,
}

impl Transport {
    pub fn of(url: &str, h2: bool) -> Result<Transport, String> {
        match (url.split_once("://").map(|(s, _)| s), h2) {
            (Some("ws"), false) => Ok(Transport::Ws),
            (Some("wss"), false) => Ok(Transport::Wss),
            (Some("wss"), true) => Ok(Transport::H2),
            (Some("ws"), true) => Err("--h2 needs a wss:// URL (HTTP/2 here is over TLS)".into()),
            _ => Err(format!("bad URL `{url}`: expected ws:// or wss://")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Wss => "wss-h1",
            Transport::H2 => "wss-h2",
        }
    }
}

/// Accepts any server certificate: **bench only**. wsgate's listener in bench/h2ws.sh has a
/// throwaway self-signed certificate and every connection is to 127.0.0.1, so there is
/// nothing to authenticate. The handshake signatures are still checked (the server proves
/// it holds the key it sent), so the client does the same crypto work a real one does.
#[derive(Debug)]
struct LoopbackOnlyVerifier(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for LoopbackOnlyVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &pki_types::CertificateDer<'_>,
        _intermediates: &[pki_types::CertificateDer<'_>],
        _server_name: &pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(alpn: &'static [u8]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LoopbackOnlyVerifier(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to the URL's host and port, offering only `alpn`; fails unless the
/// server picked it. Returns the stream and the URL parsed.
pub async fn tls_connect(url: &str, alpn: &'static [u8]) -> Result<(TlsStream<TcpStream>, Uri), String> {
    static H1: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static H2: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = if alpn == b"h2" { &H2 } else { &H1 }.get_or_init(|| client_config(alpn)).clone();
    let uri: Uri = url.parse().map_err(|e| format!("bad URL `{url}`: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in `{url}`"))?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("server name `{host}`: {e}"))?;
    let step = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        match tls.get_ref().1.alpn_protocol() {
            Some(p) if p == alpn => Ok(tls),
            other => Err(format!("ALPN: asked for {:?}, server chose {:?}", String::from_utf8_lossy(alpn), other.map(String::from_utf8_lossy))),
        }
    };
    let tls = tokio::time::timeout(STEP_TIMEOUT, step).await.map_err(|_| "TLS connect timed out".to_string())??;
    Ok((tls, uri))
}

pub type WssWs = WebSocketStream<TlsStream<TcpStream>>;

/// `wss://` as HTTP/1.1: TLS with ALPN `http/1.1`, then the usual upgrade (with `headers`).
pub async fn connect_wss(url: &str, headers: &[Header]) -> Result<WssWs, String> {
    let (tls, _) = tls_connect(url, b"http/1.1").await?;
    let mut req = url.into_client_request().map_err(|e| format!("connect: {e}"))?;
    req.headers_mut().extend(headers.iter().cloned());
    match tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::client_async_with_config(req, tls, None)).await {
        Err(_) => Err("upgrade timed out".into()),
        Ok(Err(e)) => Err(format!("upgrade: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}
