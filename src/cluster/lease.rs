//! The leader's lease (docs/cluster.md#one-writer): one row in the store, timed by the
//! database's clock, with an epoch that every takeover increments.
//!
//! A replica takes the lease only once it has lapsed by the database's clock, and renews it
//! every [`Lease::renew_interval`]. Its own deadline counts from the moment before it sent the
//! renewal, on its boot-time clock (`CLOCK_BOOTTIME`: monotonic, and running while the host is
//! suspended, where `Instant` stops), so it never ends later than the database's. API calls are
//! allowed only while at least the margin (one API attempt's timeout, and a second) is left
//! ([`Lease::may_call`]): by the time the database lets another replica take over, every call
//! this one started has ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::store_error;
use crate::sink::SinkError;

/// A term this replica holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// When the lease lapses at the latest, by [`now`].
    deadline: Duration,
}

/// The time since boot, suspends included (`CLOCK_BOOTTIME`).
fn now() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => Duration::from(t),
        // Never on Linux since 2.6.39; a deadline that has always passed fails safe.
        Err(_) => Duration::MAX,
    }
}

/// This replica's view of the lease.
pub struct Lease {
    node: String,
    duration: Duration,
    margin: Duration,
    held: Mutex<Option<Held>>,
    /// When an API attempt last started (by [`now`]): a release leaves the lease running
    /// until that attempt must have ended.
    last_call: Mutex<Option<Duration>>,
    /// No lease is taken before this time (by [`now`]): a replica that could not lead steps
    /// aside for a while, so that another can.
    aside_until: Mutex<Option<Duration>>,
    /// Held by a round and by [`Lease::release`], so that no renewal lands after a release.
    statement: tokio::sync::Mutex<()>,
    /// The epoch of the term this replica leads, `None` while it follows.
    role: watch::Sender<Option<i64>>,
    /// Whether the last statement on the store succeeded.
    up: watch::Sender<bool>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("node", &self.node)
            .field("duration", &self.duration)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// The leader and its term, as the store says.
#[derive(Debug, Clone)]
pub struct Holder {
    pub node: String,
    pub epoch: i64,
    /// Whether the lease is still running by the database's clock.
    pub live: bool,
}

impl Lease {
    /// A replica named `node` that holds leases of `duration` and stops starting API calls
    /// once less than `margin` is left.
    pub fn new(node: String, duration: Duration, margin: Duration) -> Arc<Lease> {
        Arc::new(Lease {
            node,
            duration,
            margin,
            held: Mutex::new(None),
            last_call: Mutex::new(None),
            aside_until: Mutex::new(None),
            statement: tokio::sync::Mutex::new(()),
            role: watch::Sender::new(None),
            up: watch::Sender::new(false),
        })
    }

    /// How long a lease lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// How often the lease is renewed (and, while another holds it, tried).
    pub fn renew_interval(&self) -> Duration {
        (self.duration / 10).max(Duration::from_millis(200))
    }

    /// The epoch of the term this replica leads now.
    pub fn epoch(&self) -> Option<i64> {
        *self.role.borrow()
    }

    /// Tells of every change of role: `Some(epoch)` when this replica starts leading.
    pub fn subscribe(&self) -> watch::Receiver<Option<i64>> {
        self.role.subscribe()
    }

    /// Tells whether the store answers.
    pub fn store_up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Whether an API call of the term `epoch` may start now: this replica still leads that
    /// term, with at least the margin left on its lease.
    pub fn may_call(&self, epoch: i64) -> Result<(), String> {
        let held = *self.held.lock().unwrap_or_else(|p| p.into_inner());
        let at = now();
        match held {
            Some(h) if h.epoch == epoch && at.saturating_add(self.margin) <= h.deadline => {
                *self.last_call.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
                Ok(())
            }
            Some(h) if h.epoch == epoch => Err(format!(
                "the lease of term {epoch} has less than {:?} left and was not renewed; no call starts",
                self.margin
            )),
            _ => Err(format!(
                "term {epoch} is over: this replica no longer leads"
            )),
        }
    }

    fn set(&self, held: Option<Held>) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        let epoch = held.map(|h| h.epoch);
        self.role.send_if_modified(|role| {
            let changed = *role != epoch;
            *role = epoch;
            changed
        });
    }

