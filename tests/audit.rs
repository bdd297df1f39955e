//! The audit log through the real binary: `status` on a huge log, lines damaged by a crash or by
//! hand, appends after a torn line, and rotation by size.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::Env;

/// One audit line as pwrotd writes it, without the newline.
fn record(account: &str, outcome: &str, error_code: Option<&str>, version: u64) -> String {
    let error_code = error_code.map_or_else(|| "null".to_owned(), |c| format!("\"{c}\""));
    format!(
        "{{\"time\":\"2026-01-01T00:00:00.000Z\",\"account\":\"{account}\",\"api\":\"ModifyAccountPassword\",\"resource_id\":\"pc-test0001\",\"account_name\":\"app\",\"version\":{version},\"outcome\":\"{outcome}\",\"error_code\":{error_code},\"request_id\":\"5B0C1C1D-0000-4000-8000-{version:012}\",\"attempts\":1,\"duration_ms\":12,\"password_hmac\":\"hmac-sha256:{version:064x}\"}}"
    )
}

/// The state directory (0700, as pwrotd makes it), created if missing.
fn state_dir(env: &Env) -> PathBuf {
    let dir = env.state_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .expect("state dir");
    dir
}

/// Appends raw bytes to the state directory's `audit.jsonl`, creating it 0600.
fn append_raw(env: &Env, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(state_dir(env).join("audit.jsonl"))
        .expect("open audit.jsonl");
    file.write_all(bytes).expect("append");
}

/// `status --json`: each account's `last_error`, and stderr.
async fn last_errors(env: &Env) -> (BTreeMap<String, Value>, String) {
    let output = env.pwrotd(&["status", "--json"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "status failed: {stderr}");
    (rows_by_account(&output), stderr)
}

fn rows_by_account(output: &Output) -> BTreeMap<String, Value> {
    let rows: Value = serde_json::from_slice(&output.stdout).expect("status --json is JSON");
    rows.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["account"].as_str().expect("account").to_owned(),
                r["last_error"].clone(),
            )
        })
        .collect()
}

/// Runs the real binary to its end and returns its output and peak resident set size in bytes.
/// A small Python parent runs it as its only child and reads `RUSAGE_CHILDREN` afterwards, so
/// no other process (this test binary runs many) counts.
fn run_measured(env: &Env, args: &[&str]) -> (Output, u64, Duration) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[2:])\n\
        open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
        sys.exit(r.returncode)\n";
    let rss_file = env.dir.path().join("maxrss");
    let started = Instant::now();
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_pwrotd"))
        .args(args)
        .arg("--config")
        .arg(&env.config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pwrotd under python3");
    let elapsed = started.elapsed();
    // Linux reports ru_maxrss in KiB.
    let peak = std::fs::read_to_string(&rss_file)
        .expect("the measured peak")
        .trim()
        .parse::<u64>()
        .expect("a number")
        * 1024;
    (output, peak, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_a_million_line_audit_log_from_the_end_in_bounded_memory() {
    const LINES: usize = 1_000_000;
    let env = Env::new("v1").await;
    // Every configured account appears all through the log with other outcomes; the last
    // record of each is near the end, but `admin`'s is 100,000 lines (about 30 MB) back, behind
    // lines of an account the config no longer has.
    let last = |i: usize| LINES - i;
    let path = state_dir(&env).join("audit.jsonl");
    let started = Instant::now();
    {
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path).expect("create"),
        );
        for i in 0..LINES {
            let version = i as u64;
            let line = if i == last(100_000) {
                record("admin", "failure", Some("LockTimeout"), version)
            } else if i == last(10) {
                record("orders-app", "success", None, version)
            } else if i == last(5) {
                record("edge-app", "failure", Some("ServiceUnavailable"), version)
            } else if i == last(3) {
                record("billing", "pending", Some("Database.ConnectError"), version)
            } else if i < last(100_000) {
                match i % 10 {
                    0 => record("orders-app", "failure", Some("InternalError"), version),
                    1 => record("edge-app", "success", None, version),
                    2 => record("admin", "success", None, version),
                    3 => record("billing", "failure", Some("Throttling.User"), version),
                    _ => record("retired-app", "success", None, version),
                }
            } else {
                record("retired-app", "failure", Some("Throttling.User"), version)
            };
            out.write_all(line.as_bytes()).expect("write");
            out.write_all(b"\n").expect("write");
        }
        out.flush().expect("flush");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let size = std::fs::metadata(&path).expect("stat").len();
    eprintln!(
        "wrote {LINES} audit lines ({} MB) in {:?}",
        size / 1_000_000,
        started.elapsed()
    );

    let (output, peak, elapsed) = run_measured(&env, &["status", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "status failed: {stderr}");
    eprintln!(
        "status on {LINES} lines: {elapsed:?}, peak RSS {} KiB",
        peak / 1024
    );
    let rows = rows_by_account(&output);
    assert_eq!(rows["orders-app"], Value::Null, "{rows:?}");
    assert_eq!(rows["edge-app"], "ServiceUnavailable", "{rows:?}");
    assert_eq!(rows["admin"], "LockTimeout", "{rows:?}");
    assert_eq!(rows["billing"], "Database.ConnectError", "{rows:?}");
    assert!(!stderr.contains("skipped"), "no line is damaged: {stderr}");
    assert!(
        peak < 64 << 20,
        "status peaked at {} MiB reading a {} MB audit log",
        peak >> 20,
        size / 1_000_000
    );

    // The table reads the same way.
    let table = env.pwrotd(&["status"]).await;
    assert!(table.status.success(), "{table:?}");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("admin ") && l.contains("LockTimeout")),
        "{text}"
    );
}

