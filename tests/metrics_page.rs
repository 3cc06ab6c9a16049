//! The mirror's `/_origin_pull/metrics` (Prometheus text, read with a real parser) and its
//! progress page at `/_origin_pull/` (loaded in headless Chromium), after a known sequence:
//! a warm-up, pulls, hits, a failure, a miss.
//!
//! Chromium must be installed (`.ci/run` installs Debian's `chromium` when it is missing):
//! without it the page test fails, it does not skip.
#![cfg(all(feature = "prometheus", feature = "monitor", feature = "config"))]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use prometheus_parse::{Scrape, Value};

const TOKEN: &str = "metrics-page-test-token-0123456789";

/// The mirror example as a process on 127.0.0.1:0, stopped with SIGINT when dropped.
struct Mirror {
    process: MirrorProcess,
    _dir: tempfile::TempDir,
}

impl Mirror {
    fn start(origin: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let mut cmd = Command::new(mirror_binary());
        cmd.args(["--origin", origin, "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "info");
        Self {
            process: MirrorProcess::spawn(cmd),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.process.addr)
    }
}

/// Every sample of a scrape by `name{label="value",...}` (labels sorted), checking first
/// that the parser kept a sample for every sample line of the text.
fn scrape(text: &str) -> HashMap<String, Value> {
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let names: std::collections::HashSet<&str> =
        parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            names.contains(name) || names.contains(base),
            "the parser dropped {line:?}"
        );
    }
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            labels.sort();
            let key = if labels.is_empty() {
                s.metric
            } else {
                format!("{}{{{}}}", s.metric, labels.join(","))
            };
            (key, s.value)
        })
        .collect()
}

