//! Rotations: [`Rotator`] runs one account's rotation (`attempt.rs`, the protocol itself), its
//! re-render, its adoption, and turns each [`Report`] into metrics, logs and hooks in one
//! place (`Rotator::finish`).
//!
//! At every instant the database's password is the store's `current` or its `pending` (per
//! user, under the alternating strategy: the newest version of that user, or `pending`).
//! docs/protocol.md gives the rules; `attempt.rs` is the only place that orders store writes
//! and API calls.

mod attempt;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::cloud::{Clients, CloudError, GrantAccountPrivilege};
use crate::config::Account;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::password::Password;
use crate::scheduler::{Initial, Job};
use crate::sink::{self, SecretFile, Sink, SinkError};
use crate::store::{FileStore, Store};

use attempt::Attempt;

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The new password is set and is `current` in the sink.
    Success,
    /// Nothing changed: the old `current` is still live.
    Failure,
    /// The outcome is unknown: `pending` stays and is re-applied next time.
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Pending => "pending",
        }
    }
}

/// What one rotation (or render) did, for the scheduler, the CLI and the logs. Never holds a
/// password.
#[derive(Debug, Clone)]
pub struct Report {
    pub account: String,
    /// What the task did: a rotation, or a render without one.
    pub job: Job,
    /// How the rotation ended; for a render, `Success` or `Failure`.
    pub outcome: Outcome,
    /// The version that was set or attempted.
    pub version: Option<u64>,
    pub error_code: Option<String>,
    /// A one-line description: the error, or what succeeded.
    pub message: String,
    /// When the account's current password was set, after this rotation.
    pub last_success: Option<SystemTime>,
    /// Whether the sink holds a pending password after this rotation.
    pub pending: bool,
    /// Whether a render file could not be written. The rotation itself stands: this is
    /// retried as a render, never as another rotation.
    pub render_failed: bool,
    /// The user the current password belongs to, after this task.
    pub username: Option<String>,
    /// Whether a render (without a rotation) rewrote a file: applications' hooks run.
    pub rewrote: bool,
    /// The logins that tested a password, in order.
    pub verifications: Vec<crate::verify::Verdict>,
}

impl Report {
    /// A report of a failure with no details yet.
    pub fn new(account: &str, job: Job) -> Report {
        Report {
            account: account.to_owned(),
            job,
            outcome: Outcome::Failure,
            version: None,
            error_code: None,
            message: String::new(),
            last_success: None,
            pending: false,
            render_failed: false,
            username: None,
            rewrote: false,
            verifications: Vec::new(),
        }
    }
}

/// Performs rotations. Shared by the daemon's tasks and the in-process `rotate` command.
pub struct Rotator {
    /// A client for each profile the accounts call through.
    pub clients: Arc<Clients>,
    /// Where the protocol writes passwords down.
    pub store: Arc<dyn Store>,
    /// This host's state directory: its render files are written from here.
    pub sink: Arc<Sink>,
    pub metrics: Arc<Metrics>,
    /// Tells applications about a change: `on_change` hooks.
    hooks: Option<Arc<Hooks>>,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

/// Appends `part` to a report's message, after a `; ` when it has one.
fn push_part(message: &mut String, part: &str) {
    if !message.is_empty() {
        message.push_str("; ");
    }
    message.push_str(part);
}

impl Rotator {
    pub fn new(
        clients: Arc<Clients>,
        sink: Arc<Sink>,
        metrics: Arc<Metrics>,
        accounts: &[Arc<Account>],
    ) -> Rotator {
        Rotator {
            clients,
            store: Arc::new(FileStore::new(sink.clone(), accounts)),
            sink,
            metrics,
            hooks: None,
        }
    }

    /// Keeps passwords in `store` instead of the file store (cluster mode). The sink still
    /// holds the render files.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Rotator {
        self.store = store;
        self
    }

