//! Accounts in several regions against one simulator: every request carries its account's
//! `RegionId` (the simulator answers `*.NotFound` to another), each (service, region) pair has
//! its own rate limiter, and `pwrotd check --remote` tells a ready config from one that is not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use pwrotd::cloud::{DescribeAccounts, Service};
use pwrotd::config::Config;
use pwrotd::sim::{AccountStatus, Sim, SimServer};
use tokio::process::Command;

use crate::common::{self, KEY_ID, SECRET};

const HANGZHOU: &str = "cn-hangzhou";
const SINGAPORE: &str = "ap-southeast-1";

/// Two PolarDB clusters in Hangzhou (the default region), a PolarDB cluster and an RDS
/// instance in Singapore; one alternating account.
const ACCOUNTS: &str = r#"
[[account]]
name = "hz-orders"
api = "ModifyAccountPassword"
cluster_id = "pc-hz0001"
account_name = "app"
grants = [{ db = "orders", privilege = "ReadWrite" }]

[[account]]
name = "hz-edge"
api = "ModifyAccountPasswordZonal"
cluster_id = "pc-hz0002"
account_name = "edge"
strategy = "alternating"
clone_account_name = "edge_b"

[[account]]
name = "sg-admin"
api = "ResetAccount"
cluster_id = "pc-sg0001"
account_name = "root_admin"
region_id = "ap-southeast-1"

[[account]]
name = "sg-billing"
api = "ResetAccountPassword"
instance_id = "rm-sg0001"
account_name = "billing"
region_id = "ap-southeast-1"
"#;

