//! `pwrotd status`: one row per account, from the store, the newest audit records, and what
//! the running daemon knows (its retry times, what is in flight). In cluster mode, a header
//! first: the leader, by the lease in the store, and each replica's last mirror time, all
//! timed by the database's clock. The account rows come from this host's mirrored files.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{CliError, CliResult, load};
use crate::cluster::lease;
use crate::cluster::mirror::{self, Reported};
use crate::config::{Account, ClusterConfig, StoreConfig};
use crate::control::{self, Request, Response};
use crate::scheduler::{self, SlotStatus};
use crate::sink::{self, SecretFile};

/// One account's row, as `status --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    account: String,
    api: &'static str,
    resource_id: String,
    account_name: String,
    version: Option<u64>,
    /// The user applications log in as: under the alternating strategy, it flips.
    username: Option<String>,
    last_success: Option<String>,
    age_seconds: Option<u64>,
    pending: bool,
    last_error: Option<String>,
    /// When the daemon will really try next, or the schedule's time without a daemon.
    next_due: Option<String>,
    failures: Option<u32>,
    render_retry: Option<String>,
    /// Whether a running daemon answered.
    daemon: bool,
    /// Why the account's secret file is refused, if it is.
    sink_error: Option<String>,
}

pub fn status(path: &Path, json: bool) -> CliResult {
    let config = load(path)?;
    let state_dir = &config.daemon.state_dir;
    if let Err(e) = std::fs::metadata(state_dir) {
        return Err(CliError::failed(format!(
            "cannot read the state directory {}: {e}; has pwrotd run with this config?",
            state_dir.display()
        )));
    }
    // What the running daemon knows: its retry times and what is in flight.
    let live: HashMap<String, SlotStatus> =
        match control::call(state_dir, &Request::Status, Duration::from_secs(10)) {
            Ok(Response::Status { accounts }) => accounts
                .into_iter()
                .map(|a| (a.account.clone(), a))
                .collect(),
            _ => HashMap::new(),
        };
    // Only the newest record of each account, read backwards from the end of the log.
    let wanted: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    let audit =
        sink::latest_audit(state_dir, &wanted).map_err(|e| CliError::failed(e.to_string()))?;
    if audit.skipped > 0 {
        eprintln!(
            "pwrotd status: skipped {} unreadable line{} of the audit log (not UTF-8, or not a whole record: torn by a crash)",
            audit.skipped,
            if audit.skipped == 1 { "" } else { "s" }
        );
    }
    let uid = nix::unistd::geteuid().as_raw();
    let now = SystemTime::now();
    let rows: Vec<Row> = config
        .accounts
        .iter()
        .map(|account| {
            let last_error = audit
                .latest
                .get(&account.name)
                .and_then(|r| r.error_code.clone());
            let sink = sink::read_secret(state_dir, account, uid);
            row(account, sink, live.get(&account.name), last_error, now)
        })
        .collect();
    let cluster = match &config.store {
        StoreConfig::Postgresql(settings) => Some(cluster_view(settings)?),
        StoreConfig::File => None,
    };
    match (json, &cluster) {
        (true, None) => say!("{}", serde_json::to_string(&rows).unwrap_or_default()),
        (true, Some(cluster)) => say!(
            "{}",
            serde_json::to_string(&Clustered {
                cluster,
                accounts: &rows
            })
            .unwrap_or_default()
        ),
        (false, _) => {
            if let Some(cluster) = &cluster {
                print_cluster(cluster);
            }
            print_table(&rows);
        }
    }
    let unreachable = cluster.as_ref().is_some_and(|c| c.error.is_some());
    if unreachable || rows.iter().any(|r| r.sink_error.is_some()) {
        Err(CliError::some_failed())
    } else {
        Ok(())
    }
}

/// `status --json` in cluster mode.
#[derive(Debug, Serialize)]
struct Clustered<'a> {
    cluster: &'a ClusterView,
    accounts: &'a [Row],
}

/// The cluster as the store tells it.
#[derive(Debug, Serialize)]
struct ClusterView {
    /// `up`, or `unreachable` (and `error` says why).
    store: &'static str,
    error: Option<String>,
    /// The lease's holder; `None` if no replica has ever led, or the store is unreachable.
    leader: Option<Leader>,
    replicas: Vec<Reported>,
}

/// The lease's holder.
#[derive(Debug, Serialize)]
struct Leader {
    node: String,
    epoch: i64,
    /// Whether its lease runs, by the database's clock: if not, no replica leads now.
    live: bool,
}

