//! The proof that pwrotd never loses a password (RELIABILITY.md): deterministic crash points,
//! a kill -9 soak under faults, disk faults, and the invariant checked against the simulator's
//! live state after every death.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use pwrotd::cloud::Service;
use pwrotd::config::Config;
use pwrotd::sim::{Fault, FaultRates};
use serde_json::Value;

use crate::daemon::{Env, eventually, exits_cleanly, get, scrape_until, signal};

const ACCOUNTS: [(&str, Service, &str, &str); 4] = [
    ("orders-app", Service::PolarDb, "pc-test0001", "app"),
    ("edge-app", Service::PolarDb, "pc-test0002", "edge"),
    ("admin", Service::PolarDb, "pc-test0001", "root_admin"),
    ("billing", Service::Rds, "rm-test0001", "billing"),
];

/// The invariant: each account's live password is its sink's `current` or `pending`.
/// Returns how many accounts were found pending.
fn check_invariant(env: &Env, when: &str) -> usize {
    let mut pending = 0;
    for (name, service, resource, user) in ACCOUNTS {
        let live = env.live(service, resource, user);
        let sink = env.sink(name);
        let known: Vec<String> = sink
            .iter()
            .flat_map(|s| [&s["current"], &s["pending"]])
            .filter_map(|v| v["password"].as_str().map(str::to_owned))
            .collect();
        if sink.as_ref().is_some_and(|s| !s["pending"].is_null()) {
            pending += 1;
        }
        if let Some(live) = live {
            assert!(
                known.contains(&live),
                "{when}: {name}'s live password is neither the sink's current nor its pending"
            );
        }
    }
    pending
}

/// No temporary file is left beside the sink files.
fn assert_no_temp_files(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|n| !n.ends_with(".tmp")),
        "{leftovers:?}"
    );
}

