//! Every replica's copy of the store (docs/cluster.md#every-replica-serves-its-host): the
//! secret files under `state_dir/secrets/` in the file store's format, and the render files
//! of the accounts this replica's config names.
//!
//! A round reads every account's sequence number (a cheap query), then the records that
//! changed since the last round, and writes those locally. A NOTIFY from a leader's commit
//! starts a round at once; without one, a round runs every [`POLL`], so a lost notification
//! or connection delays a change by at most that. Every `FULL_EVERY` (5 minutes), a round compares every
//! record with its local file, and puts back one changed or removed by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::lease::Lease;
use super::store::{Shared, store_error};
use crate::config::Account;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::sink::{self, SecretFile, Sink, SinkError};

/// The longest time between two rounds.
pub const POLL: Duration = Duration::from_secs(1);

/// How often a round compares every record with the local files, changed in the store or not.
const FULL_EVERY: Duration = Duration::from_secs(300);

/// How many records a round writes at once: their fsyncs overlap.
const PARALLEL: usize = 16;

/// How long a round may take before it is given up (the store is unreachable, say).
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a replica records in the store that it is alive and how current it is.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The mirror of one replica.
pub struct Mirror {
    shared: Arc<Shared>,
    sink: Arc<Sink>,
    hooks: Arc<Hooks>,
    metrics: Arc<Metrics>,
    /// The accounts of the running config, by name: their render files and hooks.
    accounts: Arc<Mutex<HashMap<String, Arc<Account>>>>,
    /// While this replica leads, its rotations write the render files and run the hooks: the
    /// mirror writes only the secret files, so that a slow round never renders an older
    /// version over a newer one.
    lease: Arc<Lease>,
    /// The sequence number of each record as last written here.
    seen: HashMap<String, i64>,
    /// Records that could not be written here, with why: retried every round, logged once.
    failing: HashMap<String, String>,
    last_report: Option<std::time::Instant>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// The accounts a mirror renders, replaced at reload.
pub type Accounts = Arc<Mutex<HashMap<String, Arc<Account>>>>;

/// The account map of a config's accounts.
pub fn accounts(list: &[Arc<Account>]) -> HashMap<String, Arc<Account>> {
    list.iter().map(|a| (a.name.clone(), a.clone())).collect()
}

impl Mirror {
    pub fn new(
        shared: Arc<Shared>,
        sink: Arc<Sink>,
        hooks: Arc<Hooks>,
        metrics: Arc<Metrics>,
        accounts: Accounts,
        lease: Arc<Lease>,
    ) -> Mirror {
        Mirror {
            lease,
            shared,
            sink,
            hooks,
            metrics,
            accounts,
            seen: HashMap::new(),
            failing: HashMap::new(),
            last_report: None,
        }
    }

