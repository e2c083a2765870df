//! Process logging: env_logger (`RUST_LOG`), minus some of Pingora's lines.
//!
//! Pingora logs every downstream connection that fails while its request head is being
//! read ("Fail to proxy: Downstream ReadError ... while reading request headers"), or while
//! its answer is written to a client that stopped reading ("Fail to proxy: Downstream
//! WriteError ... send timeout", "... Downstream WriteTimedout ..." on HTTP/2), and every
//! HTTP/2 connection whose preface does not arrive ("H2 handshake error") at error level.
//! Any client can cause those at will (a header timeout, a half-sent head, a slow read), so
//! under a slowloris attack it would be one error line per attacking connection. wsgate
//! counts those (`wsgate_refusals_total{cause="header_timeout"|"send_timeout"}`) and logs
//! the first; Pingora's lines are kept at debug level.

use log::{Level, Log, Metadata, Record};

pub fn init() {
    let inner = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora_load_balancing=error"),
    )
    .build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(QuietClientErrors { inner })).is_ok() {
        log::set_max_level(max);
    }
}

struct QuietClientErrors {
    inner: env_logger::Logger,
}

/// Is this Pingora's per-connection line about a client's broken or timed-out request head,
/// or a client that stopped reading its answer?
pub(crate) fn is_client_head_error(target: &str, level: Level, message: &str) -> bool {
    if level != Level::Error {
        return false;
    }
    match target {
        "pingora_proxy" => {
            message.starts_with("Fail to proxy: Downstream")
                && (message.contains("while reading request headers")
                    || message.contains("send timeout")
                    || message.starts_with("Fail to proxy: Downstream WriteTimedout"))
        }
        "pingora_core::apps" => message.starts_with("H2 handshake error"),
        _ => false,
    }
}

impl Log for QuietClientErrors {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.level() == Level::Error && record.target().starts_with("pingora_") {
            let message = record.args().to_string();
            if is_client_head_error(record.target(), record.level(), &message) {
                let demoted = Metadata::builder().level(Level::Debug).target(record.target()).build();
                if self.inner.enabled(&demoted) {
                    self.inner.log(
                        &Record::builder()
                            .metadata(demoted)
                            .args(format_args!("{message}"))
                            .module_path(record.module_path())
                            .file(record.file())
                            .line(record.line())
                            .build(),
                    );
                }
                return;
            }
        }
        self.inner.log(record)
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pingoras_client_head_errors_are_demoted() {
        let line = "Fail to proxy: Downstream ReadError context: while reading request headers cause: request header timeout, downstream session type: h1";
        assert!(is_client_head_error("pingora_proxy", Level::Error, line));
        assert!(!is_client_head_error(
            "pingora_proxy",
            Level::Error,
            "Fail to proxy: Upstream ConnectRefused context: ..."
        ));
        assert!(!is_client_head_error("wsgate::proxy", Level::Error, line));
        assert!(!is_client_head_error("pingora_proxy", Level::Warn, line));
        let slow_reader = "Fail to proxy: Downstream WriteError context: Peer: addr: 127.0.0.1:1, scheme: HTTP cause:  context: while writing body cause: send timeout: the client accepted no bytes, status: 0";
        assert!(is_client_head_error("pingora_proxy", Level::Error, slow_reader));
        assert!(is_client_head_error(
            "pingora_proxy",
            Level::Error,
            "Fail to proxy: Downstream WriteTimedout context: while writing h2 request body, timeout: 1s"
        ));
        assert!(!is_client_head_error(
            "pingora_proxy",
            Level::Error,
            "Fail to proxy: Downstream WriteError context: while writing body cause: Broken pipe"
        ));
        assert!(is_client_head_error(
            "pingora_core::apps",
            Level::Error,
            "H2 handshake error HandshakeError context: while h2 handshaking with client cause: request header timeout"
        ));
        assert!(!is_client_head_error("pingora_core::apps", Level::Error, "other"));
    }
}
