//! `key::parse` on any UTF-8 path: never panics; an accepted key is clean (no segment a
//! server reads as a dot segment either), kept as it is by `object_store`, and parses back
//! to itself once encoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tower_origin_pull::key;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(k) = key::parse(path) else {
        return;
    };
    assert!(!k.is_empty() && k.len() <= key::MAX_KEY_LEN);
    for segment in k.split('/') {
        assert!(!segment.is_empty() && segment != "." && segment != "..");
        // Nor anything a server reads as one (`..;x`, fullwidth dots).
        assert!(!key::reads_as_dot_segment(segment), "{segment:?}");
    }
    assert!(!k.contains('\\') && !k.chars().any(char::is_control));
    let parsed = object_store::path::Path::parse(&k).expect("object_store takes the key");
    assert_eq!(parsed.as_ref(), k);
    let again: Vec<String> = k
        .split('/')
        .map(|s| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string())
        .collect();
    assert_eq!(key::parse(&format!("/{}", again.join("/"))), Some(k));
});