fn with_render(env: &Env) -> std::path::PathBuf {
    let out = env.dir.path().join("render");
    std::fs::create_dir_all(&out).expect("mkdir");
    let text = std::fs::read_to_string(&env.config).expect("config").replace(
        "grants = [",
        &format!(
            "render = [{{ format = \"env\", path = \"{0}/a.env\" }}, {{ format = \"raw\", path = \"{0}/a.pw\" }}]\ngrants = [",
            out.display()
        ),
    );
    std::fs::write(&env.config, text).expect("write");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_keeps_the_invariant_and_converges_after_restart() {
    // `before_rename:1` is the pending write, `:2` the promotion, `:3` the first render file.
    const POINTS: [&str; 9] = [
        "after_pending",
        "before_rename:1",
        "after_send",
        "before_promote",
        "before_rename:2",
        "before_render",
        "during_render",
        "before_rename:3",
        "before_grants",
    ];
    let env = Env::new("v1").await;
    let render = with_render(&env);
    assert!(env.pwrotd(&["rotate", "--all"]).await.status.success());
    let mut deaths = 0;
    for point in POINTS {
        for (name, ..) in ACCOUNTS {
            let before = env.version(name).expect("rotated once");
            let output = env
                .command(&["rotate", "--account", name])
                .env("PWROTD_FAILPOINT", point)
                .output()
                .await
                .expect("run");
            let reached =
                name == "orders-app" || !["during_render", "before_rename:3"].contains(&point);
            if reached {
                assert_eq!(
                    output.status.signal(),
                    Some(9),
                    "{point} {name}: expected a kill -9, got {:?}",
                    output.status
                );
                deaths += 1;
            } else {
                assert!(output.status.success(), "{point} {name}: {output:?}");
            }
            check_invariant(&env, &format!("after dying at {point} ({name})"));

            // Restart: the next rotation resolves whatever the crash left.
            let output = env.pwrotd(&["rotate", "--account", name]).await;
            assert!(
                output.status.success(),
                "{point} {name}: restart failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            check_invariant(
                &env,
                &format!("after the restart following {point} ({name})"),
            );
            let sink = env.sink(name).expect("sink");
            assert!(sink["pending"].is_null(), "{point} {name}: still pending");
            assert!(
                env.version(name).expect("current") > before,
                "{point} {name}: no progress"
            );
            assert_no_temp_files(&env.state_dir().join("secrets"));
        }
        env.assert_in_sync();
        let current = env.sink("orders-app").expect("sink")["current"]["password"]
            .as_str()
            .expect("current")
            .to_owned();
        assert_eq!(
            std::fs::read_to_string(render.join("a.pw")).expect("render"),
            current,
            "{point}: stale render file"
        );
        assert_no_temp_files(&render);
    }
    assert_eq!(deaths, 4 * 7 + 2);
    // Grants converge too: the account that died before its grants has them after the restart.
    let app = env
        .server
        .sim
        .account(Service::PolarDb, "pc-test0001", "app")
        .expect("app");
    assert_eq!(app.privileges.len(), 2);
}

/// Starts and kills the daemon `kills` times at random instants, under faults, checking the
/// invariant after every death; then turns the faults off and checks that every account
/// converges. Returns the figures for RELIABILITY.md.
async fn soak(kills: usize) -> String {
    let env = Env::new("v1").await;
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("every = \"1h\"", "every = \"400ms\"")
        .replace(
            "retry_after_failure = \"1s\"",
            "retry_after_failure = \"150ms\"",
        )
        .replace("timeout = \"3s\"", "timeout = \"300ms\"")
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"1s\"\nmax_concurrent = 4",
        );
    std::fs::write(&env.config, text).expect("write");
    env.server.sim.set_fault_rates(FaultRates {
        throttle: 0.1,
        server_error: 0.1,
        lock_timeout: 0.05,
        drop_after_apply: 0.1,
        drop_before_apply: 0.05,
        garbage: 0.02,
        // Applied, then answered with any code that may have been applied (docs/protocol.md#failure-rules).
        error_after_apply: 0.1,
        latency: Duration::from_millis(5),
        ..FaultRates::default()
    });
    let started = Instant::now();
    let mut pending_seen = 0;
    for kill in 0..kills {
        let mut daemon = env
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pwrotd run");
        let wait = 30 + (pwrotd::random::jitter(Duration::from_millis(470))).as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        daemon.start_kill().expect("kill -9");
        let status = daemon.wait().await.expect("wait");
        assert!(
            status.signal() == Some(9) || status.success(),
            "kill {kill}: the daemon died on its own: {status:?}"
        );
        pending_seen += check_invariant(&env, &format!("kill {kill}"));
    }

    // Faults off, schedules long: the daemon resolves what the kills left, then rests.
    env.server.sim.set_fault_rates(FaultRates::default());
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("every = \"400ms\"", "every = \"1h\"");
    std::fs::write(&env.config, text).expect("write");
    let daemon = env.start_daemon();
    env.wait_ready().await;
    eventually(
        Duration::from_secs(30),
        "every account to converge once faults stop",
        || {
            ACCOUNTS.iter().all(|(name, service, resource, user)| {
                env.sink(name).is_some_and(|s: Value| {
                    s["pending"].is_null()
                        && s["current"]["password"].as_str()
                            == env.live(*service, resource, user).as_deref()
                })
            })
        },
    )
    .await;
    signal(&daemon, "TERM");
    let output = tokio::time::timeout(Duration::from_secs(15), daemon.wait_with_output())
        .await
        .expect("stops")
        .expect("wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    check_invariant(&env, "the end");
    env.assert_in_sync();

    let stats = env.server.sim.stats();
    let rotations: u64 = ACCOUNTS
        .iter()
        .map(|(n, ..)| env.version(n).unwrap_or(0))
        .sum();
    let fault = |c: &str| stats.faults.get(c).copied().unwrap_or(0);
    let after_apply: u64 = stats.error_after_apply.values().sum();
    format!(
        "kills {kills}, {:.0} s; rotations completed {rotations}; API requests {}; injected: throttled {}, 5xx {}, LockTimeout {}, dropped after apply {}, dropped before apply {}, garbage replies {}, applied then answered with an error {after_apply} ({:?}); kills that left a pending password {pending_seen}; lost passwords 0",
        started.elapsed().as_secs_f64(),
        stats.requests,
        fault("throttle"),
        fault("server_error"),
        fault("lock_timeout"),
        fault("drop_after_apply"),
        fault("drop_before_apply"),
        fault("garbage"),
        stats.error_after_apply,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_soak_bounded() {
    let figures = soak(60).await;
    println!("soak: {figures}");
}

/// The long soak for RELIABILITY.md:
/// `PWROTD_SOAK_KILLS=1000 cargo test --test integration kill_9_soak_long -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by hand for RELIABILITY.md"]
async fn kill_9_soak_long() {
    let kills = std::env::var("PWROTD_SOAK_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1000);
    let figures = soak(kills).await;
    println!("soak: {figures}");
}

/// A small tmpfs mounted for one test, unmounted when dropped. Needs root (CI runs as root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_owned()))
    }

    /// Makes `dir` read-only with a read-only bind mount over it, until the guard drops.
    fn read_only(dir: &Path) -> Tmpfs {
        let run = |args: &[&str]| {
            let status = std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .expect("mount");
            assert!(status.success(), "mount {args:?}");
        };
        run(&["--bind"]);
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(status.success(), "remount ro");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_disk_or_a_failing_fsync_means_no_api_call() {
    let env = Env::new("v1").await;
    let Some(disk) = Tmpfs::mount(&env.state_dir(), "512k") else {
        panic!(
            "cannot mount a tmpfs at {}: this test needs root (CI runs as root)",
            env.state_dir().display()
        );
    };
    let metrics = env.metrics_url();
    // Only the rotations this test triggers: no retry may start between its phases.
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace(
            "retry_after_failure = \"1s\"",
            "retry_after_failure = \"1h\"",
        );
    std::fs::write(&env.config, text).expect("write");
    let daemon = env.start_daemon();
    env.wait_ready().await;
    let count = |text: &str, outcome: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("pwrotd_rotations_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let failures = |text: &str| count(text, "failure");
    // Finished, grants included: a rotation is counted only when all of it is done.
    let mut text = scrape_until(&metrics, |t| count(t, "success") >= 4).await;
    assert_eq!(
        count(&text, "success"),
        4,
        "the first rotations did not finish:\n{text}"
    );
    assert!(ACCOUNTS.iter().all(|(n, ..)| env.version(n) == Some(1)));

    // A read-only secrets/: SIGUSR1 asks every account to rotate; each fails before any API call.
    let read_only = Tmpfs::read_only(&env.state_dir().join("secrets"));
    let requests = env.server.sim.stats().requests;
    signal(&daemon, "USR1");
    text = scrape_until(&metrics, |t| failures(t) >= 4).await;
    assert!(
        failures(&text) >= 4,
        "read-only: the failures do not show in the metrics:\n{text}"
    );
    assert_eq!(
        env.server.sim.stats().requests,
        requests,
        "read-only: an API call was made"
    );
    check_invariant(&env, "read-only");
    let (status, body) = get(&format!("{metrics}/healthz")).await;
    assert_eq!(status, 503, "read-only: /healthz: {body}");
    drop(read_only);
    assert_eq!(
        get(&format!("{metrics}/healthz")).await.0,
        200,
        "writable again"
    );

    // Full: SIGUSR1 again; every account fails before any API call.
    let filler = env.state_dir().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]);
    let requests = env.server.sim.stats().requests;
    signal(&daemon, "USR1");
    text = scrape_until(&metrics, |t| failures(t) >= 8).await;
    assert!(
        failures(&text) >= 8,
        "full: the failures do not show in the metrics:\n{text}"
    );
    assert_eq!(
        env.server.sim.stats().requests,
        requests,
        "full: an API call was made"
    );
    // The CLI's request reaches the daemon, which reports every account refused before any
    // API call; the CLI exits 1. /healthz says rotations cannot proceed.
    let output = env.pwrotd(&["rotate", "--all"]).await;
    assert_eq!(output.status.code(), Some(1), "full: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("refused, no API call made")
                && l.contains("No space left on device"))
            .count(),
        4,
        "{output:?}"
    );
    let (status, body) = get(&format!("{metrics}/healthz")).await;
    assert_eq!(status, 503, "full: /healthz: {body}");
    assert_eq!(
        env.server.sim.stats().requests,
        requests,
        "full: an API call was made"
    );
    check_invariant(&env, "full");
    std::fs::remove_file(&filler).expect("rm");
    assert_eq!(
        get(&format!("{metrics}/healthz")).await.0,
        200,
        "no longer full"
    );
    signal(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.wait_with_output())
        .await
        .expect("stops")
        .expect("wait");
    assert_eq!(status.status.code(), Some(0));

    // A failing fsync (injected: no filesystem here fails fsync on demand).
    let requests = env.server.sim.stats().requests;
    let output = env
        .command(&["rotate", "--account", "billing"])
        .env("PWROTD_FAILPOINT", "fsync=eio")
        .output()
        .await
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "fsync: {output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Input/output error"),
        "{output:?}"
    );
    assert_eq!(
        env.server.sim.stats().requests,
        requests,
        "fsync: an API call was made"
    );
    check_invariant(&env, "fsync");

    // Space again: everything converges.
    assert!(env.pwrotd(&["rotate", "--all"]).await.status.success());
    env.assert_in_sync();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_reported_without_its_message_and_the_invariant_holds() {
    let env = Env::new("v1").await;
    let output = env
        .command(&["rotate", "--account", "orders-app"])
        .env("PWROTD_FAILPOINT", "after_pending=panic")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("internal error (panic)"), "{stderr}");
    assert!(
        !stderr.contains("Pw-Secret-1234")
            && !String::from_utf8_lossy(&output.stdout).contains("Pw-Secret-1234"),
        "{stderr}"
    );
    check_invariant(&env, "after a panic");
    assert!(
        env.pwrotd(&["rotate", "--account", "orders-app"])
            .await
            .status
            .success()
    );
    check_invariant(&env, "after the panic's restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_accounts_with_20_percent_transient_faults_rotate_exactly_once() {
    let env = Env::new("v1").await;
    let mut text = std::fs::read_to_string(&env.config).expect("config");
    let start = text.find("[[account]]").expect("accounts");
    text.truncate(start);
    let text = text
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"5s\"\nmax_concurrent = 64",
        )
        .replace(
            "timeout = \"3s\"",
            "timeout = \"10s\"\nrequests_per_second = 100000\nmax_attempts = 10",
        );
    let mut accounts = String::new();
    for i in 0..5000 {
        accounts.push_str(&format!(
            "[[account]]\nname = \"acct-{i:04}\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-load{:03}\"\naccount_name = \"user{i:04}\"\n",
            i % 100
        ));
    }
    std::fs::write(&env.config, format!("{text}{accounts}")).expect("write");
    let config = Config::load(&env.config).expect("valid");
    env.server.sim.register_config(&config);
    env.server.sim.set_fault_rates(FaultRates {
        throttle: 0.1,
        server_error: 0.05,
        lock_timeout: 0.05,
        ..FaultRates::default()
    });

    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        env.command(&["rotate", "--all"]).output(),
    )
    .await
    .expect("5,000 rotations within ten minutes")
    .expect("run");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        stdout
            .lines()
            .filter(|l| !l.contains(" success "))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(stdout.lines().count(), 5000);
    let stats = env.server.sim.stats();
    let faults: u64 = ["Throttling.User", "ServiceUnavailable", "LockTimeout"]
        .iter()
        .map(|c| stats.by_code.get(*c).copied().unwrap_or(0))
        .sum();
    assert!(faults > 500, "the faults did not happen: {stats:?}");
    for account in &config.accounts {
        let live = env
            .server
            .sim
            .account(
                Service::PolarDb,
                &account.resource_id,
                &account.account_name,
            )
            .expect("registered");
        assert_eq!(
            live.changes, 1,
            "{} was not rotated exactly once",
            account.name
        );
        let sink = env.sink(&account.name).expect("a sink file");
        assert_eq!(sink["current"]["version"], 1);
        assert!(sink["pending"].is_null());
        assert_eq!(
            sink["current"]["password"].as_str(),
            live.password.as_ref().map(|p| p.expose()),
            "{}",
            account.name
        );
    }
    println!(
        "load: 5000 accounts, {faults} injected transient faults, {} API requests, {:.1} s",
        stats.requests,
        elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_run_at_trace_with_every_failure_class_leaks_no_password() {
    let env = Env::new("v3").await;
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("every = \"1h\"", "every = \"300ms\"\nkeep_versions = 100")
        .replace(
            "retry_after_failure = \"1s\"",
            "retry_after_failure = \"100ms\"",
        )
        .replace("timeout = \"3s\"", "timeout = \"300ms\"");
    // A permanent failure too: an account on a cluster the simulator does not know.
    let ghost = "[[account]]\nname = \"ghost\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-ghost\"\naccount_name = \"g\"\n";
    std::fs::write(&env.config, format!("{text}{ghost}")).expect("write");
    env.server.sim.set_fault_rates(FaultRates {
        throttle: 0.15,
        server_error: 0.1,
        lock_timeout: 0.1,
        drop_after_apply: 0.1,
        drop_before_apply: 0.05,
        garbage: 0.1,
        latency: Duration::from_millis(2),
        ..FaultRates::default()
    });
    // Every class at least once, whatever the random draws: the first requests meet these.
    env.server.sim.script_faults([
        Fault::Throttle,
        Fault::ServerError,
        Fault::LockTimeout,
        Fault::DropAfterApply,
        Fault::DropBeforeApply,
        Fault::Garbage,
    ]);
    let mut daemon = env
        .command(&["run"])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    // Drain both pipes while the daemon runs: at trace level it fills a pipe in moments, and a
    // full pipe would block its logging.
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut out).await;
            }
            out
        })
    };
    let stdout = drain(daemon.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(daemon.stderr.take().map(|p| Box::new(p) as _));
    env.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cmdline =
        std::fs::read(format!("/proc/{}/cmdline", daemon.id().expect("pid"))).expect("cmdline");
    let metrics = crate::daemon::get(&format!("{}/metrics", env.metrics_url()))
        .await
        .1;
    assert!(
        metrics.contains("pwrotd_rotations_total"),
        "the scrape failed"
    );
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout.await.expect("stdout")),
        String::from_utf8_lossy(&stderr.await.expect("stderr"))
    );
    let audit = std::fs::read_to_string(env.state_dir().join("audit.jsonl")).expect("audit");
    let stats = env.server.sim.stats();
    for code in [
        "OK",
        "Throttling.User",
        "ServiceUnavailable",
        "LockTimeout",
        "Dropped",
        "DroppedBeforeApply",
        "Garbage",
        "InvalidDBClusterId.NotFound",
    ] {
        assert!(
            stats.by_code.get(code).copied().unwrap_or(0) > 0,
            "no {code} happened: {stats:?}"
        );
    }
    assert!(
        logs.contains("TRACE") && logs.contains("ambiguous"),
        "trace logging or an ambiguous outcome missing"
    );
    let passwords = env.all_passwords();
    assert!(passwords.len() >= 10, "only {} passwords", passwords.len());
    let cmdline = String::from_utf8_lossy(&cmdline);
    for password in &passwords {
        let encoded = pwrotd::cloud::sign::percent_encode(password);
        for form in [password.as_str(), encoded.as_str()] {
            assert!(!logs.contains(form), "a password in the logs");
            assert!(!audit.contains(form), "a password in the audit log");
            assert!(!metrics.contains(form), "a password in the metrics");
            assert!(!cmdline.contains(form), "a password in the arguments");
        }
    }
    for secret in [
        crate::common::SECRET.to_owned(),
        pwrotd::cloud::sign::percent_encode(crate::common::SECRET).to_string(),
    ] {
        assert!(
            !logs.contains(&secret) && !metrics.contains(&secret),
            "the AccessKey secret leaked"
        );
    }
    check_invariant(&env, "after the leak run");
}
