//! Side by side with nginx: the mirror example against nginx `proxy_store` and
//! `proxy_cache` + `proxy_cache_lock`, and in M1 and M2 against tower-http's `ServeDir`
//! behind the layer (`examples/axum_serve_dir.rs`), on one origin, in one run (M1–M7 of
//! `BENCHMARKS.md`). Run it through `benches/side_by_side.sh` (installs nginx, wrk and curl
//! if missing, builds both examples, then runs this); `benches/README.md` says what each row
//! measures and how.
//!
//! ```text
//! benches/side_by_side.sh --quick          # about 2 minutes
//! benches/side_by_side.sh --full --write   # about 8 minutes; rewrites the tables in BENCHMARKS.md
//! ```
//!
//! Everything listens on 127.0.0.1 (ports picked free at start), lives under
//! `/tmp/bench-side-by-side-<pid>/` (removed at the end), and every process started is
//! stopped by its PID. The system under test (nginx's one worker, the mirror, or axum_serve_dir) runs on
//! CPU 0; this harness, the load generators (wrk, curl) and the origin on CPU 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

type Res<T> = Result<T, String>;

const USAGE: &str = "\
usage: side_by_side (--quick | --full) [--write] [--keep] [--only M1,M3,..] [--max-load L]
                    [--idle-wait SECS] [--mirror-arg ARG]...

  --quick          one or two short rounds of everything (about 2 minutes)
  --full           the rounds quoted in BENCHMARKS.md (about 8 minutes)
  --write          replace the generated section of BENCHMARKS.md with this run's tables
  --keep           keep /tmp/bench-side-by-side-<pid>/ (logs, configs) afterwards
  --only LIST      run only these rows (M3 and M4 run together), for profiling and fixes
  --max-load L     the 1-minute load average under which the machine counts as idle (0.8)
  --idle-wait S    how long to wait for that before running anyway, noting it (120; quick 30)
  --mirror-arg ARG pass ARG to the mirror too (repeatable), e.g. `--mirror-arg --spool-max-bytes
                   --mirror-arg 0` to measure a setting; refused with --write

Run it through benches/side_by_side.sh, which installs the tools and builds the mirror.";

const MIB: u64 = 1024 * 1024;
/// The rate of the origin's slow location, bytes per second (`limit_rate`).
const SLOW_RATE: u64 = 20_000_000;
/// The rate of the location that async-mode fills crawl from (so they outlast a wrk run).
const CRAWL_RATE: u64 = 16_000;
/// Keys the async-mode wrk run cycles through, per round.
const M6_KEYS: usize = 16;
/// Concurrent cold GETs in M5.
const M5_CLIENTS: usize = 200;

#[derive(Clone)]
struct Opts {
    quick: bool,
    write: bool,
    keep: bool,
    max_load: f64,
    idle_wait: Duration,
    only: Option<Vec<String>>,
    /// Extra arguments for every mirror process.
    mirror_args: Vec<String>,
}

impl Opts {
    fn runs(&self, row: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|m| m == row))
    }
    fn m1_rounds(&self) -> usize {
        if self.quick { 2 } else { 5 }
    }
    fn m1_secs(&self) -> u64 {
        if self.quick { 2 } else { 5 }
    }
    /// Back-to-back layer / bare pairs on the 4 KiB object, after M1's rounds.
    fn m1_pairs(&self) -> usize {
        if self.quick { 2 } else { 12 }
    }
    fn m1_pair_secs(&self) -> u64 {
        if self.quick { 2 } else { 3 }
    }
    fn m2_rounds(&self) -> usize {
        if self.quick { 2 } else { 3 }
    }
    fn m2_samples(&self) -> usize {
        if self.quick { 10 } else { 20 }
    }
    fn m3_rounds(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }
    fn m5_rounds(&self) -> usize {
        if self.quick { 1 } else { 3 }
    }
    fn m6_rounds(&self) -> usize {
        if self.quick { 2 } else { 5 }
    }
    fn m6_secs(&self) -> u64 {
        if self.quick { 2 } else { 5 }
    }
    fn m7_rounds(&self) -> usize {
        if self.quick { 5 } else { 15 }
    }
    fn m7_cache_rounds(&self) -> usize {
        if self.quick { 1 } else { 2 }
    }
}

fn parse_opts() -> Res<Option<Opts>> {
    let mut opts = Opts {
        quick: false,
        write: false,
        keep: false,
        max_load: 0.8,
        idle_wait: Duration::ZERO,
        only: None,
        mirror_args: Vec::new(),
    };
    let mut mode = None;
    let mut idle_wait = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => mode = Some(true),
            "--full" => mode = Some(false),
            "--write" => opts.write = true,
            "--keep" => opts.keep = true,
            "--only" => {
                let v = it.next().ok_or("--only needs a list")?;
                opts.only = Some(v.split(',').map(|m| m.trim().to_uppercase()).collect());
            }
            "--max-load" => {
                let v = it.next().ok_or("--max-load needs a value")?;
                opts.max_load = v.parse().map_err(|e| format!("--max-load: {e}"))?;
            }
            "--idle-wait" => {
                let v = it.next().ok_or("--idle-wait needs a value")?;
                idle_wait = Some(v.parse::<u64>().map_err(|e| format!("--idle-wait: {e}"))?);
            }
            // What `cargo bench` adds.
            "--mirror-arg" => {
                let v = it.next().ok_or("--mirror-arg needs a value")?;
                opts.mirror_args.push(v);
            }
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let Some(quick) = mode else {
        return Ok(None);
    };
    opts.quick = quick;
    if opts.write && !opts.mirror_args.is_empty() {
        return Err("--write measures the mirror as shipped: drop --mirror-arg".into());
    }
    if opts.write && opts.only.is_some() {
        return Err("--write needs every row: drop --only".into());
    }
    opts.idle_wait = Duration::from_secs(idle_wait.unwrap_or(if quick { 30 } else { 120 }));
    Ok(Some(opts))
}

