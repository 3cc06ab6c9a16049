//! What an [`HttpOrigin`](super::HttpOrigin) presents and trusts: the `Host` header it sends,
//! the TLS server name it checks the certificate against, the extra root certificates
//! (PEM) it trusts beside the webpki roots; the connector built from them; and the words an
//! origin request failure is reported with (a TLS failure says so).

use std::path::{Path, PathBuf};

use http::HeaderValue;
use http::uri::Authority;
#[cfg(feature = "rustls")]
use rustls::pki_types::{CertificateDer, ServerName};

use crate::Error;

/// The identity settings as given to the builder, not yet checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentitySettings {
    pub(crate) host_header: Option<String>,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) ca_pem: Vec<Vec<u8>>,
}

/// The identity settings, checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    /// Sent as `Host` to the origin's own authority.
    pub(crate) host: Option<HeaderValue>,
    #[cfg(feature = "rustls")]
    pub(crate) server_name: Option<ServerName<'static>>,
    #[cfg(feature = "rustls")]
    pub(crate) roots: Vec<CertificateDer<'static>>,
}

impl IdentitySettings {
    /// Whether any TLS setting is given (they need an `https` origin).
    pub(crate) fn wants_tls(&self) -> bool {
        self.tls_server_name.is_some() || !self.ca_files.is_empty() || !self.ca_pem.is_empty()
    }

    /// Check every setting (reading the CA files), or say which is wrong and why.
    pub(crate) fn check(&self) -> Result<Identity, Error> {
        let host = self
            .host_header
            .as_deref()
            .map(check_host_header)
            .transpose()
            .map_err(|e| Error::config(format!("host_header {e}")))?;
        #[cfg(feature = "rustls")]
        {
            let server_name = self
                .tls_server_name
                .as_deref()
                .map(server_name)
                .transpose()
                .map_err(|e| Error::config(format!("tls_server_name {e}")))?;
            let mut roots = Vec::new();
            for path in &self.ca_files {
                roots
                    .extend(read_ca_file(path).map_err(|e| Error::config(format!("ca_file {e}")))?);
            }
            for pem in &self.ca_pem {
                roots.extend(parse_pem(pem).map_err(|e| Error::config(format!("ca_pem: {e}")))?);
            }
            Ok(Identity {
                host,
                server_name,
                roots,
            })
        }
        #[cfg(not(feature = "rustls"))]
        {
            if self.wants_tls() {
                return Err(Error::config(
                    "tls_server_name and CA certificates need the `rustls` feature",
                ));
            }
            Ok(Identity { host })
        }
    }
}

/// A `Host` header value: `host` or `host:port`, no userinfo, nothing else.
pub(crate) fn check_host_header(value: &str) -> Result<HeaderValue, String> {
    let bad = || format!("{value:?} is not host or host:port");
    let authority: Authority = value.parse().map_err(|_| bad())?;
    if authority.as_str() != value
        || value.contains('@')
        || authority.host().is_empty()
        || value.ends_with(':')
    {
        return Err(bad());
    }
    HeaderValue::from_str(value).map_err(|_| bad())
}

/// A TLS server name: a DNS name or an IP address (no port, no brackets).
#[cfg(feature = "rustls")]
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{name:?} is not a DNS name nor an IP address"))
}

/// A TLS server name, checked (without the `rustls` feature none is usable).
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn check_server_name(name: &str) -> Result<(), String> {
    #[cfg(feature = "rustls")]
    return server_name(name).map(|_| ());
    #[cfg(not(feature = "rustls"))]
    {
        let _ = name;
        Err("needs the `rustls` feature".to_owned())
    }
}

/// The certificates of a PEM file, each checked as a root certificate.
#[cfg(feature = "rustls")]
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_pem(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificates of a PEM file, checked (without the `rustls` feature none is usable).
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn check_ca_file(path: &Path) -> Result<(), String> {
    #[cfg(feature = "rustls")]
    return read_ca_file(path).map(|_| ());
    #[cfg(not(feature = "rustls"))]
    {
        let _ = path;
        Err("needs the `rustls` feature".to_owned())
    }
}

/// Every `CERTIFICATE` block of a PEM document, each one a usable trust anchor; at least one.
#[cfg(feature = "rustls")]
fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("has no CERTIFICATE block in PEM".to_owned());
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {} is not a usable root: {e}", i + 1))?;
    }
    Ok(certs)
}

#[cfg(feature = "rustls")]
pub(crate) use connector::origin_connector;

