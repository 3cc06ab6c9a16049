//! Tools a few tests drive that are not Rust crates: headless Chromium, rclone (Debian
//! packages) and boto3 + awscli (PyPI, in a venv). `.ci/run` installs them up front; a test
//! that needs one also installs it when it is missing, so `cargo test` on a fresh machine
//! runs every test. A tool that cannot be installed fails the test in CI (`CI` set, as
//! `.ci/run` sets it) and, outside CI, skips it with a line saying why ([`required`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// One provisioning at a time in a test binary.
static PROVISIONING: Mutex<()> = Mutex::new(());

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first of `binaries` that runs (`--version`), installing Debian's `package` through
/// apt when none does; `None` when that is not possible (not root, no apt, no network).
pub fn debian_tool(binaries: &[&str], package: &str) -> Option<String> {
    let find = || {
        binaries
            .iter()
            .find(|b| runs(b, &["--version"]) || runs(b, &["version"]))
            .map(|b| (*b).to_owned())
    };
    if let Some(found) = find() {
        return Some(found);
    }
    let _one = PROVISIONING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find() {
        return Some(found);
    }
    eprintln!("{package} is missing: installing it through apt-get");
    let _ = runs("apt-get", &["update", "-qq"]);
    let _ = runs("apt-get", &["install", "-y", "-qq", package]);
    find()
}

/// The Python of a venv with boto3 and awscli: `S3_CLIENTS_VENV`, else
/// `<target dir>/s3-clients-venv`, created (`python3 -m venv`, `pip install`) when it does
/// not have them; `None` when that is not possible.
pub fn s3_clients_python() -> Option<PathBuf> {
    let venv = std::env::var_os("S3_CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("s3-clients-venv"));
    let python = venv.join("bin/python");
    let ready = |python: &Path| runs(&python.to_string_lossy(), &["-c", "import boto3"]);
    if ready(&python) && venv.join("bin/aws").exists() {
        return Some(python);
    }
    let _one = PROVISIONING.lock().unwrap_or_else(|e| e.into_inner());
    if !(ready(&python) && venv.join("bin/aws").exists()) {
        eprintln!(
            "boto3/awscli are missing: installing them into {}",
            venv.display()
        );
        let venv_text = venv.to_string_lossy().into_owned();
        let _ = runs("python3", &["-m", "venv", &venv_text]);
        let pip = venv.join("bin/pip");
        let _ = runs(
            &pip.to_string_lossy(),
            &["install", "-q", "boto3", "awscli"],
        );
    }
    (ready(&python) && venv.join("bin/aws").exists()).then_some(python)
}

/// `found`, or — when a tool could not be had — a failure in CI and, outside CI, `None`
/// after printing why the test skips.
pub fn required<T>(found: Option<T>, what: &str) -> Option<T> {
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: {what} is not installed and could not be (.ci/run installs it)"
        );
        eprintln!("skipped: {what} is not installed and could not be");
    }
    found
}

/// The cargo target directory of the running test.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
