//! `pwrotd demo`: a newcomer's first run, with nothing to set up.
//!
//! It starts the simulator in-process on loopback, with one account per rotation API (one with
//! grants), and runs the real daemon against it with a throwaway state directory and schedules a
//! few seconds apart. Each rotation is printed as it happens, with a check that the sink's
//! current password is the one the simulated database has. It never prints a password.
//!
//! When a local MariaDB (or MySQL) answers, one more account shows verification by login and
//! alternating users on it: the simulator applies each change as a real `ALTER USER`, and the
//! demo's two users are dropped again at the end. When none answers, the demo says so.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Account, Config};
use crate::daemon::{self, RunOptions};
use crate::random;
use crate::rotation::{Outcome, Report};
use crate::sim::{Database, Fault, Sim, SimServer, Stats};
use crate::sink;
use crate::verify::Engine;

/// The demo's accounts; `{...}` fields are filled in at run time.
const DEMO_CONFIG: &str = r#"
[daemon]
state_dir = "{state_dir}"
metrics_listen = ""
max_concurrent = 2
shutdown_grace = "5s"

[cloud]
region_id = "cn-hangzhou"
signature = "{signature}"
timeout = "5s"
[cloud.endpoints]
polardb = "{endpoint}"
rds = "{endpoint}"
[cloud.credentials]
access_key_id = "{key_id}"
access_key_secret = "{secret}"

[defaults]
jitter = "0s"
retry_after_failure = "3s"

[[account]]
name = "orders-app"
api = "ModifyAccountPassword"
cluster_id = "pc-demo0001"
account_name = "orders_app"
every = "12s"
grants = [{ db = "orders", privilege = "ReadWrite" }, { db = "reports", privilege = "ReadOnly" }]

[[account]]
name = "edge-app"
api = "ModifyAccountPasswordZonal"
cluster_id = "pc-demo0002"
account_name = "edge_app"
every = "17s"

[[account]]
name = "cluster-admin"
api = "ResetAccount"
cluster_id = "pc-demo0001"
account_name = "root_admin"
cron = "*/20 * * * * *"

[[account]]
name = "billing"
api = "ResetAccountPassword"
instance_id = "rm-demo0001"
account_name = "billing"
every = "25s"
[account.password]
length = 16
require = ["upper", "lower", "digit"]
"#;

/// The account on a real local MariaDB, when there is one.
const VERIFIED_ACCOUNT: &str = r#"
[[account]]
name = "reports-app"
api = "ModifyAccountPassword"
cluster_id = "pc-demo0003"
account_name = "pwrotd_demo_reports"
strategy = "alternating"
clone_account_name = "pwrotd_demo_reports_clone"
every = "15s"
[account.verify]
engine = "mysql"
host = "{db_host}"
port = {db_port}
tls = "disable"
timeout = "10s"
"#;

/// The demo's users on a real server, dropped at the end.
const VERIFIED_USERS: [&str; 2] = ["pwrotd_demo_reports", "pwrotd_demo_reports_clone"];

/// Where the demo looks for MariaDB: `PWROTD_DEMO_MYSQL_ADMIN`, or else the Debian package's
/// socket, as the current OS user (how root logs in there).
fn mariadb_admin_url() -> String {
    std::env::var("PWROTD_DEMO_MYSQL_ADMIN").unwrap_or_else(|_| {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        format!("mysql://{user}@localhost?socket=/run/mysqld/mysqld.sock")
    })
}

/// A local MariaDB that answers: its admin connection, and the host and port logins go to.
struct LocalMariadb {
    db: Arc<Database>,
    host: String,
    port: u16,
}

impl LocalMariadb {
    /// Finds one where [`mariadb_admin_url`] says, or says why there is none.
    async fn find() -> Result<LocalMariadb, String> {
        let url = mariadb_admin_url();
        let db = Database::from_url(Engine::Mysql, &url).map_err(|e| e.to_string())?;
        let port = tokio::time::timeout(std::time::Duration::from_secs(5), db.probe())
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .filter(|h| h != "localhost")
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        Ok(LocalMariadb {
            db: Arc::new(db),
            host,
            port,
        })
    }

    /// The `[[account]]` that rotates on it.
    fn account(&self) -> String {
        VERIFIED_ACCOUNT
            .replace("{db_host}", &self.host)
            .replace("{db_port}", &self.port.to_string())
    }

