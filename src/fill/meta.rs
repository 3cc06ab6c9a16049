//! Which origin headers are kept: on the client's response and as stored attributes, and
//! whether an object may be stored at all where the store would lose its type.
//!
//! `Content-Type` never travels alone: `X-Content-Type-Options`, `Content-Security-Policy`
//! and `Content-Disposition` are what make a typed object safe to serve from the mirror's
//! origin, so all four are passed to the client, stored and served back together.
//!
//! The origin's validators (`ETag`, `Last-Modified`), its `Expires`, its user metadata in
//! any of the three conventions (`x-amz-meta-*`, `x-oss-meta-*`, `x-cos-meta-*`) and the
//! headers a rule keeps ([`KeepHeaders`]) are stored too, under metadata names this crate
//! reserves, so a hit answers with the same headers as the pull that stored the object.

use http::HeaderMap;
use http::HeaderValue;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, EXPIRES,
    HeaderName, LAST_MODIFIED, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use object_store::{Attribute, AttributeValue, Attributes};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::rule::KeepHeaders;
use crate::store::StoredObject;

/// Origin response headers passed on to the client of a pull (an allow-list: nothing else
/// from the origin reaches the client, but for user metadata and the headers the rule
/// keeps).
const PASSED: [HeaderName; 14] = [
    ACCEPT_RANGES,
    // For origin redirects passed through (`Rule::pass_through([302])`, redirects not
    // followed): the client follows them, not us.
    LOCATION,
    CONTENT_RANGE,
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CACHE_CONTROL,
    CONTENT_DISPOSITION,
    // With the type, or the type is only half of what the origin said about the object.
    X_CONTENT_TYPE_OPTIONS,
    CONTENT_SECURITY_POLICY,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    EXPIRES,
    ETAG,
    LAST_MODIFIED,
];

/// Headers never kept with an object whatever the rule says: hop-by-hop headers (RFC 9110
/// §7.6.1), what would be wrong on a later response (`Date`, `Age`, request ids), what a
/// shared cache must not replay to other clients (`Set-Cookie`, authentication challenges),
/// and host-wide policies that would bind the mirror's own host (`Strict-Transport-Security`,
/// `Alt-Svc`, `Clear-Site-Data`).
const NEVER_KEPT: [&str; 24] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
    "authentication-info",
    "date",
    "age",
    "server",
    "via",
    "warning",
    "strict-transport-security",
    "alt-svc",
    "clear-site-data",
    "public-key-pins",
    "x-amz-request-id",
    "x-amz-id-2",
];

/// The user metadata conventions: S3's, OSS's and COS's header prefixes.
const USER_META_PREFIXES: [(&str, &str); 3] = [
    ("x-amz-meta-", "amz"),
    ("x-oss-meta-", "oss"),
    ("x-cos-meta-", "cos"),
];

/// The prefix of user metadata headers in S3's convention, the default on hits.
pub(crate) const USER_META_PREFIX: &str = "x-amz-meta-";

/// The prefix of the `Attribute::Metadata` names this crate keeps for itself. User metadata
/// under it (`x-amz-meta-origin_pull_…` from the origin) is neither passed nor stored, so a
/// stored name under it was always written by this crate. Letters, digits and `_` only: the
/// names are valid S3 and GCS metadata keys and Azure's C# identifiers.
const RESERVED_META_PREFIX: &str = "origin_pull_";

/// `X-Content-Type-Options`, stored as this `Attribute::Metadata` name.
pub(crate) const NOSNIFF_META: &str = "origin_pull_x_content_type_options";

/// `Content-Security-Policy`, stored as this `Attribute::Metadata` name.
pub(crate) const CSP_META: &str = "origin_pull_content_security_policy";

/// The origin's `ETag`, as it sent it.
pub(crate) const ETAG_META: &str = "origin_pull_etag";

/// The origin's `Last-Modified`, as it sent it.
pub(crate) const LAST_MODIFIED_META: &str = "origin_pull_last_modified";

/// The origin's `Expires` (object_store has no attribute for it).
pub(crate) const EXPIRES_META: &str = "origin_pull_expires";

