//! The HTML page: inline CSS and SVG, no script, nothing fetched.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::Failure;
use super::history::Bucket;
use crate::Progress;
use crate::warmup::WarmupProgress;

/// The most points a chart draws (more intervals are merged).
pub(super) const MAX_POINTS: usize = 60;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;

/// What the page shows, gathered under the monitor's lock and rendered outside it.
pub(super) struct View {
    pub(super) now: Progress,
    pub(super) in_flight: usize,
    pub(super) history: Vec<Bucket>,
    pub(super) failures: Vec<Failure>,
    pub(super) missed: Vec<(String, u64)>,
    pub(super) warmup: Option<WarmupProgress>,
    pub(super) lost_events: u64,
    pub(super) refresh: Duration,
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.5em}\
dl{display:grid;grid-template-columns:repeat(4,auto);gap:.3em 1.5em;width:max-content}\
dt{color:#666}dd{margin:0;font-weight:600}svg{background:#f7f7f7;border:1px solid #ddd}\
polyline{fill:none;stroke-width:2}.share polyline{stroke:#2a7}.bytes polyline{stroke:#36c}\
table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #eee}\
td.n{text-align:right}.muted{color:#888}";

/// The whole page.
pub(super) fn render(v: &View) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let refresh = v.refresh.as_secs().clamp(5, 60);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta http-equiv=refresh content={refresh}>\
         <meta name=viewport content=\"width=device-width\">\
         <link rel=icon href=\"data:,\">\
         <title>origin-pull progress</title><style>{STYLE}</style></head><body>\
         <h1>origin-pull progress</h1>"
    );
    counters(&mut h, v);
    h.push_str("<h2>Served from the store, per interval</h2>");
    share_chart(&mut h, &v.history);
    h.push_str("<h2>Bytes pulled</h2>");
    bytes_chart(&mut h, &v.history);
    warmup(&mut h, v.warmup.as_ref());
    failures(&mut h, &v.failures, v.lost_events);
    missed(&mut h, &v.missed);
    let _ = write!(
        h,
        "<p class=muted>Rendered {} UTC; refreshes every {refresh} s.</p></body></html>",
        clock(SystemTime::now())
    );
    h
}

/// One `<dt>`/`<dd>` pair whose `<dd>` carries its raw value.
fn item(h: &mut String, id: &str, label: &str, value: u64, shown: &str) {
    let _ = write!(
        h,
        "<dt>{label}</dt><dd id={id} data-value={value}>{shown}</dd>"
    );
}

fn counters(h: &mut String, v: &View) {
    let p = &v.now;
    let _ = write!(
        h,
        "<dl><dt>served from the store</dt><dd id=store-share data-value={:.6}>{:.1} %</dd>",
        p.store_share(),
        p.store_share() * 100.0
    );
    item(
        h,
        "requests",
        "requests",
        p.requests(),
        &p.requests().to_string(),
    );
    item(h, "hits", "hits", p.hits, &p.hits.to_string());
    item(
        h,
        "keys-pulled",
        "keys pulled",
        p.keys_pulled,
        &p.keys_pulled.to_string(),
    );
    item(
        h,
        "bytes-pulled",
        "bytes pulled",
        p.bytes_pulled,
        &bytes(p.bytes_pulled),
    );
    let in_flight = v.in_flight as u64;
    item(
        h,
        "fills-in-flight",
        "fills in flight",
        in_flight,
        &in_flight.to_string(),
    );
    item(
        h,
        "failed",
        "requests failed",
        p.failed,
        &p.failed.to_string(),
    );
    item(
        h,
        "fills-failed",
        "fills failed",
        p.fills_failed,
        &p.fills_failed.to_string(),
    );
    item(
        h,
        "refreshed",
        "refreshed",
        p.refreshed,
        &p.refreshed.to_string(),
    );
    h.push_str("</dl>");
}

/// The x of point `i` of `n`.
fn x(i: usize, n: usize) -> f64 {
    if n <= 1 {
        WIDTH
    } else {
        i as f64 * WIDTH / (n - 1) as f64
    }
}

/// A chart: a line through the points that have a value (in `0..=1`), and the buckets'
/// raw values as space-separated lists in `data-*` attributes of the line (`data`: name and
/// one value per point).
fn chart(
    h: &mut String,
    class: &str,
    points: &[Option<f64>],
    data: &[(&str, Vec<u64>)],
    top: &str,
    ends: (String, String),
) {
    let _ = write!(
        h,
        "<svg class={class} width={WIDTH} height={} viewBox=\"-30 -10 {} {}\" role=img>\
         <text x=-28 y=4 font-size=10>{top}</text><text x=-28 y={HEIGHT} font-size=10>0</text>\
         <text x=0 y={} font-size=10>{}</text>\
         <text x={WIDTH} y={} font-size=10 text-anchor=end>{}</text><polyline",
        HEIGHT + 30.0,
        WIDTH + 40.0,
        HEIGHT + 30.0,
        HEIGHT + 14.0,
        ends.0,
        HEIGHT + 14.0,
        ends.1,
    );
    for (name, values) in data {
        let _ = write!(h, " data-{name}=\"");
        for (i, v) in values.iter().enumerate() {
            let _ = write!(h, "{}{v}", if i == 0 { "" } else { " " });
        }
        h.push('"');
    }
    h.push_str(" points=\"");
    let n = points.len();
    for (i, v) in points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, (*p)?)))
    {
        let _ = write!(h, "{:.0},{:.0} ", x(i, n), HEIGHT * (1.0 - v));
    }
    h.push_str("\"/></svg>");
}

