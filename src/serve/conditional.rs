//! Conditional requests: the preconditions of [RFC 9110 §13.1] evaluated in the order of
//! [§13.2.2], and the `If-Range` validator of [§13.1.5].
//!
//! Entity-tags are compared as the RFC says: strong comparison for `If-Match` and
//! `If-Range`, weak comparison for `If-None-Match`. Dates are compared at the one-second
//! resolution of an HTTP-date, so a client echoing our `Last-Modified` back gets its `304`.
//! A header that does not parse (a malformed date, a malformed tag list) is ignored, as
//! §13.1.3 and §13.1.4 require for dates.
//!
//! [RFC 9110 §13.1]: https://www.rfc-editor.org/rfc/rfc9110#section-13.1
//! [§13.2.2]: https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2
//! [§13.1.5]: https://www.rfc-editor.org/rfc/rfc9110#section-13.1.5

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, HeaderValue};

/// The validators of the selected representation.
#[derive(Debug, Clone)]
pub(crate) struct Validators {
    /// The entity-tag as it goes on the wire (`"abc"` or `W/"abc"`).
    pub(crate) etag: Option<HeaderValue>,
    /// `Last-Modified`, truncated to whole seconds.
    pub(crate) last_modified: SystemTime,
}

/// What the preconditions decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Go on and serve the representation (or its range).
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Whether the request carries any precondition this module looks at.
pub(crate) fn any(headers: &HeaderMap) -> bool {
    [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
}

/// Evaluate the preconditions of a `GET` or `HEAD` ([RFC 9110 §13.2.2] steps 1–4).
///
/// [RFC 9110 §13.2.2]: https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2
pub(crate) fn evaluate(headers: &HeaderMap, v: &Validators) -> Outcome {
    // 1. If-Match, else 2. If-Unmodified-Since.
    if let Some(list) = tag_list(headers, &IF_MATCH) {
        if !list.matches(v.etag.as_ref(), Comparison::Strong) {
            return Outcome::Failed;
        }
    } else if let Some(date) = date(headers, &IF_UNMODIFIED_SINCE) {
        if v.last_modified > date {
            return Outcome::Failed;
        }
    }
    // 3. If-None-Match, else 4. If-Modified-Since (GET and HEAD only, which is all we serve).
    if let Some(list) = tag_list(headers, &IF_NONE_MATCH) {
        if list.matches(v.etag.as_ref(), Comparison::Weak) {
            return Outcome::NotModified;
        }
    } else if let Some(date) = date(headers, &IF_MODIFIED_SINCE) {
        if v.last_modified <= date {
            return Outcome::NotModified;
        }
    }
    Outcome::Proceed
}

/// Whether a `Range` may be honoured: `true` without `If-Range`, else whether its validator
/// matches ([RFC 9110 §13.1.5]: a strong tag compared strongly, or a date equal to
/// `Last-Modified`). A weak or malformed validator never matches.
///
/// [RFC 9110 §13.1.5]: https://www.rfc-editor.org/rfc/rfc9110#section-13.1.5
pub(crate) fn if_range_holds(headers: &HeaderMap, v: &Validators) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        return match (parse_tag(text), v.etag.as_ref().and_then(wire_tag)) {
            (Some((rest, tag)), Some(ours)) if rest.trim().is_empty() => {
                tag.equals(&ours, Comparison::Strong)
            }
            _ => false,
        };
    }
    httpdate::parse_http_date(text).is_ok_and(|date| date == v.last_modified)
}

/// An HTTP-date header, `None` when absent, repeated or not a date (which §13.1.3 and
/// §13.1.4 say to ignore).
fn date(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// Truncate to the one-second resolution of an HTTP-date.
pub(crate) fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    opaque: &'a str,
}

impl Tag<'_> {
    /// [RFC 9110 §8.8.3.2](https://www.rfc-editor.org/rfc/rfc9110#section-8.8.3.2).
    fn equals(&self, other: &Tag<'_>, how: Comparison) -> bool {
        self.opaque == other.opaque && (how == Comparison::Weak || (!self.weak && !other.weak))
    }
}

enum TagList<'a> {
    Any,
    Tags(Vec<Tag<'a>>),
}

impl TagList<'_> {
    fn matches(&self, ours: Option<&HeaderValue>, how: Comparison) -> bool {
        match self {
            // The representation exists (we only evaluate for one that does).
            TagList::Any => true,
            TagList::Tags(tags) => {
                let Some(ours) = ours.and_then(wire_tag) else {
                    return false;
                };
                tags.iter().any(|t| t.equals(&ours, how))
            }
        }
    }
}

/// `*` or a comma-separated list of entity-tags, over every field line of `name`; `None`
/// if absent or malformed.
fn tag_list<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<TagList<'a>> {
    let mut tags = Vec::new();
    let mut seen = false;
    for value in headers.get_all(name) {
        seen = true;
        let text = value.to_str().ok()?.trim();
        if text == "*" {
            return Some(TagList::Any);
        }
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (after, tag) = parse_tag(rest)?;
            tags.push(tag);
            rest = after.trim_start_matches([' ', '\t']);
            if !rest.is_empty() && !rest.starts_with(',') {
                return None;
            }
        }
    }
    seen.then_some(TagList::Tags(tags))
}

