//! Cluster mode (docs/cluster.md): three replicas of the real binary on loopback, a real
//! PostgreSQL started by `.ci/databases`, and the simulator with faults.
//!
//! Skipped, saying so, without `PWROTD_TEST_POSTGRES_ADMIN`; failed instead with
//! `PWROTD_REQUIRE_DATABASES=1`, as CI sets.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pwrotd::cloud::Service;
use pwrotd::cluster::key::StoreKey;
use pwrotd::cluster::store::Shared;
use pwrotd::sim::FaultRates;
use pwrotd::sink::SecretFile;
use sqlx::{Connection, Executor};
use tokio::process::{Child, Command};

use crate::common::{KEY_ID, SECRET};
use crate::daemon::{Env, eventually, get};

pub(crate) const ACCOUNTS: [(&str, Service, &str, &str); 4] = [
    ("orders-app", Service::PolarDb, "pc-test0001", "app"),
    ("edge-app", Service::PolarDb, "pc-test0002", "edge"),
    ("admin", Service::PolarDb, "pc-test0001", "root_admin"),
    ("billing", Service::Rds, "rm-test0001", "billing"),
];

/// The admin URL of the test PostgreSQL, or `None` (said on stderr) when there is none.
pub(crate) fn admin_url() -> Option<String> {
    match std::env::var("PWROTD_TEST_POSTGRES_ADMIN") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("PWROTD_REQUIRE_DATABASES").is_some() => {
            panic!("PWROTD_TEST_POSTGRES_ADMIN is not set, and PWROTD_REQUIRE_DATABASES is")
        }
        _ => {
            eprintln!(
                "SKIPPED: no PostgreSQL; run `eval \"$(.ci/databases start /tmp/pwrotd-db)\"` first"
            );
            None
        }
    }
}

/// A fresh database for one test's store: its URL (loopback, so without TLS).
async fn fresh_store(admin: &str) -> String {
    let name = format!("pwrotd_store_{}", pwrotd::random::hex_token::<6>().unwrap());
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("admin");
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').expect("a database in the URL").0;
    format!("{base}/{name}?sslmode=disable")
}

/// One replica: its own directory, config and state, the shared store and key.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) metrics: String,
    pub(crate) child: Option<Child>,
}

