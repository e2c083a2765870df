//! `wsgate::config::parse` on arbitrary text: it must never panic, and when it refuses a
//! file every error must say something (a non-empty message and Display) and point at a
//! line that exists.
//!
//! Hermetic: validation resolves backend host names (`to_socket_addrs`) and reads TLS/CA
//! files. `getaddrinfo` is replaced below by one that only accepts numeric hosts, so the
//! fuzzer never sends a DNS query; inputs naming /dev, /proc or /sys are skipped so it never
//! reads a device or a pseudo-file. Relative paths resolve under /nonexistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `config::load` reads the file with `read_to_string`: invalid UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    match wsgate::config::parse(text, "fuzz.yaml", Path::new("/nonexistent")) {
        Ok(config) => {
            assert!(!config.listeners.is_empty(), "accepted a config without listeners");
            assert!(!config.upstreams.is_empty(), "accepted a config without upstreams");
            for route in &config.routes {
                assert!(route.upstream < config.upstreams.len(), "route {} points past the upstreams", route.name);
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "Err without a single error");
            // Lines are 1-based and counted as YAML (libyaml) counts them: CRLF, a lone CR,
            // LF, NEL, LS and PS each end a line; the line after the last break counts too.
            // libyaml ends a last line that has no break with one of its own, so an error at
            // the end of the input (`missing field`) may point at the line after it.
            const BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];
            let unterminated = !text.is_empty() && !text.ends_with(BREAKS);
            let lines = 1 + text.replace("\r\n", "\n").matches(BREAKS).count() + usize::from(unterminated);
            for e in &errors.0 {
                assert!(!e.to_string().is_empty(), "empty Display for {e:?}");
                assert!(!e.message.trim().is_empty(), "empty message for {e:?}");
                if let Some(line) = e.line {
                    assert!((1..=lines).contains(&line), "line {line} outside 1..={lines} for {e:?}");
                }
            }
            assert!(!errors.to_string().is_empty());
        }
    }
});

/// Numeric hosts only: the real `getaddrinfo` with `AI_NUMERICHOST` forced, so `host:port`
/// backends fail fast with "Name or service not known" instead of asking a DNS server.
/// Rust's std resolves through this symbol; the executable's definition wins over libc's.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const libc::c_char,
    service: *const libc::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> libc::c_int {
    type Real = unsafe extern "C" fn(*const libc::c_char, *const libc::c_char, *const libc::addrinfo, *mut *mut libc::addrinfo) -> libc::c_int;
    let sym = libc::dlsym(libc::RTLD_NEXT, c"getaddrinfo".as_ptr());
    if sym.is_null() {
        return libc::EAI_FAIL;
    }
    let real: Real = std::mem::transmute(sym);
    let mut h: libc::addrinfo = if hints.is_null() { std::mem::zeroed() } else { *hints };
    h.ai_flags |= libc::AI_NUMERICHOST;
    real(node, service, &h, res)
}
