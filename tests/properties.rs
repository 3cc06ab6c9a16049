//! Property tests (proptest): what must hold for every input, not just the ones in the
//! tables.
//!
//! - `key::parse` never panics; an accepted key is clean (no empty, `.` or `..` segment, no
//!   control character, no backslash, nothing still percent-encoded, at most 1024 bytes),
//!   `object_store` takes it as it is, and encoding it again and parsing gives it back.
//!   Encoding any string and parsing agrees with an independent model of a clean key.
//! - Rewrites configured with clean strings keep the origin URL on the configured host and
//!   below its base path, whatever the client's key.
//! - Rule matching through the layer: the origin is asked exactly when the key is clean and
//!   matches the rule, for the rewritten path, on the configured host.
//! - `ServeStore` with arbitrary `Range` / `If-*` headers: never panics; every answer is one
//!   of 200/206/304/412/416 with bytes that match it; single ranges agree with a model.
//! - `HttpOrigin::new` never panics, and an origin it accepts keeps every URL on its host.
//! - Every numeric configuration field, at its maximum (durations up to `Duration::MAX`,
//!   sizes up to `u64::MAX`, counts up to `usize::MAX`, weights up to `u32::MAX`), at its
//!   documented limit and at random values: validation refuses it at the field's location,
//!   or `OriginPullLayer::from_config` builds a layer that serves a real pull (with
//!   failover, a breaker that opens, a remembered `404` and a webhook delivering events).
//!
//! 256 cases each (128 for the one that makes HTTP requests, 32 for the configuration
//! fields that serve real pulls), or `PROPTEST_CASES`; the fuzz targets under `fuzz/` run
//! the same properties for as long as one likes.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use tower::{Layer, ServiceExt};
use tower_origin_pull::{
    HttpOrigin, OriginPullBuilder, OriginPullLayer, Rewrite, Rule, ServeStore, key,
};

use common::faulty::FaultyOrigin;

/// Path-ish strings: separators, dots, escapes (well- and ill-formed), backslashes,
/// control characters and non-ASCII, in short segments.
fn pathish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%".to_owned()),
        Just("\\".to_owned()),
        "%[0-9a-fA-F]{2}",
        "%(2[eEfF]|5[cC]|25|00|0[aAdD]|7[fF]|[cC]2|[eE][dD]|[fF][fF])",
        "[a-z0-9_~-]{1,4}",
        "[\u{0}-\u{1f}\u{7f}-\u{9f}]",
        "[é中😀 ]",
    ];
    prop::collection::vec(atom, 0..12).prop_map(|atoms| format!("/{}", atoms.concat()))
}

/// What a clean key is, written independently of `key::parse`.
fn model_clean(segments: &[String]) -> bool {
    let key_len: usize = segments.iter().map(|s| s.len()).sum::<usize>() + segments.len() - 1;
    let looks_encoded = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
    };
    !segments.is_empty()
        && key_len <= key::MAX_KEY_LEN
        && segments.iter().all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && !s.contains('/')
                && !s.contains('\\')
                && !s.chars().any(char::is_control)
                && !looks_encoded(s)
                // What Java servers read as dot segments (`..;`, fullwidth dots): the model
                // of that is `tests/security_keys.rs`'s, checked against it there.
                && !key::reads_as_dot_segment(s)
                // Characters whose NFKC form is a separator (`／`, `＼`, `℀`, ...).
                && !s.chars().any(|c| {
                    matches!(
                        c,
                        '\u{FF0F}' | '\u{FF3C}' | '\u{FE68}' | '\u{2100}' | '\u{2101}' | '\u{2105}' | '\u{2106}'
                    )
                })
        })
}

fn assert_clean(key: &str) {
    assert!(!key.is_empty() && key.len() <= key::MAX_KEY_LEN, "{key:?}");
    assert!(!key.starts_with('/'), "{key:?}");
    for segment in key.split('/') {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{key:?}"
        );
    }
    assert!(!key.contains('\\'), "{key:?}");
    assert!(!key.chars().any(char::is_control), "{key:?}");
    let parsed = Path::parse(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
    assert_eq!(parsed.as_ref(), key, "object_store keeps the key as it is");
}

/// Each segment percent-encoded with `set` (the `/` between segments kept).
fn encode(key: &str, set: &'static AsciiSet) -> String {
    let segments: Vec<String> = key
        .split('/')
        .map(|s| utf8_percent_encode(s, set).to_string())
        .collect();
    format!("/{}", segments.join("/"))
}

/// Only what must be encoded in a path segment: `%`, `/`, `?`, `#`, space, controls and
/// non-ASCII.
const MINIMAL: &AsciiSet = &percent_encoding::CONTROLS
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b' ');

