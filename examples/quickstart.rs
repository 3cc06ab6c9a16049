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
//! 4. Ten concurrent `GET /video.bin` for an object the origin sends slowly: one fetch, and
//!    every request streams it as it arrives (`pulled` once, `coalesced` nine times).
//! 5. `GET /later/report.txt` matches an async-mode rule: an immediate `302` to the origin
//!    (`x-origin-pull: async`) while the store is filled in the background; a completion
//!    event arrives, and the next request is a hit.
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
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::local::LocalFileSystem;
use tower_http::services::ServeDir;
use tower_origin_pull::server::Server;
use tower_origin_pull::{
    DEFAULT_HEADER_NAME, FillEvent, HttpOrigin, Mode, OriginPullBuilder, Rewrite, Rule,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origin's objects: key, content type, body.
const OBJECTS: &[(&str, &str, &str)] = &[
    (
        "hello.txt",
        "text/plain; charset=utf-8",
        "Hello from the origin!\n",
    ),
    ("report.txt", "text/plain", "quarterly numbers\n"),
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
    println!("origin  {origin_url}  (holds hello.txt, report.txt, images/cat.svg, video.bin)");

    // 2. The app: ServeDir over an empty directory, pulling misses into that directory.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path())?);
    let origin = HttpOrigin::new(&origin_url)?;
    let layer = OriginPullBuilder::from_object_store(store)
        // `later/<key>`: redirect to the origin's `<key>` now, fill the store in the background.
        .rule(
            Rule::new(origin.clone())
                .named("async")
                .prefix("later/")
                .mode(Mode::Async)
                .rewrite(Rewrite::identity().strip_prefix("later/")),
        )
        // Everything else: pull now and stream.
        .rule(Rule::new(origin).named("sync"))
        .build();
    let mut events = layer.handle().subscribe();
    let app = Router::new()
        .fallback_service(ServeDir::new(dir.path()))
        .layer(layer);
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

    // 5. Ten concurrent requests for a slow object: one origin fetch, ten streams.
    let before = origin_gets.load(Ordering::SeqCst);
    let url = format!("http://{app_addr}/video.bin");
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(url.parse()?).await?;
                let outcome = response
                    .headers()
                    .get(DEFAULT_HEADER_NAME)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let len = response.into_body().collect().await?.to_bytes().len();
                Ok::<_, BoxError>((outcome, len))
            })
        })
        .collect();
    let mut pulled = 0;
    let mut coalesced = 0;
    for request in requests {
        let (outcome, len) = request.await??;
        ensure(len == VIDEO_LEN, format!("video.bin: got {len} bytes"))?;
        match outcome.as_str() {
            "pulled" => pulled += 1,
            "coalesced" => coalesced += 1,
            other => return Err(format!("video.bin: unexpected outcome {other:?}").into()),
        }
    }
    let video_gets = origin_gets.load(Ordering::SeqCst) - before;
    println!();
    println!("10 x GET /video.bin at once");
    println!("  {DEFAULT_HEADER_NAME}  pulled x{pulled}, coalesced x{coalesced}");
    println!("  origin GETs    {video_gets}");
    ensure(
        pulled == 1 && coalesced == 9 && video_gets == 1,
        "video.bin: expected one fetch shared by ten requests",
    )?;

    // 6. Async mode: a redirect now, the store filled in the background.
    let response = client
        .get(format!("http://{app_addr}/later/report.txt").parse()?)
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    println!();
    println!("GET /later/report.txt");
    println!("  status         {status}");
    println!("  location       {location}");
    ensure(
        status == StatusCode::FOUND,
        "later/report.txt: expected 302",
    )?;
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(event @ FillEvent::Completed { .. }) if event.key() == "later/report.txt" => {
                    return Ok(event);
                }
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await??;
    if let FillEvent::Completed {
        bytes, duration, ..
    } = &event
    {
        println!("  event          completed: {bytes} bytes in {duration:?}");
    }
    let again = client
        .get(format!("http://{app_addr}/later/report.txt").parse()?)
        .await?;
    let hit = again.headers().get(DEFAULT_HEADER_NAME).is_none();
    println!(
        "  next GET       {} {}",
        again.status(),
        if hit {
            "(served from store)"
        } else {
            "(not a hit?)"
        }
    );
    ensure(
        again.status() == StatusCode::OK && hit,
        "later/report.txt: expected a hit",
    )?;

    println!("\nok: pulled once then served from the store; coalesced; async redirect then filled");
    Ok(())
}

/// `video.bin`: 4 chunks of 64 KiB, 200 ms apart.
const VIDEO_LEN: usize = 4 * 64 * 1024;

fn slow_video() -> Response {
    let chunks = futures::stream::iter(0..4u8).then(|i| async move {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(vec![i; VIDEO_LEN / 4]))
    });
    axum::body::Body::from_stream(chunks).into_response()
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
        if key == "video.bin" {
            return slow_video();
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

/// Serve `app` on a free port of 127.0.0.1 in the background with the crate's hardened
/// server loop (`tower_origin_pull::server`: timeouts, a connection cap, a listen queue of
/// 1,024); returns its address.
async fn spawn(app: Router) -> Result<SocketAddr, BoxError> {
    let listening = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).listen()?;
    let addr = listening.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = listening.serve(app).await {
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
