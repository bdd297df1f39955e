//! One rotation attempt as its protocol (docs/protocol.md#rotation-steps): each step a
//! method of [`Attempt`], in this order, and only here are store writes and API calls ordered.
//!
//! 1. [`Attempt::prepare`]: a pending password found in the store is taken up again (it may
//!    be live); otherwise a new one is generated and written as pending, durably, before any
//!    API call. If that write fails, nothing is sent.
//! 2. [`Attempt::apply`]: the API sets it (the client retries what is worth retrying, always
//!    with the same password). A pending password of unknown fate is first tested by login.
//!    A failure ends the attempt in [`Attempt::fail`]: the pending password is cleared only if
//!    this attempt created it and every call attempt was a definite refusal.
//! 3. [`Attempt::confirm`]: under the alternating strategy the new user's grants first; then
//!    the login that verifies it, where the account can be verified.
//! 4. [`Attempt::promote`]: pending becomes current, durably.
//! 5. [`Attempt::publish`]: the audit line, the render files, then (one user) the grants.
//!
//! A step that ends the attempt returns `Err(report)`: the attempt is over, with that report.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::cloud::{CloudError, SetPassword};
use crate::config::{Account, Strategy};
use crate::failpoint;
use crate::sink::{AuditRecord, Pending, SecretFile, Settlement, SinkError, timestamp};
use crate::verify::{Login, Verify};

use super::{Outcome, Report, Rotator, push_part};
use crate::scheduler::Job;

/// What logins showed about a pending password of unknown fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It logs in, and the database checks passwords: it is live.
    Live,
    /// The password its user had before still logs in: it was not applied.
    NotApplied,
    /// Neither could be shown.
    Unknown,
}

/// How the new password was shown to be set.
pub(super) enum Applied {
    /// The API accepted it: its RequestId.
    Reply(String),
    /// It logged in, so an earlier call must have applied it.
    Login,
}

/// A step's result: the next step's input, or the attempt's end.
type Step<T> = Result<T, Report>;

/// One rotation attempt, carried from step to step. Never holds a password outside `file` and
/// `pending`, which are the store's record of it.
pub(super) struct Attempt<'a> {
    rotator: &'a Rotator,
    account: &'a Arc<Account>,
    started: Instant,
    file: SecretFile,
    pending: Pending,
    /// The pending password was found in the store: an earlier call may have applied it.
    inherited: bool,
    audit: AuditRecord,
    report: Report,
}

/// A new ClientToken, for one pending version: random, so that no two deployments or
/// versions ever share one (the API scopes tokens per cloud account, not per pwrotd), and kept
/// in the store with its pending password so that every re-application sends the same one.
/// At most 64 ASCII characters.
pub(super) fn client_token() -> Result<String, rand::rngs::SysError> {
    Ok(format!("pwrotd-{}", crate::random::hex_token::<20>()?))
}

