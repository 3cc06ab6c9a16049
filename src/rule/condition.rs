//! Rule conditions beyond prefix and suffix: key globs, request headers, request host.

use http::HeaderMap;
use http::header::{HOST, HeaderName};

use crate::Error;

/// A glob on the key: `*` and `?` do not cross `/`, `**` does; `[abc]` and `[!a-z]` classes.
///
/// ```
/// use tower_origin_pull::Glob;
///
/// let g = Glob::new("img/*.png").unwrap();
/// assert!(g.matches("img/cat.png"));
/// assert!(!g.matches("img/2024/cat.png"));
/// assert!(Glob::new("img/**/*.png").unwrap().matches("img/2024/05/cat.png"));
/// ```
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: glob::Pattern,
}

impl Glob {
    /// Compile `pattern`; an invalid one is a configuration error.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        glob::Pattern::new(pattern)
            .map(|pattern| Self { pattern })
            .map_err(|e| Error::config(format!("glob {pattern:?}: {e}")))
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        self.pattern.matches_with(
            key,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            },
        )
    }
}

/// How a request header's value is compared (OSS `IncludeHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// The value equals this.
    Equals(String),
    /// The value starts with this.
    StartsWith(String),
    /// The value ends with this.
    EndsWith(String),
    /// The header is present, whatever its value.
    Present,
}

/// A condition on a request header: a rule matches only if the header is there and matches.
#[derive(Debug, Clone)]
pub(crate) struct HeaderCondition {
    pub(crate) name: HeaderName,
    pub(crate) test: HeaderMatch,
}

impl HeaderCondition {
    pub(crate) fn holds(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let Ok(v) = v.to_str() else { return false };
            match &self.test {
                HeaderMatch::Equals(x) => v == x,
                HeaderMatch::StartsWith(x) => v.starts_with(x.as_str()),
                HeaderMatch::EndsWith(x) => v.ends_with(x.as_str()),
                HeaderMatch::Present => true,
            }
        })
    }
}

/// Which request hosts a rule applies to (COS `FilterHost` / `ForbidHost`). Hosts are
/// compared case-insensitively, without the port.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostCondition {
    pub(crate) allow: Vec<String>,
    pub(crate) deny: Vec<String>,
}

impl HostCondition {
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub(crate) fn holds(&self, headers: &HeaderMap) -> bool {
        let host = request_host(headers);
        let listed = |list: &[String]| host.as_deref().is_some_and(|h| list.iter().any(|x| x == h));
        (self.allow.is_empty() || listed(&self.allow)) && !listed(&self.deny)
    }
}

/// The request's host from `Host`, lower-cased, without the port.
pub(crate) fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let host = match host.strip_prefix('[') {
        // An IPv6 literal: "[::1]" or "[::1]:80".
        Some(rest) => rest.find(']').map_or(host, |i| &host[..i + 2]),
        None => host.split(':').next().unwrap_or(host),
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("a/*").unwrap();
        assert!(g.matches("a/b"));
        assert!(!g.matches("a/b/c"));
        assert!(Glob::new("a/**").unwrap().matches("a/b/c"));
        assert!(Glob::new("*.[jp]pg").unwrap().matches("x.jpg"));
        assert!(Glob::new("[").is_err());
    }

    #[test]
    fn hosts() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "CDN.Example.com:8080".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("cdn.example.com"));
        h.insert(HOST, "[::1]:80".parse().unwrap());
        assert_eq!(request_host(&h).as_deref(), Some("[::1]"));
        let c = HostCondition {
            allow: vec!["a.example".into()],
            deny: vec![],
        };
        h.insert(HOST, "a.example".parse().unwrap());
        assert!(c.holds(&h));
        h.insert(HOST, "b.example".parse().unwrap());
        assert!(!c.holds(&h));
        let c = HostCondition {
            allow: vec![],
            deny: vec!["b.example".into()],
        };
        assert!(!c.holds(&h));
        assert!(c.holds(&HeaderMap::new()));
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        h.insert("x-tenant", "blue-7".parse().unwrap());
        let c = |test| HeaderCondition {
            name: HeaderName::from_static("x-tenant"),
            test,
        };
        assert!(c(HeaderMatch::Equals("blue-7".into())).holds(&h));
        assert!(c(HeaderMatch::StartsWith("blue".into())).holds(&h));
        assert!(c(HeaderMatch::EndsWith("-7".into())).holds(&h));
        assert!(!c(HeaderMatch::Equals("blue".into())).holds(&h));
        assert!(!c(HeaderMatch::Present).holds(&HeaderMap::new()));
    }
}