/// Which user metadata names came in a convention other than S3's: `name=oss&name=cos`.
const META_STYLE_META: &str = "origin_pull_meta_style";

/// The headers a rule keeps ([`KeepHeaders`]): `name=value&name=value`, percent-encoded.
const KEPT_META: &str = "origin_pull_headers";

/// The reserved names that become a header as they are.
const REPLAYED: [(&str, HeaderName); 5] = [
    (NOSNIFF_META, X_CONTENT_TYPE_OPTIONS),
    (CSP_META, CONTENT_SECURITY_POLICY),
    (ETAG_META, ETAG),
    (LAST_MODIFIED_META, LAST_MODIFIED),
    (EXPIRES_META, EXPIRES),
];

/// The user metadata name of a user metadata header and its convention (`amz`, `oss`,
/// `cos`); `None` for other headers and for names this crate reserves.
fn user_meta(name: &HeaderName) -> Option<(&str, &'static str)> {
    USER_META_PREFIXES.iter().find_map(|(prefix, style)| {
        let meta = name.as_str().strip_prefix(prefix)?;
        (!meta.is_empty() && !meta.starts_with(RESERVED_META_PREFIX)).then_some((meta, *style))
    })
}

/// Whether `keep` keeps the origin header `name` (which is not one passed anyway).
fn kept(keep: &KeepHeaders, name: &HeaderName, origin: &HeaderMap) -> bool {
    let wanted = match keep {
        KeepHeaders::None => false,
        KeepHeaders::All => true,
        KeepHeaders::Only(names) => names.contains(name),
    };
    wanted
        && !PASSED.contains(name)
        && user_meta(name).is_none()
        && !USER_META_PREFIXES
            .iter()
            .any(|(p, _)| name.as_str().starts_with(p))
        && !NEVER_KEPT.contains(&name.as_str())
        && !listed_in_connection(name, origin)
}

/// Whether the origin's `Connection` header names `name` (a hop-by-hop header of its own).
fn listed_in_connection(name: &HeaderName, origin: &HeaderMap) -> bool {
    origin.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

/// The headers the client of a pull sees (before the middleware adds its own): the
/// allow-list, user metadata, and what `keep` keeps.
pub(crate) fn client_headers(origin: &HeaderMap, keep: &KeepHeaders) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(PASSED.len());
    for (name, value) in origin {
        if PASSED.contains(name) || user_meta(name).is_some() || kept(keep, name, origin) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Give a whole object whose origin sent no `Last-Modified` the time it is pulled, now: the
/// pulled response, the stored object and every hit then carry the same one (S3 clients
/// such as `aws s3 cp` refuse an object without it; conditional requests need one).
pub(crate) fn last_modified_if_missing(origin: &mut HeaderMap) {
    if !origin.contains_key(LAST_MODIFIED) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        if let Ok(value) = HeaderValue::from_str(&now) {
            origin.insert(LAST_MODIFIED, value);
        }
    }
}

/// Why a response must stay with the client that asked for it (RFC 9111 §3 and §5.2.2):
/// `Cache-Control: private`, `no-store` or `no-cache`, a `Set-Cookie`, or `Vary: *`.
/// `None`: a shared cache may keep and share it.
pub(crate) fn private_reason(origin: &HeaderMap) -> Option<&'static str> {
    for value in origin.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Some("a Cache-Control that cannot be read");
        };
        for directive in value.split(',') {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("private") {
                return Some("Cache-Control: private");
            }
            if name.eq_ignore_ascii_case("no-store") {
                return Some("Cache-Control: no-store");
            }
            if name.eq_ignore_ascii_case("no-cache") {
                return Some("Cache-Control: no-cache");
            }
        }
    }
    if origin.contains_key(http::header::SET_COOKIE) {
        return Some("a Set-Cookie");
    }
    let vary_star = origin.get_all(http::header::VARY).iter().any(|v| {
        v.to_str()
            .map_or(true, |v| v.split(',').any(|f| f.trim() == "*"))
    });
    if vary_star {
        return Some("Vary: *");
    }
    None
}