/// `cases` cases (or `PROPTEST_CASES`), without writing regression files next to the
/// sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_never_panics_on_any_string(path in any::<String>()) {
        if let Some(key) = key::parse(&path) {
            assert_clean(&key);
        }
    }

    #[test]
    fn accepted_keys_are_clean_and_round_trip(path in pathish()) {
        if let Some(key) = key::parse(&path) {
            assert_clean(&key);
            for set in [NON_ALPHANUMERIC, MINIMAL] {
                let again = encode(&key, set);
                let reparsed = key::parse(&again);
                prop_assert_eq!(reparsed.as_deref(), Some(key.as_str()), "{}", again);
            }
        }
    }

    #[test]
    fn encoded_strings_parse_exactly_when_the_model_says_clean(
        segments in prop::collection::vec(
            prop_oneof![
                "[a-z0-9._~-]{0,6}",
                "[ -~]{0,6}",
                ".*",
                Just("..".to_owned()),
                Just(".".to_owned()),
            ],
            1..5,
        )
    ) {
        let key = segments.join("/");
        for set in [NON_ALPHANUMERIC, MINIMAL] {
            let path = format!(
                "/{}",
                segments
                    .iter()
                    .map(|s| utf8_percent_encode(s, set).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let expected = model_clean(&segments).then(|| key.clone());
            prop_assert_eq!(key::parse(&path), expected, "{}", path);
        }
    }
}

/// A rewrite built the way configuration builds one, from clean strings.
fn clean_rewrite() -> impl Strategy<Value = (Rewrite, String)> {
    let word = "[a-z0-9]{1,5}";
    let dir = prop::collection::vec(word, 1..3).prop_map(|w| format!("{}/", w.join("/")));
    let step = prop_oneof![
        (dir.clone(), dir.clone()).prop_map(|(from, to)| (0u8, from, to)),
        dir.clone().prop_map(|from| (1u8, from, String::new())),
        "(\\.[a-z]{1,4}|/[a-z]{1,5})".prop_map(|suffix| (2u8, suffix, String::new())),
        (dir.clone(), dir).prop_map(|(before, after)| (3u8, before, after)),
    ];
    prop::collection::vec(step, 0..4).prop_map(|steps| {
        let mut rewrite = Rewrite::identity();
        let mut text = String::from("identity");
        for (kind, a, b) in steps {
            rewrite = match kind {
                0 => rewrite.replace_prefix(a.clone(), b.clone()),
                1 => rewrite.strip_prefix(a.clone()),
                2 => rewrite.add_suffix(a.clone()),
                _ => rewrite.then_template(format!("{a}${{key}}/{b}")),
            };
            text.push_str(&format!(" {kind}:{a}:{b}"));
        }
        (rewrite, text)
    })
}

/// Clean keys, often starting with the prefixes the rewrites use.
fn clean_key() -> impl Strategy<Value = String> {
    prop::collection::vec("([a-z0-9]{1,5}|[a-z.]{1,4}|[é中 ~]{1,2})", 1..5)
        .prop_map(|segments| segments.join("/"))
        .prop_filter("clean", |k| key::parse(&format!("/{k}")).is_some())
}

fn assert_below_base(origin: &HttpOrigin, path: &str) -> Result<(), TestCaseError> {
    let url = origin
        .url_for(path, None)
        .map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
    prop_assert_eq!(
        url.authority().map(|a| a.as_str()),
        Some("origin.test:8080")
    );
    prop_assert!(url.path().starts_with("/base/"), "{}", url);
    for segment in url.path().split('/').skip(2) {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        prop_assert!(
            decoded != "." && decoded != "..",
            "{} escapes the base",
            url
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn clean_rewrites_stay_on_the_host_and_below_the_base(
        key in clean_key(),
        (rewrite, text) in clean_rewrite(),
    ) {
        let origin = HttpOrigin::new("http://origin.test:8080/base/").unwrap();
        let path = rewrite.apply(&key);
        assert_below_base(&origin, &path).map_err(|e| {
            TestCaseError::fail(format!("{e} (key {key:?}, rewrite {text}, path {path:?})"))
        })?;
    }

    /// Any key, with prefixes stripped without their `/`: `img../x` becomes `../x`, which
    /// `url_for` must refuse (it once sent `/base/../x`).
    #[test]
    fn any_rewrite_stays_below_the_base(
        key in clean_key(),
        prefix in "[a-z]{1,3}",
    ) {
        let origin = HttpOrigin::new("http://origin.test:8080/base/").unwrap();
        let key = format!("{prefix}../{key}");
        let path = Rewrite::identity().strip_prefix(prefix).apply(&key);
        prop_assert!(origin.url_for(&path, None).is_err(), "{} was not refused", path);
        // A prefix that does not match leaves the key, and its URL, clean.
        let kept = Rewrite::identity().strip_prefix("zzzz").apply(&key);
        assert_below_base(&origin, &kept)?;
    }

    #[test]
    fn origin_urls_never_panic_and_stay_on_their_host(
        url in prop_oneof![
            any::<String>(),
            "(https?|ftp|)(://)?[a-z0-9@:.%\\[\\]-]{0,16}(/[a-z0-9%./?#@-]{0,8}){0,3}",
        ],
        key in clean_key(),
    ) {
        if let Ok(origin) = HttpOrigin::new(&url) {
            let uri: http::Uri = url.parse().unwrap();
            let built = origin.url_for(&key, Some("q=1")).unwrap();
            prop_assert_eq!(built.authority(), uri.authority());
            prop_assert_eq!(built.scheme(), uri.scheme());
        }
        let _ = tower_origin_pull::Webhook::new(&url);
    }
}

/// One runtime and one origin for all cases of a property (the origin answers `404` to
/// everything and counts what it is asked).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn the_origin_is_asked_exactly_when_a_clean_key_matches(
        paths in prop::collection::vec(pathish(), 1..8),
        prefix in prop_oneof![Just(""), Just("a"), Just("a/"), Just("%")],
        suffix in prop_oneof![Just(""), Just("b"), Just(".")],
        (rewrite, text) in clean_rewrite(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let origin = FaultyOrigin::start().await;
            let http = HttpOrigin::new(&format!("{}base/", origin.url)).unwrap();
            let rule = Rule::new(http.clone())
                .prefix(prefix)
                .suffix(suffix)
                .rewrite(rewrite.clone());
            let layer = OriginPullBuilder::from_object_store(Arc::new(InMemory::new())).rule(rule).build();
            let inner = tower::service_fn(|_req: Request<Empty<Bytes>>| async {
                let mut res = Response::new(Full::new(Bytes::from_static(b"inner")));
                *res.status_mut() = StatusCode::NOT_FOUND;
                Ok::<_, Infallible>(res)
            });
            let service = layer.layer(inner);
            for path in paths {
                let Ok(uri) = http::Uri::try_from(format!("http://app.test{path}")) else {
                    continue;
                };
                let before = origin.total_requests();
                let res = service
                    .clone()
                    .oneshot(Request::get(uri.clone()).body(Empty::new()).unwrap())
                    .await
                    .unwrap();
                let asked = origin.total_requests() - before;
                let key = key::parse(uri.path());
                let expected = key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(prefix) && k.ends_with(suffix));
                prop_assert_eq!(asked, usize::from(expected), "{} ({})", path, text);
                prop_assert_eq!(res.status(), StatusCode::NOT_FOUND);
                let body = res.into_body().collect().await.unwrap().to_bytes();
                prop_assert_eq!(&body[..], b"inner", "the inner 404, untouched");
                if expected {
                    let seen = origin.seen().pop().unwrap();
                    let want = http.url_for(&rewrite.apply(&key.unwrap()), None).unwrap();
                    prop_assert_eq!(&seen.target, want.path());
                    prop_assert_eq!(seen.host, Some(origin.authority()));
                }
            }
            Ok(())
        })?;
    }
}

