//! `HttpOrigin::new` on any string: never panics, and an origin it accepts builds every URL
//! on the host it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_origin_pull::HttpOrigin;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(origin) = HttpOrigin::new(url) else {
        return;
    };
    let given: http::Uri = url.parse().expect("an accepted URL parses");
    for path in ["a", "a/b c", "../x", "//evil.test/x", "?q#f"] {
        let built = origin.url_for(path, Some("q=1")).expect("a URL");
        assert_eq!(built.authority(), given.authority(), "{url} / {path}");
        assert_eq!(built.scheme(), given.scheme());
    }
});
