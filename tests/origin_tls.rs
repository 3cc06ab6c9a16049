//! What an HTTP origin is shown and what it says back: the `Host` header and TLS server
//! name configured for an origin reached by IP address, root certificates of a private CA
//! (`ca_file`), and the `Location` of a passed-through redirect made absolute. Real origins
//! on 127.0.0.1: an HTTPS one with a certificate for `origin.test` signed by a CA made here,
//! and a plain one that redirects. Through the Rust builder and through a config file.
#![cfg(all(feature = "rustls", feature = "config", feature = "server"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tower_origin_pull::config::Config;
use tower_origin_pull::events::FillEvent;
use tower_origin_pull::{HttpOrigin, OriginPullBuilder, OriginPullLayer, Rule};

use common::*;

const BODY: &[u8] = b"bytes of origin.test";

/// An HTTPS origin on 127.0.0.1:0 whose certificate names `origin.test` only, signed by a
/// CA made for the test, speaking HTTP/2 and HTTP/1.1 (ALPN); it answers every path with
/// [`BODY`] and records each request's `Host` (HTTP/2: `:authority`) and version.
struct TlsOrigin {
    url: String,
    /// The test CA's certificate, PEM, in a file.
    ca_file: tempfile::NamedTempFile,
    hosts: Arc<Mutex<Vec<(String, http::Version)>>>,
}

impl TlsOrigin {
    async fn start() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "origin-pull test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["origin.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let seen = hosts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A handshake the client refuses ends here.
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let host = match req.headers().get("host") {
                            Some(h) => h.to_str().unwrap().to_owned(),
                            None => req
                                .uri()
                                .authority()
                                .map(|a| a.to_string())
                                .unwrap_or_default(),
                        };
                        seen.lock().unwrap().push((host, req.version()));
                        let body = http_body_util::Full::new(Bytes::from_static(BODY));
                        async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            url,
            ca_file,
            hosts,
        }
    }

    fn ca_path(&self) -> String {
        self.ca_file.path().display().to_string()
    }

    fn hosts(&self) -> Vec<String> {
        self.hosts
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.clone())
            .collect()
    }

    fn versions(&self) -> Vec<http::Version> {
        self.hosts.lock().unwrap().iter().map(|(_, v)| *v).collect()
    }
}

/// A mirror (store-serving inner service behind `layer`) writing into `store`.
async fn mirror(layer: OriginPullLayer, store: Arc<dyn ObjectStore>) -> String {
    let addr = serve(store_service(store).layer(layer)).await;
    format!("http://{addr}/")
}

fn layer_of(origin: HttpOrigin, store: Arc<dyn ObjectStore>) -> OriginPullLayer {
    OriginPullBuilder::from_object_store(store)
        .rule(Rule::new(origin))
        .build()
}

/// A config file's layer with one sync rule whose origin is `origin` (a TOML inline table).
fn config_layer(origin: &str, store: Arc<dyn ObjectStore>) -> OriginPullLayer {
    let toml = format!("[store]\nurl = \"memory://\"\n\n[[rules]]\norigin = {origin}\n");
    let config = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{toml}\n{e}"));
    OriginPullLayer::from_config_with(&config, store).unwrap_or_else(|e| panic!("{toml}\n{e}"))
}

#[tokio::test]
async fn an_https_origin_by_ip_with_its_server_name_and_private_ca_pulls_through_the_builder() {
    let origin = TlsOrigin::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let built = HttpOrigin::builder(&origin.url)
        .tls_server_name("origin.test")
        .ca_file(origin.ca_path())
        .host_header("origin.test")
        .build()
        .unwrap();
    let url = mirror(layer_of(built, store.clone()), store.clone()).await;
    let got = get(&client(), &format!("{url}a/b.bin")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), BODY);
    assert_eq!(stored(&*store, "a/b.bin").await.as_deref(), Some(BODY));
    assert_eq!(origin.hosts(), ["origin.test"], "the configured Host");
    // HTTP/2 allows no Host but the URL's authority: HTTP/1.1, though the origin offers h2.
    assert_eq!(origin.versions(), [http::Version::HTTP_11]);
}

