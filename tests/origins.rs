//! Rules and origins like the clouds' origin-pull: conditions, failover and breaker,
//! timeouts, header and query policies, redirects, ranges, HEAD, integrity, size limits,
//! buckets as origins. Real loopback origins, some misbehaving on purpose.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, StatusCode};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions};
use tower_origin_pull::{
    BucketOrigin, Checksum, Glob, HeadMiss, HeaderMatch, HeaderPolicy, HttpOrigin, Mode, Origin,
    OriginPullBuilder, OriginPullLayer, Origins, Oversize, QueryPolicy, RangeMiss, Rule,
};

use common::*;

struct App {
    url: String,
    store: Arc<dyn ObjectStore>,
    layer: OriginPullLayer,
}

impl App {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

async fn app_with(rule: Rule, store: Arc<dyn ObjectStore>) -> App {
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(rule)
        .build();
    let addr = serve(store_service(store.clone()).layer(layer.clone())).await;
    App {
        url: format!("http://{addr}/"),
        store,
        layer,
    }
}

async fn app(rule: Rule) -> App {
    app_with(rule, Arc::new(InMemory::new())).await
}

fn http(url: &str) -> HttpOrigin {
    HttpOrigin::builder(url)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

// ----- conditions -----

#[tokio::test]
async fn glob_header_and_host_conditions_select_the_rule() {
    let origin = TestOrigin::start().await;
    for k in [
        "img/a.png",
        "img/deep/a.png",
        "img/b.png",
        "img/c.png",
        "img/d.png",
    ] {
        origin.object(k, "png");
    }
    let rule = Rule::new(http(&origin.url))
        .glob(Glob::new("img/*.png").unwrap())
        .when_header(
            HeaderName::from_static("x-tenant"),
            HeaderMatch::StartsWith("blue".into()),
        )
        .allow_hosts(["cdn.example"])
        .deny_hosts(["bad.example"]);
    let app = app(rule).await;
    let c = client();
    let ok = [("x-tenant", "blue-1"), ("host", "cdn.example")];
    assert_eq!(
        get_with(&c, &app.at("img/a.png"), &ok).await.outcome(),
        Some("pulled")
    );
    // `*` does not cross `/`.
    assert_eq!(
        get_with(&c, &app.at("img/deep/a.png"), &ok).await.outcome(),
        None
    );
    // Header condition.
    let red = [("x-tenant", "red-1"), ("host", "cdn.example")];
    assert_eq!(
        get_with(&c, &app.at("img/b.png"), &red).await.outcome(),
        None
    );
    // Host not allowed / denied.
    let other = [("x-tenant", "blue-1"), ("host", "other.example")];
    assert_eq!(
        get_with(&c, &app.at("img/c.png"), &other).await.outcome(),
        None
    );
    let bad = [("x-tenant", "blue-1"), ("host", "bad.example:8080")];
    assert_eq!(
        get_with(&c, &app.at("img/d.png"), &bad).await.outcome(),
        None
    );
    assert_eq!(origin.total_hits(), 1);
}

// ----- several origins -----

#[tokio::test]
async fn a_failing_primary_fails_over_to_the_standby() {
    let primary = TestOrigin::start().await;
    let standby = TestOrigin::start().await;
    primary.put("f/503.txt", Behaviour::Status(503));
    standby.object("f/503.txt", "from the standby");
    // A port nothing listens on: connections are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    standby.object("f/refused.txt", "standby again");

    let app503 = app(Rule::new(
        Origins::new()
            .primary(http(&primary.url), 1)
            .standby(http(&standby.url)),
    ))
    .await;
    let got = get(&client(), &app503.at("f/503.txt")).await;
    assert_eq!(got.body(), b"from the standby");
    assert_eq!(primary.hits("f/503.txt"), 1);
    assert_eq!(
        stored(&*app503.store, "f/503.txt").await.as_deref(),
        Some(&b"from the standby"[..])
    );

    let refused = Origins::new()
        .primary(http(&format!("http://{dead}/")), 1)
        .standby(http(&standby.url));
    let app_refused = app(Rule::new(refused)).await;
    let got = get(&client(), &app_refused.at("f/refused.txt")).await;
    assert_eq!(got.body(), b"standby again");
}

#[tokio::test]
async fn weights_up_to_u32_max_spread_requests_without_overflow() {
    let heavy = TestOrigin::start().await;
    let light = TestOrigin::start().await;
    for i in 0..40 {
        heavy.object(&format!("w/{i}"), "heavy");
        light.object(&format!("w/{i}"), "light");
    }
    // `[u32::MAX, 1]`: the sum overflowed a `u32` in the request path.
    let skewed = app(Rule::new(
        Origins::new()
            .primary(http(&heavy.url), u32::MAX)
            .primary(http(&light.url), 1),
    ))
    .await;
    for i in 0..20 {
        let got = get(&client(), &skewed.at(&format!("w/{i}"))).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body(), b"heavy", "a 1 in 2^32 pick, or a wrong sum");
    }
    // Two maximal weights share the load.
    let even = app(Rule::new(
        Origins::new()
            .primary(http(&heavy.url), u32::MAX)
            .primary(http(&light.url), u32::MAX),
    ))
    .await;
    let (mut from_heavy, mut from_light) = (0, 0);
    for i in 20..40 {
        let got = get(&client(), &even.at(&format!("w/{i}"))).await;
        assert_eq!(got.status, StatusCode::OK);
        match got.body() {
            b"heavy" => from_heavy += 1,
            _ => from_light += 1,
        }
    }
    assert!(
        from_heavy > 0 && from_light > 0,
        "{from_heavy} / {from_light}"
    );
}

#[tokio::test]
async fn the_longest_timeouts_and_cooldowns_are_far_future_not_a_panic() {
    let live = TestOrigin::start().await;
    live.object("t/a", "a");
    live.object("t/b", "b");
    live.put(
        "t/slow",
        Behaviour::Chunked {
            chunks: vec![Bytes::from_static(b"one "), Bytes::from_static(b"two")],
            pause: Duration::from_millis(50),
        },
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let forever = |url: &str| {
        HttpOrigin::builder(url)
            .connect_timeout(Duration::MAX)
            .first_byte_timeout(Duration::MAX)
            .idle_timeout(Duration::MAX)
            .total_timeout(Duration::MAX)
            .pool_idle_timeout(Duration::MAX)
            .follow_redirects(usize::MAX)
            .build()
            .unwrap()
    };
    let origins = Origins::new()
        .primary(forever(&format!("http://{dead}/")), 1)
        .standby(forever(&live.url))
        .breaker(1, Duration::MAX)
        .retries(3)
        .min_backoff(Duration::MAX);
    assert_eq!(origins.attempt_budget(), Duration::MAX);
    let app = app(Rule::new(origins)).await;
    // The dead primary fails (its breaker opens for "ever"), the standby answers.
    for (key, body) in [("t/a", &b"a"[..]), ("t/b", b"b"), ("t/slow", b"one two")] {
        let got = tokio::time::timeout(Duration::from_secs(10), get(&client(), &app.at(key)))
            .await
            .expect("answered");
        assert_eq!(got.status, StatusCode::OK, "{key}");
        assert_eq!(got.body(), body, "{key}");
    }
}

/// A primary that accepts connections and never answers.
async fn hanging_origin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (format!("http://{addr}/"), accepted)
}

#[tokio::test]
async fn an_open_breaker_keeps_a_dead_primary_out_of_the_way() {
    let (dead, accepted) = hanging_origin().await;
    let standby = TestOrigin::start().await;
    for i in 0..6 {
        standby.object(&format!("b/{i}.txt"), format!("standby {i}"));
    }
    let timeout = Duration::from_millis(800);
    let primary = HttpOrigin::builder(&dead)
        .first_byte_timeout(timeout)
        .build()
        .unwrap();
    let origins = Origins::new()
        .primary(primary, 1)
        .standby(http(&standby.url))
        .breaker(1, Duration::from_secs(60));
    let app = app(Rule::new(origins)).await;
    let c = client();
    let started = Instant::now();
    let first = get(&c, &app.at("b/0.txt")).await;
    let first_took = started.elapsed();
    assert_eq!(first.body(), b"standby 0");
    assert!(
        first_took >= timeout,
        "the first request waited for the primary ({first_took:?})"
    );
    for i in 1..6 {
        let started = Instant::now();
        let got = get(&c, &app.at(&format!("b/{i}.txt"))).await;
        let took = started.elapsed();
        assert_eq!(got.body(), format!("standby {i}").as_bytes());
        assert!(
            took < Duration::from_millis(300),
            "request {i} took {took:?}: the open breaker skips the dead primary"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the dead primary was asked once"
    );
}

#[tokio::test]
async fn retries_walk_the_hosts_again_before_the_first_byte() {
    // The origin fails twice with 503, then answers.
    let object = Bytes::from_static(b"third time lucky");
    let fail = vec![Step::Write(Bytes::from_static(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ))];
    let ok = vec![
        Step::Write(head_with_length(object.len())),
        Step::Write(object.clone()),
    ];
    let origin = RawOrigin::start_sequence(vec![fail.clone(), fail, ok]).await;
    let origins = Origins::new()
        .primary(http(&origin.url), 1)
        .retries(3)
        .min_backoff(Duration::from_millis(10));
    let app = app(Rule::new(origins)).await;
    let got = get(&client(), &app.at("r.txt")).await;
    assert_eq!(got.body(), &object[..]);
    assert_eq!(origin.requests(), 3);
}

// ----- timeouts -----

#[tokio::test]
async fn a_stalled_body_fails_within_the_idle_timeout_and_the_next_request_refills() {
    let object = random_bytes(200_000, 4);
    let stall = vec![
        Step::Write(head_with_length(object.len())),
        Step::Write(object.slice(..100_000)),
        Step::Sleep(Duration::from_secs(30)),
    ];
    let ok = vec![
        Step::Write(head_with_length(object.len())),
        Step::Write(object.clone()),
    ];
    let origin = RawOrigin::start_sequence(vec![stall, ok]).await;
    let idle = Duration::from_millis(400);
    let o = HttpOrigin::builder(&origin.url)
        .idle_timeout(idle)
        .build()
        .unwrap();
    let app = app(Rule::new(o)).await;
    let c = client();
    let started = Instant::now();
    let got = get(&c, &app.at("stall.bin")).await;
    let took = started.elapsed();
    assert!(got.body.is_err(), "a stalled fill ends in an error");
    assert!(
        took < idle * 4,
        "failed after {took:?} with a {idle:?} idle timeout"
    );
    assert!(listing(&*app.store).await.is_empty());
    let again = get(&c, &app.at("stall.bin")).await;
    assert!(again.body() == &object[..]);
    assert_eq!(origin.requests(), 2);
}

// ----- headers and query strings -----

/// An origin that answers every GET with the request headers it received, one per line.
async fn echo_origin() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(req.uri().to_string());
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            Response::new(Body::from(lines.join("\n")))
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn header_policies_decide_what_the_origin_sees() {
    let (url, _) = echo_origin().await;
    let client_headers = [
        ("authorization", "Bearer client"),
        ("cookie", "session=1"),
        ("range", "bytes=0-0"),
        ("x-tenant", "blue"),
        ("x-debug", "1"),
        ("host", "spoofed.example"),
        ("x-forwarded-host", "evil.example"),
    ];
    let cases: Vec<(&str, HeaderPolicy, Vec<&str>, Vec<&str>)> = vec![
        (
            "none",
            HeaderPolicy::none(),
            vec![],
            vec!["x-tenant", "authorization"],
        ),
        (
            "all",
            HeaderPolicy::pass_all(),
            vec![
                "x-tenant: blue",
                "x-debug: 1",
                "x-forwarded-host: evil.example",
            ],
            vec!["authorization", "cookie", "range", "spoofed"],
        ),
        (
            "all-except",
            HeaderPolicy::pass_all_except(["x-debug"]).unwrap(),
            vec!["x-tenant: blue"],
            vec!["x-debug", "authorization"],
        ),
        (
            "only",
            HeaderPolicy::pass_only(["authorization", "x-tenant"]).unwrap(),
            vec!["authorization: Bearer client", "x-tenant: blue"],
            vec!["x-debug", "cookie", "range"],
        ),
        (
            "set",
            HeaderPolicy::pass_only(["x-tenant"])
                .unwrap()
                .set("authorization", "Bearer origin-token")
                .unwrap(),
            vec!["authorization: Bearer origin-token", "x-tenant: blue"],
            vec!["Bearer client"],
        ),
    ];
    for (i, (name, policy, present, absent)) in cases.into_iter().enumerate() {
        let app = app(Rule::new(http(&url)).headers(policy)).await;
        // Avoid the Range path: this test is about headers on a whole-object fill.
        let headers: Vec<_> = client_headers
            .iter()
            .copied()
            .filter(|(k, _)| *k != "range")
            .collect();
        let got = get_with(&client(), &app.at(&format!("h/{i}")), &headers).await;
        let seen = String::from_utf8(got.body().to_vec()).unwrap();
        for p in present {
            assert!(seen.contains(p), "{name}: {p:?} missing in\n{seen}");
        }
        for a in absent {
            assert!(
                !seen.contains(a),
                "{name}: {a:?} must not reach the origin\n{seen}"
            );
        }
        let origin_host = url.trim_start_matches("http://").trim_end_matches('/');
        assert!(
            seen.contains(&format!("host: {origin_host}")),
            "{name}: {seen}"
        );
    }
}

#[tokio::test]
async fn query_policies_decide_what_the_origin_is_asked() {
    let (url, seen) = echo_origin().await;
    for (i, policy) in [
        QueryPolicy::Drop,
        QueryPolicy::Forward,
        QueryPolicy::Only(vec!["v".into()]),
    ]
    .into_iter()
    .enumerate()
    {
        let forwards = policy != QueryPolicy::Drop;
        let keyed = app(Rule::new(http(&url)).query(policy.clone())).await;
        get(&client(), &keyed.at(&format!("q/{i}?v=2&token=s3cret"))).await;
        // A forwarded query is not in the key: the answer is proxied, not stored.
        let expect: Vec<String> = if forwards {
            vec![]
        } else {
            vec![format!("q/{i}")]
        };
        assert_eq!(listing(&*keyed.store).await, expect, "{policy:?}");
        // Unless the rule accepts that the first answer is everyone's.
        let keyless = app(Rule::new(http(&url)).query(policy).unkeyed_forwarding(true)).await;
        get(&client(), &keyless.at(&format!("q/{i}?v=2&token=s3cret"))).await;
        assert_eq!(listing(&*keyless.store).await, vec![format!("q/{i}")]);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "/q/0",
            "/q/0",
            "/q/1?v=2&token=s3cret",
            "/q/1?v=2&token=s3cret",
            "/q/2?v=2",
            "/q/2?v=2"
        ]
    );
}

// ----- origin redirects -----

/// An origin whose paths redirect: `/to/<url>` → `<url>`, `/chain/<n>` → `/chain/<n-1>`,
/// `/chain/0` → 200, `/loop` → `/loop`.
async fn redirecting_origin() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            let redirect = |to: String| {
                Response::builder()
                    .status(302)
                    .header("location", to)
                    .body(Body::empty())
                    .unwrap()
            };
            if let Some(to) = path.strip_prefix("/to/") {
                return redirect(format!("http://{to}"));
            }
            if let Some(n) = path.strip_prefix("/chain/") {
                let n: u32 = n.parse().unwrap();
                if n == 0 {
                    return Response::new(Body::from("end of the chain"));
                }
                return redirect(format!("/chain/{}", n - 1));
            }
            redirect("/loop".to_owned())
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/"), hits)
}