// ----- ServeStore: Range and preconditions -----

#[derive(Debug, Clone)]
enum Spec {
    /// `first-last`
    Closed(u64, u64),
    /// `first-`
    From(u64),
    /// `-n`
    Suffix(u64),
}

impl Spec {
    fn text(&self) -> String {
        match self {
            Spec::Closed(a, b) => format!("{a}-{b}"),
            Spec::From(a) => format!("{a}-"),
            Spec::Suffix(n) => format!("-{n}"),
        }
    }

    /// RFC 9110 §14.1.2 for one range over `len` bytes: `Some(range)` if satisfiable.
    fn model(&self, len: u64) -> Option<std::ops::Range<u64>> {
        let r = match *self {
            Spec::Closed(a, b) => a..(b + 1).min(len),
            Spec::From(a) => a..len,
            Spec::Suffix(n) => len.saturating_sub(n)..len,
        };
        (r.start < len && r.start < r.end).then_some(r)
    }
}

fn spec(len: u64) -> impl Strategy<Value = Spec> {
    let pos = prop_oneof![0..=len + 2, Just(u64::MAX / 2), any::<u64>()];
    prop_oneof![
        (pos.clone(), 0..=len + 2)
            .prop_filter("first <= last", |(a, b)| a <= b)
            .prop_map(|(a, b)| Spec::Closed(a, b)),
        pos.prop_map(Spec::From),
        (1..=len + 3).prop_map(Spec::Suffix),
    ]
}

