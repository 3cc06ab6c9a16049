//! Config: parse → build → serve for every mode, invalid configs rejected with their
//! locations, limits, validation without side effects, and the configured webhook started
//! by `from_config`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use object_store::memory::InMemory;
use tower_origin_pull::config::Config;
use tower_origin_pull::{Error, OriginPullBuilder, OriginPullLayer};

use common::*;

fn config_for(origin: &str, dir: &std::path::Path, mode: &str) -> String {
    format!(
        r#"
        coalesce_window = "1MiB"
        slow_reader_grace = "100ms"
        remember_not_found = "1s"
        background_queue = 16
        background_concurrency = 2

        [store]
        url = "file://{dir}"
        multipart_threshold = "1MiB"
        part_size = "1MiB"

        [[rules]]
        name = "{mode}-rule"
        mode = "{mode}"
        prefix = "m/"
        rewrite = {{ strip_prefix = "m/" }}
        query_params = ["v"]
        unkeyed_forwarding = true

        [rules.origin]
        hosts = ["{origin}"]
        idle_timeout = "5s"
        first_byte_timeout = "5s"
        "#,
        dir = dir.display()
    )
}

#[tokio::test]
async fn every_mode_round_trips_from_toml_and_json_to_a_serving_layer() {
    for mode in ["sync", "async", "redirect", "proxy"] {
        for format in ["toml", "json"] {
            let origin = TestOrigin::start().await;
            origin.object("a.txt", "from the origin");
            let dir = tempfile::tempdir().unwrap();
            let toml = config_for(&origin.url, dir.path(), mode);
            let mut config = Config::from_toml(&toml).unwrap();
            if format == "json" {
                let json = serde_json::to_string(&serde_json::to_value(&config).unwrap()).unwrap();
                config = Config::from_json(&json).unwrap();
            }
            // TOML → model → TOML → model is stable.
            assert_eq!(
                Config::from_toml(&config.to_toml().unwrap()).unwrap(),
                config
            );
            assert!(
                config.validate().is_empty(),
                "{mode}/{format}: {:?}",
                config.validate()
            );
            let layer = OriginPullLayer::from_config(&config).unwrap();
            let store = std::sync::Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
            );
            let addr = serve(store_service(store).layer(layer)).await;
            let url = format!("http://{addr}/m/a.txt?v=1&secret=2");
            let got = get(&client(), &url).await;
            let what = format!("{mode}/{format}");
            match mode {
                "sync" | "proxy" => {
                    assert_eq!(got.status, StatusCode::OK, "{what}");
                    assert_eq!(got.body(), b"from the origin", "{what}");
                }
                _ => {
                    assert_eq!(got.status, StatusCode::FOUND, "{what}");
                    assert_eq!(
                        got.headers["location"],
                        format!("{}a.txt?v=1", origin.url),
                        "{what}"
                    );
                }
            }
            let expected = match mode {
                "sync" => Some("pulled"),
                "proxy" => Some("proxied"),
                "async" => Some("async"),
                _ => Some("redirect"),
            };
            assert_eq!(got.outcome(), expected, "{what}");
            let stored = dir.path().join("m/a.txt");
            let should_store = matches!(mode, "sync" | "async");
            assert!(
                eventually(Duration::from_secs(5), || async {
                    stored.exists() == should_store
                })
                .await,
                "{what}: stored = {}",
                stored.exists()
            );
            if should_store {
                // Fetched once, as /a.txt, with only the `v` parameter.
                assert_eq!(origin.hits("a.txt"), 1, "{what}");
            }
        }
    }
}

