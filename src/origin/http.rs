//! [`HttpOrigin`]: an HTTP(S) server fixed in configuration, over hyper-util's pooled client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, CONTENT_LENGTH, HOST, HeaderName, LOCATION, RANGE,
    USER_AGENT,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::time::Instant;

use super::idle::IdleBody;
use super::tls::{Identity, IdentitySettings};
use super::{Origin, OriginRequest, OriginResponse};
use crate::time::{capped, deadline};
use crate::{BoxError, Error};

#[cfg(feature = "rustls")]
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
pub(crate) type Connector = HttpConnector;

/// The connector every outgoing request of the crate uses: TCP with `TCP_NODELAY` and a
/// connect timeout (capped at the crate's "far future", so any duration works), and TLS
/// (rustls, webpki roots, ALPN h2/http1.1) for `https`.
pub(crate) fn make_connector(connect_timeout: Duration) -> Result<Connector, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(capped(connect_timeout)));
    connector(http)
}

/// The connector of one origin: [`make_connector`]'s, with the origin's TLS server name
/// and extra root certificates when it has them.
fn origin_connector(
    connect_timeout: Duration,
    identity: &Identity,
    own: &Authority,
) -> Result<Connector, Error> {
    #[cfg(feature = "rustls")]
    if identity.server_name.is_some() || !identity.roots.is_empty() || identity.host.is_some() {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(capped(connect_timeout)));
        return super::tls::origin_connector(http, identity, own);
    }
    let _ = (identity, own);
    make_connector(connect_timeout)
}

/// Characters percent-encoded in each path segment sent to the origin: everything but
/// RFC 3986 `pchar` (unreserved, sub-delims, `:` and `@`). Non-ASCII is always encoded.
pub(super) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An origin reached over HTTP/1.1 or HTTP/2, `http://` or `https://` (rustls, webpki roots
/// and the [`ca_file`](HttpOriginBuilder::ca_file)s given).
///
/// The scheme, host, port and base path come from the URL given here and nowhere else.
/// Connections are pooled per origin. Build one and share it (`Arc` or clone: clones share
/// the pool).
///
/// ```
/// use std::time::Duration;
/// use tower_origin_pull::HttpOrigin;
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let origin = HttpOrigin::builder("http://127.0.0.1:8080/bucket")
///     .connect_timeout(Duration::from_secs(2))
///     .first_byte_timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpOrigin {
    scheme: Scheme,
    protocol: Option<Protocol>,
    authority: Authority,
    base_path: String,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    total_timeout: Option<Duration>,
    max_redirects: usize,
    redirects: Arc<Redirects>,
    /// `host_header`: the `Host` sent to the origin's own authority.
    host_header: Option<HeaderValue>,
    client: Client<Connector, Empty<Bytes>>,
}

/// Where redirects may lead, and which targets get the request's headers.
#[derive(Debug, Default)]
struct Redirects {
    /// `allow_redirect_to`: followed, with the safe headers only when the authority changes.
    allowed: Vec<Endpoint>,
    /// `trust_redirect_credentials`: followed, with every header of the request.
    trusted: Vec<Endpoint>,
}

/// A `host[:port]` entry of `allow_redirect_to` or `trust_redirect_credentials`. Without a
/// port it stands for the default port of the redirect's scheme (80 for `http`, 443 for
/// `https`): `cdn.example` matches `http://cdn.example/` and `https://cdn.example/`, not
/// `http://cdn.example:8080/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    fn parse(entry: &str) -> Result<Self, String> {
        let authority: Authority = entry
            .parse()
            .map_err(|_| format!("{entry:?} is not host or host:port"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{entry:?} is not host or host:port"));
        }
        if authority.host().is_empty() || (authority.as_str().ends_with(':')) {
            return Err(format!("{entry:?} is not host or host:port"));
        }
        Ok(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }

    fn matches(&self, scheme: &str, authority: &Authority) -> bool {
        self.host.eq_ignore_ascii_case(authority.host())
            && self.port.unwrap_or_else(|| default_port(scheme)) == port_of(scheme, authority)
    }
}