#[derive(Debug, Clone)]
enum Range {
    None,
    One(Spec),
    Many(Vec<Spec>),
    Raw(String),
}

fn range(len: u64) -> impl Strategy<Value = Range> {
    prop_oneof![
        Just(Range::None),
        spec(len).prop_map(Range::One),
        prop::collection::vec(spec(len), 2..6).prop_map(Range::Many),
        "(bytes|items|BYTES)=[0-9,\\- ]{0,12}".prop_map(Range::Raw),
        "[ -~]{0,16}".prop_map(Range::Raw),
    ]
}

/// Validator values: ours (filled in per case), a weak form of ours, `*`, others, garbage.
fn validator() -> impl Strategy<Value = Option<u8>> {
    prop::option::of(0u8..6)
}

fn tag_value(choice: u8, etag: &str) -> http::HeaderValue {
    let text = match choice {
        0 => etag.to_owned(),
        1 => format!("W/{etag}"),
        2 => "*".to_owned(),
        3 => "\"other\"".to_owned(),
        4 => format!("\"other\", {etag}"),
        // obs-text: a valid header value that is not UTF-8 and not a tag list.
        _ => return http::HeaderValue::from_bytes(b"\"unterminated, \xff").unwrap(),
    };
    http::HeaderValue::from_str(&text).unwrap()
}

fn date_value(choice: u8, last_modified: &str) -> http::HeaderValue {
    let text = match choice {
        0 | 1 => last_modified.to_owned(),
        2 => "Thu, 01 Jan 1970 00:00:00 GMT".to_owned(),
        3 => "Fri, 31 Dec 9999 23:59:59 GMT".to_owned(),
        4 => "yesterday".to_owned(),
        _ => String::new(),
    };
    http::HeaderValue::from_str(&text).unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn serve_store_answers_any_range_and_precondition_consistently(
        len in 0u64..3000,
        ranges in (0u64..3000).prop_flat_map(range),
        if_match in validator(),
        if_none_match in validator(),
        if_modified_since in validator(),
        if_unmodified_since in validator(),
        if_range in validator(),
        head in any::<bool>(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let object = common::random_bytes(len as usize, len);
            store.put(&Path::from("o.bin"), object.clone().into()).await.unwrap();
            let service = ServeStore::new(store);
            let call = |req: Request<Empty<Bytes>>| {
                let service = service.clone();
                async move {
                    let res = service.oneshot(req).await.unwrap();
                    let (parts, body) = res.into_parts();
                    (parts, body.collect().await.unwrap().to_bytes())
                }
            };
            let (plain, _) = call(Request::get("/o.bin").body(Empty::new()).unwrap()).await;
            let etag = plain.headers["etag"].to_str().unwrap().to_owned();
            let last_modified = plain.headers["last-modified"].to_str().unwrap().to_owned();

            let mut req = Request::builder()
                .method(if head { http::Method::HEAD } else { http::Method::GET })
                .uri("/o.bin");
            let range_text = match &ranges {
                Range::None => None,
                Range::One(s) => Some(format!("bytes={}", s.text())),
                Range::Many(v) => Some(format!(
                    "bytes={}",
                    v.iter().map(Spec::text).collect::<Vec<_>>().join(",")
                )),
                Range::Raw(raw) => Some(raw.clone()),
            };
            if let Some(r) = &range_text {
                req = req.header("range", r.as_str());
            }
            let conditional = [if_match, if_none_match, if_modified_since, if_unmodified_since]
                .iter()
                .any(Option::is_some);
            if let Some(c) = if_match {
                req = req.header("if-match", tag_value(c, &etag));
            }
            if let Some(c) = if_none_match {
                req = req.header("if-none-match", tag_value(c, &etag));
            }
            if let Some(c) = if_modified_since {
                req = req.header("if-modified-since", date_value(c, &last_modified));
            }
            if let Some(c) = if_unmodified_since {
                req = req.header("if-unmodified-since", date_value(c, &last_modified));
            }
            if let Some(c) = if_range {
                let v = if c % 2 == 0 { tag_value(c / 2, &etag) } else { date_value(c / 2, &last_modified) };
                req = req.header("if-range", v);
            }
            let (parts, body) = call(req.body(Empty::new()).unwrap()).await;
            let status = parts.status.as_u16();
            let what = format!("len {len}, range {range_text:?}, status {status}");
            prop_assert!([200, 206, 304, 412, 416].contains(&status), "{}", what);
            if let Some(tag) = parts.headers.get("etag") {
                prop_assert_eq!(tag.to_str().unwrap(), etag.as_str(), "{}", what);
            }
            match status {
                200 => {
                    prop_assert_eq!(parts.headers["content-length"].to_str().unwrap(), len.to_string());
                    prop_assert!(head || body == object, "{}", what);
                }
                206 => {
                    prop_assert!(!head && range_text.is_some(), "{}", what);
                    let cr = parts.headers["content-range"].to_str().unwrap();
                    let (span, total) = cr.strip_prefix("bytes ").unwrap().split_once('/').unwrap();
                    prop_assert_eq!(total, len.to_string());
                    let (a, b) = span.split_once('-').unwrap();
                    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                    prop_assert!(a <= b && (b as u64) < len, "{}", what);
                    prop_assert!(body == object[a..=b], "{}", what);
                }
                416 => {
                    prop_assert!(!head && range_text.is_some(), "{}", what);
                    prop_assert_eq!(
                        parts.headers["content-range"].to_str().unwrap(),
                        format!("bytes */{len}")
                    );
                }
                304 => {
                    prop_assert!(conditional, "{}", what);
                    prop_assert!(body.is_empty(), "{}", what);
                }
                _ => {
                    prop_assert!(if_match.is_some() || if_unmodified_since.is_some(), "{}", what);
                    // (A HEAD 412 carries its one-line message in the service's body;
                    // hyper drops it on the wire.)
                    prop_assert!(body.len() < 100, "{}: a short message, not the object", what);
                }
            }
            // The model, where it applies: one well-formed range, no precondition.
            if let (Range::One(s), false, None, false) = (&ranges, conditional, if_range, head) {
                match s.model(len) {
                    Some(r) => {
                        prop_assert_eq!(status, 206, "{}", what);
                        prop_assert!(body == object[r.start as usize..r.end as usize], "{}", what);
                    }
                    None => prop_assert_eq!(status, 416, "{}", what),
                }
            }
            if !conditional && if_range.is_none() && matches!(ranges, Range::None) {
                prop_assert_eq!(status, 200, "{}", what);
            }
            Ok(())
        })?;
    }
}