impl<'a> Attempt<'a> {
    /// Step 1: the pending password this attempt sets, written down before anything is sent.
    pub(super) async fn prepare(
        rotator: &'a Rotator,
        account: &'a Arc<Account>,
        started: Instant,
    ) -> Step<Attempt<'a>> {
        let mut report = Report::new(&account.name, Job::Rotate);
        let mut file = match rotator.store.load(account, None).await {
            Ok(Some(file)) => file,
            Ok(None) => SecretFile::new(account),
            Err(e) => return Err(refused(report, &e)),
        };
        report.last_success = file.last_success();
        let inherited = file.pending.is_some();
        let pending = match file.pending.clone() {
            Some(pending) => pending,
            None => {
                let pending = match new_pending(account, &file) {
                    Ok(pending) => pending,
                    Err(e) => {
                        report.error_code = Some("PasswordGeneration".into());
                        report.message = format!("no API call made: {e}");
                        return Err(report);
                    }
                };
                file.pending = Some(pending.clone());
                if let Err(e) = rotator.store.write_pending(&file).await {
                    return Err(refused(report, &e));
                }
                failpoint::crash("after_pending");
                pending
            }
        };
        report.version = Some(pending.version);
        report.pending = true;
        let audit = AuditRecord {
            time: String::new(),
            account: account.name.clone(),
            api: account.api.as_str().to_owned(),
            resource_id: account.resource_id.clone(),
            account_name: pending.username.clone(),
            version: pending.version,
            outcome: Outcome::Pending,
            error_code: None,
            request_id: None,
            attempts: 0,
            duration_ms: 0,
            password_hmac: Some(rotator.store.password_hmac(&pending.password)),
            verification: None,
            settled: None,
        };
        Ok(Attempt {
            rotator,
            account,
            started,
            file,
            pending,
            inherited,
            audit,
            report,
        })
    }

    /// Step 2: the API sets the pending password, or a login proves an earlier call did.
    pub(super) async fn apply(&mut self) -> Step<Applied> {
        let verify = self.account.verify.as_deref();
        if let Some(verify) = verify
            && self.inherited
            && self.settle(verify).await == Settled::Live
        {
            return Ok(Applied::Login);
        }
        // Whether an earlier call may have applied the password: then it must stay pending.
        let mut maybe_applied = self.inherited;
        loop {
            let op = SetPassword::new(
                self.account.api,
                &self.account.resource_id,
                &self.pending.username,
                self.pending.password.clone(),
                &self.pending.client_token,
                self.account.password_type.as_deref(),
            );
            let sent = match self.rotator.clients.get(&self.account.profile, &op) {
                Ok(client) => client.call_in(&self.account.region_id, &op).await,
                Err(error) => Err(error),
            };
            let error = match sent {
                Ok(reply) => {
                    self.audit.attempts += reply.attempts;
                    self.audit.request_id = Some(reply.request_id.clone());
                    return Ok(Applied::Reply(reply.request_id));
                }
                Err(error) => error,
            };
            self.audit.attempts += error.attempts;
            self.audit.request_id = error.request_id().map(str::to_owned);
            // A login tells whether the lost call applied: promote without a second call, or
            // set it again now. Once per attempt: a pending password that was settled and set
            // again stays pending for the next attempt.
            if error.may_have_applied()
                && self.audit.settled.is_none()
                && let Some(verify) = verify
            {
                maybe_applied = true;
                match self.settle(verify).await {
                    Settled::Live => return Ok(Applied::Login),
                    // Set it again now: the same password, the same ClientToken.
                    Settled::NotApplied | Settled::Unknown => continue,
                }
            }
            return Err(self.fail(error, maybe_applied).await);
        }
    }

    /// Step 3: the checks before anyone moves to the new password. Returns a note when it is
    /// promoted on the API's word alone.
    pub(super) async fn confirm(&mut self, applied: &Applied) -> Step<Option<String>> {
        failpoint::crash("before_promote");
        let alternating = self.alternating();
        // Alternating: the new user's privileges in line before anyone moves to it.
        if alternating
            && !self.account.grants.is_empty()
            && let Err(e) = self
                .rotator
                .grant(self.account, &self.pending.username)
                .await
        {
            let message = format!(
                "version {} is set for {} ({}) but its grants failed: {e}; it stays pending and \
                 {} stays current",
                self.pending.version,
                self.pending.username,
                self.how(applied),
                self.current_user(),
            );
            return Err(self.hold(e.code(), message).await);
        }
        match (self.account.verify.as_deref(), applied) {
            (Some(verify), Applied::Reply(_)) => self.verify(verify, applied).await,
            _ => Ok(None),
        }
    }

    /// The login that verifies a password the API accepted. Under the alternating strategy
    /// nothing moves until it logs in: applications keep the other user, which still works. A
    /// single user's old password is gone once the API confirmed the change, so applications
    /// must not be left with it (docs/protocol.md#verification): the new one is held back only
    /// when the database refuses it *and* still takes the old one.
    async fn verify(&mut self, verify: &Verify, applied: &Applied) -> Step<Option<String>> {
        let login = verify
            .login_within(&self.pending.username, &self.pending.password)
            .await;
        self.count_verification(&login);
        if login == Login::Accepted {
            return Ok(None);
        }
        let (code, verdict) = match login {
            Login::Rejected(_) => ("VerificationRejected", "the database refuses it"),
            _ => ("VerificationFailed", "no login could test it"),
        };
        let within = format!(
            "as user {} within {}",
            self.pending.username,
            humantime::format_duration(verify.timeout)
        );
        let hold_back = self.alternating()
            || (matches!(login, Login::Rejected(_)) && self.old_still_works(verify).await);
        if hold_back {
            let still = if self.alternating() {
                format!("{} stays current", self.current_user())
            } else {
                "the old password still logs in and stays current".to_owned()
            };
            let message = format!(
                "version {} is set ({}) but {verdict} {within}: {}; it is not promoted and \
                 stays pending; {still}",
                self.pending.version,
                self.how(applied),
                login.reason()
            );
            return Err(self.hold(code, message).await);
        }
        self.report.error_code = Some(code.to_owned());
        Ok(Some(format!(
            "promoted on the API's word: {verdict} {within} ({}), and the old password is gone",
            login.reason()
        )))
    }

    /// Step 4: pending becomes current, durably. If that write fails the password is live
    /// and durably pending: the invariant holds, and the next attempt promotes it. The render
    /// files still get the password the API confirmed: the old one is gone.
    pub(super) async fn promote(
        &mut self,
        applied: &Applied,
        unverified: Option<String>,
    ) -> Step<()> {
        let request_id = match applied {
            Applied::Reply(id) => Some(id.clone()),
            Applied::Login => None,
        };
        // A promotion no API reply confirmed keeps the version it replaces, whatever
        // `keep_versions` says: should the login have misled, that one is the database's.
        let keep = match applied {
            Applied::Reply(_) => self.account.keep_versions,
            Applied::Login => self.account.keep_versions.max(1),
        };
        self.file.promote(request_id, keep);
        if let Err(e) = self.rotator.store.write_outcome(&self.file).await {
            let message = format!(
                "version {} is set ({}) but its promotion could not be written: {e}; it stays \
                 pending and is re-applied next time",
                self.pending.version,
                self.how(applied),
            );
            let current = self.file.current.clone();
            self.rotator
                .render(self.account, current, true, &mut self.report)
                .await;
            return Err(self.hold(e.code(), message).await);
        }
        let attempts = self.audit.attempts;
        let message = format!(
            "rotated to version {}{} ({}, {attempts} API attempt{}{})",
            self.pending.version,
            if self.alternating() {
                format!(", now user {}", self.pending.username)
            } else {
                String::new()
            },
            self.how(applied),
            if attempts == 1 { "" } else { "s" },
            if self.audit.verification == Some(crate::verify::Verdict::Success) {
                ", verified by login"
            } else {
                ""
            },
        );
        let report = &mut self.report;
        report.outcome = Outcome::Success;
        report.pending = false;
        report.username = Some(self.pending.username.clone());
        report.last_success = self.file.last_success();
        report.message = message;
        if let Some(unverified) = unverified {
            push_part(&mut self.report.message, &unverified);
        }
        Ok(())
    }

    /// Step 5: what follows a promotion: the audit line, the render files, and the grants of
    /// a single user (the alternating strategy applied them before it verified).
    pub(super) async fn publish(mut self) -> Report {
        self.write_audit(Outcome::Success, None).await;
        failpoint::crash("before_render");
        let current = self.file.current.clone();
        self.rotator
            .render(self.account, current, true, &mut self.report)
            .await;
        failpoint::crash("before_grants");
        if !self.account.grants.is_empty() && !self.alternating() {
            match self
                .rotator
                .grant(self.account, &self.pending.username)
                .await
            {
                Ok(()) => {
                    let n = self.account.grants.len();
                    let s = if n == 1 { "" } else { "s" };
                    push_part(&mut self.report.message, &format!("{n} grant{s} applied"));
                }
                Err(e) => {
                    tracing::error!(account = %self.account.name, "the password rotated but the grants failed: {e}");
                    push_part(&mut self.report.message, &format!("GRANTS FAILED: {e}"));
                }
            }
        } else if !self.account.grants.is_empty() {
            let n = self.account.grants.len();
            let s = if n == 1 { "" } else { "s" };
            push_part(&mut self.report.message, &format!("{n} grant{s} applied"));
        }
        self.report
    }

    /// A failed API call: what it means for the pending password (steps 4 and 5 of the
    /// protocol's failure rules).
    async fn fail(&mut self, error: CloudError, maybe_applied: bool) -> Report {
        let code = error.code().to_owned();
        self.report.error_code = Some(code.clone());
        let nothing_applied = !error.may_have_applied();
        if nothing_applied && !maybe_applied {
            // This attempt created the pending password and provably never applied it.
            self.file.pending = None;
            self.report.outcome = Outcome::Failure;
            self.report.message = match self.rotator.store.write_outcome(&self.file).await {
                Ok(()) => {
                    self.report.pending = false;
                    format!("{error}; the current password stays")
                }
                // Harmless: a pending password never applied is re-applied next time.
                Err(e) => {
                    format!("{error}; clearing pending failed too ({e}), it will be re-applied")
                }
            };
            self.write_audit(Outcome::Failure, Some(code)).await;
        } else {
            // The pending password may be live: it stays, and is re-applied next time.
            self.report.outcome = Outcome::Pending;
            let why = if maybe_applied && nothing_applied {
                "because an earlier call may have applied it"
            } else {
                "and is re-applied next time"
            };
            self.report.message = format!(
                "{error}; version {} stays pending {why}",
                self.pending.version
            );
            self.write_audit(Outcome::Pending, Some(code)).await;
        }
        std::mem::replace(&mut self.report, Report::new("", Job::Rotate))
    }

    /// Ends the attempt with the password set but not promoted: it stays pending.
    async fn hold(&mut self, code: &str, message: String) -> Report {
        self.report.outcome = Outcome::Pending;
        self.report.error_code = Some(code.to_owned());
        self.report.message = message;
        self.write_audit(Outcome::Pending, Some(code.to_owned()))
            .await;
        std::mem::replace(&mut self.report, Report::new("", Job::Rotate))
    }

    /// Tests a pending password of unknown fate by login (docs/protocol.md#settling-an-ambiguous-outcome). If it
    /// logs in where a password never set does not, it is live and is promoted with no API
    /// call. If the password its user had before still logs in, it was not applied, and is
    /// set again. If neither shows within the verification timeout, its fate stays unknown. A
    /// login that fails for any reason but the database's refusal proves nothing.
    async fn settle(&mut self, verify: &Verify) -> Settled {
        let (account, pending) = (self.account.clone(), self.pending.clone());
        let before = self.file.latest_of(&pending.username).cloned();
        let mut patience = verify.patience();
        loop {
            let login = verify.login(&pending.username, &pending.password).await;
            if login == Login::Accepted {
                if !verify.checks_passwords(&pending.username).await {
                    tracing::warn!(account = %account.name, version = pending.version,
                        "{} accepts a password that was never set, so a login proves nothing there; the pending password will be set again",
                        verify.target());
                    self.count_verification(&Login::Error("no password check".into()));
                    self.audit.settled = Some(Settlement::Reapply);
                    return Settled::Unknown;
                }
                self.count_verification(&login);
                self.audit.settled = Some(Settlement::Login);
                return Settled::Live;
            }
            if let Some(before) = &before
                && verify.login(&before.username, &before.password).await == Login::Accepted
            {
                self.count_verification(&login);
                self.audit.settled = Some(Settlement::Reapply);
                tracing::info!(account = %account.name, version = pending.version,
                    "the pending password does not log in ({}) and the previous one does: re-applying it",
                    login.reason());
                return Settled::NotApplied;
            }
            if !patience.wait().await {
                self.count_verification(&login);
                tracing::warn!(account = %account.name, version = pending.version,
                    "a login cannot tell whether the pending password is live ({}); it will be set again",
                    login.reason());
                self.audit.settled = Some(Settlement::Reapply);
                return Settled::Unknown;
            }
        }
    }

    /// Whether the password the pending one replaces still logs in.
    async fn old_still_works(&self, verify: &Verify) -> bool {
        match self.file.latest_of(&self.pending.username) {
            Some(old) => verify.login(&old.username, &old.password).await == Login::Accepted,
            None => false,
        }
    }

    fn count_verification(&mut self, login: &Login) {
        self.report.verifications.push(login.verdict());
        self.audit.verification = Some(login.verdict());
    }

    async fn write_audit(&mut self, outcome: Outcome, error_code: Option<String>) {
        let record = &mut self.audit;
        record.time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        record.outcome = outcome;
        record.error_code = error_code;
        record.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = self.rotator.store.append_audit(record).await {
            tracing::error!(account = %self.account.name, "cannot write the audit log: {e}");
        }
    }

    fn alternating(&self) -> bool {
        matches!(self.account.strategy, Strategy::Alternating { .. })
    }

    fn current_user(&self) -> &str {
        self.file
            .current
            .as_ref()
            .map_or("no user", |c| c.username.as_str())
    }

    /// How the password was shown to be set, for the report.
    fn how(&self, applied: &Applied) -> String {
        match (applied, self.inherited || self.audit.settled.is_some()) {
            (Applied::Login, _) => {
                "settled by login: the password logs in, so no further API call".to_owned()
            }
            (Applied::Reply(id), true) => format!("a pending password re-applied (RequestId {id})"),
            (Applied::Reply(id), false) => format!("RequestId {id}"),
        }
    }
}

/// A new pending version for `account`: a new password from its policy, for the user the next
/// rotation sets, with a ClientToken of its own.
fn new_pending(account: &Account, file: &SecretFile) -> Result<Pending, String> {
    let password = account.policy.generate().map_err(|e| e.to_string())?;
    let client_token = client_token().map_err(|e| e.to_string())?;
    let current_user = file.current.as_ref().map(|c| c.username.as_str());
    Ok(Pending {
        version: file.latest_version() + 1,
        username: account.next_username(current_user).to_owned(),
        client_token,
        password,
        created_time: timestamp(SystemTime::now()),
    })
}

/// The report of an attempt the store refused before any API call.
fn refused(mut report: Report, error: &SinkError) -> Report {
    report.error_code = Some(error.code().to_owned());
    report.message = format!("refused, no API call made: {error}");
    report
}
