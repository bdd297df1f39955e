//! Login verification and alternating users against real MariaDB and PostgreSQL servers
//! (docs/protocol.md#verification): the simulator applies each accepted change as a real `ALTER USER` or
//! `GRANT`, and pwrotd proves each new password by logging in with it.
//!
//! The servers come from `.ci/databases`, which CI runs, through `PWROTD_TEST_MYSQL_ADMIN` and
//! `PWROTD_TEST_POSTGRES_ADMIN`. Without them these tests say so on stderr and check nothing;
//! with `PWROTD_REQUIRE_DATABASES=1` (set by CI) a missing server fails them instead.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pwrotd::cloud::Service;
use pwrotd::config::{Account, Config};
use pwrotd::metrics::Metrics;
use pwrotd::password::Password;
use pwrotd::rotation::{Outcome, Report, Rotator};
use pwrotd::sim::{Database, Fault, FaultRates, Sim, SimServer};
use pwrotd::sink::{AuditRecord, SecretFile, Settlement, Sink, read_audit};
use pwrotd::verify::{Engine, Login, Tls, Verdict, Verify};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::common::{self, KEY_ID, SECRET};

/// The admin URL of a test server, or `None` (said on stderr) when there is none.
fn admin_url(engine: Engine) -> Option<String> {
    let var = match engine {
        Engine::Mysql => "PWROTD_TEST_MYSQL_ADMIN",
        Engine::Postgresql => "PWROTD_TEST_POSTGRES_ADMIN",
    };
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("PWROTD_REQUIRE_DATABASES").is_some() => {
            panic!(
                "{var} is not set, and PWROTD_REQUIRE_DATABASES is: start the servers with .ci/databases"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED: no {} server; run `eval \"$(.ci/databases start /tmp/pwrotd-db)\"` first",
                engine.as_str()
            );
            None
        }
    }
}

/// How an account rotates in a test.
struct Setup<'a> {
    api: &'a str,
    alternating: bool,
    grants: bool,
    /// The `tls` keys of `[account.verify]`.
    tls: &'a str,
    /// Where logins go, `host:port`, instead of the server the simulator changes.
    verify_at: Option<&'a str>,
}

impl<'a> Setup<'a> {
    /// One user, no grants, plain TCP to the loopback test servers.
    fn single(api: &'a str) -> Setup<'a> {
        Setup {
            api,
            alternating: false,
            grants: false,
            tls: "tls = \"disable\"",
            verify_at: None,
        }
    }
}

/// A simulator backed by a real server, one account on it, and a rotator.
struct Rig {
    engine: Engine,
    admin: String,
    host: String,
    port: u16,
    /// Unique per test, so that tests can share a server.
    user: String,
    clone: String,
    db: String,
    account: Arc<Account>,
    rotator: Rotator,
    server: SimServer,
    state: tempfile::TempDir,
}

impl Rig {
    async fn new(engine: Engine, admin: String, setup: Setup<'_>) -> Rig {
        let url = url::Url::parse(&admin).expect("an admin URL");
        let host = url.host_str().expect("a host").to_owned();
        let port = url.port().unwrap_or(engine.default_port());
        let tag = pwrotd::random::hex_token::<4>().unwrap();
        let (user, clone, db) = (
            format!("app_{tag}"),
            format!("app_{tag}_clone"),
            format!("orders_{tag}"),
        );
        let (resource, strategy) = match (setup.api, setup.alternating) {
            ("ResetAccountPassword", _) => (format!("instance_id = \"rm-{tag}\""), String::new()),
            (_, false) => (format!("cluster_id = \"pc-{tag}\""), String::new()),
            (_, true) => (
                format!("cluster_id = \"pc-{tag}\""),
                format!("strategy = \"alternating\"\nclone_account_name = \"{clone}\"\n"),
            ),
        };
        let grants = if setup.grants {
            format!("grants = [{{ db = \"{db}\", privilege = \"ReadWrite\" }}]\n")
        } else {
            String::new()
        };
        let (verify_host, verify_port) = match setup.verify_at.and_then(|a| a.rsplit_once(':')) {
            Some((h, p)) => (h.to_owned(), p.parse().expect("a port")),
            None => (host.clone(), port),
        };
        let text = format!(
            "[cloud]\nregion_id = \"cn-hangzhou\"\n\
             [[account]]\nname = \"acct\"\napi = \"{api}\"\n{resource}\naccount_name = \"{user}\"\n\
             keep_versions = 3\n{strategy}{grants}\
             [account.verify]\nengine = \"{engine}\"\nhost = \"{verify_host}\"\nport = {verify_port}\n\
             {tls}\ntimeout = \"2s\"\n",
            api = setup.api,
            tls = setup.tls,
            engine = engine.as_str(),
        );
        let config = Config::parse(&text, Path::new("databases.toml")).expect("a valid config");
        let mut sim = Sim::new(KEY_ID, SECRET);
        sim.add_database_backend(Database::from_url(engine, &admin).expect("an admin URL"));
        sim.register_config(&config);
        sim.prepare_databases()
            .await
            .expect("the simulator creates the users and databases");
        let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let state = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let rotator = Rotator::new(
            Arc::new(pwrotd::cloud::Clients::default().with(
                pwrotd::config::DEFAULT_PROFILE,
                common::client(&server, pwrotd::cloud::SignatureVersion::V1),
            )),
            Arc::new(Sink::open(state.path()).unwrap()),
            Metrics::new(),
            &config.accounts,
        );
        let rig = Rig {
            engine,
            admin,
            host,
            port,
            user,
            clone,
            db,
            account: config.accounts[0].clone(),
            rotator,
            server,
            state,
        };
        if setup.grants {
            rig.admin_sql(Some(&rig.db), "CREATE TABLE t (id INT)")
                .await;
        }
        rig
    }

