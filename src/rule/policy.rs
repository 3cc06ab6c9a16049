//! Per-rule policies: headers and query string sent to the origin, Range and HEAD misses,
//! integrity checks, object size limits, statuses passed through.

use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::Error;

/// Headers that are never sent to an origin, and are a configuration error when named:
/// hop-by-hop headers, `Host` (always the origin's own), framing, and headers that would
/// make a stored fill partial or conditional.
const FORBIDDEN: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Headers that change what the origin returns or who is asking: never sent by
/// [`HeaderPolicy::pass_all`], sent only when listed explicitly.
const SENSITIVE: &[&str] = &["authorization", "cookie", "accept-encoding"];

/// The client's credentials: a response to a request that forwarded them is that client's.
const CREDENTIALS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// What of the client's request reaches the origin; see [`HeaderPolicy::client_input`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientInput {
    /// Some client header is forwarded.
    pub(crate) headers: bool,
    /// The client's credentials are forwarded.
    pub(crate) credentials: bool,
}

fn forbidden(name: &HeaderName) -> bool {
    FORBIDDEN.contains(&name.as_str())
}

fn header_name(name: &str) -> Result<HeaderName, Error> {
    let parsed = HeaderName::try_from(name)
        .map_err(|_| Error::config(format!("header name {name:?} is not valid")))?;
    if forbidden(&parsed) {
        return Err(Error::config(format!(
            "header {name:?} is never sent to an origin (hop-by-hop, Host, framing, Range or \
             conditional)"
        )));
    }
    Ok(parsed)
}

#[derive(Debug, Clone, Default)]
enum Pass {
    #[default]
    Nothing,
    All {
        except: Vec<HeaderName>,
    },
    Only(Vec<HeaderName>),
}

/// Which of the client's request headers go to the origin, and which fixed ones are added.
///
/// The default sends none of the client's headers.
///
/// ```
/// use tower_origin_pull::HeaderPolicy;
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let policy = HeaderPolicy::pass_all_except(["x-debug"])?
///     .set("x-origin-token", "s3cr3t")?;
/// assert!(HeaderPolicy::pass_only(["connection"]).is_err()); // hop-by-hop
/// assert!(HeaderPolicy::none().set("x-bad", "a\r\nb").is_err()); // CR/LF
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    pass: Pass,
    set: HeaderMap,
}

impl HeaderPolicy {
    /// Send none of the client's headers (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Send the client's headers except hop-by-hop, `Host`, `Range`, conditional headers, and
    /// `Authorization`, `Cookie`, `Accept-Encoding` (those three only when listed with
    /// [`HeaderPolicy::pass_only`]).
    pub fn pass_all() -> Self {
        Self {
            pass: Pass::All { except: Vec::new() },
            set: HeaderMap::new(),
        }
    }