    /// Mirrors until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut full = std::time::Instant::now();
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            if full.elapsed() >= FULL_EVERY {
                // Every record again: a local file changed or removed by hand is put back.
                full = std::time::Instant::now();
                self.seen.clear();
            }
            let round = tokio::time::timeout(ROUND_TIMEOUT, self.round()).await;
            match round.unwrap_or_else(|_| {
                Err(SinkError::Store(format!(
                    "no answer within {ROUND_TIMEOUT:?}"
                )))
            }) {
                Ok(()) => {
                    self.metrics.set_mirrored(SystemTime::now());
                    self.report().await;
                }
                Err(e) => tracing::warn!("mirror: {e}"),
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.try_recv().await.map(|n| n.is_some()).unwrap_or(false),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
                alive = notified => if !alive {
                    // The connection dropped; the next round reconnects.
                    listener = None;
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        listen(&self.shared.pool, "pwrotd_secrets").await
    }

    /// Writes every record that changed since the last round.
    pub async fn round(&mut self) -> Result<(), SinkError> {
        let rows = sqlx::query("SELECT account, seq FROM pwrotd_secrets")
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| store_error("cannot list the accounts", &e))?;
        let mut changed = Vec::new();
        for row in &rows {
            let (account, seq): (String, i64) = (
                row.try_get(0)
                    .map_err(|e| store_error("cannot list the accounts", &e))?,
                row.try_get(1)
                    .map_err(|e| store_error("cannot list the accounts", &e))?,
            );
            if self.seen.get(&account) != Some(&seq) {
                changed.push(account);
            }
        }
        for chunk in changed.chunks(500) {
            let rows = sqlx::query(
                "SELECT account, seq, record FROM pwrotd_secrets WHERE account = ANY($1)",
            )
            .bind(chunk)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| store_error("cannot read the accounts", &e))?;
            let mut files = Vec::with_capacity(rows.len());
            for row in rows {
                let (name, seq): (String, i64) = (
                    row.try_get(0)
                        .map_err(|e| store_error("cannot read the accounts", &e))?,
                    row.try_get(1)
                        .map_err(|e| store_error("cannot read the accounts", &e))?,
                );
                let file = self.shared.decode(&name, &row, 2);
                files.push((name, seq, file));
            }
            for (name, seq, written) in self.write_all(files).await {
                self.settle(name, seq, written);
            }
        }
        if self.failing.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Store(format!(
                "{} account(s) could not be mirrored",
                self.failing.len()
            )))
        }
    }

    /// Writes records here, [`PARALLEL`] at a time: each its secret file, then the render
    /// files of the account this replica's config names, whose hooks run when its current
    /// version changed. While this replica leads, its rotations render, not the mirror.
    async fn write_all(
        &self,
        files: Vec<(String, i64, Result<SecretFile, SinkError>)>,
    ) -> Vec<(String, i64, Result<(), SinkError>)> {
        let mut done = Vec::with_capacity(files.len());
        let mut running = tokio::task::JoinSet::new();
        let leads = self.lease.epoch().is_some();
        for (name, seq, file) in files {
            let file = match file {
                Ok(file) => file,
                Err(e) => {
                    done.push((name, seq, Err(e)));
                    continue;
                }
            };
            let account = self
                .accounts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned()
                .filter(|_| !leads);
            let sink = self.sink.clone();
            let task = self.sink.io_tasks().spawn_blocking(move || {
                let wrote = write_local(&sink, &file, account.as_deref());
                (name, seq, account, wrote)
            });
            running.spawn(task);
            while running.len() >= PARALLEL {
                self.collect(running.join_next().await, &mut done);
            }
        }
        while let Some(joined) = running.join_next().await {
            self.collect(Some(joined), &mut done);
        }
        done
    }

    /// Takes one finished write: its hooks run if the account's current version changed.
    #[allow(clippy::type_complexity, reason = "one task's result, read once")]
    fn collect(
        &self,
        joined: Option<
            Result<
                Result<
                    (
                        String,
                        i64,
                        Option<Arc<Account>>,
                        Result<Option<(u64, String)>, SinkError>,
                    ),
                    tokio::task::JoinError,
                >,
                tokio::task::JoinError,
            >,
        >,
        done: &mut Vec<(String, i64, Result<(), SinkError>)>,
    ) {
        match joined {
            Some(Ok(Ok((name, seq, account, wrote)))) => {
                if let (Some(account), Ok(Some((version, username)))) = (&account, &wrote) {
                    self.hooks.changed(account, *version, username);
                }
                done.push((name, seq, wrote.map(drop)));
            }
            // A write task that panicked or was cancelled: its account is retried next round,
            // as it is not marked seen.
            Some(_) => tracing::error!("a mirror write task did not finish"),
            None => {}
        }
    }

    /// Records the outcome of one account's write: seen at `seq`, or failing (logged once).
    fn settle(&mut self, name: String, seq: i64, written: Result<(), SinkError>) {
        match written {
            Ok(()) => {
                self.seen.insert(name.clone(), seq);
                if self.failing.remove(&name).is_some() {
                    tracing::info!(account = %name, "mirrored again");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if self.failing.get(&name) != Some(&text) {
                    tracing::error!(account = %name, "cannot mirror: {text}");
                    self.failing.insert(name, text);
                }
            }
        }
    }

    /// Records this replica's last mirror time in the store, for `pwrotd status`.
    async fn report(&mut self) {
        if self
            .last_report
            .is_some_and(|at| at.elapsed() < REPORT_EVERY)
        {
            return;
        }
        self.last_report = Some(std::time::Instant::now());
        let report = sqlx::query(
            "INSERT INTO pwrotd_replicas (node, version, seen_at, mirrored_at) VALUES ($1, $2, now(), now())
             ON CONFLICT (node) DO UPDATE SET version = EXCLUDED.version, seen_at = now(), mirrored_at = now()",
        )
        .bind(&self.shared.node)
        .bind(env!("CARGO_PKG_VERSION"))
        .execute(&self.shared.pool);
        match tokio::time::timeout(Duration::from_secs(5), report).await {
            Ok(Err(e)) => tracing::debug!("{}", store_error("cannot report the mirror time", &e)),
            Err(_) => tracing::debug!("cannot report the mirror time: no answer in 5 s"),
            Ok(Ok(_)) => {}
        }
    }
}