#[tokio::test]
async fn an_https_origin_by_ip_with_its_server_name_and_private_ca_pulls_through_a_config_file() {
    let origin = TlsOrigin::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = config_layer(
        &format!(
            "{{ hosts = [{:?}], tls_server_name = \"origin.test\", ca_file = {:?}, \
             host_header = \"origin.test:8443\" }}",
            origin.url,
            origin.ca_path()
        ),
        store.clone(),
    );
    let url = mirror(layer, store.clone()).await;
    let got = get(&client(), &format!("{url}c.bin")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), BODY);
    assert_eq!(stored(&*store, "c.bin").await.as_deref(), Some(BODY));
    assert_eq!(origin.hosts(), ["origin.test:8443"]);
}

#[tokio::test]
async fn without_the_default_host_the_origin_sees_its_address_and_never_the_clients_host() {
    let origin = TlsOrigin::start().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // The CA as PEM text this time (`ca_pem`).
    let pem = std::fs::read(origin.ca_path()).unwrap();
    let built = HttpOrigin::builder(&origin.url)
        .tls_server_name("origin.test")
        .ca_pem(pem)
        .build()
        .unwrap();
    let url = mirror(layer_of(built, store.clone()), store).await;
    let got = get_with(
        &client(),
        &format!("{url}d.bin"),
        &[("host", "evil.example")],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let authority = origin
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    assert_eq!(origin.hosts(), [authority]);
    // Without a Host of its own, the origin's HTTP/2 is used.
    assert_eq!(origin.versions(), [http::Version::HTTP_2]);
}

/// The first `Failed` event's reason.
async fn failure(layer: &OriginPullLayer, url: &str) -> (Got, String) {
    let mut events = layer.handle().subscribe();
    let got = get(&client(), url).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let FillEvent::Failed { reason, .. } = events.recv().await.unwrap() {
                return reason;
            }
        }
    })
    .await
    .expect("a Failed event");
    (got, reason)
}

#[tokio::test]
async fn without_the_server_name_the_handshake_fails_with_a_502_that_says_why() {
    let origin = TlsOrigin::start().await;
    for with_ca in [true, false] {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut builder = HttpOrigin::builder(&origin.url);
        if with_ca {
            builder = builder.ca_file(origin.ca_path());
        }
        let layer = layer_of(builder.build().unwrap(), store.clone());
        let url = mirror(layer.clone(), store.clone()).await;
        let (got, reason) = failure(&layer, &format!("{url}e.bin")).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY);
        let body = String::from_utf8_lossy(got.body());
        assert!(body.contains("origin TLS handshake failed"), "{body}");
        assert!(reason.contains("TLS handshake failed"), "{reason}");
        let why = if with_ca {
            "not valid for name"
        } else {
            "UnknownIssuer"
        };
        assert!(reason.contains(why), "{reason}");
        assert!(listing(&*store).await.is_empty());
    }
    // Through a config file too: the server name alone, without the CA, is not enough.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = config_layer(
        &format!(
            "{{ hosts = [{:?}], tls_server_name = \"origin.test\" }}",
            origin.url
        ),
        store.clone(),
    );
    let url = mirror(layer.clone(), store.clone()).await;
    let (got, reason) = failure(&layer, &format!("{url}f.bin")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(reason.contains("TLS handshake failed"), "{reason}");
    assert!(origin.hosts().is_empty(), "no request got through");
}

