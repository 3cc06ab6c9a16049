//! A mirror is a shared cache that never forgets: private answers stay with their client,
//! and request input that reaches the origin without being in the key never decides what
//! others are served (findings 1 and 2 of issue 13), over memory and local disk.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use tower_origin_pull::config::Config;
use tower_origin_pull::{HeaderPolicy, HttpOrigin, OriginPullBuilder, QueryPolicy, Rule};

use common::*;

/// An origin that answers each request with what it saw: the query, the user's token and
/// cookie, `X-Forwarded-Host` and `Accept-Language`. `/private/*` answers as a per-user
/// response should (`Cache-Control: private, no-store`, `Vary`, `Set-Cookie`); `/vary/*`
/// with `Vary: *`; a query containing `reject` gets a `404`.
async fn reflecting_origin() -> String {
    let app = Router::new().fallback(|req: Request| async move {
        let h = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let query = req.uri().query().unwrap_or("").to_owned();
        if query.contains("reject") {
            return Response::builder()
                .status(404)
                .body(axum::body::Body::from("no"))
                .unwrap();
        }
        let body = format!(
            "q={query} auth={} cookie={} xfh={} lang={}",
            h("authorization"),
            h("cookie"),
            h("x-forwarded-host"),
            h("accept-language")
        );
        let mut res = Response::builder().header("content-type", "application/octet-stream");
        let path = req.uri().path();
        if path.starts_with("/private/") {
            res = res
                .header("cache-control", "private, no-store")
                .header("vary", "Authorization, Cookie")
                .header("set-cookie", "session=for-this-user");
        }
        if path.starts_with("/vary/") {
            res = res.header("vary", "*");
        }
        res.body(axum::body::Body::from(body)).unwrap()
    });
    format!("http://{}/", serve(app).await)
}

/// What a request with no input of its own must get.
const CLEAN: &str = "q= auth= cookie= xfh= lang=";

struct Mirror {
    url: String,
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn mirror(local: bool, rule: Rule, remember_404: bool) -> Mirror {
    let (store, dir): (Arc<dyn ObjectStore>, _) = if local {
        let dir = tempfile::tempdir().unwrap();
        (
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
            Some(dir),
        )
    } else {
        (Arc::new(InMemory::new()), None)
    };
    let mut builder = OriginPullBuilder::from_object_store(store.clone()).rule(rule);
    if remember_404 {
        builder = builder.remember_not_found(Duration::from_secs(60));
    }
    let url = format!(
        "http://{}/",
        serve(store_service(store.clone()).layer(builder.build())).await
    );
    Mirror {
        url,
        store,
        _dir: dir,
    }
}

#[tokio::test]
async fn finding_1_a_private_answer_is_never_stored_nor_shared() {
    let origin = reflecting_origin().await;
    for local in [false, true] {
        let rule = Rule::new(HttpOrigin::new(&origin).unwrap())
            .headers(HeaderPolicy::pass_only(["authorization", "cookie"]).unwrap());
        let m = mirror(local, rule, false).await;
        let c = client();
        let url = format!("{}private/report.bin", m.url);
        // A user, and 10 other requests at once: anonymous, and other users.
        let alice = get_with(&c, &url, &[("authorization", "Bearer alice")]).await;
        assert_eq!(alice.status, StatusCode::OK);
        assert!(
            std::str::from_utf8(alice.body())
                .unwrap()
                .contains("auth=Bearer alice")
        );
        assert_eq!(
            alice.headers["set-cookie"], "session=for-this-user",
            "her own cookie"
        );
        let others: Vec<_> = (0..10)
            .map(|i| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move {
                    let token = format!("Bearer user{i}");
                    let headers: Vec<(&str, &str)> = if i % 2 == 0 {
                        vec![]
                    } else {
                        vec![("authorization", token.as_str())]
                    };
                    let got = get_with(&c, &url, &headers).await;
                    (token, i % 2 == 0, got)
                })
            })
            .collect();
        for other in others {
            let (token, anonymous, got) = other.await.unwrap();
            let body = String::from_utf8(got.body().to_vec()).unwrap();
            assert!(!body.contains("alice"), "{body}");
            if anonymous {
                assert!(body.contains("auth= "), "{body}");
            } else {
                assert!(body.contains(&format!("auth={token}")), "{body}");
            }
        }
        assert!(
            listing(&*m.store).await.is_empty(),
            "nothing stored (local: {local})"
        );
        // A public answer to a request that forwarded credentials is that user's too.
        let public = format!("{}public/doc.bin", m.url);
        let bob = get_with(&c, &public, &[("cookie", "user=bob")]).await;
        assert!(
            std::str::from_utf8(bob.body())
                .unwrap()
                .contains("cookie=user=bob")
        );
        let anon = get(&c, &public).await;
        assert_eq!(anon.body(), CLEAN.as_bytes(), "not bob's answer");
        assert_eq!(
            listing(&*m.store).await,
            ["public/doc.bin"],
            "the anonymous answer, stored"
        );
    }
}