    /// Rotates once, and checks that no password of the account reached the report or the
    /// audit log, whatever happened.
    async fn rotate(&self) -> Report {
        let report = self.rotator.rotate(&self.account).await;
        let audit =
            std::fs::read_to_string(self.state.path().join("audit.jsonl")).unwrap_or_default();
        if let Ok(Some(file)) = self.rotator.sink.load(&self.account) {
            let passwords = file
                .current
                .iter()
                .chain(&file.previous)
                .map(|v| &v.password)
                .chain(file.pending.iter().map(|p| &p.password));
            for password in passwords {
                assert!(
                    !report.message.contains(password.expose())
                        && !audit.contains(password.expose()),
                    "a password leaked into the report or the audit log"
                );
            }
        }
        report
    }

    fn file(&self) -> SecretFile {
        self.rotator
            .sink
            .load(&self.account)
            .unwrap()
            .expect("a secret file")
    }

    fn audit(&self) -> Vec<AuditRecord> {
        read_audit(self.state.path()).unwrap()
    }

    fn verifications(&self, outcome: &str) -> u64 {
        self.rotator
            .metrics
            .verifications
            .with_label_values(&["acct", outcome])
            .get()
    }

    /// Password-setting requests the simulator received, all codes.
    fn api_requests(&self) -> u64 {
        self.server.sim.stats().requests
    }