/// The port a URL with this scheme and authority connects to.
pub(crate) fn port_of(scheme: &str, authority: &Authority) -> u16 {
    authority.port_u16().unwrap_or_else(|| default_port(scheme))
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// Whether `entry` is a valid `allow_redirect_to` / `trust_redirect_credentials` entry
/// (`host` or `host:port`), or why not.
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn check_redirect_target(entry: &str) -> Result<(), String> {
    Endpoint::parse(entry).map(|_| ())
}

/// Whether two URLs share scheme, host and port (the authority credentials belong to).
fn same_authority(a: &Uri, b: &Uri) -> bool {
    let (Some(sa), Some(sb)) = (a.scheme_str(), b.scheme_str()) else {
        return false;
    };
    let (Some(aa), Some(ab)) = (a.authority(), b.authority()) else {
        return false;
    };
    sa.eq_ignore_ascii_case(sb)
        && aa.host().eq_ignore_ascii_case(ab.host())
        && port_of(sa, aa) == port_of(sb, ab)
}

/// The request headers a redirect to another authority still gets (unless that target is
/// trusted with them): none of them carries a credential or a configured secret.
const SAFE_ACROSS_AUTHORITIES: [HeaderName; 5] =
    [ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, RANGE, USER_AGENT];

fn safe_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in SAFE_ACROSS_AUTHORITIES {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Which scheme an [`HttpOrigin`] is asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Always `http`.
    Http,
    /// Always `https`.
    Https,
    /// `https` when the base URL is `https` (never downgraded, whatever the client used);
    /// for an `http` base URL, `https` when the client's scheme, as the layer reports it in
    /// [`OriginRequest::client_scheme`](crate::OriginRequest::client_scheme), is `https`,
    /// else `http`.
    SameAsRequest,
}

/// Settings for an [`HttpOrigin`]; see [`HttpOrigin::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpOriginBuilder {
    base_url: String,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    http2_prior_knowledge: bool,
    protocol: Option<Protocol>,
    total_timeout: Option<Duration>,
    max_redirects: usize,
    redirect_hosts: Vec<String>,
    trusted_redirect_hosts: Vec<String>,
    identity: IdentitySettings,
}

impl HttpOrigin {
    /// An origin at `base_url` (`http://host:port/optional/base/path`) with default timeouts.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::builder(base_url).build()
    }

    /// Start configuring an origin at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> HttpOriginBuilder {
        HttpOriginBuilder {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            http2_prior_knowledge: false,
            protocol: None,
            total_timeout: None,
            max_redirects: 3,
            redirect_hosts: Vec::new(),
            trusted_redirect_hosts: Vec::new(),
            identity: IdentitySettings::default(),
        }
    }

    fn scheme_for(&self, client: Option<&Scheme>) -> Scheme {
        match self.protocol {
            None => self.scheme.clone(),
            Some(Protocol::Http) => Scheme::HTTP,
            Some(Protocol::Https) => Scheme::HTTPS,
            // An https origin stays https: the client's scheme can only upgrade.
            Some(Protocol::SameAsRequest) if self.scheme == Scheme::HTTPS => Scheme::HTTPS,
            Some(Protocol::SameAsRequest) => match client {
                Some(s) if *s == Scheme::HTTPS => Scheme::HTTPS,
                _ => self.scheme.clone(),
            },
        }
    }

    /// Where a redirect from `from` (the URL that answered; `first` is the first URL asked)
    /// to `location` leads, if configuration allows it.
    fn follow(&self, first: &Uri, from: &Uri, location: &str) -> Result<Uri, String> {
        let next: Uri = if location.starts_with('/') && !location.starts_with("//") {
            let mut parts = from.clone().into_parts();
            parts.path_and_query = Some(location.parse().map_err(|_| "a malformed Location")?);
            Uri::from_parts(parts).map_err(|_| "a malformed Location")?
        } else {
            location.parse().map_err(|_| "a malformed Location")?
        };
        let (Some(scheme), Some(authority)) = (next.scheme_str(), next.authority()) else {
            return Err("a relative Location that is not an absolute path".to_owned());
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("a Location with scheme {scheme}"));
        }
        // Never echoed: the user name and password are what must not leak.
        if authority.as_str().contains('@') {
            return Err("a Location with credentials in it (refused)".to_owned());
        }
        if from.scheme() == Some(&Scheme::HTTPS) && scheme == "http" {
            return Err(format!(
                "http://{authority} from https (a downgrade is never followed)"
            ));
        }
        let own = first
            .authority()
            .is_some_and(|a| a.host().eq_ignore_ascii_case(authority.host()))
            && first
                .authority()
                .zip(first.scheme_str())
                .map(|(a, s)| port_of(s, a))
                == Some(port_of(scheme, authority));
        let listed = |list: &[Endpoint]| list.iter().any(|e| e.matches(scheme, authority));
        if !(own || listed(&self.redirects.allowed) || listed(&self.redirects.trusted)) {
            return Err(format!(
                "{scheme}://{authority}, which configuration does not allow"
            ));
        }
        Ok(next)
    }

    /// Whether a redirect target gets every header of the request, credentials included.
    fn trusted(&self, next: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (next.scheme_str(), next.authority()) else {
            return false;
        };
        self.redirects
            .trusted
            .iter()
            .any(|e| e.matches(scheme, authority))
    }

    /// The URL requested for `path` (and `query`) with the base URL's scheme (the one
    /// requested unless `protocol` says otherwise), always on the configured host.
    pub fn url_for(&self, path: &str, query: Option<&str>) -> Result<Uri, Error> {
        self.url_with_scheme(self.scheme.clone(), path, query)
    }

    fn url_with_scheme(
        &self,
        scheme: Scheme,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, Error> {
        // Sized for the common case (nothing to escape) so the pushes below do not
        // reallocate: a redirect builds one of these per request.
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 2 + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            // A rewrite can turn a clean key into `..` (a prefix stripped without its `/`:
            // `img../x` → `../x`); origins resolve dot segments, even percent-encoded ones,
            // so the request would leave the base path. Refuse it, and what servers read as
            // one (`..;x`, fullwidth dots: see `key::reads_as_dot_segment`).
            if crate::key::reads_as_dot_segment(segment) {
                return Err(Error::OriginRequest {
                    url: format!("{}://{}{}", self.scheme, self.authority, self.base_path),
                    source: format!("the origin path {path:?} has a dot segment").into(),
                });
            }
            pq.push('/');
            pq.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if pq.is_empty() {
            pq.push('/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq).map_err(|e| Error::OriginRequest {
            url: format!("{}://{}{}", self.scheme, self.authority, self.base_path),
            source: e.into(),
        })?;
        Uri::builder()
            .scheme(scheme)
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| Error::OriginRequest {
                url: format!("{}://{}{}", self.scheme, self.authority, self.base_path),
                source: e.into(),
            })
    }
}