#[tokio::test]
async fn store_private_stores_what_the_operator_says_is_public() {
    let origin = reflecting_origin().await;
    let rule = Rule::new(HttpOrigin::new(&origin).unwrap()).store_private(true);
    let m = mirror(false, rule, false).await;
    let got = get(&client(), &format!("{}private/public-really.bin", m.url)).await;
    assert_eq!(got.outcome(), Some("pulled"));
    assert_eq!(listing(&*m.store).await, ["private/public-really.bin"]);
}

/// A poisoning row: a rule option that forwards request input, an attacker's request,
/// then a victim's plain request for the same key.
struct Row {
    name: &'static str,
    rule: fn(Rule) -> Rule,
    /// The same rule as a config file's fields, for the validation side.
    toml: &'static str,
    attacker: (&'static str, &'static [(&'static str, &'static str)]),
    /// Where validation refuses the rule, or `None` when it is keyed at run time.
    refused_at: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "query forwarded",
            rule: |r| r.query(QueryPolicy::Forward),
            toml: r#"query = "forward""#,
            attacker: ("k/a.bin?evil=1", &[]),
            refused_at: Some("rules[0].query"),
        },
        Row {
            name: "some query parameters forwarded",
            rule: |r| r.query(QueryPolicy::Only(vec!["v".into()])),
            toml: r#"query_params = ["v"]"#,
            attacker: ("k/a.bin?v=evil", &[]),
            refused_at: Some("rules[0].query_params"),
        },
        Row {
            name: "every client header forwarded",
            rule: |r| r.headers(HeaderPolicy::pass_all()),
            toml: r#"request_headers = { pass = "all" }"#,
            attacker: ("k/a.bin", &[("x-forwarded-host", "evil.example")]),
            refused_at: Some("rules[0].request_headers"),
        },
        Row {
            name: "chosen client headers forwarded",
            rule: |r| r.headers(HeaderPolicy::pass_only(["accept-language"]).unwrap()),
            toml: r#"request_headers = { pass_only = ["accept-language"] }"#,
            attacker: ("k/a.bin", &[("accept-language", "evil")]),
            refused_at: Some("rules[0].request_headers"),
        },
        Row {
            name: "a keyed query parameter",
            rule: |r| r.key_query(["v"]),
            toml: r#"key_query = ["v"]"#,
            attacker: ("k/a.bin?v=evil", &[]),
            refused_at: None,
        },
        Row {
            name: "a keyed header",
            rule: |r| r.key_headers(["accept-language"]).unwrap(),
            toml: r#"key_headers = ["accept-language"]"#,
            attacker: ("k/a.bin", &[("accept-language", "evil")]),
            refused_at: None,
        },
        Row {
            name: "a host condition (selects the rule, forwards nothing)",
            rule: |r| r.allow_hosts(["mirror.example"]),
            toml: r#"allow_hosts = ["mirror.example"]"#,
            attacker: (
                "k/a.bin",
                &[
                    ("host", "mirror.example"),
                    ("x-forwarded-host", "evil.example"),
                ],
            ),
            refused_at: None,
        },
        Row {
            name: "an origin answering Vary: *",
            rule: |r| r.headers(HeaderPolicy::pass_all()).unkeyed_forwarding(true),
            toml: r#"request_headers = { pass = "all" }
            unkeyed_forwarding = true"#,
            attacker: ("vary/a.bin", &[("accept-language", "evil")]),
            refused_at: None,
        },
    ]
}

