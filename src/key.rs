//! Request path → store key.
//!
//! The path is percent-decoded exactly once. Anything that is not a clean key is refused
//! (the caller then returns the inner response untouched, so nothing is fetched or stored):
//!
//! - an empty key (`/`), empty segments (`//`, a trailing `/`), `.` and `..` segments;
//! - segments that servers read as dot segments (see [`reads_as_dot_segment`]): a `.` or
//!   `..` followed by a path parameter (`..;`, `.;x`, `..;jsessionid=1`: Tomcat, Jetty and
//!   Spring drop what follows the `;` and resolve the rest), and Unicode dots that NFKC
//!   normalises to `.` (fullwidth `．`, `․`, `﹒`, `‥`, ...), alone or before a `;`;
//! - an encoded `/` (`%2F`), a backslash (raw or `%5C`: several origins and file systems treat
//!   it as a separator, so it is refused rather than guessed at), and the characters NFKC
//!   normalises to a `/` or `\` (fullwidth `／`, `＼`, `﹨`, `℅`, ...);
//! - control characters (C0, DEL and C1), invalid UTF-8, and malformed escapes (`%zz`);
//! - a decoded segment that still looks percent-encoded (`%2e` after one decode means the
//!   client double-encoded it, which is how traversals slip past single-decode checks);
//! - keys longer than [`MAX_KEY_LEN`] bytes (S3's limit).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The longest key accepted, in bytes after decoding (S3 and most object stores: 1024).
pub const MAX_KEY_LEN: usize = 1024;

/// Parse the path of a request URI (`/a/b%20c.txt`) into a clean key (`a/b c.txt`).
///
/// Returns `None` for anything that is not a clean key; see the [module docs](self).
pub fn parse(path: &str) -> Option<String> {
    let raw = path.strip_prefix('/')?;
    if raw.is_empty() || raw.len() > MAX_KEY_LEN * 3 {
        return None;
    }
    // Most paths are plain ASCII with nothing to decode: then the only segments to refuse
    // are empty ones, `.` and `..` (without a `;` there is no path parameter, without a `%`
    // nothing is encoded, and no ASCII character folds to a dot or a separator).
    if raw.bytes().all(plain) {
        let clean = raw.len() <= MAX_KEY_LEN
            && raw
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        return clean.then(|| raw.to_owned());
    }
    let mut key = String::with_capacity(raw.len());
    for (i, segment) in raw.split('/').enumerate() {
        if i > 0 {
            key.push('/');
        }
        key.push_str(&decode_segment(segment)?);
    }
    (key.len() <= MAX_KEY_LEN).then_some(key)
}

/// The request path of a clean `key`: `/` and each segment percent-encoded, so that
/// [`parse`] gives the key back.
///
/// ```
/// use tower_origin_pull::key;
/// assert_eq!(key::to_path("a b/c%d.png"), "/a%20b/c%25d.png");
/// assert_eq!(key::parse(&key::to_path("a b/c%d.png")).as_deref(), Some("a b/c%d.png"));
/// ```
pub fn to_path(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut path = String::with_capacity(key.len() + 1);
    for segment in key.split('/') {
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(segment, SEGMENT));
    }
    path
}

/// Whether `key` (already decoded, no leading `/`) is a clean key, by the same rules as
/// [`parse`]: what a warm-up list or an API caller names is held to the same standard as a
/// request path.
pub fn is_clean(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !reads_as_dot_segment(segment)
                && !segment
                    .chars()
                    .any(|c| c == '\\' || c.is_control() || folds_to_separator(c))
                && !looks_encoded(segment)
        })
}

/// Whether a server may read `segment` (decoded) as a dot segment, `.` or `..`: the segment
/// itself, or its part before the first `;` (a path parameter: `..;`, `.;x`,
/// `..;jsessionid=1`), once the characters whose NFKC form is made of dots or a `;` are
/// replaced by that form (fullwidth `．` and `；`, one-dot leader `․`, two-dot leader `‥`,
/// small full stop `﹒`, Greek question mark `;`, ...).
///
/// Used for keys ([`parse`], [`is_clean`]) and again for every segment of an origin path
/// after the rule's rewrite, so that no path an origin resolves as `..` leaves its base.
pub fn reads_as_dot_segment(segment: &str) -> bool {
    let mut dots = 0;
    for c in segment.chars() {
        match fold(c) {
            Folded::Dots(n) => dots += n,
            Folded::Semicolon => break,
            Folded::Other => return false,
        }
        if dots > 2 {
            return false;
        }
    }
    dots == 1 || dots == 2
}

/// A character as NFKC sees it, for the dot-segment check.
enum Folded {
    /// `.`, or a character whose NFKC form is this many `.` (and nothing else).
    Dots(usize),
    /// `;`, or a character whose NFKC form is `;`.
    Semicolon,
    Other,
}

