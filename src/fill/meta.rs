//! Which origin headers are kept: on the client's response and as stored attributes.

use http::HeaderMap;
use http::HeaderValue;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, EXPIRES, HeaderName, LAST_MODIFIED,
    LOCATION,
};
use object_store::{Attribute, Attributes};

use crate::store::StoredObject;

/// Origin response headers passed on to the client of a pull (an allow-list: nothing else
/// from the origin reaches the client).
const PASSED: [HeaderName; 12] = [
    ACCEPT_RANGES,
    // For origin redirects passed through (`Rule::pass_through([302])`, redirects not
    // followed): the client follows them, not us.
    LOCATION,
    CONTENT_RANGE,
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CACHE_CONTROL,
    CONTENT_DISPOSITION,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    EXPIRES,
    ETAG,
    LAST_MODIFIED,
];

/// The prefix of user metadata headers, kept as `Attribute::Metadata` without the prefix.
pub(crate) const USER_META_PREFIX: &str = "x-amz-meta-";

/// The headers the client of a pull sees (before the middleware adds its own).
pub(crate) fn client_headers(origin: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(PASSED.len());
    for (name, value) in origin {
        if PASSED.contains(name) || name.as_str().starts_with(USER_META_PREFIX) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The response header a stored attribute is served as (`x-amz-meta-<name>` for user
/// metadata); `None` for attributes that are not headers (storage class, ...).
pub(crate) fn header_for(attribute: &Attribute) -> Option<HeaderName> {
    Some(match attribute {
        Attribute::ContentType => CONTENT_TYPE,
        Attribute::CacheControl => CACHE_CONTROL,
        Attribute::ContentDisposition => CONTENT_DISPOSITION,
        Attribute::ContentEncoding => CONTENT_ENCODING,
        Attribute::ContentLanguage => CONTENT_LANGUAGE,
        Attribute::Metadata(meta) => {
            HeaderName::try_from(format!("{USER_META_PREFIX}{meta}")).ok()?
        }
        _ => return None,
    })
}

/// Insert the headers of every attribute that is one. `HeaderValue` refuses CR/LF, so a
/// stored value cannot split a response.
pub(crate) fn insert_attribute_headers(attributes: &Attributes, headers: &mut HeaderMap) {
    for (attribute, value) in attributes.iter() {
        if let (Some(name), Ok(value)) = (header_for(attribute), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
}

/// The headers for an object served from the store (found there when re-checking).
pub(crate) fn stored_headers(object: &StoredObject) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(CONTENT_LENGTH, HeaderValue::from(object.size));
    if let Some(etag) = object
        .e_tag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        out.insert(ETAG, etag);
    }
    insert_attribute_headers(&object.attributes, &mut out);
    out
}

/// The attributes stored with the object.
pub(crate) fn attributes(origin: &HeaderMap) -> Attributes {
    let mut out = Attributes::new();
    for (name, value) in origin {
        let Ok(value) = value.to_str() else { continue };
        let attribute = match *name {
            CONTENT_TYPE => Attribute::ContentType,
            CACHE_CONTROL => Attribute::CacheControl,
            CONTENT_DISPOSITION => Attribute::ContentDisposition,
            CONTENT_ENCODING => Attribute::ContentEncoding,
            CONTENT_LANGUAGE => Attribute::ContentLanguage,
            _ => match name.as_str().strip_prefix(USER_META_PREFIX) {
                Some(meta) if !meta.is_empty() => Attribute::Metadata(meta.to_owned().into()),
                _ => continue,
            },
        };
        out.insert(attribute, value.to_owned().into());
    }
    out
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use object_store::Attribute;

    #[test]
    fn keeps_only_the_allow_list() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("image/png"));
        h.insert("set-cookie", HeaderValue::from_static("a=b"));
        h.insert("x-amz-meta-owner", HeaderValue::from_static("me"));
        h.insert("server", HeaderValue::from_static("origin"));
        let c = super::client_headers(&h);
        assert_eq!(c.len(), 2);
        assert!(c.get("set-cookie").is_none());
        let a = super::attributes(&h);
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
}
