//! `Range` requests ([RFC 9110 §14]): which bytes to send.
//!
//! The header's syntax is parsed by `http-range-header`; what the ranges mean for an object
//! of a given length is decided here, because that crate's `validate` departs from the RFC
//! in ways a client can see (a suffix longer than the object is an error there, the whole
//! object here; a range on an empty object is satisfiable there, not here).
//!
//! - A range unit other than `bytes`, or a header that does not parse, is ignored: the whole
//!   object is sent with `200` ([§14.2]: a server MUST ignore units it does not understand
//!   and MAY ignore an invalid ranges-specifier).
//! - One satisfiable range: `206` with that range, clipped to the object.
//! - No satisfiable range: `416`.
//! - Several satisfiable ranges: the whole object with `200`. [§14.2] lets a server ignore
//!   `Range`; sending `multipart/byteranges` would mean one store read per part, and the
//!   clients that ask for several ranges (PDF viewers, download managers) all accept a
//!   `200`.
//!
//! [RFC 9110 §14]: https://www.rfc-editor.org/rfc/rfc9110#section-14
//! [§14.2]: https://www.rfc-editor.org/rfc/rfc9110#section-14.2

use std::ops::Range;

use http::HeaderValue;
use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};

/// What to send for a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The whole object, `200`.
    Full,
    /// These bytes (never empty), `206`.
    Partial(Range<u64>),
    /// `416` with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// What a `Range` header asks for before the object's length is known: enough for a miss to
/// choose between fetching a range and fetching the whole object; [`decide`] gives the
/// answer once the length is known, the same cold or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Ignored (malformed, another unit, first > last): the whole object, `200`.
    Whole,
    /// One range (which may turn out unsatisfiable, as `bytes=-0` always is).
    One,
    /// Several ranges: `206` or `200` depends on how many are satisfiable.
    Several,
}

/// Classify a `Range` header without the object's length (see [`Ask`]).
pub(crate) fn ask(header: &HeaderValue) -> Ask {
    let Ok(text) = header.to_str() else {
        return Ask::Whole;
    };
    let parsed = match http_range_header::parse_range_header(text) {
        Ok(parsed) => parsed,
        Err(RangeUnsatisfiableError::ZeroSuffix) => return Ask::One,
        Err(_) => return Ask::Whole,
    };
    let inverted = parsed.ranges.iter().any(|r| {
        matches!((r.start, r.end), (StartPosition::Index(first), EndPosition::Index(last)) if last < first)
    });
    match parsed.ranges.len() {
        _ if inverted => Ask::Whole,
        0 => Ask::Whole,
        1 => Ask::One,
        _ => Ask::Several,
    }
}

/// Where a single range starts, before the object's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// `bytes=first-last` or `bytes=first-`.
    At(u64),
    /// `bytes=-n`: `n` bytes before an end that is not known yet.
    FromEnd,
}

/// Where the range of a header that asks for exactly one range starts (`None` otherwise:
/// several ranges, or a header [`decide`] ignores or finds unsatisfiable whatever the
/// length, as `bytes=-0`).
pub(crate) fn start(header: &HeaderValue) -> Option<Start> {
    let text = header.to_str().ok()?;
    let parsed = http_range_header::parse_range_header(text).ok()?;
    match parsed.ranges.as_slice() {
        [one] => match (one.start, one.end) {
            (StartPosition::Index(first), EndPosition::Index(last)) if last < first => None,
            (StartPosition::Index(first), _) => Some(Start::At(first)),
            (StartPosition::FromLast(_), _) => Some(Start::FromEnd),
        },
        _ => None,
    }
}