/// The response header a stored attribute is served as; `None` for attributes that are not
/// one header (storage class, the crate's lists, reserved names a later version wrote).
fn header_for(attribute: &Attribute) -> Option<HeaderName> {
    Some(match attribute {
        Attribute::ContentType => CONTENT_TYPE,
        Attribute::CacheControl => CACHE_CONTROL,
        Attribute::ContentDisposition => CONTENT_DISPOSITION,
        Attribute::ContentEncoding => CONTENT_ENCODING,
        Attribute::ContentLanguage => CONTENT_LANGUAGE,
        Attribute::Metadata(meta) => {
            if let Some((_, header)) = REPLAYED.iter().find(|(m, _)| m == meta) {
                return Some(header.clone());
            }
            if meta.starts_with(RESERVED_META_PREFIX) {
                return None;
            }
            HeaderName::try_from(format!("{USER_META_PREFIX}{meta}")).ok()?
        }
        _ => return None,
    })
}

/// `a=b&c=d` with both sides percent-encoded, and back.
fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(name, NON_ALPHANUMERIC));
        out.push('=');
        out.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    }
    out
}

fn decode_pairs(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.split('&').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let name = percent_decode_str(name).decode_utf8().ok()?;
        let value = percent_decode_str(value).decode_utf8().ok()?;
        Some((name.into_owned(), value.into_owned()))
    })
}

/// Insert the headers of every attribute that is one. `HeaderValue` refuses CR/LF, so a
/// stored value cannot split a response. User metadata goes back under the convention it
/// came in; kept headers are appended as they were.
pub(crate) fn insert_attribute_headers(attributes: &Attributes, headers: &mut HeaderMap) {
    let style = attributes
        .get(&Attribute::Metadata(META_STYLE_META.into()))
        .map(|v| decode_pairs(v.as_ref()).collect::<Vec<_>>())
        .unwrap_or_default();
    for (attribute, value) in attributes.iter() {
        let Ok(value) = HeaderValue::from_str(value) else {
            continue;
        };
        let styled = match attribute {
            Attribute::Metadata(meta) => style
                .iter()
                .find(|(name, _)| name == meta.as_ref())
                .and_then(|(_, s)| HeaderName::try_from(format!("x-{s}-meta-{meta}")).ok()),
            _ => None,
        };
        if let Some(name) = styled.or_else(|| header_for(attribute)) {
            headers.insert(name, value);
        }
    }
    let kept = attributes.get(&Attribute::Metadata(KEPT_META.into()));
    for (name, value) in kept.iter().flat_map(|v| decode_pairs(v.as_ref())) {
        let name = HeaderName::try_from(name.as_str());
        let value = HeaderValue::try_from(value.as_str());
        if let (Ok(name), Ok(value)) = (name, value) {
            if !PASSED.contains(&name) && !NEVER_KEPT.contains(&name.as_str()) {
                headers.append(name, value);
            }
        }
    }
}

/// The headers for an object served from the store (found there when re-checking).
pub(crate) fn stored_headers(object: &StoredObject) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(CONTENT_LENGTH, HeaderValue::from(object.size));
    out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = object
        .e_tag
        .as_deref()
        .and_then(crate::serve::conditional::etag_header)
    {
        out.insert(ETAG, etag);
    }
    insert_attribute_headers(&object.attributes, &mut out);
    out
}

