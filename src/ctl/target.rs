//! Where the admin API is and which token it wants: from the config file the server reads,
//! or from `--admin URL` and `--token-file`.

use super::args::{Connection, DEFAULT_CONFIG};
use super::error::CtlError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) address: SocketAddr,
    pub(crate) token: Option<String>,
    /// The config's `drain.window` when a config was read (the default `drain --window`).
    pub(crate) drain_window: Option<Duration>,
}

pub(crate) fn resolve(connection: &Connection) -> Result<Target, CtlError> {
    let token_override = connection.token_file.as_deref().map(read_token).transpose()?;
    if let Some(url) = &connection.admin {
        return Ok(Target { address: parse_admin_url(url)?, token: token_override.flatten(), drain_window: None });
    }
    let path = connection.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG));
    let config = crate::config::load(path).map_err(|errors| {
        CtlError::Usage(format!(
            "{errors}\ncannot read the admin API's address from {} (or pass --admin URL)",
            path.display()
        ))
    })?;
    let Some(admin) = config.admin else {
        return Err(CtlError::Usage(format!(
            "{} has no `admin` section, so the admin API is off; add `admin: {{address: 127.0.0.1:9102}}` \
             (and a token_file) to it, or pass --admin URL",
            path.display()
        )));
    };
    Ok(Target {
        address: connectable(admin.address),
        token: token_override.unwrap_or(admin.token),
        drain_window: Some(config.drain_window),
    })
}

/// The token file's content, trimmed as the server trims it; `None` when empty.
fn read_token(path: &Path) -> Result<Option<String>, CtlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::Usage(format!("cannot read the token file {}: {e}", path.display())))?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_string()))
}

/// `http://HOST:PORT` (a trailing `/` allowed) or bare `HOST:PORT`. The admin listener
/// speaks plain HTTP only, so any other scheme is a mistake worth naming.
pub(crate) fn parse_admin_url(url: &str) -> Result<SocketAddr, CtlError> {
    let authority = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    let wrong = |why: &str| CtlError::Usage(format!("--admin {url}: {why}; expected e.g. http://127.0.0.1:9102"));
    if authority.contains("://") {
        return Err(wrong("the admin API speaks plain http://"));
    }
    if authority.contains('/') {
        return Err(wrong("a base URL has no path"));
    }
    let address = authority.to_socket_addrs().map_err(|e| wrong(&e.to_string()))?.next();
    address.map(connectable).ok_or_else(|| wrong("the host name resolves to no address"))
}

/// A listener on 0.0.0.0 or [::] accepts on every address, but one cannot connect to the
/// unspecified address portably: use the loopback address of the same family.
pub(crate) fn connectable(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_the_loopback_of_its_family() {
        let cases = [
            ("0.0.0.0:9102", "127.0.0.1:9102"),
            ("[::]:9102", "[::1]:9102"),
            ("10.0.0.7:9102", "10.0.0.7:9102"),
            ("[::1]:9102", "[::1]:9102"),
        ];
        for (listen, expected) in cases {
            assert_eq!(connectable(listen.parse().unwrap()), expected.parse::<SocketAddr>().unwrap(), "{listen}");
        }
    }

    #[test]
    fn admin_urls_are_plain_http_base_urls() {
        for (url, expected) in [
            ("http://127.0.0.1:9102", "127.0.0.1:9102"),
            ("http://127.0.0.1:9102/", "127.0.0.1:9102"),
            ("127.0.0.1:9102", "127.0.0.1:9102"),
            ("http://[::1]:9102", "[::1]:9102"),
            ("http://0.0.0.0:9102", "127.0.0.1:9102"),
        ] {
            assert_eq!(parse_admin_url(url), Ok(expected.parse().unwrap()), "{url}");
        }
        for url in ["https://127.0.0.1:9102", "http://127.0.0.1:9102/admin", "http://127.0.0.1", "http://:x"] {
            assert!(matches!(parse_admin_url(url), Err(CtlError::Usage(m)) if m.contains(url)), "{url}");
        }
    }

    #[test]
    fn a_token_file_is_trimmed_and_an_empty_one_means_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(read_token(&path), Ok(Some("s3cret".to_string())));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read_token(&path), Ok(None));
        assert!(matches!(read_token(&dir.path().join("missing")), Err(CtlError::Usage(m)) if m.contains("missing")));
    }
}