#[tokio::test]
async fn finding_2_poisoning_table() {
    let origin = reflecting_origin().await;
    let c = client();
    for row in rows() {
        // The configuration side: refused where it says, or accepted.
        let toml = format!(
            "[store]\nurl = \"memory://\"\n[[rules]]\n{}\norigin = {{ hosts = [\"{origin}\"] }}\n",
            row.toml
        );
        let problems = Config::from_toml(&toml).unwrap().validate();
        match row.refused_at {
            Some(at) => {
                assert!(
                    problems.iter().any(|p| p.at == at),
                    "{}: refused at {at}: {problems:?}",
                    row.name
                );
                continue;
            }
            None => assert!(problems.is_empty(), "{}: {problems:?}", row.name),
        }
        for local in [false, true] {
            let m = mirror(
                local,
                (row.rule)(Rule::new(HttpOrigin::new(&origin).unwrap())),
                false,
            )
            .await;
            let (target, headers) = row.attacker;
            let attacker = get_with(&c, &format!("{}{target}", m.url), headers).await;
            assert_eq!(attacker.status, StatusCode::OK, "{}", row.name);
            let key = target.split('?').next().unwrap();
            let victim = get(&c, &format!("{}{key}", m.url)).await;
            let victim_host = get_with(
                &c,
                &format!("{}{key}", m.url),
                &[("host", "mirror.example")],
            )
            .await;
            for v in [&victim, &victim_host] {
                assert_eq!(v.status, StatusCode::OK, "{} (local {local})", row.name);
                assert_eq!(v.body(), CLEAN.as_bytes(), "{} (local {local})", row.name);
            }
        }
    }
    // The same rows built in code, without the opt-in: each client gets its own answer.
    for row in rows().into_iter().filter(|r| r.refused_at.is_some()) {
        for local in [false, true] {
            let m = mirror(
                local,
                (row.rule)(Rule::new(HttpOrigin::new(&origin).unwrap())),
                false,
            )
            .await;
            let (target, headers) = row.attacker;
            let attacker = get_with(&c, &format!("{}{target}", m.url), headers).await;
            assert_ne!(
                attacker.body(),
                CLEAN.as_bytes(),
                "{}: the attacker's own",
                row.name
            );
            assert_eq!(attacker.outcome(), Some("proxied"), "{}", row.name);
            let key = target.split('?').next().unwrap();
            let victim = get(&c, &format!("{}{key}", m.url)).await;
            assert_eq!(
                victim.body(),
                CLEAN.as_bytes(),
                "{}: keyed (local {local})",
                row.name
            );
            assert_eq!(victim.outcome(), Some("pulled"), "{}", row.name);
        }
    }
}

#[tokio::test]
async fn finding_2_a_crafted_404_is_not_remembered_for_everyone() {
    let origin = reflecting_origin().await;
    for local in [false, true] {
        let rule = Rule::new(HttpOrigin::new(&origin).unwrap()).query(QueryPolicy::Forward);
        let m = mirror(local, rule, true).await;
        let c = client();
        let attacker = get(&c, &format!("{}k/b.bin?reject=1", m.url)).await;
        assert_eq!(attacker.status, StatusCode::NOT_FOUND);
        let victim = get(&c, &format!("{}k/b.bin", m.url)).await;
        assert_eq!(victim.status, StatusCode::OK, "the origin has it");
        assert_eq!(victim.body(), CLEAN.as_bytes());
    }
}

/// Finding 9: `deny_hosts` applies to HTTP/2 requests too, which carry their host as
/// `:authority`, not a `Host` header.
#[tokio::test]
async fn deny_hosts_holds_for_http2_authority() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let origin = reflecting_origin().await;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(Rule::new(HttpOrigin::new(&origin).unwrap()).deny_hosts(["evil.example"]))
        .build();
    let addr = serve(store_service(store.clone()).layer(layer)).await;
    for (authority, pulled) in [("evil.example", false), ("good.example", true)] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{authority}/h2/{authority}.bin"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        let expected = if pulled {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(res.status(), expected, "{authority}");
    }
    assert_eq!(listing(&*store).await, ["h2/good.example.bin"]);
}