impl HttpOriginBuilder {
    /// How long connecting (TCP, and TLS for `https`) may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long until the origin's response headers arrive, connecting included (default 30 s).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// How long the body may go without a byte before the fill fails (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept (default 64).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Ask with this scheme instead of the base URL's (default: the base URL's).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Cap the whole fetch, headers and body (default: no cap beyond the other timeouts).
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = Some(timeout);
        self
    }

    /// Follow at most `hops` redirects from the origin (default 3; 0 makes a redirect a
    /// failure). Only to the origin's own host and port and those of
    /// [`HttpOriginBuilder::allow_redirect_to`] and
    /// [`HttpOriginBuilder::trust_redirect_credentials`]; any other target is a failure and
    /// is never contacted. Whatever the lists say, a redirect from `https` to `http` and a
    /// `Location` with credentials (`http://user:pass@host/`) are failures too.
    ///
    /// A redirect to another authority (scheme, host or port differs from the URL that
    /// answered) is sent only the request's `Accept`, `Accept-Encoding`, `Accept-Language`,
    /// `Range` and `User-Agent` headers: forwarded credentials (`Authorization`, `Cookie`,
    /// ...) and the rule's configured headers (an origin token) stay with the authority they
    /// were configured for, unless the target is listed in
    /// [`HttpOriginBuilder::trust_redirect_credentials`]. Once dropped, they are not sent
    /// again later in the same chain.
    pub fn follow_redirects(mut self, hops: usize) -> Self {
        self.max_redirects = hops;
        self
    }

    /// Allow redirects to `host_port`: `host:port`, or a `host` alone, which means the
    /// default port of the redirect's scheme (80 for `http`, 443 for `https`). IPv6
    /// addresses in brackets (`[::1]:8080`). A redirect there is sent no credentials nor
    /// configured headers; see [`follow_redirects`](Self::follow_redirects).
    pub fn allow_redirect_to(mut self, host_port: impl Into<String>) -> Self {
        self.redirect_hosts.push(host_port.into());
        self
    }

    /// Allow redirects to these `host:port` entries (a `host` alone: the scheme's default
    /// port, as in [`allow_redirect_to`](Self::allow_redirect_to)) and send them every
    /// header of the request, forwarded credentials and the rule's configured headers
    /// included. Only for targets that are as trusted as the origin itself (the same
    /// service on another port or name).
    pub fn trust_redirect_credentials<I, S>(mut self, host_ports: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_redirect_hosts
            .extend(host_ports.into_iter().map(Into::into));
        self
    }

    /// Speak HTTP/2 without negotiation (h2c) to an `http://` origin (default `false`;
    /// `https://` origins negotiate HTTP/2 or HTTP/1.1 through ALPN either way).
    pub fn http2_prior_knowledge(mut self, yes: bool) -> Self {
        self.http2_prior_knowledge = yes;
        self
    }

    /// Send this `Host` header (`host` or `host:port`) to the origin instead of the base
    /// URL's authority: for an origin reached by IP address that serves its domain's virtual
    /// host (default: the base URL's `host[:port]`). It comes from configuration only,
    /// never from the client's request, and is sent only to the origin's own host and port,
    /// not to a redirect target elsewhere. HTTP/2 allows no `Host` other than the URL's
    /// authority, so with this setting the origin is asked over HTTP/1.1 (`https` origins
    /// offer only `http/1.1` in ALPN; with
    /// [`http2_prior_knowledge`](Self::http2_prior_knowledge) it is an error).
    pub fn host_header(mut self, value: impl Into<String>) -> Self {
        self.identity.host_header = Some(value.into());
        self
    }

    /// Check the origin's TLS certificate against this name (a DNS name or an IP address)
    /// and send it as SNI, instead of the base URL's host: for an `https` origin reached by
    /// IP address (default: the base URL's host). Only for the origin's own host and port; a
    /// redirect target elsewhere is checked against its own host. Needs an `https` origin
    /// (base URL or [`Protocol`]); the certificate is always verified.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.identity.tls_server_name = Some(name.into());
        self
    }

    /// Also trust the root certificates in this PEM file (every `CERTIFICATE` block; at
    /// least one), beside the webpki roots: for an origin whose certificate a private CA
    /// signed. The file is read by [`build`](Self::build); an unreadable file or one without
    /// a usable certificate is an error. May be given several times. Needs an `https` origin.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.identity.ca_files.push(path.into());
        self
    }

    /// Also trust the root certificates of this PEM text, as [`ca_file`](Self::ca_file)
    /// does with a file's.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity.ca_pem.push(pem.into());
        self
    }

    /// Check the URL and the settings without building anything (no client, no TLS
    /// setup): what [`build`](Self::build) would refuse, this refuses.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.target().map(|_| ())?;
        self.redirects().map(|_| ())?;
        self.identity().map(|_| ())
    }

    /// The `Host`, TLS server name and extra roots, checked; the TLS ones need an origin
    /// asked over `https`.
    fn identity(&self) -> Result<Identity, Error> {
        let identity = self.identity.check()?;
        let (scheme, _, _) = self.target()?;
        let https = scheme == Scheme::HTTPS
            || matches!(
                self.protocol,
                Some(Protocol::Https | Protocol::SameAsRequest)
            );
        if self.identity.host_header.is_some() && self.http2_prior_knowledge {
            return Err(Error::config(
                "host_header needs HTTP/1.1: HTTP/2 sends the URL's authority as :authority \
                 and allows no other Host (RFC 9113 §8.3.1); drop http2_prior_knowledge",
            ));
        }
        if self.identity.wants_tls() && !https {
            return Err(Error::config(format!(
                "origin URL {:?}: tls_server_name and CA certificates apply to https \
                 origins only",
                self.base_url
            )));
        }
        Ok(identity)
    }

    /// The redirect targets, or the first entry that is not `host` or `host:port`.
    fn redirects(&self) -> Result<Redirects, Error> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|e| Endpoint::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| Error::config(format!("redirect target {why}")))
        };
        Ok(Redirects {
            allowed: parse(&self.redirect_hosts)?,
            trusted: parse(&self.trusted_redirect_hosts)?,
        })
    }

    /// The scheme, authority and base path of the URL, or why it is unusable.
    fn target(&self) -> Result<(Scheme, Authority, String), Error> {
        let bad = |why: &str| Error::config(format!("origin URL {:?}: {why}", self.base_url));
        let uri: Uri = self.base_url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("scheme must be http or https"));
        }
        let https = scheme == Scheme::HTTPS || self.protocol == Some(Protocol::Https);
        if https && cfg!(not(feature = "rustls")) {
            return Err(bad("https needs the `rustls` feature"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL cannot have a query string"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok((scheme, authority, base_path))
    }

    /// Check the URL and build the origin (its pooled client and, for `https`, its TLS
    /// setup). Every duration works, up to `Duration::MAX` (read as "far future").
    pub fn build(self) -> Result<HttpOrigin, Error> {
        let (scheme, authority, base_path) = self.target()?;
        let redirects = Arc::new(self.redirects()?);
        let identity = self.identity()?;
        let connector = origin_connector(self.connect_timeout, &identity, &authority)?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(capped(self.pool_idle_timeout))
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_prior_knowledge)
            .build(connector);
        Ok(HttpOrigin {
            scheme,
            protocol: self.protocol,
            authority,
            base_path,
            first_byte_timeout: self.first_byte_timeout,
            idle_timeout: self.idle_timeout,
            total_timeout: self.total_timeout,
            max_redirects: self.max_redirects,
            redirects,
            host_header: identity.host,
            client,
        })
    }
}

