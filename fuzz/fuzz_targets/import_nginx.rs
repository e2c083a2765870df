//! `wsgate import-nginx`'s reader and translation on arbitrary text: the tokenizer, the
//! parser, `include` (never found here), every level of the translation and the YAML writer.
//!
//! Properties: nothing panics; every report line is about `fuzz.conf`; whatever YAML is
//! written parses as YAML, has a listener, and every route names a pool it writes. (wsgate's
//! own check of the output is left out: it would resolve host names.)

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The importer reads files as bytes, invalid UTF-8 replaced.
    let text = String::from_utf8_lossy(data);
    let (yaml, report) = wsgate::import::translate_text(&text);
    for line in &report {
        assert!(line.starts_with("fuzz.conf"), "a report line about another file: {line}");
    }
    let Some(yaml) = yaml else { return };
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"));
    assert!(doc["listeners"].as_sequence().is_some_and(|l| !l.is_empty()), "no listener:\n{yaml}");
    for route in doc["routes"].as_sequence().expect("routes") {
        let pool = route["upstream"].as_str().expect("a route's upstream");
        assert!(doc["upstreams"].get(pool).is_some(), "route to unwritten pool {pool}:\n{yaml}");
    }
});
