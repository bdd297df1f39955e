//! Profiles (issue 14): one daemon rotating accounts in six regions and two cloud accounts,
//! each through its profile's credential source (every source: environment keys, static keys
//! with `assume_role` into another cloud account, the ECS RAM role, OIDC, a credentials URI,
//! a CLI profile), for several credential lifetimes. The simulator refuses a request with
//! another region's `RegionId` or another cloud account's credentials, and counts who signed
//! each request and the region it named; no secret or token of any credential shows anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

use pwrotd::cloud::Service;
use pwrotd::config::Config;
use pwrotd::sim::{PRIMARY_UID, RoleSpec, SimServer, unsigned_oidc_token};
use secrecy::ExposeSecret;
use tokio::process::Command;

use crate::cluster::free_port;
use crate::common::{KEY_ID, SECRET};
use crate::credentials::{ISSUER, LIFETIME, OIDC_ROLE, PROVIDER};
use crate::daemon::{get, scrape_until, signal};

/// The other cloud account, which the `sg-prod` profile reaches through a role.
const SECOND_UID: &str = "2222222222222222";
/// A role in the other account that the primary account's RAM user may assume.
const CROSS_ROLE: &str = "acs:ram::2222222222222222:role/pwrotd";
/// Each account: its name, profile, service, resource, user, region and owning cloud account.
const PLACES: [(&str, &str, Service, &str, &str, &str, &str); 7] = [
    (
        "hz-orders",
        "default",
        Service::PolarDb,
        "pc-hz0001",
        "app",
        "cn-hangzhou",
        PRIMARY_UID,
    ),
    (
        "sg-orders",
        "sg-prod",
        Service::PolarDb,
        "pc-sg0001",
        "app",
        "ap-southeast-1",
        SECOND_UID,
    ),
    (
        "sg-billing",
        "sg-prod",
        Service::Rds,
        "rm-sg0001",
        "billing",
        "ap-southeast-1",
        SECOND_UID,
    ),
    (
        "sh-ecs",
        "ecs",
        Service::PolarDb,
        "pc-sh0001",
        "app",
        "cn-shanghai",
        PRIMARY_UID,
    ),
    (
        "bj-rrsa",
        "rrsa",
        Service::Rds,
        "rm-bj0001",
        "app",
        "cn-beijing",
        PRIMARY_UID,
    ),
    (
        "sz-uri",
        "uri",
        Service::PolarDb,
        "pc-sz0001",
        "app",
        "cn-shenzhen",
        PRIMARY_UID,
    ),
    (
        "hk-cli",
        "cli",
        Service::Rds,
        "rm-hk0001",
        "app",
        "cn-hongkong",
        PRIMARY_UID,
    ),
];

/// The accounts of [`PLACES`]; `sg-orders` has grants, so GrantAccountPrivilege goes through
/// the role too. The `sg-prod`, `ecs` and `rrsa` profiles set their region; `sz-uri` and
/// `hk-cli` set their own, over their profiles' (`[cloud]`'s).
const ACCOUNTS: &str = r#"
[[account]]
name = "hz-orders"
api = "ModifyAccountPassword"
cluster_id = "pc-hz0001"
account_name = "app"

[[account]]
name = "sg-orders"
profile = "sg-prod"
api = "ModifyAccountPassword"
cluster_id = "pc-sg0001"
account_name = "app"
grants = [{ db = "orders", privilege = "ReadWrite" }]

[[account]]
name = "sg-billing"
profile = "sg-prod"
api = "ResetAccountPassword"
instance_id = "rm-sg0001"
account_name = "billing"

[[account]]
name = "sh-ecs"
profile = "ecs"
api = "ModifyAccountPassword"
cluster_id = "pc-sh0001"
account_name = "app"

[[account]]
name = "bj-rrsa"
profile = "rrsa"
api = "ResetAccountPassword"
instance_id = "rm-bj0001"
account_name = "app"

[[account]]
name = "sz-uri"
profile = "uri"
api = "ModifyAccountPassword"
cluster_id = "pc-sz0001"
account_name = "app"
region_id = "cn-shenzhen"