#[test]
fn bad_identity_settings_are_refused_at_validation_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let bad_der = dir.path().join("bad.pem");
    std::fs::write(
        &bad_der,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            "host_header = \"a b\"",
            "host_header",
            "not host or host:port",
        ),
        (
            "host_header = \"u@h\"",
            "host_header",
            "not host or host:port",
        ),
        (
            "host_header = \"h/x\"",
            "host_header",
            "not host or host:port",
        ),
        (
            "tls_server_name = \"a b\"",
            "tls_server_name",
            "not a DNS name",
        ),
        (
            "tls_server_name = \"h:443\"",
            "tls_server_name",
            "not a DNS name",
        ),
        (
            &format!("ca_file = {:?}", missing.display().to_string()),
            "ca_file",
            "cannot read",
        ),
        (
            &format!("ca_file = {:?}", not_pem.display().to_string()),
            "ca_file",
            "no CERTIFICATE",
        ),
        (
            &format!("ca_file = {:?}", bad_der.display().to_string()),
            "ca_file",
            "not a usable root",
        ),
    ];
    for (field, at, message) in cases {
        let toml = format!(
            "[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"https://127.0.0.1:1/\"], {field} }}\n"
        );
        let problems = Config::from_toml(&toml).unwrap().validate();
        assert!(
            problems
                .iter()
                .any(|p| p.at == format!("rules[0].origin.{at}") && p.message.contains(message)),
            "{field}: {problems:?}"
        );
    }
    // TLS settings on a plain http origin say so, at the host.
    let toml = "[store]\nurl = \"memory://\"\n[[rules]]\norigin = { hosts = [\"http://127.0.0.1:1/\"], tls_server_name = \"origin.test\" }\n";
    let problems = Config::from_toml(toml).unwrap().validate();
    assert!(
        problems
            .iter()
            .any(|p| p.at == "rules[0].origin.hosts[0]" && p.message.contains("https")),
        "{problems:?}"
    );
    // And the builder refuses what validation refuses.
    assert!(
        HttpOrigin::builder("https://h/")
            .host_header("a\r\nb")
            .build()
            .is_err()
    );
    assert!(
        HttpOrigin::builder("https://h/")
            .ca_pem("hello")
            .build()
            .is_err()
    );
    assert!(
        HttpOrigin::builder("http://h/")
            .tls_server_name("h")
            .build()
            .is_err()
    );
    let e = HttpOrigin::builder("http://h/")
        .host_header("origin.test")
        .http2_prior_knowledge(true)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("HTTP/1.1"), "{e}");
}

// ----- a passed-through redirect's Location -----

/// An origin answering `302` to `…/abs` with `Location: /other/x`, to `…/rel` with
/// `Location: y`, to `…/dots` with `Location: ../z?q=1` and to `…/full` with an absolute URL.
async fn redirecting_origin() -> String {
    let app = Router::new().fallback(|uri: http::Uri| async move {
        let location = match uri.path().rsplit('/').next().unwrap_or("") {
            "abs" => "/other/x",
            "rel" => "y",
            "dots" => "../z?q=1",
            _ => "https://cdn.example/a",
        };
        Response::builder()
            .status(302)
            .header("location", location)
            .body(axum::body::Body::empty())
            .unwrap()
    });
    format!("http://{}/base/", serve(app).await)
}

#[tokio::test]
async fn a_passed_through_redirect_has_its_location_made_absolute_against_the_origin() {
    let origin = redirecting_origin().await;
    let authority = origin
        .trim_start_matches("http://")
        .trim_end_matches("/base/");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let built = HttpOrigin::builder(&origin)
        .follow_redirects(0)
        .build()
        .unwrap();
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(built).pass_through([StatusCode::FOUND]))
        .build();
    let url = mirror(layer, store.clone()).await;
    let cases = [
        // An absolute path: on the origin's authority.
        ("dir/abs", format!("http://{authority}/other/x")),
        // A relative path: against the URL that answered (`/base/dir/<segment>`).
        ("dir/rel", format!("http://{authority}/base/dir/y")),
        ("dir/dots", format!("http://{authority}/base/z?q=1")),
        // Absolute ones are kept as they are.
        ("dir/full", "https://cdn.example/a".to_owned()),
    ];
    for (path, expected) in cases {
        let got = get(&client(), &format!("{url}{path}")).await;
        assert_eq!(got.status, StatusCode::FOUND, "{path}");
        assert_eq!(got.headers["location"], expected.as_str(), "{path}");
    }
    assert!(listing(&*store).await.is_empty());
}