#[test]
fn invalid_configs_are_rejected_with_every_location() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"[store]
            url = "ftp://x"
            [[rules]]
            origin = { hosts = ["http://h/"] }"#,
            &["store.url"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            origin = { hosts = ["not a url"] }"#,
            &["rules[0].origin.hosts[0]"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            origin = { hosts = [] }"#,
            &["rules[0].origin.hosts"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            mode = "mirror"
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].mode"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            mode = "redirect"
            checksums = ["content-md5"]
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].checksums"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            request_headers = { pass_only = ["connection"] }
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].request_headers.pass_only"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            request_headers = { set = { "host" = "x" } }
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].request_headers.set.host"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            origin = { hosts = ["http://h/"], idle_timeout = "soon" }"#,
            &["rules[0].origin.idle_timeout"],
        ),
        (
            r#"coalesce_window = "lots"
            [store]
            url = "memory://"
            [[rules]]
            origin = { hosts = ["http://h/"] }"#,
            &["coalesce_window"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            statuses = [99]
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].statuses[0]"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            glob = "img/["
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].glob"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            rewrite = { fixed = "x", add_suffix = ".gz" }
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].rewrite"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            redirect_status = 308
            mode = "redirect"
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].redirect_status"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            origin = { hosts = ["http://a/", "http://b/"], weights = [1] }"#,
            &["rules[0].origin.weights"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            name = "x"
            origin = { hosts = ["http://h/"] }
            [[rules]]
            name = "x"
            origin = { hosts = ["http://h/"] }"#,
            &["rules[1].name"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            oversize = "refuse"
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].oversize"],
        ),
        (
            r#"[store]
            url = "memory://"
            [[rules]]
            when_headers = [{ name = "x-a", equals = "1", starts_with = "2" }]
            origin = { hosts = ["http://h/"] }"#,
            &["rules[0].when_headers[0]"],
        ),
        (
            r#"[store]
            url = "memory://"
            [events]
            webhook = "gopher://x"
            [[rules]]
            origin = { hosts = ["http://h/"] }"#,
            &["events.webhook"],
        ),
        (
            r#"[store]
            url = "memory://""#,
            &["rules"],
        ),
        // Several problems at once, all reported.
        (
            r#"slow_reader_grace = "x"
            [store]
            url = "memory://"
            [[rules]]
            mode = "nope"
            origin = { hosts = ["bad", "http://ok/"], breaker_cooldown = "never" }"#,
            &[
                "slow_reader_grace",
                "rules[0].mode",
                "rules[0].origin.hosts[0]",
                "rules[0].origin.breaker_cooldown",
            ],
        ),
    ];
    assert!(cases.len() >= 15);
    for (toml, locations) in cases {
        let config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{toml}\n{e}"));
        let problems = config.validate();
        let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
        for location in *locations {
            assert!(
                at.contains(location),
                "expected a problem at {location}, got {problems:?}\nin {toml}"
            );
        }
        match OriginPullLayer::from_config(&config) {
            Err(Error::InvalidConfig { problems }) => {
                let text = Error::InvalidConfig { problems }.to_string();
                assert!(text.contains(locations[0]), "{text}");
            }
            other => panic!("{toml}: {other:?}"),
        }
    }
}

#[test]
fn unknown_fields_and_bad_syntax_are_located() {
    let e = Config::from_toml("[store]\nurl = \"memory://\"\nurll = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("urll") && e.contains("line 3"), "{e}");
    let e = Config::from_toml("[store\n").unwrap_err().to_string();
    assert!(e.contains("line 1"), "{e}");
    let e = Config::from_json(r#"{"store": {"url": 1}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1"), "{e}");
}

fn with(extra_top: &str, origin_extra: &str) -> Config {
    Config::from_toml(&format!(
        "{extra_top}\n[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"http://h/\"]{origin_extra} }}\n"
    ))
    .unwrap_or_else(|e| panic!("{extra_top} {origin_extra}: {e}"))
}

fn locations(config: &Config) -> Vec<String> {
    config.validate().into_iter().map(|p| p.at).collect()
}

#[test]
fn fill_overflow_is_refused_with_a_migration_note() {
    for value in ["proxy", "unavailable"] {
        let config = with(&format!("max_fills = 4\nfill_overflow = \"{value}\""), "");
        let problems = config.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].at, "fill_overflow");
        assert!(
            problems[0].message.contains("removed")
                && problems[0].message.contains("fill_queue_timeout"),
            "{}",
            problems[0].message
        );
    }
}