[[account]]
name = "hk-cli"
profile = "cli"
api = "ResetAccountPassword"
instance_id = "rm-hk0001"
account_name = "app"
region_id = "cn-hongkong"
"#;

/// A simulator holding [`PLACES`], its roles and OIDC provider, credentials living
/// [`LIFETIME`]; the files the profiles read; and the config.
struct Estate {
    dir: tempfile::TempDir,
    server: SimServer,
    config: PathBuf,
}

impl Estate {
    async fn new(every: &str) -> Estate {
        let dir = tempfile::tempdir().unwrap();
        // The roles, the OIDC provider, the ECS role, the credentials URI and the lifetime.
        let server = crate::credentials::start().await;
        let text = Estate::text(dir.path(), &server, every);
        let config = dir.path().join("pwrotd.toml");
        std::fs::write(&config, &text).unwrap();
        let sim = &server.sim;
        sim.register_config(&Config::parse(&text, &config).unwrap());
        for (_, _, service, resource, _, region, owner) in PLACES {
            assert!(sim.set_resource_region(service, resource, Some(region)));
            assert!(sim.set_resource_owner(service, resource, owner));
        }
        sim.add_cloud_account(SECOND_UID);
        sim.add_role(
            RoleSpec::from_arn(CROSS_ROLE)
                .unwrap()
                .trust_account(PRIMARY_UID),
        );
        Estate {
            dir,
            server,
            config,
        }
    }

