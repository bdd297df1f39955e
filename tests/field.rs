//! What users and a hostile review met in the field, each through the real binary: idle
//! clients on the metrics port, requests for some accounts arriving together, a lock file or
//! state directory that is not what it seems, logs under systemd, a rename by reload, render
//! files that cannot be written, and root's CLI on a service's state directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::time::Duration;

use pwrotd::cloud::Service;
use serde_json::Value;

use crate::daemon::{Env, eventually, exits_cleanly, get, scrape_until, signal};

const ALL: [&str; 4] = ["orders-app", "edge-app", "admin", "billing"];

/// Starts a daemon and waits for every account's first rotation.
async fn running(env: &Env) -> tokio::process::Child {
    let daemon = env.start_daemon();
    env.wait_ready().await;
    eventually(Duration::from_secs(20), "the first rotations", || {
        ALL.iter().all(|n| env.version(n) == Some(1))
    })
    .await;
    daemon
}

/// Open descriptors of a process.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Clients that connect to the metrics port and send nothing cannot take the daemon's file
/// descriptors: the server holds a bounded number of connections and closes idle ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_metrics_clients_cannot_starve_the_daemon() {
    let env = Env::new("v1").await;
    let mut daemon = running(&env).await;
    let pid = daemon.id().expect("running");
    let before = open_files(pid);
    let addr = env.metrics_url().trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_files(pid);
    assert!(
        during < before + 64,
        "300 idle clients took {} descriptors (from {before} to {during})",
        during - before
    );
    // The CLI still reaches the daemon, and rotations still write their files.
    let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(env.version("orders-app"), Some(2));
    // The idle ones are closed once their header timeout passes; then /healthz answers.
    let first = &mut idle[0];
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::io::AsyncReadExt::read(first, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle client was not closed: {closed:?}"
    );
    drop(idle);
    let (status, body) = get(&format!("{}/healthz", env.metrics_url())).await;
    assert_eq!(status, 200, "{body}");
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// Two `rotate --account` runs at once each rotate exactly their account; no request for
/// some accounts becomes a rotation of all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_some_accounts_never_rotate_all() {
    let env = Env::new("v1").await;
    let mut daemon = running(&env).await;
    for round in 2..=6u64 {
        let (a, b) = tokio::join!(
            env.pwrotd(&["rotate", "--account", "orders-app"]),
            env.pwrotd(&["rotate", "--account", "billing"]),
        );
        assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
        assert_eq!(
            ALL.map(|n| env.version(n)),
            [Some(round), Some(1), Some(1), Some(round)],
            "round {round}"
        );
    }
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// The lock file is opened only in a checked state directory, never through a link.
#[tokio::test]
async fn the_lock_is_never_opened_through_a_link_or_in_an_open_directory() {
    let env = Env::new("v1").await;
    let state = env.state_dir();
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    std::os::unix::fs::symlink(&victim, state.join("pwrotd.lock")).expect("symlink");
    for args in [["run"].as_slice(), &["rotate", "--all"]] {
        let output = env.pwrotd(args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "precious\n",
            "{args:?}: the lock followed a link"
        );
    }
    std::fs::remove_file(state.join("pwrotd.lock")).expect("rm");

    // A state directory others can enter: refused before anything is created in it.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = env.pwrotd(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("0755"),
        "{output:?}"
    );
    assert!(
        !state.join("pwrotd.lock").exists(),
        "a lock file was created"
    );
}

/// Logs carry no colour escapes when stderr is not a terminal; under systemd each line starts
/// with its syslog priority, so that `journalctl -p warning` finds the warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_for_the_journal_carry_priorities_and_no_escapes() {
    let env = Env::new("v1").await;
    for journal in [false, true] {
        let log = env.dir.path().join(format!("stderr-{journal}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let meta = file.metadata().expect("stat");
        let mut command = env.command(&["run"]);
        command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        if journal {
            command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        // A pending password left by an earlier run gives a warning at start.
        let mut daemon = command.spawn().expect("run");
        env.wait_ready().await;
        eventually(Duration::from_secs(20), "the rotations", || {
            ALL.iter().all(|n| env.version(n).is_some())
        })
        .await;
        signal(&daemon, "HUP");
        let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
        assert!(output.status.success(), "{output:?}");
        signal(&daemon, "TERM");
        exits_cleanly(&mut daemon).await;
        let text = std::fs::read_to_string(&log).expect("read log");
        assert!(!text.contains('\u{1b}'), "escapes in the log:\n{text}");
        assert!(text.contains("pwrotd is running"), "{text}");
        for line in text.lines() {
            let prefixed = ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p));
            assert_eq!(prefixed, journal, "{line}");
        }
        if journal {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("<6>") && l.contains("config reloaded")),
                "{text}"
            );
        }
    }
}