#[test]
fn the_fill_bound_settings_are_read_and_checked() {
    let config = with(
        "max_fills = 8\nbackground_concurrency = 8\nfill_queue_timeout = \"0s\"\n\
         retry_after = \"3s\"\nhead_timeout = \"90s\"\nstall_timeout = \"20s\"",
        "",
    );
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _inside = rt.enter();
    OriginPullLayer::from_config(&config).unwrap();
    // `retry_after` no longer needs `max_fills`.
    assert!(locations(&with("retry_after = \"3s\"", "")).is_empty());
    // Background fills take their slots from the bound, the default one (64) included.
    assert_eq!(
        locations(&with("max_fills = 8\nbackground_concurrency = 9", "")),
        ["background_concurrency"]
    );
    assert_eq!(
        locations(&with("background_concurrency = 65", "")),
        ["background_concurrency"]
    );
    assert!(locations(&with("background_concurrency = 64", "")).is_empty());
    assert!(locations(&with("max_fills = 100\nbackground_concurrency = 65", "")).is_empty());
    // A zero timeout would fail every request.
    for field in ["head_timeout", "stall_timeout"] {
        assert_eq!(locations(&with(&format!("{field} = \"0s\""), "")), [field]);
    }
    for field in [
        "connect_timeout",
        "first_byte_timeout",
        "idle_timeout",
        "total_timeout",
    ] {
        assert_eq!(
            locations(&with("", &format!(", {field} = \"0ms\""))),
            [format!("rules[0].origin.{field}")]
        );
    }
}

#[test]
fn counts_and_sizes_outside_their_limits_are_refused_where_they_are() {
    let cases: &[(&str, &str, &str)] = &[
        ("max_fills = 0", "", "max_fills"),
        ("max_fills = 1000001", "", "max_fills"),
        ("background_queue = 0", "", "background_queue"),
        ("background_queue = 1000001", "", "background_queue"),
        ("background_concurrency = 0", "", "background_concurrency"),
        (
            "",
            ", follow_redirects = 101",
            "rules[0].origin.follow_redirects",
        ),
        ("", ", retries = 101", "rules[0].origin.retries"),
        (
            "[events]\nwebhook = \"http://127.0.0.1:9/\"\nmax_in_flight = 0",
            "",
            "events.max_in_flight",
        ),
        (
            "[events]\nmax_in_flight = 10001",
            "",
            "events.max_in_flight",
        ),
        ("[events]\nattempts = 0", "", "events.attempts"),
        ("[events]\nattempts = 101", "", "events.attempts"),
    ];
    for (top, origin, at) in cases {
        // `[events]` lines go after the top-level ones: put them last.
        let config = if top.starts_with("[events]") {
            Config::from_toml(&format!(
                "[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"http://h/\"] }}\n{top}\n"
            ))
            .unwrap()
        } else {
            with(top, origin)
        };
        assert_eq!(locations(&config), [*at], "{top} {origin}");
    }
    let store = |lines: &str| {
        Config::from_toml(&format!(
            "[store]\n{lines}\n[[rules]]\norigin = {{ hosts = [\"http://h/\"] }}\n"
        ))
        .unwrap()
    };
    for (lines, at) in [
        (
            "url = \"memory://\"\nmax_concurrent_parts = 0",
            "store.max_concurrent_parts",
        ),
        (
            "url = \"memory://\"\nmax_concurrent_parts = 10001",
            "store.max_concurrent_parts",
        ),
        (
            "url = \"s3://b/p\"\npart_size = \"1MiB\"",
            "store.part_size",
        ),
        (
            "url = \"s3://b/p\"\npart_size = \"6GiB\"",
            "store.part_size",
        ),
        (
            "url = \"s3://b/p\"\nmultipart_threshold = \"6GiB\"",
            "store.multipart_threshold",
        ),
        (
            "url = \"memory://\"\noptions = { timeout = \"366d\" }",
            "store.options.timeout",
        ),
        (
            "url = \"memory://\"\noptions = { read_timeout = \"soon\" }",
            "store.options.read_timeout",
        ),
    ] {
        let problems = store(lines).validate();
        // Without the `aws` feature an `s3://` URL is a problem of its own.
        let found: Vec<&str> = problems
            .iter()
            .map(|p| p.at.as_str())
            .filter(|p| *p != "store.url" || cfg!(feature = "aws"))
            .collect();
        assert_eq!(found, [at], "{lines}");
    }
}

