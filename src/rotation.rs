//! One rotation, end to end. This is the only place that orders sink writes and API calls, and
//! the order is the product (PRODUCT.md §4):
//!
//! 1. Resolve a `pending` password first, if the sink has one: it may be live, so it is
//!    re-applied, the same password with the same ClientToken. Otherwise generate a password and
//!    write it as `pending`, durably, before any API call. If that write fails, stop: no call.
//! 2. Call the API with it (the client retries transient failures).
//! 3. On success, promote `pending` to `current` durably, then apply grants. A failed grant is
//!    reported but does not undo the rotation.
//! 4. On a failure that proves nothing was applied, clear `pending`, but only for a pending
//!    password this very attempt created: one found in the sink may have been applied earlier.
//! 5. On an ambiguous failure, or a crash anywhere, `pending` stays for the next attempt.
//!
//! With `[account.verify]` (PRODUCT.md §8), logins add two rules. A password is promoted only
//! after it logs in; until then it stays `pending`. And a pending password of unknown fate (found
//! in the sink, or this attempt's reply lost) is tested by login first: if it logs in it is
//! promoted with no further call; if its user's previous password still logs in it is set again.
//! Under the alternating strategy the pending password belongs to the user that is not current,
//! whose privileges are brought in line before it is verified and promoted.
//!
//! At every instant the database's password is the sink's `current` or its `pending` (per user,
//! under the alternating strategy: the newest version of that user, or `pending`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::cloud::{Client, CloudError, GrantAccountPrivilege, SetPassword};
use crate::config::{Account, Strategy};
use crate::failpoint;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::password::Password;
use crate::scheduler::{Initial, Job};
use crate::sink::{self, AuditRecord, Pending, SecretFile, Sink, SinkError, Unclaimed, timestamp};
use crate::verify::{Login, Verify};

/// `settled` in the audit log: a login proved a pending password live.
const LOGIN: &str = "login";
/// `settled` in the audit log: the pending password was set again.
const REAPPLY: &str = "reapply";

/// What logins showed about a pending password of unknown fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It logs in: it is live.
    Live,
    /// The password its user had before still logs in: it was not applied.
    NotApplied,
    /// Neither could be shown.
    Unknown,
}

/// How a password was shown to be set.
enum Applied {
    /// The API accepted it: its RequestId.
    Reply(String),
    /// It logged in, so an earlier call must have applied it.
    Login,
}

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
        }
    }
}