/// A reload that renames an account: the new name takes over the old name's secret file and
/// keeps its schedule. No rotation happens, and the old file is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_account_takes_over_its_file_on_reload() {
    let env = Env::new("v1").await;
    let mut daemon = running(&env).await;
    let before = env.sink("orders-app").expect("sink");
    let changes = || {
        env.server
            .sim
            .account(Service::PolarDb, "pc-test0001", "app")
            .expect("app")
            .changes
    };
    let changed = changes();
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replace("name = \"orders-app\"", "name = \"orders-renamed\""),
    )
    .expect("write");
    signal(&daemon, "HUP");
    eventually(Duration::from_secs(10), "the file taken over", || {
        env.sink("orders-renamed").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.sink("orders-renamed").expect("sink");
    assert_eq!(after["current"], before["current"]);
    assert_eq!(after["account"], "orders-renamed");
    assert!(
        env.sink("orders-app").is_none(),
        "the old file is still there"
    );
    assert_eq!(changes(), changed, "the rename rotated the password");
    let metrics = scrape_until(&env.metrics_url(), |t| t.contains("orders-renamed")).await;
    assert!(
        metrics.contains("pwrotd_last_success_timestamp_seconds{account=\"orders-renamed\"}"),
        "{metrics}"
    );
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// A render file that cannot be written is retried as a render, never as a rotation, and the
/// file appears once it can be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_render_file_never_causes_another_rotation() {
    let env = Env::new("v1").await;
    let out = env.dir.path().join("render");
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replacen(
            "grants = [",
            &format!(
                "render = [{{ format = \"raw\", path = \"{}/db.pw\" }}]\ngrants = [",
                out.display()
            ),
            1,
        ),
    )
    .expect("write");
    let mut daemon = env.start_daemon();
    env.wait_ready().await;
    let metrics = env.metrics_url();
    let failed = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("pwrotd_render_failures_total{account=\"orders-app\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // retry_after_failure is 1 s: retries after 1, 2 and 4 s.
    let text = scrape_until(&metrics, |t| failed(t) >= 3).await;
    assert!(failed(&text) >= 3, "{text}");
    let app = env
        .server
        .sim
        .account(Service::PolarDb, "pc-test0001", "app")
        .expect("app");
    assert_eq!(app.changes, 1, "render failures rotated the password again");
    assert_eq!(env.version("orders-app"), Some(1));
    std::fs::create_dir(&out).expect("mkdir");
    eventually(Duration::from_secs(20), "the render file", || {
        out.join("db.pw").exists()
    })
    .await;
    let sink = env.sink("orders-app").expect("sink");
    assert_eq!(
        std::fs::read_to_string(out.join("db.pw")).expect("read"),
        sink["current"]["password"].as_str().expect("current")
    );
    let app = env
        .server
        .sim
        .account(Service::PolarDb, "pc-test0001", "app")
        .expect("app");
    assert_eq!(app.changes, 1);
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// Root's `pwrotd rotate` while the service is stopped hands every file it creates to the
/// state directory's owner; the service, running as that user, then uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_rotate_leaves_files_the_service_can_use() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (CI runs as root)");
    }
    const SERVICE: u32 = 4242;
    let env = Env::new("v1").await;
    let state = env.state_dir();
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(&state, Some(SERVICE), Some(SERVICE)).expect("chown");
    // The service reads its config; the test's directories are root's 0700.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let output = env.pwrotd(&["rotate", "--all"]).await;
    assert!(output.status.success(), "{output:?}");
    let mut owners = Vec::new();
    for entry in walk(&state) {
        let meta = std::fs::symlink_metadata(&entry).expect("stat");
        if meta.uid() != SERVICE {
            owners.push((entry.display().to_string(), meta.uid()));
        }
    }
    assert!(owners.is_empty(), "files left to another user: {owners:?}");

    // The service, as its own user, rotates with them.
    let mut daemon = env.command(&["run"]);
    let daemon = daemon.as_std_mut().get_program().to_owned();
    let status = tokio::process::Command::new("setpriv")
        .args([
            &format!("--reuid={SERVICE}"),
            &format!("--regid={SERVICE}"),
            "--clear-groups",
            "--",
        ])
        .arg(daemon)
        .args(["rotate", "--all", "--config"])
        .arg(&env.config)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::common::KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", crate::common::SECRET)
        .output()
        .await
        .expect("setpriv");
    assert!(status.status.success(), "{status:?}");
    for name in ALL {
        assert_eq!(env.version(name), Some(2), "{name}");
    }
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// docs/protocol.md#failure-rules: a change the API applied and then answered with an error keeps its pending
/// password, whatever the later attempts said (here: throttled to the last attempt), for every
/// code that may have been applied and every API. The next rotation resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_answered_with_an_error_keeps_its_pending_password() {
    use pwrotd::sim::{Fault, FaultCode};
    let env = Env::new("v1").await;
    let accounts = [
        ("orders-app", Service::PolarDb, "pc-test0001", "app"),
        ("edge-app", Service::PolarDb, "pc-test0002", "edge"),
        ("admin", Service::PolarDb, "pc-test0001", "root_admin"),
        ("billing", Service::Rds, "rm-test0001", "billing"),
    ];
    for code in FaultCode::MAY_HAVE_BEEN_APPLIED {
        // The client retries server-side failures (5 attempts by default), never the others.
        let retried = matches!(
            code,
            FaultCode::ServiceUnavailable
                | FaultCode::InternalError
                | FaultCode::LockTimeout
                | FaultCode::DatabaseConnectError
        );
        for (name, service, resource, user) in accounts {
            let before = env.sink(name).map(|s| s["current"].clone());
            let mut script = vec![Fault::ErrorAfterApply(code)];
            if retried {
                script.extend([Fault::Throttle; 4]);
            }
            env.server.sim.script_faults(script);
            let output = env.pwrotd(&["rotate", "--account", name]).await;
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(output.status.code(), Some(1), "{code:?} {name}: {stdout}");
            assert!(stdout.contains(" pending "), "{code:?} {name}: {stdout}");
            let sink = env.sink(name).expect("sink");
            assert_eq!(
                sink["pending"]["password"].as_str(),
                env.live(service, resource, user).as_deref(),
                "{code:?} {name}: the database holds a password the sink does not: {stdout}"
            );
            assert_eq!(Some(sink["current"].clone()), before.or(Some(Value::Null)));
            // Resolved by the next rotation: the same password again, then promoted.
            let output = env.pwrotd(&["rotate", "--account", name]).await;
            assert!(output.status.success(), "{code:?} {name}: {output:?}");
            let sink = env.sink(name).expect("sink");
            assert!(sink["pending"].is_null());
            assert_eq!(
                sink["current"]["password"].as_str(),
                env.live(service, resource, user).as_deref(),
                "{code:?} {name}"
            );
        }
    }
}