    /// Runs one statement as the admin, in `db` or the default database.
    async fn admin_sql(&self, db: Option<&str>, sql: &str) {
        match self.engine {
            Engine::Mysql => {
                let mut options: MySqlConnectOptions = self.admin.parse().unwrap();
                if let Some(db) = db {
                    options = options.database(db);
                }
                let mut c = options.connect().await.unwrap();
                c.execute(sql).await.unwrap();
                c.close().await.unwrap();
            }
            Engine::Postgresql => {
                let mut options: PgConnectOptions = self.admin.parse().unwrap();
                if let Some(db) = db {
                    options = options.database(db);
                }
                let mut c = options.connect().await.unwrap();
                c.execute(sql).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }

    async fn session(
        &self,
        user: &str,
        password: &Password,
        db: Option<&str>,
        sql: Option<&str>,
    ) -> Result<(), String> {
        session(self.engine, &self.host, self.port, user, password, db, sql).await
    }

    async fn logs_in(&self, user: &str, password: &Password) -> bool {
        self.session(user, password, None, None).await.is_ok()
    }

    /// Whether `user` can write to the granted database's table.
    async fn can_write(&self, user: &str, password: &Password) -> Result<(), String> {
        self.session(
            user,
            password,
            Some(&self.db),
            Some("INSERT INTO t (id) VALUES (1)"),
        )
        .await
    }
}

/// Logs in as `user` with `password` (into `db` when given) and runs `sql` if given: the
/// test's own login, independent of pwrotd's verifier.
async fn session(
    engine: Engine,
    host: &str,
    port: u16,
    user: &str,
    password: &Password,
    db: Option<&str>,
    sql: Option<&str>,
) -> Result<(), String> {
    let e = |e: sqlx::Error| e.to_string();
    match engine {
        Engine::Mysql => {
            let mut options = MySqlConnectOptions::new()
                .host(host)
                .port(port)
                .username(user)
                .password(password.expose())
                .ssl_mode(MySqlSslMode::Disabled);
            if let Some(db) = db {
                options = options.database(db);
            }
            let mut c = options.connect().await.map_err(e)?;
            if let Some(sql) = sql {
                c.execute(sql).await.map_err(e)?;
            }
            c.close().await.map_err(e)
        }
        Engine::Postgresql => {
            let options = PgConnectOptions::new_without_pgpass()
                .host(host)
                .port(port)
                .username(user)
                .password(password.expose())
                .database(db.unwrap_or("postgres"))
                .ssl_mode(PgSslMode::Disable);
            let mut c = options.connect().await.map_err(e)?;
            if let Some(sql) = sql {
                c.execute(sql).await.map_err(e)?;
            }
            c.close().await.map_err(e)
        }
    }
}

fn engines() -> Vec<(Engine, String)> {
    [Engine::Mysql, Engine::Postgresql]
        .into_iter()
        .filter_map(|e| admin_url(e).map(|url| (e, url)))
        .collect()
}

/// The API each engine's single-user test rotates through: a PolarDB for MySQL cluster, an RDS
/// for PostgreSQL instance.
fn single_api(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql => "ModifyAccountPassword",
        Engine::Postgresql => "ResetAccountPassword",
    }
}

#[tokio::test]
async fn single_user_rotation_is_verified_by_login() {
    for (engine, admin) in engines() {
        let api = single_api(engine);
        let rig = Rig::new(engine, admin, Setup::single(api)).await;
        let wrong = Password::new("Wrong-Password-123".into());
        assert!(!rig.logs_in(&rig.user, &wrong).await, "{engine:?}");

        let first = rig.rotate().await;
        assert_eq!(first.outcome, Outcome::Success, "{engine:?}: {first:?}");
        assert!(
            first.message.contains("verified by login"),
            "{}",
            first.message
        );
        let v1 = rig.file().current.unwrap();
        assert_eq!((v1.version, v1.username.as_str()), (1, rig.user.as_str()));
        assert!(rig.logs_in(&rig.user, &v1.password).await, "{engine:?}");

        let second = rig.rotate().await;
        assert_eq!(second.outcome, Outcome::Success, "{engine:?}: {second:?}");
        let v2 = rig.file().current.unwrap();
        assert_eq!(v2.version, 2);
        assert!(rig.logs_in(&rig.user, &v2.password).await, "{engine:?}");
        assert!(
            !rig.logs_in(&rig.user, &v1.password).await,
            "{engine:?}: the old password must stop working"
        );
        assert!(!rig.logs_in(&rig.user, &wrong).await, "{engine:?}");

        assert_eq!(rig.verifications("success"), 2, "{engine:?}");
        let audit = rig.audit();
        assert_eq!(audit.len(), 2);
        assert!(audit.iter().all(|a| a.outcome == Outcome::Success
            && a.verification.map(Verdict::as_str) == Some("success")
            && a.api == api));
        let account = rig
            .server
            .sim
            .account(
                rig.account.api.service(),
                &rig.account.resource_id,
                &rig.user,
            )
            .unwrap();
        assert_eq!(account.changes, 2, "{engine:?}");
    }
}

#[tokio::test]
async fn an_ambiguous_outcome_is_settled_by_login_with_no_second_call() {
    for (engine, admin) in engines() {
        let rig = Rig::new(engine, admin, Setup::single("ModifyAccountPasswordZonal")).await;
        assert_eq!(rig.rotate().await.outcome, Outcome::Success);
        let before = rig.api_requests();

        // The change is applied, then the connection drops: the client cannot know.
        rig.server.sim.script_faults([Fault::DropAfterApply]);
        let report = rig.rotate().await;
        assert_eq!(report.outcome, Outcome::Success, "{engine:?}: {report:?}");
        assert!(
            report.message.contains("no further API call"),
            "{}",
            report.message
        );
        assert_eq!(
            rig.api_requests() - before,
            1,
            "{engine:?}: the login settled it, so there is no second call"
        );
        let file = rig.file();
        let current = file.current.unwrap();
        assert_eq!(current.version, 2);
        assert_eq!(current.request_id, None, "no reply, so no RequestId");
        assert!(file.pending.is_none());
        assert!(rig.logs_in(&rig.user, &current.password).await);
        let last = rig.audit().pop().unwrap();
        assert_eq!(
            (last.outcome.as_str(), last.settled.map(Settlement::as_str)),
            ("success", Some("login"))
        );
        assert_eq!(rig.verifications("success"), 2);
    }
}

#[tokio::test]
async fn a_password_the_database_rejects_is_never_promoted() {
    for (engine, admin) in engines() {
        let rig = Rig::new(engine, admin, Setup::single(single_api(engine))).await;
        assert_eq!(rig.rotate().await.outcome, Outcome::Success);
        let v1 = rig.file().current.unwrap();

        // The API says success, but the database never gets the password.
        rig.server.sim.script_faults([Fault::SkipDatabase]);
        let report = rig.rotate().await;
        assert_eq!(report.outcome, Outcome::Pending, "{engine:?}: {report:?}");
        assert_eq!(report.error_code.as_deref(), Some("VerificationRejected"));
        let file = rig.file();
        let pending = file
            .pending
            .clone()
            .expect("the unproven password stays pending");
        assert_eq!(
            file.current.as_ref().map(|c| c.version),
            Some(1),
            "{engine:?}: never promoted"
        );
        assert!(!rig.logs_in(&rig.user, &pending.password).await);
        assert!(rig.logs_in(&rig.user, &v1.password).await);
        assert_eq!(rig.verifications("rejected"), 1, "{engine:?}");
        let last = rig.audit().pop().unwrap();
        assert_eq!(
            (
                last.outcome.as_str(),
                last.error_code.as_deref(),
                last.verification.map(Verdict::as_str)
            ),
            ("pending", Some("VerificationRejected"), Some("rejected"))
        );

        // Next time, the old password still logs in, so the pending one is re-applied.
        let report = rig.rotate().await;
        assert_eq!(report.outcome, Outcome::Success, "{engine:?}: {report:?}");
        let current = rig.file().current.unwrap();
        assert_eq!(current.version, pending.version, "the same pending version");
        assert!(rig.logs_in(&rig.user, &current.password).await);
        assert!(!rig.logs_in(&rig.user, &v1.password).await);
        let last = rig.audit().pop().unwrap();
        assert_eq!(
            (last.outcome.as_str(), last.settled.map(Settlement::as_str)),
            ("success", Some("reapply"))
        );
    }
}

#[tokio::test]
async fn alternating_users_keep_the_previous_user_working_with_privileges_in_line() {
    for (engine, admin) in engines() {
        let rig = Rig::new(
            engine,
            admin,
            Setup {
                alternating: true,
                grants: true,
                ..Setup::single("ModifyAccountPassword")
            },
        )
        .await;
        let mut expected_user = rig.user.clone();
        let mut previous: Option<(String, Password)> = None;
        for round in 1..=3u64 {
            if round == 3 {
                // Privileges drift between rotations; the next rotation brings them back.
                let revoke = match engine {
                    Engine::Mysql => format!(
                        "REVOKE ALL PRIVILEGES ON `{}`.* FROM '{}'@'%'",
                        rig.db, rig.user
                    ),
                    Engine::Postgresql => format!("REVOKE ALL ON t FROM \"{}\"", rig.user),
                };
                rig.admin_sql(Some(&rig.db), &revoke).await;
            }
            let report = rig.rotate().await;
            assert_eq!(
                report.outcome,
                Outcome::Success,
                "{engine:?} round {round}: {report:?}"
            );
            let file = rig.file();
            let current = file.current.clone().unwrap();
            assert_eq!(
                (current.version, current.username.as_str()),
                (round, expected_user.as_str()),
                "{engine:?} round {round}"
            );
            rig.can_write(&current.username, &current.password)
                .await
                .unwrap_or_else(|e| {
                    panic!("{engine:?} round {round}: the new user cannot write: {e}")
                });
            if let Some((user, password)) = &previous {
                let kept = &file.previous[0];
                assert_eq!(&kept.username, user);
                rig.can_write(user, password).await.unwrap_or_else(|e| {
                    panic!("{engine:?} round {round}: the previous user stopped working: {e}")
                });
            }
            // Two rounds ago, the same user had another password: that one is gone.
            if round == 3 {
                let old = &file.previous[1];
                assert_eq!(old.username, current.username);
                assert!(!rig.logs_in(&old.username, &old.password).await);
            }
            previous = Some((current.username.clone(), current.password.clone()));
            expected_user = if expected_user == rig.user {
                rig.clone.clone()
            } else {
                rig.user.clone()
            };
        }
        let sim = &rig.server.sim;
        for user in [&rig.user, &rig.clone] {
            let account = sim
                .account(Service::PolarDb, &rig.account.resource_id, user)
                .unwrap();
            assert!(account.changes >= 1, "{user}");
            assert_eq!(account.privileges.len(), 1, "{user}");
        }
        assert_eq!(rig.verifications("success"), 3);
    }
}

/// Ambiguous outcomes under random faults, half of them applied and half not: each is settled
/// by login (applied: promoted, no further call) or by re-apply (not applied: set again), and
/// after every rotation a real login shows the database's password is the sink's current or
/// pending. `PWROTD_TALLY_ROTATIONS` scales it up for RELIABILITY.md's figures.
#[tokio::test]
async fn every_ambiguous_outcome_is_settled_by_login_or_reapply() {
    let rotations: usize = std::env::var("PWROTD_TALLY_ROTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    for (engine, admin) in engines() {
        let rig = Rig::new(engine, admin, Setup::single("ModifyAccountPasswordZonal")).await;
        // Each kind at least once, whatever the random draws.
        rig.server.sim.script_faults([
            Fault::DropAfterApply,
            Fault::DropBeforeApply,
            Fault::Garbage,
        ]);
        rig.server.sim.set_fault_rates(FaultRates {
            drop_after_apply: 0.15,
            drop_before_apply: 0.2,
            garbage: 0.05,
            ..FaultRates::default()
        });
        let (mut success, mut pending) = (0, 0);
        for i in 0..rotations {
            let report = rig.rotate().await;
            match report.outcome {
                Outcome::Success => success += 1,
                Outcome::Pending => pending += 1,
                Outcome::Failure => panic!("{engine:?} rotation {i}: {report:?}"),
            }
            let file = rig.file();
            let mut live = false;
            for (user, password) in [
                file.current.as_ref().map(|c| (&c.username, &c.password)),
                file.pending.as_ref().map(|p| (&p.username, &p.password)),
            ]
            .into_iter()
            .flatten()
            {
                live |= rig.logs_in(user, password).await;
            }
            assert!(
                live,
                "{engine:?} rotation {i}: the database's password is not in the sink"
            );
        }
        let audit = rig.audit();
        let settled = |how: &str| {
            audit
                .iter()
                .filter(|a| a.settled.map(Settlement::as_str) == Some(how))
                .count()
        };
        let (by_login, by_reapply) = (settled("login"), settled("reapply"));
        let stats = rig.server.sim.stats();
        let code = |c: &str| stats.by_code.get(c).copied().unwrap_or(0) as usize;
        let ambiguous = code("Dropped") + code("DroppedBeforeApply") + code("Garbage");
        let unsettled = usize::from(rig.file().pending.is_some());
        eprintln!(
            "{engine:?}: {rotations} rotations ({success} success, {pending} pending at the end of \
             an attempt); {} API requests; {ambiguous} ambiguous replies: {by_login} settled by \
             login with no further call, {by_reapply} by re-apply, {unsettled} still pending",
            stats.requests
        );
        assert!(by_login >= 1 && by_reapply >= 1, "{engine:?}");
        assert_eq!(
            by_login + by_reapply + unsettled,
            ambiguous,
            "{engine:?}: every ambiguous reply is settled exactly once"
        );
    }
}

#[tokio::test]
async fn tls_logins_check_the_certificate_and_a_tls_failure_is_never_a_rejection() {
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem");
    let trusted = format!("tls = \"verify-full\"\nca_file = \"{ca}\"");
    for (engine, admin) in engines() {
        let setup = |tls| Setup {
            tls,
            ..Setup::single(single_api(engine))
        };
        // The servers present a certificate for 127.0.0.1 from the test CA.
        let rig = Rig::new(engine, admin.clone(), setup(&trusted)).await;
        let report = rig.rotate().await;
        assert_eq!(report.outcome, Outcome::Success, "{engine:?}: {report:?}");
        assert_eq!(rig.verifications("success"), 1);

        // Without the test CA, the certificate is refused: that says nothing about the
        // password, so it is never called rejected. The API confirmed the change, so the old
        // password is gone: the new one is promoted on the API's word, unverified.
        let rig = Rig::new(engine, admin, setup("tls = \"verify-full\"")).await;
        let report = rig.rotate().await;
        assert_eq!(report.outcome, Outcome::Success, "{engine:?}: {report:?}");
        assert_eq!(report.error_code.as_deref(), Some("VerificationFailed"));
        assert!(report.message.contains("on the API's word"), "{report:?}");
        assert_eq!(
            (rig.verifications("error"), rig.verifications("rejected")),
            (1, 0),
            "{engine:?}"
        );
        let file = rig.file();
        assert!(file.pending.is_none(), "{engine:?}: {report:?}");
        let current = file.current.expect("promoted");
        assert!(
            rig.logs_in(&rig.user, &current.password).await,
            "{engine:?}: the API did apply it"
        );
    }
}

/// docs/protocol.md#verification: applications never hold a password the database has stopped accepting.
/// With one user, once the API confirmed a change the old password is gone, so a login that
/// cannot test the new one (the verify host unreachable, refusing connections, or behind TLS
/// that cannot be verified) never keeps it from `current`, which render files hold.
#[tokio::test]
async fn applications_never_hold_a_dead_password_when_logins_cannot_tell() {
    // Accepts connections and never answers: packets into the void.
    let void = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let void_at = void.local_addr().unwrap().to_string();
    let closed_at = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    for (engine, admin) in engines() {
        let cases = [
            ("unreachable", Some(void_at.as_str()), "tls = \"disable\""),
            ("refusing", Some(closed_at.as_str()), "tls = \"disable\""),
            ("untrusted TLS", None, "tls = \"verify-full\""),
        ];
        for (what, verify_at, tls) in cases {
            let rig = Rig::new(
                engine,
                admin.clone(),
                Setup {
                    tls,
                    verify_at,
                    ..Setup::single(single_api(engine))
                },
            )
            .await;
            for round in 1..=2u64 {
                let report = rig.rotate().await;
                assert_eq!(
                    (report.outcome, report.error_code.as_deref()),
                    (Outcome::Success, Some("VerificationFailed")),
                    "{engine:?} {what}: {report:?}"
                );
                let file = rig.file();
                let current = file.current.expect("promoted");
                assert_eq!(current.version, round);
                assert!(file.pending.is_none());
                assert!(
                    rig.logs_in(&rig.user, &current.password).await,
                    "{engine:?} {what}: current is not the database's password"
                );
            }
            assert_eq!(rig.verifications("rejected"), 0, "{engine:?} {what}");
        }
    }
    drop(void);
}

/// The real binaries: `pwrotd-sim` backed by a real server through its environment variable,
/// and `pwrotd rotate` against it, with one account `bin`.
struct Binaries {
    engine: Engine,
    host: String,
    port: u16,
    user: String,
    clone: String,
    config_path: std::path::PathBuf,
    account: Arc<Account>,
    state: std::path::PathBuf,
    sim_url: reqwest::Url,
    _sim: common::Reaper,
    _dir: tempfile::TempDir,
}

impl Binaries {
    /// `extra` goes into the account, before its `[account.verify]`.
    fn start(engine: Engine, admin: &str, extra: &str) -> Binaries {
        let url = url::Url::parse(admin).unwrap();
        let host = url.host_str().unwrap().to_owned();
        let port = url.port().unwrap_or(engine.default_port());
        let tag = pwrotd::random::hex_token::<4>().unwrap();
        let (user, clone) = (format!("bin_{tag}"), format!("bin_{tag}_clone"));
        let extra = extra.replace("{clone}", &clone);
        let dir = tempfile::tempdir().unwrap();
        let accounts = format!(
            "[[account]]\nname = \"bin\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-{tag}\"\n\
             account_name = \"{user}\"\n{extra}\
             [account.verify]\nengine = \"{}\"\nhost = \"{host}\"\nport = {port}\n\
             tls = \"disable\"\ntimeout = \"5s\"\n",
            engine.as_str()
        );
        let sim_config = dir.path().join("sim.toml");
        std::fs::write(
            &sim_config,
            format!("[cloud]\nregion_id = \"cn-hangzhou\"\n{accounts}"),
        )
        .unwrap();
        let variable = match engine {
            Engine::Mysql => "PWROTD_SIM_MYSQL_ADMIN",
            Engine::Postgresql => "PWROTD_SIM_POSTGRES_ADMIN",
        };
        let (sim, sim_url) = common::spawn_sim_binary(&sim_config, &[(variable, admin)]);
        let endpoint = sim_url.as_str().trim_end_matches('/');
        let state = dir.path().join("state");
        let config_path = dir.path().join("pwrotd.toml");
        std::fs::write(
            &config_path,
            format!(
                "[daemon]\nstate_dir = \"{}\"\nmetrics_listen = \"\"\n\
                 [cloud]\nregion_id = \"cn-hangzhou\"\n\
                 [cloud.endpoints]\npolardb = \"{endpoint}\"\nrds = \"{endpoint}\"\n{accounts}",
                state.display()
            ),
        )
        .unwrap();
        let account = Config::load(&config_path).unwrap().accounts[0].clone();
        Binaries {
            engine,
            host,
            port,
            user,
            clone,
            config_path,
            account,
            state,
            sim_url,
            _sim: sim,
            _dir: dir,
        }
    }