/// One `entity-tag` at the start of `s`: the rest, and the tag.
fn parse_tag(s: &str) -> Option<(&str, Tag<'_>)> {
    let (weak, s) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix('"')?;
    let end = body.find('"')?;
    let opaque = &body[..end];
    // etagc = %x21 / %x23-7E / obs-text: no DQUOTE, no space, no controls.
    if opaque.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    Some((&body[end + 1..], Tag { weak, opaque }))
}

/// Our own tag as sent on the wire.
fn wire_tag(value: &HeaderValue) -> Option<Tag<'_>> {
    let (rest, tag) = parse_tag(value.to_str().ok()?)?;
    rest.is_empty().then_some(tag)
}

/// The `ETag` header value for an object_store `e_tag`: backends such as S3 give a quoted
/// tag already, others (`InMemory`, `LocalFileSystem`) a bare token, which gets quoted.
pub(crate) fn etag_header(e_tag: &str) -> Option<HeaderValue> {
    let quoted = if e_tag.starts_with('"') || e_tag.starts_with("W/\"") {
        e_tag.to_owned()
    } else {
        format!("\"{e_tag}\"")
    };
    let value = HeaderValue::from_str(&quoted).ok()?;
    wire_tag(&value).is_some().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        Validators {
            etag: etag_header("xyzzy"),
            last_modified: httpdate::parse_http_date("Tue, 15 Nov 1994 12:45:26 GMT").unwrap(),
        }
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, val) in pairs {
            m.append(*k, HeaderValue::from_static(val));
        }
        m
    }

    #[test]
    fn precedence_follows_section_13_2_2() {
        use Outcome::*;
        let cases: &[(&[(&str, &str)], Outcome)] = &[
            (&[], Proceed),
            (&[("if-match", "\"xyzzy\"")], Proceed),
            (&[("if-match", "W/\"xyzzy\"")], Failed),
            (&[("if-match", "\"a\", \"xyzzy\"")], Proceed),
            (&[("if-match", "*")], Proceed),
            (&[("if-none-match", "W/\"xyzzy\"")], NotModified),
            (&[("if-none-match", "\"a\",\"b\"")], Proceed),
            (&[("if-none-match", "*")], NotModified),
            // If-Match wins over If-None-Match.
            (
                &[("if-match", "\"a\""), ("if-none-match", "\"xyzzy\"")],
                Failed,
            ),
            // If-Match present: If-Unmodified-Since is not looked at.
            (
                &[
                    ("if-match", "\"xyzzy\""),
                    ("if-unmodified-since", "Sat, 29 Oct 1994 19:43:31 GMT"),
                ],
                Proceed,
            ),
            (
                &[("if-unmodified-since", "Sat, 29 Oct 1994 19:43:31 GMT")],
                Failed,
            ),
            (&[("if-unmodified-since", "not a date")], Proceed),
            (
                &[("if-modified-since", "Tue, 15 Nov 1994 12:45:26 GMT")],
                NotModified,
            ),
            (
                &[("if-modified-since", "Tue, 15 Nov 1994 12:45:25 GMT")],
                Proceed,
            ),
            // If-None-Match present: If-Modified-Since is ignored.
            (
                &[
                    ("if-none-match", "\"other\""),
                    ("if-modified-since", "Tue, 15 Nov 1994 12:45:26 GMT"),
                ],
                Proceed,
            ),
            (
                &[("if-none-match", "\"a\""), ("if-none-match", "\"xyzzy\"")],
                NotModified,
            ),
            (&[("if-none-match", "garbage")], Proceed),
        ];
        for (headers, want) in cases {
            assert_eq!(evaluate(&h(headers), &v()), *want, "{headers:?}");
        }
    }

    #[test]
    fn if_range() {
        assert!(if_range_holds(&h(&[]), &v()));
        assert!(if_range_holds(&h(&[("if-range", "\"xyzzy\"")]), &v()));
        assert!(!if_range_holds(&h(&[("if-range", "W/\"xyzzy\"")]), &v()));
        assert!(!if_range_holds(&h(&[("if-range", "\"other\"")]), &v()));
        assert!(if_range_holds(
            &h(&[("if-range", "Tue, 15 Nov 1994 12:45:26 GMT")]),
            &v()
        ));
        assert!(!if_range_holds(
            &h(&[("if-range", "Tue, 15 Nov 1994 12:45:27 GMT")]),
            &v()
        ));
        assert!(!if_range_holds(&h(&[("if-range", "nonsense")]), &v()));
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(etag_header("abc").unwrap(), "\"abc\"");
        assert_eq!(etag_header("\"abc\"").unwrap(), "\"abc\"");
        assert_eq!(etag_header("W/\"abc\"").unwrap(), "W/\"abc\"");
        assert!(etag_header("a\"b").is_none());
    }
}