// ----- configuration files -----

/// A TOML-escaped basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Configuration documents in the schema's shape (top-level settings, `[store]`, rules with
/// their origin), each setting present or not, with plausible and implausible values, and
/// sometimes a stray line.
fn config_text() -> impl Strategy<Value = String> {
    let size = prop_oneof![
        8 => Just("1MiB".to_owned()),
        4 => Just("64 KiB".to_owned()),
        1 => Just("0".to_owned()),
        1 => Just("-1".to_owned()),
        1 => Just("1e99".to_owned()),
        1 => Just("18446744073709551616B".to_owned()),
        1 => "[ -~]{0,6}",
    ];
    let duration = prop_oneof![
        12 => Just("100ms".to_owned()),
        1 => Just("0s".to_owned()),
        1 => Just("1y".to_owned()),
        1 => Just("18446744073709551615s".to_owned()),
        1 => Just("forever".to_owned()),
        1 => "[ -~]{0,6}",
    ];
    let text = || prop_oneof![4 => "[a-z0-9/._-]{1,8}", 1 => "[ -~é\u{0}-\u{1f}]{0,10}"];
    let url = prop_oneof![
        8 => Just("http://127.0.0.1:9/".to_owned()),
        1 => Just("https://origin.test/base".to_owned()),
        1 => Just("s3://bucket/p".to_owned()),
        1 => Just("file:///".to_owned()),
        1 => "[ -~]{0,12}",
    ];
    let setting = |name: &'static str, value: BoxedStrategy<String>| {
        prop::option::of(value).prop_map(move |v| {
            v.map(|v| format!("{name} = {}\n", toml_str(&v)))
                .unwrap_or_default()
        })
    };
    let top = (
        setting("coalesce_window", size.clone().boxed()),
        setting("slow_reader_grace", duration.clone().boxed()),
        setting("remember_not_found", duration.clone().boxed()),
        prop::option::of(any::<i32>()),
        setting("header_name", text().boxed()),
    )
        .prop_map(|(a, b, c, q, h)| {
            let q = q
                .map(|q| format!("background_queue = {q}\n"))
                .unwrap_or_default();
            format!("{a}{b}{c}{q}{h}")
        });
    let store = (
        setting("multipart_threshold", size.clone().boxed()),
        setting("part_size", size.boxed()),
    )
        .prop_map(|(a, b)| format!("[store]\nurl = \"memory://\"\n{a}{b}"));
    let mode = prop_oneof![
        Just("sync"),
        Just("async"),
        Just("redirect"),
        Just("proxy"),
        Just("other")
    ]
    .prop_map(str::to_owned);
    let rewrite = prop::option::of((any::<bool>(), text())).prop_map(|r| match r {
        Some((true, v)) => format!("rewrite = {{ strip_prefix = {} }}\n", toml_str(&v)),
        Some((false, v)) => format!("rewrite = {{ template = {} }}\n", toml_str(&v)),
        None => String::new(),
    });
    let rule = (
        (
            setting("name", text().boxed()),
            setting("mode", mode.boxed()),
            setting("prefix", text().boxed()),
            setting("suffix", text().boxed()),
            rewrite,
        ),
        (
            prop::collection::vec(url, 0..3),
            setting("idle_timeout", duration.clone().boxed()),
            setting("first_byte_timeout", duration.boxed()),
        ),
    )
        .prop_map(|((name, mode, prefix, suffix, rewrite), (hosts, idle, first))| {
            let hosts: Vec<String> = hosts.iter().map(|h| toml_str(h)).collect();
            format!(
                "[[rules]]\n{name}{mode}{prefix}{suffix}{rewrite}[rules.origin]\nhosts = [{}]\n{idle}{first}",
                hosts.join(", ")
            )
        });
    (
        top,
        store,
        prop::collection::vec(rule, 0..3),
        prop::option::weighted(0.1, "[ -~]{0,20}"),
    )
        .prop_map(|(top, store, rules, stray)| {
            format!(
                "{top}{}{store}{}",
                stray.map(|s| s + "\n").unwrap_or_default(),
                rules.concat()
            )
        })
}

