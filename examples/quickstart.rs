//! Quickstart: a miss is pulled from the origin once, then served from the store.
//!
//! Everything runs in this process on 127.0.0.1; nothing else is needed:
//!
//! 1. An **origin** HTTP server holds a few objects in memory and counts the GETs it receives.
//! 2. The **app** is tower-http's `ServeDir` over an empty temporary directory, wrapped in an
//!    [`OriginPullLayer`] whose store is that same directory (through `object_store`'s
//!    `LocalFileSystem`) and whose only [`Rule`] pulls every 404 from the origin.
//! 3. `GET /hello.txt` twice. The first is a miss: the layer fetches the object from the origin,
//!    streams it to the client and writes it into the directory at the same time
//!    (`x-origin-pull: pulled`). The second is a plain hit that `ServeDir` answers from disk:
//!    no `x-origin-pull` header, and the origin is not asked again.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{self, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::local::LocalFileSystem;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_origin_pull::{DEFAULT_HEADER_NAME, HttpOrigin, OriginPullLayer, Rule};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origin's objects: key, content type, body.
const OBJECTS: &[(&str, &str, &str)] = &[
    (
        "hello.txt",
        "text/plain; charset=utf-8",
        "Hello from the origin!\n",
    ),
    (
        "images/cat.svg",
        "image/svg+xml",
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4"/></svg>"#,
    ),
];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // 1. The origin: serves OBJECTS and counts GETs.
    let origin_gets = Arc::new(AtomicUsize::new(0));
    let origin_addr = spawn(origin(origin_gets.clone())).await?;
    let origin_url = format!("http://{origin_addr}/");
    println!("origin  {origin_url}  (holds hello.txt, images/cat.svg)");

    // 2. The app: ServeDir over an empty directory, pulling misses into that directory.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path())?);
    let app = Router::new()
        .fallback_service(ServeDir::new(dir.path()))
        .layer(
            OriginPullLayer::from_object_store(store)
                .rule(Rule::new(HttpOrigin::new(&origin_url)?)),
        );
    let app_addr = spawn(app).await?;
    println!("store   {}  (empty)", dir.path().display());
    println!("app     http://{app_addr}/");

    // 3. The same object, twice.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let url = format!("http://{app_addr}/hello.txt");
    let mut outcomes = Vec::new();
    for attempt in 1..=2 {
        let response = client.get(url.parse()?).await?;
        let status = response.status();
        let outcome = response
            .headers()
            .get(DEFAULT_HEADER_NAME)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        let body = response.into_body().collect().await?.to_bytes();
        println!();
        println!("GET /hello.txt  (request {attempt})");
        println!("  status         {status}");
        println!(
            "  {DEFAULT_HEADER_NAME}  {}",
            outcome.as_deref().unwrap_or("(none) served from store")
        );
        println!("  body           {:?}", String::from_utf8_lossy(&body));
        ensure(
            status == StatusCode::OK,
            format!("request {attempt}: status {status}"),
        )?;
        ensure(
            body.as_ref() == OBJECTS[0].2.as_bytes(),
            format!("request {attempt}: unexpected body"),
        )?;
        outcomes.push(outcome);
    }

    // 4. What happened.
    let gets = origin_gets.load(Ordering::SeqCst);
    let on_disk = dir.path().join("hello.txt");
    println!();
    println!("origin GET count  {gets}");
    println!(
        "on disk           {} ({})",
        on_disk.display(),
        match std::fs::metadata(&on_disk) {
            Ok(m) => format!("{} bytes", m.len()),
            Err(e) => format!("missing: {e}"),
        }
    );

    ensure(
        outcomes[0].as_deref() == Some("pulled"),
        format!(
            "first request: expected `{DEFAULT_HEADER_NAME}: pulled`, got {:?}",
            outcomes[0]
        ),
    )?;
    ensure(
        outcomes[1].is_none(),
        format!(
            "second request: expected no {DEFAULT_HEADER_NAME} header, got {:?}",
            outcomes[1]
        ),
    )?;
    ensure(
        gets == 1,
        format!("expected the origin to see 1 GET, it saw {gets}"),
    )?;
    ensure(
        is_file(&on_disk),
        "hello.txt was not written to the store directory",
    )?;
    println!("\nok: pulled once, then served from the store");
    Ok(())
}

/// The origin's router: `GET /<key>` answers the object or 404.
fn origin(gets: Arc<AtomicUsize>) -> Router {
    async fn object(
        State(gets): State<Arc<AtomicUsize>>,
        method: Method,
        extract::Path(key): extract::Path<String>,
    ) -> Response {
        if method == Method::GET {
            gets.fetch_add(1, Ordering::SeqCst);
        }
        match OBJECTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, content_type, body)) => {
                ([(header::CONTENT_TYPE, *content_type)], *body).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    Router::new().route("/{*key}", get(object)).with_state(gets)
}

/// Serve `app` on a free port of 127.0.0.1 in the background; returns its address.
async fn spawn(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server on {addr} failed: {e}");
        }
    });
    Ok(addr)
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

fn ensure(ok: bool, what: impl Into<String>) -> Result<(), BoxError> {
    if ok { Ok(()) } else { Err(what.into().into()) }
}