    /// Runs the accounts' `on_change` hooks through `hooks` after their files change.
    pub fn with_hooks(mut self, hooks: Arc<Hooks>) -> Rotator {
        self.hooks = Some(hooks);
        self
    }

    /// What the sink says about an account, for the scheduler. An account with no secret file
    /// first takes over the file of a renamed account that held the same database users
    /// (`renamed_from` names one the caller knows of). The caller guarantees that no task
    /// holds any of its users.
    pub fn initial(&self, account: &Account, renamed_from: Option<&str>) -> Initial {
        let file = match self.store.load_now(account, renamed_from) {
            Ok(file) => file,
            Err(e) => {
                tracing::error!(account = %account.name, "{e}");
                return Initial::default();
            }
        };
        let initial = Initial::of(file.as_ref());
        self.metrics.set_pending(&account.name, initial.pending);
        if initial.pending {
            tracing::warn!(account = %account.name, "a pending password from an earlier run will be re-applied first");
        }
        if let Some(at) = initial.last_success {
            self.metrics.set_last_success(&account.name, at);
        }
        initial
    }

    /// Records the password an account has today as its current version, without an API
    /// call (`pwrotd adopt`; the caller proved it by login where it could). Its render files
    /// are written, and its hooks run, by the render that follows. The caller guarantees no
    /// task holds the account.
    pub async fn adopt(&self, account: &Account, password: Password) -> Result<Initial, SinkError> {
        let file = self.store.adopt(account, password).await?;
        tracing::info!(account = %account.name, version = file.latest_version(), "adopted the password the account has today");
        let initial = Initial::of(Some(&file));
        if let Some(at) = initial.last_success {
            self.metrics.set_last_success(&account.name, at);
        }
        Ok(initial)
    }

    /// Rewrites the render files of an account that are not what they should be, without
    /// rotating: after a render failure, and at start and reload (docs/protocol.md#render-files).
    pub async fn rerender(&self, account: &Arc<Account>) -> Report {
        let mut report = Report::new(&account.name, Job::Render);
        let file = match self.store.load(account, None).await {
            Ok(file) => file,
            Err(e) => {
                report.render_failed = true;
                report.error_code = Some(e.code().to_owned());
                report.message = format!("render files not checked: {e}");
                return self.finish(account, report);
            }
        };
        report.last_success = file.as_ref().and_then(SecretFile::last_success);
        report.version = file
            .as_ref()
            .and_then(|f| f.current.as_ref())
            .map(|c| c.version);
        // While a pending password of current's own user may be live, current may be the
        // dead one: the render files keep what the last rotation wrote, and the rotation that
        // resolves the pending password writes them again.
        let current = file
            .filter(|f| match (&f.pending, &f.current) {
                (Some(p), Some(c)) => p.username != c.username,
                _ => true,
            })
            .and_then(|f| f.current);
        report.username = current.as_ref().map(|c| c.username.clone());
        report.rewrote = self.render(account, current, false, &mut report).await > 0;
        if !report.render_failed {
            report.outcome = Outcome::Success;
        }
        self.finish(account, report)
    }

    /// Writes an account's render files from `current`: all of them after a rotation, or
    /// only those whose content is not what it should be.
    async fn render(
        &self,
        account: &Arc<Account>,
        current: Option<sink::Version>,
        always: bool,
        report: &mut Report,
    ) -> usize {
        let Some(current) = current.filter(|_| !account.render.is_empty()) else {
            return 0;
        };
        let (render, sink) = (account.clone(), self.sink.clone());
        let rendered = self
            .sink
            .io_tasks()
            .spawn_blocking(move || {
                let (state_dir, uid) = (sink.state_dir(), sink.owner_uid());
                sink::render(&render, &current, always, state_dir, uid)
            })
            .await
            .unwrap_or_else(|_| sink::Rendered {
                written: 0,
                errors: vec![SinkError::Io {
                    path: self.sink.state_dir().to_owned(),
                    source: std::io::Error::other("the render task did not finish"),
                }],
            });
        if !rendered.errors.is_empty() {
            // The database and the sink agree; an application's file is stale. It is
            // retried as a render, never as another rotation.
            let text: Vec<String> = rendered.errors.iter().map(ToString::to_string).collect();
            report.render_failed = true;
            report
                .error_code
                .get_or_insert_with(|| "RenderFailed".into());
            push_part(
                &mut report.message,
                &format!(
                    "RENDER FILES FAILED: {}; they are retried without rotating",
                    text.join("; ")
                ),
            );
        } else if rendered.written > 0 && !always {
            let n = rendered.written;
            push_part(
                &mut report.message,
                &format!("{n} render file{} rewritten", if n == 1 { "" } else { "s" }),
            );
        }
        rendered.written
    }