/// Performs rotations. Shared by the daemon's tasks and the in-process `rotate` command.
pub struct Rotator {
    pub client: Arc<Client>,
    pub sink: Arc<Sink>,
    pub metrics: Arc<Metrics>,
    /// The secret files no configured account claims, which a renamed account takes over.
    unclaimed: Arc<Unclaimed>,
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

/// A new ClientToken, for one pending version: random, so that no two deployments or
/// versions ever share one (the API scopes tokens per cloud account, not per pwrotd), and kept
/// in the sink with its pending password so that every re-application sends the same one.
/// At most 64 ASCII characters.
fn client_token() -> Result<String, rand::rngs::SysError> {
    Ok(format!("pwrotd-{}", crate::random::hex_token::<20>()?))
}

impl Rotator {
    pub fn new(
        client: Arc<Client>,
        sink: Arc<Sink>,
        metrics: Arc<Metrics>,
        accounts: &[Arc<Account>],
    ) -> Rotator {
        Rotator {
            client,
            sink,
            metrics,
            unclaimed: Arc::new(Unclaimed::new(accounts.iter().map(|a| a.name.clone()))),
            hooks: None,
        }
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
        let file = match self.unclaimed.load(&self.sink, account, renamed_from) {
            Ok(file) => file,
            Err(e) => {
                tracing::error!(account = %account.name, "{e}");
                return Initial::default();
            }
        };
        let initial = Initial::of(file.as_ref());
        self.track_pending(&account.name, initial.pending);
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
    pub fn adopt(&self, account: &Account, password: Password) -> Result<Initial, SinkError> {
        let file = self.sink.adopt_current(account, password)?;
        tracing::info!(account = %account.name, version = file.latest_version(), "adopted the password the account has today");
        let initial = Initial::of(Some(&file));
        if let Some(at) = initial.last_success {
            self.metrics.set_last_success(&account.name, at);
        }
        Ok(initial)
    }

    /// Rewrites the render files of an account that are not what they should be, without
    /// rotating: after a render failure, and at start and reload (PRODUCT.md §4).
    pub async fn rerender(&self, account: &Arc<Account>) -> Report {
        let mut report = Report::new(&account.name, Job::Render);
        let load = account.clone();
        let file = match self.io(move |sink| sink.load(&load)).await {
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
        let render = account.clone();
        let rendered = self
            .io(move |sink| {
                let (state_dir, uid) = (sink.state_dir(), sink.owner_uid());
                Ok(sink::render(&render, &current, always, state_dir, uid))
            })
            .await
            .unwrap_or_else(|e| sink::Rendered {
                written: 0,
                errors: vec![e],
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

    async fn rotate_inner(&self, account: &Arc<Account>, started: Instant) -> Report {
        let mut report = Report::new(&account.name, Job::Rotate);
        let refuse = |mut report: Report, error: &SinkError| {
            report.error_code = Some(error.code().to_owned());
            report.message = format!("refused, no API call made: {error}");
            report
        };

        // 1. Resolve a pending password first; otherwise write a new one as pending.
        let (load, unclaimed) = (account.clone(), self.unclaimed.clone());
        let mut file = match self.io(move |sink| unclaimed.load(sink, &load, None)).await {
            Ok(Some(file)) => file,
            Ok(None) => SecretFile::new(account),
            Err(e) => return refuse(report, &e),
        };
        report.last_success = file.last_success();
        let inherited = file.pending.is_some();
        let pending = match file.pending.clone() {
            Some(pending) => pending,
            None => {
                let generated = account
                    .policy
                    .generate()
                    .map_err(|e| e.to_string())
                    .and_then(|p| Ok((p, client_token().map_err(|e| e.to_string())?)));
                let (password, client_token) = match generated {
                    Ok(both) => both,
                    Err(e) => {
                        report.error_code = Some("PasswordGeneration".into());
                        report.message = format!("no API call made: {e}");
                        return report;
                    }
                };
                let version = file.latest_version() + 1;
                let created_time = timestamp(SystemTime::now());
                let current_user = file.current.as_ref().map(|c| c.username.as_str());
                let pending = Pending {
                    version,
                    username: account.next_username(current_user).to_owned(),
                    client_token,
                    password,
                    created_time,
                };
                file.pending = Some(pending.clone());
                let durable = file.clone();
                if let Err(e) = self.io(move |sink| sink.store_pending(&durable)).await {
                    return refuse(report, &e);
                }
                failpoint::crash("after_pending");
                pending
            }
        };
        report.version = Some(pending.version);
        report.pending = true;
        self.track_pending(&account.name, true);

        let hmac = self.sink.password_hmac(&pending.password);
        let mut audit = AuditRecord {
            time: String::new(),
            account: account.name.clone(),
            api: account.api.as_str().to_owned(),
            resource_id: account.resource_id.clone(),
            account_name: pending.username.clone(),
            version: pending.version,
            outcome: String::new(),
            error_code: None,
            request_id: None,
            attempts: 0,
            duration_ms: 0,
            password_hmac: Some(hmac),
            verification: None,
            settled: None,
        };

        // 2. Set it through the API. A pending password of unknown fate is first tested by
        // login, when the account can be verified: if it already works, no call is needed.
        let proven = match &account.verify {
            Some(verify) if inherited => {
                self.settle(account, verify, &file, &pending, &mut audit)
                    .await
                    == Settled::Live
            }
            _ => false,
        };
        // Whether an earlier call may have applied the password: then `pending` must stay.
        let mut maybe_applied = inherited;
        let applied = if proven {
            Applied::Login
        } else {
            loop {
                let op = SetPassword::new(
                    account.api,
                    &account.resource_id,
                    &pending.username,
                    pending.password.clone(),
                    &pending.client_token,
                    account.password_type.as_deref(),
                );
                let error = match self.client.call(&op).await {
                    Ok(reply) => {
                        audit.attempts += reply.attempts;
                        audit.request_id = Some(reply.request_id.clone());
                        break Applied::Reply(reply.request_id);
                    }
                    Err(error) => error,
                };
                audit.attempts += error.attempts;
                audit.request_id = error.request_id().map(str::to_owned);
                // A login tells whether the lost call applied: promote without a second call,
                // or set it again now. Once per attempt: a pending password that was already
                // settled and set again stays pending for the next attempt.
                if error.may_have_applied()
                    && audit.settled.is_none()
                    && let Some(verify) = &account.verify
                {
                    maybe_applied = true;
                    match self
                        .settle(account, verify, &file, &pending, &mut audit)
                        .await
                    {
                        Settled::Live => break Applied::Login,
                        // Set it again now: the same password, the same ClientToken.
                        Settled::NotApplied | Settled::Unknown => continue,
                    }
                }
                return self
                    .failed(
                        account,
                        file,
                        &pending,
                        maybe_applied,
                        error,
                        audit,
                        report,
                        started,
                    )
                    .await;
            }
        };
        failpoint::crash("before_promote");
        let alternating = matches!(account.strategy, Strategy::Alternating { .. });
        let how = match (&applied, inherited || audit.settled.is_some()) {
            (Applied::Login, _) => {
                "settled by login: the password logs in, so no further API call".to_owned()
            }
            (Applied::Reply(id), true) => format!("a pending password re-applied (RequestId {id})"),
            (Applied::Reply(id), false) => format!("RequestId {id}"),
        };
        let hold = |mut report: Report, code: &str, message: String| {
            report.outcome = Outcome::Pending;
            report.error_code = Some(code.to_owned());
            report.message = message;
            report
        };

        // 3a. Alternating: bring the new user's privileges in line before anyone moves to it.
        if alternating
            && !account.grants.is_empty()
            && let Err(e) = self.grant(account, &pending.username).await
        {
            let code = e.code().to_owned();
            let report = hold(
                report,
                &code,
                format!(
                    "version {} is set for {} ({how}) but its grants failed: {e}; it stays \
                     pending and {} stays current",
                    pending.version,
                    pending.username,
                    file.current
                        .as_ref()
                        .map_or("no user", |c| c.username.as_str()),
                ),
            );
            self.write_audit(audit, "pending", Some(code), started)
                .await;
            return report;
        }

        // 3b. Verification: the new password should log in before it is promoted. Under the
        // alternating strategy nothing moves until it does: applications keep the other user,
        // which still works. A single user's old password is gone once the API confirmed the
        // change, so applications must not be left with it (PRODUCT.md §4): the new one is
        // held back only when the database refuses it *and* still takes the old one.
        let mut unverified = None;
        if let Some(verify) = &account.verify
            && !matches!(applied, Applied::Login)
        {
            let login = verify
                .login_within(&pending.username, &pending.password)
                .await;
            self.count_verification(account, &login, &mut audit);
            if login != Login::Accepted {
                let (code, verdict) = match login {
                    Login::Rejected(_) => ("VerificationRejected", "the database refuses it"),
                    _ => ("VerificationFailed", "no login could test it"),
                };
                let old_still_works = || async {
                    match file.latest_of(&pending.username) {
                        Some(old) => {
                            verify.login(&old.username, &old.password).await == Login::Accepted
                        }
                        None => false,
                    }
                };
                let hold_back =
                    alternating || (matches!(login, Login::Rejected(_)) && old_still_works().await);
                if hold_back {
                    let still = if alternating {
                        format!(
                            "{} stays current",
                            file.current
                                .as_ref()
                                .map_or("no user", |c| c.username.as_str())
                        )
                    } else {
                        "the old password still logs in and stays current".to_owned()
                    };
                    let report = hold(
                        report,
                        code,
                        format!(
                            "version {} is set ({how}) but {verdict} as user {} within {}: {}; \
                             it is not promoted and stays pending; {still}",
                            pending.version,
                            pending.username,
                            humantime::format_duration(verify.timeout),
                            login.reason()
                        ),
                    );
                    self.write_audit(audit, "pending", Some(code.to_owned()), started)
                        .await;
                    return report;
                }
                report.error_code = Some(code.to_owned());
                unverified = Some(format!(
                    "promoted on the API's word: {verdict} as user {} within {} ({}), and the \
                     old password is gone",
                    pending.username,
                    humantime::format_duration(verify.timeout),
                    login.reason()
                ));
            }
        }

        // 3c. Promote, then (single user) grants.
        let request_id = match &applied {
            Applied::Reply(id) => Some(id.clone()),
            Applied::Login => None,
        };
        // A promotion no API reply confirmed keeps the version it replaces, whatever
        // `keep_versions` says: should the login have misled, that one is the database's.
        let keep = match applied {
            Applied::Reply(_) => account.keep_versions,
            Applied::Login => account.keep_versions.max(1),
        };
        file.promote(request_id, keep);
        if let Err(e) = self.store(&file).await {
            // The password is live and durably `pending`: the invariant holds, and the next
            // attempt re-applies it and promotes.
            // Applications still get the password the API confirmed (PRODUCT.md §4): the
            // old one is gone.
            let code = e.code().to_owned();
            let mut report = hold(
                report,
                &code,
                format!(
                    "version {} is set ({how}) but its promotion could not be written: {e}; it \
                     stays pending and is re-applied next time",
                    pending.version
                ),
            );
            self.render(account, file.current.clone(), true, &mut report)
                .await;
            self.write_audit(audit, "pending", Some(code), started)
                .await;
            return report;
        }
        self.track_pending(&account.name, false);
        report.outcome = Outcome::Success;
        report.pending = false;
        report.username = Some(pending.username.clone());
        report.last_success = file.last_success();
        report.message = format!(
            "rotated to version {}{} ({how}, {} API attempt{}{})",
            pending.version,
            if alternating {
                format!(", now user {}", pending.username)
            } else {
                String::new()
            },
            audit.attempts,
            if audit.attempts == 1 { "" } else { "s" },
            if audit.verification.as_deref() == Some("success") {
                ", verified by login"
            } else {
                ""
            },
        );
        if let Some(unverified) = unverified {
            push_part(&mut report.message, &unverified);
        }
        self.write_audit(audit, "success", None, started).await;
        failpoint::crash("before_render");
        self.render(account, file.current.clone(), true, &mut report)
            .await;
        failpoint::crash("before_grants");
        if !account.grants.is_empty() {
            // Alternating: applied before verification (3a), so done already.
            let granted = if alternating {
                Ok(())
            } else {
                self.grant(account, &pending.username).await
            };
            match granted {
                Ok(()) => {
                    let n = account.grants.len();
                    let s = if n == 1 { "" } else { "s" };
                    report.message.push_str(&format!("; {n} grant{s} applied"));
                }
                Err(e) => {
                    tracing::error!(account = %account.name, "the password rotated but the grants failed: {e}");
                    report.message.push_str(&format!("; GRANTS FAILED: {e}"));
                }
            }
        }
        report
    }

    /// Brings `user`'s privileges in line with the account's `grants` (GrantAccountPrivilege).
    async fn grant(&self, account: &Account, user: &str) -> Result<(), CloudError> {
        let grant = GrantAccountPrivilege::new(&account.resource_id, user, &account.grants);
        self.client.call(&grant).await.map(drop)
    }

    /// Tests a pending password of unknown fate by login (PRODUCT.md §8). If it logs in, it is
    /// live, and is promoted with no API call. If the password its user had before still logs
    /// in, it was not applied, and is set again. If neither shows within the verification
    /// timeout, the fate stays unknown. A login that fails for any reason but the database's
    /// refusal proves nothing.
    async fn settle(
        &self,
        account: &Account,
        verify: &Verify,
        file: &SecretFile,
        pending: &Pending,
        audit: &mut AuditRecord,
    ) -> Settled {
        let before = file.latest_of(&pending.username);
        let mut patience = verify.patience();
        loop {
            let login = verify.login(&pending.username, &pending.password).await;
            if login == Login::Accepted {
                // A login proves the password only where the database checks passwords: a
                // target with trust authentication, or a pooler that takes anything, would
                // "prove" a password that was never set. One that was never set must fail.
                if !verify.checks_passwords(&pending.username).await {
                    tracing::warn!(account = %account.name, version = pending.version,
                        "{} accepts a password that was never set, so a login proves nothing there; the pending password will be set again",
                        verify.target());
                    self.count_verification(
                        account,
                        &Login::Error("no password check".into()),
                        audit,
                    );
                    audit.settled = Some(REAPPLY.to_owned());
                    return Settled::Unknown;
                }
                self.count_verification(account, &login, audit);
                audit.settled = Some(LOGIN.to_owned());
                return Settled::Live;
            }
            if let Some(before) = before
                && verify.login(&before.username, &before.password).await == Login::Accepted
            {
                self.count_verification(account, &login, audit);
                audit.settled = Some(REAPPLY.to_owned());
                tracing::info!(account = %account.name, version = pending.version,
                    "the pending password does not log in ({}) and the previous one does: re-applying it",
                    login.reason());
                return Settled::NotApplied;
            }
            if !patience.wait().await {
                self.count_verification(account, &login, audit);
                tracing::warn!(account = %account.name, version = pending.version,
                    "a login cannot tell whether the pending password is live ({}); it will be set again",
                    login.reason());
                audit.settled = Some(REAPPLY.to_owned());
                return Settled::Unknown;
            }
        }
    }

    fn count_verification(&self, account: &Account, login: &Login, audit: &mut AuditRecord) {
        self.metrics
            .verifications
            .with_label_values(&[account.name.as_str(), login.outcome()])
            .inc();
        audit.verification = Some(login.outcome().to_owned());
    }

    /// Steps 4 and 5: decide what a failure means for the pending password.
    #[allow(clippy::too_many_arguments)]
    async fn failed(
        &self,
        account: &Account,
        mut file: SecretFile,
        pending: &Pending,
        maybe_applied: bool,
        error: CloudError,
        audit: AuditRecord,
        mut report: Report,
        started: Instant,
    ) -> Report {
        let code = error.code().to_owned();
        report.error_code = Some(code.clone());
        let nothing_applied = !error.may_have_applied();
        if nothing_applied && !maybe_applied {
            // 4. This attempt created the pending password and provably never applied it.
            file.pending = None;
            match self.store(&file).await {
                Ok(()) => {
                    self.track_pending(&account.name, false);
                    report.pending = false;
                    report.outcome = Outcome::Failure;
                    report.message = format!("{error}; the current password stays");
                }
                Err(e) => {
                    // Harmless: a pending that was never applied is re-applied next time.
                    report.outcome = Outcome::Failure;
                    report.message = format!(
                        "{error}; clearing pending failed too ({e}), it will be re-applied"
                    );
                }
            }
            self.write_audit(audit, "failure", Some(code), started)
                .await;
        } else {
            // 5. The pending password may be live: keep it and re-apply it next time.
            report.outcome = Outcome::Pending;
            report.message = if maybe_applied && nothing_applied {
                format!(
                    "{error}; version {} stays pending because an earlier call may have applied it",
                    pending.version
                )
            } else {
                format!(
                    "{error}; version {} stays pending and is re-applied next time",
                    pending.version
                )
            };
            self.write_audit(audit, "pending", Some(code), started)
                .await;
        }
        report
    }

    async fn write_audit(
        &self,
        mut record: AuditRecord,
        outcome: &str,
        error_code: Option<String>,
        started: Instant,
    ) {
        record.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        record.outcome = outcome.to_owned();
        record.error_code = error_code;
        record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let account = record.account.clone();
        if let Err(e) = self.io(move |sink| sink.audit(&record)).await {
            tracing::error!(account = %account, "cannot write the audit log: {e}");
        }
    }

    /// Runs sink I/O (fsync included) on the blocking pool, so that rotations waiting on disk
    /// do not hold the runtime's few worker threads.
    async fn io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sink) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let sink = self.sink.clone();
        self.sink
            .io_tasks()
            .spawn_blocking(move || f(&sink))
            .await
            .unwrap_or_else(|e| {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                Err(SinkError::Io {
                    path: self.sink.state_dir().to_owned(),
                    source: std::io::Error::other(format!("the sink I/O task {what}")),
                })
            })
    }

    async fn store(&self, file: &SecretFile) -> Result<(), SinkError> {
        let file = file.clone();
        self.io(move |sink| sink.store(&file)).await
    }

    fn track_pending(&self, account: &str, pending: bool) {
        self.metrics.set_pending(account, pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_unique_and_short() {
        let (a, b) = (client_token().unwrap(), client_token().unwrap());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.is_ascii());
    }
}