/// The time labels of a chart's ends.
fn ends(history: &[Bucket]) -> (String, String) {
    match (history.first(), history.last()) {
        (Some(a), Some(b)) => (clock(a.at), clock(b.at)),
        _ => (String::new(), String::new()),
    }
}

fn share_chart(h: &mut String, history: &[Bucket]) {
    if history.is_empty() {
        h.push_str("<p class=muted>No sample yet.</p>");
        return;
    }
    // An interval without requests has no share: no point.
    let points: Vec<_> = history
        .iter()
        .map(|b| (b.requests > 0).then(|| b.hits as f64 / b.requests as f64))
        .collect();
    let data = [
        ("hits", history.iter().map(|b| b.hits).collect()),
        ("requests", history.iter().map(|b| b.requests).collect()),
    ];
    chart(h, "share", &points, &data, "100 %", ends(history));
}

fn bytes_chart(h: &mut String, history: &[Bucket]) {
    if history.is_empty() {
        h.push_str("<p class=muted>No sample yet.</p>");
        return;
    }
    let top = history
        .iter()
        .map(|b| b.bytes_pulled)
        .max()
        .unwrap_or(0)
        .max(1);
    let points: Vec<_> = history
        .iter()
        .map(|b| Some(b.bytes_pulled as f64 / top as f64))
        .collect();
    let data = [
        ("bytes", history.iter().map(|b| b.bytes_pulled).collect()),
        ("keys", history.iter().map(|b| b.keys_pulled).collect()),
    ];
    chart(h, "bytes", &points, &data, &bytes(top), ends(history));
}

fn warmup(h: &mut String, w: Option<&WarmupProgress>) {
    h.push_str("<h2>Warm-up</h2><section id=warmup>");
    let Some(w) = w else {
        h.push_str("<p class=muted>No warm-up has run.</p></section>");
        return;
    };
    let total = w.total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let eta = match (w.total, w.eta()) {
        (Some(t), _) if w.done >= t => "done".to_owned(),
        (_, Some(eta)) => format!("ETA {}", duration(eta)),
        _ => "ETA unknown".to_owned(),
    };
    let _ = write!(
        h,
        "<progress value={} max={}></progress> \
         <span id=warmup-done data-value={}>{} / {total} keys</span>: \
         <span id=warmup-pulled data-value={}>{} pulled</span>, {} skipped, \
         <span id=warmup-failed data-value={}>{} failed</span>; {} at {}/s; \
         <span id=warmup-eta>{eta}</span></section>",
        w.done,
        w.total.unwrap_or(w.done).max(1),
        w.done,
        w.done,
        w.pulled,
        w.pulled,
        w.skipped,
        w.failed,
        w.failed,
        bytes(w.bytes),
        bytes(w.rate() as u64),
    );
}