/// Decide what a `Range` header asks of an object of `len` bytes.
pub(crate) fn decide(header: &HeaderValue, len: u64) -> Decision {
    let Ok(text) = header.to_str() else {
        return Decision::Full;
    };
    let parsed = match http_range_header::parse_range_header(text) {
        Ok(parsed) => parsed,
        // `bytes=-0`: well-formed, and never satisfiable (§14.1.1).
        Err(RangeUnsatisfiableError::ZeroSuffix) => return Decision::Unsatisfiable,
        Err(_) => return Decision::Full,
    };
    let mut satisfiable = Vec::new();
    for range in &parsed.ranges {
        let bytes = match (range.start, range.end) {
            // `first-pos > last-pos` makes the whole ranges-specifier invalid (§14.1.1).
            (StartPosition::Index(first), EndPosition::Index(last)) if last < first => {
                return Decision::Full;
            }
            (StartPosition::Index(first), EndPosition::Index(last)) => {
                first..last.saturating_add(1).min(len)
            }
            (StartPosition::Index(first), EndPosition::LastByte) => first..len,
            // A suffix longer than the object means the whole object (§14.1.1).
            (StartPosition::FromLast(n), _) => len.saturating_sub(n)..len,
        };
        if bytes.start < len && !bytes.is_empty() {
            satisfiable.push(bytes);
        }
    }
    match satisfiable.len() {
        0 => Decision::Unsatisfiable,
        1 => Decision::Partial(satisfiable.remove(0)),
        _ => Decision::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    fn d(h: &'static str, len: u64) -> Decision {
        decide(&HeaderValue::from_static(h), len)
    }

    #[test]
    fn rfc_9110_examples() {
        // §14.1.2, a representation of 10000 bytes.
        assert_eq!(d("bytes=0-499", 10000), Partial(0..500));
        assert_eq!(d("bytes=500-999", 10000), Partial(500..1000));
        assert_eq!(d("bytes=-500", 10000), Partial(9500..10000));
        assert_eq!(d("bytes=9500-", 10000), Partial(9500..10000));
        assert_eq!(d("bytes=0-0,-1", 10000), Full);
        assert_eq!(d("bytes=500-600,601-999", 10000), Full);
    }

    #[test]
    fn what_a_range_asks_before_the_length_is_known() {
        let a = |h: &'static str| ask(&HeaderValue::from_static(h));
        assert_eq!(a("bytes=0-9"), Ask::One);
        assert_eq!(a("bytes=-0"), Ask::One);
        assert_eq!(a("bytes=10-"), Ask::One);
        assert_eq!(a("bytes=0-0,-1"), Ask::Several);
        assert_eq!(a("bytes=5-2"), Ask::Whole);
        assert_eq!(a("bytes=0-1,5-2"), Ask::Whole);
        assert_eq!(a("items=0-5"), Ask::Whole);
        assert_eq!(a("bytes=abc"), Ask::Whole);
        // Whatever `ask` says, `decide` agrees: an ignored header is always `Full`.
        for h in ["bytes=5-2", "items=0-5", "bytes=abc", "bytes=0-1,5-2"] {
            assert_eq!(d(h, 100), Full, "{h}");
        }
    }

    #[test]
    fn where_one_range_starts_before_the_length_is_known() {
        let s = |h: &'static str| start(&HeaderValue::from_static(h));
        assert_eq!(s("bytes=0-99"), Some(Start::At(0)));
        assert_eq!(s("bytes=5000-"), Some(Start::At(5000)));
        assert_eq!(s("bytes=-100"), Some(Start::FromEnd));
        for h in [
            "bytes=-0",
            "bytes=5-2",
            "bytes=0-1,5-9",
            "items=0-5",
            "bytes=abc",
        ] {
            assert_eq!(s(h), None, "{h}");
        }
    }

    #[test]
    fn edges() {
        assert_eq!(d("bytes=0-999999", 100), Partial(0..100));
        assert_eq!(d("bytes=-1000", 100), Partial(0..100));
        assert_eq!(d("bytes=100-", 100), Unsatisfiable);
        assert_eq!(d("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(d("bytes=-0", 100), Unsatisfiable);
        assert_eq!(d("bytes=0-", 0), Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Unsatisfiable);
        assert_eq!(d("bytes=5-3", 100), Full);
        assert_eq!(d("items=0-5", 100), Full);
        assert_eq!(d("bytes=abc", 100), Full);
        // One satisfiable range among unsatisfiable ones.
        assert_eq!(d("bytes=0-9,500-600", 100), Partial(0..10));
    }
}