fn main() {
    let opts = match parse_opts() {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            // `cargo bench` without arguments lands here: this harness starts servers and
            // takes minutes, so it only runs when asked.
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("side_by_side: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut bench = match Bench::setup(opts) {
        Ok(bench) => bench,
        Err(e) => {
            eprintln!("side_by_side: setup failed: {e}");
            std::process::exit(1);
        }
    };
    let result = bench.run_all();
    bench.teardown();
    if let Err(e) = result {
        eprintln!("side_by_side: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// A process this harness started; stopped (by its PID only) when dropped.
struct Proc {
    name: String,
    child: Child,
    /// The signal that stops it cleanly: INT for the mirror, QUIT for nginx.
    stop_signal: &'static str,
    stopped: bool,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path, stop_signal: &'static str) -> Res<Self> {
        let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stop_signal,
            stopped: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal(self.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} (pid {}) did not stop; SIGTERM", self.name, self.pid());
        self.signal("TERM");
        std::thread::sleep(Duration::from_secs(2));
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `taskset -c CPU program args...` when pinning is possible, else the program itself.
fn pinned(cpu: Option<usize>, program: &str) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn free_port() -> Res<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_listening(port: u16, proc: &mut Proc) -> Res<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !proc.alive() {
            return Err(format!("{} exited at start (see its log)", proc.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} is not listening on {port}", proc.name))
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 (status endpoint, sanity checks): status and body.
fn http_get(port: u16, path: &str) -> Res<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response head")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

fn run_output(cmd: &mut Command) -> Res<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------
// /proc

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system, all threads) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime and stime are the
    // 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Nanoseconds the process's threads have spent runnable but waiting for a CPU
/// (`/proc/PID/task/*/schedstat`, second field): what other work on the system under test's
/// CPU cost it. Threads that ended meanwhile drop out of the sum.
fn run_wait_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Reset the peak RSS (VmHWM) to the current RSS.
fn reset_peak(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------------------
// Statistics

fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(xs: &[f64]) -> (f64, f64) {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `median (min–max)` with `digits` decimals.
fn mmm(xs: &[f64], digits: usize) -> String {
    let (lo, hi) = min_max(xs);
    format!("{:.d$} ({:.d$}–{:.d$})", median(xs), lo, hi, d = digits)
}

fn list(xs: &[f64], digits: usize) -> String {
    xs.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256_file(path: &Path) -> Res<String> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

// ---------------------------------------------------------------------------------------
// Load generators

struct Wrk {
    requests: u64,
    rps: f64,
    mib_s: f64,
    /// Responses other than 2xx and 3xx.
    errors: u64,
    /// wrk's socket errors (connect, read, write, timeout), if any, as it printed them.
    socket_errors: Option<String>,
}

fn wrk(cpu: Option<usize>, url: &str, secs: u64, conns: usize, script: Option<&Path>) -> Res<Wrk> {
    let mut cmd = pinned(cpu, "wrk");
    cmd.args(["-t1", "-c", &conns.to_string(), "-d", &format!("{secs}s")]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url);
    let out = run_output(&mut cmd)?;
    let field = |name: &str| -> Option<&str> {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("wrk output without Requests/sec:\n{out}"))?;
    let transfer = field("Transfer/sec").unwrap_or("0B");
    let mib_s = parse_size(transfer) / MIB as f64;
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let errors = field("Non-2xx or 3xx responses")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let socket_errors = out
        .lines()
        .find(|l| l.contains("Socket errors"))
        .map(|l| l.trim().to_owned());
    Ok(Wrk {
        requests,
        rps,
        mib_s,
        errors,
        socket_errors,
    })
}

fn parse_size(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().unwrap_or(0.0);
    n * match unit {
        "KB" => 1024.0,
        "MB" => MIB as f64,
        "GB" => (1024 * MIB) as f64,
        _ => 1.0,
    }
}

/// What one curl transfer reported.
struct Curl {
    code: u16,
    ttfb: f64,
    total: f64,
    size: u64,
}

fn curl(url: &str, range: Option<&str>, out: Option<&Path>) -> Res<Curl> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "120",
        "-w",
        "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
        "-o",
    ]);
    match out {
        Some(path) => cmd.arg(path),
        None => cmd.arg("/dev/null"),
    };
    if let Some(range) = range {
        cmd.args(["-r", range]);
    }
    cmd.arg(url);
    let text = run_output(&mut cmd)?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let bad = || format!("curl {url}: unexpected output {text:?}");
    if f.len() != 4 {
        return Err(bad());
    }
    Ok(Curl {
        code: f[0].parse().map_err(|_| bad())?,
        ttfb: f[1].parse().map_err(|_| bad())?,
        total: f[2].parse().map_err(|_| bad())?,
        size: f[3].parse().map_err(|_| bad())?,
    })
}

// ---------------------------------------------------------------------------------------
// The setup: data, origin, nginx, mirror

/// A system under test.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Sut {
    Origin,
    Mirror,
    MirrorBare,
    ServeDir,
    NginxStore,
    NginxCache,
    NginxRedirect,
    NginxRedirectPlain,
}

impl Sut {
    fn label(self) -> &'static str {
        match self {
            Sut::Origin => "origin (direct)",
            Sut::Mirror => "mirror (layer)",
            Sut::MirrorBare => "mirror --no-layer (bare ServeStore)",
            Sut::ServeDir => "axum ServeDir (layer)",
            Sut::NginxStore => "nginx proxy_store",
            Sut::NginxCache => "nginx proxy_cache + lock",
            Sut::NginxRedirect => "nginx try_files + return 302",
            Sut::NginxRedirectPlain => "nginx return 302 (no store check)",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Sut::Origin => "origin",
            Sut::Mirror => "mirror",
            Sut::MirrorBare => "bare",
            Sut::ServeDir => "sdir",
            Sut::NginxStore => "nstore",
            Sut::NginxCache => "ncache",
            Sut::NginxRedirect => "n302",
            Sut::NginxRedirectPlain => "n302p",
        }
    }
}

struct Ports {
    origin: u16,
    nginx_store: u16,
    nginx_cache: u16,
    nginx_302: u16,
    nginx_302_plain: u16,
    mirror: u16,
    mirror_bare: u16,
    serve_dir: u16,
}

struct Bench {
    opts: Opts,
    dir: PathBuf,
    /// CPU of the system under test and of everything else, when pinning is possible.
    sut_cpu: Option<usize>,
    load_cpu: Option<usize>,
    ports: Ports,
    mirror_bin: PathBuf,
    serve_dir_bin: PathBuf,
    origin: Option<Proc>,
    nginx: Option<Proc>,
    mirror: Option<Proc>,
    mirror_bare: Option<Proc>,
    /// `examples/axum_serve_dir`: tower-http's `ServeDir` behind the layer.
    serve_dir: Option<Proc>,
    /// sha256 of each origin object, by file name.
    hashes: BTreeMap<String, String>,
    report: String,
    /// CPUs visible at the start, before this harness pinned itself.
    cpus: usize,
    summary: Vec<[String; 4]>,
    notes: Vec<String>,
    started: Instant,
}

/// Origin objects: name and size. The 4 GiB one is made only for M4, if the disk has room.
const OBJECTS: &[(&str, u64)] = &[
    ("4k.bin", 4 * 1024),
    ("1m.bin", MIB),
    ("20m.bin", 20 * MIB),
    ("100m.bin", 100 * MIB),
    ("1g.bin", 1024 * MIB),
];

fn write_random(path: &Path, size: u64, seed: u64) -> Res<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut f = std::io::BufWriter::with_capacity(
        4 << 20,
        fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let mut h = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        for word in block[..n].chunks_mut(8) {
            let r = rng.u64(..).to_le_bytes();
            word.copy_from_slice(&r[..word.len()]);
        }
        h.update(&block[..n]);
        f.write_all(&block[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    f.flush().map_err(|e| e.to_string())?;
    Ok(hex(&h.finalize()))
}

impl Bench {
    fn setup(opts: Opts) -> Res<Self> {
        for tool in ["nginx", "wrk", "curl", "taskset", "df", "kill"] {
            if !have(tool) {
                return Err(format!(
                    "{tool} is missing: run benches/side_by_side.sh (it installs what is missing)"
                ));
            }
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/release/deps/side_by_side-HASH → target/release/examples/mirror
        let mirror_bin = exe
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("examples/mirror"))
            .ok_or("where is the target directory?")?;
        let serve_dir_bin = mirror_bin.with_file_name("axum_serve_dir");
        for bin in [&mirror_bin, &serve_dir_bin] {
            if !bin.exists() {
                return Err(format!(
                    "{} is missing: build it with `cargo build --release --example mirror --example axum_serve_dir` (or run benches/side_by_side.sh)",
                    bin.display()
                ));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let (sut_cpu, load_cpu) = if cpus >= 2 {
            (Some(0), Some(1))
        } else {
            (None, None)
        };
        let mut notes = Vec::new();
        if let Some(cpu) = load_cpu {
            // Pin this harness (and so curl, which it runs) to the load generator's CPU
            // before any thread is started.
            run_output(
                Command::new("taskset")
                    .args(["-a", "-p", "-c", &cpu.to_string()])
                    .arg(std::process::id().to_string())
                    .stdout(Stdio::null()),
            )?;
        } else {
            notes.push("Only one CPU: nothing was pinned.".to_owned());
        }
        let dir = PathBuf::from(format!("/tmp/bench-side-by-side-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        }
        for sub in [
            "origin/obj",
            "logs",
            "nginx/store",
            "nginx/store-tmp",
            "nginx/cache",
            "nginx/empty",
            "nginx/tmp",
            "origin-nginx/tmp",
            "mirror-store",
            "mirror-bare-store",
            "servedir-store",
            "wrk",
        ] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let ports = Ports {
            origin: free_port()?,
            nginx_store: free_port()?,
            nginx_cache: free_port()?,
            nginx_302: free_port()?,
            nginx_302_plain: free_port()?,
            mirror: free_port()?,
            mirror_bare: free_port()?,
            serve_dir: free_port()?,
        };
        let mut bench = Bench {
            opts,
            dir,
            sut_cpu,
            load_cpu,
            ports,
            mirror_bin,
            serve_dir_bin,
            origin: None,
            nginx: None,
            mirror: None,
            mirror_bare: None,
            serve_dir: None,
            hashes: BTreeMap::new(),
            report: String::new(),
            cpus,
            summary: Vec::new(),
            notes,
            started: Instant::now(),
        };
        bench.wait_idle();
        println!("writing origin objects under {}", bench.dir.display());
        for (i, (name, size)) in OBJECTS.iter().enumerate() {
            let hash = write_random(
                &bench.dir.join("origin/obj").join(name),
                *size,
                i as u64 + 1,
            )?;
            bench.hashes.insert((*name).to_owned(), hash);
        }
        bench.start_origin()?;
        bench.start_nginx()?;
        Ok(bench)
    }

    fn wait_idle(&mut self) {
        let deadline = Instant::now() + self.opts.idle_wait;
        let mut load = loadavg();
        while load > self.opts.max_load && Instant::now() < deadline {
            println!(
                "load average {load:.2} > {:.2}: waiting for the machine to calm down",
                self.opts.max_load
            );
            std::thread::sleep(Duration::from_secs(10));
            load = loadavg();
        }
        if load > self.opts.max_load {
            self.notes.push(format!(
                "The machine was not idle at the start (1-minute load average {load:.2} after waiting {} s): other work shared the CPUs, so absolute numbers are lower than on an idle machine; the side-by-side ratios are what to read.",
                self.opts.idle_wait.as_secs()
            ));
        } else {
            self.notes
                .push(format!("1-minute load average at the start: {load:.2}."));
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(name)
    }

    fn start_origin(&mut self) -> Res<()> {
        let d = self.dir.display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root root;
pid {d}/origin-nginx/nginx.pid;
error_log {d}/logs/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {d}/origin-nginx/tmp/body;
    proxy_temp_path {d}/origin-nginx/tmp/proxy;
    fastcgi_temp_path {d}/origin-nginx/tmp/fastcgi;
    uwsgi_temp_path {d}/origin-nginx/tmp/uwsgi;
    scgi_temp_path {d}/origin-nginx/tmp/scgi;
    log_format bench '$request_uri $status $body_bytes_sent $request_time "$http_range"';
    access_log {d}/logs/origin-access.log bench;
    server {{
        listen 127.0.0.1:{port};
        root {d}/origin;
        # /obj/NAME: the object itself.
        location /obj/ {{ }}
        # /fresh/NAME/ANY: object NAME under a new key each time (a cold key per request).
        location /fresh/ {{ rewrite ^/fresh/([^/]+)/ /obj/$1 break; }}
        # /slow/NAME/ANY: the same at {SLOW_RATE} bytes/s per connection.
        location /slow/ {{ limit_rate {SLOW_RATE}; rewrite ^/slow/([^/]+)/ /obj/$1 break; }}
        # /crawl/NAME/ANY: at {CRAWL_RATE} bytes/s, so async-mode fills outlast a wrk run.
        location /crawl/ {{ limit_rate {CRAWL_RATE}; rewrite ^/crawl/([^/]+)/ /obj/$1 break; }}
    }}
}}
"#,
            port = self.ports.origin
        );
        let path = self.dir.join("origin-nginx/nginx.conf");
        fs::write(&path, conf).map_err(|e| e.to_string())?;
        let mut cmd = pinned(self.load_cpu, "nginx");
        cmd.arg("-p")
            .arg(self.dir.join("origin-nginx"))
            .arg("-c")
            .arg(&path);
        let mut p = Proc::spawn("origin nginx", cmd, &self.log("origin-nginx.out"), "QUIT")?;
        wait_listening(self.ports.origin, &mut p)?;
        self.origin = Some(p);
        Ok(())
    }

    fn start_nginx(&mut self) -> Res<()> {
        let d = self.dir.display();
        let p = &self.ports;
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root root;
pid {d}/nginx/nginx.pid;
error_log {d}/logs/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    access_log off;
    client_body_temp_path {d}/nginx/tmp/body;
    proxy_temp_path {d}/nginx/tmp/proxy;
    fastcgi_temp_path {d}/nginx/tmp/fastcgi;
    uwsgi_temp_path {d}/nginx/tmp/uwsgi;
    scgi_temp_path {d}/nginx/tmp/scgi;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
    proxy_cache_path {d}/nginx/cache levels=1:2 keys_zone=pull:16m max_size=20g inactive=1h use_temp_path=off;

    # proxy_store: what is on disk, else fetch, stream and store.
    server {{
        listen 127.0.0.1:{store};
        root {d}/nginx/store;
        location / {{ try_files $uri @fetch; }}
        location @fetch {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_store on;
            proxy_store_access user:rw group:rw all:r;
            proxy_temp_path {d}/nginx/store-tmp;
        }}
    }}
    # proxy_cache with the lock: one fetch per key, waiters served from the cache.
    server {{
        listen 127.0.0.1:{cache};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pull;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
    # The async-mode equivalent: what is on disk, else a 302 to the origin.
    server {{
        listen 127.0.0.1:{r302};
        root {d}/nginx/empty;
        location / {{ try_files $uri @origin; }}
        location @origin {{ return 302 http://127.0.0.1:{origin}$uri; }}
    }}
    # A bare 302, no store check at all.
    server {{
        listen 127.0.0.1:{r302p};
        location / {{ return 302 http://127.0.0.1:{origin}$uri; }}
    }}
}}
"#,
            origin = p.origin,
            store = p.nginx_store,
            cache = p.nginx_cache,
            r302 = p.nginx_302,
            r302p = p.nginx_302_plain,
        );
        let path = self.dir.join("nginx/nginx.conf");
        fs::write(&path, conf).map_err(|e| e.to_string())?;
        let mut cmd = pinned(self.sut_cpu, "nginx");
        cmd.arg("-p")
            .arg(self.dir.join("nginx"))
            .arg("-c")
            .arg(&path);
        let mut proc = Proc::spawn("nginx", cmd, &self.log("nginx.out"), "QUIT")?;
        for port in [
            self.ports.nginx_store,
            self.ports.nginx_cache,
            self.ports.nginx_302,
            self.ports.nginx_302_plain,
        ] {
            wait_listening(port, &mut proc)?;
        }
        self.nginx = Some(proc);
        Ok(())
    }

    /// (Re)start the mirror: `bare` for `--no-layer`, `mode` for `--mode`. Each start gets
    /// an empty store.
    fn start_mirror(&mut self, bare: bool, mode: Option<&str>, grace: u64) -> Res<()> {
        let (port, store) = if bare {
            (self.ports.mirror_bare, self.dir.join("mirror-bare-store"))
        } else {
            (self.ports.mirror, self.dir.join("mirror-store"))
        };
        let slot = if bare {
            &mut self.mirror_bare
        } else {
            &mut self.mirror
        };
        if let Some(mut old) = slot.take() {
            old.stop();
        }
        let _ = fs::remove_dir_all(&store);
        fs::create_dir_all(&store).map_err(|e| e.to_string())?;
        let mut cmd = pinned(self.sut_cpu, self.mirror_bin.to_str().ok_or("path")?);
        cmd.arg("--origin")
            .arg(format!("http://127.0.0.1:{}/", self.ports.origin))
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--grace")
            .arg(grace.to_string())
            .env("RUST_LOG", "warn");
        if bare {
            cmd.arg("--no-layer");
        }
        if let Some(mode) = mode {
            cmd.arg("--mode").arg(mode);
        }
        cmd.args(&self.opts.mirror_args);
        let name = if bare { "mirror --no-layer" } else { "mirror" };
        let log = self.log(&format!(
            "{}-{}.log",
            if bare { "mirror-bare" } else { "mirror" },
            mode.unwrap_or("sync")
        ));
        let mut proc = Proc::spawn(name, cmd, &log, "INT")?;
        wait_listening(port, &mut proc)?;
        if bare {
            self.mirror_bare = Some(proc);
        } else {
            self.mirror = Some(proc);
        }
        Ok(())
    }

    /// Start `examples/axum_serve_dir` on an empty directory, pinned like the mirror (so its
    /// default `--threads` is 1: a single-threaded runtime, as the mirror's).
    fn start_serve_dir(&mut self) -> Res<()> {
        if let Some(mut old) = self.serve_dir.take() {
            old.stop();
        }
        let dir = self.dir.join("servedir-store");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut cmd = pinned(self.sut_cpu, self.serve_dir_bin.to_str().ok_or("path")?);
        cmd.arg("--dir")
            .arg(&dir)
            .arg("--origin")
            .arg(format!("http://127.0.0.1:{}/", self.ports.origin))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.ports.serve_dir))
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("axum_serve_dir", cmd, &self.log("servedir.log"), "INT")?;
        wait_listening(self.ports.serve_dir, &mut proc)?;
        self.serve_dir = Some(proc);
        Ok(())
    }

    fn port(&self, sut: Sut) -> u16 {
        match sut {
            Sut::Origin => self.ports.origin,
            Sut::Mirror => self.ports.mirror,
            Sut::MirrorBare => self.ports.mirror_bare,
            Sut::ServeDir => self.ports.serve_dir,
            Sut::NginxStore => self.ports.nginx_store,
            Sut::NginxCache => self.ports.nginx_cache,
            Sut::NginxRedirect => self.ports.nginx_302,
            Sut::NginxRedirectPlain => self.ports.nginx_302_plain,
        }
    }

    fn url(&self, sut: Sut, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port(sut))
    }

    /// The process whose memory counts: the mirror, or nginx's worker.
    fn sut_pid(&self, sut: Sut) -> Option<u32> {
        match sut {
            Sut::Mirror => self.mirror.as_ref().map(Proc::pid),
            Sut::MirrorBare => self.mirror_bare.as_ref().map(Proc::pid),
            Sut::ServeDir => self.serve_dir.as_ref().map(Proc::pid),
            Sut::Origin => None,
            _ => {
                let master = self.nginx.as_ref()?.pid();
                children(master).into_iter().next()
            }
        }
    }

    /// Where a system stored the object of URL path `path`.
    fn stored_path(&self, sut: Sut, path: &str) -> Option<PathBuf> {
        let rel = path.trim_start_matches('/');
        match sut {
            Sut::Mirror => Some(self.dir.join("mirror-store").join(rel)),
            Sut::NginxStore => Some(self.dir.join("nginx/store").join(rel)),
            _ => None,
        }
    }

    /// The origin's access log lines for URL paths starting with `prefix`: (path, status,
    /// bytes sent).
    fn origin_log(&self, prefix: &str) -> Vec<(String, u16, u64)> {
        let text = fs::read_to_string(self.log("origin-access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let uri = f.next()?;
                let status = f.next()?.parse().ok()?;
                let bytes = f.next()?.parse().ok()?;
                uri.starts_with(prefix)
                    .then(|| (uri.to_owned(), status, bytes))
            })
            .collect()
    }

    fn status_json(&self) -> Res<serde_json::Value> {
        let (code, body) = http_get(self.ports.mirror, "/_origin_pull/status")?;
        if code != 200 {
            return Err(format!("status endpoint answered {code}"));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    fn teardown(&mut self) {
        for p in [
            self.mirror.take(),
            self.mirror_bare.take(),
            self.serve_dir.take(),
            self.nginx.take(),
            self.origin.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut p = p;
            p.stop();
        }
        if self.opts.keep {
            println!("kept {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn section(&mut self, text: &str) {
        self.report.push_str(text);
        print!("{text}");
    }

    fn target(&mut self, row: &str, target: &str, result: String, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "see below",
        };
        self.summary.push([
            row.to_owned(),
            target.to_owned(),
            result,
            verdict.to_owned(),
        ]);
    }

    // -----------------------------------------------------------------------------------
    // The measurements

    fn run_all(&mut self) -> Res<()> {
        self.start_mirror(false, None, 10)?;
        self.start_mirror(true, None, 10)?;
        self.start_serve_dir()?;
        self.sanity()?;
        if self.opts.runs("M1") {
            self.m1()?;
        }
        if self.opts.runs("M2") {
            self.m2()?;
        }
        if self.opts.runs("M3") || self.opts.runs("M4") {
            self.m3_m4()?;
        }
        if self.opts.runs("M5") {
            self.m5()?;
        }
        if self.opts.runs("M6") {
            self.m6()?;
        }
        if self.opts.runs("M7") {
            self.m7()?;
        }
        self.finish()
    }

    /// Every system answers a cold GET with the right bytes before anything is timed.
    fn sanity(&mut self) -> Res<()> {
        let want = fs::read(self.dir.join("origin/obj/4k.bin")).map_err(|e| e.to_string())?;
        for sut in [
            Sut::Origin,
            Sut::Mirror,
            Sut::ServeDir,
            Sut::NginxStore,
            Sut::NginxCache,
        ] {
            let (code, body) = http_get(self.port(sut), "/fresh/4k.bin/sanity")?;
            if code != 200 || body != want {
                return Err(format!(
                    "{}: a cold GET answered {code} with {} bytes (want 200, {} bytes)",
                    sut.label(),
                    body.len(),
                    want.len()
                ));
            }
        }
        Ok(())
    }

    /// One wrk run against `sut` (`row` and `label` name it in errors and notes): what wrk
    /// measured, and the system's CPU µs per request over the run. Responses other than
    /// 2xx/3xx fail the row; wrk's socket errors become a note.
    #[allow(clippy::too_many_arguments)]
    fn wrk_cpu(
        &mut self,
        row: &str,
        label: &str,
        sut: Sut,
        path: &str,
        secs: u64,
        conns: usize,
        script: Option<&Path>,
    ) -> Res<(Wrk, f64)> {
        let url = self.url(sut, path);
        let pid = self
            .sut_pid(sut)
            .ok_or("no PID for the system under test")?;
        let cpu0 = cpu_seconds(pid);
        let w = wrk(self.load_cpu, &url, secs, conns, script)?;
        let cpu = cpu_seconds(pid)
            .zip(cpu0)
            .map_or(f64::NAN, |(b, a)| (b - a) * 1e6 / w.requests.max(1) as f64);
        if w.errors > 0 {
            return Err(format!(
                "{row} {}: {} answers other than 2xx/3xx",
                sut.label(),
                w.errors
            ));
        }
        if let Some(e) = &w.socket_errors {
            println!("{row} {label} {}: wrk {e}", sut.label());
            self.notes
                .push(format!("{row} {label}, {}: wrk reported {e}.", sut.label()));
        }
        Ok((w, cpu))
    }

    /// One M1 run: wrk on `/hit/{name}` of `sut`; (req/s, MiB/s, CPU µs per request).
    fn m1_run(
        &mut self,
        sut: Sut,
        name: &str,
        secs: u64,
        conns: usize,
        label: &str,
    ) -> Res<(f64, f64, f64)> {
        let label = format!("{label}, {name}");
        let (w, cpu) = self.wrk_cpu(
            "M1",
            &label,
            sut,
            &format!("/hit/{name}"),
            secs,
            conns,
            None,
        )?;
        println!(
            "M1 {label:>16} {:<38} {:>10.0} req/s {:>8.1} MiB/s {cpu:>7.1} µs CPU/req",
            sut.label(),
            w.rps,
            w.mib_s
        );
        Ok((w.rps, w.mib_s, cpu))
    }

    /// M1: hit throughput through the layer, bare, and nginx proxy_store hits.
    fn m1(&mut self) -> Res<()> {
        let suts = [Sut::Mirror, Sut::MirrorBare, Sut::ServeDir, Sut::NginxStore];
        let conns = 8;
        // Put the objects where each system serves hits from.
        for name in ["4k.bin", "1m.bin"] {
            let src = self.dir.join("origin/obj").join(name);
            for store in [
                "mirror-store",
                "mirror-bare-store",
                "servedir-store",
                "nginx/store",
            ] {
                let dst = self.dir.join(store).join("hit");
                fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
                fs::copy(&src, dst.join(name)).map_err(|e| e.to_string())?;
            }
        }
        let rounds = self.opts.m1_rounds();
        let secs = self.opts.m1_secs();
        let mut rps: BTreeMap<(&str, Sut), Vec<f64>> = BTreeMap::new();
        let mut mib: BTreeMap<(&str, Sut), Vec<f64>> = BTreeMap::new();
        let mut cpus: BTreeMap<(&str, Sut), Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            for name in ["4k.bin", "1m.bin"] {
                // Rotate the order each round so no system always goes first.
                for i in 0..suts.len() {
                    let sut = suts[(i + round) % suts.len()];
                    let (r, m, cpu) =
                        self.m1_run(sut, name, secs, conns, &format!("round {round}"))?;
                    rps.entry((name, sut)).or_default().push(r);
                    cpus.entry((name, sut)).or_default().push(cpu);
                    mib.entry((name, sut)).or_default().push(m);
                }
            }
        }
        // Layer and bare back to back on the 4 KiB object, the order swapped every pair: a
        // round above spreads its 8 runs over a minute and more, and load from other work on
        // the machine that changes within it moves the layer / bare ratio by several per
        // cent; two runs seconds apart see the same load.
        let pairs = self.opts.m1_pairs();
        let pair_secs = self.opts.m1_pair_secs();
        let (mut pair_e, mut pair_t) = (Vec::new(), Vec::new());
        for pair in 0..pairs {
            let order = if pair % 2 == 0 {
                [Sut::Mirror, Sut::MirrorBare]
            } else {
                [Sut::MirrorBare, Sut::Mirror]
            };
            let mut got = BTreeMap::new();
            for sut in order {
                got.insert(
                    sut,
                    self.m1_run(sut, "4k.bin", pair_secs, conns, &format!("pair {pair}"))?,
                );
            }
            let (layer, bare) = (got[&Sut::Mirror], got[&Sut::MirrorBare]);
            pair_t.push(layer.0 / bare.0);
            pair_e.push(bare.2 / layer.2);
        }
        // The mirror's own view: every one of those requests was a hit.
        let status = self.status_json()?;
        let mut s = format!(
            "\n### M1 — hit throughput\n\nwrk, 1 thread, {conns} connections, {secs} s per run, {rounds} interleaved rounds (order rotated each round); requests per second, median (min–max). The same objects are on disk for each system before the runs. CPU per request = the server's user + system CPU time during the run (`/proc/PID/stat`, all threads; nginx's worker) over the requests wrk completed: unlike throughput, it hardly moves when other work shares the CPU.\n\n| object | system | req/s | MiB/s | CPU µs per request |\n|---|---|---|---|---|\n"
        );
        for name in ["4k.bin", "1m.bin"] {
            for sut in suts {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} |",
                    sut.label(),
                    mmm(&rps[&(name, sut)], 0),
                    mmm(&mib[&(name, sut)], 1),
                    mmm(&cpus[&(name, sut)], 1)
                );
            }
        }
        s.push_str("\nRatios per round (layer over bare, layer over nginx), then their median. Throughput: req/s ÷ req/s. Efficiency: the other's CPU per request ÷ the layer's (> 1: the layer uses less).\n\n| object | throughput layer / bare | median | efficiency layer / bare | median | throughput layer / nginx | median | efficiency layer / nginx | median |\n|---|---|---|---|---|---|---|---|---|\n");
        let mut ratio_4k = f64::NAN;
        let mut ratios_text = Vec::new();
        for name in ["4k.bin", "1m.bin"] {
            let per_round = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| -> Vec<f64> {
                a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
            };
            let thr = |sut| &rps[&(name, sut)];
            let cpu = |sut| &cpus[&(name, sut)];
            let t_bare = per_round(thr(Sut::Mirror), thr(Sut::MirrorBare), |a, b| a / b);
            let e_bare = per_round(cpu(Sut::Mirror), cpu(Sut::MirrorBare), |a, b| b / a);
            let t_nginx = per_round(thr(Sut::Mirror), thr(Sut::NginxStore), |a, b| a / b);
            let e_nginx = per_round(cpu(Sut::Mirror), cpu(Sut::NginxStore), |a, b| b / a);
            let _ = writeln!(
                s,
                "| {name} | {} | {:.3} | {} | **{:.3}** | {} | {:.2} | {} | {:.2} |",
                list(&t_bare, 3),
                median(&t_bare),
                list(&e_bare, 3),
                median(&e_bare),
                list(&t_nginx, 2),
                median(&t_nginx),
                list(&e_nginx, 2),
                median(&e_nginx)
            );
            if name == "4k.bin" {
                // The verdict takes every layer / bare ratio measured: the rounds' and the
                // back-to-back pairs'.
                let all_e: Vec<f64> = e_bare.iter().chain(&pair_e).copied().collect();
                let all_t: Vec<f64> = t_bare.iter().chain(&pair_t).copied().collect();
                ratio_4k = median(&all_e);
                ratios_text.push(format!(
                    "{name}: efficiency {:.3}×, throughput {:.3}× (all {} ratios; rounds {:.3}×, back-to-back pairs {:.3}×)",
                    median(&all_e),
                    median(&all_t),
                    all_e.len(),
                    median(&e_bare),
                    median(&pair_e)
                ));
            } else {
                // Beside the verdict, not in it: the target is the 4 KiB hit's; at 1 MiB a
                // request costs some 30 times as much CPU, the layer's share is lost in it, and
                // the ratio is the machine's noise.
                ratios_text.push(format!(
                    "{name} (not in the verdict): efficiency {:.3}×, throughput {:.3}×",
                    median(&e_bare),
                    median(&t_bare)
                ));
            }
        }
        let _ = writeln!(
            s,
            "\nLayer and bare back to back, 4k.bin, {pairs} pairs of {pair_secs} s runs (the order swapped each pair), after the rounds: efficiency layer / bare per pair {} (median {:.3}), throughput {} (median {:.3}). The verdict's 4 KiB ratio is the median of all {} efficiency ratios, the rounds' and the pairs': **{ratio_4k:.3}**.",
            list(&pair_e, 3),
            median(&pair_e),
            list(&pair_t, 3),
            median(&pair_t),
            rounds + pairs,
        );
        s.push_str("\nThe Rust peer, per round: the mirror over axum `ServeDir` (both behind the layer, both on a single-threaded runtime pinned to CPU 0), and `ServeDir` over nginx proxy_store. Throughput and efficiency as above.\n\n| object | throughput mirror / ServeDir | median | efficiency mirror / ServeDir | median | throughput ServeDir / nginx | median | efficiency ServeDir / nginx | median |\n|---|---|---|---|---|---|---|---|---|\n");
        for name in ["4k.bin", "1m.bin"] {
            let per_round = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| -> Vec<f64> {
                a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
            };
            let thr = |sut| &rps[&(name, sut)];
            let cpu = |sut| &cpus[&(name, sut)];
            let t_sd = per_round(thr(Sut::Mirror), thr(Sut::ServeDir), |a, b| a / b);
            let e_sd = per_round(cpu(Sut::Mirror), cpu(Sut::ServeDir), |a, b| b / a);
            let t_sn = per_round(thr(Sut::ServeDir), thr(Sut::NginxStore), |a, b| a / b);
            let e_sn = per_round(cpu(Sut::ServeDir), cpu(Sut::NginxStore), |a, b| b / a);
            let _ = writeln!(
                s,
                "| {name} | {} | {:.2} | {} | **{:.2}** | {} | {:.2} | {} | {:.2} |",
                list(&t_sd, 2),
                median(&t_sd),
                list(&e_sd, 2),
                median(&e_sd),
                list(&t_sn, 2),
                median(&t_sn),
                list(&e_sn, 2),
                median(&e_sn)
            );
        }
        let hits = status["requests"]["from_store"].as_u64().unwrap_or(0);
        let pulled = status["requests"]["pulled"].as_u64().unwrap_or(0);
        let _ = writeln!(
            s,
            "\nThe mirror's status endpoint afterwards: {hits} requests from the store, {pulled} pulled (the sanity check's one cold GET)."
        );
        self.section(&s);
        self.target(
            "M1 4 KiB hits, layer / bare ServeStore (per-request CPU; req/s beside it)",
            "≥ 0.98×",
            ratios_text.join(", "),
            Some(ratio_4k >= 0.98),
        );
        Ok(())
    }

    /// M2: cold-pull TTFB minus the origin's own.
    fn m2(&mut self) -> Res<()> {
        let suts = [
            Sut::Origin,
            Sut::Mirror,
            Sut::ServeDir,
            Sut::NginxStore,
            Sut::NginxCache,
        ];
        let rounds = self.opts.m2_rounds();
        let samples = self.opts.m2_samples();
        let mut ttfb: BTreeMap<Sut, Vec<Vec<f64>>> = BTreeMap::new();
        let mut waits: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            let mut this: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
            for i in 0..samples {
                for j in 0..suts.len() {
                    let sut = suts[(i + j) % suts.len()];
                    let path = format!("/fresh/4k.bin/m2-{}-{round}-{i}", sut.short());
                    let pid = self.sut_pid(sut);
                    let w0 = pid.map(run_wait_ns);
                    let c = curl(&self.url(sut, &path), None, None)?;
                    if let (Some(pid), Some(w0)) = (pid, w0) {
                        let waited = run_wait_ns(pid).saturating_sub(w0);
                        waits.entry(sut).or_default().push(waited as f64 / 1000.0);
                    }
                    if c.code != 200 || c.size != 4096 {
                        return Err(format!(
                            "M2 {}: {} with {} bytes",
                            sut.label(),
                            c.code,
                            c.size
                        ));
                    }
                    this.entry(sut).or_default().push(c.ttfb * 1000.0);
                }
            }
            for (sut, v) in this {
                ttfb.entry(sut).or_default().push(v);
            }
        }
        let origin_med: Vec<f64> = ttfb[&Sut::Origin].iter().map(|v| median(v)).collect();
        let mut s = format!(
            "\n### M2 — cold-pull time to first byte\n\ncurl `%{{time_starttransfer}}` (connection setup included, the same for all), a fresh 4 KiB key per request, {samples} requests per system per round, {rounds} rounds, systems interleaved request by request. Overhead = the round's median minus the origin's median in the same round. Run-queue wait = how long the server's threads were runnable but waiting for CPU 0 during a request (`/proc/PID/task/*/schedstat`): time other work on the machine took from it.\n\n| system | median TTFB, ms (min–max of round medians) | overhead over the origin, ms: per round | median | run-queue wait per request, µs: median / p90 / max |\n|---|---|---|---|---|\n"
        );
        let mut mirror_over = f64::NAN;
        let mut others = Vec::new();
        for sut in suts {
            let meds: Vec<f64> = ttfb[&sut].iter().map(|v| median(v)).collect();
            let over: Vec<f64> = meds.iter().zip(&origin_med).map(|(a, b)| a - b).collect();
            if sut == Sut::Mirror {
                mirror_over = median(&over);
            } else if sut != Sut::Origin {
                others.push(format!("{} {:.3}", sut.label(), median(&over)));
            }
            let wait = waits.get(&sut).map_or("—".to_owned(), |w| {
                format!("{:.0} / {:.0} / {:.0}", median(w), pct(w, 0.9), pct(w, 1.0))
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {wait} |",
                sut.label(),
                mmm(&meds, 3),
                if sut == Sut::Origin {
                    "—".into()
                } else {
                    list(&over, 3)
                },
                if sut == Sut::Origin {
                    "—".into()
                } else {
                    format!("**{:.3}**", median(&over))
                }
            );
        }
        self.section(&s);
        self.target(
            "M2 cold TTFB − origin TTFB",
            "≤ 0.3 ms",
            format!("{mirror_over:.3} ms ({} ms)", others.join(", ")),
            Some(mirror_over <= 0.3),
        );
        Ok(())
    }

    /// M3 (cold-pull throughput, sha256 of what was stored) and M4 (peak RSS while pulling).
    fn m3_m4(&mut self) -> Res<()> {
        // A fresh mirror, so its idle RSS is that of a server that has done little.
        self.start_mirror(false, None, 10)?;
        let suts = [Sut::Mirror, Sut::NginxStore, Sut::Origin];
        let rounds = self.opts.m3_rounds();
        let mut speed: BTreeMap<(&str, Sut), Vec<f64>> = BTreeMap::new();
        let mut peak: BTreeMap<(&str, Sut), Vec<f64>> = BTreeMap::new();
        let mut idle: BTreeMap<Sut, f64> = BTreeMap::new();
        let mut checks = Vec::new();
        for round in 0..rounds {
            for name in ["100m.bin", "1g.bin"] {
                for i in 0..suts.len() {
                    let sut = suts[(i + round) % suts.len()];
                    let path = format!("/fresh/{name}/m3-{}-{round}", sut.short());
                    let size = OBJECTS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|o| o.1)
                        .unwrap_or(0);
                    let (c, grown) = self.pull_measured(sut, &path, size, &mut idle)?;
                    if c.code != 200 || c.size != size {
                        return Err(format!(
                            "M3 {}: {} with {} bytes",
                            sut.label(),
                            c.code,
                            c.size
                        ));
                    }
                    let mib_s = c.size as f64 / MIB as f64 / c.total;
                    println!(
                        "M3 round {round} {name:>8} {:<24} {mib_s:>8.0} MiB/s",
                        sut.label()
                    );
                    speed.entry((name, sut)).or_default().push(mib_s);
                    if let Some(g) = grown {
                        peak.entry((name, sut)).or_default().push(g);
                    }
                    if let Some(stored) = self.stored_path(sut, &path) {
                        let hash = wait_file(&stored, size).and_then(|()| sha256_file(&stored))?;
                        let ok = hash == self.hashes[name];
                        checks.push((name, sut, round, hash, ok));
                        let _ = fs::remove_file(&stored);
                        if !ok {
                            return Err(format!(
                                "M3 {}: stored {name} has the wrong sha256",
                                sut.label()
                            ));
                        }
                    }
                }
            }
        }
        let mut s = format!(
            "\n### M3 — cold-pull throughput\n\ncurl to `/dev/null`, a fresh key per pull (the origin serves one file under any key), {rounds} interleaved round(s); MiB/s = bytes / curl's total time. Before each storing pull, a scratch file of the object's size is written and deleted so every system writes into freed page-cache pages (see `prime` in the harness); after it, the stored file is hashed and compared with the origin's, then deleted.\n\n| object | system | MiB/s, median (min–max) |\n|---|---|---|\n"
        );
        for name in ["100m.bin", "1g.bin"] {
            for sut in suts {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} |",
                    sut.label(),
                    mmm(&speed[&(name, sut)], 0)
                );
            }
        }
        s.push_str(
            "\n| object | per-round ratio mirror / nginx proxy_store | median |\n|---|---|---|\n",
        );
        let mut results = Vec::new();
        let mut met = true;
        for name in ["100m.bin", "1g.bin"] {
            let r: Vec<f64> = speed[&(name, Sut::Mirror)]
                .iter()
                .zip(&speed[&(name, Sut::NginxStore)])
                .map(|(a, b)| a / b)
                .collect();
            let _ = writeln!(s, "| {name} | {} | **{:.2}** |", list(&r, 2), median(&r));
            results.push(format!("{name} {:.2}×", median(&r)));
            met &= median(&r) >= 1.2;
        }
        s.push_str("\nsha256 of what was stored (all equal to the origin's):\n\n");
        for name in ["100m.bin", "1g.bin"] {
            let n = checks.iter().filter(|c| c.0 == name && c.4).count();
            let _ = writeln!(
                s,
                "- {name}: `{}` ({n} stored copies checked)",
                self.hashes[name]
            );
        }
        self.section(&s);
        self.target(
            "M3 cold-pull throughput, mirror / nginx proxy_store",
            "≥ 1.2×",
            results.join(", "),
            Some(met),
        );

        // M4: a 4 GiB pull per system, if the disk has room for the object twice over.
        let four = 4096 * MIB;
        let mut did_4g = false;
        let free = free_bytes(&self.dir).unwrap_or(0);
        if self.opts.quick {
            self.notes
                .push("Quick mode: M4 from the 1 GiB pulls only (no 4 GiB object).".to_owned());
        } else if free > 3 * four {
            println!(
                "writing a 4 GiB origin object ({} GiB free)",
                free / (1024 * MIB)
            );
            let obj = self.dir.join("origin/obj/4g.bin");
            let hash = write_random(&obj, four, 99)?;
            self.hashes.insert("4g.bin".into(), hash);
            for sut in [Sut::Mirror, Sut::NginxStore] {
                let path = format!("/fresh/4g.bin/m4-{}", sut.short());
                let (c, grown) = self.pull_measured(sut, &path, four, &mut idle)?;
                if c.code != 200 || c.size != four {
                    return Err(format!(
                        "M4 {}: {} with {} bytes",
                        sut.label(),
                        c.code,
                        c.size
                    ));
                }
                println!(
                    "M4 4g.bin {:<24} {:>6.0} MiB/s, peak +{:.1} MiB",
                    sut.label(),
                    c.size as f64 / MIB as f64 / c.total,
                    grown.unwrap_or(f64::NAN)
                );
                if let Some(g) = grown {
                    peak.entry(("4g.bin", sut)).or_default().push(g);
                }
                if let Some(stored) = self.stored_path(sut, &path) {
                    wait_file(&stored, four)?;
                    let _ = fs::remove_file(&stored);
                }
            }
            let _ = fs::remove_file(&obj);
            did_4g = true;
        } else {
            self.notes.push(format!(
                "M4 4 GiB skipped: {} GiB free under /tmp, 12 needed.",
                free / (1024 * MIB)
            ));
        }
        let mut s = String::from(
            "\n### M4 — peak RSS while pulling\n\nVmHWM of the server process (the mirror; nginx's one worker) after the pull, the peak having been reset to the current RSS (`/proc/PID/clear_refs` = 5) right before it, minus the RSS at idle before the first pull. 1 GiB figures come from the M3 pulls.\n\n| object | system | idle RSS, MiB | peak above idle, MiB: median (min–max) |\n|---|---|---|---|\n",
        );
        let mut worst: f64 = 0.0;
        let mut flat = Vec::new();
        for name in ["1g.bin", "4g.bin"] {
            for sut in [Sut::Mirror, Sut::NginxStore] {
                if let Some(v) = peak.get(&(name, sut)) {
                    let _ = writeln!(
                        s,
                        "| {name} | {} | {:.1} | {} |",
                        sut.label(),
                        idle.get(&sut).copied().unwrap_or(f64::NAN),
                        mmm(v, 1)
                    );
                    if sut == Sut::Mirror {
                        worst = worst.max(min_max(v).1);
                        flat.push(format!("{name} +{:.1} MiB", median(v)));
                    }
                }
            }
        }
        if !did_4g {
            s.push_str("\n(No 4 GiB pull in this run; see the notes.)\n");
        }
        self.section(&s);
        self.target(
            "M4 peak RSS above idle while pulling 1 and 4 GiB",
            "flat, ≤ 32 MiB",
            flat.join(", "),
            Some(worst <= 32.0),
        );
        Ok(())
    }

    /// One cold pull with curl, the server's peak RSS reset before and read after. Returns
    /// the transfer and the peak above idle, MiB.
    fn pull_measured(
        &self,
        sut: Sut,
        path: &str,
        size: u64,
        idle: &mut BTreeMap<Sut, f64>,
    ) -> Res<(Curl, Option<f64>)> {
        if self.stored_path(sut, path).is_some() {
            self.prime(size)?;
        }
        let pid = self.sut_pid(sut);
        if let Some(pid) = pid {
            let rss = proc_status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
            idle.entry(sut).or_insert(rss);
            reset_peak(pid);
        }
        let c = curl(&self.url(sut, path), None, None)?;
        let grown = pid.and_then(|pid| {
            let hwm = proc_status_kib(pid, "VmHWM:")? as f64 / 1024.0;
            Some(hwm - idle[&sut])
        });
        Ok((c, grown))
    }

    /// Write `size` bytes to a scratch file under /tmp and delete it, so the pull that
    /// follows writes into freed page-cache pages. Without this, whichever system writes
    /// first after another deleted a file gets its pages for free: on this VM a 1 GiB `dd`
    /// into fresh pages ran at 264–387 MB/s, and at 1.9 GB/s right after a 1 GiB file was
    /// deleted, which decided the M3 ratio more than either server did.
    fn prime(&self, size: u64) -> Res<()> {
        let path = self.dir.join("prime.tmp");
        let mut f = fs::File::create(&path).map_err(|e| e.to_string())?;
        let block = vec![0x5au8; 4 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n]).map_err(|e| e.to_string())?;
            left -= n as u64;
        }
        drop(f);
        fs::remove_file(&path).map_err(|e| e.to_string())
    }

    /// M5: 200 concurrent cold GETs for one key.
    fn m5(&mut self) -> Res<()> {
        self.start_mirror(false, None, 10)?;
        let rounds = self.opts.m5_rounds();
        let size = 20 * MIB;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http::<Empty<Bytes>>();
        let mut rows: BTreeMap<Sut, Vec<M5Round>> = BTreeMap::new();
        for round in 0..rounds {
            for sut in [Sut::Mirror, Sut::NginxCache] {
                let path = format!("/slow/20m.bin/m5-{}-{round}", sut.short());
                let warm = match sut {
                    Sut::Mirror => "/_origin_pull/status".to_owned(),
                    _ => "/obj/4k.bin".to_owned(),
                };
                let pid = self.sut_pid(sut);
                let w0 = pid.map(run_wait_ns);
                let r = rt.block_on(m5_round(
                    client.clone(),
                    self.url(sut, &warm),
                    self.url(sut, &path),
                    size,
                    sut,
                ))?;
                let run_wait_ms = pid.zip(w0).map_or(f64::NAN, |(pid, w0)| {
                    run_wait_ns(pid).saturating_sub(w0) as f64 / 1e6
                });
                // The origin logs a request when it ends; give it a moment.
                std::thread::sleep(Duration::from_millis(300));
                let log = self.origin_log(&path);
                let origin_requests = log.len();
                let origin_bytes: u64 = log.iter().map(|l| l.2).sum();
                println!(
                    "M5 round {round} {:<24} origin requests {origin_requests}, bytes {:.2}×, leader first byte {:.1} ms, waiters' lag p50 {:.1} ms, max {:.1} ms, run-queue wait {run_wait_ms:.1} ms",
                    sut.label(),
                    origin_bytes as f64 / size as f64,
                    r.leader_first_byte,
                    pct(&r.lags, 0.5),
                    pct(&r.lags, 1.0)
                );
                rows.entry(sut).or_default().push(M5Round {
                    origin_requests,
                    origin_bytes_ratio: origin_bytes as f64 / size as f64,
                    run_wait_ms,
                    ..r
                });
            }
        }
        let mut s = format!(
            "\n### M5 — {M5_CLIENTS} concurrent cold GETs\n\nOne 20 MiB key on the origin's {} MB/s location (a fill of about {:.1} s), {M5_CLIENTS} requests started together from one client (hyper; connections opened beforehand), {rounds} round(s). Origin requests and bytes come from the origin's access log. Lag = a waiter's first body byte minus the leader's (the request that made the origin fetch: `x-origin-pull: pulled` / `X-Cache-Status: MISS`).\n\n| system | origin requests | origin bytes / object | leader's first byte, ms | waiters' lag p50 / p99 / max, ms | last request done, s | server's run-queue wait per round, ms |\n|---|---|---|---|---|---|---|\n",
            SLOW_RATE / 1_000_000,
            size as f64 / SLOW_RATE as f64
        );
        let mut met = true;
        let mut result = String::new();
        for (sut, rs) in &rows {
            let reqs: Vec<f64> = rs.iter().map(|r| r.origin_requests as f64).collect();
            let bytes: Vec<f64> = rs.iter().map(|r| r.origin_bytes_ratio).collect();
            let lead: Vec<f64> = rs.iter().map(|r| r.leader_first_byte).collect();
            let p50: Vec<f64> = rs.iter().map(|r| pct(&r.lags, 0.5)).collect();
            let p99: Vec<f64> = rs.iter().map(|r| pct(&r.lags, 0.99)).collect();
            let max: Vec<f64> = rs.iter().map(|r| pct(&r.lags, 1.0)).collect();
            let done: Vec<f64> = rs.iter().map(|r| r.done).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} / {:.1} / {:.1} (max of rounds {:.1}) | {} | {} |",
                sut.label(),
                list(&reqs, 0),
                list(&bytes, 2),
                mmm(&lead, 1),
                median(&p50),
                median(&p99),
                median(&max),
                min_max(&max).1,
                mmm(&done, 2),
                list(&rs.iter().map(|r| r.run_wait_ms).collect::<Vec<_>>(), 1)
            );
            if *sut == Sut::Mirror {
                met = reqs.iter().all(|&r| r == 1.0)
                    && bytes.iter().all(|&b| (b - 1.0).abs() < 0.005)
                    && min_max(&max).1 <= 5.0;
                result = format!(
                    "{} request(s), {:.2}× bytes, waiters' lag max {:.1} ms",
                    list(&reqs, 0),
                    median(&bytes),
                    min_max(&max).1
                );
            }
        }
        self.section(&s);
        self.target(
            "M5 200 concurrent cold GETs",
            "1 request, 1.00× bytes, waiters ≤ 5 ms after the leader",
            result,
            Some(met),
        );
        Ok(())
    }

    /// M6: async-mode redirects per second and fills per key.
    fn m6(&mut self) -> Res<()> {
        // A mirror in async mode; fills still running at the end are aborted (grace 0).
        self.start_mirror(false, Some("async"), 0)?;
        let rounds = self.opts.m6_rounds();
        let secs = self.opts.m6_secs();
        let conns = 8;
        let suts = [Sut::Mirror, Sut::NginxRedirect, Sut::NginxRedirectPlain];
        let mut rps: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
        let mut cpus: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
        let mut keys = 0;
        for round in 0..rounds {
            let script = self.dir.join(format!("wrk/m6-{round}.lua"));
            fs::write(
                &script,
                format!(
                    "local i = 0\nrequest = function()\n  i = i % {M6_KEYS} + 1\n  return wrk.format(\"GET\", \"/crawl/1m.bin/m6-{round}-\" .. i)\nend\n"
                ),
            )
            .map_err(|e| e.to_string())?;
            keys += M6_KEYS;
            for i in 0..suts.len() {
                let sut = suts[(i + round) % suts.len()];
                let (w, cpu) = self.wrk_cpu(
                    "M6",
                    &format!("round {round}"),
                    sut,
                    "/",
                    secs,
                    conns,
                    Some(&script),
                )?;
                cpus.entry(sut).or_default().push(cpu);
                println!(
                    "M6 round {round} {:<36} {:>10.0} redirects/s {cpu:>6.1} µs CPU/req",
                    sut.label(),
                    w.rps
                );
                rps.entry(sut).or_default().push(w.rps);
            }
        }
        let status = self.status_json()?;
        let redirects = status["requests"]["async"].as_u64().unwrap_or(0);
        let queued = status["background"]["queued"].as_u64().unwrap_or(0);
        let dedup = status["background"]["deduplicated"].as_u64().unwrap_or(0);
        let dropped = status["background"]["dropped_queue_full"]
            .as_u64()
            .unwrap_or(0);
        let in_flight = status["fills_in_flight"].as_u64().unwrap_or(0);
        // Stop the mirror (aborting the crawling fills), then count origin requests per key.
        if let Some(mut m) = self.mirror.take() {
            m.stop();
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for (uri, _, _) in self.origin_log("/crawl/1m.bin/m6-") {
            *per_key.entry(uri).or_default() += 1;
        }
        let max_per_key = per_key.values().copied().max().unwrap_or(0);
        let mut s = format!(
            "\n### M6 — async-mode redirects\n\nwrk, 1 thread, {conns} connections, {secs} s per run, {rounds} interleaved rounds; each round cycles through {M6_KEYS} new keys on the origin's {} kB/s location, so every fill outlasts the run and every request is a miss answered with a `302`. nginx's equivalent checks its disk first (`try_files $uri @origin` + `return 302`); a bare `return 302` is shown too. CPU per request as in M1.\n\n| system | redirects/s, median (min–max) | CPU µs per request |\n|---|---|---|\n",
            CRAWL_RATE / 1000
        );
        for sut in suts {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                sut.label(),
                mmm(&rps[&sut], 0),
                mmm(&cpus[&sut], 1)
            );
        }
        let vs: Vec<f64> = rps[&Sut::Mirror]
            .iter()
            .zip(&rps[&Sut::NginxRedirect])
            .map(|(a, b)| a / b)
            .collect();
        let vs_plain: Vec<f64> = rps[&Sut::Mirror]
            .iter()
            .zip(&rps[&Sut::NginxRedirectPlain])
            .map(|(a, b)| a / b)
            .collect();
        let eff: Vec<f64> = cpus[&Sut::Mirror]
            .iter()
            .zip(&cpus[&Sut::NginxRedirect])
            .map(|(a, b)| b / a)
            .collect();
        let _ = writeln!(
            s,
            "\nPer-round efficiency (nginx try_files + 302's CPU per request ÷ the mirror's): {} (median {:.2}).",
            list(&eff, 2),
            median(&eff)
        );
        let _ = writeln!(
            s,
            "\nPer-round ratio mirror / nginx try_files + 302: {} (median **{:.2}**); mirror / bare `return 302`: {} (median {:.2}).\n\nFills: the mirror answered {redirects} async redirects for {keys} distinct keys; it queued {queued} background fills (one per key: {:.2} per key), deduplicated {dedup} requests, dropped {dropped} for a full queue; {in_flight} fills were crawling at the end (background concurrency 4) and were aborted by the shutdown. The origin's log shows at most {max_per_key} request per key ({} keys fetched).\n",
            list(&vs, 2),
            median(&vs),
            list(&vs_plain, 2),
            median(&vs_plain),
            queued as f64 / keys as f64,
            per_key.len()
        );
        self.section(&s);
        let one_per_key = queued as usize == keys && max_per_key <= 1 && dropped == 0;
        self.target(
            "M6 async redirects/s vs nginx 302; fills per key",
            "≥ 0.7×, exactly 1 fill per key",
            format!(
                "{:.2}× (vs bare return 302: {:.2}×; CPU efficiency {:.2}×); {:.2} fills per key, ≤ {max_per_key} origin request per key",
                median(&vs),
                median(&vs_plain),
                median(&eff),
                queued as f64 / keys as f64
            ),
            Some(median(&vs) >= 0.7 && one_per_key),
        );
        Ok(())
    }

    /// M7: a cold Range for the last 100 bytes of a 100 MiB object on a 20 MB/s origin.
    fn m7(&mut self) -> Res<()> {
        self.start_mirror(false, None, 0)?;
        let rounds = self.opts.m7_rounds();
        let obj = fs::read(self.dir.join("origin/obj/100m.bin")).map_err(|e| e.to_string())?;
        let tail = obj[obj.len() - 100..].to_vec();
        drop(obj);
        let suts = [Sut::Origin, Sut::Mirror, Sut::NginxStore];
        let mut ttfb: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
        let mut waits: BTreeMap<Sut, Vec<f64>> = BTreeMap::new();
        let body = self.dir.join("m7.body");
        for round in 0..rounds {
            for i in 0..suts.len() {
                let sut = suts[(i + round) % suts.len()];
                let path = format!("/slow/100m.bin/m7-{}-{round}", sut.short());
                let pid = self.sut_pid(sut);
                let w0 = pid.map(run_wait_ns);
                let c = curl(&self.url(sut, &path), Some("-100"), Some(&body))?;
                if let (Some(pid), Some(w0)) = (pid, w0) {
                    let waited = run_wait_ns(pid).saturating_sub(w0);
                    waits.entry(sut).or_default().push(waited as f64 / 1000.0);
                }
                let got = fs::read(&body).map_err(|e| e.to_string())?;
                if c.code != 206 || got != tail {
                    return Err(format!(
                        "M7 {}: {} with {} bytes (want 206 and the object's last 100 bytes)",
                        sut.label(),
                        c.code,
                        got.len()
                    ));
                }
                ttfb.entry(sut).or_default().push(c.ttfb * 1000.0);
            }
        }
        // nginx proxy_cache fetches the whole object before it can answer the range.
        for round in 0..self.opts.m7_cache_rounds() {
            let path = format!("/slow/100m.bin/m7-{}-{round}", Sut::NginxCache.short());
            let c = curl(&self.url(Sut::NginxCache, &path), Some("-100"), Some(&body))?;
            let got = fs::read(&body).map_err(|e| e.to_string())?;
            if c.code != 206 || got != tail {
                return Err(format!(
                    "M7 nginx proxy_cache: {} with {} bytes",
                    c.code,
                    got.len()
                ));
            }
            ttfb.entry(Sut::NginxCache)
                .or_default()
                .push(c.ttfb * 1000.0);
        }
        let status = self.status_json()?;
        let background = status["background"]["queued"].as_u64().unwrap_or(0);
        let origin = ttfb[&Sut::Origin].clone();
        let mut s = format!(
            "\n### M7 — cold Range, last 100 bytes of 100 MiB from a {} MB/s origin\n\n`curl -r -100`, a fresh key per request, {rounds} interleaved rounds; each answer checked against the object's last 100 bytes. The mirror answers from a ranged origin request and queues a whole-object fill in the background ({background} queued in this run); nginx proxy_store passes the Range on and stores nothing; nginx proxy_cache fetches the whole object first ({} round(s) only: each takes the whole fill). Run-queue wait as in M2.\n\n| system | TTFB, ms: median (min–max) | minus the origin's, ms: per round | median | run-queue wait per request, µs: median / max |\n|---|---|---|---|---|\n",
            SLOW_RATE / 1_000_000,
            self.opts.m7_cache_rounds()
        );
        let mut over_mirror = f64::NAN;
        for sut in [Sut::Origin, Sut::Mirror, Sut::NginxStore, Sut::NginxCache] {
            let v = &ttfb[&sut];
            let over: Vec<f64> = v.iter().zip(&origin).map(|(a, b)| a - b).collect();
            if sut == Sut::Mirror {
                over_mirror = median(&over);
            }
            let wait = waits.get(&sut).map_or("—".to_owned(), |w| {
                format!("{:.0} / {:.0}", median(w), pct(w, 1.0))
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {wait} |",
                sut.label(),
                mmm(v, 2),
                if sut == Sut::Origin {
                    "—".into()
                } else {
                    list(&over, 2)
                },
                if sut == Sut::Origin {
                    "—".into()
                } else {
                    format!("**{:.2}**", median(&over))
                }
            );
        }
        self.section(&s);
        self.target(
            "M7 cold Range TTFB − origin TTFB",
            "≤ 1 ms",
            format!("{over_mirror:.2} ms"),
            Some(over_mirror <= 1.0),
        );
        Ok(())
    }

    fn finish(&mut self) -> Res<()> {
        let elapsed = self.started.elapsed();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Generated by `benches/side_by_side.sh {}` in {:.0} s.\n",
            if self.opts.quick { "--quick" } else { "--full" },
            elapsed.as_secs_f64()
        );
        out.push_str(&machine_facts(self.cpus));
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out.push_str("\n| row | target | result (medians) | |\n|---|---|---|---|\n");
        for [row, target, result, verdict] in &self.summary {
            let _ = writeln!(out, "| {row} | {target} | {result} | {verdict} |");
        }
        out.push_str(&self.report);
        let report_path = self
            .mirror_bin
            .parent()
            .and_then(Path::parent)
            .map(|p| p.join("side_by_side.md"));
        if let Some(p) = &report_path {
            fs::write(p, &out).map_err(|e| e.to_string())?;
            println!("\nreport written to {}", p.display());
        }
        println!("\n{out}");
        if self.opts.write {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
            let doc = fs::read_to_string(&path).unwrap_or_default();
            const BEGIN: &str = "<!-- side_by_side: begin -->";
            const END: &str = "<!-- side_by_side: end -->";
            let new = match (doc.find(BEGIN), doc.find(END)) {
                (Some(b), Some(e)) if b < e => {
                    format!("{}{BEGIN}\n{out}{}", &doc[..b], &doc[e..])
                }
                _ => format!("{doc}\n{BEGIN}\n{out}{END}\n"),
            };
            fs::write(&path, new).map_err(|e| e.to_string())?;
            println!("updated {}", path.display());
        }
        Ok(())
    }
}

