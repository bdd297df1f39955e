//! Cluster mode (docs/cluster.md): a PostgreSQL store shared by every replica, one leader
//! that rotates, and every replica serving its own host from a local copy.
//!
//! - [`store`]: the store itself, and [`store::Term`], the store as one leader term writes
//!   it, every write fenced by the term's epoch.
//! - [`lease`]: who leads, timed by the database's clock.
//! - [`mirror`]: every replica's local secret and render files.
//! - [`transfer`]: `pwrotd store export` and `import`, between the store and secret files.
//! - [`key`] and [`secrets`]: the [`StoreKey`] every replica shares (each password sealed with
//!   AES-256-GCM, bound to its account, user and version), and where the store's URL and key
//!   are read from, checked without ever being shown.
//!
//! Nothing here may put a URL, a key or a password in an error, a log line or `Debug` output.
//! - [`Cluster::run_terms`]: a scheduler for each term this replica leads; between terms,
//!   commands are forwarded to the leader through the store.

pub mod key;
pub mod lease;
pub mod mirror;
pub mod secrets;
pub mod store;
pub mod transfer;

pub use key::{Aad, KeyError, StoreKey};
pub use secrets::SecretsError;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scheduler::{Command, Rotate, Scheduler};
use crate::sink::{Sink, SinkError};
use lease::Lease;
use store::{Shared, Term, store_error};

/// Builds the scheduler of a term from its accounts and rotator.
pub type NewScheduler = Box<dyn Fn(&Config, Arc<dyn Rotate>) -> Scheduler + Send + Sync>;

/// Builds the rotator of a term: its client gated by the lease, its store the term's.
pub type NewRotator =
    Box<dyn Fn(&Config, Arc<Term>, Arc<Lease>) -> Result<Arc<dyn Rotate>, String> + Send + Sync>;