/// A state directory and a simulator holding [`ACCOUNTS`], each resource in its region.
struct Env {
    dir: tempfile::TempDir,
    server: SimServer,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = Sim::new(KEY_ID, SECRET);
        let config = Config::parse(
            &format!("[cloud]\nregion_id = \"{HANGZHOU}\"\n{ACCOUNTS}"),
            Path::new("regions.toml"),
        )
        .expect("a valid config");
        sim.register_config(&config);
        for (service, id, region) in [
            (Service::PolarDb, "pc-hz0001", HANGZHOU),
            (Service::PolarDb, "pc-hz0002", HANGZHOU),
            (Service::PolarDb, "pc-sg0001", SINGAPORE),
            (Service::Rds, "rm-sg0001", SINGAPORE),
        ] {
            assert!(sim.set_resource_region(service, id, Some(region)));
        }
        let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0");
        Env { dir, server }
    }

    /// Writes a config with these accounts, every endpoint at the simulator: the region is
    /// told by `RegionId` alone.
    fn write(&self, name: &str, accounts: &str) -> PathBuf {
        let endpoint = self.server.url().as_str().trim_end_matches('/').to_owned();
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\nmetrics_listen = \"\"\n\n[cloud]\nregion_id = \"{HANGZHOU}\"\ntimeout = \"3s\"\nmax_attempts = 2\n[cloud.endpoints]\npolardb = \"{endpoint}\"\nrds = \"{endpoint}\"\n\n[defaults]\nevery = \"1h\"\njitter = \"0s\"\n{accounts}",
            self.dir.path().join("state").display(),
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    async fn pwrotd(&self, config: &Path, args: &[&str]) -> Output {
        let run = Command::new(env!("CARGO_BIN_EXE_pwrotd"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env_remove("NOTIFY_SOCKET")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("pwrotd finished within a minute")
            .expect("run pwrotd")
    }

    fn changes(&self, service: Service, resource: &str, user: &str) -> u64 {
        self.server
            .sim
            .account(service, resource, user)
            .map_or(0, |a| a.changes)
    }

    fn not_found(&self) -> u64 {
        let stats = self.server.sim.stats();
        stats
            .by_code
            .iter()
            .filter(|(code, _)| code.ends_with(".NotFound"))
            .map(|(_, n)| n)
            .sum()
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every account rotates in its own region against the one simulator, which would refuse any
/// request whose `RegionId` is not its resource's; a resource moved to another region is then
/// not found, and nothing is changed there.
#[tokio::test]
async fn accounts_in_two_regions_rotate_each_with_its_region_id() {
    let env = Env::new().await;
    let config = env.write("pwrotd.toml", ACCOUNTS);
    let output = env.pwrotd(&config, &["rotate", "--all"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for (service, resource, user) in [
        (Service::PolarDb, "pc-hz0001", "app"),
        (Service::PolarDb, "pc-hz0002", "edge"),
        (Service::PolarDb, "pc-sg0001", "root_admin"),
        (Service::Rds, "rm-sg0001", "billing"),
    ] {
        assert_eq!(env.changes(service, resource, user), 1, "{resource}/{user}");
    }
    assert_eq!(env.not_found(), 0, "{:?}", env.server.sim.stats().by_code);
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    // Moved to another region, the cluster is not found with Singapore's RegionId.
    assert!(env.server.sim.set_resource_region(
        Service::PolarDb,
        "pc-sg0001",
        Some("eu-central-1")
    ));
    let output = env
        .pwrotd(&config, &["rotate", "--account", "sg-admin"])
        .await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("InvalidDBClusterId.NotFound"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(env.changes(Service::PolarDb, "pc-sg0001", "root_admin"), 1);
    assert!(env.not_found() >= 1);
}

/// The client sends each call with the region it is given, and spaces the calls of each
/// (service, region) pair on its own: two regions do not wait for each other.
#[tokio::test]
async fn each_service_and_region_has_its_own_rate_limit() {
    let env = Env::new().await;
    let mut config = common::client_config(env.server.url(), pwrotd::cloud::SignatureVersion::V1);
    config.requests_per_second = 1.0;
    config.max_attempts = 1;
    let client = common::client_with(config, pwrotd::cloud::Credentials::new(KEY_ID, SECRET));
    let describe = |service, id: &str, user: &str| DescribeAccounts {
        service,
        resource_id: id.to_owned(),
        account_name: user.to_owned(),
    };
    let hz = describe(Service::PolarDb, "pc-hz0001", "app");
    let sg = describe(Service::PolarDb, "pc-sg0001", "root_admin");
    let rds = describe(Service::Rds, "rm-sg0001", "billing");
    // Three lanes, each used once: no call waits for another.
    let start = Instant::now();
    let (a, b, c) = tokio::join!(
        client.query(HANGZHOU, &hz),
        client.query(SINGAPORE, &sg),
        client.query(SINGAPORE, &rds)
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(client.lanes_in_use(), 3);
    // The same lane again: a second later.
    let start = Instant::now();
    let again = client.query(HANGZHOU, &hz).await;
    assert!(again.is_ok());
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    // The wrong region for a resource: not found, as the real API answers.
    let wrong = client.query(HANGZHOU, &sg).await.unwrap_err();
    assert_eq!(wrong.code(), "InvalidDBClusterId.NotFound");
    let wrong = client.query(HANGZHOU, &rds).await.unwrap_err();
    assert_eq!(wrong.code(), "InvalidDBInstanceName.NotFound");
    assert_eq!(client.lanes_in_use(), 4);
}

/// Accounts that are not ready, each for its own reason, next to one that is.
const NOT_READY: &str = r#"
[[account]]
name = "gone"
api = "ModifyAccountPassword"
cluster_id = "pc-gone0001"
account_name = "app"

[[account]]
name = "wrong-region"
api = "ResetAccount"
cluster_id = "pc-sg0001"
account_name = "root_admin"

[[account]]
name = "no-user"
api = "ModifyAccountPassword"
cluster_id = "pc-hz0001"
account_name = "nobody"

[[account]]
name = "not-super"
api = "ResetAccount"
cluster_id = "pc-hz0002"
account_name = "edge"

[[account]]
name = "no-clone"
api = "ModifyAccountPassword"
cluster_id = "pc-hz0001"
account_name = "app"
strategy = "alternating"
clone_account_name = "app_b"

[[account]]
name = "locked"
api = "ModifyAccountPassword"
cluster_id = "pc-hz0002"
account_name = "edge_b"

[[account]]
name = "sg-billing"
api = "ResetAccountPassword"
instance_id = "rm-sg0001"
account_name = "billing"
region_id = "ap-southeast-1"
"#;

/// `check --remote` exits 0 for a ready config, printing each account's region and endpoint;
/// and 1 for one with a missing cluster, a wrong region, a missing account, a missing clone, a
/// locked account and a non-privileged `ResetAccount` account, naming each and why. It
/// changes nothing and prints no secret.
#[tokio::test]
async fn check_remote_tells_a_ready_config_from_one_that_is_not() {
    let env = Env::new().await;
    let ready = env.write("ready.toml", ACCOUNTS);
    let applied = env.server.sim.stats().applied;
    let output = env.pwrotd(&ready, &["check", "--remote"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 of 4 accounts ready"), "{stdout}");
    assert!(
        stdout.contains("region ap-southeast-1, endpoint http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("region cn-hangzhou, endpoint http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("credentials from environment"), "{stdout}");
    assert!(
        stdout.contains("edge: Available, unlocked, Normal; edge_b: Available, unlocked, Normal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("root_admin: Available, unlocked, Super"),
        "{stdout}"
    );

    assert!(env.server.sim.set_account_status(
        Service::PolarDb,
        "pc-hz0002",
        "edge_b",
        AccountStatus::Locked
    ));
    let bad = env.write("bad.toml", NOT_READY);
    let output = env.pwrotd(&bad, &["check", "--remote"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 of 7 accounts ready"), "{stdout}");
    for (name, why) in [
        ("gone", "cluster pc-gone0001 not found in cn-hangzhou"),
        ("wrong-region", "cluster pc-sg0001 not found in cn-hangzhou"),
        (
            "no-user",
            "account nobody does not exist on cluster pc-hz0001",
        ),
        (
            "not-super",
            "ResetAccount needs a privileged account (AccountType Super); account edge is Normal",
        ),
        (
            "no-clone",
            "clone app_b does not exist on cluster pc-hz0001",
        ),
        ("locked", "account edge_b is locked"),
    ] {
        assert!(
            stdout.contains(&format!("{name:<24} NOT READY: {why}")),
            "{name}: {stdout}"
        );
        assert!(
            stderr.contains(&format!("{name} ({why}")),
            "{name}: {stderr}"
        );
    }
    assert!(
        stdout.contains(&format!("{:<24} ready", "sg-billing")),
        "{stdout}"
    );
    assert!(!stderr.contains("sg-billing"), "{stderr}");
    // Read-only, and no secret in the output.
    assert_eq!(env.server.sim.stats().applied, applied);
    for output in [&stdout, &stderr] {
        assert!(!output.contains(SECRET), "{output}");
    }

    // A bad config is still exit 2, before any call.
    let broken = env.write("broken.toml", "[[account]]\nname = \"x\"\n");
    let output = env.pwrotd(&broken, &["check", "--remote"]).await;
    assert_eq!(output.status.code(), Some(2));
}