#[test]
fn validation_creates_nothing_and_building_only_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not/yet");
    let source = dir.path().join("no-source");
    let text = |extra: &str| {
        format!(
            "{extra}\n[store]\nurl = \"file://{}\"\n[[rules]]\norigin = {{ hosts = [\"https://origin.example/\"] }}\n\
             [[rules]]\nname = \"b\"\norigin = {{ bucket = \"file://{}\" }}\n\
             [events]\nwebhook = \"https://hooks.example/fills\"\n",
            missing.display(),
            source.display()
        )
    };
    let config = Config::from_toml(&text("")).unwrap();
    // No runtime here: validation starts nothing and needs none.
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert!(!missing.exists(), "validation created the store directory");
    assert!(!source.exists());
    // An invalid configuration is refused before anything is opened.
    let invalid = Config::from_toml(&text("coalesce_window = \"lots\"")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _inside = rt.enter();
    assert!(OriginPullLayer::from_config(&invalid).is_err());
    assert!(
        !missing.exists(),
        "from_config of an invalid config created the directory"
    );
    // A valid one opens its store (creating the directory), but never creates an origin
    // bucket: reading from a directory that is not there is a problem at its location.
    match OriginPullLayer::from_config(&config) {
        Err(Error::InvalidConfig { problems }) => {
            let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
            assert_eq!(at, ["rules[1].origin.bucket"], "{problems:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!source.exists());
    std::fs::create_dir(&source).unwrap();
    OriginPullLayer::from_config(&config).unwrap();
    assert!(missing.is_dir());
}

/// A webhook receiver that keeps the JSON of every event it gets.
async fn webhook_sink() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let events = seen.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let events = events.clone();
        async move {
            events
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            StatusCode::NO_CONTENT
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/fills"), seen)
}

fn webhook_config(origin: &str, webhook: &str) -> Config {
    Config::from_toml(&format!(
        "[store]\nurl = \"memory://\"\n[[rules]]\nname = \"r\"\norigin = {{ hosts = [\"{origin}\"] }}\n\
         [events]\nwebhook = \"{webhook}\"\nattempts = 2\nmax_in_flight = 2\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn the_webhook_of_the_file_is_started_by_from_config() {
    let origin = TestOrigin::start().await;
    origin.object("a.txt", "hello");
    let (url, seen) = webhook_sink().await;
    let config = webhook_config(&origin.url, &url);
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    // No `config.webhook()`, no spawn: building the layer starts it.
    let layer = OriginPullLayer::from_config_with(&config, store.clone()).unwrap();
    let addr = serve(store_service(store).layer(layer)).await;
    let got = get(&client(), &format!("http://{addr}/a.txt")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.lock()
                .unwrap()
                .iter()
                .any(|e| e["event"] == "completed" && e["key"] == "a.txt")
        })
        .await,
        "no completed event: {:?}",
        seen.lock().unwrap()
    );
    // Once: one started and one completed event, not two of each.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn config_build_hands_back_the_running_webhook() {
    let origin = TestOrigin::start().await;
    origin.object("b.txt", "hello");
    let (url, seen) = webhook_sink().await;
    let config = webhook_config(&origin.url, &url);
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let built = config.build(Some(store.clone())).unwrap();
    let webhook = built.webhook.expect("the configured webhook, running");
    let addr = serve(store_service(store).layer(built.layer)).await;
    assert_eq!(
        get(&client(), &format!("http://{addr}/b.txt")).await.status,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            webhook.stats().delivered == 2
        })
        .await,
        "{:?}",
        webhook.stats()
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_webhook_without_a_runtime_is_refused_not_silently_dropped() {
    let config = webhook_config("http://127.0.0.1:9/", "http://127.0.0.1:9/fills");
    assert!(config.validate().is_empty());
    match OriginPullLayer::from_config(&config) {
        Err(Error::InvalidConfig { problems }) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].at, "events.webhook");
            assert!(problems[0].message.contains("runtime"), "{problems:?}");
        }
        other => panic!("{other:?}"),
    }
    // Without a webhook, no runtime is needed.
    let mut config = config;
    config.events = None;
    OriginPullLayer::from_config(&config).unwrap();
}

