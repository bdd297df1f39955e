//! `pwrotd-sim`: serves the simulated PolarDB, RDS and STS OpenAPI, the ECS metadata service
//! and credential URIs on a local address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pwrotd::config::Config;
use pwrotd::sim::{CloudFile, Database, FaultCode, FaultRates, Sim, SimServer};
use pwrotd::verify::Engine;
use tokio::signal::unix::{SignalKind, signal};

/// A faithful local stand-in for the PolarDB, RDS and STS OpenAPI, the ECS metadata service and
/// credential URIs.
#[derive(Parser)]
#[command(
    name = "pwrotd-sim",
    version,
    after_help = "Test hooks, JSON over HTTP on the same address: GET /_sim/accounts (passwords as \
SHA-256 only), GET /_sim/resources, GET /_sim/stats (replies by code, the faults that took \
effect, and error_after_apply: changes applied then answered with an error), GET|PUT \
/_sim/faults (these rates), POST /_sim/script (faults for the next requests, e.g. \
[\"throttle\", {\"error_after_apply\": \"lock_timeout\"}]), PUT /_sim/state (a cluster's or \
instance's state, e.g. {\"service\": \"rds\", \"resource_id\": \"rm-1\", \"state\": \
\"Rebooting\"}, or an account's status, e.g. {..., \"account_name\": \"app\", \"status\": \
\"Locked\"}), PUT /_sim/resource (a resource's region or owner, e.g. {\"service\": \"polardb\", \
\"resource_id\": \"pc-1\", \"region\": \"ap-southeast-1\", \"owner\": \"2222222222222222\"}), POST \
/_sim/cloud (the --cloud file as JSON), POST /_sim/credential_faults (e.g. {\"endpoint\": \
\"metadata\", \"faults\": [\"garbage\"]}; endpoints sts, metadata, uri; faults server_error, \
throttle, garbage, drop), GET /_sim/credentials (temporary credentials issued, no secrets).