/// Counts the connections a listener receives, and keeps what they sent.
async fn recorder() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
                log.lock().unwrap().push(buf[..n].to_vec());
            });
        }
    });
    (addr, seen)
}

/// docs/protocol.md#failure-rules: `http://` is for loopback only, and never goes through a proxy, whatever
/// HTTP_PROXY or ALL_PROXY say: the proxy would see the form body and its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_never_go_through_a_proxy() {
    let env = Env::new("v1").await;
    let (proxy, seen) = recorder().await;
    let url = format!("http://{proxy}");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        env.command(&["rotate", "--account", "orders-app"])
            .env("HTTP_PROXY", &url)
            .env("http_proxy", &url)
            .env("ALL_PROXY", &url)
            .env("all_proxy", &url)
            .env("HTTPS_PROXY", &url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output(),
    )
    .await
    .expect("in time")
    .expect("run");
    assert!(output.status.success(), "{output:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "a proxy saw a loopback request"
    );
}

/// HTTPS_PROXY serves https endpoints as a CONNECT tunnel: the proxy sees the address and
/// TLS, never the form body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_goes_through_https_proxy_as_a_tunnel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new("v1").await;
    // The API, over TLS with the test CA: every call succeeds.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    let acceptor = crate::transport::tls_acceptor();
    tokio::spawn(async move {
        while let Ok((stream, _)) = api.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 65536];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"RequestId":"TUNNELLED"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    // A CONNECT proxy that keeps every byte it relays from the client.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let relayed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let log = relayed.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = proxy.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n")
                    && client.read(&mut byte).await.is_ok_and(|n| n == 1)
                {
                    head.push(byte[0]);
                }
                log.lock().unwrap().extend_from_slice(&head);
                let line = String::from_utf8_lossy(&head).to_string();
                let Some(target) = line
                    .strip_prefix("CONNECT ")
                    .and_then(|l| l.split_whitespace().next())
                else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let (mut cr, mut cw) = client.split();
                let (mut ur, mut uw) = upstream.split();
                let up = async {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = uw.shutdown().await;
                };
                let down = tokio::io::copy(&mut ur, &mut cw);
                let _ = tokio::join!(up, down);
            });
        }
    });
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem");
    let text = std::fs::read_to_string(&env.config).expect("config");
    let endpoint = env.server.url().as_str().trim_end_matches('/').to_owned();
    let text = text
        .replace(&endpoint, &format!("https://{api_addr}"))
        .replace(
            "timeout = \"3s\"",
            &format!("timeout = \"3s\"\nca_file = \"{ca}\""),
        );
    std::fs::write(&env.config, text).expect("write");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        env.command(&["rotate", "--account", "billing"])
            .env("HTTPS_PROXY", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output(),
    )
    .await
    .expect("in time")
    .expect("run");
    assert!(output.status.success(), "{output:?}");
    let relayed = relayed.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&relayed);
    assert!(
        text.starts_with(&format!("CONNECT {api_addr} ")),
        "no tunnel: {text:?}"
    );
    let sink = env.sink("billing").expect("sink");
    let password = sink["current"]["password"].as_str().expect("current");
    assert!(
        !relayed
            .windows(password.len())
            .any(|w| w == password.as_bytes()),
        "the proxy saw the password"
    );
    assert!(
        !text.contains("AccountPassword"),
        "the proxy saw the form body"
    );
}