/// Asks the store who leads and how current each replica is. An unreachable store is said in
/// the view, not an error: the local rows are still worth printing.
fn cluster_view(settings: &ClusterConfig) -> Result<ClusterView, CliError> {
    let asked = super::runtime()?.block_on(async {
        let shared = super::store::open(settings, "status").await?;
        let failed = |e: crate::sink::SinkError| CliError::failed(e.to_string());
        let holder = lease::holder(&shared.pool).await.map_err(failed)?;
        let replicas = mirror::reported(&shared.pool).await.map_err(failed)?;
        Ok::<_, CliError>((holder, replicas))
    });
    Ok(match asked {
        Ok((holder, replicas)) => ClusterView {
            store: "up",
            error: None,
            leader: (!holder.node.is_empty()).then_some(Leader {
                node: holder.node,
                epoch: holder.epoch,
                live: holder.live,
            }),
            replicas,
        },
        Err(e) => ClusterView {
            store: "unreachable",
            error: Some(e.message().unwrap_or("no answer").to_owned()),
            leader: None,
            replicas: Vec::new(),
        },
    })
}

fn print_cluster(cluster: &ClusterView) {
    if let Some(e) = &cluster.error {
        say!("STORE  unreachable: {e}; the rows below are this host's files");
        say!();
        return;
    }
    match &cluster.leader {
        Some(l) if l.live => say!("LEADER {} (epoch {}, lease live)", l.node, l.epoch),
        Some(l) => say!(
            "LEADER none: the lease of {} (epoch {}) has lapsed",
            l.node,
            l.epoch
        ),
        None => say!("LEADER none: no replica has led yet"),
    }
    say!(
        "{:<24} {:<10} {:<20} MIRROR AGE",
        "REPLICA",
        "VERSION",
        "LAST MIRROR"
    );
    if cluster.replicas.is_empty() {
        say!("(no replica has reported to the store yet)");
    }
    for r in &cluster.replicas {
        say!(
            "{:<24} {:<10} {:<20} {}",
            r.node,
            r.version,
            r.mirrored_at.as_deref().unwrap_or("never"),
            r.mirror_age_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s}s"))
        );
    }
    say!();
}

fn row(
    account: &Account,
    file: Result<Option<SecretFile>, sink::SinkError>,
    live: Option<&SlotStatus>,
    last_error: Option<String>,
    now: SystemTime,
) -> Row {
    let mut row = Row {
        account: account.name.clone(),
        api: account.api.as_str(),
        resource_id: account.resource_id.clone(),
        account_name: account.account_name.clone(),
        version: None,
        username: None,
        last_success: None,
        age_seconds: None,
        pending: false,
        last_error,
        next_due: None,
        failures: live.map(|l| l.failures),
        render_retry: live.and_then(|l| l.render_retry.clone()),
        daemon: live.is_some(),
        sink_error: None,
    };
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            row.last_error = Some(e.code().to_owned());
            row.sink_error = Some(e.to_string());
            return row;
        }
    };
    let current = file.as_ref().and_then(|f| f.current.as_ref());
    let initial = scheduler::Initial::of(file.as_ref());
    row.version = current.map(|c| c.version);
    row.username = current.map(|c| c.username.clone());
    row.last_success = initial.last_success.map(sink::timestamp);
    row.age_seconds = initial
        .last_success
        .and_then(|l| now.duration_since(l).ok())
        .map(|d| d.as_secs());
    row.pending = initial.pending;
    row.next_due = Some(match live {
        Some(l) if l.in_flight => "now (running)".to_owned(),
        Some(l) if l.waiting => "waiting for a renamed account's task".to_owned(),
        Some(l) => l.next_attempt.clone(),
        None => scheduler::scheduled(account, initial)
            .map(sink::timestamp)
            .unwrap_or_else(|| "at start".into()),
    });
    row
}

fn print_table(rows: &[Row]) {
    say!(
        "{:<24} {:<27} {:>7}  {:<20} {:>9}  {:<7} {:<32} NEXT DUE",
        "ACCOUNT",
        "API",
        "VERSION",
        "LAST SUCCESS",
        "AGE",
        "PENDING",
        "LAST ERROR"
    );
    for r in rows {
        let age = r
            .age_seconds
            .map(|s| humantime::format_duration(Duration::from_secs(s - s % 60)).to_string());
        say!(
            "{:<24} {:<27} {:>7}  {:<20} {:>9}  {:<7} {:<32} {}",
            r.account,
            r.api,
            r.version.map_or("-".into(), |v| v.to_string()),
            r.last_success.as_deref().unwrap_or("never"),
            age.as_deref().unwrap_or("-"),
            if r.pending { "yes" } else { "no" },
            r.last_error.as_deref().unwrap_or("-"),
            r.sink_error
                .as_deref()
                .or(r.next_due.as_deref())
                .unwrap_or_default(),
        );
    }
}