/// The attributes stored with the object: the representation headers object_store knows,
/// the reserved ones (safety headers, validators, `Expires`), user metadata of every
/// convention, and the headers `keep` keeps.
///
/// Several `Content-Security-Policy` headers are several policies, all enforced; they are
/// kept as one comma-separated list, which means the same (CSP 3 §3.1). For the other
/// headers the last value is kept.
pub(crate) fn attributes(origin: &HeaderMap, keep: &KeepHeaders) -> Attributes {
    let mut out = Attributes::new();
    let mut styles = Vec::new();
    let mut kept_pairs = Vec::new();
    for (name, value) in origin {
        let Ok(value) = value.to_str() else { continue };
        let attribute = match *name {
            CONTENT_TYPE => Attribute::ContentType,
            CACHE_CONTROL => Attribute::CacheControl,
            CONTENT_DISPOSITION => Attribute::ContentDisposition,
            CONTENT_ENCODING => Attribute::ContentEncoding,
            CONTENT_LANGUAGE => Attribute::ContentLanguage,
            CONTENT_SECURITY_POLICY => {
                let policy = Attribute::Metadata(CSP_META.into());
                let joined = match out.get(&policy) {
                    Some(earlier) => format!("{}, {value}", earlier.as_ref()),
                    None => value.to_owned(),
                };
                out.insert(policy, joined.into());
                continue;
            }
            _ => match REPLAYED.iter().find(|(_, header)| header == name) {
                Some((meta, _)) => Attribute::Metadata((*meta).into()),
                None => match user_meta(name) {
                    Some((meta, style)) => {
                        if style != "amz" {
                            styles.push((meta, style));
                        }
                        Attribute::Metadata(meta.to_owned().into())
                    }
                    None => {
                        if kept(keep, name, origin) {
                            kept_pairs.push((name.as_str(), value));
                        }
                        continue;
                    }
                },
            },
        };
        out.insert(attribute, value.to_owned().into());
    }
    if !styles.is_empty() {
        let value: AttributeValue = encode_pairs(styles.into_iter()).into();
        out.insert(Attribute::Metadata(META_STYLE_META.into()), value);
    }
    if !kept_pairs.is_empty() {
        let value: AttributeValue = encode_pairs(kept_pairs.into_iter()).into();
        out.insert(Attribute::Metadata(KEPT_META.into()), value);
    }
    out
}

/// Why an object must not be stored in a store that keeps no attributes (see
/// [`Store::keeps_attributes`](crate::store::Store::keeps_attributes)), or `None` when
/// storing it cannot make it more dangerous than the origin's response.
///
/// Such a store keeps the bytes only; whatever serves it later (`ServeDir`, `ServeStore`, a
/// web server over the directory) types the object by the key's extension and sends none of
/// the origin's safety headers. So the object is refused when:
///
/// - the origin's `Content-Type` differs from the type a file server guesses from `key`
///   (`mime_guess`, as tower-http's `ServeDir` does; type/subtype compared
///   case-insensitively, parameters such as `charset` ignored). A file server that has no
///   guess answers `application/octet-stream`, which no browser renders: that is never an
///   upgrade, so it is accepted whatever the origin said;
/// - the origin sent no `Content-Type` (a browser would sniff, within limits) and the guess
///   is an active type: a document a browser runs script in (HTML, and XML including `+xml`
///   types such as SVG and XHTML). A JavaScript guess is not refused: a browser runs an
///   untyped response as a classic script already, and a worker or module needs script on
///   the mirror's origin first;
/// - the origin sent `Content-Disposition` other than `inline` (RFC 6266 §4.2: unknown types
///   are handled as `attachment`): served without it, the object would render inline;
/// - the origin sent `X-Content-Type-Options: nosniff` or a `Content-Security-Policy`.
///
/// A store that keeps attributes keeps all four headers ([`attributes`]), and serving it
/// back replays them: always `None`.
pub(crate) fn type_risk(
    origin_headers: &HeaderMap,
    key: &str,
    store_keeps_attributes: bool,
) -> Option<&'static str> {
    if store_keeps_attributes {
        return None;
    }
    let guessed = mime_guess::from_path(key).first_raw();
    let mut typed = false;
    for value in origin_headers.get_all(CONTENT_TYPE) {
        let essence = value.to_str().ok().map(essence);
        if essence.is_some_and(str::is_empty) {
            // An empty Content-Type is no type at all to a browser.
            continue;
        }
        typed = true;
        let same = matches!(
            (essence, guessed),
            (Some(origin), Some(guess)) if origin.eq_ignore_ascii_case(guess)
        );
        if !same && guessed.is_some() {
            return Some(
                "the store keeps no Content-Type and a file server would type the object \
                 otherwise from its extension",
            );
        }
    }
    if !typed && guessed.is_some_and(active) {
        return Some(
            "the origin sent no Content-Type and a file server would type the object as \
             active content from its extension",
        );
    }
    if origin_headers.get_all(CONTENT_DISPOSITION).iter().any(|v| {
        !v.to_str()
            .is_ok_and(|v| essence(v).eq_ignore_ascii_case("inline"))
    }) {
        return Some("the store cannot keep the origin's Content-Disposition");
    }
    if origin_headers
        .get_all(X_CONTENT_TYPE_OPTIONS)
        .iter()
        .any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case("nosniff"))
            })
        })
    {
        return Some("the store cannot keep the origin's X-Content-Type-Options: nosniff");
    }
    if origin_headers.contains_key(CONTENT_SECURITY_POLICY) {
        return Some("the store cannot keep the origin's Content-Security-Policy");
    }
    None
}