/// Wait (a little) for a stored file to reach its full size: nginx renames its temporary
/// file into place after the response has ended.
fn wait_file(path: &Path, size: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fs::metadata(path).is_ok_and(|m| m.len() == size) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{} was not stored whole", path.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn machine_facts(cpus: usize) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024 / 1024);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = |cmd: &str, args: &[&str]| -> String {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .unwrap_or_default();
    format!(
        "- Machine: {cpu}, {cpus} CPUs, {mem} GiB RAM; {os}, Linux {}; /tmp on the same disk as everything else.\n- Tools: {}; {}; {}; {}.\n- Pinning: the system under test (nginx's one worker, the mirror, or axum_serve_dir; the last two then run a single-threaded runtime) on CPU 0; the origin (nginx, one worker), wrk, curl and this harness on CPU 1. Both CPUs are shared with other work on this machine: **absolute numbers drift between runs; the interleaved side-by-side ratios are what hold.**\n",
        kernel.trim(),
        version("nginx", &["-v"]),
        version("wrk", &["--version"])
            .split(" Copyright")
            .next()
            .unwrap_or(""),
        version("curl", &["--version"])
            .split(" (")
            .next()
            .unwrap_or(""),
        version("rustc", &["--version"]),
    )
}

struct M5Round {
    origin_requests: usize,
    /// How long the server's threads waited for CPU 0 during the round.
    run_wait_ms: f64,
    origin_bytes_ratio: f64,
    leader_first_byte: f64,
    lags: Vec<f64>,
    done: f64,
}