    /// [`HeaderPolicy::pass_all`], minus `names`.
    pub fn pass_all_except<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let except = names
            .into_iter()
            .map(|n| {
                HeaderName::try_from(n)
                    .map_err(|_| Error::config(format!("header name {n:?} is not valid")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pass: Pass::All { except },
            set: HeaderMap::new(),
        })
    }

    /// Send only the client's headers named here (which may include `Authorization`,
    /// `Cookie` or `Accept-Encoding`). Naming a forbidden header is an error.
    pub fn pass_only<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let only = names
            .into_iter()
            .map(header_name)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            pass: Pass::Only(only),
            set: HeaderMap::new(),
        })
    }

    /// Always send `name: value` (replacing the client's), for example a token for a private
    /// origin. A forbidden name or a value with control characters is an error.
    pub fn set(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let name = header_name(name)?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::config(format!("header {name}: the value is not valid")))?;
        self.set.insert(name, value);
        Ok(self)
    }

    /// Whether the client's headers are needed at all.
    pub(crate) fn reads_request(&self) -> bool {
        !matches!(self.pass, Pass::Nothing)
    }

    /// What of the client's own request this policy sends to the origin: any header at
    /// all, and its credentials (`Authorization`, `Cookie`, `Proxy-Authorization`). A header
    /// the policy [`set`](Self::set)s is configuration, not client input.
    pub(crate) fn client_input(&self, incoming: Option<&HeaderMap>) -> ClientInput {
        let mut input = ClientInput::default();
        let Some(incoming) = incoming else {
            return input;
        };
        for name in incoming.keys() {
            if self.passes(name) && !self.set.contains_key(name) {
                input.headers = true;
                input.credentials |= CREDENTIALS.contains(&name.as_str());
            }
        }
        input
    }

    fn passes(&self, name: &HeaderName) -> bool {
        match &self.pass {
            Pass::Nothing => false,
            Pass::All { except } => {
                !forbidden(name) && !SENSITIVE.contains(&name.as_str()) && !except.contains(name)
            }
            Pass::Only(list) => list.contains(name),
        }
    }

    /// The headers to send for a request that carried `incoming`.
    pub(crate) fn apply(&self, incoming: Option<&HeaderMap>) -> HeaderMap {
        let mut out = HeaderMap::new();
        if let Some(incoming) = incoming {
            for (name, value) in incoming {
                let pass = match &self.pass {
                    Pass::Nothing => false,
                    Pass::All { except } => {
                        !forbidden(name)
                            && !SENSITIVE.contains(&name.as_str())
                            && !except.contains(name)
                    }
                    Pass::Only(list) => list.contains(name),
                };
                if pass {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        for (name, value) in &self.set {
            out.insert(name.clone(), value.clone());
        }
        out
    }
}

/// Which part of the client's query string goes to the origin. The query string is not part
/// of the key (only [`Rule::key_query`](crate::Rule::key_query)'s parameters are), so a rule
/// that forwards it answers such requests privately unless it says
/// [`unkeyed_forwarding`](crate::Rule::unkeyed_forwarding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueryPolicy {
    /// Send none of it (the default, as OSS does).
    #[default]
    Drop,
    /// Send all of it, as the client encoded it (COS's default).
    Forward,
    /// Send only the parameters with these names, in the client's order and encoding.
    Only(Vec<String>),
}

impl QueryPolicy {
    pub(crate) fn apply(&self, query: Option<&str>) -> Option<String> {
        let query = query.filter(|q| !q.is_empty())?;
        match self {
            Self::Drop => None,
            Self::Forward => Some(query.to_owned()),
            Self::Only(names) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let name = pair.split('=').next().unwrap_or("");
                        names.iter().any(|n| n == name)
                    })
                    .collect();
                (!kept.is_empty()).then(|| kept.join("&"))
            }
        }
    }
}

/// What a `GET` with a `Range` header does on a miss.
///
/// The default is [`JoinFill`](Self::JoinFill) with a `max_wait` of
/// [`DEFAULT_MAX_WAIT`](Self::DEFAULT_MAX_WAIT) (2 s), chosen on `benches/spool.sh`
/// (BENCHMARKS.md, M5b): `aria2c -x8` on a cold 64 MiB object made the origin send 1.00× the
/// object under it, against 1.88× under `ServeRangeAndFill` (each segment proxied, plus the
/// full fill) — origin egress is what a migration pays for. Its cost: ranges far ahead
/// of a fill wait for it (up to `max_wait`), so that download took 1.58 s instead of 0.42 s
/// (0.33 s from the origin directly, whose 8 connections each ran at the origin's
/// per-connection rate). A cold range far from the start is still answered from the origin
/// in one round trip: it asks the origin for itself alongside the full fill it starts
/// (which goes on). Choose `ServeRangeAndFill` where the client's time matters more than
/// the origin's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeMiss {
    /// Serve the range from the origin at once (`206`, `x-origin-pull: proxied`) and fill the
    /// whole object in the background, deduplicated with other fills of the key (as COS
    /// does; the default before issue 16).
    ServeRangeAndFill,
    /// Fill the whole object (joining a fill in flight), then serve the range from the store.
    FillThenServe,
    /// Serve the range from the origin; store nothing.
    ProxyRange,
    /// Join the key's fill in flight, reading the range from the window or the fill's spool
    /// as soon as its bytes are there, when the fill is expected to reach the range's first
    /// byte within `max_wait` at the rate it has had so far; otherwise serve the range from
    /// the origin (`x-origin-pull: proxied`, counted in
    /// [`SpoolStats::ranges_proxied`](crate::SpoolStats::ranges_proxied)). With no fill in
    /// flight, the range starts the full fill, which has no rate yet: the range joins it if
    /// it starts within the fill's first window (`coalesce_window`), else it is proxied.
    /// Unless the range is known to start within that window, its ranged origin request is
    /// sent at once, alongside the full fill, when a slot of `max_fills` is free (always
    /// for a suffix range, `bytes=-n`, which starts where the object's length puts it):
    /// whichever of the two response heads comes first may proxy the range, so it waits
    /// for no other origin round trip; a join is decided on the full fill's head, and then
    /// the ranged request is cancelled (a suffix range of a small object: one extra origin
    /// request at most, cut short). `Duration::MAX`: always join (one origin request per
    /// object whatever the ranges). The range's last byte is sent once the fill has ended
    /// well.
    JoinFill {
        /// How long a range may wait for the fill to reach its first byte.
        max_wait: Duration,
    },
}