/// What comes before the first `;`, trimmed: a media type's `type/subtype`, a disposition's
/// type.
fn essence(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// Whether a browser, navigating to a response of this (guessed) type, runs script in it:
/// an HTML or XML document (XML MIME types, HTML §2.1.7, include `+xml` such as SVG and
/// XHTML).
fn active(media_type: &str) -> bool {
    let media_type = media_type.to_ascii_lowercase();
    let subtype = media_type.split_once('/').map_or("", |(_, s)| s);
    matches!(
        media_type.as_str(),
        "text/html" | "text/xml" | "application/xml" | "text/xsl"
    ) || subtype.ends_with("+xml")
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use object_store::{Attribute, Attributes};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// The reason for storing `pairs` at `key` in a store without attributes, and checks
    /// that a store with attributes never refuses.
    fn risk(pairs: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
        let h = headers(pairs);
        assert_eq!(super::type_risk(&h, key, true), None, "{pairs:?} {key}");
        super::type_risk(&h, key, false)
    }

    const SAFETY: [(&str, &str); 4] = [
        ("content-type", "text/plain"),
        ("content-disposition", "attachment; filename=\"evil.html\""),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "sandbox"),
    ];

    #[test]
    fn the_safety_headers_travel_with_the_type() {
        let h = headers(&SAFETY);
        let c = super::client_headers(&h, &crate::rule::KeepHeaders::None);
        for (name, value) in SAFETY {
            assert_eq!(c[name], value, "{name} on the pulled response");
        }
        let a = super::attributes(&h, &crate::rule::KeepHeaders::None);
        assert_eq!(a.len(), 4, "{a:?}");
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&a, &mut served);
        assert_eq!(served, c, "served from the attributes as pulled");
        let object = crate::store::StoredObject::new(
            3,
            a,
            Some("\"e\"".into()),
            Box::pin(futures::stream::empty()),
        );
        let replayed = super::stored_headers(&object);
        for (name, value) in SAFETY {
            assert_eq!(replayed[name], value, "{name} replayed from the store");
        }
    }

    #[test]
    fn several_policies_are_all_kept() {
        let h = headers(&[
            ("content-security-policy", "sandbox"),
            ("content-security-policy", "script-src 'none'"),
        ]);
        let a = super::attributes(&h, &crate::rule::KeepHeaders::None);
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&a, &mut served);
        assert_eq!(
            served["content-security-policy"],
            "sandbox, script-src 'none'"
        );
    }

    #[test]
    fn reserved_metadata_names_are_the_crates_own() {
        // The origin cannot pose as the crate: user metadata under the reserved prefix is
        // neither passed nor stored, so it cannot become a real header on hits.
        let h = headers(&[
            ("x-amz-meta-origin_pull_content_security_policy", "x"),
            ("x-amz-meta-origin_pull_other", "x"),
            ("x-amz-meta-x-content-type-options", "user"),
        ]);
        let c = super::client_headers(&h, &crate::rule::KeepHeaders::None);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c["x-amz-meta-x-content-type-options"], "user");
        let a = super::attributes(&h, &crate::rule::KeepHeaders::None);
        assert_eq!(a.len(), 1, "{a:?}");
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&a, &mut served);
        assert_eq!(served, c);
        assert!(served.get("x-content-type-options").is_none());
        // A reserved name this version does not know is not served as user metadata.
        let mut unknown = Attributes::new();
        unknown.insert(Attribute::Metadata("origin_pull_later".into()), "v".into());
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&unknown, &mut served);
        assert!(served.is_empty(), "{served:?}");
    }

    #[test]
    fn type_risk_the_finding() {
        assert!(risk(&SAFETY, "evil.html").is_some());
        // Each of the four alone.
        assert!(risk(&[("content-type", "text/plain")], "evil.html").is_some());
        for one in &SAFETY[1..] {
            assert!(risk(&[*one], "a.txt").is_some(), "{one:?}");
            assert!(
                risk(&[("content-type", "text/plain"), *one], "a.txt").is_some(),
                "{one:?}"
            );
        }
    }

    #[test]
    fn type_risk_types() {
        // The type a file server would guess is the origin's: nothing is lost.
        assert_eq!(risk(&[("content-type", "image/png")], "a/b.png"), None);
        assert_eq!(
            risk(
                &[("content-type", "text/html; charset=utf-8")],
                "index.html"
            ),
            None
        );
        assert_eq!(risk(&[("content-type", "Text/HTML")], "INDEX.HTM"), None);
        assert_eq!(risk(&[("content-type", " text/css ;x=y")], "s.css"), None);
        // Differs: refused, whether the guess is more or less active.
        for (origin, key) in [
            ("text/plain", "evil.html"),
            ("text/plain; charset=utf-8", "evil.svg"),
            ("application/octet-stream", "evil.xhtml"),
            ("application/json", "x.js"),
            ("text/html", "page.txt"),
            ("image/jpeg", "photo.png"),
            ("", "evil.html"),
            ("text/plain", "dir.html/evil.html"),
        ] {
            let pairs = [("content-type", origin)];
            let pairs = if origin.is_empty() {
                &[][..]
            } else {
                &pairs[..]
            };
            assert!(risk(pairs, key).is_some(), "{origin} as {key}");
        }
        // A type that is not valid UTF-8 is no match.
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_bytes(b"text/\xff").unwrap(),
        );
        assert!(super::type_risk(&h, "a.txt", false).is_some());
        // Two types, one of them different.
        let two = [
            ("content-type", "text/plain"),
            ("content-type", "text/html"),
        ];
        assert!(risk(&two, "a.txt").is_some());
        // No guess: a file server answers application/octet-stream, which is never an
        // upgrade.
        assert_eq!(risk(&[("content-type", "text/html")], "LICENSE"), None);
        assert_eq!(risk(&[("content-type", "text/html")], "a.unknownext"), None);
    }

    #[test]
    fn type_risk_untyped_origin() {
        // Untyped: a passive guess is fine, an active one is not.
        for key in [
            "a.png", "a.txt", "a.css", "noext", "a.bin", "a.js", "a.json",
        ] {
            assert_eq!(risk(&[], key), None, "{key}");
        }
        // An empty Content-Type is no type.
        assert_eq!(risk(&[("content-type", "")], "a.png"), None);
        for key in [
            "a.html", "a.htm", "a.shtml", "a.svg", "a.xhtml", "a.xml", "a.xsl", "A.SVG",
        ] {
            assert!(risk(&[], key).is_some(), "{key}");
            assert!(risk(&[("content-type", " ")], key).is_some(), "{key}");
        }
    }

    #[test]
    fn type_risk_disposition_and_safety_headers() {
        let png = ("content-type", "image/png");
        assert_eq!(
            risk(&[png, ("content-disposition", "inline")], "a.png"),
            None
        );
        assert_eq!(
            risk(
                &[png, ("content-disposition", "INLINE; filename=a.png")],
                "a.png"
            ),
            None
        );
        for disposition in ["attachment", "Attachment; filename=a.png", "bogus", ""] {
            assert!(
                risk(&[png, ("content-disposition", disposition)], "a.png").is_some(),
                "{disposition:?}"
            );
        }
        assert!(risk(&[png, ("x-content-type-options", "NoSniff")], "a.png").is_some());
        // Browsers ignore any other value: nothing to lose.
        assert_eq!(
            risk(&[png, ("x-content-type-options", "other")], "a.png"),
            None
        );
        assert!(
            risk(
                &[png, ("content-security-policy", "default-src 'none'")],
                "a.png"
            )
            .is_some()
        );
        // Report-only enforces nothing.
        assert_eq!(
            risk(
                &[png, ("content-security-policy-report-only", "sandbox")],
                "a.png"
            ),
            None
        );
    }

    #[test]
    fn private_responses() {
        let p = |pairs: &[(&'static str, &'static str)]| super::private_reason(&headers(pairs));
        assert_eq!(p(&[("cache-control", "public, max-age=60")]), None);
        assert_eq!(
            p(&[("cache-control", "max-age=60, Private")]),
            Some("Cache-Control: private")
        );
        assert_eq!(
            p(&[("cache-control", "private=\"x\"")]),
            Some("Cache-Control: private")
        );
        assert_eq!(
            p(&[("cache-control", "no-store")]),
            Some("Cache-Control: no-store")
        );
        assert_eq!(
            p(&[("cache-control", "no-cache")]),
            Some("Cache-Control: no-cache")
        );
        assert_eq!(p(&[("set-cookie", "a=b")]), Some("a Set-Cookie"));
        assert_eq!(p(&[("vary", "Accept-Encoding, *")]), Some("Vary: *"));
        assert_eq!(p(&[("vary", "Accept-Encoding")]), None);
        assert_eq!(p(&[]), None);
    }

    #[test]
    fn keeps_only_the_allow_list() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("image/png"));
        h.insert("set-cookie", HeaderValue::from_static("a=b"));
        h.insert("x-amz-meta-owner", HeaderValue::from_static("me"));
        h.insert("server", HeaderValue::from_static("origin"));
        let c = super::client_headers(&h, &crate::rule::KeepHeaders::None);
        assert_eq!(c.len(), 2);
        assert!(c.get("set-cookie").is_none());
        let a = super::attributes(&h, &crate::rule::KeepHeaders::None);
        assert_eq!(
            a.get(&Attribute::ContentType).map(|v| v.as_ref()),
            Some("image/png")
        );
        assert_eq!(
            a.get(&Attribute::Metadata("owner".into()))
                .map(|v| v.as_ref()),
            Some("me")
        );
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn validators_conventions_and_kept_headers_round_trip() {
        use crate::rule::KeepHeaders;
        let h = headers(&[
            ("etag", "\"abc\""),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("expires", "Thu, 01 Dec 2044 16:00:00 GMT"),
            ("x-oss-meta-a", "1"),
            ("x-cos-meta-b", "2"),
            ("x-amz-meta-c", "3"),
            ("x-oss-meta-origin_pull_etag", "forged"),
            ("link", "</a>; rel=preload"),
            ("x-request-count", "1"),
            ("set-cookie", "s=1"),
            ("strict-transport-security", "max-age=1"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ]);
        let keep = KeepHeaders::All;
        let c = super::client_headers(&h, &keep);
        let a = super::attributes(&h, &keep);
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&a, &mut served);
        for name in [
            "etag",
            "last-modified",
            "expires",
            "x-oss-meta-a",
            "x-cos-meta-b",
            "x-amz-meta-c",
            "link",
            "x-request-count",
        ] {
            assert_eq!(served.get(name), h.get(name), "{name} served");
            assert_eq!(c.get(name), h.get(name), "{name} pulled");
        }
        for never in [
            "set-cookie",
            "strict-transport-security",
            "x-hop",
            "connection",
            "x-oss-meta-origin_pull_etag",
        ] {
            assert!(served.get(never).is_none(), "{never} served");
            assert!(c.get(never).is_none(), "{never} pulled");
        }
        // Without keep, only the representation's own headers.
        let none = super::attributes(&h, &KeepHeaders::None);
        let mut served = HeaderMap::new();
        super::insert_attribute_headers(&none, &mut served);
        assert!(served.get("link").is_none());
        assert_eq!(served["x-cos-meta-b"], "2");
        let only = KeepHeaders::only(["link", "set-cookie"]).unwrap();
        let c = super::client_headers(&h, &only);
        assert!(c.get("link").is_some() && c.get("set-cookie").is_none());
        assert!(c.get("x-request-count").is_none());
    }
}