Credentials on the same address: STS AssumeRole and AssumeRoleWithOIDC at / (Version \
2015-04-01; point sts_endpoint here), the ECS metadata service under /latest/ (IMDSv2: PUT \
/latest/api/token, then /latest/meta-data/ram/security-credentials/[ROLE]), and credential URIs \
at /_creds/NAME (ALIBABA_CLOUD_CREDENTIALS_URI). Every resource answers only in its region \
and to its own cloud account: another RegionId or account gets the action's *.NotFound."
)]
struct Args {
    /// Address to serve on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9861")]
    listen: SocketAddr,
    /// A pwrotd config: its clusters, instances, accounts and granted databases are registered.
    #[arg(long)]
    config: PathBuf,
    /// The simulated cloud beyond the config, as TOML: more cloud accounts and AccessKeys, RAM
    /// roles and their trust policies, OIDC providers, each cluster's and instance's region
    /// and owner, the ECS instance's role (and whether IMDSv1 is allowed), credential URIs,
    /// and `credential_lifetime` (every temporary credential lives that long, e.g. "5s").
    /// Without it there is one cloud account (uid 1234567890123456), whose RAM user holds
    /// the AccessKey below, and every resource lives in the config's `region_id`. See
    /// docs/simulator.md.
    #[arg(long)]
    cloud: Option<PathBuf>,
    /// The AccessKey id requests must be signed with.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: String,
    /// The AccessKey secret. Prefer the environment variable: argv is visible to other users.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: String,
    /// Probability that a request is throttled (`Throttling.User`); nothing is applied.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    throttle: f64,
    /// Probability of an HTTP 503 `ServiceUnavailable` with nothing applied. For a 503 after
    /// the change was applied, see --error-after-apply.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    server_error: f64,
    /// Probability of a `LockTimeout` with nothing applied. For a `LockTimeout` after the
    /// change was applied, see --error-after-apply.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    lock_timeout: f64,
    /// Probability that a change (password or grant) IS applied and then answered with an
    /// error, in the documented body and status, picked at random among
    /// --error-after-apply-codes. A request the API refuses anyway gets that refusal instead.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    error_after_apply: f64,
    /// The errors --error-after-apply picks from, comma-separated: service_unavailable (HTTP
    /// 503), internal_error (500), lock_timeout, database_connect_error
    /// (`Database.ConnectError`), account_update_error (`Account.UpdateError`),
    /// db_operation_failed (the variable code with "DB Operation Failed:`<text>`."), unknown
    /// (`SomethingNew.Unknown`) (all 400). The API's own codes work too, like `LockTimeout`.
    /// [default: all of these]
    #[arg(long, value_delimiter = ',', value_parser = fault_code)]
    error_after_apply_codes: Vec<FaultCode>,
    /// Probability that a request is refused with nothing applied, with an error picked at
    /// random among --error-before-apply-codes.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    error_before_apply: f64,
    /// The errors --error-before-apply picks from, comma-separated: any of the
    /// --error-after-apply-codes, or incorrect_state (HTTP 403 `IncorrectDBClusterState` /
    /// `IncorrectDBInstanceState`), incorrect_account_status (`IncorrectAccountStatus`, 400),
    /// concurrent_task_exceeded (`ConcurrentTaskExceeded`, 403),
    /// engine_migration_action_disabled (`EngineMigration.ActionDisabled`, 400).
    /// [default: incorrect_state,concurrent_task_exceeded,engine_migration_action_disabled]
    #[arg(long, value_delimiter = ',', value_parser = fault_code)]
    error_before_apply_codes: Vec<FaultCode>,
    /// Probability that a change is applied and the connection closed without a reply.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    drop_after_apply: f64,
    /// Probability that the connection is closed without a reply and nothing is applied.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    drop_before_apply: f64,
    /// Probability that a change is applied and the reply is not JSON.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    garbage: f64,
    /// Accept replayed nonces, so that an HTTP load generator can replay pre-signed requests
    /// (benchmarks only). Every other check stays on.
    #[arg(long)]
    allow_nonce_replay: bool,
    /// Delay before every reply, after the change is applied, like "200ms".
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// A real MySQL or MariaDB server, as `mysql://admin:password@host:port`: password
    /// changes and grants of accounts whose `[account.verify]` engine is mysql become real
    /// `ALTER USER` and `GRANT` statements there. Prefer the environment variable: argv is
    /// visible to other users.
    #[arg(long, env = "PWROTD_SIM_MYSQL_ADMIN", hide_env_values = true)]
    mysql_admin: Option<String>,
    /// The same for PostgreSQL, as `postgres://admin:password@host:port/database`.
    #[arg(long, env = "PWROTD_SIM_POSTGRES_ADMIN", hide_env_values = true)]
    postgres_admin: Option<String>,
}

fn fault_code(s: &str) -> Result<FaultCode, String> {
    s.parse()
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pwrotd-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut sim = Sim::new(args.access_key_id.clone(), args.access_key_secret.clone());
    for (engine, flag, url) in [
        (Engine::Mysql, "--mysql-admin", &args.mysql_admin),
        (Engine::Postgresql, "--postgres-admin", &args.postgres_admin),
    ] {
        let Some(url) = url else { continue };
        match Database::from_url(engine, url) {
            Ok(db) => sim.add_database_backend(db),
            Err(e) => {
                eprintln!("pwrotd-sim: {flag}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    sim.register_config(&config);
    if let Some(path) = &args.cloud {
        let applied = CloudFile::load(path).and_then(|file| file.apply(&sim));
        if let Err(e) = applied {
            eprintln!("pwrotd-sim: --cloud: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = sim.prepare_databases().await {
        eprintln!("pwrotd-sim: cannot prepare the real database: {e}");
        return ExitCode::from(1);
    }
    sim.allow_nonce_replay(args.allow_nonce_replay);
    sim.set_fault_rates(FaultRates {
        throttle: args.throttle,
        server_error: args.server_error,
        lock_timeout: args.lock_timeout,
        drop_after_apply: args.drop_after_apply,
        drop_before_apply: args.drop_before_apply,
        garbage: args.garbage,
        error_after_apply: args.error_after_apply,
        error_after_apply_codes: args.error_after_apply_codes.clone(),
        error_before_apply: args.error_before_apply,
        error_before_apply_codes: args.error_before_apply_codes.clone(),
        latency: args.latency,
    });
    let server = match SimServer::start(sim, args.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pwrotd-sim: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    println!("pwrotd-sim listening on {}", server.url());
    tracing::info!(accounts = config.accounts.len(), "serving");
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("pwrotd-sim: cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    server.stop().await;
    ExitCode::SUCCESS
}