/// A replica's part in the cluster.
pub struct Cluster {
    pub shared: Arc<Shared>,
    pub lease: Arc<Lease>,
    /// The accounts the mirror renders.
    pub accounts: mirror::Accounts,
    /// This host's state directory: a term refuses accounts whose passwords only it holds.
    local: Arc<Sink>,
    /// Beaten while this replica follows, as a term's scheduler beats it: `/healthz` and the
    /// systemd watchdog see a follower that goes round as healthy.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(
        shared: Arc<Shared>,
        lease: Arc<Lease>,
        config: &Config,
        local: Arc<Sink>,
        metrics: Arc<Metrics>,
    ) -> Cluster {
        Cluster {
            shared,
            lease,
            accounts: Arc::new(Mutex::new(mirror::accounts(&config.accounts))),
            local,
            metrics,
        }
    }

    /// Asks the leader to rotate `accounts` (all if `None`): a row it takes, and a NOTIFY.
    pub async fn forward(&self, accounts: Option<Vec<String>>) -> Result<(), SinkError> {
        let fail = |e: sqlx::Error| store_error("cannot forward the request", &e);
        let mut tx = self.shared.pool.begin().await.map_err(fail)?;
        let names: Vec<Option<String>> = match accounts {
            Some(names) => names.into_iter().map(Some).collect(),
            None => vec![None],
        };
        for name in names {
            sqlx::query("INSERT INTO pwrotd_requests (account, node) VALUES ($1, $2)")
                .bind(name)
                .bind(&self.shared.node)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::query("SELECT pg_notify('pwrotd_requests', '')")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    /// The requests forwarded to the leader, oldest first, with their ids: `None` asks for
    /// every account. They stay in the store until [`Cluster::done_with`].
    async fn requests(&self) -> Result<Vec<(i64, Option<String>)>, SinkError> {
        sqlx::query_as("SELECT id, account FROM pwrotd_requests ORDER BY id")
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| store_error("cannot read the forwarded requests", &e))
    }

    /// Forgets requests handed to the term's scheduler. If this fails, they are handed over
    /// again: a rotation asked for twice, never one lost.
    async fn done_with(&self, ids: &[i64]) -> Result<(), SinkError> {
        sqlx::query("DELETE FROM pwrotd_requests WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.shared.pool)
            .await
            .map(drop)
            .map_err(|e| store_error("cannot clear the forwarded requests", &e))
    }

    /// Runs a scheduler for each term this replica leads, until `stop`. Commands from the
    /// daemon go to the term's scheduler, or, between terms, to the leader through the store.
    /// At `stop` the running term's scheduler stops (within `shutdown_grace`), and the lease
    /// is given up.
    pub async fn run_terms(
        self: Arc<Self>,
        config: Arc<Mutex<Config>>,
        mut commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
        new_scheduler: NewScheduler,
        new_rotator: NewRotator,
    ) {
        let mut role = self.lease.subscribe();
        let mut beat = tokio::time::interval(crate::metrics::HEARTBEAT);
        loop {
            let epoch = loop {
                if let Some(epoch) = *role.borrow_and_update() {
                    break epoch;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = role.changed() => {}
                    Some(command) = commands.recv() => self.follow(command).await,
                    _ = beat.tick() => self.metrics.beat(),
                }
            };
            let lead = self.lead(
                epoch,
                &config,
                &mut commands,
                &stop,
                &new_scheduler,
                &new_rotator,
            );
            if let Err(e) = lead.await {
                // Another replica may be able to: give the lease up, and take none for a while.
                let pause = (self.lease.duration() * 2).max(Duration::from_secs(10));
                tracing::error!(epoch, "cannot lead: {e}; stepping aside for {pause:?}");
                self.lease.step_aside(&self.shared.pool, pause).await;
            }
            if stop.is_cancelled() {
                self.lease.release(&self.shared.pool).await;
                return;
            }
        }
    }

    /// A command while this replica follows.
    async fn follow(&self, command: Command) {
        match command {
            Command::RotateNow { accounts, .. } => {
                if let Err(e) = self.forward(accounts).await {
                    tracing::error!("cannot ask the leader to rotate: {e}");
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(Vec::new());
            }
            Command::Adopt { reply, .. } => {
                let _ = reply.send(Err(
                    "this replica does not lead; run `pwrotd adopt` on the leader (pwrotd status names it)".into(),
                ));
            }
            Command::Reload { accounts, .. } => {
                *self.accounts.lock().unwrap_or_else(|p| p.into_inner()) =
                    mirror::accounts(&accounts);
            }
        }
    }

    /// One term: settles and rotates as the leader until the term ends or `stop`.
    async fn lead(
        &self,
        epoch: i64,
        config: &Mutex<Config>,
        commands: &mut mpsc::Receiver<Command>,
        stop: &CancellationToken,
        new_scheduler: &NewScheduler,
        new_rotator: &NewRotator,
    ) -> Result<(), String> {
        let term = Arc::new(
            Term::begin(self.shared.clone(), epoch)
                .await
                .map_err(|e| e.to_string())?
                .guarding(self.local.clone()),
        );
        let current = config.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let rotator = new_rotator(&current, term.clone(), self.lease.clone())?;
        let scheduler = new_scheduler(&current, rotator);
        let (tx, rx) = mpsc::channel(64);
        let term_stop = CancellationToken::new();
        let grace = current.daemon.shutdown_grace;
        let mut handle = tokio::spawn(scheduler.run(rx, term_stop.clone(), grace));
        let mut requests = mirror::listen(&self.shared.pool, "pwrotd_requests").await;
        let mut role = self.lease.subscribe();
        let mut poll = tokio::time::interval(mirror::POLL);
        let ended = loop {
            let notified = async {
                match requests.as_mut() {
                    Some(l) => drop(l.try_recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break Ok(()),
                _ = role.changed() => if *role.borrow_and_update() != Some(epoch) {
                    tracing::warn!(epoch, "the term is over: stopping its rotations");
                    break Ok(());
                },
                result = &mut handle => {
                    break Err(format!("the term's scheduler ended: {}", if result.is_err() { "it panicked" } else { "unexpectedly" }));
                }
                Some(command) = commands.recv() => match command {
                    // The accounts and the clients of one config, the running one: a second
                    // reload may have replaced the config this command came with.
                    Command::Reload { .. } => {
                        let current = config.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        *self.accounts.lock().unwrap_or_else(|p| p.into_inner()) = mirror::accounts(&current.accounts);
                        match new_rotator(&current, term.clone(), self.lease.clone()) {
                            Ok(rotate) => { let _ = tx.send(Command::Reload { accounts: current.accounts.clone(), rotate }).await; }
                            Err(e) => tracing::error!("reload: {e}"),
                        }
                    }
                    other => { let _ = tx.send(other).await; }
                },
                () = notified => self.pass_requests(&tx).await,
                _ = poll.tick() => self.pass_requests(&tx).await,
            }
        };
        term_stop.cancel();
        if !handle.is_finished() {
            let _ = handle.await;
        }
        ended
    }

    /// Hands the requests forwarded by other replicas to the term's scheduler, then forgets
    /// them: a slow store delays them, and at worst one is handed over twice.
    async fn pass_requests(&self, tx: &mpsc::Sender<Command>) {
        let wait = self.lease.duration();
        let requests = tokio::time::timeout(wait, self.requests()).await;
        let requests =
            match requests.unwrap_or_else(|_| Err(SinkError::Store("no answer in time".into()))) {
                Ok(requests) if requests.is_empty() => return,
                Ok(requests) => requests,
                Err(e) => {
                    tracing::debug!("{e}");
                    return;
                }
            };
        let mut ids = Vec::with_capacity(requests.len());
        for (id, account) in requests {
            tracing::info!(
                account = account.as_deref().unwrap_or("every account"),
                "rotation forwarded by a replica"
            );
            let command = Command::RotateNow {
                accounts: account.map(|a| vec![a]),
                reply: None,
            };
            if tx.send(command).await.is_err() {
                return;
            }
            ids.push(id);
        }
        let done = tokio::time::timeout(wait, self.done_with(&ids)).await;
        if let Err(e) = done.unwrap_or_else(|_| Err(SinkError::Store("no answer in time".into()))) {
            tracing::warn!("{e}; they may be handed over again");
        }
    }
}