impl RangeMiss {
    /// The `max_wait` of the default [`RangeMiss::JoinFill`]: 2 s.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);
}

impl Default for RangeMiss {
    /// [`RangeMiss::JoinFill`] with [`RangeMiss::DEFAULT_MAX_WAIT`].
    fn default() -> Self {
        Self::JoinFill {
            max_wait: Self::DEFAULT_MAX_WAIT,
        }
    }
}

/// What a `HEAD` does on a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeadMiss {
    /// Nothing: the inner response stands (the default, as every cloud does).
    #[default]
    Ignore,
    /// Answer with the origin's answer to a `HEAD`; store nothing.
    OriginHead,
    /// Fill the store (a full `GET` to the origin) and answer with its headers.
    Fill,
}

/// A checksum to verify the object against before it is stored. A check applies only when
/// the origin sends the header it reads; a mismatch stores nothing and ends the client's body
/// in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checksum {
    /// `Content-MD5` (base64 of the MD5 digest, RFC 1864). On by default.
    ContentMd5,
    /// A header holding the SHA-256 digest, base64 or hex (for example
    /// `x-amz-checksum-sha256`).
    Sha256Header(HeaderName),
    /// An `ETag` that looks like a plain MD5 (32 hex digits, as S3 gives single-part
    /// uploads); other ETags are not checked.
    EtagMd5,
}

/// What happens to an object larger than the rule's maximum size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Oversize {
    /// Stream it to the client without storing it (the default).
    #[default]
    Proxy,
    /// Refuse it: `502` when the size is known up front, a body error otherwise.
    Refuse,
}

/// Which end-to-end origin response headers beyond the representation's own are kept with
/// a pulled object and replayed on every hit ([`Rule::keep_response_headers`]).
///
/// `Content-Type`, `Cache-Control`, `Content-Disposition`, `Content-Encoding`,
/// `Content-Language`, `Expires`, the validators and user metadata are always kept; this
/// adds the others an origin sends per object (`Link`, `X-Robots-Tag`,
/// `Access-Control-Allow-Origin`, an application's own `X-…`). Never kept, whatever is
/// asked: hop-by-hop headers (and those the origin's `Connection` names), `Set-Cookie`,
/// authentication challenges, `Date`, `Age`, `Server`, `Via`, `Warning`, request ids, and
/// host-wide policies (`Strict-Transport-Security`, `Alt-Svc`, `Clear-Site-Data`).
///
/// [`Rule::keep_response_headers`]: crate::Rule::keep_response_headers
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepHeaders {
    /// No other header (the default).
    #[default]
    None,
    /// Every end-to-end header but those never kept.
    All,
    /// These headers (if they are not among those never kept).
    Only(Vec<HeaderName>),
}