/// A replica as it last reported itself to the store (`pwrotd status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reported {
    /// Its node name.
    pub node: String,
    /// The pwrotd version it runs.
    pub version: String,
    /// When its local files last matched the store, by the database's clock.
    pub mirrored_at: Option<String>,
    /// How long ago that was, in whole seconds, by the database's clock.
    pub mirror_age_seconds: Option<u64>,
}

/// Every replica that has reported to the store, by node name.
pub async fn reported(pool: &sqlx::PgPool) -> Result<Vec<Reported>, SinkError> {
    let rows: Vec<(String, String, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT node, version, extract(epoch FROM mirrored_at)::float8,
                extract(epoch FROM now() - mirrored_at)::float8
         FROM pwrotd_replicas ORDER BY node",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| store_error("cannot read the replicas", &e))?;
    Ok(rows
        .into_iter()
        .map(|(node, version, at, age)| Reported {
            node,
            version,
            mirrored_at: at
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(|d| sink::timestamp(SystemTime::UNIX_EPOCH + d)),
            // A clock step on the database can make an age negative: shown as 0.
            mirror_age_seconds: age.map(|s| s.max(0.0) as u64),
        })
        .collect())
}

/// A listener on `channel`, or `None` if the store does not answer in time: rounds then run
/// by the clock alone until the next try.
pub async fn listen(pool: &sqlx::PgPool, channel: &str) -> Option<PgListener> {
    let connect = async {
        let mut listener = PgListener::connect_with(pool).await.ok()?;
        listener.listen(channel).await.ok()?;
        Some(listener)
    };
    tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()
        .flatten()
}

/// Writes `file` as this host's secret file, unless the local file is newer than the store
/// (a file store not yet imported) or cannot be read: those are left as they are. Returns the
/// current version and user when it changed, for the hooks.
fn write_local(
    sink: &Sink,
    file: &SecretFile,
    account: Option<&Account>,
) -> Result<Option<(u64, String)>, SinkError> {
    let local = sink.load_named(&file.account)?;
    // Promoted versions only: a pending version the store has since cleared (its call was
    // refused) is no sign of a newer local file.
    if let Some(local) = &local
        && settled_newest(local) > settled_newest(file)
    {
        return Err(SinkError::Store(format!(
            "{} holds a newer version than the store; it is left as it is: move it into the store with `pwrotd store import`",
            sink.path(&file.account).display()
        )));
    }
    let unchanged = local.as_ref().is_some_and(|l| same(l, file));
    if !unchanged {
        sink.store(file)?;
    }
    let Some(account) = account else {
        return Ok(None);
    };
    // While a pending password of current's own user may be live, current may be the dead
    // one: the render files keep what they hold until the leader settles it.
    let current = file.current.clone().filter(|c| {
        file.pending
            .as_ref()
            .is_none_or(|p| p.username != c.username)
    });
    let Some(current) = current else {
        return Ok(None);
    };
    let rendered = sink::render(account, &current, false, sink.state_dir(), sink.owner_uid());
    if let Some(e) = rendered.errors.into_iter().next() {
        return Err(e);
    }
    let local_current = local.and_then(|l| l.current).map(|c| c.version);
    let changed = local_current != Some(current.version) || rendered.written > 0;
    Ok(changed.then(|| (current.version, current.username.clone())))
}

/// The newest promoted version of a record: current or previous, never pending.
fn settled_newest(file: &SecretFile) -> u64 {
    file.current
        .iter()
        .chain(&file.previous)
        .map(|v| v.version)
        .max()
        .unwrap_or(0)
}

/// Whether two records hold the same state (their passwords compared too).
fn same(a: &SecretFile, b: &SecretFile) -> bool {
    match (serde_json::to_vec(a), serde_json::to_vec(b)) {
        (Ok(a), Ok(b)) => zeroize::Zeroizing::new(a) == zeroize::Zeroizing::new(b),
        _ => false,
    }
}