#[tokio::test]
async fn a_webhook_with_the_longest_timeouts_delivers() {
    let origin = TestOrigin::start().await;
    origin.object("c.txt", "hello");
    let (url, seen) = webhook_sink().await;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let layer = OriginPullBuilder::from_object_store(store.clone())
        .rule(tower_origin_pull::Rule::new(
            tower_origin_pull::HttpOrigin::new(&origin.url).unwrap(),
        ))
        .build();
    let webhook = tower_origin_pull::Webhook::new(&url)
        .unwrap()
        .timeout(Duration::MAX)
        .min_backoff(Duration::MAX)
        .attempts(usize::MAX)
        .max_in_flight(usize::MAX)
        .spawn(layer.handle().subscribe());
    let addr = serve(store_service(store).layer(layer)).await;
    assert_eq!(
        get(&client(), &format!("http://{addr}/c.txt")).await.status,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            webhook.stats().delivered == 2
        })
        .await,
        "{:?}",
        webhook.stats()
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_store_given_in_code_replaces_the_url() {
    let config = Config::from_toml(
        "[store]\nurl = \"\"\nprefix = \"p\"\n[[rules]]\norigin = { hosts = [\"http://h/\"] }\n",
    )
    .unwrap();
    assert_eq!(
        config
            .validate()
            .iter()
            .map(|p| p.at.as_str())
            .collect::<Vec<_>>(),
        ["store.url"]
    );
    OriginPullLayer::from_config_with(&config, Arc::new(InMemory::new())).unwrap();
    assert!(OriginPullLayer::from_config(&config).is_err());
}

/// The fidelity options: kept headers and refresh, read, checked with their locations, and
/// their largest accepted values build.
#[test]
fn kept_headers_and_refresh_are_read_and_checked() {
    let rule = |extra: &str| {
        Config::from_toml(&format!(
            "[store]\nurl = \"memory://\"\n[[rules]]\norigin = {{ hosts = [\"http://h/\"] }}\n{extra}\n"
        ))
        .unwrap()
    };
    for good in [
        "keep_response_headers = \"all\"",
        "keep_response_headers = [\"link\", \"x-robots-tag\"]",
        "revalidate_after = \"10m\"",
        "revalidate_after = \"0s\"",
        // The largest duration humantime reads saturates; it never panics.
        "revalidate_after = \"584542046090years\"\nrevalidate_before_serve = true",
        "on_origin_gone = \"delete\"",
    ] {
        let config = rule(good);
        assert!(
            config.validate().is_empty(),
            "{good}: {:?}",
            config.validate()
        );
        OriginPullLayer::from_config(&config).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, at) in [
        (
            "keep_response_headers = \"some\"",
            "rules[0].keep_response_headers",
        ),
        (
            "keep_response_headers = [\"bad name\"]",
            "rules[0].keep_response_headers",
        ),
        ("revalidate_after = \"often\"", "rules[0].revalidate_after"),
        (
            "revalidate_before_serve = true",
            "rules[0].revalidate_before_serve",
        ),
        ("on_origin_gone = \"maybe\"", "rules[0].on_origin_gone"),
    ] {
        let problems = rule(bad).validate();
        assert!(
            problems.iter().any(|p| p.at == at),
            "{bad}: expected a problem at {at}, got {problems:?}"
        );
    }
}