impl KeepHeaders {
    /// Keep the headers named in `names`; an invalid name is an error.
    pub fn only<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let names = names
            .into_iter()
            .map(|name| {
                HeaderName::try_from(name)
                    .map_err(|_| Error::config(format!("header name {name:?} is not valid")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Only(names))
    }
}

/// What a refresh does with a stored object whose origin now answers `404`
/// ([`Rule::on_origin_gone`](crate::Rule::on_origin_gone)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OriginGone {
    /// Keep serving it (the default: a mirror outlives its origin).
    #[default]
    Keep,
    /// Remove it from the store (no tombstone: it is pulled again if it comes back).
    Delete,
}

/// What the fill checks before storing; built from the rule.
#[derive(Debug, Clone)]
pub(crate) struct FillChecks {
    pub(crate) checksums: Vec<Checksum>,
    pub(crate) max_size: Option<(u64, Oversize)>,
    pub(crate) pass_through: Vec<StatusCode>,
    /// Store (and share) responses marked private, and responses to requests that forward
    /// the client's credentials ([`Rule::store_private`](crate::Rule::store_private)).
    pub(crate) store_private: bool,
    /// Store objects whose type a file server would change
    /// ([`Rule::store_mistyped`](crate::Rule::store_mistyped)).
    pub(crate) store_mistyped: bool,
    /// The headers kept beyond the representation's own ([`KeepHeaders`]).
    pub(crate) keep: KeepHeaders,
    /// The rule's refresh policy ([`Rule::revalidate_after`](crate::Rule::revalidate_after)).
    pub(crate) revalidate: Option<crate::refresh::Revalidate>,
    /// Revalidate a due object before answering its hit
    /// ([`Rule::revalidate_before_serve`](crate::Rule::revalidate_before_serve)).
    pub(crate) before_serve: bool,
    /// What a refresh does when the origin no longer has the object.
    pub(crate) gone: OriginGone,
    /// The inner service (`ServeStore`) looked the key up in the store just before this
    /// fill: it skips its own re-check (set on the spec, never on a rule).
    pub(crate) store_checked: bool,
    /// This fill is a refresh of a stored object (set on the spec, never on a rule).
    pub(crate) refresh_fill: bool,
}

impl Default for FillChecks {
    fn default() -> Self {
        Self {
            checksums: vec![Checksum::ContentMd5],
            max_size: None,
            pass_through: Vec::new(),
            store_private: false,
            store_mistyped: false,
            keep: KeepHeaders::None,
            revalidate: None,
            gone: OriginGone::Keep,
            before_serve: false,
            refresh_fill: false,
            store_checked: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_policies() {
        let mut incoming = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer x"),
            ("cookie", "a=b"),
            ("range", "bytes=0-1"),
            ("connection", "close"),
            ("x-tenant", "blue"),
            ("x-debug", "1"),
            ("accept-encoding", "gzip"),
            ("if-none-match", "\"v\""),
        ] {
            incoming.insert(k, v.parse().unwrap());
        }
        let names = |m: HeaderMap| {
            let mut v: Vec<String> = m.keys().map(|k| k.to_string()).collect();
            v.sort();
            v
        };
        assert!(names(HeaderPolicy::none().apply(Some(&incoming))).is_empty());
        assert_eq!(
            names(HeaderPolicy::pass_all().apply(Some(&incoming))),
            ["x-debug", "x-tenant"]
        );
        assert_eq!(
            names(
                HeaderPolicy::pass_all_except(["x-debug"])
                    .unwrap()
                    .apply(Some(&incoming))
            ),
            ["x-tenant"]
        );
        assert_eq!(
            names(
                HeaderPolicy::pass_only(["authorization", "x-tenant"])
                    .unwrap()
                    .apply(Some(&incoming))
            ),
            ["authorization", "x-tenant"]
        );
        let set = HeaderPolicy::none().set("x-token", "t").unwrap();
        assert_eq!(set.apply(None)["x-token"], "t");
        // What of the client's request reaches the origin: a configured header (even one
        // named Authorization) is configuration, not client input.
        let input = |p: HeaderPolicy| p.client_input(Some(&incoming));
        assert_eq!(input(HeaderPolicy::none()), ClientInput::default());
        let configured = HeaderPolicy::none()
            .set("authorization", "Bearer origin")
            .unwrap();
        assert_eq!(input(configured), ClientInput::default());
        let overridden = HeaderPolicy::pass_only(["authorization", "x-tenant"])
            .unwrap()
            .set("authorization", "Bearer origin")
            .unwrap();
        assert_eq!(
            input(overridden),
            ClientInput {
                headers: true,
                credentials: false
            }
        );
        let forwarded = HeaderPolicy::pass_only(["cookie"]).unwrap();
        assert_eq!(
            input(forwarded),
            ClientInput {
                headers: true,
                credentials: true
            }
        );
        assert_eq!(
            input(HeaderPolicy::pass_all()),
            ClientInput {
                headers: true,
                credentials: false
            },
            "pass_all never sends Authorization or Cookie"
        );
        for bad in [
            "connection",
            "host",
            "range",
            "transfer-encoding",
            "if-none-match",
        ] {
            assert!(HeaderPolicy::pass_only([bad]).is_err(), "{bad}");
            assert!(HeaderPolicy::none().set(bad, "x").is_err(), "{bad}");
        }
        assert!(HeaderPolicy::none().set("x-a", "bad\nvalue").is_err());
    }

    #[test]
    fn query_policies() {
        let q = Some("a=1&b=2&a=3&c");
        assert_eq!(QueryPolicy::Drop.apply(q), None);
        assert_eq!(
            QueryPolicy::Forward.apply(q).as_deref(),
            Some("a=1&b=2&a=3&c")
        );
        let only = QueryPolicy::Only(vec!["a".into(), "c".into()]);
        assert_eq!(only.apply(q).as_deref(), Some("a=1&a=3&c"));
        assert_eq!(QueryPolicy::Only(vec!["z".into()]).apply(q), None);
    }
}
