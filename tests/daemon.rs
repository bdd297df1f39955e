//! The real `pwrotd` binary against an in-process simulator: `rotate`, `run` with its signals,
//! lock and exit codes, the sink against the simulator's live state, and no password leaking.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use pwrotd::cloud::Service;
use pwrotd::sim::{Fault, SimServer};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::{self, KEY_ID, SECRET};

/// A state directory, a config pointing at a fresh simulator, and helpers to run pwrotd.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: SimServer,
    pub config: PathBuf,
}

/// The shared accounts, with schedules that keep them quiet unless asked.
fn accounts() -> String {
    format!(
        "\n[defaults]\nevery = \"1h\"\njitter = \"0s\"\nretry_after_failure = \"1s\"\n{}",
        common::ACCOUNTS
    )
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Env {
    pub async fn new(signature: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = common::start_sim().await;
        let config = dir.path().join("pwrotd.toml");
        let env = Env {
            dir,
            server,
            config,
        };
        env.write_config(
            signature,
            &format!("metrics_listen = \"127.0.0.1:{}\"", free_port()),
        );
        env
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_config(&self, signature: &str, daemon_extra: &str) {
        let endpoint = self.server.url().as_str().trim_end_matches('/').to_owned();
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n{daemon_extra}\n\n[cloud]\nregion_id = \"cn-hangzhou\"\nsignature = \"{signature}\"\ntimeout = \"3s\"\n[cloud.endpoints]\npolardb = \"{endpoint}\"\nrds = \"{endpoint}\"\n{}",
            self.state_dir().display(),
            accounts()
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn metrics_url(&self) -> String {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let addr = text
            .lines()
            .find_map(|l| l.strip_prefix("metrics_listen = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("metrics_listen");
        format!("http://{addr}")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pwrotd"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .kill_on_drop(true);
        command
    }

    pub async fn pwrotd(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("pwrotd finished within a minute")
            .expect("run pwrotd")
    }

    /// Waits until the daemon's `/healthz` answers 200: its signal handlers are in place.
    pub async fn wait_ready(&self) {
        let url = format!("{}/healthz", self.metrics_url());
        for _ in 0..300 {
            if get(&url).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the daemon never became ready");
    }

    pub fn start_daemon(&self) -> Child {
        self.command(&["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pwrotd run")
    }

    pub fn sink(&self, account: &str) -> Option<Value> {
        let path = self
            .state_dir()
            .join("secrets")
            .join(format!("{account}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).expect("the sink file is JSON"))
    }

    pub fn version(&self, account: &str) -> Option<u64> {
        self.sink(account)?["current"]["version"].as_u64()
    }

    pub fn live(&self, service: Service, resource: &str, account: &str) -> Option<String> {
        let a = self.server.sim.account(service, resource, account)?;
        a.password.map(|p| p.expose().to_owned())
    }

    /// Checks the sink's current password of every account against the simulator.
    pub fn assert_in_sync(&self) {
        for (name, service, resource, user) in [
            ("orders-app", Service::PolarDb, "pc-test0001", "app"),
            ("edge-app", Service::PolarDb, "pc-test0002", "edge"),
            ("admin", Service::PolarDb, "pc-test0001", "root_admin"),
            ("billing", Service::Rds, "rm-test0001", "billing"),
        ] {
            let sink = self
                .sink(name)
                .unwrap_or_else(|| panic!("{name} has a sink file"));
            assert!(sink["pending"].is_null(), "{name} is left pending");
            assert_eq!(
                sink["current"]["password"].as_str(),
                self.live(service, resource, user).as_deref(),
                "{name}: the sink's current password is not the database's"
            );
        }
    }

    /// Every password the sink knows, current, pending and previous.
    pub fn all_passwords(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in ["orders-app", "edge-app", "admin", "billing"] {
            let Some(sink) = self.sink(name) else {
                continue;
            };
            for v in [&sink["current"], &sink["pending"]] {
                if let Some(p) = v["password"].as_str() {
                    out.push(p.to_owned());
                }
            }
            for v in sink["previous"].as_array().into_iter().flatten() {
                out.push(
                    v["password"]
                        .as_str()
                        .expect("a previous password")
                        .to_owned(),
                );
            }
        }
        out
    }
}

/// Polls `check` every 100 ms for at most `limit`.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits at most 15 s for the daemon to stop, and asserts that it exited 0.
pub async fn exits_cleanly(daemon: &mut Child) {
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .expect("the daemon stops within its grace")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Scrapes `/metrics` every 100 ms until `ready` holds, for at most 30 s; returns the last
/// scrape, for the caller's assertion and its message.
pub async fn scrape_until(metrics: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..300 {
        text = get(&format!("{metrics}/metrics")).await.1;
        if ready(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text
}

pub async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_all_with_v1_and_v3_and_the_sink_matches_the_database() {
    for signature in ["v1", "v3"] {
        let env = Env::new(signature).await;
        for round in 1..=2u64 {
            let output = env.pwrotd(&["rotate", "--all"]).await;
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{signature}: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(stdout.lines().count(), 4, "one line per account: {stdout}");
            assert_eq!(stdout.matches(" success ").count(), 4, "{stdout}");
            env.assert_in_sync();
            for name in ["orders-app", "edge-app", "admin", "billing"] {
                assert_eq!(env.version(name), Some(round), "{name}");
            }
        }
        let orders = env.sink("orders-app").expect("sink");
        assert_eq!(orders["previous"].as_array().map(Vec::len), Some(1));
        assert_eq!(orders["format"], 1);
        assert_eq!(orders["current"]["username"], "app");
        let app = env
            .server
            .sim
            .account(Service::PolarDb, "pc-test0001", "app")
            .expect("app");
        assert_eq!(app.privileges.len(), 2, "grants applied");

        // The sink's modes, and the audit log: one line per attempt, an HMAC, no password.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&env.state_dir().join("secrets")), 0o700);
        assert_eq!(mode(&env.state_dir().join("secrets/billing.json")), 0o600);
        assert_eq!(mode(&env.state_dir().join("audit.key")), 0o600);
        let audit =
            std::fs::read_to_string(env.state_dir().join("audit.jsonl")).expect("audit log");
        assert_eq!(audit.lines().count(), 8);
        for line in audit.lines() {
            let record: Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(record["outcome"], "success");
            assert!(
                record["password_hmac"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("hmac-sha256:"))
            );
        }
        for password in env.all_passwords() {
            assert!(!audit.contains(&password), "the audit log holds a password");
        }

        let status = env.pwrotd(&["status", "--json"]).await;
        assert!(status.status.success(), "{status:?}");
        let rows: Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
        let rows = rows.as_array().expect("a list");
        assert_eq!(rows.len(), 4);
        for row in rows {
            assert_eq!(row["version"], 2, "{row}");
            assert_eq!(row["pending"], false, "{row}");
            assert!(
                row["last_success"].is_string() && row["next_due"].is_string(),
                "{row}"
            );
            assert!(
                row["age_seconds"].as_u64().is_some_and(|a| a < 600),
                "{row}"
            );
        }
        let table = env.pwrotd(&["status"]).await;
        assert_eq!(
            String::from_utf8_lossy(&table.stdout).lines().count(),
            5,
            "a header and four rows"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rotates_on_signals_refuses_a_second_daemon_survives_a_bad_reload_and_stops() {
    let env = Env::new("v3").await;
    let mut daemon = env.start_daemon();
    let metrics = env.metrics_url();
    let versions = |v: u64| {
        ["orders-app", "edge-app", "admin", "billing"]
            .iter()
            .all(|n| env.version(n) == Some(v))
    };
    eventually(
        Duration::from_secs(30),
        "never-rotated accounts to rotate at start",
        || versions(1),
    )
    .await;
    env.assert_in_sync();
    assert_eq!(get(&format!("{metrics}/healthz")).await.0, 200);

    // A second daemon on the same state directory is refused.
    let second = env.pwrotd(&["run"]).await;
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("holds the lock"),
        "{second:?}"
    );

    // SIGUSR1 rotates every account.
    signal(&daemon, "USR1");
    eventually(
        Duration::from_secs(30),
        "SIGUSR1 to rotate every account",
        || versions(2),
    )
    .await;
    env.assert_in_sync();

    // `rotate --account` goes through the daemon and rotates exactly that account.
    let output = env.pwrotd(&["rotate", "--account", "billing"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("billing") && stdout.contains("success") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert_eq!(env.version("billing"), Some(3));
    for name in ["orders-app", "edge-app", "admin"] {
        assert_eq!(env.version(name), Some(2), "{name} rotated too");
    }
    env.assert_in_sync();

    // An invalid config on SIGHUP keeps the old one; the daemon stays healthy.
    let good = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        good.replace("region_id = \"cn-hangzhou\"", "region_id = 42"),
    )
    .expect("write");
    signal(&daemon, "HUP");
    let mut text = scrape_until(&metrics, |t| {
        t.contains("pwrotd_config_reloads_total{outcome=\"failure\"} 1")
    })
    .await;
    assert!(
        text.contains("pwrotd_config_reloads_total{outcome=\"failure\"} 1"),
        "{text}"
    );
    assert_eq!(get(&format!("{metrics}/healthz")).await.0, 200);
    std::fs::write(&env.config, &good).expect("write");
    signal(&daemon, "HUP");
    text = scrape_until(&metrics, |t| {
        t.contains("pwrotd_config_reloads_total{outcome=\"success\"} 1")
    })
    .await;
    assert!(
        text.contains("pwrotd_config_reloads_total{outcome=\"success\"} 1"),
        "{text}"
    );

    // The documented metrics, with their labels, and no password among them.
    for series in [
        "pwrotd_rotations_total{account=\"billing\",outcome=\"success\"} 3",
        "pwrotd_rotation_duration_seconds_count",
        "pwrotd_last_success_timestamp_seconds{account=\"orders-app\"}",
        "pwrotd_next_rotation_timestamp_seconds{account=\"edge-app\"}",
        "pwrotd_pending_rotations 0",
        "pwrotd_api_requests_total{action=\"GrantAccountPrivilege\",code=\"OK\"}",
        "pwrotd_api_requests_total{action=\"ResetAccountPassword\",code=\"OK\"} 3",
        "pwrotd_accounts 4",
        "pwrotd_build_info{version=",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    for password in env.all_passwords() {
        assert!(!text.contains(&password), "a password in the metrics");
    }

    // SIGTERM: exit 0.
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
    let mut stderr = String::new();
    if let Some(mut pipe) = daemon.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    for password in env.all_passwords() {
        assert!(
            !stderr.contains(&password),
            "a password in the daemon's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_after_apply_stays_pending_and_the_next_start_resolves_it_with_the_same_password() {
    let env = Env::new("v1").await;
    env.server.sim.script_faults([Fault::DropAfterApply]);
    let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("pending"), "{stdout}");
    let sink = env.sink("orders-app").expect("sink");
    assert!(sink["current"].is_null());
    let pending = sink["pending"]["password"]
        .as_str()
        .expect("a pending password")
        .to_owned();
    assert_eq!(
        env.live(Service::PolarDb, "pc-test0001", "app").as_deref(),
        Some(pending.as_str()),
        "the dropped call was applied"
    );

    // Zonal: an ambiguous call, then a restart that re-applies with the same ClientToken.
    env.server.sim.script_faults([Fault::DropAfterApply]);
    let output = env.pwrotd(&["rotate", "--account", "edge-app"]).await;
    assert_eq!(output.status.code(), Some(1));
    let edge_pending = env.sink("edge-app").expect("sink")["pending"]["password"]
        .as_str()
        .expect("pending")
        .to_owned();

    let mut daemon = env.start_daemon();
    eventually(
        Duration::from_secs(30),
        "the pending passwords to be resolved",
        || {
            ["orders-app", "edge-app", "admin", "billing"]
                .iter()
                .all(|n| env.version(n) == Some(1))
        },
    )
    .await;
    env.assert_in_sync();
    assert_eq!(
        env.sink("orders-app").expect("sink")["current"]["password"].as_str(),
        Some(pending.as_str())
    );
    assert_eq!(
        env.sink("edge-app").expect("sink")["current"]["password"].as_str(),
        Some(edge_pending.as_str())
    );
    let edge = env
        .server
        .sim
        .account(Service::PolarDb, "pc-test0002", "edge")
        .expect("edge");
    assert_eq!(
        edge.changes, 1,
        "the ClientToken made the re-application a replay"
    );
    let audit = std::fs::read_to_string(env.state_dir().join("audit.jsonl")).expect("audit");
    assert_eq!(
        audit.matches("\"outcome\":\"pending\"").count(),
        2,
        "{audit}"
    );
    signal(&daemon, "TERM");
    exits_cleanly(&mut daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_clears_pending_and_keeps_the_old_password() {
    let env = Env::new("v1").await;
    assert!(env.pwrotd(&["rotate", "--all"]).await.status.success());
    let before = env.sink("billing").expect("sink");
    // The account disappears from the cloud: a permanent failure.
    let sim = &env.server.sim;
    let live = env.live(Service::Rds, "rm-test0001", "billing");
    std::fs::write(
        &env.config,
        std::fs::read_to_string(&env.config)
            .expect("config")
            .replace(
                "account_name = \"billing\"",
                "account_name = \"billing_gone\"",
            ),
    )
    .expect("write");
    // The sink file belongs to the old account name: refused, untouched, no API call.
    let requests = sim.stats().requests;
    let output = env.pwrotd(&["rotate", "--account", "billing"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("refused"),
        "{output:?}"
    );
    assert_eq!(
        sim.stats().requests,
        requests,
        "an API call was made for a refused account"
    );
    assert_eq!(
        env.sink("billing").expect("sink"),
        before,
        "the refused file was changed"
    );

    // With the sink moved away, the unknown account fails permanently and nothing stays pending.
    std::fs::rename(
        env.state_dir().join("secrets/billing.json"),
        env.dir.path().join("billing.json.bak"),
    )
    .expect("move");
    let output = env.pwrotd(&["rotate", "--account", "billing"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("InvalidAccountName.NotFound") && stdout.contains("failure"),
        "{stdout}"
    );
    let sink = env.sink("billing").expect("sink");
    assert!(
        sink["pending"].is_null() && sink["current"].is_null(),
        "{sink}"
    );
    assert_eq!(
        env.live(Service::Rds, "rm-test0001", "billing"),
        live,
        "the old password changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_loose_sink_file_is_refused_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("v1").await;
    assert!(
        env.pwrotd(&["rotate", "--account", "orders-app"])
            .await
            .status
            .success()
    );
    let path = env.state_dir().join("secrets/orders-app.json");
    let text = std::fs::read_to_string(&path).expect("sink");
    for (what, contents, mode) in [
        ("truncated", &text[..text.len() / 2], 0o600),
        (
            "wrong format",
            &text.replace("\"format\": 1", "\"format\": 2")[..],
            0o600,
        ),
        ("loose mode", &text[..], 0o644),
    ] {
        std::fs::write(&path, contents).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let requests = env.server.sim.stats().requests;
        let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
        assert_eq!(output.status.code(), Some(1), "{what}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("refused"),
            "{what}: {output:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("sink"),
            contents,
            "{what}: overwritten"
        );
        assert_eq!(
            env.server.sim.stats().requests,
            requests,
            "{what}: an API call was made"
        );
        let status = env.pwrotd(&["status"]).await;
        assert_eq!(
            status.status.code(),
            Some(1),
            "{what}: status should flag the sink"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_exit_2_naming_the_key() {
    let env = Env::new("v1").await;
    std::fs::write(
        &env.config,
        "[daemon]\nmax_concurrent = 0\n[cloud]\nregion_id = \"cn-hangzhou\"\n",
    )
    .expect("write");
    for command in [&["run"][..], &["rotate", "--all"], &["status"], &["check"]] {
        let output = env.pwrotd(command).await;
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(":2: daemon.max_concurrent"),
            "{command:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_reaches_stdout_stderr_or_the_audit_log_at_trace() {
    let env = Env::new("v1").await;
    env.server.sim.script_faults([
        Fault::Throttle,
        Fault::DropAfterApply,
        Fault::Garbage,
        Fault::ServerError,
    ]);
    let mut outputs = String::new();
    for _ in 0..3 {
        let output = env
            .command(&["rotate", "--all"])
            .env("RUST_LOG", "trace")
            .output()
            .await
            .expect("run");
        outputs.push_str(&String::from_utf8_lossy(&output.stdout));
        outputs.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    let status = env
        .command(&["status", "--json"])
        .output()
        .await
        .expect("status");
    outputs.push_str(&String::from_utf8_lossy(&status.stdout));
    assert!(outputs.contains("TRACE"), "trace logging was not on");
    let audit = std::fs::read_to_string(env.state_dir().join("audit.jsonl")).expect("audit");
    let passwords = env.all_passwords();
    assert!(passwords.len() >= 8, "{}", passwords.len());
    for password in passwords {
        let encoded = pwrotd::cloud::sign::percent_encode(&password);
        for form in [password.as_str(), encoded.as_str()] {
            assert!(!outputs.contains(form), "a password in the output");
            assert!(!audit.contains(form), "a password in the audit log");
        }
    }
    assert!(
        !outputs.contains(SECRET)
            && !outputs.contains(&*pwrotd::cloud::sign::percent_encode(SECRET))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_files_follow_each_success() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new("v1").await;
    let out = env.dir.path().join("app");
    std::fs::create_dir(&out).expect("mkdir");
    let gid = std::fs::metadata(env.dir.path()).expect("stat").gid();
    let text = std::fs::read_to_string(&env.config).expect("config").replace(
        "grants = [",
        &format!(
            "render = [{{ format = \"env\", path = \"{0}/db.env\", mode = \"0640\", group = \"{gid}\" }}, {{ format = \"json\", path = \"{0}/db.json\" }}, {{ format = \"raw\", path = \"{0}/db.pw\" }}]\ngrants = [",
            out.display()
        ),
    );
    std::fs::write(&env.config, text).expect("write");
    for _ in 0..2 {
        let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
        assert!(output.status.success(), "{output:?}");
        let sink = env.sink("orders-app").expect("sink");
        let password = sink["current"]["password"].as_str().expect("current");
        let version = sink["current"]["version"].as_u64().expect("version");
        let env_file = std::fs::read_to_string(out.join("db.env")).expect("env file");
        assert_eq!(
            env_file,
            format!(
                "PWROTD_USERNAME='app'\nPWROTD_PASSWORD='{password}'\nPWROTD_VERSION={version}\n"
            )
        );
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("db.json")).expect("json"))
                .expect("JSON");
        assert_eq!(
            (json["password"].as_str(), json["username"].as_str()),
            (Some(password), Some("app"))
        );
        assert_eq!(
            std::fs::read_to_string(out.join("db.pw")).expect("raw"),
            password
        );
        let meta = std::fs::metadata(out.join("db.env")).expect("stat");
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.gid()),
            (0o640, gid)
        );
        assert_eq!(
            std::fs::metadata(out.join("db.pw"))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    // A render file that cannot be written fails the rotation loudly; the sink stays right.
    std::fs::remove_dir_all(&out).expect("rm");
    let output = env.pwrotd(&["rotate", "--account", "orders-app"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("RENDER FILES FAILED"),
        "{output:?}"
    );
    let sink = env.sink("orders-app").expect("sink");
    assert_eq!(
        sink["current"]["password"].as_str(),
        env.live(Service::PolarDb, "pc-test0001", "app").as_deref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_speaks_sd_notify() {
    let env = Env::new("v1").await;
    let socket_path = env.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let mut daemon = env
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    let mut receive_until = async |wanted: &str, seen: &mut String| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(wanted) {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {wanted} in {seen:?}"))
                .expect("recv");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    };
    receive_until("READY=1", &mut seen).await;
    receive_until("WATCHDOG=1", &mut seen).await;
    signal(&daemon, "HUP");
    receive_until("RELOADING=1", &mut seen).await;
    signal(&daemon, "TERM");
    receive_until("STOPPING=1", &mut seen).await;
    exits_cleanly(&mut daemon).await;
    assert!(
        seen.matches("READY=1").count() >= 2,
        "READY=1 again after the reload: {seen:?}"
    );
}