fn number(metrics: &HashMap<String, Value>, key: &str) -> f64 {
    match metrics.get(key) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!(
            "{key}: {other:?} in {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    }
}

async fn metrics_of(c: &HttpClient, mirror: &Mirror) -> HashMap<String, Value> {
    let got = get(c, &mirror.url("_origin_pull/metrics")).await;
    assert_eq!(got.status, 200);
    let content_type = got.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    scrape(std::str::from_utf8(got.body()).unwrap())
}

/// The known sequence: a warm-up of three keys (two pulled, one the origin lacks) run at
/// start, then two pulls, four hits, one origin failure, one miss.
async fn sequence(origin: &TestOrigin, c: &HttpClient, mirror: &Mirror) {
    let warmed = eventually(Duration::from_secs(20), || async {
        let m = metrics_of(c, mirror).await;
        m.get("origin_pull_warmup_keys{state=\"done\"}") == Some(&Value::Gauge(3.0))
    })
    .await;
    assert!(warmed, "the warm-up did not finish");
    for (i, (path, status)) in [
        ("a.txt", 200),      // pulled
        ("a.txt", 200),      // hit
        ("a.txt", 200),      // hit
        ("b.txt", 200),      // pulled
        ("b.txt", 200),      // hit
        ("w1.txt", 200),     // hit: warmed up
        ("broken.txt", 502), // failed: the origin answers 500
        ("none.txt", 404),   // missed: the origin answers 404
    ]
    .into_iter()
    .enumerate()
    {
        if i == 4 {
            // The second half in later sampling intervals (the page test samples every
            // 0.2 s), so the charts have points over time.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let got = get(c, &mirror.url(path)).await;
        assert_eq!(got.status, status, "{path}");
    }
    assert_eq!(
        origin.hits("w1.txt"),
        1,
        "the warmed key was not pulled again"
    );
}

/// The origin of the sequence, and the warm-up's key list (two keys it has, one it lacks).
async fn start_origin_and_keys() -> (TestOrigin, tempfile::TempDir) {
    let origin = TestOrigin::start().await;
    origin.object("a.txt", "aaaa");
    origin.object("b.txt", "bbbbbb");
    origin.object("w1.txt", vec![b'1'; 10]);
    origin.object("w2.txt", vec![b'2'; 20]);
    origin.put("broken.txt", Behaviour::Status(500));
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(
        keys.path().join("keys.txt"),
        "w1.txt\n# a comment\nw2.txt\nnope.txt\n",
    )
    .unwrap();
    (origin, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_sequence_and_parse() {
    let (origin, keys) = start_origin_and_keys().await;
    let list = keys.path().join("keys.txt");
    let mirror = Mirror::start(&origin.url, &["--warmup", list.to_str().unwrap()]);
    let c = client();
    sequence(&origin, &c, &mirror).await;
    let m = metrics_of(&c, &mirror).await;
    let n = |key: &str| number(&m, key);
    let requests = |outcome: &str| {
        n(&format!(
            "origin_pull_requests_total{{outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(requests("hit"), 4.0);
    assert_eq!(requests("pulled"), 2.0);
    assert_eq!(requests("failed"), 1.0);
    assert_eq!(requests("missed"), 1.0);
    assert_eq!(n("origin_pull_served_from_store_ratio"), 0.5);
    // Keys pulled: the warm-up's two and the two pulls.
    assert_eq!(n("origin_pull_fills_total{result=\"completed\"}"), 4.0);
    assert_eq!(
        n("origin_pull_origin_bytes_total"),
        (10 + 20 + 4 + 6) as f64
    );
    assert_eq!(n("origin_pull_fills_total{result=\"not_found\"}"), 2.0);
    assert_eq!(n("origin_pull_fills_total{result=\"failed\"}"), 1.0);
    assert_eq!(
        n("origin_pull_fill_failures_total{reason=\"origin_status\"}"),
        1.0
    );
    assert_eq!(n("origin_pull_fills_in_flight"), 0.0);
    assert_eq!(n("origin_pull_background_queued_total"), 0.0);
    match m.get("origin_pull_fill_duration_seconds") {
        Some(Value::Histogram(buckets)) => {
            let all = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(all.count, 4.0, "{buckets:?}");
            assert!(buckets.len() > 10, "{buckets:?}");
        }
        other => panic!("histogram: {other:?}"),
    }
    for (state, keys) in [
        ("total", 3.0),
        ("done", 3.0),
        ("pulled", 2.0),
        ("skipped", 0.0),
        ("failed", 1.0),
    ] {
        assert_eq!(
            n(&format!("origin_pull_warmup_keys{{state=\"{state}\"}}")),
            keys,
            "{state}"
        );
    }
    assert_eq!(n("origin_pull_warmup_bytes"), 30.0);
    grafana_panel_names_these_metrics(&m);
    assert_eq!(n("origin_pull_warmup_eta_seconds"), 0.0);
}

/// `docs/grafana-panel.json` is JSON, and every metric its queries name is in the scrape.
fn grafana_panel_names_these_metrics(m: &HashMap<String, Value>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-panel.json");
    let panel: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let targets = panel["targets"].as_array().unwrap();
    assert!(targets.len() >= 2);
    for target in targets {
        let expr = target["expr"].as_str().unwrap();
        let names: Vec<&str> = expr
            .match_indices("origin_pull_")
            .map(|(at, _)| {
                let rest = &expr[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                m.keys().any(|k| k.split('{').next() == Some(name)),
                "{name} of the Grafana panel is not in the scrape"
            );
        }
    }
}

/// Where the test's artifacts go: `target/metrics_page/`.
fn artifacts() -> PathBuf {
    // target/<profile>/deps/<test>-HASH → target
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("metrics_page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The headless Chromium to use, installed (Debian's `chromium`) when missing: `None` (the
/// test skips) only outside CI, when it cannot be installed.
fn browser() -> Option<String> {
    common::tools::required(
        common::tools::debian_tool(&["chromium", "chromium-browser"], "chromium"),
        "chromium (apt-get install chromium)",
    )
}

/// `binary` (headless Chromium) with `args` on `url`: its standard output.
fn chromium(binary: &str, args: &[&str], url: &str, profile: &Path) -> String {
    let out = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every value of `attr="..."` in `dom`, in order.
fn attrs<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    dom.match_indices(&needle)
        .filter_map(|(at, _)| dom[at + needle.len()..].split('"').next())
        .collect()
}

/// The points of a chart: the space-separated numbers of its line's `attr`.
fn points(dom: &str, attr: &str) -> Vec<f64> {
    let lists = attrs(dom, attr);
    assert_eq!(lists.len(), 1, "one chart with {attr}");
    lists[0].split(' ').map(|v| v.parse().unwrap()).collect()
}

/// The `data-value` of the element with `id`.
fn value_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    attrs(&dom[start..end], "data-value")[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_chromium_shows_the_sequence() {
    let Some(binary) = browser() else {
        return;
    };
    let (origin, keys) = start_origin_and_keys().await;
    let list = keys.path().join("keys.txt");
    let mirror = Mirror::start(
        &origin.url,
        &[
            "--warmup",
            list.to_str().unwrap(),
            "--history-resolution",
            "0.2",
        ],
    );
    let c = client();
    sequence(&origin, &c, &mirror).await;
    // A sample after the last request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = metrics_of(&c, &mirror).await;
    let page = get(&c, &mirror.url("_origin_pull/")).await;
    assert_eq!(page.status, 200);
    assert!(page.body().len() < 16 * 1024, "{} bytes", page.body().len());

    let profile = tempfile::tempdir().unwrap();
    let url = mirror.url("_origin_pull/");
    let dom = chromium(&binary, &["--dump-dom"], &url, profile.path());
    std::fs::write(artifacts().join("progress-page.html"), &dom).unwrap();
    let shot = artifacts().join("progress-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &binary,
        &[
            "--window-size=760,1100",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
        profile.path(),
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 1000,
        "no screenshot"
    );

    let requests: f64 = ["hit", "pulled", "failed", "missed"]
        .iter()
        .map(|o| {
            number(
                &m,
                &format!("origin_pull_requests_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum();
    // The share chart's points hold every request, and every hit, of the sequence, in
    // more than one interval.
    let (hits, asked) = (points(&dom, "data-hits"), points(&dom, "data-requests"));
    assert_eq!(hits.len(), asked.len());
    assert!(asked.iter().filter(|r| **r > 0.0).count() >= 2, "{asked:?}");
    let drawn = attrs(&dom, "points")[0].split_whitespace().count();
    assert_eq!(drawn, asked.iter().filter(|r| **r > 0.0).count());
    assert_eq!(
        hits.iter().sum::<f64>(),
        number(&m, "origin_pull_requests_total{outcome=\"hit\"}")
    );
    assert_eq!(asked.iter().sum::<f64>(), requests);
    // The bytes chart rises to the bytes pulled.
    let bytes = number(&m, "origin_pull_origin_bytes_total");
    let pulled = points(&dom, "data-bytes");
    assert!(pulled.len() >= 2, "{pulled:?}");
    assert!(pulled.windows(2).all(|w| w[0] <= w[1]), "{pulled:?}");
    assert_eq!(pulled.last(), Some(&bytes));
    // The counters now are the scrape's.
    assert_eq!(
        value_of(&dom, "bytes-pulled").parse::<f64>().unwrap(),
        bytes
    );
    assert_eq!(value_of(&dom, "requests").parse::<f64>().unwrap(), requests);
    assert_eq!(
        value_of(&dom, "store-share").parse::<f64>().unwrap(),
        number(&m, "origin_pull_served_from_store_ratio")
    );
    assert_eq!(value_of(&dom, "fills-in-flight"), "0");
    // The warm-up, the failure with its reason, the keys missed.
    assert_eq!(value_of(&dom, "warmup-done"), "3");
    assert_eq!(value_of(&dom, "warmup-failed"), "1");
    assert!(dom.contains("<span id=\"warmup-eta\">done</span>"), "{dom}");
    assert_eq!(attrs(&dom, "data-reason"), ["origin_status"]);
    assert!(dom.contains("broken.txt"));
    assert!(dom.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(!dom.contains("<script"));
    assert!(!dom.contains("src=\"http"), "no external asset");
    // Loading the page asked the mirror for nothing else (no favicon pulled from the origin).
    let after = metrics_of(&c, &mirror).await;
    let total = |m: &HashMap<String, Value>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with("origin_pull_requests_total"))
            .map(|(_, v)| match v {
                Value::Counter(n) => *n,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(total(&after), total(&m));
}

/// With an admin token, the metrics and the page need it; the probes do not; `/metrics`
/// is an object's key like any other path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_page_are_behind_the_admin_token() {
    let origin = TestOrigin::start().await;
    origin.object("metrics", "an object named metrics");
    let mirror = Mirror::start(&origin.url, &["--admin-token", TOKEN]);
    let c = client();
    let bearer = format!("Bearer {TOKEN}");
    for path in ["_origin_pull/metrics", "_origin_pull/"] {
        assert_eq!(get(&c, &mirror.url(path)).await.status, 401, "{path}");
        let got = get_with(&c, &mirror.url(path), &[("authorization", &bearer)]).await;
        assert_eq!(got.status, 200, "{path}");
    }
    assert_eq!(
        get(&c, &mirror.url("_origin_pull/health")).await.status,
        200
    );
    // `/metrics` stays a key of the bucket.
    let object = get(&c, &mirror.url("metrics")).await;
    assert_eq!(object.body(), b"an object named metrics");
}
