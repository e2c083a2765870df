//! The connection gate's head finders on arbitrary bytes: `HeadEnd` (an HTTP/1 head's
//! empty line) and `H2FirstRequest` (the end of an HTTP/2 connection's first header block).
//!
//! Input layout: bytes 0-1 are a split point (big-endian, modulo the rest's length); the
//! rest is what the client sent. Properties: nothing panics, and feeding the bytes in two
//! pieces finds the end exactly when feeding them at once does, so how reads split the
//! stream never decides a deadline.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::listener::{H2FirstRequest, HeadEnd};

fuzz_target!(|data: &[u8]| {
    let Some((split, input)) = data.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_be_bytes(*split)) % (input.len() + 1);
    let (a, b) = input.split_at(split);

    let whole = HeadEnd::default().feed(input);
    let mut pieces = HeadEnd::default();
    assert_eq!(whole, pieces.feed(a) || pieces.feed(b), "HTTP/1 split at {split}");

    let whole = H2FirstRequest::default().feed(input);
    let mut pieces = H2FirstRequest::default();
    assert_eq!(whole, pieces.feed(a) || pieces.feed(b), "HTTP/2 split at {split}");
});
