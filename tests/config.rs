//! Config: parse → build → serve for every mode, and invalid configs rejected with their
//! locations.

mod common;

use std::time::Duration;

use http::StatusCode;
use tower_origin_pull::config::Config;
use tower_origin_pull::{Error, OriginPullLayer};

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
            &["rules[0].origin.hosts[0].idle_timeout"],
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