impl Replica {
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pwrotd"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("PWROTD_STORE_URL")
            .kill_on_drop(true);
        command
    }

    pub(crate) fn start(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("log");
        let child = self
            .command(&["run"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pwrotd run");
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().and_then(Child::id).expect("running") as i32
    }

    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal");
    }

    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let status = child.wait().await.expect("wait");
            assert!(
                status.signal() == Some(9) || status.success(),
                "{}: died on its own: {status:?}; log: {}",
                self.name,
                self.log()
            );
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = get(&format!("{}/metrics", self.metrics)).await;
        (status == 200).then_some(())?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub(crate) async fn leads(&self) -> bool {
        self.metric("pwrotd_leader").await == Some(1.0)
    }

    pub(crate) fn local(&self, account: &str) -> Option<serde_json::Value> {
        let path = self
            .state_dir()
            .join("secrets")
            .join(format!("{account}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Three replicas (or `n`) sharing a store, against one simulator.
pub(crate) struct Fleet {
    pub(crate) env: Env,
    pub(crate) url: String,
    pub(crate) key: String,
    pub(crate) replicas: Vec<Replica>,
    /// The test's own view of the store, to check the invariant.
    pub(crate) store: Shared,
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Fleet {
    pub(crate) async fn new(admin: &str, n: usize, tune: impl Fn(String) -> String) -> Fleet {
        let env = Env::new("v1").await;
        let url = fresh_store(admin).await;
        let key = StoreKey::generate().expect("key").to_base64().to_string();
        let base = tune(std::fs::read_to_string(&env.config).expect("config"));
        let mut replicas = Vec::new();
        for i in 0..n {
            let name = format!("replica-{i}");
            let dir = env.dir.path().join(&name);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let url_file = dir.join("store-url");
            let key_file = dir.join("store.key");
            write_private(&url_file, &url);
            write_private(&key_file, &key);
            let port = free_port();
            let text = base
                .replace(
                    &format!("state_dir = \"{}\"", env.state_dir().display()),
                    &format!("state_dir = \"{}\"", dir.join("state").display()),
                )
                .lines()
                .map(|l| {
                    if l.starts_with("metrics_listen") {
                        format!("metrics_listen = \"127.0.0.1:{port}\"")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let text = format!(
                "{text}\n\n[store]\nkind = \"postgresql\"\nurl_file = \"{}\"\nkey_file = \"{}\"\nlease = \"5s\"\nnode_name = \"{name}\"\n",
                url_file.display(),
                key_file.display()
            );
            let config = dir.join("pwrotd.toml");
            std::fs::write(&config, text).expect("config");
            replicas.push(Replica {
                name,
                dir,
                config,
                metrics: format!("http://127.0.0.1:{port}"),
                child: None,
            });
        }
        let store = Shared::open(
            &url,
            StoreKey::parse(key.as_bytes()).expect("key"),
            "test".into(),
            Duration::from_secs(5),
        )
        .await
        .expect("the test opens the store");
        Fleet {
            env,
            url,
            key,
            replicas,
            store,
        }
    }

    /// Waits until exactly one replica leads; returns its index.
    pub(crate) async fn leader(&self, limit: Duration) -> usize {
        let started = Instant::now();
        while started.elapsed() < limit {
            let mut leaders = Vec::new();
            for (i, r) in self.replicas.iter().enumerate() {
                if r.child.is_some() && r.leads().await {
                    leaders.push(i);
                }
            }
            match leaders[..] {
                [one] => return one,
                [] => {}
                _ => panic!("more than one replica says it leads: {leaders:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no replica leads within {limit:?}");
    }

    /// The store's records, decrypted.
    pub(crate) async fn records(&self) -> HashMap<String, SecretFile> {
        self.store
            .load_all()
            .await
            .expect("the store reads")
            .records
            .into_iter()
            .map(|(k, (_, f))| (k, f))
            .collect()
    }

    /// The invariant: each account's live password is the store's current or pending. A
    /// leader may be rotating while this looks, and no read of the store and the simulator
    /// together is atomic: the store is read before and after the databases, and the live
    /// password must be known to one of the two reads (a pending password is written before
    /// it is sent, so a live password the store never held is in neither). Returns the
    /// accounts pending in the first read.
    pub(crate) async fn check_invariant(&self, when: &str) -> usize {
        let before = self.records().await;
        let lives: Vec<Option<String>> = ACCOUNTS
            .iter()
            .map(|(_, service, resource, user)| self.env.live(*service, resource, user))
            .collect();
        let after = self.records().await;
        let known = |records: &HashMap<String, SecretFile>, name: &str| -> Vec<String> {
            records
                .get(name)
                .iter()
                .flat_map(|r| {
                    r.current
                        .iter()
                        .map(|c| c.password.expose().to_owned())
                        .chain(r.pending.iter().map(|p| p.password.expose().to_owned()))
                })
                .collect()
        };
        // Versions only, never a password, in the message.
        let versions = |records: &HashMap<String, SecretFile>, name: &str, live: &str| {
            records.get(name).map(|r| {
                let previous: Vec<u64> = r
                    .previous
                    .iter()
                    .filter(|v| v.password.expose() == live)
                    .map(|v| v.version)
                    .collect();
                format!(
                    "current {:?}, pending {:?}, previous holding the live password {previous:?}",
                    r.current.as_ref().map(|c| c.version),
                    r.pending.as_ref().map(|p| p.version)
                )
            })
        };
        let mut pending = 0;
        for ((name, _, _, _), live) in ACCOUNTS.iter().zip(&lives) {
            if before.get(*name).is_some_and(|r| r.pending.is_some()) {
                pending += 1;
            }
            if let Some(live) = live {
                assert!(
                    known(&before, name).contains(live) || known(&after, name).contains(live),
                    "{when}: {name}'s live password is neither the store's current nor its \
                     pending (before: {:?}; after: {:?})",
                    versions(&before, name, live),
                    versions(&after, name, live),
                );
            }
        }
        pending
    }

    /// Whether every running replica's local secret files equal the store.
    pub(crate) async fn mirrors_match(&self) -> bool {
        let records = self.records().await;
        self.replicas.iter().filter(|r| r.child.is_some()).all(|r| {
            records.iter().all(|(name, record)| {
                r.local(name).is_some_and(|local| {
                    local == serde_json::to_value(record).expect("a record serialises")
                })
            })
        })
    }

    /// Whether the store holds every account settled and equal to the database.
    async fn settled(&self) -> bool {
        let records = self.records().await;
        ACCOUNTS.iter().all(|(name, service, resource, user)| {
            records.get(*name).is_some_and(|r| {
                r.pending.is_none()
                    && r.current.as_ref().map(|c| c.password.expose().to_owned())
                        == self.env.live(*service, resource, user)
            })
        })
    }

    pub(crate) async fn stop_all(&mut self) {
        for r in &mut self.replicas {
            if let Some(child) = r.child.as_mut() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id().expect("pid") as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
                    .await
                    .expect("stops within 20 s")
                    .expect("wait");
                assert_eq!(status.code(), Some(0), "{}: {}", r.name, r.log());
                r.child = None;
            }
        }
    }
}

pub(crate) fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .expect("write");
    f.write_all(text.as_bytes()).expect("write");
}

/// Short schedules and timeouts, so that a test sees many rotations.
fn busy(text: String) -> String {
    text.replace("every = \"1h\"", "every = \"400ms\"")
        .replace(
            "retry_after_failure = \"1s\"",
            "retry_after_failure = \"150ms\"",
        )
        .replace("timeout = \"3s\"", "timeout = \"1s\"")
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"1s\"\nmax_concurrent = 4",
        )
}

pub(crate) fn quiet(text: String) -> String {
    text.replace("timeout = \"3s\"", "timeout = \"1s\"")
}

/// Text that must never leave the store in clear: every password the database ever had.
fn assert_dump_holds_no_password(url: &str, passwords: &[String]) {
    let dump = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(url)
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("pwrotd_secrets"), "the dump holds the store");
    for p in passwords {
        assert!(!text.contains(p.as_str()), "a password is in the dump");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_leader_every_host_mirrored_and_nothing_in_clear() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 3, quiet).await;
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    let leader = fleet.leader(Duration::from_secs(20)).await;
    eventually(
        Duration::from_secs(30),
        "every account rotated once",
        || futures_settled(&fleet),
    )
    .await;
    // SIGUSR1 and `pwrotd rotate` on a replica that does not lead reach the leader.
    let follower = (leader + 1) % 3;
    let before = fleet.records().await["billing"].latest_version();
    let out = fleet.replicas[follower]
        .command(&["rotate", "--account", "billing"])
        .output()
        .await
        .expect("rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("forwarded to the leader, replica-"), "{said}");
    wait_store(
        &fleet,
        Duration::from_secs(20),
        "the forwarded rotation",
        |r| r["billing"].latest_version() > before && r["billing"].pending.is_none(),
    )
    .await;
    let versions: Vec<u64> = {
        let r = fleet.records().await;
        ACCOUNTS.iter().map(|a| r[a.0].latest_version()).collect()
    };
    fleet.replicas[(leader + 2) % 3].signal(nix::sys::signal::Signal::SIGUSR1);
    wait_store(
        &fleet,
        Duration::from_secs(20),
        "SIGUSR1 on a follower",
        |r| {
            ACCOUNTS
                .iter()
                .zip(&versions)
                .all(|(a, v)| r[a.0].latest_version() > *v && r[a.0].pending.is_none())
        },
    )
    .await;
    // Every replica's local files equal the store within 5 s.
    let started = Instant::now();
    while !fleet.mirrors_match().await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "mirrors lag more than 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &fleet.replicas {
        assert_eq!(r.metric("pwrotd_store_up").await, Some(1.0), "{}", r.name);
        assert!(
            r.metric("pwrotd_mirror_age_seconds")
                .await
                .expect("mirror age")
                < 5.0
        );
    }
    fleet.check_invariant("after the rotations").await;
    let mut passwords = Vec::new();
    for record in fleet.records().await.values() {
        passwords.extend(
            record
                .current
                .iter()
                .map(|c| c.password.expose().to_owned()),
        );
        passwords.extend(
            record
                .previous
                .iter()
                .map(|c| c.password.expose().to_owned()),
        );
    }
    assert!(passwords.len() >= 8);
    assert_dump_holds_no_password(&fleet.url, &passwords);
    fleet.stop_all().await;
}

/// Polls the store until `done` holds.
pub(crate) async fn wait_store(
    fleet: &Fleet,
    limit: Duration,
    what: &str,
    done: impl Fn(&HashMap<String, SecretFile>) -> bool,
) {
    let started = Instant::now();
    loop {
        let records = fleet.records().await;
        if ACCOUNTS.iter().all(|a| records.contains_key(a.0)) && done(&records) {
            return;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every account has a settled record (blocking, for `eventually`).
pub(crate) fn futures_settled(fleet: &Fleet) -> bool {
    let records =
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fleet.records()));
    ACCOUNTS.iter().all(|a| {
        records
            .get(a.0)
            .is_some_and(|r| r.current.is_some() && r.pending.is_none())
    })
}

/// A follower's scheduler does not run; its term runner goes round instead. `/healthz` (and
/// so the systemd watchdog, which the same check feeds) must see it as healthy past the
/// stall limit (6 heartbeats, 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stays_healthy_past_the_stall_limit() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, quiet).await;
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    let leader = fleet.leader(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(65)).await;
    for r in &fleet.replicas {
        let (status, body) = get(&format!("{}/healthz", r.metrics)).await;
        assert_eq!(
            status,
            200,
            "{} ({}): {body}",
            r.name,
            if r.name.ends_with(&leader.to_string()) {
                "leader"
            } else {
                "follower"
            }
        );
    }
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_30_times_loses_nothing() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 3, busy).await;
    fleet.env.server.sim.set_fault_rates(FaultRates {
        throttle: 0.1,
        server_error: 0.05,
        drop_after_apply: 0.1,
        error_after_apply: 0.1,
        latency: Duration::from_millis(5),
        ..FaultRates::default()
    });
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    let started = Instant::now();
    let mut failovers = Vec::new();
    let mut pending_seen = 0;
    for kill in 0..30 {
        let leader = fleet.leader(Duration::from_secs(30)).await;
        let wait = 50 + pwrotd::random::jitter(Duration::from_millis(1500)).as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let killed = Instant::now();
        fleet.replicas[leader].kill().await;
        pending_seen += fleet.check_invariant(&format!("kill {kill}")).await;
        fleet.leader(Duration::from_secs(30)).await;
        failovers.push(killed.elapsed());
        fleet.replicas[leader].start(&[]);
        fleet
            .check_invariant(&format!("after failover {kill}"))
            .await;
    }
    fleet.env.server.sim.set_fault_rates(FaultRates::default());
    let started_settle = Instant::now();
    while !fleet.settled().await {
        assert!(
            started_settle.elapsed() < Duration::from_secs(30),
            "the store does not settle once the faults stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.check_invariant("the end").await;
    let settled_at = Instant::now();
    while !fleet.mirrors_match().await {
        assert!(
            settled_at.elapsed() < Duration::from_secs(5),
            "the replicas' local files do not match the store within 5 s of the faults stopping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failovers.sort();
    eprintln!(
        "FIGURES cluster kill -9: 30 leader kills in {:.0} s; failover (kill to a new leader) p50 {:?} max {:?}; kills that left a pending password {pending_seen}; lost passwords 0; API requests {}",
        started.elapsed().as_secs_f64(),
        failovers[failovers.len() / 2],
        failovers[failovers.len() - 1],
        fleet.env.server.sim.stats().requests
    );
    for r in &mut fleet.replicas {
        r.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, quiet).await;
    // The first replica leads alone, and stops itself (SIGSTOP) after the API applied a
    // password and before its promotion: a paused VM, a long GC pause, a partition.
    fleet.replicas[0].start(&[("PWROTD_FAILPOINT", "before_promote=stop")]);
    let pid = fleet.replicas[0].pid();
    eventually(Duration::from_secs(20), "the leader to stop itself", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('T'))
        })
    })
    .await;
    fleet.replicas[1].start(&[]);
    let paused_epoch: i64 = epoch_of(&fleet.url).await;
    // The other replica takes over once the lease has lapsed, and settles the pending
    // password: the database ends up with what the store holds.
    assert_eq!(fleet.leader(Duration::from_secs(20)).await, 1);
    wait_store(
        &fleet,
        Duration::from_secs(20),
        "the new leader settles",
        |r| {
            ACCOUNTS
                .iter()
                .all(|a| r[a.0].pending.is_none() && r[a.0].current.is_some())
        },
    )
    .await;
    fleet.check_invariant("after the takeover").await;
    let before = fleet.records().await;
    let audit_before = audit_rows(&fleet.url, paused_epoch).await;
    fleet.replicas[0].signal(nix::sys::signal::Signal::SIGCONT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The resumed replica wrote nothing: no record of its epoch, no audit line of its term
    // after the pause, and the records are as the new leader left them.
    let after = fleet.records().await;
    for (name, ..) in ACCOUNTS {
        assert_eq!(
            serde_json::to_value(&before[name]).unwrap(),
            serde_json::to_value(&after[name]).unwrap(),
            "{name} changed after the old leader resumed"
        );
    }
    assert_eq!(audit_rows(&fleet.url, paused_epoch).await, audit_before);
    fleet.check_invariant("after the old leader resumed").await;
    let log = fleet.replicas[0].log();
    assert!(log.contains("no longer leads"), "{log}");
    assert!(!fleet.replicas[0].leads().await);
    fleet.stop_all().await;
}

async fn epoch_of(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT epoch FROM pwrotd_lease")
        .fetch_one(&mut conn)
        .await
        .expect("epoch")
}

async fn audit_rows(url: &str, epoch: i64) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT count(*) FROM pwrotd_audit WHERE epoch = $1")
        .bind(epoch)
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// A TCP proxy on loopback that the test controls: it can turn into a black hole (bytes stop
/// flowing both ways, connections are neither closed nor refused), or cut every connection and
/// refuse new ones for a while, as a PostgreSQL restart does.
struct Proxy {
    port: u16,
    blackhole: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    /// Cancelled to cut every connection open now.
    cut: Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl Proxy {
    /// Cuts every connection and refuses new ones for `downtime`.
    async fn restart(&self, downtime: Duration) {
        self.down.store(true, Ordering::SeqCst);
        let old = std::mem::take(&mut *self.cut.lock().unwrap());
        old.cancel();
        tokio::time::sleep(downtime).await;
        self.down.store(false, Ordering::SeqCst);
    }
}

async fn proxy(to: &str) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let proxy = Proxy {
        port,
        blackhole: Arc::new(AtomicBool::new(false)),
        down: Arc::new(AtomicBool::new(false)),
        cut: Arc::default(),
    };
    let (to, hole, down, cut) = (
        to.to_owned(),
        proxy.blackhole.clone(),
        proxy.down.clone(),
        proxy.cut.clone(),
    );
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            if down.load(Ordering::SeqCst) {
                continue;
            }
            let Ok(outbound) = tokio::net::TcpStream::connect(&to).await else {
                continue;
            };
            let (hole, cut) = (hole.clone(), cut.lock().unwrap().clone());
            tokio::spawn(async move {
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::select! {
                    _ = async { tokio::join!(pump(ri, wo, hole.clone()), pump(ro, wi, hole)) } => {}
                    () = cut.cancelled() => {}
                }
            });
        }
    });
    proxy
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hole.load(Ordering::SeqCst) {
            // Swallowed; the connection stays open, as behind a dead link.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The store URL of `fleet` through `proxy`, written as `replica`'s url_file.
fn through(fleet: &Fleet, proxy: &Proxy, replica: usize) {
    let via = fleet.url.replace(
        &store_host(&fleet.url),
        &format!("127.0.0.1:{}", proxy.port),
    );
    write_private(&fleet.replicas[replica].dir.join("store-url"), &via);
}

fn store_host(url: &str) -> String {
    url.split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the URL")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_restarting_under_rotations_loses_nothing() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, busy).await;
    fleet.env.server.sim.set_fault_rates(FaultRates {
        throttle: 0.1,
        drop_after_apply: 0.1,
        error_after_apply: 0.1,
        latency: Duration::from_millis(5),
        ..FaultRates::default()
    });
    // Both replicas reach the store through one proxy: a restart cuts every connection,
    // mid-transaction or not, and refuses new ones while it lasts.
    let proxy = proxy(&store_host(&fleet.url)).await;
    for i in 0..2 {
        through(&fleet, &proxy, i);
        fleet.replicas[i].start(&[]);
    }
    fleet.leader(Duration::from_secs(20)).await;
    for restart in 0..6 {
        let wait = 200 + pwrotd::random::jitter(Duration::from_millis(1500)).as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let downtime = Duration::from_millis(200 + 300 * (restart % 3));
        proxy.restart(downtime).await;
        fleet.check_invariant(&format!("restart {restart}")).await;
    }
    fleet.env.server.sim.set_fault_rates(FaultRates::default());
    let started = Instant::now();
    while !fleet.settled().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the store does not settle after the restarts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.check_invariant("the end").await;
    eventually(Duration::from_secs(5), "mirrors match the store", || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(fleet.mirrors_match())
        })
    })
    .await;
    // store_up tells of the lease's last statement: within a few renewals of the store's
    // return it says so.
    for r in &fleet.replicas {
        let started = Instant::now();
        while r.metric("pwrotd_store_up").await != Some(1.0) {
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{}: the store is back but store_up says otherwise; log: {}",
                r.name,
                r.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for r in &mut fleet.replicas {
        r.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_store_stops_within_its_lease_and_another_takes_over() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, busy).await;
    let host = fleet
        .url
        .split('@')
        .nth(1)
        .expect("host")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let proxy = proxy(&host).await;
    let via_proxy = fleet
        .url
        .replace(&host, &format!("127.0.0.1:{}", proxy.port));
    write_private(&fleet.replicas[0].dir.join("store-url"), &via_proxy);
    fleet.replicas[0].start(&[]);
    assert_eq!(fleet.leader(Duration::from_secs(20)).await, 0);
    fleet.replicas[1].start(&[]);
    wait_store(&fleet, Duration::from_secs(20), "rotations", |r| {
        ACCOUNTS.iter().all(|a| r[a.0].current.is_some())
    })
    .await;
    proxy.blackhole.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    // Its lease is 5 s: within it (and a renewal's timeout) it stops leading, and calls no API.
    eventually(
        Duration::from_secs(8),
        "the cut-off leader to step down",
        || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    fleet.replicas[0].metric("pwrotd_leader").await == Some(0.0)
                })
            })
        },
    )
    .await;
    let stepped_down = cut.elapsed();
    let calls = |r: &Replica| {
        let r = r.metrics.clone();
        async move {
            let (_, body) = get(&format!("{r}/metrics")).await;
            body.lines()
                .filter(|l| l.starts_with("pwrotd_api_requests_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let quiet_from = calls(&fleet.replicas[0]).await;
    assert_eq!(fleet.leader(Duration::from_secs(15)).await, 1);
    let taken_over = cut.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls(&fleet.replicas[0]).await,
        quiet_from,
        "the cut-off replica still calls the API"
    );
    fleet.check_invariant("while cut off").await;
    proxy.blackhole.store(false, Ordering::SeqCst);
    fleet.env.server.sim.set_fault_rates(FaultRates::default());
    eprintln!(
        "FIGURES cluster partition: stepped down after {stepped_down:?}; another leads after {taken_over:?}"
    );
    for r in &mut fleet.replicas {
        r.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stores_and_keys_are_clear_errors_at_start() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, quiet).await;
    fleet.replicas[0].start(&[]);
    fleet.leader(Duration::from_secs(20)).await;
    // Another key than the store's.
    let other = StoreKey::generate().expect("key").to_base64().to_string();
    write_private(&fleet.replicas[1].dir.join("store.key"), &other);
    let out = fleet.replicas[1]
        .command(&["run"])
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not the key the store was created with"),
        "{err}"
    );
    // An unreachable store: a clear error, and never the URL.
    write_private(&fleet.replicas[1].dir.join("store.key"), &fleet.key);
    let dead = format!(
        "postgres://pwrotd:Sup3rSecret@127.0.0.1:{}/x?sslmode=disable",
        free_port()
    );
    write_private(&fleet.replicas[1].dir.join("store-url"), &dead);
    let out = fleet.replicas[1]
        .command(&["run"])
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("Sup3rSecret"), "{err}");
    // A schema a newer pwrotd migrated.
    let mut conn = sqlx::PgConnection::connect(&fleet.url)
        .await
        .expect("connect");
    conn.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (999, 'future', true, '\\x00', 0)")
        .await
        .expect("a future migration");
    write_private(&fleet.replicas[1].dir.join("store-url"), &fleet.url);
    let out = fleet.replicas[1]
        .command(&["run"])
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("newer than this pwrotd knows"), "{err}");
    fleet.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decrypt_is_left_alone_and_the_others_go_on() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, quiet).await;
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    fleet.leader(Duration::from_secs(20)).await;
    wait_store(&fleet, Duration::from_secs(20), "rotations", |r| {
        ACCOUNTS.iter().all(|a| r[a.0].current.is_some())
    })
    .await;
    eventually(Duration::from_secs(5), "mirrors", || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(fleet.mirrors_match())
        })
    })
    .await;
    let local_before = fleet.replicas[1].local("billing").expect("mirrored");
    // A DBA moves edge-app's sealed passwords into billing's row.
    let mut conn = sqlx::PgConnection::connect(&fleet.url)
        .await
        .expect("connect");
    conn.execute(
        "UPDATE pwrotd_secrets SET seq = nextval('pwrotd_secrets_seq'), record = jsonb_set(record, '{current}', (SELECT record->'current' FROM pwrotd_secrets WHERE account = 'edge-app')) WHERE account = 'billing'",
    )
    .await
    .expect("tamper");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fleet.replicas[1].local("billing").expect("still there"),
        local_before
    );
    assert!(fleet.replicas[1].log().contains("does not decrypt"));
    // The other accounts still rotate.
    let before = fleet.records_lossy().await;
    let out = fleet.replicas[0]
        .command(&["rotate", "--account", "orders-app"])
        .output()
        .await
        .expect("rotate");
    let _ = out;
    eventually(Duration::from_secs(20), "orders-app rotates", || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                fleet.records_lossy().await.get("orders-app").copied()
                    > before.get("orders-app").copied()
            })
        })
    })
    .await;
    fleet.stop_all().await;
}

impl Fleet {
    /// Each account's newest version, read without decrypting.
    pub(crate) async fn records_lossy(&self) -> HashMap<String, i64> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        sqlx::query_as::<_, (String, i64)>("SELECT account, version FROM pwrotd_secrets")
            .fetch_all(&mut conn)
            .await
            .expect("read")
            .into_iter()
            .collect()
    }
}
