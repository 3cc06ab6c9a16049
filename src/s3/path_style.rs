//! Virtual-hosted-style requests seen as path-style by the layers between `PathStyle` and
//! `S3Front`, and restored as signed before `S3Front` checks the signature.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Uri};
use tower_layer::Layer;
use tower_service::Service;

/// The request as the client signed it, kept while the layers see it path-style.
#[derive(Clone, Debug)]
struct Signed {
    uri: Uri,
    host: Option<HeaderValue>,
}

/// Layer of [`PathStyle`]; built by [`S3Front::path_style`](super::S3Front::path_style).
#[derive(Clone, Debug)]
pub struct PathStyleLayer {
    domains: Arc<Vec<String>>,
}

impl PathStyleLayer {
    /// Virtual-hosted-style requests for `<bucket>.<domain>`, for each of `domains`.
    pub fn new(domains: impl IntoIterator<Item = String>) -> Self {
        Self {
            domains: Arc::new(domains.into_iter().collect()),
        }
    }
}

impl<S> Layer<S> for PathStyleLayer {
    type Service = PathStyle<S>;

    fn layer(&self, inner: S) -> PathStyle<S> {
        PathStyle {
            inner,
            domains: self.domains.clone(),
        }
    }
}

/// Rewrites a request for `<bucket>.<domain>/<key>` to `<domain>/<bucket>/<key>`, so that the
/// origin-pull layer's rules see the bucket as the key's first segment; [`S3Front`]
/// restores the request as signed.
///
/// [`S3Front`]: super::S3Front
#[derive(Clone, Debug)]
pub struct PathStyle<S> {
    inner: S,
    domains: Arc<Vec<String>>,
}

impl<S> PathStyle<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for PathStyle<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        normalise(&self.domains, &mut req);
        self.inner.call(req)
    }
}

/// The host parser `S3Front` gives `s3s`: `<bucket>.<domain>[:port]` names a bucket; any
/// other host (the domain itself, an IP address, a name not configured) is path-style.
/// (`s3s`'s own parsers compare with the port and take an unknown host for a bucket.)
pub(super) struct Domains(pub(super) Arc<Vec<String>>);

impl s3s::host::S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        Ok(match split(&self.0, host) {
            Some((bucket, domain)) => s3s::host::VirtualHost::new(domain).with_bucket(bucket),
            None => s3s::host::VirtualHost::new(host),
        })
    }
}

/// The bucket and domain of a virtual-hosted `host` (port dropped), if it is one.
fn split<'a>(domains: &[String], host: &'a str) -> Option<(&'a str, &'a str)> {
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    domains.iter().find_map(|domain| {
        let bucket = name.strip_suffix(domain.as_str())?.strip_suffix('.')?;
        let valid = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        valid.then(|| (bucket, &host[bucket.len() + 1..]))
    })
}

fn normalise<B>(domains: &[String], req: &mut Request<B>) {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some((bucket, rest)) = host.and_then(|h| split(domains, h)) else {
        return;
    };
    let (Ok(new_host), Some(pq)) = (
        HeaderValue::from_str(rest),
        req.uri().path_and_query().map(PathAndQuery::as_str),
    ) else {
        return;
    };
    let Ok(path) = PathAndQuery::try_from(format!("/{bucket}{pq}")) else {
        return;
    };
    let signed = Signed {
        uri: req.uri().clone(),
        host: req.headers().get(HOST).cloned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(path);
    if parts.authority.is_some() {
        parts.authority = rest.parse().ok();
    }
    let Ok(uri) = Uri::from_parts(parts) else {
        return;
    };
    *req.uri_mut() = uri;
    req.headers_mut().insert(HOST, new_host);
    req.extensions_mut().insert(signed);
}

/// Put back the request as the client signed it, if [`PathStyle`] rewrote it.
pub(super) fn restore<B>(req: &mut Request<B>) {
    let Some(signed) = req.extensions_mut().remove::<Signed>() else {
        return;
    };
    *req.uri_mut() = signed.uri;
    match signed.host {
        Some(host) => {
            req.headers_mut().insert(HOST, host);
        }
        None => {
            req.headers_mut().remove(HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_becomes_path_style_and_back() {
        let domains = vec!["s3.test".to_owned()];
        let mut req = Request::get("/dir/a.txt?x=1")
            .header(HOST, "photos.s3.test:9000")
            .body(())
            .unwrap();
        normalise(&domains, &mut req);
        assert_eq!(req.uri(), "/photos/dir/a.txt?x=1");
        assert_eq!(req.headers()[HOST], "s3.test:9000");
        restore(&mut req);
        assert_eq!(req.uri(), "/dir/a.txt?x=1");
        assert_eq!(req.headers()[HOST], "photos.s3.test:9000");
    }

    #[test]
    fn path_style_and_other_hosts_are_untouched() {
        let domains = vec!["s3.test".to_owned()];
        for host in ["s3.test", "127.0.0.1:9000", "evil.example", ".s3.test"] {
            let mut req = Request::get("/b/k").header(HOST, host).body(()).unwrap();
            normalise(&domains, &mut req);
            assert_eq!(req.uri(), "/b/k", "{host}");
            assert!(req.extensions().get::<Signed>().is_none());
        }
    }
}