proptest! {
    #![proptest_config(config(256))]

    /// Parsing never panics; a parsed configuration survives TOML and JSON round trips and
    /// building a layer from it (into a given store: nothing is opened) never panics.
    #[test]
    fn configuration_files_never_panic_and_round_trip(
        text in prop_oneof![config_text(), any::<String>()],
    ) {
        let _ = tower_origin_pull::config::Config::from_json(&text);
        let Ok(config) = tower_origin_pull::config::Config::from_toml(&text) else {
            return Ok(());
        };
        let toml = config.to_toml().unwrap();
        let again = tower_origin_pull::config::Config::from_toml(&toml).unwrap();
        prop_assert_eq!(&again, &config, "{}", toml);
        let json = serde_json::to_string(&config).unwrap();
        let from_json = tower_origin_pull::config::Config::from_json(&json).unwrap();
        prop_assert_eq!(&from_json, &config, "{}", json);
        let rt = runtime();
        let _inside = rt.enter();
        let _ = OriginPullLayer::from_config_with(&config, Arc::new(InMemory::new()));
    }
}

// ----- every numeric configuration field, up to its maximum -----

/// Where a numeric setting lives in the document.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Section {
    Top,
    Store,
    Rule,
    Origin,
    Events,
}

/// What kind of number a setting is, which decides its maximum and its random values.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Any duration (`"0s"` included).
    Duration,
    /// A duration after which something fails (`"0s"` is refused).
    Timeout,
    /// A size in bytes.
    Size,
    /// A `usize` count.
    Count,
    /// A `u32` count.
    Count32,
    /// `weights`: a `u32` per host.
    Weights,
}

/// Every numeric field of `config::Config` and its nested structs.
const FIELDS: &[(Section, &str, Kind)] = &[
    (Section::Top, "coalesce_window", Kind::Size),
    (Section::Top, "slow_reader_grace", Kind::Duration),
    (Section::Top, "remember_not_found", Kind::Duration),
    (Section::Top, "background_queue", Kind::Count),
    (Section::Top, "background_concurrency", Kind::Count),
    (Section::Top, "max_fills", Kind::Count),
    (Section::Top, "fill_queue_timeout", Kind::Duration),
    (Section::Top, "retry_after", Kind::Duration),
    (Section::Top, "head_timeout", Kind::Timeout),
    (Section::Top, "stall_timeout", Kind::Timeout),
    (Section::Store, "multipart_threshold", Kind::Size),
    (Section::Store, "part_size", Kind::Size),
    (Section::Store, "max_concurrent_parts", Kind::Count),
    (Section::Store, "staging_max_age", Kind::Duration),
    (Section::Rule, "max_object_size", Kind::Size),
    (Section::Origin, "weights", Kind::Weights),
    (Section::Origin, "connect_timeout", Kind::Timeout),
    (Section::Origin, "first_byte_timeout", Kind::Timeout),
    (Section::Origin, "idle_timeout", Kind::Timeout),
    (Section::Origin, "total_timeout", Kind::Timeout),
    (Section::Origin, "follow_redirects", Kind::Count),
    (Section::Origin, "breaker_failures", Kind::Count32),
    (Section::Origin, "breaker_cooldown", Kind::Duration),
    (Section::Origin, "retries", Kind::Count),
    (Section::Events, "max_in_flight", Kind::Count),
    (Section::Events, "attempts", Kind::Count),
];