async fn m5_round(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    warm_url: String,
    url: String,
    size: u64,
    sut: Sut,
) -> Res<M5Round> {
    // Open the connections first: requests that overlap each take their own connection.
    let warm: Vec<_> = (0..M5_CLIENTS)
        .map(|_| {
            let (c, u) = (client.clone(), warm_url.clone());
            tokio::spawn(async move {
                let req = http::Request::get(u)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let res = c.request(req).await.map_err(|e| e.to_string())?;
                res.into_body().collect().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .collect();
    for w in warm {
        w.await.map_err(|e| e.to_string())??;
    }
    let start = Arc::new(Instant::now());
    let gets: Vec<_> = (0..M5_CLIENTS)
        .map(|_| {
            let (c, u, start) = (client.clone(), url.clone(), start.clone());
            tokio::spawn(async move {
                let req = http::Request::get(u)
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let res = c.request(req).await.map_err(|e| e.to_string())?;
                if res.status() != 200 {
                    return Err(format!("status {}", res.status()));
                }
                let leader = match sut {
                    Sut::Mirror => res
                        .headers()
                        .get("x-origin-pull")
                        .is_some_and(|v| v == "pulled"),
                    _ => res
                        .headers()
                        .get("x-cache-status")
                        .is_some_and(|v| v == "MISS"),
                };
                let mut body = res.into_body();
                let mut first = None;
                let mut len = 0u64;
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| e.to_string())?;
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            first.get_or_insert_with(|| start.elapsed());
                        }
                        len += data.len() as u64;
                    }
                }
                Ok::<_, String>((leader, first, len, start.elapsed()))
            })
        })
        .collect();
    let mut results = Vec::new();
    for g in gets {
        results.push(g.await.map_err(|e| e.to_string())??);
    }
    if let Some(bad) = results.iter().find(|r| r.2 != size) {
        return Err(format!(
            "M5 {}: a response of {} bytes, want {size}",
            sut.label(),
            bad.2
        ));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // The leader: the request that made the fetch; if several claim it (nginx's lock timed
    // out), the earliest.
    let leader_idx = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0)
        .min_by_key(|(_, r)| r.1)
        .map(|(i, _)| i)
        .or_else(|| {
            results
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.1)
                .map(|(i, _)| i)
        })
        .ok_or("no responses")?;
    let leader_first = results[leader_idx].1.map(ms).unwrap_or(f64::NAN);
    let lags: Vec<f64> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader_idx)
        .map(|(_, r)| (r.1.map(ms).unwrap_or(f64::NAN) - leader_first).max(0.0))
        .collect();
    let done = results
        .iter()
        .map(|r| r.3)
        .max()
        .map(|d| d.as_secs_f64())
        .unwrap_or(f64::NAN);
    Ok(M5Round {
        origin_requests: 0,
        run_wait_ms: 0.0,
        origin_bytes_ratio: 0.0,
        leader_first_byte: leader_first,
        lags,
        done,
    })
}