#[cfg(feature = "rustls")]
fn connector(http: HttpConnector) -> Result<Connector, Error> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

#[cfg(not(feature = "rustls"))]
fn connector(http: HttpConnector) -> Result<Connector, Error> {
    Ok(http)
}

impl HttpOrigin {
    /// Send one request of a redirect chain and wait for its head, at most the first-byte
    /// timeout (and what is left of the total timeout).
    async fn send(
        &self,
        method: &http::Method,
        uri: &Uri,
        headers: &http::HeaderMap,
        deadline: Option<Instant>,
        url: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let failed = |e: BoxError| Error::OriginRequest {
            url: url.to_owned(),
            source: e,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(Empty::new())
            .map_err(|e| failed(e.into()))?;
        *req.headers_mut() = headers.clone();
        // The Host always names the host asked (or the configured `host_header` for the
        // origin's own authority), never the client's host.
        let host = match &self.host_header {
            Some(configured) if self.is_own(uri) => Some(configured.clone()),
            _ => uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        if let Some(host) = host {
            req.headers_mut().insert(HOST, host);
        }
        let mut wait = self.first_byte_timeout;
        if let Some(deadline) = deadline {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        tokio::time::timeout(capped(wait), self.client.request(req))
            .await
            .map_err(|_| Error::OriginTimeout {
                url: url.to_owned(),
                timeout: wait,
            })?
            .map_err(|e| failed(super::tls::explain(&e).into()))
    }

    /// Whether `uri` is on the origin's own host and port (whatever the scheme asked).
    fn is_own(&self, uri: &Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("http");
        uri.authority().is_some_and(|a| {
            a.host().eq_ignore_ascii_case(self.authority.host())
                && port_of(scheme, a) == port_of(scheme, &self.authority)
        })
    }
}

impl Origin for HttpOrigin {
    fn fetch(&self, request: OriginRequest) -> BoxFuture<'static, Result<OriginResponse, Error>> {
        let scheme = self.scheme_for(request.client_scheme.as_ref());
        let uri = self.url_with_scheme(scheme, &request.path, request.query.as_deref());
        let this = self.clone();
        async move {
            let deadline = this.total_timeout.map(deadline);
            let mut uri = uri?;
            let first = uri.clone();
            let mut headers = request.headers;
            let mut hops = 0;
            loop {
                let url = strip_query(&uri);
                let response = this
                    .send(&request.method, &uri, &headers, deadline, &url)
                    .await?;
                let status = response.status();
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok());
                if is_redirect(status) && this.max_redirects > 0 {
                    let Some(location) = location else {
                        return Err(Error::OriginRedirect {
                            url,
                            reason: format!("a {status} without a Location"),
                        });
                    };
                    if hops == this.max_redirects {
                        return Err(Error::OriginRedirect {
                            url,
                            reason: format!("more than {} redirects", this.max_redirects),
                        });
                    }
                    let next = this.follow(&first, &uri, location).map_err(|reason| {
                        Error::OriginRedirect {
                            url: url.clone(),
                            reason: format!("a redirect to {reason}"),
                        }
                    })?;
                    // Credentials and configured headers stay with their authority.
                    if !same_authority(&uri, &next) && !this.trusted(&next) {
                        headers = safe_headers(&headers);
                    }
                    uri = next;
                    hops += 1;
                    continue;
                }
                let (mut parts, body) = response.into_parts();
                if parts.status.is_redirection() {
                    absolute_location(&mut parts.headers, &uri);
                }
                let content_length = content_length(&parts.headers);
                let body = IdleBody::new(body, this.idle_timeout, deadline, url);
                return Ok(OriginResponse::new(
                    parts.status,
                    parts.headers,
                    content_length,
                    Box::pin(body),
                ));
            }
        }
        .boxed()
    }

    fn location(&self, request: &OriginRequest) -> Option<Uri> {
        let scheme = self.scheme_for(request.client_scheme.as_ref());
        self.url_with_scheme(scheme, &request.path, request.query.as_deref())
            .ok()
    }

    /// One first-byte timeout per request of the redirect chain (the first and every hop
    /// followed), capped by the total timeout when one is set; saturating at
    /// `Duration::MAX`.
    fn attempt_budget(&self) -> Duration {
        let requests = u32::try_from(self.max_redirects.saturating_add(1)).unwrap_or(u32::MAX);
        let chain = self.first_byte_timeout.saturating_mul(requests);
        match self.total_timeout {
            Some(total) => chain.min(total),
            None => chain,
        }
    }
}

/// A redirect handed on (not followed) gets a `Location` the client can use: a relative
/// reference is resolved against the URL that answered (RFC 3986 §5.2), an absolute one is
/// kept as it is, and one that resolves to nothing usable is removed.
fn absolute_location(headers: &mut HeaderMap, answered: &Uri) {
    let Some(location) = headers.get(LOCATION) else {
        return;
    };
    let resolved = location.to_str().ok().and_then(|location| {
        if url::Url::parse(location).is_ok() {
            return Some(None);
        }
        let base = url::Url::parse(&answered.to_string()).ok()?;
        let joined = base.join(location).ok()?;
        HeaderValue::from_str(joined.as_str()).ok().map(Some)
    });
    match resolved {
        Some(Some(absolute)) => {
            headers.insert(LOCATION, absolute);
        }
        Some(None) => {}
        None => {
            headers.remove(LOCATION);
        }
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The URL without its query string (query strings may carry credentials; keep them out of
/// errors and logs).
fn strip_query(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::HttpOrigin;
    use crate::Origin;

    #[test]
    fn the_attempt_budget_is_one_first_byte_timeout_per_request_of_the_chain() {
        let secs = Duration::from_secs;
        let o = HttpOrigin::new("http://h/").unwrap();
        // 30 s first byte, 3 redirects: 4 requests.
        assert_eq!(o.attempt_budget(), secs(120));
        let o = HttpOrigin::builder("http://h/")
            .first_byte_timeout(secs(2))
            .follow_redirects(0)
            .build()
            .unwrap();
        assert_eq!(o.attempt_budget(), secs(2));
        // The total timeout caps the chain...
        let o = HttpOrigin::builder("http://h/")
            .first_byte_timeout(secs(10))
            .total_timeout(secs(15))
            .build()
            .unwrap();
        assert_eq!(o.attempt_budget(), secs(15));
        // ...but never lengthens it.
        let o = HttpOrigin::builder("http://h/")
            .first_byte_timeout(secs(1))
            .follow_redirects(1)
            .total_timeout(secs(3600))
            .build()
            .unwrap();
        assert_eq!(o.attempt_budget(), secs(2));
        // Saturating, whatever the settings.
        let o = HttpOrigin::builder("http://h/")
            .first_byte_timeout(Duration::MAX)
            .follow_redirects(usize::MAX)
            .build()
            .unwrap();
        assert_eq!(o.attempt_budget(), Duration::MAX);
        let o = HttpOrigin::builder("http://h/")
            .first_byte_timeout(secs(1))
            .follow_redirects(usize::MAX)
            .build()
            .unwrap();
        assert_eq!(o.attempt_budget(), secs(u64::from(u32::MAX)));
    }

    #[test]
    fn the_configured_host_header_is_for_the_origins_own_authority_only() {
        let o = HttpOrigin::builder("http://10.0.0.5:8080/")
            .host_header("origin.test")
            .build()
            .unwrap();
        assert!(o.is_own(&uri("http://10.0.0.5:8080/a")));
        assert!(o.is_own(&uri("http://10.0.0.5:8080/b?c")));
        assert!(!o.is_own(&uri("http://10.0.0.5:8081/a")));
        assert!(!o.is_own(&uri("http://cdn.example:8080/a")));
    }

    #[test]
    fn a_passed_on_location_is_made_absolute_against_the_url_that_answered() {
        let answered = uri("http://10.0.0.5:8080/base/dir/x?q=1");
        let resolve = |location: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::LOCATION,
                http::HeaderValue::from_str(location).unwrap(),
            );
            super::absolute_location(&mut headers, &answered);
            headers
                .get(http::header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let at = |s: &str| Some(s.to_owned());
        assert_eq!(resolve("/other/x"), at("http://10.0.0.5:8080/other/x"));
        assert_eq!(resolve("y"), at("http://10.0.0.5:8080/base/dir/y"));
        assert_eq!(resolve("../z"), at("http://10.0.0.5:8080/base/z"));
        assert_eq!(resolve("?r=2"), at("http://10.0.0.5:8080/base/dir/x?r=2"));
        assert_eq!(resolve("//cdn.example/a"), at("http://cdn.example/a"));
        assert_eq!(
            resolve("https://cdn.example/a"),
            at("https://cdn.example/a")
        );
        // Not text: nothing a client could resolve, so it is removed.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LOCATION,
            http::HeaderValue::from_bytes(b"/a\xff").unwrap(),
        );
        super::absolute_location(&mut headers, &answered);
        assert!(headers.get(http::header::LOCATION).is_none());
    }

    #[test]
    fn checking_refuses_what_building_refuses() {
        for url in [
            "",
            "h",
            "ftp://h/",
            "http://u:p@h/",
            "http://h/?q=1",
            "http://h/",
        ] {
            let b = HttpOrigin::builder(url);
            assert_eq!(b.check().is_ok(), b.build().is_ok(), "{url}");
        }
    }

    #[test]
    fn urls_stay_on_the_configured_host() {
        let o = HttpOrigin::new("http://origin.example:8080/base/").unwrap();
        let u = o.url_for("a b/c?d#e", Some("x=1")).unwrap();
        assert_eq!(
            u.to_string(),
            "http://origin.example:8080/base/a%20b/c%3Fd%23e?x=1"
        );
        assert!(o.url_for("../secret", None).is_err());
        assert!(o.url_for("a/./b", None).is_err());
        let u = o.url_for("//evil.example/x", None).unwrap();
        assert_eq!(u.host(), Some("origin.example"));
        assert_eq!(u.path(), "/base/evil.example/x");
        let u = HttpOrigin::new("http://h")
            .unwrap()
            .url_for("", None)
            .unwrap();
        assert_eq!(u.to_string(), "http://h/");
    }

    fn uri(s: &str) -> http::Uri {
        s.parse().unwrap()
    }

    #[test]
    fn redirect_entries_are_host_and_port_the_scheme_default_when_omitted() {
        let o = HttpOrigin::builder("http://origin.example/")
            .allow_redirect_to("cdn.example")
            .allow_redirect_to("other.example:8080")
            .allow_redirect_to("[::1]:9000")
            .build()
            .unwrap();
        let from = uri("http://origin.example/a");
        let follow = |to: &str| o.follow(&from, &from, to).map(|u| u.to_string());
        assert!(follow("http://cdn.example/x").is_ok());
        assert!(follow("http://cdn.example:80/x").is_ok());
        assert!(follow("https://cdn.example/x").is_ok());
        assert!(follow("HTTPS://CDN.example:443/x").is_ok());
        assert!(follow("http://cdn.example:8080/x").is_err(), "another port");
        assert!(
            follow("http://cdn.example:443/x").is_err(),
            "not http's port"
        );
        assert!(follow("http://other.example:8080/x").is_ok());
        assert!(follow("http://other.example/x").is_err());
        assert!(follow("http://[::1]:9000/x").is_ok());
        assert!(follow("http://[::1]/x").is_err());
        // The origin's own host: its own port only.
        assert!(follow("http://origin.example/b").is_ok());
        assert!(follow("/b").is_ok());
        assert!(follow("http://origin.example:8081/b").is_err());
        for bad in [
            "https://cdn.example",
            "cdn.example/x",
            "u@cdn.example",
            "h:",
            "",
        ] {
            assert!(
                HttpOrigin::builder("http://h/")
                    .allow_redirect_to(bad)
                    .check()
                    .is_err(),
                "{bad:?}"
            );
            assert!(
                HttpOrigin::builder("http://h/")
                    .trust_redirect_credentials([bad])
                    .build()
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn https_to_http_and_userinfo_are_never_followed() {
        let o = HttpOrigin::builder("https://origin.example/")
            .allow_redirect_to("origin.example:80")
            .allow_redirect_to("cdn.example")
            .trust_redirect_credentials(["trusted.example"])
            .build()
            .unwrap();
        let from = uri("https://origin.example/a");
        let e = o
            .follow(&from, &from, "http://origin.example/a")
            .unwrap_err();
        assert!(e.contains("downgrade"), "{e}");
        assert!(o.follow(&from, &from, "http://cdn.example/a").is_err());
        assert!(o.follow(&from, &from, "http://trusted.example/a").is_err());
        assert!(o.follow(&from, &from, "https://cdn.example/a").is_ok());
        // After an https hop, an http one is a downgrade too.
        let hop = uri("https://cdn.example/a");
        assert!(o.follow(&from, &hop, "http://cdn.example/b").is_err());
        for located in [
            "https://user:pw@cdn.example/a",
            "https://token@origin.example/a",
            "https://u:p@trusted.example/a",
        ] {
            let e = o.follow(&from, &from, located).unwrap_err();
            assert!(
                !e.contains("pw") && !e.contains("token") && !e.contains("u:p"),
                "{e}"
            );
        }
    }

    #[test]
    fn credentials_stay_with_their_authority() {
        let o = HttpOrigin::builder("http://origin.example/")
            .allow_redirect_to("cdn.example")
            .trust_redirect_credentials(["mirror.example:8080"])
            .build()
            .unwrap();
        let a = uri("http://origin.example/a");
        assert!(super::same_authority(
            &a,
            &uri("http://ORIGIN.example:80/b")
        ));
        assert!(!super::same_authority(&a, &uri("https://origin.example/b")));
        assert!(!super::same_authority(
            &a,
            &uri("http://origin.example:81/b")
        ));
        assert!(!super::same_authority(&a, &uri("http://cdn.example/b")));
        assert!(o.trusted(&uri("http://mirror.example:8080/b")));
        assert!(!o.trusted(&uri("http://mirror.example/b")));
        assert!(!o.trusted(&uri("http://cdn.example/b")));
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer t"),
            ("cookie", "s=1"),
            ("proxy-authorization", "Basic x"),
            ("x-origin-token", "s3cr3t"),
            ("accept", "*/*"),
            ("range", "bytes=0-1"),
            ("user-agent", "ua"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let safe = super::safe_headers(&h);
        let mut names: Vec<&str> = safe.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "range", "user-agent"]);
    }

    #[test]
    fn same_as_request_never_downgrades_an_https_origin() {
        use crate::{OriginRequest, Protocol};
        let scheme = |base: &str, client: Option<http::uri::Scheme>| {
            let o = HttpOrigin::builder(base)
                .protocol(Protocol::SameAsRequest)
                .build()
                .unwrap();
            let mut r = OriginRequest::new("a");
            r.client_scheme = client;
            o.location(&r).unwrap().scheme_str().unwrap().to_owned()
        };
        use http::uri::Scheme;
        assert_eq!(scheme("https://h/", Some(Scheme::HTTP)), "https");
        assert_eq!(scheme("https://h/", None), "https");
        assert_eq!(scheme("https://h/", Some(Scheme::HTTPS)), "https");
        assert_eq!(scheme("http://h/", Some(Scheme::HTTPS)), "https");
        assert_eq!(scheme("http://h/", Some(Scheme::HTTP)), "http");
        assert_eq!(scheme("http://h/", None), "http");
    }

    #[test]
    fn origin_paths_that_read_as_dot_segments_are_refused() {
        let o = HttpOrigin::new("http://h/base").unwrap();
        for bad in [
            "..;/admin",
            "a/.;x/b",
            "\u{FF0E}\u{FF0E}/x",
            "a/..;jsessionid=1/b",
        ] {
            assert!(o.url_for(bad, None).is_err(), "{bad:?}");
        }
        assert!(o.url_for("a/...;/b", None).is_ok());
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for bad in [
            "",
            "h",
            "ftp://h/",
            "http://u:p@h/",
            "http://h/?q=1",
            "/path",
        ] {
            assert!(HttpOrigin::new(bad).is_err(), "{bad}");
        }
    }
}