/// The largest value of each kind the document can hold.
fn maximum(kind: Kind) -> serde_json::Value {
    use serde_json::json;
    match kind {
        Kind::Duration | Kind::Timeout => json!("18446744073709551615s 999999999ns"),
        Kind::Size => json!("18446744073709551615"),
        Kind::Count => json!(usize::MAX),
        Kind::Count32 => json!(u32::MAX),
        Kind::Weights => json!([u32::MAX, u32::MAX]),
    }
}

/// Random values of each kind: small, plausible and huge. Timeouts and sizes stay where a
/// pull can succeed in a test (a timeout of a second or more, a part of a KiB or more).
fn value(kind: Kind) -> BoxedStrategy<serde_json::Value> {
    use serde_json::json;
    let secs = |lo: u64| {
        prop_oneof![
            (lo..=3600u64).prop_map(|s| json!(format!("{s}s"))),
            (lo..=u64::MAX).prop_map(|s| json!(format!("{s}s"))),
        ]
    };
    match kind {
        Kind::Duration => prop_oneof![
            (0..=2000u64).prop_map(|ms| json!(format!("{ms}ms"))),
            secs(0),
        ]
        .boxed(),
        Kind::Timeout => prop_oneof![1 => Just(json!("0s")), 8 => secs(2)].boxed(),
        Kind::Size => prop_oneof![
            (1024..=(1u64 << 30)).prop_map(|b| json!(b.to_string())),
            (1024..=u64::MAX).prop_map(|b| json!(b.to_string())),
        ]
        .boxed(),
        Kind::Count => prop_oneof![
            (0..=200usize).prop_map(|n| json!(n)),
            (0..=2_000_000usize).prop_map(|n| json!(n)),
            any::<usize>().prop_map(|n| json!(n)),
        ]
        .boxed(),
        Kind::Count32 => any::<u32>().prop_map(|n| json!(n)).boxed(),
        Kind::Weights => (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| json!([a, b]))
            .boxed(),
    }
}

/// Where validation must report a refusal of the field.
fn location(section: Section, name: &str) -> String {
    match section {
        Section::Top => name.to_owned(),
        Section::Store => format!("store.{name}"),
        Section::Rule => format!("rules[0].{name}"),
        Section::Origin => format!("rules[0].origin.{name}"),
        Section::Events => format!("events.{name}"),
    }
}

/// A port nothing listens on (connections to it are refused at once).
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A webhook receiver that counts the events it gets.
async fn event_sink() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
    });
    let addr = common::serve(app).await;
    (format!("http://{addr}/events"), count)
}

/// One setting: where, which, what.
type Setting = (Section, &'static str, serde_json::Value);

/// The configuration with these settings: validation refuses it at the settings'
/// locations, or `OriginPullLayer::from_config` builds a layer that pulls a real object from
/// a real origin (after failing over from a dead primary, which opens its breaker), answers
/// a missing key `404`, and whose webhook delivers events.
async fn builds_and_serves_or_is_refused(settings: &[Setting]) -> Result<(), TestCaseError> {
    use std::sync::atomic::Ordering;
    let origin = common::TestOrigin::start().await;
    let object = common::random_bytes(20 * 1024, 7);
    origin.object("obj.bin", object.clone());
    let dead = format!("http://127.0.0.1:{}/", dead_port().await);
    let (sink, events) = event_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let mut doc = serde_json::json!({
        "store": { "url": format!("file://{}", dir.path().display()) },
        "rules": [{
            "name": "r",
            "origin": { "hosts": [dead], "standby": [origin.url], "breaker_failures": 1 },
        }],
        "events": { "webhook": sink },
    });
    let mut what = Vec::new();
    for (section, name, value) in settings {
        let slot = match section {
            Section::Top => &mut doc,
            Section::Store => &mut doc["store"],
            Section::Rule => &mut doc["rules"][0],
            Section::Origin => &mut doc["rules"][0]["origin"],
            Section::Events => &mut doc["events"],
        };
        if *name == "weights" {
            // Two healthy primaries, so the weighted pick sums both weights.
            slot["hosts"] = serde_json::json!([origin.url, origin.url]);
            slot.as_object_mut().unwrap().remove("standby");
        }
        slot[*name] = value.clone();
        what.push(format!("{name} = {value}"));
    }
    let what = what.join(", ");
    let config = tower_origin_pull::config::Config::from_json(&doc.to_string())
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    let problems = config.validate();
    if !problems.is_empty() {
        let at: Vec<String> = settings.iter().map(|(s, n, _)| location(*s, n)).collect();
        prop_assert!(
            problems.iter().all(|p| at.contains(&p.at)),
            "{what}: expected problems at {at:?} only, got {problems:?}"
        );
        prop_assert!(
            OriginPullLayer::from_config(&config).is_err(),
            "{what}: validation refused it, from_config did not"
        );
        return Ok(());
    }
    let layer = OriginPullLayer::from_config(&config)
        .map_err(|e| TestCaseError::fail(format!("{what}: valid but not built: {e}")))?;
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let addr = common::serve(common::store_service(store).layer(layer)).await;
    let client = common::client();
    let served = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let missing = common::get(&client, &format!("http://{addr}/missing.bin")).await;
        let first = common::get(&client, &format!("http://{addr}/obj.bin")).await;
        let second = common::get(&client, &format!("http://{addr}/obj.bin")).await;
        (missing, first, second)
    })
    .await;
    let Ok((missing, first, second)) = served else {
        return Err(TestCaseError::fail(format!("{what}: the requests hung")));
    };
    prop_assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", what);
    for got in [&first, &second] {
        prop_assert_eq!(got.status, StatusCode::OK, "{}", what);
        prop_assert_eq!(got.body.as_deref().ok(), Some(&object[..]), "{}", what);
    }
    let delivered = common::eventually(std::time::Duration::from_secs(5), || async {
        events.load(Ordering::Relaxed) > 0
    })
    .await;
    prop_assert!(delivered, "{}: the configured webhook got no event", what);
    Ok(())
}