/// A line holding a byte that is not UTF-8, inside a string, as a bad disk or a hand edit
/// leaves it: otherwise an `edge-app` success.
fn invalid_utf8_line() -> Vec<u8> {
    let mut line = record("edge-app", "success", None, 9)
        .replace("5B0C1C1D", "5B0C1C\u{1}D")
        .into_bytes();
    let at = line.iter().position(|&b| b == 1).expect("the marker");
    line[at] = 0xff;
    line.push(b'\n');
    line
}

/// The first half of a record, as a crash mid-append leaves it.
fn torn(account: &str) -> Vec<u8> {
    let line = record(account, "success", None, 8);
    line.as_bytes()[..line.len() / 2].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_skips_invalid_utf8_and_torn_lines_in_the_middle_and_at_the_end_and_counts_them() {
    let env = Env::new("v1").await;
    let mut log = Vec::new();
    for line in [
        record("orders-app", "failure", Some("InternalError"), 1),
        record("edge-app", "failure", Some("Throttling.User"), 1),
    ] {
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
    }
    // In the middle: a line with an invalid byte, and a torn line that a later append ended.
    log.extend(invalid_utf8_line());
    log.extend(torn("admin"));
    log.push(b'\n');
    for line in [
        record("admin", "success", None, 2),
        record("billing", "failure", Some("LockTimeout"), 2),
        record("orders-app", "success", None, 2),
    ] {
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
    }
    append_raw(&env, &log);
    let expected = |rows: &BTreeMap<String, Value>| {
        assert_eq!(rows["orders-app"], Value::Null, "{rows:?}");
        assert_eq!(rows["edge-app"], "Throttling.User", "{rows:?}");
        assert_eq!(rows["admin"], Value::Null, "{rows:?}");
        assert_eq!(rows["billing"], "LockTimeout", "{rows:?}");
    };
    let (rows, stderr) = last_errors(&env).await;
    expected(&rows);
    assert!(
        stderr.contains("skipped 2 ") && stderr.lines().count() == 1,
        "one line on stderr counts the two damaged lines: {stderr}"
    );

    // At the end: another invalid line, then a torn one with no newline.
    let mut tail = invalid_utf8_line();
    tail.extend(torn("billing"));
    append_raw(&env, &tail);
    let (rows, stderr) = last_errors(&env).await;
    expected(&rows);
    assert!(stderr.contains("skipped 4 "), "{stderr}");
    let table = env.pwrotd(&["status"]).await;
    assert!(table.status.success(), "{table:?}");
    assert!(
        String::from_utf8_lossy(&table.stderr).contains("skipped 4 "),
        "{table:?}"
    );

    // An undamaged log says nothing on stderr.
    std::fs::remove_file(env.state_dir().join("audit.jsonl")).expect("rm");
    append_raw(
        &env,
        format!("{}\n", record("billing", "success", None, 3)).as_bytes(),
    );
    let (rows, stderr) = last_errors(&env).await;
    assert_eq!(rows["billing"], Value::Null);
    assert_eq!(rows["edge-app"], Value::Null, "no record: no error");
    assert!(stderr.is_empty(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_never_swallows_the_next_record() {
    let env = Env::new("v1").await;
    let mut log = record("orders-app", "failure", Some("ServiceUnavailable"), 1).into_bytes();
    log.push(b'\n');
    // A crash in the middle of the next append: half a line, no newline.
    let torn = torn("edge-app");
    log.extend_from_slice(&torn);
    append_raw(&env, &log);
    let (rows, _) = last_errors(&env).await;
    assert_eq!(rows["orders-app"], "ServiceUnavailable");

    let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read(env.state_dir().join("audit.jsonl")).expect("audit");
    let lines: Vec<&[u8]> = text
        .strip_suffix(b"\n")
        .expect("ends a line")
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(lines.len(), 3, "{}", String::from_utf8_lossy(&text));
    assert_eq!(lines[1], &torn[..], "the torn line stays as it was, alone");
    let success: Value = serde_json::from_slice(lines[2]).expect("the new record is whole");
    assert_eq!(
        (&success["account"], &success["outcome"]),
        (&Value::from("orders-app"), &Value::from("success"))
    );

    let (rows, stderr) = last_errors(&env).await;
    assert_eq!(
        rows["orders-app"],
        Value::Null,
        "the success is the last record, not the old error: {rows:?}"
    );
    assert!(stderr.contains("skipped 1 "), "{stderr}");
}

/// Every `audit.jsonl*` file in `dir`, by name.
fn audit_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read state dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("audit.jsonl")
                .then(|| (name, std::fs::read(e.path()).expect("read")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_rotates_by_size_and_keeps_every_line_whole() {
    const BOUND: u64 = 1500;
    let env = Env::new("v1").await;
    for round in 1..=3 {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            env.command(&["rotate", "--all"])
                .env("PWROTD_AUDIT_MAX_BYTES", BOUND.to_string())
                .output(),
        )
        .await
        .expect("rotate finished within a minute")
        .expect("run pwrotd");
        assert!(output.status.success(), "round {round}: {output:?}");
    }
    let files = audit_files(&env.state_dir());
    let names: Vec<&String> = files.keys().collect();
    assert!(
        files.contains_key("audit.jsonl") && files.contains_key("audit.jsonl.1"),
        "the log was rotated: {names:?}"
    );
    let mut seen = BTreeSet::new();
    for (name, text) in &files {
        assert!(
            text.len() as u64 <= BOUND,
            "{name} holds {} bytes, over the bound",
            text.len()
        );
        let mode = std::fs::metadata(env.state_dir().join(name))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "{name} ends a line"
        );
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let record: Value = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(line)));
            assert_eq!(record["outcome"], "success");
            let key = (
                record["account"].as_str().expect("account").to_owned(),
                record["version"].as_u64().expect("version"),
            );
            assert!(seen.insert(key.clone()), "{key:?} twice");
        }
    }
    assert_eq!(
        seen.len(),
        12,
        "three rounds of four accounts, one line each: {seen:?}"
    );

    let (rows, stderr) = last_errors(&env).await;
    assert!(rows.values().all(Value::is_null), "{rows:?}");
    assert!(stderr.is_empty(), "{stderr}");
    let output = env.pwrotd(&["status", "--json"]).await;
    let rows: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    for row in rows.as_array().expect("rows") {
        assert_eq!(row["version"], 3, "{row}");
    }
}