/// docs/operations.md#metrics: every per-account series exists from the start, at 0, so that an
/// `increase(...)` alert sees the first failure; `next_rotation` and `status` show when the
/// daemon will really try next (a failing account's retry, not its schedule); a pending
/// password shows per account. `status` without a state directory is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_tells_the_truth_from_the_start() {
    let env = Env::new("v1").await;
    let output = env.pwrotd(&["status"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "no state directory: {output:?}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("state directory"),
        "{output:?}"
    );

    // Every request throttled: the first rotations fail after their retries.
    env.server.sim.set_fault_rates(pwrotd::sim::FaultRates {
        throttle: 1.0,
        ..Default::default()
    });
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replace(
            "retry_after_failure = \"1s\"",
            "retry_after_failure = \"10m\"",
        ),
    )
    .expect("write");
    let mut daemon = env.start_daemon();
    env.wait_ready().await;
    let metrics = env.metrics_url();
    let first = get(&format!("{metrics}/metrics")).await.1;
    for name in ALL {
        for series in [
            format!("pwrotd_rotations_total{{account=\"{name}\",outcome=\"failure\"}}"),
            format!("pwrotd_rotations_total{{account=\"{name}\",outcome=\"success\"}}"),
            format!("pwrotd_account_pending{{account=\"{name}\"}}"),
            format!("pwrotd_render_failures_total{{account=\"{name}\"}}"),
            format!("pwrotd_hook_failures_total{{account=\"{name}\"}}"),
        ] {
            assert!(
                first.contains(&series),
                "{series} is missing at start:\n{first}"
            );
        }
    }
    let failed = |t: &str| {
        ALL.iter().all(|n| {
            t.contains(&format!(
                "pwrotd_rotations_total{{account=\"{n}\",outcome=\"failure\"}} 1"
            ))
        })
    };
    let text = scrape_until(&metrics, failed).await;
    assert!(failed(&text), "{text}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for name in ALL {
        let next: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "pwrotd_next_rotation_timestamp_seconds{{account=\"{name}\"}} "
                ))
            })
            .and_then(|v| v.parse().ok())
            .expect("next rotation");
        // The retry in 10 minutes, not the schedule's hour.
        assert!(
            (now + 500.0..now + 700.0).contains(&next),
            "{name}: next {next}, now {now}"
        );
    }
    let status = env.pwrotd(&["status", "--json"]).await;
    let rows: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    for row in rows.as_array().expect("rows") {
        assert_eq!(row["daemon"], true, "{row}");
        assert_eq!(row["failures"], 1, "{row}");
        let next =
            humantime::parse_rfc3339(row["next_due"].as_str().expect("next_due")).expect("a time");
        let ahead = next
            .duration_since(std::time::SystemTime::now())
            .expect("ahead")
            .as_secs();
        assert!((500..700).contains(&ahead), "{row}");
    }
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// docs/operations.md#hooks: `on_change` hooks run after a rotation and after a re-render, once per burst,
/// with the account, version and user and nothing else of pwrotd's environment; a failing
/// hook is counted and changes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_tell_applications_once_per_burst() {
    let env = Env::new("v1").await;
    let log = env.dir.path().join("hook.log");
    let out = env.dir.path().join("render");
    std::fs::create_dir(&out).expect("mkdir");
    let hook = format!(
        "on_change = [[\"/bin/sh\", \"-c\", \"env | grep -E '^(PWROTD|ALIBABA)' | sort | tr '\\\\n' ' ' >> {0}; echo >> {0}\"], [\"/bin/false\"]]",
        log.display()
    );
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replacen("grants = [", &format!("{hook}\ngrants = ["), 1),
    )
    .expect("write");
    let mut daemon = running(&env).await;
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    eventually(
        Duration::from_secs(10),
        "the hook after the first rotation",
        || lines().len() == 1,
    )
    .await;
    assert_eq!(
        lines()[0].trim(),
        "PWROTD_ACCOUNT=orders-app PWROTD_USERNAME=app PWROTD_VERSION=1"
    );
    // A render entry added by reload is written at once, and the hook runs for it.
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replacen(
            "grants = [",
            &format!(
                "render = [{{ format = \"raw\", path = \"{}/db.pw\" }}]\ngrants = [",
                out.display()
            ),
            1,
        ),
    )
    .expect("write");
    signal(&daemon, "HUP");
    eventually(Duration::from_secs(10), "the render file", || {
        out.join("db.pw").exists()
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the hook after the re-render",
        || lines().len() == 2,
    )
    .await;
    // A rotation and the re-render right after it: one burst, one run.
    let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
    assert!(output.status.success(), "{output:?}");
    eventually(
        Duration::from_secs(10),
        "the hook after the rotation",
        || lines().len() == 3,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lines().len(), 3, "{:?}", lines());
    assert!(lines()[2].contains("PWROTD_VERSION=2"), "{:?}", lines());
    let password = env.sink("orders-app").expect("sink")["current"]["password"]
        .as_str()
        .expect("current")
        .to_owned();
    let all = std::fs::read_to_string(&log).expect("log");
    assert!(
        !all.contains(&password) && !all.contains("ALIBABA"),
        "{all}"
    );
    let text = scrape_until(&env.metrics_url(), |t| {
        t.contains("pwrotd_hook_failures_total{account=\"orders-app\"} 3")
    })
    .await;
    assert!(
        text.contains("pwrotd_hook_failures_total{account=\"orders-app\"} 3"),
        "{text}"
    );
    assert_eq!(
        env.version("orders-app"),
        Some(2),
        "a hook caused a rotation"
    );
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// Runs `pwrotd adopt --account NAME` with `password` on standard input.
async fn adopt(env: &Env, name: &str, password: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = env
        .command(&["adopt", "--account", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adopt");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("in time")
        .expect("wait")
}

/// docs/operations.md#pwrotd-adopt: `pwrotd adopt` records the password an account has today, from standard
/// input, without an API call; the account then rotates on its schedule, not at start. It
/// works with the daemon stopped and, through its socket, while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_records_todays_password_and_leaves_the_first_rotation_to_the_schedule() {
    let env = Env::new("v1").await;
    let today = "Today-Pass-1234!";
    let output = adopt(&env, "billing", today).await;
    assert!(output.status.success(), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(today));
    let sink = env.sink("billing").expect("sink");
    assert_eq!(
        (
            sink["current"]["password"].as_str(),
            sink["current"]["version"].as_u64()
        ),
        (Some(today), Some(1))
    );
    assert_eq!(env.server.sim.stats().requests, 0, "adopt called the API");
    let mut daemon = env.start_daemon();
    env.wait_ready().await;
    eventually(
        Duration::from_secs(20),
        "the other accounts' first rotations",
        || {
            ["orders-app", "edge-app", "admin"]
                .iter()
                .all(|n| env.version(n) == Some(1))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.version("billing"),
        Some(1),
        "an adopted account rotated at start"
    );

    // While the daemon runs: through its socket, and again no rotation.
    let later = "Later-Pass-5678!";
    let output = adopt(&env, "billing", later).await;
    assert!(output.status.success(), "{output:?}");
    let sink = env.sink("billing").expect("sink");
    assert_eq!(
        (
            sink["current"]["password"].as_str(),
            sink["current"]["version"].as_u64()
        ),
        (Some(later), Some(2))
    );
    assert_eq!(sink["previous"][0]["password"].as_str(), Some(today));
    let audit = std::fs::read_to_string(env.state_dir().join("audit.jsonl")).expect("audit");
    assert!(!audit.contains(today) && !audit.contains(later));
    assert_eq!(audit.matches("\"settled\":\"adopt\"").count(), 2, "{audit}");
    // An unknown account names the valid ones.
    let output = adopt(&env, "nope", later).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("orders-app"));
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// A reload that changes `metrics_listen` serves on the new address and stops the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_metrics_server() {
    let env = Env::new("v1").await;
    let mut daemon = running(&env).await;
    let old = env.metrics_url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let text = std::fs::read_to_string(&env.config).expect("config");
    let old_addr = old.trim_start_matches("http://");
    std::fs::write(
        &env.config,
        text.replace(old_addr, &format!("127.0.0.1:{port}")),
    )
    .expect("write");
    signal(&daemon, "HUP");
    let new = format!("http://127.0.0.1:{port}");
    eventually(
        Duration::from_secs(10),
        "metrics on the new address",
        || std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok(),
    )
    .await;
    assert_eq!(get(&format!("{new}/healthz")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(&format!("{old}/healthz")).await.0,
        0,
        "the old address still serves"
    );
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

/// A typo in `cluster_id`: the API refuses it (NotFound), nothing is applied, and the sink
/// file left behind holds no password. Once the config is fixed, that empty file is replaced
/// and the account rotates; a file that holds a password would be refused instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_typo_in_cluster_id_is_not_blocked_by_an_empty_file() {
    let env = Env::new("v1").await;
    let good = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, good.replace("pc-test0002", "pc-tset0002")).expect("write");
    let output = env.pwrotd(&["rotate", "--account", "edge-app"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("NotFound"),
        "{output:?}"
    );
    let empty = env.sink("edge-app").expect("a file is left");
    assert!(empty["current"].is_null() && empty["pending"].is_null());
    std::fs::write(&env.config, &good).expect("write");
    let output = env.pwrotd(&["rotate", "--account", "edge-app"]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(env.version("edge-app"), Some(1));
    assert_eq!(
        env.sink("edge-app").expect("sink")["current"]["password"].as_str(),
        env.live(Service::PolarDb, "pc-test0002", "edge").as_deref()
    );
    // A file with a password is never replaced by another resource's account.
    std::fs::write(&env.config, good.replace("pc-test0002", "pc-tset0002")).expect("write");
    let output = env.pwrotd(&["rotate", "--account", "edge-app"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("SinkMismatch")
            || String::from_utf8_lossy(&output.stdout).contains("belongs to"),
        "{output:?}"
    );
    assert_eq!(env.version("edge-app"), Some(1));
}

/// `check` tells the truth about the state directory: one that others can enter would be
/// refused at start, so `check` refuses it too (exit 2, naming `daemon.state_dir`).
#[tokio::test]
async fn check_refuses_a_state_directory_others_can_enter() {
    let env = Env::new("v1").await;
    let output = env.pwrotd(&["check"]).await;
    assert!(
        output.status.success(),
        "a missing state dir is created 0700: {output:?}"
    );
    std::fs::create_dir(env.state_dir()).expect("mkdir");
    std::fs::set_permissions(env.state_dir(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let output = env.pwrotd(&["check"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("daemon.state_dir") && stderr.contains("0755"),
        "{stderr}"
    );
}