    /// One round: renews the term this replica holds, or takes a lapsed lease.
    async fn tick(&self, pool: &PgPool) -> Result<(), SinkError> {
        let _statement = self.statement.lock().await;
        let held = *self.held.lock().unwrap_or_else(|p| p.into_inner());
        let sent = now();
        let duration = self.duration.as_secs_f64();
        match held {
            Some(h) => {
                let renewed: Option<i64> = sqlx::query_scalar(
                    "UPDATE pwrotd_lease SET expires_at = now() + make_interval(secs => $3)
                     WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now()
                     RETURNING epoch",
                )
                .bind(&self.node)
                .bind(h.epoch)
                .bind(duration)
                .fetch_optional(pool)
                .await
                .map_err(|e| store_error("cannot renew the lease", &e))?;
                if renewed.is_some() {
                    self.set(Some(Held {
                        epoch: h.epoch,
                        deadline: sent.saturating_add(self.duration),
                    }));
                } else {
                    tracing::warn!(epoch = h.epoch, "lost the lease; following");
                    self.set(None);
                }
            }
            None if self
                .aside_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|until| sent < until) => {}
            None => {
                let taken: Option<i64> = sqlx::query_scalar(
                    "UPDATE pwrotd_lease SET holder = $1, epoch = epoch + 1,
                         expires_at = now() + make_interval(secs => $2), acquired_at = now()
                     WHERE id = 1 AND expires_at <= now()
                     RETURNING epoch",
                )
                .bind(&self.node)
                .bind(duration)
                .fetch_optional(pool)
                .await
                .map_err(|e| store_error("cannot take the lease", &e))?;
                if let Some(epoch) = taken {
                    tracing::info!(epoch, "took the lease: leading");
                    self.set(Some(Held {
                        epoch,
                        deadline: sent.saturating_add(self.duration),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Gives the lease up and takes none for `pause`: this replica cannot lead now (its
    /// credentials or its store fail it), and another may.
    pub async fn step_aside(&self, pool: &PgPool, pause: Duration) {
        *self.aside_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(now().saturating_add(pause));
        self.release(pool).await;
    }

    /// Holds, renews and takes the lease until `stop`. A replica that cannot reach the store
    /// keeps its term until its deadline, making no API call in the last margin of it.
    pub async fn run(self: Arc<Self>, pool: PgPool, stop: CancellationToken) {
        let mut interval = tokio::time::interval(self.renew_interval());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            let result = tokio::time::timeout(self.renew_interval() * 2, self.tick(&pool))
                .await
                .unwrap_or_else(|_| Err(SinkError::Store("the lease statement timed out".into())));
            self.up.send_if_modified(|up| {
                let now = result.is_ok();
                std::mem::replace(up, now) != now
            });
            if let Err(e) = result {
                tracing::warn!("{e}");
                let held = *self.held.lock().unwrap_or_else(|p| p.into_inner());
                if held.is_some_and(|h| now() >= h.deadline) {
                    tracing::warn!("the lease ran out while the store was unreachable; following");
                    self.set(None);
                }
            }
        }
    }

    /// Gives the lease up, once no call of this replica's can start: at a clean stop, or when
    /// it cannot lead. The lease still runs until the last API attempt started must have ended
    /// (an aborted attempt may still be on its way), so the next leader takes over then.
    pub async fn release(&self, pool: &PgPool) {
        let _statement = self.statement.lock().await;
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.set(None);
        if let Some(h) = held {
            let last = *self.last_call.lock().unwrap_or_else(|p| p.into_inner());
            let hold = last.map_or(Duration::ZERO, |at| {
                at.saturating_add(self.margin).saturating_sub(now())
            });
            let released = sqlx::query(
                "UPDATE pwrotd_lease SET expires_at = now() + make_interval(secs => $3)
                 WHERE id = 1 AND holder = $1 AND epoch = $2",
            )
            .bind(&self.node)
            .bind(h.epoch)
            .bind(hold.as_secs_f64())
            .execute(pool)
            .await;
            match released {
                Ok(_) => tracing::info!(epoch = h.epoch, "gave the lease up"),
                Err(e) => tracing::warn!("{}", store_error("cannot give the lease up", &e)),
            }
        }
    }
}

/// Who holds the lease, by the store.
pub async fn holder(pool: &PgPool) -> Result<Holder, SinkError> {
    let row: (String, i64, bool) =
        sqlx::query_as("SELECT holder, epoch, expires_at > now() FROM pwrotd_lease WHERE id = 1")
            .fetch_one(pool)
            .await
            .map_err(|e| store_error("cannot read the lease", &e))?;
    Ok(Holder {
        node: row.0,
        epoch: row.1,
        live: row.2,
    })
}