/// The largest value a count accepts (its documented limit), where it has one.
fn largest_accepted(name: &str) -> Option<serde_json::Value> {
    use tower_origin_pull::config::limits;
    let n = match name {
        "background_queue" => limits::BACKGROUND_QUEUE,
        "background_concurrency" => tower_origin_pull::DEFAULT_MAX_FILLS,
        "max_fills" => limits::MAX_FILLS,
        "max_concurrent_parts" => limits::CONCURRENT_PARTS,
        "follow_redirects" => limits::REDIRECTS,
        "retries" => limits::RETRIES,
        "max_in_flight" => limits::WEBHOOK_IN_FLIGHT,
        "attempts" => limits::WEBHOOK_ATTEMPTS,
        _ => return None,
    };
    Some(serde_json::json!(n))
}

/// Each field at its maximum, one after the other (the maxima are where the overflows
/// were), and each count at its documented limit and one past it.
#[test]
fn every_numeric_field_at_its_maximum_builds_and_serves_or_is_refused_there() {
    let rt = runtime();
    let check = |settings: &[Setting]| {
        rt.block_on(builds_and_serves_or_is_refused(settings))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    for &(section, name, kind) in FIELDS {
        check(&[(section, name, maximum(kind))]);
        if let Some(limit) = largest_accepted(name) {
            let problems = |value: &serde_json::Value| {
                let mut doc = serde_json::json!({
                    "store": { "url": "memory://" },
                    "rules": [{ "origin": { "hosts": ["http://h/"] } }],
                    "events": {},
                });
                let slot = match section {
                    Section::Top => &mut doc,
                    Section::Store => &mut doc["store"],
                    Section::Rule => &mut doc["rules"][0],
                    Section::Origin => &mut doc["rules"][0]["origin"],
                    Section::Events => &mut doc["events"],
                };
                slot[name] = value.clone();
                tower_origin_pull::config::Config::from_json(&doc.to_string())
                    .unwrap()
                    .validate()
            };
            assert!(problems(&limit).is_empty(), "{name} = {limit}");
            let past = serde_json::json!(limit.as_u64().unwrap() + 1);
            let refused = problems(&past);
            assert_eq!(refused.len(), 1, "{name} = {past}: {refused:?}");
            assert_eq!(refused[0].at, location(section, name));
            check(&[(section, name, limit)]);
        }
    }
    // The weights of the issue: the first GETs through them used to panic.
    check(&[(Section::Origin, "weights", serde_json::json!([u32::MAX, 1]))]);
    // Background fills may take every slot of the largest bound.
    let most = serde_json::json!(tower_origin_pull::config::limits::MAX_FILLS);
    check(&[
        (Section::Top, "max_fills", most.clone()),
        (Section::Top, "background_concurrency", most),
    ]);
}

fn field_and_value() -> impl Strategy<Value = Setting> {
    (0..FIELDS.len()).prop_flat_map(|i| {
        let (section, name, kind) = FIELDS[i];
        value(kind).prop_map(move |v| (section, name, v))
    })
}

proptest! {
    // Each case serves real requests: few cases, still every kind of value over the runs.
    #![proptest_config(config(32))]

    /// Random values of every numeric field: built and serving, or refused at the field.
    #[test]
    fn numeric_fields_at_random_values_build_and_serve_or_are_refused_there(
        setting in field_and_value(),
    ) {
        runtime().block_on(builds_and_serves_or_is_refused(&[setting]))?;
    }
}