/// `key_query` / `key_headers`: what the rule keys reaches the origin and is stored per
/// variant; each client gets its own variant, a repeated variant is a hit, and a key has at
/// most `max_variants` stored variants.
#[tokio::test]
async fn keyed_input_makes_a_variant_per_value_each_a_hit_of_its_own() {
    let origin = reflecting_origin().await;
    type Keyed = (
        &'static str,
        fn(Rule) -> Rule,
        (&'static str, &'static [(&'static str, &'static str)]),
        &'static str,
    );
    let rows: [Keyed; 2] = [
        (
            "key_query",
            |r| r.key_query(["lang"]),
            ("kq/a.bin?lang=evil&other=x", &[]),
            "q=lang=evil",
        ),
        (
            "key_headers",
            |r| r.key_headers(["accept-language"]).unwrap(),
            ("kh/a.bin", &[("accept-language", "Evil ")]),
            "lang=evil",
        ),
    ];
    for (name, rule, (target, headers), attacker_sees) in rows {
        for local in [false, true] {
            let m = mirror(
                local,
                rule(Rule::new(HttpOrigin::new(&origin).unwrap())),
                false,
            )
            .await;
            let c = client();
            let url = format!("{}{target}", m.url);
            let attacker = get_with(&c, &url, headers).await;
            let body = String::from_utf8(attacker.body().to_vec()).unwrap();
            assert!(body.contains(attacker_sees), "{name}: {body}");
            assert_eq!(
                attacker.outcome(),
                Some("pulled"),
                "{name}: a variant is stored"
            );
            let key = target.split('?').next().unwrap();
            let victim = get(&c, &format!("{}{key}", m.url)).await;
            assert_eq!(
                victim.body(),
                CLEAN.as_bytes(),
                "{name}: the victim's own (local {local})"
            );
            assert_eq!(victim.outcome(), Some("pulled"));
            // Both are hits now, each of its own variant.
            let again = get_with(&c, &url, headers).await;
            assert_eq!(again.outcome(), None, "{name}: the variant is a hit");
            assert_eq!(again.body(), attacker.body());
            let plain = get(&c, &format!("{}{key}", m.url)).await;
            assert_eq!(plain.outcome(), None);
            assert_eq!(plain.body(), CLEAN.as_bytes());
            assert_eq!(
                listing(&*m.store).await.len(),
                2,
                "{name}: the plain key and one variant"
            );
        }
    }
    // At most max_variants stored variants per key; past it, answered privately.
    let m = mirror(
        false,
        Rule::new(HttpOrigin::new(&origin).unwrap())
            .key_query(["v"])
            .max_variants(2),
        false,
    )
    .await;
    let c = client();
    for (v, outcome) in [
        ("1", "pulled"),
        ("2", "pulled"),
        ("3", "proxied"),
        ("4", "proxied"),
    ] {
        let got = get(&c, &format!("{}mv/a.bin?v={v}", m.url)).await;
        assert_eq!(got.outcome(), Some(outcome), "v={v}");
        assert!(
            std::str::from_utf8(got.body())
                .unwrap()
                .contains(&format!("q=v={v}"))
        );
    }
    assert_eq!(listing(&*m.store).await.len(), 2);
}

/// A variant's key cannot be written by a request that names it.
#[tokio::test]
async fn a_variants_key_is_never_pulled_by_name() {
    let origin = reflecting_origin().await;
    let m = mirror(
        false,
        Rule::new(HttpOrigin::new(&origin).unwrap()).key_query(["v"]),
        false,
    )
    .await;
    let c = client();
    let fr = get(&c, &format!("{}r/a.bin?v=fr", m.url)).await;
    assert_eq!(fr.outcome(), Some("pulled"));
    let stored = listing(&*m.store).await;
    assert_eq!(stored.len(), 1);
    // Another key's variant path, named directly: not pulled, nothing written.
    let forged = stored[0].replace("r/a.bin", "r/b.bin");
    let got = get(&c, &format!("{}{forged}", m.url)).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.outcome(), None);
    assert_eq!(listing(&*m.store).await, stored);
}