    /// Runs `pwrotd rotate --all`, with a failpoint if given.
    fn rotate(&self, failpoint: Option<&str>) -> std::process::Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd"));
        command
            .args(["rotate", "--all", "--config"])
            .arg(&self.config_path)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET);
        if let Some(point) = failpoint {
            command.env("PWROTD_FAILPOINT", point);
        }
        command.output().unwrap()
    }

    /// Runs `pwrotd rotate --all` and expects exit 0; returns its output.
    fn rotate_ok(&self) -> String {
        let output = self.rotate(None);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{:?}: {stdout}{}",
            self.engine,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn file(&self) -> SecretFile {
        let uid = nix::unistd::geteuid().as_raw();
        pwrotd::sink::read_secret(&self.state, &self.account, uid)
            .unwrap()
            .unwrap()
    }

    /// API requests the simulator received, from its stats hook.
    async fn requests(&self) -> u64 {
        let body = reqwest::get(self.sim_url.join("/_sim/stats").unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        stats["requests"].as_u64().unwrap()
    }

    async fn logs_in(&self, user: &str, password: &Password) -> Result<(), String> {
        session(
            self.engine,
            &self.host,
            self.port,
            user,
            password,
            None,
            None,
        )
        .await
    }
}

/// The real binaries end to end, on an alternating, verified account.
#[tokio::test]
async fn the_binaries_rotate_an_alternating_verified_account_on_a_real_server() {
    for (engine, admin) in engines() {
        let bin = Binaries::start(
            engine,
            &admin,
            "strategy = \"alternating\"\nclone_account_name = \"{clone}\"\n",
        );
        for _ in 1..=2 {
            let stdout = bin.rotate_ok();
            assert!(stdout.contains("verified by login"), "{stdout}");
        }
        let file = bin.file();
        let current = file.current.unwrap();
        assert_eq!((current.version, &current.username), (2, &bin.clone));
        let previous = &file.previous[0];
        assert_eq!(previous.username, bin.user);
        for (who, password) in [
            (&bin.clone, &current.password),
            (&bin.user, &previous.password),
        ] {
            bin.logs_in(who, password)
                .await
                .unwrap_or_else(|e| panic!("{engine:?}: {who} cannot log in: {e}"));
        }
    }
}

/// `kill -9` in the middle of a rotation, then a new start: a login settles the pending
/// password. Killed before the call, the previous password still logs in, so the pending one is
/// set again; killed after the API said yes, the pending one logs in and is promoted with no
/// second call.
#[tokio::test]
async fn after_a_crash_the_next_start_settles_the_pending_password_by_login() {
    for (engine, admin) in engines() {
        let bin = Binaries::start(engine, &admin, "");
        bin.rotate_ok();
        assert_eq!(bin.requests().await, 1);

        let killed = bin.rotate(Some("after_pending"));
        assert_eq!(killed.status.code(), None, "{engine:?}: killed by a signal");
        assert_eq!(bin.requests().await, 1, "{engine:?}: no call was made");
        assert!(bin.file().pending.is_some());
        let stdout = bin.rotate_ok();
        assert!(stdout.contains("re-applied"), "{stdout}");
        assert_eq!(bin.requests().await, 2, "{engine:?}: set once");
        let last = read_audit(&bin.state).unwrap().pop().unwrap();
        assert_eq!(last.settled.map(Settlement::as_str), Some("reapply"));

        let killed = bin.rotate(Some("before_promote"));
        assert_eq!(killed.status.code(), None, "{engine:?}: killed by a signal");
        assert_eq!(bin.requests().await, 3);
        let pending = bin
            .file()
            .pending
            .expect("the applied password is still pending");
        let stdout = bin.rotate_ok();
        assert!(stdout.contains("settled by login"), "{stdout}");
        assert_eq!(
            bin.requests().await,
            3,
            "{engine:?}: promoted with no second call"
        );
        let file = bin.file();
        let current = file.current.unwrap();
        assert_eq!(
            (current.version, current.request_id.as_deref()),
            (pending.version, None)
        );
        assert!(file.pending.is_none());
        bin.logs_in(&bin.user, &current.password).await.unwrap();
        let last = read_audit(&bin.state).unwrap().pop().unwrap();
        assert_eq!(last.settled.map(Settlement::as_str), Some("login"));
    }
}

/// `pwrotd demo --once` with a MariaDB: the verified, alternating account rotates on real users,
/// which the demo drops again at the end.
#[test]
fn the_demo_shows_verification_on_a_local_mariadb() {
    let Some(admin) = admin_url(Engine::Mysql) else {
        return;
    };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd"))
        .args(["demo", "--once"])
        .env("PWROTD_DEMO_MYSQL_ADMIN", &admin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("login verification: MariaDB at 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("now user pwrotd_demo_reports (") && stdout.contains("verified by login"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("the database's password is the sink's current: yes")
            .count(),
        5,
        "{stdout}"
    );
    let left = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = admin
                .parse::<MySqlConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'pwrotd\\_demo\\_%'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap()
        });
    assert_eq!(left, 0, "the demo drops its users");
}

/// The admin account of a test server as a verify target: `(user, password, port)`.
fn admin_login(admin: &str, engine: Engine) -> (String, Password, u16) {
    let url = url::Url::parse(admin).expect("an admin URL");
    let password = url.password().expect("a password in the admin URL");
    let password = percent_decode(password);
    (
        url.username().to_owned(),
        Password::new(password),
        url.port().unwrap_or(engine.default_port()),
    )
}

/// A URL's userinfo decoded: `%XX` only, `+` means itself there.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// A `[account.verify]` target for the admin account at `host`.
fn admin_verify(engine: Engine, host: &str, port: u16, tls: Tls, ca: bool) -> Verify {
    Verify {
        engine,
        host: host.to_owned(),
        port,
        database: None,
        tls,
        ca_file: ca.then(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem").into()),
        timeout: Duration::from_secs(10),
    }
}

/// An address that drops packets: a listening socket whose accept queue (backlog 0) is full
/// with a connection nobody accepts, so the kernel drops every further SYN and a connect to it
/// hangs until the OS gives up, minutes later. Loopback only: no routing needed.
struct Blackhole {
    _listener: tokio::net::TcpListener,
    _filler: tokio::net::TcpStream,
}

impl Blackhole {
    async fn bind(at: SocketAddr) -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(at).unwrap_or_else(|e| panic!("bind {at}: {e}"));
        let listener = socket.listen(0).unwrap();
        let filler = tokio::net::TcpStream::connect(at).await.unwrap();
        let probe = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(at),
        )
        .await;
        assert!(
            probe.is_err(),
            "a connect to {at} must hang, not end: {probe:?}"
        );
        Blackhole {
            _listener: listener,
            _filler: filler,
        }
    }
}

/// Accepts on `at` and relays every connection to `to`: a second address for a test server
/// that listens on 127.0.0.1 only.
struct Forwarder(tokio::task::JoinHandle<()>);

impl Forwarder {
    async fn start(at: SocketAddr, to: SocketAddr) -> Forwarder {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .unwrap_or_else(|e| panic!("bind {at}: {e}"));
        Forwarder(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lines of `/etc/hosts` that give one test name several addresses, in order; removed on drop,
/// panics included. Edits happen under an exclusive `flock` on the file, in place (in a
/// container `/etc/hosts` is a bind mount, which cannot be renamed over).
struct HostsName {
    name: String,
    lines: Vec<String>,
}

impl HostsName {
    const PATH: &str = "/etc/hosts";

    /// `None` (said on stderr) when `/etc/hosts` cannot be written: the test needs root, which
    /// CI has.
    fn add(addresses: &[std::net::IpAddr]) -> Option<HostsName> {
        let name = format!("pwrotd-{}.test", pwrotd::random::hex_token::<6>().unwrap());
        let lines: Vec<String> = addresses.iter().map(|a| format!("{a} {name}")).collect();
        let edit = Self::edit(|text| {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
        });
        match edit {
            Ok(()) => Some(HostsName { name, lines }),
            Err(e) if std::env::var_os("PWROTD_REQUIRE_DATABASES").is_some() => {
                panic!("cannot edit {}: {e}", Self::PATH)
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot edit {}: {e} (run as root)", Self::PATH);
                None
            }
        }
    }

    fn edit(change: impl FnOnce(&mut String)) -> std::io::Result<()> {
        use std::io::{Read, Seek, Write};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Self::PATH)?;
        let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        change(&mut text);
        file.seek(std::io::SeekFrom::Start(0))?;
        file.set_len(0)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

impl Drop for HostsName {
    fn drop(&mut self) {
        let removed = Self::edit(|text| {
            *text = text
                .lines()
                .filter(|l| !self.lines.iter().any(|ours| ours == l))
                .map(|l| format!("{l}\n"))
                .collect();
        });
        if let Err(e) = removed {
            eprintln!("cannot remove {} from {}: {e}", self.name, Self::PATH);
        }
    }
}

/// Two loopback addresses that the resolver keeps in `/etc/hosts` order: glibc sorts by RFC
/// 6724, which puts 127.0.0.1 (the source address itself) before any other 127/8 address, but
/// leaves two that differ from it in the same highest bit in file order. Random, so that runs
/// in parallel do not collide.
fn two_loopback_addresses() -> [std::net::Ipv4Addr; 2] {
    let token = pwrotd::random::hex_token::<2>().unwrap();
    let bytes = hex::decode(token).unwrap();
    let (b, c) = (64 + bytes[0] % 64, bytes[1]);
    [
        std::net::Ipv4Addr::new(127, b, c, 2),
        std::net::Ipv4Addr::new(127, b, c, 3),
    ]
}

/// The defect: a host name with several addresses, the first dropping packets. A connect that
/// tries the addresses one by one with no timeout of its own waits out the OS's SYN retries
/// (minutes) on the first, and every login times out. Each address gets its own timeout, in
/// the resolver's order, so the login goes through the second one.
#[tokio::test]
async fn a_host_whose_first_address_drops_packets_logs_in_through_the_next() {
    for (engine, admin) in engines() {
        let (user, password, port) = admin_login(&admin, engine);
        let [dead, live] = two_loopback_addresses();
        let _blackhole = Blackhole::bind(SocketAddr::from((dead, port))).await;
        let _forwarder = Forwarder::start(
            SocketAddr::from((live, port)),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .await;
        let Some(hosts) = HostsName::add(&[dead.into(), live.into()]) else {
            return;
        };
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((hosts.name.as_str(), port))
            .await
            .unwrap()
            .collect();
        assert_eq!(
            resolved,
            [
                SocketAddr::from((dead, port)),
                SocketAddr::from((live, port))
            ],
            "the resolver must return the dead address first"
        );

        // Through the verifier, over TLS. The certificate is for 127.0.0.1, not this name, so
        // `require`: sqlx 0.8.6's verify-ca checks the name too (launchbadge/sqlx#3793).
        let verify = admin_verify(engine, &hosts.name, port, Tls::Require, false);
        let start = std::time::Instant::now();
        let login = verify.login(&user, &password).await;
        let took = start.elapsed();
        eprintln!(
            "{engine:?}: login through {} ({dead} dropping packets, then {live}): {login:?} in {took:.2?}",
            hosts.name
        );
        assert_eq!(login, Login::Accepted, "{engine:?}");
        assert!(
            took < Duration::from_secs(3 + 3),
            "{engine:?}: took {took:?}, more than one address's timeout (3 s) and a login"
        );

        // And through a rotation, with `timeout = "2s"`: 1 s for the first address.
        let rig = Rig::new(
            engine,
            admin.clone(),
            Setup {
                verify_at: Some(&format!("{}:{port}", hosts.name)),
                ..Setup::single(single_api(engine))
            },
        )
        .await;
        let start = std::time::Instant::now();
        let report = rig.rotate().await;
        eprintln!(
            "{engine:?}: rotation verified through {}: {:?} in {:.2?}",
            hosts.name,
            report.outcome,
            start.elapsed()
        );
        assert_eq!(report.outcome, Outcome::Success, "{engine:?}: {report:?}");
        assert!(
            report.message.contains("verified by login"),
            "{engine:?}: {report:?}"
        );
        assert_eq!(rig.verifications("success"), 1, "{engine:?}");
    }
}

/// Whatever address a login reaches, `verify-full` checks the certificate against the host
/// NAME in the config. The test certificate is for IP 127.0.0.1 only, from the test CA.
/// `localhost` reaches that very address and server, and logs in over TLS when the certificate
/// is not checked; but the certificate does not name `localhost`, so verify-full refuses it (an
/// error, never a rejection), while `127.0.0.1` passes verify-full with the same CA.
#[tokio::test]
async fn verify_full_checks_the_configured_host_name_not_the_address_reached() {
    for (engine, admin) in engines() {
        let (user, password, port) = admin_login(&admin, engine);
        let login = |host: &str, tls| {
            let verify = admin_verify(engine, host, port, tls, true);
            let (user, password) = (user.clone(), password.clone());
            async move { verify.login(&user, &password).await }
        };
        assert_eq!(
            login("127.0.0.1", Tls::VerifyFull).await,
            Login::Accepted,
            "{engine:?}: the certificate names 127.0.0.1"
        );
        assert_eq!(
            login("localhost", Tls::Require).await,
            Login::Accepted,
            "{engine:?}: localhost reaches the server"
        );
        match login("localhost", Tls::VerifyFull).await {
            Login::Error(reason) => assert!(
                reason.contains("certificate") && reason.contains("localhost"),
                "{engine:?}: {reason}"
            ),
            other => panic!(
                "{engine:?}: verify-full must refuse a name the certificate lacks: {other:?}"
            ),
        }
    }
}
