//! A client key through a rewrite configured with clean strings, then `HttpOrigin::url_for`:
//! the URL stays on the configured host and below its base path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_origin_pull::{HttpOrigin, Rewrite, key};

/// Configuration-like pieces (clean, prefixes ending in `/`).
const DIRS: [&str; 6] = ["img/", "a/", "a/b/", "v2/", "static/assets/", "x/"];
const SUFFIXES: [&str; 4] = [".webp", "/original", ".bin", ".tar.gz"];

fuzz_target!(|data: &[u8]| {
    let Some((&steps, rest)) = data.split_first() else {
        return;
    };
    let Some((&choices, rest)) = rest.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(k) = key::parse(path) else {
        return;
    };
    let mut rewrite = Rewrite::identity();
    let mut c = u32::from(choices) | (u32::from(steps) << 8);
    for _ in 0..(steps % 4) {
        let a = DIRS[(c % 6) as usize];
        let b = DIRS[((c / 6) % 6) as usize];
        rewrite = match (c / 36) % 4 {
            0 => rewrite.replace_prefix(a, b),
            1 => rewrite.strip_prefix(a),
            2 => rewrite.add_suffix(SUFFIXES[(c % 4) as usize]),
            _ => rewrite.then_template(format!("{a}${{key}}/{b}")),
        };
        c = c.wrapping_mul(2_654_435_761).rotate_left(7);
    }
    let origin = origin();
    let url = origin.url_for(&rewrite.apply(&k), None).expect("a URL");
    assert_eq!(
        url.authority().map(|a| a.as_str()),
        Some("origin.test:8080")
    );
    assert!(url.path().starts_with("/base/"), "{url}");
    for segment in url.path().split('/').skip(2) {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        assert!(
            decoded != "." && decoded != "..",
            "{url} leaves the base path"
        );
    }
});

fn origin() -> &'static HttpOrigin {
    static ORIGIN: std::sync::OnceLock<HttpOrigin> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(|| HttpOrigin::new("http://origin.test:8080/base/").unwrap())
}
