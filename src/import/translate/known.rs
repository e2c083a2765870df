//! What the report says about a directive the translation has no use for: `info` when
//! wsgate does not need it (it does that by itself, or the directive only tunes nginx),
//! `warning` when something nginx did is lost.

use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;

/// Reports `d` as not translated, with the reason the table gives.
pub(crate) fn report(d: &Directive, report: &mut Report) {
    let (level, why) = reason(d);
    report.at(d, level, why);
}

fn reason(d: &Directive) -> (Level, &'static str) {
    use Level::{Info, Warning};
    let name = d.name();
    let family = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    match name {
        "sendfile" | "tcp_nopush" | "types" | "default_type" | "types_hash_max_size" | "types_hash_bucket_size"
        | "charset" | "etag" | "aio" | "directio" | "output_buffers" | "if_modified_since" => {
            (Info, "not needed: wsgate serves no files")
        }
        _ if family(&["open_file_cache"]) => (Info, "not needed: wsgate serves no files"),
        "root" | "alias" | "index" | "try_files" | "autoindex" | "autoindex_exact_size" | "autoindex_localtime"
        | "autoindex_format" | "expires" | "internal" => (Warning, "not translated: wsgate serves no files"),
        "proxy_buffering" | "proxy_buffers" | "proxy_buffer_size" | "proxy_busy_buffers_size"
        | "proxy_request_buffering" | "proxy_max_temp_file_size" | "proxy_temp_file_write_size" | "proxy_temp_path"
        | "client_body_buffer_size" | "client_body_temp_path" | "chunked_transfer_encoding" => {
            (Info, "not needed: wsgate streams bodies through without buffering them to disk")
        }
        "proxy_cache_bypass" | "proxy_no_cache" => (Info, "not needed: wsgate has no cache to bypass"),
        _ if family(&["proxy_cache"]) => (Warning, "not translated: wsgate has no cache"),
        "worker_connections" => {
            (Info, "not translated: wsgate's limits.max_connections (default 10000) bounds client connections")
        }
        "use" | "multi_accept" | "accept_mutex" | "accept_mutex_delay" | "worker_aio_requests" => {
            (Info, "not needed: nginx's event loop tuning")
        }
        "ssl_protocols" | "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_session_cache" | "ssl_session_timeout"
        | "ssl_session_tickets" | "ssl_ecdh_curve" | "ssl_dhparam" | "ssl_stapling" | "ssl_stapling_verify"
        | "ssl_trusted_certificate" | "ssl_buffer_size" | "ssl_early_data" | "ssl_conf_command" => {
            (Info, "not translated: wsgate offers TLS 1.2 and 1.3 with rustls's modern cipher suites")
        }
        "ssl_verify_client" | "ssl_client_certificate" | "ssl_verify_depth" | "ssl_crl" => {
            (Warning, "not translated: wsgate does not verify client certificates")
        }
        "log_format" => (Info, "not translated: wsgate's access log is JSON lines (docs/observability.md)"),
        "access_log" => (Info, "not translated: wsgate writes its access log as JSON lines to stdout (access_log.path)"),
        "error_log" => (Info, "not translated: wsgate logs to stderr; RUST_LOG sets the level"),
        "open_log_file_cache" | "log_not_found" | "log_subrequest" => (Info, "not needed: nginx's log tuning"),
        _ if family(&["gzip", "brotli"]) => (Warning, "not translated: wsgate does not compress responses"),
        "add_header" | "add_trailer" | "more_set_headers" | "more_clear_headers" | "proxy_hide_header"
        | "proxy_pass_header" | "proxy_ignore_headers" => {
            (Warning, "not translated: wsgate does not change response headers")
        }
        "proxy_redirect" | "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_cookie_flags" => {
            (Warning, "not translated: wsgate does not rewrite responses")
        }
        _ if family(&["sub_filter"]) => (Warning, "not translated: wsgate does not rewrite responses"),
        "return" | "rewrite" | "rewrite_log" | "error_page" | "set" | "break" | "recursive_error_pages" => {
            (Warning, "not translated: wsgate has no rewrites, redirects or error pages")
        }
        "if" => (Warning, "not translated: wsgate has no conditionals; what this block does is skipped"),
        "limit_except" => (Warning, "not translated: wsgate has no per-method rules; what this block does is skipped"),
        "allow" | "deny" => (Warning, "not translated: wsgate has no address allow/deny lists"),
        "auth_basic" | "auth_basic_user_file" => (Warning, "not translated: wsgate has no basic authentication"),
        "auth_request" | "auth_request_set" => {
            (Warning, "not translated: see a route's auth.forward, which does the same (docs/configuration.md)")
        }
        "auth_jwt" | "auth_jwt_key_file" => {
            (Warning, "not translated: see a route's auth.jwt (docs/configuration.md)")
        }
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => (
            Info,
            "approximately: wsgate retries a failed connect on another backend (the pool's retries, default 2), and an idempotent request whose kept-alive connection the backend had closed",
        ),
        "resolver" | "resolver_timeout" => {
            (Info, "not needed: wsgate resolves backend names with the system resolver (a pool's discovery: dns re-resolves them)")
        }
        "user" => (Info, "not translated: run wsgate as its own user (systemd/wsgate.service)"),
        "worker_rlimit_nofile" => (Info, "not translated: set LimitNOFILE in wsgate's systemd unit"),
        "worker_cpu_affinity" | "worker_priority" | "worker_shutdown_timeout" | "pcre_jit" | "timer_resolution"
        | "daemon" | "master_process" | "load_module" | "env" | "thread_pool" | "lock_file" | "working_directory"
        | "worker_rlimit_core" | "ssl_engine" => (Info, "not needed: nginx's process settings"),
        _ if family(&["server_names_hash", "variables_hash", "map_hash", "proxy_headers_hash"]) => {
            (Info, "not needed: nginx's hash table sizes")
        }
        "grpc_pass" | "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "memcached_pass" => {
            (Warning, "not translated: wsgate proxies HTTP and WebSocket only")
        }
        _ if family(&["fastcgi_", "uwsgi_", "scgi_", "grpc_", "memcached_"]) => {
            (Warning, "not translated: wsgate proxies HTTP and WebSocket only")
        }
        "limit_rate" | "limit_rate_after" => (Warning, "not translated: wsgate does not slow responses down"),
        "limit_conn_status" | "limit_req_status" | "limit_conn_log_level" | "limit_req_log_level"
        | "limit_req_dry_run" | "limit_conn_dry_run" => {
            (Info, "approximately: wsgate answers a client over its limits with 429 and Retry-After")
        }
        "stream" | "mail" => (Warning, "not translated: wsgate proxies HTTP and WebSocket, not TCP/UDP streams or mail"),
        "geo" | "split_clients" | "map" => (Warning, "not translated: wsgate has no variables"),
        "http2_push" | "http2_push_preload" | "http2_max_concurrent_streams" | "http2_chunk_size"
        | "http2_body_preread_size" | "http2_idle_timeout" | "http2_recv_timeout" | "http3" | "quic_retry"
        | "http3_hq" => (Info, "not translated: wsgate's HTTP/2 settings are fixed (docs/configuration.md)"),
        "ssl_password_file" => (Warning, "not translated: wsgate needs an unencrypted private key"),
        "proxy_ssl_certificate" | "proxy_ssl_certificate_key" => {
            (Warning, "not translated: wsgate presents no client certificate to backends")
        }
        "proxy_ssl_protocols" | "proxy_ssl_ciphers" | "proxy_ssl_session_reuse" | "proxy_ssl_verify_depth" => {
            (Info, "not needed: wsgate talks TLS 1.2/1.3 to backends with rustls's defaults")
        }
        "server_tokens" => (Info, "not translated: nginx's Server header"),
        _ => (Warning, "not translated"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;

    #[test]
    fn lost_behaviour_is_a_warning_tuning_is_info() {
        let tree = parse("gzip on; sendfile on; proxy_cache_valid 1m; frobnicate 1; proxy_buffering off;", 0).unwrap();
        let levels: Vec<Level> = tree.iter().map(|d| reason(d).0).collect();
        assert_eq!(levels, [Level::Warning, Level::Info, Level::Warning, Level::Warning, Level::Info]);
        assert_eq!(reason(&tree[3]).1, "not translated");
    }
}