/// The code points whose NFKC form is made of `.` only, or is `;` (from Unicode 14's NFKC data; the other
/// code points whose NFKC form contains a `.` add letters or digits: `⒈` is `1.`).
fn fold(c: char) -> Folded {
    match c {
        // FULL STOP, ONE DOT LEADER, SMALL FULL STOP, FULLWIDTH FULL STOP
        '.' | '\u{2024}' | '\u{FE52}' | '\u{FF0E}' => Folded::Dots(1),
        // TWO DOT LEADER, PRESENTATION FORM FOR VERTICAL TWO DOT LEADER
        '\u{2025}' | '\u{FE30}' => Folded::Dots(2),
        // HORIZONTAL ELLIPSIS, PRESENTATION FORM FOR VERTICAL HORIZONTAL ELLIPSIS
        '\u{2026}' | '\u{FE19}' => Folded::Dots(3),
        // SEMICOLON, GREEK QUESTION MARK, PRESENTATION FORM FOR VERTICAL SEMICOLON, SMALL
        // SEMICOLON, FULLWIDTH SEMICOLON
        ';' | '\u{037E}' | '\u{FE14}' | '\u{FE54}' | '\u{FF1B}' => Folded::Semicolon,
        _ => Folded::Other,
    }
}

/// The code points whose NFKC form contains a `/` or a `\` (from Unicode 14's NFKC data): a server that
/// normalises the path would split the segment there.
fn folds_to_separator(c: char) -> bool {
    matches!(
        c,
        // ACCOUNT OF, ADDRESSED TO THE SUBJECT, CARE OF, CADA UNA
        '\u{2100}' | '\u{2101}' | '\u{2105}' | '\u{2106}'
        // SMALL REVERSE SOLIDUS, FULLWIDTH SOLIDUS, FULLWIDTH REVERSE SOLIDUS
        | '\u{FE68}' | '\u{FF0F}' | '\u{FF3C}'
    )
}

fn decode_segment(raw: &str) -> Option<Cow<'_, str>> {
    if raw.is_empty() || !well_formed_escapes(raw) {
        return None;
    }
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    let clean = !reads_as_dot_segment(&decoded)
        && !decoded
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || folds_to_separator(c))
        && !looks_encoded(&decoded);
    clean.then_some(decoded)
}

/// A byte of a path that needs no decoding nor any check beyond the dot segments: an ASCII
/// letter or digit, `/`, or punctuation other than `%`, `;`, `\\` and the characters a URI
/// path cannot hold raw.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,=:@".contains(&b)
}

/// Every `%` is followed by two hex digits.
fn well_formed_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The decoded text still holds a `%XX` escape: the client encoded twice.
fn looks_encoded(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn clean_keys() {
        assert_eq!(parse("/a.txt").as_deref(), Some("a.txt"));
        assert_eq!(parse("/dir/sub/a.txt").as_deref(), Some("dir/sub/a.txt"));
        assert_eq!(parse("/a%20b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(parse("/%E4%B8%AD.txt").as_deref(), Some("中.txt"));
        assert_eq!(parse("/100%25").as_deref(), Some("100%"));
        assert_eq!(parse("/..a/b..").as_deref(), Some("..a/b.."));
    }

    #[test]
    fn segments_servers_read_as_dot_segments_are_refused() {
        for bad in [
            "/..;/admin/secret.txt",
            "/a/..;/b",
            "/a/.;/b",
            "/a/..;jsessionid=1/b",
            "/a/.;x/b",
            "/a/..%3B/b",
            "/a/%EF%BC%8E%EF%BC%8E/b",   // fullwidth ．．
            "/a/%EF%BC%8E/b",            // fullwidth ．
            "/a/%E2%80%A4/b",            // one-dot leader
            "/a/%E2%80%A5/b",            // two-dot leader
            "/a/%EF%B9%92%EF%B9%92;x/b", // small full stops, then a parameter
            "/a/..%EF%BC%9B/b",          // .. and a fullwidth semicolon
            "/a/..%CD%BE/b",             // .. and a Greek question mark
            "/a/%EF%BC%8F/b",            // fullwidth solidus
            "/a/x%EF%BC%BCy",            // fullwidth reverse solidus
        ] {
            assert_eq!(parse(bad), None, "{bad:?} must be refused");
        }
        for good in [
            "/a/...;/b",
            "/a/%E2%80%A6/b",
            "/a/..a;/b",
            "/a/;x/b",
            "/a/x;../b",
        ] {
            assert!(parse(good).is_some(), "{good:?}");
        }
        for bad in ["..;", ".;", "a/..;x/b", "．．", "a/‥/b", "a/．;/b", "a／b"] {
            assert!(!super::is_clean(bad), "{bad:?}");
        }
    }

    #[test]
    fn clean_decoded_keys() {
        assert!(super::is_clean("a/b c.txt"));
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a\\b", "a\u{0}b", "a%2Fb"] {
            assert!(!super::is_clean(bad), "{bad:?}");
        }
    }

    #[test]
    fn unclean_keys() {
        for bad in [
            "",
            "/",
            "a",
            "//a",
            "/a/",
            "/a//b",
            "/.",
            "/..",
            "/a/../b",
            "/a/./b",
            "/%2e%2e/x",
            "/.%2E/x",
            "/a%2Fb",
            "/a%2fb",
            "/a\\b",
            "/a%5cb",
            "/a%00b",
            "/a%0Ab",
            "/a%0d%0a",
            "/a%7f",
            "/a%C2%85",
            "/a%FF",
            "/a%C3",
            "/a%zz",
            "/a%2",
            "/%252e%252e/x",
            "/a%2541",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} must be refused");
        }
        assert_eq!(parse(&format!("/{}", "a".repeat(1025))), None);
        assert!(parse(&format!("/{}", "a".repeat(1024))).is_some());
    }
}