fn failures(h: &mut String, failures: &[Failure], lost: u64) {
    h.push_str("<h2>Last failures</h2>");
    if failures.is_empty() {
        h.push_str("<p class=muted>None.</p>");
    } else {
        h.push_str("<table id=failures><tr><th>when (UTC)</th><th>key</th><th>reason</th></tr>");
        for f in failures {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td data-reason={}>{}</td></tr>",
                clock(f.at),
                escape(&f.key),
                crate::progress::failure_reason(&f.reason),
                escape(&f.reason)
            );
        }
        h.push_str("</table>");
    }
    if lost > 0 {
        let _ = write!(
            h,
            "<p class=muted>{lost} events were missed (too many at once).</p>"
        );
    }
}

fn missed(h: &mut String, missed: &[(String, u64)]) {
    h.push_str("<h2>Keys most often missed</h2>");
    if missed.is_empty() {
        h.push_str("<p class=muted>None.</p>");
        return;
    }
    h.push_str("<table id=missed><tr><th>key</th><th>fills started</th></tr>");
    for (key, n) in missed {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n data-value={n}>{n}</td></tr>",
            escape(key)
        );
    }
    h.push_str("</table>");
}

/// Text made safe inside an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `n` bytes in binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `d` as `1h 2m 3s`, to the second.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// The UTC time of day of `at`, `HH:MM:SS`.
fn clock(at: SystemTime) -> String {
    let s = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and reasons come from requests and origins: they are text, never markup.
    #[test]
    fn keys_and_reasons_are_escaped() {
        let v = View {
            now: Progress::default(),
            in_flight: 0,
            history: Vec::new(),
            failures: vec![Failure {
                at: SystemTime::UNIX_EPOCH,
                key: "<script>alert(1)</script>".to_owned(),
                reason: "origin answered \"500\" & <b>".to_owned(),
            }],
            missed: vec![("a'<img src=x>".to_owned(), 3)],
            warmup: None,
            lost_events: 0,
            refresh: Duration::from_secs(60),
        };
        let page = render(&v);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("data-reason=origin_status"));
    }

    /// A full page (every chart point, failure and key the defaults keep, long keys and
    /// reasons) stays small.
    #[test]
    fn a_full_page_stays_small() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let history = (0..MAX_POINTS as u64)
            .map(|i| Bucket {
                at: at + Duration::from_secs(60 * i),
                hits: 123_456 + i,
                requests: 234_567 + i,
                bytes_pulled: 1_234_567_890_123 + i,
                keys_pulled: 12_345_678 + i,
            })
            .collect();
        let key = "k".repeat(120);
        let v = View {
            now: Progress::default(),
            in_flight: 64,
            history,
            failures: vec![
                Failure {
                    at,
                    key: key.clone(),
                    reason: format!(
                        "origin body for key {key} has 1 bytes, Content-Length announced 2"
                    ),
                };
                10
            ],
            missed: vec![(key, 99_999); 10],
            warmup: Some(WarmupProgress::default()),
            lost_events: 0,
            refresh: Duration::from_secs(60),
        };
        let page = render(&v);
        assert!(page.len() < 16 * 1024, "{} bytes", page.len());
    }

    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(Duration::from_secs(3723)), "1h 2m 3s");
        assert_eq!(duration(Duration::from_secs(65)), "1m 5s");
    }
}