    /// Rotates one account now. The caller guarantees no other rotation of the same account
    /// runs at the same time.
    pub async fn rotate(&self, account: &Arc<Account>) -> Report {
        let started = Instant::now();
        let report = self.rotate_inner(account, started).await;
        self.metrics
            .rotation_duration
            .observe(started.elapsed().as_secs_f64());
        self.finish(account, report)
    }

    /// Counts and logs what a rotation or a render did.
    fn finish(&self, account: &Account, report: Report) -> Report {
        if report.job == Job::Rotate {
            self.metrics
                .count_rotation(&account.name, report.outcome == Outcome::Success);
            self.metrics.set_pending(&account.name, report.pending);
        }
        for verdict in &report.verifications {
            self.metrics
                .verifications
                .with_label_values(&[account.name.as_str(), verdict.as_str()])
                .inc();
        }
        if report.render_failed {
            self.metrics.count_render_failure(&account.name);
        }
        let changed = match report.job {
            Job::Rotate => report.outcome == Outcome::Success,
            Job::Render => report.rewrote,
        };
        if changed
            && let (Some(hooks), Some(version), Some(username)) =
                (&self.hooks, report.version, &report.username)
        {
            hooks.changed(account, version, username);
        }
        if let Some(at) = report.last_success {
            self.metrics.set_last_success(&account.name, at);
        }
        let version = report.version;
        let name = account.name.as_str();
        match (report.outcome, report.render_failed) {
            (Outcome::Success, false) if report.job == Job::Render && report.message.is_empty() => {
                tracing::debug!(account = name, version, "render files are up to date")
            }
            (Outcome::Success, false) if report.error_code.is_none() => {
                tracing::info!(account = name, version, "{}", report.message)
            }
            (Outcome::Pending | Outcome::Success, _) => {
                tracing::warn!(account = name, version, "{}", report.message)
            }
            (Outcome::Failure, _) => tracing::error!(account = name, version, "{}", report.message),
        }
        report
    }

    /// The protocol's steps, in order; the first to end the attempt gives its report.
    async fn rotate_inner(&self, account: &Arc<Account>, started: Instant) -> Report {
        let mut attempt = match Attempt::prepare(self, account, started).await {
            Ok(attempt) => attempt,
            Err(report) => return report,
        };
        let applied = match attempt.apply().await {
            Ok(applied) => applied,
            Err(report) => return report,
        };
        let unverified = match attempt.confirm(&applied).await {
            Ok(note) => note,
            Err(report) => return report,
        };
        if let Err(report) = attempt.promote(&applied, unverified).await {
            return report;
        }
        attempt.publish().await
    }

    /// Brings `user`'s privileges in line with the account's `grants` (GrantAccountPrivilege).
    async fn grant(&self, account: &Account, user: &str) -> Result<(), CloudError> {
        let grant = GrantAccountPrivilege::new(&account.resource_id, user, &account.grants);
        self.clients
            .get(&account.profile, &grant)?
            .call_in(&account.region_id, &grant)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_unique_and_short() {
        let (a, b) = (
            attempt::client_token().unwrap(),
            attempt::client_token().unwrap(),
        );
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.is_ascii());
    }
}