#[tokio::test]
async fn redirects_are_followed_only_where_configuration_allows() {
    let (url, hits) = redirecting_origin().await;
    let elsewhere = TestOrigin::start().await;
    elsewhere.object("secret", "internal");
    let foreign = elsewhere.url.trim_start_matches("http://").to_owned();
    let c = client();

    // A redirect to a host configuration does not name: refused, never contacted.
    let app1 = app(Rule::new(http(&url))).await;
    let got = get(&c, &app1.at(&format!("to/{foreign}secret"))).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(elsewhere.total_hits(), 0, "the foreign host saw no request");

    // A chain of 3 on the origin's own host works (default limit 3).
    let got = get(&c, &app1.at("chain/3")).await;
    assert_eq!(got.body(), b"end of the chain");
    assert_eq!(
        stored(&*app1.store, "chain/3").await.as_deref(),
        Some(&b"end of the chain"[..])
    );

    // A loop stops at the limit: 1 request + 3 hops.
    let before = hits.load(Ordering::SeqCst);
    let got = get(&c, &app1.at("loop")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(hits.load(Ordering::SeqCst) - before, 4);

    // Allowing the other host makes the first case work.
    let allowed = HttpOrigin::builder(&url)
        .allow_redirect_to(foreign.trim_end_matches('/'))
        .build()
        .unwrap();
    let app2 = app(Rule::new(allowed)).await;
    let got = get(&c, &app2.at(&format!("to/{foreign}secret"))).await;
    assert_eq!(got.body(), b"internal");
    assert!(listing(&*app1.store).await == vec!["chain/3".to_owned()]);
}

#[tokio::test]
async fn origin_statuses_pass_through_when_listed() {
    let origin = TestOrigin::start().await;
    origin.put("p/gone", Behaviour::Status(410));
    origin.put("p/teapot", Behaviour::Status(418));
    let app = app(Rule::new(http(&origin.url)).pass_through([StatusCode::GONE])).await;
    let c = client();
    let gone = get(&c, &app.at("p/gone")).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(
        gone.body(),
        b"origin secret error page",
        "status and body pass through"
    );
    let teapot = get(&c, &app.at("p/teapot")).await;
    assert_eq!(teapot.status, StatusCode::BAD_GATEWAY);
    assert!(listing(&*app.store).await.is_empty());
}

// ----- ranges and HEAD -----

/// An origin with one object: a ranged GET is answered at once, a whole GET is sent slowly.
async fn range_origin(object: Bytes) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (full, ranged) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f, r) = (full.clone(), ranged.clone());
    let app = axum::Router::new().fallback(move |req: Request| {
        let (f, r, object) = (f.clone(), r.clone(), object.clone());
        async move {
            let len = object.len();
            if let Some(range) = req.headers().get("range").and_then(|v| v.to_str().ok()) {
                r.fetch_add(1, Ordering::SeqCst);
                let parsed = http_range_header::parse_range_header(range).unwrap();
                let span = parsed.validate(len as u64).unwrap()[0].clone();
                let (start, end) = (*span.start() as usize, *span.end() as usize);
                return Response::builder()
                    .status(206)
                    .header("content-range", format!("bytes {start}-{end}/{len}"))
                    .body(Body::from(object.slice(start..=end)))
                    .unwrap();
            }
            f.fetch_add(1, Ordering::SeqCst);
            // About 2 s for the whole object.
            let pieces: Vec<Bytes> = object
                .chunks(len / 20)
                .map(Bytes::copy_from_slice)
                .collect();
            let stream = futures::stream::iter(pieces).then(|p| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::convert::Infallible>(p)
            });
            Response::builder()
                .header("content-length", len)
                .body(Body::from_stream(stream))
                .unwrap()
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/"), full, ranged)
}

use futures::StreamExt;

#[tokio::test]
async fn a_cold_range_is_served_at_once_and_the_whole_object_filled_once() {
    let object = random_bytes(64 * 1024 * 1024, 64);
    let (url, full, ranged) = range_origin(object.clone()).await;
    // The policy this test is about (the default before `JoinFill`, issue 16).
    let app = app(Rule::new(http(&url)).on_range(RangeMiss::ServeRangeAndFill)).await;
    let c = client();
    let started = Instant::now();
    let tail = get_with(&c, &app.at("movie.bin"), &[("range", "bytes=-100")]).await;
    let took = started.elapsed();
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.outcome(), Some("proxied"));
    assert!(tail.body() == &object[object.len() - 100..]);
    assert!(
        took < Duration::from_millis(1000),
        "the range took {took:?}; the whole object takes 2 s"
    );
    // A second range while the fill runs: another ranged request, no second full fetch.
    let mid = get_with(&c, &app.at("movie.bin"), &[("range", "bytes=1000-1999")]).await;
    assert!(mid.body() == &object[1000..2000]);
    let store = app.store.clone();
    assert!(
        eventually(Duration::from_secs(20), || {
            let store = store.clone();
            async move { stored(&*store, "movie.bin").await.is_some() }
        })
        .await
    );
    assert!(stored(&*app.store, "movie.bin").await.unwrap() == object);
    assert_eq!(
        full.load(Ordering::SeqCst),
        1,
        "the whole object was fetched once"
    );
    assert_eq!(ranged.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fill_then_serve_answers_the_range_from_the_fill() {
    let object = random_bytes(1024 * 1024, 65);
    let (url, full, ranged) = range_origin(object.clone()).await;
    let app = app(Rule::new(http(&url)).on_range(RangeMiss::FillThenServe)).await;
    let c = client();
    let got = get_with(&c, &app.at("f.bin"), &[("range", "bytes=1000-1999")]).await;
    assert_eq!(got.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        got.headers["content-range"],
        format!("bytes 1000-1999/{}", object.len())
    );
    assert!(got.body() == &object[1000..2000]);
    let bad = get_with(&c, &app.at("g.bin"), &[("range", "bytes=99999999-")]).await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        bad.headers["content-range"],
        format!("bytes */{}", object.len())
    );
    let store = app.store.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move {
                stored(&*store, "f.bin").await.is_some() && stored(&*store, "g.bin").await.is_some()
            }
        })
        .await
    );
    assert_eq!(full.load(Ordering::SeqCst), 2);
    assert_eq!(ranged.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn head_misses_follow_the_rule() {
    let origin = TestOrigin::start().await;
    origin.object("h/a.txt", "head");
    let c = client();
    for (policy, status, outcome, stores) in [
        (HeadMiss::Ignore, StatusCode::NOT_FOUND, None, false),
        (HeadMiss::OriginHead, StatusCode::OK, Some("proxied"), false),
        (HeadMiss::Fill, StatusCode::OK, Some("pulled"), true),
    ] {
        let app = app(Rule::new(http(&origin.url)).on_head(policy)).await;
        let got = request(&c, Method::HEAD, &app.at("h/a.txt")).await;
        assert_eq!(got.status, status, "{policy:?}");
        assert_eq!(got.outcome(), outcome, "{policy:?}");
        if status == StatusCode::OK {
            assert_eq!(got.headers["content-length"], "4", "{policy:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            stored(&*app.store, "h/a.txt").await.is_some(),
            stores,
            "{policy:?}"
        );
    }
}

// ----- integrity and size -----

#[tokio::test]
async fn a_content_md5_mismatch_stores_nothing_and_fails_the_body() {
    let origin = TestOrigin::start().await;
    // md5("hello") in base64; the bodies below are "hello" and "HELLO".
    let md5 = "XUFAKrxLKna5cZ2REBfFkg==";
    origin.put(
        "i/good.txt",
        Behaviour::Object {
            body: Bytes::from_static(b"hello"),
            headers: vec![("content-md5", md5)],
        },
    );
    origin.put(
        "i/bad.txt",
        Behaviour::Object {
            body: Bytes::from_static(b"HELLO"),
            headers: vec![("content-md5", md5)],
        },
    );
    origin.put(
        "i/sha.txt",
        Behaviour::Object {
            body: Bytes::from_static(b"hellO"),
            headers: vec![(
                "x-amz-checksum-sha256",
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            )],
        },
    );
    let rule = Rule::new(http(&origin.url)).verify(Checksum::Sha256Header(
        HeaderName::from_static("x-amz-checksum-sha256"),
    ));
    let app = app(rule).await;
    let c = client();
    assert_eq!(get(&c, &app.at("i/good.txt")).await.body(), b"hello");
    // The whole body is held until it is verified, so the server may cut the connection
    // before the response head: either way the client never sees a clean response.
    assert!(body_of(&c, &app.at("i/bad.txt")).await.is_err());
    assert!(body_of(&c, &app.at("i/sha.txt")).await.is_err());
    assert_eq!(listing(&*app.store).await, vec!["i/good.txt".to_owned()]);
}

#[tokio::test]
async fn objects_over_the_size_limit_are_proxied_or_refused() {
    let origin = TestOrigin::start().await;
    origin.object("s/big.bin", random_bytes(10_000, 1));
    let chunks: Vec<Bytes> = (0..5).map(|i| random_bytes(4_000, i)).collect();
    origin.put(
        "s/unknown.bin",
        Behaviour::Chunked {
            chunks,
            pause: Duration::from_millis(5),
        },
    );
    let c = client();
    let proxy = app(Rule::new(http(&origin.url)).max_object_size(5_000, Oversize::Proxy)).await;
    assert_eq!(get(&c, &proxy.at("s/big.bin")).await.body().len(), 10_000);
    assert_eq!(
        get(&c, &proxy.at("s/unknown.bin")).await.body().len(),
        20_000
    );
    assert!(listing(&*proxy.store).await.is_empty());
    let refuse = app(Rule::new(http(&origin.url)).max_object_size(5_000, Oversize::Refuse)).await;
    assert_eq!(
        get(&c, &refuse.at("s/big.bin")).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert!(get(&c, &refuse.at("s/unknown.bin")).await.body.is_err());
    assert!(listing(&*refuse.store).await.is_empty());
}

// ----- a bucket as origin -----

#[tokio::test]
async fn bucket_to_bucket_keeps_bytes_content_type_and_metadata() {
    let source: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "image/webp".into());
    attributes.insert(Attribute::Metadata("owner".into()), "alice".into());
    let object = random_bytes(300_000, 9);
    source
        .put_opts(
            &Path::from("exports/pics/cat.webp"),
            object.clone().into(),
            PutOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let origin = BucketOrigin::new(source.clone()).with_prefix(Path::from("exports"));
    let c = client();

    // Into another bucket that keeps attributes.
    let app = app(Rule::new(origin.clone())).await;
    let got = get(&c, &app.at("pics/cat.webp")).await;
    assert!(got.body() == &object[..]);
    assert_eq!(got.headers["content-type"], "image/webp");
    assert_eq!(got.headers["x-amz-meta-owner"], "alice");
    let head = stored_attributes(&*app.store, "pics/cat.webp").await;
    assert_eq!(
        head.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/webp")
    );
    assert_eq!(
        head.get(&Attribute::Metadata("owner".into()))
            .map(|v| v.as_ref()),
        Some("alice")
    );
    // A key the source does not have: the inner 404.
    assert_eq!(
        get(&c, &app.at("pics/none.webp")).await.status,
        StatusCode::NOT_FOUND
    );

    // Onto local disk (which keeps the bytes; it has no attributes).
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let app = app_with(Rule::new(origin), local).await;
    let got = get(&c, &app.at("pics/cat.webp")).await;
    assert_eq!(got.headers["content-type"], "image/webp");
    assert!(std::fs::read(dir.path().join("pics/cat.webp")).unwrap() == object);
}

#[tokio::test]
async fn errors_name_the_rule_the_key_and_the_origin_host() {
    let origin = TestOrigin::start().await;
    origin.put("e/x", Behaviour::Status(500));
    let app = app(Rule::new(http(&origin.url)).named("assets")).await;
    let mut events = app.layer.handle().subscribe();
    get(&client(), &app.at("e/x")).await;
    loop {
        let event = events.recv().await.unwrap();
        if let tower_origin_pull::FillEvent::Failed { key, rule, reason } = event {
            assert_eq!(key, "e/x");
            assert_eq!(&*rule, "assets");
            assert!(reason.contains("500"), "{reason}");
            break;
        }
    }
    // Origin errors name the host they came from.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = http(&format!("http://127.0.0.1:{port}/base"))
        .fetch(tower_origin_pull::OriginRequest::new("k"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{port}/base/k")),
        "{e}"
    );
}

#[tokio::test]
async fn the_protocol_can_follow_the_client() {
    use tower_origin_pull::{OriginRequest, Protocol};
    let o = HttpOrigin::builder("http://origin.example/")
        .protocol(Protocol::SameAsRequest)
        .build()
        .unwrap();
    let mut r = OriginRequest::new("a");
    assert_eq!(o.location(&r).unwrap().scheme_str(), Some("http"));
    r.client_scheme = Some(http::uri::Scheme::HTTPS);
    assert_eq!(
        o.location(&r).unwrap().to_string(),
        "https://origin.example/a"
    );
    let o = HttpOrigin::builder("http://origin.example/")
        .protocol(Protocol::Https)
        .build()
        .unwrap();
    assert_eq!(
        o.location(&OriginRequest::new("a")).unwrap().scheme_str(),
        Some("https")
    );
    let _ = Mode::Sync;
}

#[tokio::test]
async fn origin_redirects_can_be_passed_to_the_client_instead_of_followed() {
    let (url, hits) = redirecting_origin().await;
    let origin = HttpOrigin::builder(&url)
        .follow_redirects(0)
        .build()
        .unwrap();
    let app = app(Rule::new(origin).pass_through([StatusCode::FOUND])).await;
    let got = get(&client(), &app.at("chain/1")).await;
    assert_eq!(got.status, StatusCode::FOUND);
    // Made absolute against the origin that answered (tests/origin_tls.rs has more).
    assert_eq!(got.headers["location"], format!("{url}chain/0").as_str());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "not followed by us");
    assert!(listing(&*app.store).await.is_empty());
}
