//! The representation's headers, from an object's `ObjectMeta` and stored `Attributes`.
//!
//! The stored type travels with the headers that make it safe (`X-Content-Type-Options`,
//! `Content-Security-Policy`, `Content-Disposition`), kept by `fill::meta::attributes`: every
//! hit serves them back.

use std::time::SystemTime;

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, EXPIRES,
    LAST_MODIFIED, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue};
use object_store::{Attribute, Attributes, ObjectMeta};

use super::conditional::{Validators, etag_header, whole_seconds};

/// Everything the responses for one object share.
#[derive(Debug)]
pub(crate) struct Representation {
    pub(crate) size: u64,
    pub(crate) validators: Validators,
    /// The pinned `e_tag` exactly as the backend gave it, for a read of the same version.
    pub(crate) e_tag: Option<String>,
    /// Content-Type and the other representation headers, without Content-Length.
    pub(crate) headers: HeaderMap,
}

impl Representation {
    pub(crate) fn new(key: &str, meta: &ObjectMeta, attributes: &Attributes) -> Self {
        let modified = SystemTime::from(meta.last_modified);
        Self::from_parts(key, meta.size, modified, meta.e_tag.clone(), attributes)
    }

    /// The same from the object's size, store time and store entity tag.
    pub(crate) fn from_parts(
        key: &str,
        size: u64,
        modified: SystemTime,
        e_tag: Option<String>,
        attributes: &Attributes,
    ) -> Self {
        let stored_time = whole_seconds(modified);
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(CONTENT_TYPE, content_type(key, attributes));
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(etag) = e_tag.as_deref().and_then(etag_header) {
            headers.insert(ETAG, etag);
        }
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(stored_time)) {
            headers.insert(LAST_MODIFIED, date);
        }
        // The stored content type, if any, is the one `content_type` chose above; the
        // origin's validators, where they were kept, replace the store's own.
        crate::fill::meta::insert_attribute_headers(attributes, &mut headers);
        let last_modified = headers
            .get(LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .map_or(stored_time, whole_seconds);
        Self {
            size,
            validators: Validators {
                etag: headers.get(ETAG).cloned(),
                last_modified,
            },
            e_tag,
            headers,
        }
    }

    /// The headers a `304` carries ([RFC 9110 §15.4.5]): the validators, Cache-Control, Expires,
    /// and the stored `X-Content-Type-Options` and `Content-Security-Policy`.
    ///
    /// A cache updates the response it holds with the 304's fields (RFC 9111 §4.3.4), so
    /// repeating the two safety headers costs nothing and refreshes them with the rest.
    /// Content-Type and Content-Disposition are representation metadata that a 304 should
    /// not carry (§15.4.5); the stored response the 304 validates keeps its own.
    ///
    /// [RFC 9110 §15.4.5]: https://www.rfc-editor.org/rfc/rfc9110#section-15.4.5
    pub(crate) fn not_modified_headers(&self) -> HeaderMap {
        not_modified_headers(&self.headers)
    }
}

/// The headers of a `304` for a representation with `headers` (see
/// [`Representation::not_modified_headers`]).
pub(crate) fn not_modified_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(6);
    for name in [
        ETAG,
        LAST_MODIFIED,
        CACHE_CONTROL,
        EXPIRES,
        X_CONTENT_TYPE_OPTIONS,
        CONTENT_SECURITY_POLICY,
    ] {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    out
}

/// The stored Content-Type, else one guessed from the key's extension, else
/// `application/octet-stream`.
fn content_type(key: &str, attributes: &Attributes) -> HeaderValue {
    attributes
        .get(&Attribute::ContentType)
        .and_then(|v| HeaderValue::from_str(v.as_ref()).ok())
        .or_else(|| {
            mime_guess::from_path(key)
                .first_raw()
                .map(HeaderValue::from_static)
        })
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use object_store::path::Path;

    use super::*;

    #[test]
    fn headers_from_meta_and_attributes() {
        let meta = ObjectMeta {
            location: Path::from("a/b.css"),
            last_modified: "1994-11-15T12:45:26.750Z".parse().unwrap(),
            size: 10,
            e_tag: Some("7".into()),
            version: None,
        };
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::CacheControl, "max-age=60".into());
        attributes.insert(Attribute::Metadata("owner".into()), "alice".into());
        attributes.insert(Attribute::StorageClass, "GLACIER".into());
        let r = Representation::new("a/b.css", &meta, &attributes);
        assert_eq!(r.headers[CONTENT_TYPE], "text/css");
        assert_eq!(r.headers[ETAG], "\"7\"");
        assert_eq!(r.headers[LAST_MODIFIED], "Tue, 15 Nov 1994 12:45:26 GMT");
        assert_eq!(r.headers[CACHE_CONTROL], "max-age=60");
        assert_eq!(r.headers["x-amz-meta-owner"], "alice");
        assert_eq!(r.headers.len(), 6, "storage class is not a header: {r:?}");
        let stored = {
            let mut a = Attributes::new();
            a.insert(Attribute::ContentType, "image/webp".into());
            a
        };
        let r = Representation::new("x.bin", &meta, &stored);
        assert_eq!(r.headers[CONTENT_TYPE], "image/webp");
        let r = Representation::new("noext", &meta, &Attributes::new());
        assert_eq!(r.headers[CONTENT_TYPE], "application/octet-stream");
    }

    #[test]
    fn safety_headers_on_every_answer() {
        let meta = ObjectMeta {
            location: Path::from("evil.html"),
            last_modified: "1994-11-15T12:45:26.750Z".parse().unwrap(),
            size: 10,
            e_tag: Some("7".into()),
            version: None,
        };
        let mut origin = HeaderMap::new();
        for (k, v) in [
            ("content-type", "text/plain"),
            ("content-disposition", "attachment"),
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", "sandbox"),
            ("cache-control", "max-age=60"),
        ] {
            origin.insert(k, HeaderValue::from_static(v));
        }
        let attributes = crate::fill::meta::attributes(&origin, &crate::rule::KeepHeaders::None);
        let r = Representation::new("evil.html", &meta, &attributes);
        assert_eq!(r.headers[CONTENT_TYPE], "text/plain", "not guessed");
        assert_eq!(r.headers["content-disposition"], "attachment");
        assert_eq!(r.headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers[CONTENT_SECURITY_POLICY], "sandbox");
        let not_modified = r.not_modified_headers();
        assert_eq!(not_modified[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(not_modified[CONTENT_SECURITY_POLICY], "sandbox");
        assert_eq!(not_modified[ETAG], "\"7\"");
        assert_eq!(not_modified[CACHE_CONTROL], "max-age=60");
        assert_eq!(not_modified.len(), 5, "{not_modified:?}");
    }
}