    /// The config: `[cloud]` signs with the environment's keys in Hangzhou, and a profile for
    /// each other source and place. Every endpoint is the simulator's (a profile names its
    /// own), so that only the `RegionId` tells the regions apart.
    fn text(dir: &Path, server: &SimServer, every: &str) -> String {
        let state = dir.join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let secret = dir.join("ak-secret");
        std::fs::write(&secret, SECRET).unwrap();
        let token = dir.join("oidc-token");
        std::fs::write(
            &token,
            unsigned_oidc_token(
                ISSUER,
                "sts.aliyuncs.com",
                "system:serviceaccount:db:pwrotd",
                SystemTime::now() + Duration::from_secs(3600),
            ),
        )
        .unwrap();
        let cli = dir.join("aliyun.json");
        crate::credentials::write_chained_cli_profile(&cli);
        let url = server.url();
        let base = url.as_str().trim_end_matches('/');
        format!(
            r#"[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"
shutdown_grace = "5s"

[defaults]
every = "{every}"
jitter = "0s"
retry_after_failure = "1s"

[cloud]
region_id = "cn-hangzhou"
timeout = "3s"
max_attempts = 2
sts_endpoint = "{base}"
[cloud.endpoints]
polardb = "{base}"
rds = "{base}"

[cloud.profiles.sg-prod]
region_id = "ap-southeast-1"
[cloud.profiles.sg-prod.endpoints]
polardb = "{base}"
rds = "{base}"
[cloud.profiles.sg-prod.credentials]
source = "static"
access_key_id = "{KEY_ID}"
access_key_secret_file = "{secret}"
assume_role = {{ role_arn = "{CROSS_ROLE}", session_name = "pwrotd-sg", external_id = "abcd1234" }}

[cloud.profiles.ecs]
region_id = "cn-shanghai"
[cloud.profiles.ecs.endpoints]
polardb = "{base}"
rds = "{base}"
[cloud.profiles.ecs.credentials]
source = "ecs_ram_role"
metadata_endpoint = "{base}"

[cloud.profiles.rrsa]
region_id = "cn-beijing"
[cloud.profiles.rrsa.endpoints]
polardb = "{base}"
rds = "{base}"
[cloud.profiles.rrsa.credentials]
source = "oidc"
role_arn = "{OIDC_ROLE}"
oidc_provider_arn = "{PROVIDER}"
oidc_token_file = "{token}"

[cloud.profiles.uri.endpoints]
polardb = "{base}"
rds = "{base}"
[cloud.profiles.uri.credentials]
source = "uri"
uri = "{base}/_creds/app"

[cloud.profiles.cli.endpoints]
polardb = "{base}"
rds = "{base}"
[cloud.profiles.cli.credentials]
source = "cli_profile"
file = "{cli}"
{ACCOUNTS}"#,
            state = state.display(),
            port = free_port(),
            secret = secret.display(),
            token = token.display(),
            cli = cli.display(),
        )
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn metrics_url(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let addr = text
            .lines()
            .find_map(|l| l.strip_prefix("metrics_listen = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        format!("http://{addr}")
    }

    /// `pwrotd` with only the environment's keys (no other variable of the chain), which
    /// `[cloud]` finds through the chain.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pwrotd"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("RUST_LOG", "debug")
            .kill_on_drop(true);
        command
    }

    async fn pwrotd(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("pwrotd finished within a minute")
            .unwrap()
    }

    fn changes(&self, service: Service, resource: &str, user: &str) -> u64 {
        self.server
            .sim
            .account(service, resource, user)
            .map_or(0, |a| a.changes)
    }

    fn sink(&self, account: &str) -> serde_json::Value {
        let path = self.state().join("secrets").join(format!("{account}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// Every file under `dir`, as text.
fn read_all(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&read_all(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// A value of `/metrics`: the series `name{labels}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The daemon, for over three credential lifetimes, rotating every account every 2 seconds,
/// each through its profile: every request the simulator accepted was signed by the
/// principal of the account's profile (the other cloud account's role for `sg-prod`) and
/// named the account's region; nothing was refused; every credential source refreshed in
/// time; the files hold what the databases have; no secret or token of a temporary
/// credential is in the output, the state directory or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rotates_each_account_through_its_profile_for_several_lifetimes() {
    let estate = Estate::new("2s").await;
    // The log goes to a file: a pipe read only at the end would fill and stop the daemon.
    let log = estate.dir.path().join("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut daemon = estate
        .command(&["run"])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let metrics = estate.metrics_url();
    for _ in 0..300 {
        if get(&format!("{metrics}/healthz")).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three lifetimes and a half.
    tokio::time::sleep(LIFETIME * 7 / 2).await;
    let temporary = ["cli", "ecs", "rrsa", "sg-prod", "uri"];
    let scraped = scrape_until(&metrics, |text| {
        temporary.iter().all(|p| {
            sample(
                text,
                &format!(
                    "pwrotd_credential_refreshes_total{{outcome=\"success\",profile=\"{p}\"}}"
                ),
            )
            .is_some_and(|n| n >= 3.0)
        })
    })
    .await;
    assert_eq!(get(&format!("{metrics}/healthz")).await.0, 200);
    signal(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logged}");

    // Credentials: each temporary source refreshed at least three times, never failed, and
    // its expiry is exported under its profile's name; [cloud]'s keys are not temporary.
    for p in temporary {
        let series = |outcome: &str| {
            format!("pwrotd_credential_refreshes_total{{outcome=\"{outcome}\",profile=\"{p}\"}}")
        };
        let ok = sample(&scraped, &series("success")).unwrap_or(0.0);
        assert!(ok >= 3.0, "{p}: {ok} refreshes\n{scraped}");
        assert_eq!(sample(&scraped, &series("failure")), Some(0.0), "{p}");
        let expiry = sample(
            &scraped,
            &format!("pwrotd_credentials_expiry_timestamp_seconds{{profile=\"{p}\"}}"),
        );
        assert!(expiry.is_some_and(|e| e > 1.7e9), "{p}: {expiry:?}");
    }
    assert!(!scraped.contains("profile=\"default\""), "{scraped}");

    // Every request: the right principal, the right region, and nothing refused.
    let stats = estate.server.sim.stats();
    assert_eq!(
        stats.by_code.keys().collect::<Vec<_>>(),
        ["OK"],
        "{:?}",
        stats.by_code
    );
    let callers: Vec<&str> = stats.by_caller.keys().map(String::as_str).collect();
    assert_eq!(
        callers,
        [
            "acs:ram::1234567890123456:role/pwrotd cn-hongkong",
            "acs:ram::1234567890123456:role/pwrotd cn-shanghai",
            "acs:ram::1234567890123456:role/pwrotd cn-shenzhen",
            "acs:ram::1234567890123456:role/pwrotd-rrsa cn-beijing",
            "acs:ram::1234567890123456:user/pwrotd-sim cn-hangzhou",
            "acs:ram::2222222222222222:role/pwrotd ap-southeast-1",
        ],
        "{:?}",
        stats.by_caller
    );
    let by_source: BTreeMap<&str, u64> = stats
        .credentials
        .iter()
        .filter(|(k, _)| k.ends_with(" OK"))
        .map(|(k, n)| (k.as_str(), *n))
        .collect();
    for asked in [
        "AssumeRole OK",
        "AssumeRoleWithOIDC OK",
        "metadata.credentials OK",
        "uri OK",
    ] {
        assert!(
            by_source.get(asked).is_some_and(|n| *n >= 3),
            "{by_source:?}"
        );
    }

    // Each account rotated several times, and its file holds what its database has.
    for (name, _, service, resource, user, _, _) in PLACES {
        let changes = estate.changes(service, resource, user);
        assert!(changes >= 4, "{name}: {changes} changes");
        let sink = estate.sink(name);
        assert!(sink["pending"].is_null(), "{name} is left pending");
        let live = estate
            .server
            .sim
            .account(service, resource, user)
            .and_then(|a| a.password)
            .map(|p| p.expose().to_owned());
        assert_eq!(
            sink["current"]["password"].as_str(),
            live.as_deref(),
            "{name}"
        );
    }

    // No secret or token of any temporary credential, anywhere pwrotd writes.
    let secrets = estate.server.sim.issued_secrets();
    assert!(secrets.len() >= 2 * 15, "{} secrets issued", secrets.len());
    let everything = format!("{logged}{scraped}{}", read_all(&estate.state()));
    assert!(
        everything.contains("\"outcome\":\"success\""),
        "no audit log read"
    );
    for s in &secrets {
        assert!(
            !everything.contains(s.expose_secret()),
            "a temporary secret or token in pwrotd's output or files"
        );
    }
    assert!(
        !everything.contains(SECRET),
        "the AccessKey secret in the output"
    );
}

/// `check` names each account's profile, region, endpoint and credential source;
/// `check --remote` asks each account's cloud account in its region, ready; an account moved
/// to a profile whose credentials cannot see its resource, or to the wrong region, is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_profile_and_check_remote_asks_through_it() {
    let estate = Estate::new("30d").await;
    let output = estate.pwrotd(&["check", "--remote"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for line in [
        "credentials (profile default): chain: environment",
        "profile sg-prod: region ap-southeast-1 (public network)",
        "credentials (profile sg-prod): static:",
        "then assume_role acs:ram::2222222222222222:role/pwrotd",
        "credentials (profile ecs): ecs_ram_role:",
        "credentials (profile rrsa): oidc:",
        "credentials (profile uri): uri:",
        "credentials (profile cli): cli_profile:",
        "profile sg-prod, region ap-southeast-1, endpoint http://127.0.0.1:",
        "profile cli, region cn-hongkong, endpoint http://127.0.0.1:",
        "7 of 7 accounts ready",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
    assert!(
        stdout.contains("credentials from static + assume_role, region ap-southeast-1")
            && stdout.contains("ready (profile sg-prod, credentials from static + assume_role"),
        "{stdout}"
    );
    // Nothing was changed, and no temporary secret was printed.
    for (name, _, service, resource, user, _, _) in PLACES {
        assert_eq!(estate.changes(service, resource, user), 0, "{name}");
    }
    let printed = format!("{stdout}{stderr}");
    for s in estate.server.sim.issued_secrets() {
        assert!(!printed.contains(s.expose_secret()));
    }

    // sg-billing through [cloud] (the primary account cannot see the other's instance), and
    // sh-ecs in the wrong region: both named, the rest still ready.
    let text = std::fs::read_to_string(&estate.config)
        .unwrap()
        .replacen(
            "name = \"sg-billing\"\nprofile = \"sg-prod\"\n",
            "name = \"sg-billing\"\nregion_id = \"ap-southeast-1\"\n",
            1,
        )
        .replacen(
            "name = \"sh-ecs\"\nprofile = \"ecs\"\n",
            "name = \"sh-ecs\"\nprofile = \"ecs\"\nregion_id = \"cn-qingdao\"\n",
            1,
        );
    std::fs::write(&estate.config, text).unwrap();
    let output = estate.pwrotd(&["check", "--remote"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 of 7 accounts ready"), "{stdout}");
    assert!(
        stdout.contains("instance rm-sg0001 not found in ap-southeast-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cluster pc-sh0001 not found in cn-qingdao"),
        "{stdout}"
    );
    assert!(
        stderr.contains("sg-billing") && stderr.contains("sh-ecs"),
        "{stderr}"
    );

    // The CLI profile's file gone: `check` refuses (exit 2, naming the profile's table);
    // `check --remote` says hk-cli is not ready, and still asks about the others.
    let text = std::fs::read_to_string(&estate.config)
        .unwrap()
        .replace("aliyun.json", "missing.json");
    std::fs::write(&estate.config, text).unwrap();
    let output = estate.pwrotd(&["check"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cloud.profiles.cli.credentials") && stderr.contains("missing.json"),
        "{stderr}"
    );
    let output = estate.pwrotd(&["check", "--remote"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("4 of 7 accounts ready"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{:<24} NOT READY: cloud.profiles.cli.credentials",
            "hk-cli"
        )) && stdout.contains("missing.json"),
        "{stdout}"
    );

    // An unknown profile is a config error: exit 2, its line and key.
    let text = std::fs::read_to_string(&estate.config).unwrap().replacen(
        "profile = \"cli\"",
        "profile = \"cli-prod\"",
        1,
    );
    std::fs::write(&estate.config, text).unwrap();
    let output = estate.pwrotd(&["check"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("account \"hk-cli\".profile") && stderr.contains("no profile \"cli-prod\""),
        "{stderr}"
    );
}

/// Reloads move accounts between profiles: an account moved off a removed profile rotates
/// through `[cloud]` at once, the removed profile's credential series are gone from
/// `/metrics`; a reload naming a profile whose credentials cannot be found fails and keeps the
/// running config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_accounts_between_profiles() {
    let estate = Estate::new("30d").await;
    let log = estate.dir.path().join("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut daemon = estate
        .command(&["run"])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let metrics = estate.metrics_url();
    let uri_series = "pwrotd_credential_refreshes_total{outcome=\"success\",profile=\"uri\"}";
    let scraped = scrape_until(&metrics, |text| {
        sample(text, uri_series).is_some_and(|n| n >= 1.0)
            && sample(text, "pwrotd_pending_rotations").is_some_and(|n| n == 0.0)
            && PLACES.iter().all(|(_, _, service, resource, user, _, _)| {
                estate.changes(*service, resource, user) == 1
            })
    })
    .await;
    assert!(sample(&scraped, uri_series).is_some(), "{scraped}");

    // sz-uri through [cloud]: no account uses the uri profile any more.
    let config = std::fs::read_to_string(&estate.config).unwrap();
    let moved = config
        .replacen(
            "[cloud.profiles.uri.credentials]\nsource = \"uri\"\n",
            "",
            1,
        )
        .replacen(
            &format!(
                "uri = \"{}/_creds/app\"\n",
                estate.server.url().as_str().trim_end_matches('/')
            ),
            "",
            1,
        )
        .replacen("profile = \"uri\"\n", "", 1);
    assert_ne!(moved, config);
    std::fs::write(&estate.config, &moved).unwrap();
    signal(&daemon, "HUP");
    let scraped = scrape_until(&metrics, |text| {
        sample(text, "pwrotd_config_reloads_total{outcome=\"success\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&scraped, "pwrotd_config_reloads_total{outcome=\"success\"}"),
        Some(1.0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!scraped.contains("profile=\"uri\""), "{scraped}");
    assert!(scraped.contains("profile=\"sg-prod\""), "{scraped}");
    let output = estate.pwrotd(&["rotate", "--account", "sz-uri"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(estate.changes(Service::PolarDb, "pc-sz0001", "app"), 2);
    let callers = estate.server.sim.stats().by_caller;
    assert!(
        callers.contains_key("acs:ram::1234567890123456:user/pwrotd-sim cn-shenzhen"),
        "{callers:?}"
    );

    // hz-orders through a CLI profile whose file is gone: the reload fails, nothing changes.
    let broken = moved
        .replacen(
            "name = \"hz-orders\"\n",
            "name = \"hz-orders\"\nprofile = \"cli\"\n",
            1,
        )
        .replace("aliyun.json", "missing.json");
    std::fs::write(&estate.config, &broken).unwrap();
    signal(&daemon, "HUP");
    let scraped = scrape_until(&metrics, |text| {
        sample(text, "pwrotd_config_reloads_total{outcome=\"failure\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&scraped, "pwrotd_config_reloads_total{outcome=\"failure\"}"),
        Some(1.0)
    );
    // The daemon rotates hz-orders as its running config says: through [cloud].
    let output = estate.pwrotd(&["rotate", "--account", "hz-orders"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(estate.changes(Service::PolarDb, "pc-hz0001", "app"), 2);
    let callers = estate.server.sim.stats().by_caller;
    assert!(
        !callers.contains_key("acs:ram::1234567890123456:role/pwrotd cn-hangzhou"),
        "{callers:?}"
    );

    signal(&daemon, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logged}");
    assert!(
        logged.contains("cloud.profiles.cli.credentials") && logged.contains("missing.json"),
        "the failed reload names the profile and the file: {logged}"
    );
}

/// Each profile's client: one whose credentials cannot be found fails the build, naming the
/// profile, before any credential series exists (a start, a reload, a cluster term: the
/// replica then steps aside, `cluster_hostile::a_replica_that_cannot_lead_gives_the_lease_up`).
/// Built, each profile's client has its own rate limiter for each service and region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_has_its_own_client_and_a_missing_one_fails_the_build() {
    use pwrotd::cloud::DescribeAccounts;
    use pwrotd::daemon::clients;
    let estate = Estate::new("30d").await;
    let secret = estate.dir.path().join("ak-secret");
    let text = format!(
        "{}\n[cloud.credentials]\nsource = \"static\"\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret_file = \"{}\"\n",
        std::fs::read_to_string(&estate.config).unwrap(),
        secret.display()
    );
    let broken = text.replace("aliyun.json", "missing.json");
    let config = Config::parse(&broken, &estate.config).unwrap();
    let metrics = pwrotd::metrics::Metrics::new();
    let error = clients(&config, &metrics, None).unwrap_err().to_string();
    assert!(
        error.contains("cloud.profiles.cli.credentials") && error.contains("missing.json"),
        "{error}"
    );
    // Nothing of a failed build shows in /metrics.
    assert!(
        !metrics.render().contains("profile="),
        "{}",
        metrics.render()
    );

    let config = Config::parse(&text, &estate.config).unwrap();
    let clients = clients(&config, &metrics, None).unwrap();
    let describe = |service, resource: &str| DescribeAccounts {
        service,
        resource_id: resource.to_owned(),
        account_name: "app".to_owned(),
    };
    let hz = describe(Service::PolarDb, "pc-hz0001");
    let client = clients.get("default", &hz).unwrap();
    client.query("cn-hangzhou", &hz).await.unwrap();
    let sg = describe(Service::PolarDb, "pc-sg0001");
    let client = clients.get("sg-prod", &sg).unwrap();
    client.query("ap-southeast-1", &sg).await.unwrap();
    // The uri profile calls in cn-hangzhou too, as the primary account's role: the same
    // service and region as [cloud], through a rate limiter of its own.
    let uri = clients.get("uri", &hz).unwrap();
    uri.query("cn-hangzhou", &hz).await.unwrap();
    assert_eq!(estate.server.sim.stats().requests, 3);
    // No profile of that name: refused, unsent.
    let Err(refused) = clients.get("nope", &hz) else {
        panic!("a client for a profile that does not exist")
    };
    assert_eq!(refused.code(), "Credentials");
    assert!(!refused.may_have_applied());
    for profile in ["default", "sg-prod", "uri"] {
        assert_eq!(
            clients.get(profile, &hz).unwrap().lanes_in_use(),
            1,
            "{profile}"
        );
    }
}