    /// Drops the demo's users, saying so when one cannot be.
    async fn drop_users(&self) {
        for user in VERIFIED_USERS {
            if let Err(e) = self.db.drop_user(user).await {
                say!("could not drop the demo's MariaDB user {user}: {e}");
            }
        }
    }
}

/// Runs the demo; the exit code says whether it went as it should.
pub async fn run(once: bool) -> ExitCode {
    let dir = std::env::temp_dir().join(format!(
        "pwrotd-demo-{}",
        random::hex_token::<6>().unwrap_or_else(|_| "0".into())
    ));
    let result = demo(&dir, once).await;
    if once {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pwrotd demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo from start to end; true if every rotation left the sink and the database agreeing.
async fn demo(state_dir: &Path, once: bool) -> Result<bool, String> {
    let setup = Setup::start(state_dir).await?;
    setup.introduce(state_dir, once);
    // The very first API call is throttled, to show a transient failure retried.
    setup.server.sim.script_faults([Fault::Throttle]);
    let watch = Arc::new(Watch {
        sim: setup.server.sim.clone(),
        accounts: setup.config.accounts.clone(),
        state_dir: state_dir.to_owned(),
        once,
        all_good: AtomicBool::new(true),
        first_round: Mutex::new(HashSet::new()),
    });
    let hook = {
        let watch = watch.clone();
        Arc::new(move |report: &Report| watch.on_report(report))
    };
    let options = RunOptions {
        config: setup.config,
        shutdown: CancellationToken::new(),
        on_report: Some(hook),
        metrics_listener: Some(setup.metrics),
        once,
    };
    daemon::run(options).await.map_err(|e| e.to_string())?;
    print_ending(&setup.server.sim.stats(), state_dir, once);
    setup.server.stop().await;
    if let Ok(mariadb) = &setup.mariadb {
        mariadb.drop_users().await;
    }
    Ok(watch.all_good.load(Ordering::Relaxed))
}

/// What the demo's daemon runs against: the simulator, its config, and a metrics port.
struct Setup {
    server: SimServer,
    config: Config,
    /// The AccessKey the simulator accepts; its secret is never shown.
    key_id: String,
    metrics: TcpListener,
    metrics_url: String,
    /// The MariaDB behind the simulator, or why there is none.
    mariadb: Result<LocalMariadb, String>,
}

impl Setup {
    /// Starts the simulator on loopback, with the local MariaDB behind it if one answers, and
    /// registers the demo's accounts (and creates their users on that MariaDB).
    async fn start(state_dir: &Path) -> Result<Setup, String> {
        let key_id = format!(
            "LTAIdemo{}",
            random::hex_token::<6>().map_err(|e| e.to_string())?
        );
        let secret = random::hex_token::<20>().map_err(|e| e.to_string())?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut sim = Sim::new(key_id.clone(), secret.clone());
        let mariadb = LocalMariadb::find().await;
        let mut text = DEMO_CONFIG.to_owned();
        if let Ok(mariadb) = &mariadb {
            sim.add_database_backend(mariadb.db.clone());
            text.push_str(&mariadb.account());
        }
        let server = SimServer::start(sim, loopback)
            .await
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        let text = text
            .replace("{state_dir}", &state_dir.display().to_string())
            .replace("{signature}", "v1")
            .replace("{endpoint}", server.url().as_str().trim_end_matches('/'))
            .replace("{key_id}", &key_id)
            .replace("{secret}", &secret);
        let config = Config::parse(&text, &PathBuf::from("<demo>")).map_err(|e| e.to_string())?;
        server.sim.register_config(&config);
        server
            .sim
            .prepare_databases()
            .await
            .map_err(|e| format!("cannot create the demo's users on MariaDB: {e}"))?;
        let metrics = TcpListener::bind(loopback)
            .await
            .map_err(|e| format!("cannot bind a metrics port: {e}"))?;
        let metrics_url = format!(
            "http://{}/metrics",
            metrics.local_addr().map_err(|e| e.to_string())?
        );
        Ok(Setup {
            server,
            config,
            key_id,
            metrics,
            metrics_url,
            mariadb,
        })
    }

    /// Says what runs where, and how the demo ends.
    fn introduce(&self, state_dir: &Path, once: bool) {
        say!("pwrotd demo");
        say!(
            "  simulated PolarDB and RDS OpenAPI: {} (AccessKey {})",
            self.server.url(),
            self.key_id
        );
        say!(
            "  state directory (the vault-style sink): {}",
            state_dir.display()
        );
        say!("  metrics: {}", self.metrics_url);
        say!(
            "  accounts: {}",
            self.config
                .accounts
                .iter()
                .map(|a| format!("{} ({})", a.name, a.api))
                .collect::<Vec<_>>()
                .join(", ")
        );
        match &self.mariadb {
            Ok(LocalMariadb { host, port, .. }) => say!(
                "  login verification: MariaDB at {host}:{port}. reports-app alternates between two real users, \
                 {} and {}; each new password must log in before it is promoted.",
                VERIFIED_USERS[0],
                VERIFIED_USERS[1]
            ),
            Err(e) => say!(
                "  login verification: not shown, no MariaDB answered at {} ({e}). Set \
                 PWROTD_DEMO_MYSQL_ADMIN=mysql://admin:password@127.0.0.1:3306 to include it.",
                if std::env::var_os("PWROTD_DEMO_MYSQL_ADMIN").is_some() {
                    "PWROTD_DEMO_MYSQL_ADMIN"
                } else {
                    "/run/mysqld/mysqld.sock"
                }
            ),
        }
        if once {
            say!("  --once: every account rotates once, then the demo exits.\n");
        } else {
            say!("  schedules are seconds apart; press Ctrl-C to stop.\n");
        }
    }
}

/// The daemon's report hook: prints each rotation with a check that the simulated database has
/// a password the sink knows, and after the first round has a reply dropped.
struct Watch {
    sim: Arc<Sim>,
    accounts: Vec<Arc<Account>>,
    state_dir: PathBuf,
    once: bool,
    /// False once a rotation left the sink and the database disagreeing.
    all_good: AtomicBool,
    /// The accounts that have rotated successfully.
    first_round: Mutex<HashSet<String>>,
}

impl Watch {
    fn on_report(&self, report: &Report) {
        let clock = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let Some(account) = self.accounts.iter().find(|a| a.name == report.account) else {
            return;
        };
        let in_sync = self.in_sync(account);
        if !in_sync {
            self.all_good.store(false, Ordering::Relaxed);
        }
        print_rotation(&clock, report, in_sync);
        self.after_first_round(report);
    }

    /// Whether the simulated database takes the sink's current or pending password.
    fn in_sync(&self, account: &Account) -> bool {
        let file = sink::read_secret(&self.state_dir, account, nix::unistd::geteuid().as_raw())
            .ok()
            .flatten();
        file.as_ref().is_some_and(|f| {
            [
                f.current.as_ref().map(|c| (&c.username, &c.password)),
                f.pending.as_ref().map(|p| (&p.username, &p.password)),
            ]
            .into_iter()
            .flatten()
            .any(|(user, p)| {
                self.sim.login(
                    account.api.service(),
                    &account.resource_id,
                    user,
                    p.expose(),
                )
            })
        })
    }

    /// Once every account has rotated successfully (and the demo keeps running), the
    /// simulator applies the next change and drops its reply, to show a pending password
    /// resolved.
    fn after_first_round(&self, report: &Report) {
        let mut first = self.first_round.lock().unwrap_or_else(|p| p.into_inner());
        if report.outcome == Outcome::Success
            && first.insert(report.account.clone())
            && first.len() == self.accounts.len()
            && !self.once
        {
            say!(
                "{:>34} (next: the simulator will apply a change and drop the reply)",
                ""
            );
            self.sim.script_faults([Fault::DropAfterApply]);
        }
    }
}

/// One rotation: when, which account, its outcome, and whether the database has the sink's
/// password.
fn print_rotation(clock: &str, report: &Report, in_sync: bool) {
    say!(
        "{} {:<14} {:<8} {}\n{:>34} the database's password is the sink's {}: {}",
        &clock[11..19],
        report.account,
        report.outcome.as_str(),
        report.message,
        "",
        if report.pending {
            "current or pending"
        } else {
            "current"
        },
        if in_sync { "yes" } else { "NO" },
    );
}

/// What the simulator answered, and where the sink files are (or that they are gone).
fn print_ending(stats: &Stats, state_dir: &Path, once: bool) {
    say!(
        "\nthe simulator answered {} requests: {}",
        stats.requests,
        stats
            .by_code
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if once {
        say!(
            "the throwaway state directory is removed on exit; run `pwrotd demo` without --once to keep watching it."
        );
    } else {
        say!(
            "the sink files are under {}/secrets/ (one JSON file per account, mode 0600).",
            state_dir.display()
        );
    }
}