#[cfg(feature = "rustls")]
mod connector {
    use std::sync::Arc;

    use http::Uri;
    use http::uri::Authority;
    use hyper_rustls::{DefaultServerNameResolver, HttpsConnectorBuilder, ResolveServerName};
    use hyper_util::client::legacy::connect::HttpConnector;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, RootCertStore};

    use super::Identity;
    use crate::Error;
    use crate::origin::http::{Connector, port_of};

    /// The connector of an origin: rustls (ring) trusting the webpki roots and the
    /// identity's extra roots, checking the certificate of the origin's own authority
    /// against the identity's server name (other authorities, redirect targets, against
    /// their own host); HTTP/1.1 only (ALPN) when the identity has a `Host` of its own.
    pub(crate) fn origin_connector(
        http: HttpConnector,
        identity: &Identity,
        own: &Authority,
    ) -> Result<Connector, Error> {
        let tls = |e: rustls::Error| Error::config(format!("TLS setup: {e}"));
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &identity.roots {
            roots.add(cert.clone()).map_err(tls)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http();
        if let Some(name) = identity.server_name.clone() {
            let own = own.clone();
            builder = builder.with_server_name_resolver(move |uri: &Uri| resolve(&own, &name, uri));
        }
        let builder = builder.enable_http1();
        // HTTP/2 carries the URL's authority in `:authority`, and a `Host` that differs from
        // it is not allowed (RFC 9113 §8.3.1): a configured `Host` needs HTTP/1.1.
        Ok(if identity.host.is_some() {
            builder.wrap_connector(http)
        } else {
            builder.enable_http2().wrap_connector(http)
        })
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    pub(super) fn resolve(
        own: &Authority,
        name: &ServerName<'static>,
        uri: &Uri,
    ) -> Result<ServerName<'static>, BoxError> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let is_own = uri.authority().is_some_and(|a| {
            a.host().eq_ignore_ascii_case(own.host()) && port_of(scheme, a) == port_of(scheme, own)
        });
        if is_own {
            Ok(name.clone())
        } else {
            DefaultServerNameResolver::default().resolve(uri)
        }
    }
}

/// An origin request's failure in words: every message of its chain, and for a failed TLS
/// handshake (a certificate not valid for the name, signed by an unknown CA, ...) a
/// `TLS handshake failed` first, so the reason is plain in logs and events.
pub(crate) fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    #[cfg_attr(not(feature = "rustls"), allow(unused_mut))]
    let mut tls = false;
    let mut next = Some(error);
    while let Some(e) = next {
        #[cfg(feature = "rustls")]
        {
            tls |= is_tls(e);
        }
        let message = e.to_string();
        if !messages.last().is_some_and(|m| m.contains(&message)) {
            messages.push(message);
        }
        next = e.source();
    }
    let chain = messages.join(": ");
    if tls {
        format!("TLS handshake failed: {chain}")
    } else {
        chain
    }
}

/// Whether `error` is rustls's, or I/O errors wrapped around one (as hyper-rustls and
/// tokio-rustls report a handshake failure).
#[cfg(feature = "rustls")]
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_tls(inner),
        None => false,
    }
}

#[cfg(all(test, feature = "rustls"))]
mod tests {
    use rustls::pki_types::ServerName;

    #[test]
    fn the_configured_server_name_is_for_the_origins_own_authority_only() {
        let own: http::uri::Authority = "10.0.0.5:8443".parse().unwrap();
        let name = ServerName::try_from("origin.test").unwrap();
        let resolve = |uri: &str| {
            let uri: http::Uri = uri.parse().unwrap();
            super::connector::resolve(&own, &name, &uri).map(|n| n.to_str().into_owned())
        };
        assert_eq!(resolve("https://10.0.0.5:8443/a").unwrap(), "origin.test");
        // A redirect target elsewhere is checked against its own host.
        assert_eq!(resolve("https://10.0.0.5:9443/a").unwrap(), "10.0.0.5");
        assert_eq!(
            resolve("https://cdn.example:8443/a").unwrap(),
            "cdn.example"
        );
    }

    #[test]
    fn host_headers_are_host_or_host_and_port() {
        for good in ["origin.test", "origin.test:8443", "10.0.0.5", "[::1]:80"] {
            assert!(super::check_host_header(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "u@h", "h/x", "h:", "h\r\nx: y", "h?q"] {
            assert!(super::check_host_header(bad).is_err(), "{bad:?}");
        }
    }
}
