//! When each account is due, and the loop that starts rotations when they are.
//!
//! One due-time queue for every account, driven by one tokio timer: no job per account, no
//! channel that can drop activations, and no wall-clock polling, so tests run on tokio's paused
//! time. Cron expressions are evaluated in UTC by croner, the engine tokio-cron-scheduler uses.
//!
//! Rules (docs/configuration.md#schedules): an account with no current version, or with a pending one, is due at
//! start; `every` counts from the last success recorded in the sink; a schedule missed while the
//! daemon was down is caught up at start, spread over `jitter`; a failure is retried after
//! `retry_after_failure`, doubling up to the schedule's period. At most `max_concurrent`
//! rotations run at once, and one account never rotates twice at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Account, Schedule, UserKey};
use crate::metrics::Metrics;
use crate::password::Password;
use crate::random;
use crate::rotation::{Outcome, Report, Rotator};
use crate::sink::SecretFile;

/// Wall-clock time. `Tokio` follows tokio's clock, so paused-time tests move it too.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Tokio {
        wall: SystemTime,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `wall` now and advances with tokio's (possibly paused) time.
    pub fn tokio_at(wall: SystemTime) -> Clock {
        Clock::Tokio {
            wall,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Tokio { wall, start } => *wall + start.elapsed(),
        }
    }

    /// The tokio instant at which this clock reads `at`.
    fn instant(&self, at: SystemTime) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match at.duration_since(self.now()) {
            Ok(ahead) => now + ahead,
            Err(_) => now,
        }
    }
}

/// The next scheduled time strictly after `after`.
pub fn next_after(schedule: &Schedule, after: SystemTime) -> SystemTime {
    match schedule {
        Schedule::Every(period) => after + *period,
        // A cron that never fires again is treated as yearly rather than never.
        Schedule::Cron(cron) => cron
            .next_after(after)
            .unwrap_or(after + Duration::from_secs(365 * 86_400)),
    }
}

/// The schedule's period near `at`: the longest a failed account waits between retries.
fn period(schedule: &Schedule, at: SystemTime) -> Duration {
    match schedule {
        Schedule::Every(period) => *period,
        Schedule::Cron(_) => {
            let first = next_after(schedule, at);
            next_after(schedule, first)
                .duration_since(first)
                .unwrap_or(Duration::from_secs(86_400))
        }
    }
}

/// What the sink says about an account at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Initial {
    pub last_success: Option<SystemTime>,
    pub pending: bool,
}

impl Initial {
    /// What an account's secret file says; `None` for an account never written.
    pub fn of(file: Option<&SecretFile>) -> Initial {
        Initial {
            last_success: file.and_then(SecretFile::last_success),
            pending: file.is_some_and(|f| f.pending.is_some()),
        }
    }
}

/// The account's next scheduled time by the sink alone; `None` when it is due at start,
/// having never rotated or holding a pending password. It may lie in the past.
pub fn scheduled(account: &Account, initial: Initial) -> Option<SystemTime> {
    let last = initial.last_success.filter(|_| !initial.pending)?;
    Some(next_after(&account.schedule, last))
}

/// When an account is first due after start: now if it never rotated or has a pending
/// password; its next scheduled time otherwise, caught up (spread by `jitter`) if missed.
pub fn initial_due(account: &Account, initial: Initial, now: SystemTime) -> SystemTime {
    match scheduled(account, initial) {
        None => now,
        Some(at) if at <= now => now + random::jitter(account.jitter),
        Some(at) => at,
    }
}

/// How long to wait after the `failures`-th failure in a row.
pub fn retry_delay(account: &Account, failures: u32, now: SystemTime) -> Duration {
    let doubled = account
        .retry_after_failure
        .saturating_mul(1u32 << failures.saturating_sub(1).min(30));
    doubled.min(period(&account.schedule, now).max(account.retry_after_failure))
}

/// The longest wait before settling a pending password again: it may be the database's, so
/// it is not left for a whole period.
pub const PENDING_RETRY_CAP: Duration = Duration::from_secs(3600);

/// How long to wait after the `failures`-th failure in a row that left a pending password:
/// as [`retry_delay`], but never more than [`PENDING_RETRY_CAP`] (or `retry_after_failure`,
/// if that is longer).
pub fn pending_retry_delay(account: &Account, failures: u32, now: SystemTime) -> Duration {
    retry_delay(account, failures, now).min(PENDING_RETRY_CAP.max(account.retry_after_failure))
}

/// What a task does for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Rotate the password (and write the render files after a success).
    Rotate,
    /// Rewrite render files that are not what they should be, without rotating: after a
    /// render failure, and at start and reload.
    Render,
}

/// Something that rotates an account: the real [`Rotator`], or a stand-in in tests.
pub trait Rotate: Send + Sync + 'static {
    fn run(
        self: Arc<Self>,
        account: Arc<Account>,
        job: Job,
    ) -> Pin<Box<dyn Future<Output = Report> + Send>>;

    /// Records the password an account has today as its current version (`pwrotd adopt`).
    /// Called only while no task holds the account.
    fn adopt(
        self: Arc<Self>,
        account: Arc<Account>,
        password: Password,
    ) -> Pin<Box<dyn Future<Output = Result<Initial, String>> + Send>> {
        let _ = (account, password);
        Box::pin(async { Err("this rotator cannot adopt".into()) })
    }

    /// What the store says about an account, taking over the secret file of a renamed
    /// account that held the same database users first (`renamed_from` names the task that
    /// held them, if one just ended). Called only while no task holds any of its users.
    fn initial(&self, account: &Account, renamed_from: Option<&str>) -> Initial;
}

impl Rotate for Rotator {
    fn run(
        self: Arc<Self>,
        account: Arc<Account>,
        job: Job,
    ) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            match job {
                Job::Rotate => self.rotate(&account).await,
                Job::Render => self.rerender(&account).await,
            }
        })
    }

    fn initial(&self, account: &Account, renamed_from: Option<&str>) -> Initial {
        Rotator::initial(self, account, renamed_from)
    }

    fn adopt(
        self: Arc<Self>,
        account: Arc<Account>,
        password: Password,
    ) -> Pin<Box<dyn Future<Output = Result<Initial, String>> + Send>> {
        Box::pin(async move {
            Rotator::adopt(&self, &account, password)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A request to the scheduler.
pub enum Command {
    /// Rotate these accounts (all if `None`) now. With `reply`, the reports of those rotations
    /// are sent back once all of them finish.
    RotateNow {
        accounts: Option<Vec<String>>,
        reply: Option<oneshot::Sender<Vec<Report>>>,
    },
    /// Replace the accounts and the rotator (a config reload).
    Reload {
        accounts: Vec<Arc<Account>>,
        rotate: Arc<dyn Rotate>,
    },
    /// What the scheduler knows of every account now.
    Status {
        reply: oneshot::Sender<Vec<SlotStatus>>,
    },
    /// Record the password an account has today (`pwrotd adopt`), once no task holds it.
    /// `account` is the definition from the config file on disk, which may name an account
    /// the running config does not have yet.
    Adopt {
        account: Arc<Account>,
        password: Password,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What the scheduler knows of one account now, for `pwrotd status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotStatus {
    pub account: String,
    /// A rotation or a render runs now.
    pub in_flight: bool,
    /// Waits for a task of another name on the same database user to end.
    pub waiting: bool,
    /// When the daemon will next try to rotate (RFC 3339): a failing account's retry time,
    /// not its schedule.
    pub next_attempt: String,
    /// Failed rotations in a row.
    pub failures: u32,
    /// When render files that could not be written are tried again (RFC 3339).
    pub render_retry: Option<String>,
}

/// Called with every finished rotation (the demo prints them).
pub type ReportHook = Arc<dyn Fn(&Report) + Send + Sync>;

struct Slot {
    account: Arc<Account>,
    /// When the next rotation is due.
    due: SystemTime,
    /// When the render files are next checked and rewritten without a rotation.
    render_due: Option<SystemTime>,
    failures: u32,
    render_failures: u32,
    /// A task of this name runs (a rotation or a render).
    in_flight: bool,
    /// A task of another name holds one of this account's database users (a rename during a
    /// rotation): nothing starts until it ends, then the state is read from the store again.
    parked: bool,
    /// This name now stands for other database users than its running task's: when the task
    /// ends, the state is read from the store again rather than from the task's report.
    reinit: bool,
    /// The key under which this slot sits in the queue, if it does.
    queued: Option<SystemTime>,
    /// Rotate again as soon as the running rotation ends.
    rerun: bool,
    /// Requests waiting for the next rotation to start, and for the running one.
    waiting_next: Vec<u64>,
    waiting_running: Vec<u64>,
}

impl Slot {
    fn new(account: Arc<Account>) -> Slot {
        Slot {
            due: SystemTime::UNIX_EPOCH,
            render_due: None,
            account,
            failures: 0,
            render_failures: 0,
            in_flight: false,
            parked: false,
            reinit: false,
            queued: None,
            rerun: false,
            waiting_next: Vec::new(),
            waiting_running: Vec::new(),
        }
    }

    /// When this slot next needs a task; `None` while one runs or it is parked.
    fn wake(&self) -> Option<SystemTime> {
        if self.in_flight || self.parked {
            return None;
        }
        Some(self.render_due.map_or(self.due, |r| r.min(self.due)))
    }
}

/// A running task.
struct Task {
    name: String,
    job: Job,
    /// The database users it holds until it ends.
    users: Vec<UserKey>,
}

struct Waiting {
    reports: BTreeMap<String, Option<Report>>,
    reply: oneshot::Sender<Vec<Report>>,
}

/// The scheduling loop's state.
pub struct Scheduler {
    slots: BTreeMap<String, Slot>,
    /// The idle accounts by the time they next need a task: the next to start is the first.
    queue: BTreeSet<(SystemTime, String)>,
    rotate: Arc<dyn Rotate>,
    clock: Clock,
    max_concurrent: usize,
    tasks: JoinSet<Report>,
    running: HashMap<tokio::task::Id, Task>,
    /// The database users held by running tasks: one user, one task, whatever its name.
    busy: HashMap<UserKey, tokio::task::Id>,
    waiting: HashMap<u64, Waiting>,
    next_request: u64,
    metrics: Option<Arc<Metrics>>,
    on_report: Option<ReportHook>,
}

impl Scheduler {
    /// A scheduler for `accounts`, their state read from the store through `rotate`.
    pub fn new(
        accounts: Vec<Arc<Account>>,
        rotate: Arc<dyn Rotate>,
        clock: Clock,
        max_concurrent: usize,
    ) -> Scheduler {
        let mut scheduler = Scheduler {
            slots: BTreeMap::new(),
            queue: BTreeSet::new(),
            rotate,
            clock,
            max_concurrent: max_concurrent.max(1),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            busy: HashMap::new(),
            waiting: HashMap::new(),
            next_request: 0,
            metrics: None,
            on_report: None,
        };
        scheduler.replace_accounts(accounts);
        scheduler
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Scheduler {
        metrics
            .accounts
            .set(i64::try_from(self.slots.len()).unwrap_or(i64::MAX));
        for (name, slot) in &self.slots {
            metrics.add_account(&slot.account);
            metrics.set_next_rotation(name, slot.due);
        }
        self.metrics = Some(metrics);
        self
    }

    pub fn with_report_hook(mut self, hook: ReportHook) -> Scheduler {
        self.on_report = Some(hook);
        self
    }

    /// When each account is next due, for `status` and tests.
    pub fn due_times(&self) -> BTreeMap<String, SystemTime> {
        self.slots.iter().map(|(n, s)| (n.clone(), s.due)).collect()
    }

    /// Puts a slot in the queue under the time it next needs a task, or takes it out.
    fn requeue(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let wake = slot.wake();
        if slot.queued == wake {
            return;
        }
        if let Some(old) = slot.queued.take() {
            self.queue.remove(&(old, name.to_owned()));
        }
        if let Some(at) = wake {
            self.queue.insert((at, name.to_owned()));
        }
        slot.queued = wake;
    }

    /// Moves an account's rotation due time, keeping the queue and the metric in step.
    fn set_due(&mut self, name: &str, due: SystemTime) {
        if let Some(slot) = self.slots.get_mut(name) {
            slot.due = due;
        }
        self.requeue(name);
        if let Some(m) = &self.metrics {
            m.set_next_rotation(name, due);
        }
    }

    /// Reads an account's state from the store and schedules it from there: at start, for a
    /// new account, and once a parked or re-purposed one is free.
    fn reinit(&mut self, name: &str, renamed_from: Option<&str>) {
        let now = self.clock.now();
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let initial = self.rotate.initial(&slot.account, renamed_from);
        slot.parked = false;
        slot.reinit = false;
        slot.failures = 0;
        slot.render_failures = 0;
        slot.render_due = (!slot.account.render.is_empty()).then_some(now);
        // A request waiting for this account's next rotation is not lost to a reload.
        let requested = std::mem::take(&mut slot.rerun) || !slot.waiting_next.is_empty();
        let due = if requested {
            now
        } else {
            initial_due(&slot.account, initial, now)
        };
        self.set_due(name, due);
    }

    /// Whether a running task holds one of `account`'s database users, or its name (the
    /// secret file of that name).
    fn held(&self, account: &Account) -> bool {
        self.running.values().any(|t| t.name == account.name)
            || account.users().iter().any(|u| self.busy.contains_key(u))
    }

    fn replace_accounts(&mut self, accounts: Vec<Arc<Account>>) {
        let now = self.clock.now();
        let mut old = std::mem::take(&mut self.slots);
        let mut fresh = Vec::new();
        for account in accounts {
            let name = account.name.clone();
            match old.remove(&name) {
                Some(mut slot) if slot.account.users() == account.users() => {
                    let rescheduled = slot.account.schedule != account.schedule;
                    if slot.account.render != account.render && !account.render.is_empty() {
                        slot.render_due = Some(now);
                    }
                    slot.account = account;
                    self.slots.insert(name.clone(), slot);
                    if rescheduled && !self.slots[&name].in_flight {
                        fresh.push(name);
                    } else {
                        // A render entry added or changed: written at once.
                        self.requeue(&name);
                    }
                }
                // The same name for other database users: a new account. Its running task,
                // if any, keeps the name's file until it ends.
                Some(mut slot) => {
                    slot.account = account;
                    slot.reinit = slot.in_flight;
                    let idle = !slot.in_flight;
                    self.slots.insert(name.clone(), slot);
                    if idle {
                        fresh.push(name);
                    }
                }
                None => {
                    if let Some(m) = &self.metrics {
                        m.add_account(&account);
                    }
                    self.slots.insert(name.clone(), Slot::new(account));
                    fresh.push(name);
                }
            }
        }
        for (name, slot) in old {
            if let Some(queued) = slot.queued {
                self.queue.remove(&(queued, name.clone()));
            }
            if let Some(m) = &self.metrics {
                m.forget_account(&name);
            }
            for id in slot.waiting_next.into_iter().chain(slot.waiting_running) {
                self.deliver(id, &name, removed_report(&name));
            }
        }
        for name in fresh {
            if self.held(&self.slots[&name].account) {
                tracing::info!(account = %name, "waits for a running task of another name on the same database user");
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.parked = true;
                }
                self.requeue(&name);
            } else {
                self.reinit(&name, None);
            }
        }
        if let Some(m) = &self.metrics {
            m.accounts
                .set(i64::try_from(self.slots.len()).unwrap_or(i64::MAX));
        }
    }

    /// Runs until `shutdown` is cancelled, then lets running rotations finish for at most
    /// `grace` and abandons the rest (their pending passwords stay in the sink).
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let mut commands_open = true;
        loop {
            self.start_due();
            let mut wake = self.next_wake();
            if let Some(metrics) = &self.metrics {
                // Wake at least every heartbeat, so that /healthz can tell a stall.
                metrics.beat();
                let beat = tokio::time::Instant::now() + crate::metrics::HEARTBEAT;
                wake = Some(wake.map_or(beat, |w| w.min(beat)));
            }
            let sleep = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finished(done),
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.command(command).await,
                    None => commands_open = false,
                },
                () = sleep => {}
            }
        }
        if !self.tasks.is_empty() {
            tracing::info!(
                running = self.tasks.len(),
                ?grace,
                "waiting for running rotations"
            );
            let drain = async {
                while let Some(done) = self.tasks.join_next_with_id().await {
                    self.finished(done);
                }
            };
            if tokio::time::timeout(grace, drain).await.is_err() {
                tracing::warn!(
                    abandoned = self.tasks.len(),
                    "shutdown grace ran out; abandoned rotations keep their pending passwords"
                );
                self.tasks.abort_all();
            }
        }
    }

    /// Starts due tasks, earliest first, up to `max_concurrent` at once.
    fn start_due(&mut self) {
        let now = self.clock.now();
        while self.tasks.len() < self.max_concurrent {
            match self.queue.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            let Some((_, name)) = self.queue.pop_first() else {
                break;
            };
            let Some(slot) = self.slots.get(&name) else {
                continue;
            };
            let users = slot.account.users();
            let name_busy = self.running.values().any(|t| t.name == name);
            if name_busy || users.iter().any(|u| self.busy.contains_key(u)) {
                // Only a task of a name no longer configured can hold them (names are unique
                // per user in a config): wait for it, then read the store afresh.
                tracing::info!(account = %name, "waits for a running task of another name on the same database user");
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.queued = None;
                    slot.parked = true;
                }
                continue;
            }
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            slot.queued = None;
            slot.in_flight = true;
            let job = if slot.due <= now {
                slot.waiting_running = std::mem::take(&mut slot.waiting_next);
                Job::Rotate
            } else {
                Job::Render
            };
            let handle = self
                .tasks
                .spawn(self.rotate.clone().run(slot.account.clone(), job));
            for user in &users {
                self.busy.insert(user.clone(), handle.id());
            }
            self.running.insert(handle.id(), Task { name, job, users });
        }
    }

    /// When to wake for the next due account; `None` when only a finishing rotation can
    /// change anything.
    fn next_wake(&self) -> Option<tokio::time::Instant> {
        if self.tasks.len() >= self.max_concurrent {
            return None;
        }
        self.queue.first().map(|(due, _)| self.clock.instant(*due))
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, Report), tokio::task::JoinError>) {
        let (id, report) = match done {
            Ok((id, report)) => (id, report),
            Err(e) => {
                let task = self.running.get(&e.id());
                let name = task.map(|t| t.name.clone()).unwrap_or_default();
                let job = task.map_or(Job::Rotate, |t| t.job);
                // Not `{e}`: a JoinError shows the panic's message, which could hold a secret.
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                tracing::error!(account = %name, "the rotation task {what}; its pending password stays in the sink");
                let report = Report {
                    error_code: Some("InternalError".into()),
                    message: format!("the rotation task {what}"),
                    pending: true,
                    ..Report::new(&name, job)
                };
                (e.id(), report)
            }
        };
        let Some(task) = self.running.remove(&id) else {
            return;
        };
        for user in &task.users {
            if self.busy.get(user) == Some(&id) {
                self.busy.remove(user);
            }
        }
        // A slot of this name that is not in flight is not this task's: its account was
        // removed and a new one of the same name added meanwhile, which waited for this task.
        let own = self.slots.get(&task.name).is_some_and(|s| s.in_flight);
        self.unpark(&task.name);
        let now = self.clock.now();
        let name = task.name;
        let Some(slot) = self.slots.get_mut(&name).filter(|_| own) else {
            tracing::info!(account = %name, "a rotation finished for an account no longer configured");
            return;
        };
        slot.in_flight = false;
        if slot.reinit {
            let waiting = std::mem::take(&mut slot.waiting_running);
            self.reinit(&name, None);
            for id in waiting {
                self.deliver(id, &name, report.clone());
            }
            self.report(&report);
            return;
        }
        if report.render_failed {
            slot.render_failures += 1;
            let delay = retry_delay(&slot.account, slot.render_failures, now);
            slot.render_due = Some(now + delay);
        } else if report.job == Job::Render || report.outcome == Outcome::Success {
            slot.render_failures = 0;
            slot.render_due = None;
        }
        let due = match report.job {
            Job::Render => slot.due,
            Job::Rotate if report.outcome == Outcome::Success => {
                slot.failures = 0;
                // From the moment of success: the sink's `created_time` has one-second
                // precision and was taken before the API call, so counting from it would
                // fire early.
                next_after(
                    &slot.account.schedule,
                    report.last_success.map_or(now, |l| l.max(now)),
                )
            }
            Job::Rotate if report.pending => {
                slot.failures += 1;
                now + pending_retry_delay(&slot.account, slot.failures, now)
            }
            Job::Rotate => {
                slot.failures += 1;
                now + retry_delay(&slot.account, slot.failures, now)
            }
        };
        let due = if std::mem::take(&mut slot.rerun) {
            now
        } else {
            due
        };
        let waiting = if report.job == Job::Rotate {
            std::mem::take(&mut slot.waiting_running)
        } else {
            Vec::new()
        };
        self.set_due(&name, due);
        for id in waiting {
            self.deliver(id, &name, report.clone());
        }
        self.report(&report);
    }

    fn report(&self, report: &Report) {
        if let Some(hook) = &self.on_report {
            hook(report);
        }
    }

    /// Frees parked accounts whose database users no running task holds any more, now that
    /// the task of `ended` is over.
    fn unpark(&mut self, ended: &str) {
        let free: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.parked && !self.held(&s.account))
            .map(|(n, _)| n.clone())
            .collect();
        for name in free {
            self.reinit(&name, Some(ended));
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::RotateNow { accounts, reply } => {
                let names = accounts.unwrap_or_else(|| self.slots.keys().cloned().collect());
                let id = self.next_request;
                self.next_request += 1;
                if let Some(reply) = reply {
                    if names.is_empty() {
                        // Nothing to wait for: answered at once.
                        let _ = reply.send(Vec::new());
                        return;
                    }
                    self.waiting.insert(
                        id,
                        Waiting {
                            reports: names.iter().map(|n| (n.clone(), None)).collect(),
                            reply,
                        },
                    );
                }
                let now = self.clock.now();
                for name in names {
                    match self.slots.get_mut(&name) {
                        Some(slot) => {
                            slot.waiting_next.push(id);
                            if slot.in_flight || slot.parked {
                                slot.rerun = true;
                            } else {
                                self.set_due(&name, now);
                            }
                        }
                        None => self.deliver(id, &name, removed_report(&name)),
                    }
                }
            }
            Command::Reload { accounts, rotate } => {
                self.rotate = rotate;
                self.replace_accounts(accounts);
            }
            Command::Adopt {
                account,
                password,
                reply,
            } => {
                let _ = reply.send(self.adopt(&account, password).await);
            }
            Command::Status { reply } => {
                let rows = self
                    .slots
                    .iter()
                    .map(|(name, slot)| SlotStatus {
                        account: name.clone(),
                        in_flight: slot.in_flight,
                        waiting: slot.parked,
                        next_attempt: crate::sink::timestamp(slot.due),
                        failures: slot.failures,
                        render_retry: slot
                            .render_due
                            .filter(|_| slot.render_failures > 0)
                            .map(crate::sink::timestamp),
                    })
                    .collect();
                let _ = reply.send(rows);
            }
        }
    }

    /// `pwrotd adopt` through the daemon: refused while a task holds the account or one of
    /// its users; then scheduled from the adopted version, its render files checked at once.
    async fn adopt(&mut self, account: &Arc<Account>, password: Password) -> Result<(), String> {
        if self.held(account) {
            return Err(format!(
                "a rotation of {} or of one of its users is running; try again when it ends",
                account.name
            ));
        }
        match self.slots.get(&account.name) {
            Some(slot) if slot.account.users() != account.users() => {
                return Err(format!(
                    "the running config's {} rotates other users than the config file's; reload first",
                    account.name
                ));
            }
            Some(slot) if slot.parked => {
                return Err(format!(
                    "{} waits for a renamed account's task",
                    account.name
                ));
            }
            _ => {}
        }
        let initial = self.rotate.clone().adopt(account.clone(), password).await?;
        let now = self.clock.now();
        if let Some(slot) = self.slots.get_mut(&account.name) {
            slot.failures = 0;
            slot.render_due = Some(now);
            let due = initial_due(&slot.account, initial, now);
            self.set_due(&account.name, due);
        }
        Ok(())
    }

    fn deliver(&mut self, id: u64, account: &str, report: Report) {
        let Some(waiting) = self.waiting.get_mut(&id) else {
            return;
        };
        if let Some(slot) = waiting.reports.get_mut(account) {
            *slot = Some(report);
        }
        if waiting.reports.values().all(Option::is_some)
            && let Some(waiting) = self.waiting.remove(&id)
        {
            let reports = waiting.reports.into_values().flatten().collect();
            let _ = waiting.reply.send(reports);
        }
    }
}

fn removed_report(name: &str) -> Report {
    Report {
        error_code: Some("UnknownAccount".into()),
        message: "no such account in the running config".into(),
        ..Report::new(name, Job::Rotate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;
    use std::sync::Mutex;

    const DAY: Duration = Duration::from_secs(86_400);

    fn accounts(extra: &str) -> Vec<Arc<Account>> {
        let src = format!(
            "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\njitter = \"10m\"\nretry_after_failure = \"5m\"\n{extra}"
        );
        Config::parse(&src, Path::new("t.toml")).unwrap().accounts
    }

    fn account(name: &str, schedule: &str) -> String {
        format!(
            "[[account]]\nname = \"{name}\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-{name}\"\naccount_name = \"u\"\n{schedule}\n"
        )
    }

    /// Records when each rotation ran (by the test clock) and answers with a fixed outcome.
    struct Fake {
        clock: Clock,
        runs: Mutex<Vec<(String, SystemTime)>>,
        outcome: Mutex<Outcome>,
        hold: Duration,
        running: Mutex<(usize, usize)>,
        /// What the store says about each account.
        initials: Mutex<HashMap<String, Initial>>,
        /// Every `initial` call: the account and the name it may have been renamed from.
        asked: Mutex<Vec<(String, Option<String>)>>,
        /// Tasks running per database user now, and the most ever at once.
        per_user: Mutex<HashMap<UserKey, (usize, usize)>>,
        /// Every task: name, job, start and end.
        tasks: Mutex<Vec<(String, Job, SystemTime, SystemTime)>>,
    }

    impl Fake {
        fn new(clock: Clock) -> Arc<Fake> {
            Arc::new(Fake {
                clock,
                runs: Mutex::default(),
                outcome: Mutex::new(Outcome::Success),
                hold: Duration::ZERO,
                running: Mutex::default(),
                initials: Mutex::default(),
                asked: Mutex::default(),
                per_user: Mutex::default(),
                tasks: Mutex::default(),
            })
        }

        /// The most tasks that ever ran at once on one database user.
        fn most_per_user(&self) -> usize {
            let per_user = self.per_user.lock().unwrap();
            per_user.values().map(|(_, most)| *most).max().unwrap_or(0)
        }

        /// Records what the store says about each account, and returns the accounts.
        fn seed(&self, accounts: Vec<(Arc<Account>, Initial)>) -> Vec<Arc<Account>> {
            let mut initials = self.initials.lock().unwrap();
            accounts
                .into_iter()
                .map(|(account, initial)| {
                    initials.insert(account.name.clone(), initial);
                    account
                })
                .collect()
        }

        fn runs(&self) -> Vec<(String, SystemTime)> {
            self.runs.lock().unwrap().clone()
        }
    }

    impl Rotate for Fake {
        fn initial(&self, account: &Account, renamed_from: Option<&str>) -> Initial {
            self.asked
                .lock()
                .unwrap()
                .push((account.name.clone(), renamed_from.map(str::to_owned)));
            self.initials
                .lock()
                .unwrap()
                .get(&account.name)
                .copied()
                .unwrap_or_default()
        }

        fn run(
            self: Arc<Self>,
            account: Arc<Account>,
            job: Job,
        ) -> Pin<Box<dyn Future<Output = Report> + Send>> {
            Box::pin(async move {
                let now = self.clock.now();
                if job == Job::Rotate {
                    self.runs.lock().unwrap().push((account.name.clone(), now));
                }
                {
                    let mut r = self.running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                    let mut per_user = self.per_user.lock().unwrap();
                    for user in account.users() {
                        let entry = per_user.entry(user).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(entry.0);
                    }
                }
                tokio::time::sleep(self.hold).await;
                self.running.lock().unwrap().0 -= 1;
                for user in account.users() {
                    if let Some(entry) = self.per_user.lock().unwrap().get_mut(&user) {
                        entry.0 -= 1;
                    }
                }
                self.tasks
                    .lock()
                    .unwrap()
                    .push((account.name.clone(), job, now, self.clock.now()));
                let outcome = *self.outcome.lock().unwrap();
                Report {
                    outcome,
                    version: Some(1),
                    last_success: (outcome == Outcome::Success).then_some(now),
                    ..Report::new(&account.name, job)
                }
            })
        }
    }

    fn start(
        scheduler: Scheduler,
    ) -> (
        mpsc::Sender<Command>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let task = tokio::spawn(scheduler.run(rx, stop.clone(), Duration::from_secs(5)));
        (tx, stop, task)
    }

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_30_day_every_fires_on_day_30_counted_from_the_last_success() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Fake::new(clock);
        let last = now - 10 * DAY;
        let accounts = accounts(&account("a", "every = \"30d\""));
        let scheduler = Scheduler::new(
            fake.seed(vec![(
                accounts[0].clone(),
                Initial {
                    last_success: Some(last),
                    pending: false,
                },
            )]),
            fake.clone(),
            clock,
            4,
        );
        assert_eq!(
            scheduler.due_times()["a"],
            last + 30 * DAY,
            "a restart does not reset `every`"
        );
        let (_tx, stop, task) = start(scheduler);

        tokio::time::sleep(20 * DAY - Duration::from_secs(1)).await;
        assert!(fake.runs().is_empty(), "fired early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.runs(), vec![("a".to_owned(), last + 30 * DAY)]);
        tokio::time::sleep(30 * DAY).await;
        assert_eq!(fake.runs().len(), 2);
        assert_eq!(fake.runs()[1].1, last + 60 * DAY);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cron_schedule_fires_at_its_times_in_utc() {
        let now = at("2026-11-23T12:00:00Z"); // a Monday
        let clock = Clock::tokio_at(now);
        let fake = Fake::new(clock);
        let accounts = accounts(&account("c", "cron = \"0 0 3 * * Sun\""));
        let last = at("2026-11-22T03:00:00Z");
        let scheduler = Scheduler::new(
            fake.seed(vec![(
                accounts[0].clone(),
                Initial {
                    last_success: Some(last),
                    pending: false,
                },
            )]),
            fake.clone(),
            clock,
            4,
        );
        let (_tx, stop, task) = start(scheduler);
        tokio::time::sleep(15 * DAY).await;
        let times: Vec<SystemTime> = fake.runs().into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            times,
            vec![at("2026-11-29T03:00:00Z"), at("2026-12-06T03:00:00Z")]
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn missed_runs_are_caught_up_at_start_within_jitter_and_new_accounts_rotate_at_once() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Fake::new(clock);
        let accounts = accounts(&format!(
            "{}{}{}{}",
            account("every", "every = \"30d\""),
            account("cron", "cron = \"0 0 3 * * *\""),
            account("new", "every = \"30d\""),
            account("pending", "every = \"30d\""),
        ));
        let down_since = now - 40 * DAY;
        let initial = |name: &str| match name {
            "new" => Initial::default(),
            "pending" => Initial {
                last_success: Some(now - DAY),
                pending: true,
            },
            _ => Initial {
                last_success: Some(down_since),
                pending: false,
            },
        };
        let scheduler = Scheduler::new(
            fake.seed(
                accounts
                    .iter()
                    .map(|a| (a.clone(), initial(&a.name)))
                    .collect(),
            ),
            fake.clone(),
            clock,
            4,
        );
        let (_tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first: Vec<String> = fake.runs().into_iter().map(|(n, _)| n).collect();
        assert!(
            first.contains(&"new".to_owned()) && first.contains(&"pending".to_owned()),
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_secs(600)).await;
        let runs = fake.runs();
        for name in ["every", "cron"] {
            let (_, when) = runs.iter().find(|(n, _)| n == name).expect("caught up");
            let delay = when.duration_since(now).unwrap();
            assert!(
                delay <= Duration::from_secs(600),
                "{name} caught up after {delay:?}"
            );
        }
        assert_eq!(
            runs.len(),
            4,
            "each missed schedule collapses into one catch-up run"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_with_doubling_delays_capped_at_the_period() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Fake::new(clock);
        *fake.outcome.lock().unwrap() = Outcome::Failure;
        let accounts = accounts(&account("f", "every = \"1h\""));
        let scheduler = Scheduler::new(
            fake.seed(vec![(accounts[0].clone(), Initial::default())]),
            fake.clone(),
            clock,
            4,
        );
        let (_tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
        let gaps: Vec<u64> = fake
            .runs()
            .windows(2)
            .map(|w| w[1].1.duration_since(w[0].1).unwrap().as_secs() / 60)
            .collect();
        assert_eq!(&gaps[..5], &[5, 10, 20, 40, 60], "minutes between retries");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn max_concurrent_bounds_rotations_and_requests_get_their_reports() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Arc::new(Fake {
            hold: Duration::from_secs(10),
            ..Arc::into_inner(Fake::new(clock)).unwrap()
        });
        let list: String = (0..10)
            .map(|i| account(&format!("a{i}"), "every = \"30d\""))
            .collect();
        let accounts = accounts(&list);
        let scheduler = Scheduler::new(
            fake.seed(
                accounts
                    .iter()
                    .map(|a| (a.clone(), Initial::default()))
                    .collect(),
            ),
            fake.clone(),
            clock,
            3,
        );
        let (tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(1)).await;
        // a0 is running: asking for it now queues exactly one more rotation after this one.
        let (reply, answer) = oneshot::channel();
        tx.send(Command::RotateNow {
            accounts: Some(vec!["a0".into(), "ghost".into()]),
            reply: Some(reply),
        })
        .await
        .unwrap();
        let reports = tokio::time::timeout(Duration::from_secs(120), answer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reports.len(), 2);
        assert!(
            reports
                .iter()
                .any(|r| r.account == "ghost" && r.outcome == Outcome::Failure)
        );
        tokio::time::sleep(Duration::from_secs(120)).await;
        let runs = fake.runs();
        assert_eq!(runs.iter().filter(|(n, _)| n == "a0").count(), 2);
        assert_eq!(runs.len(), 11);
        assert_eq!(
            fake.running.lock().unwrap().1,
            3,
            "never more than max_concurrent at once"
        );
        stop.cancel();
        task.await.unwrap();
    }

    fn on_one_user(name: &str) -> String {
        format!(
            "[[account]]\nname = \"{name}\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-shared\"\naccount_name = \"u\"\nevery = \"30d\"\n"
        )
    }

    /// A reload that renames an account while its rotation runs: the new name waits for the
    /// old task to end, then takes over its state; one database user never has two writers.
    #[tokio::test(start_paused = true)]
    async fn a_rename_during_a_rotation_waits_for_the_old_task() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Arc::new(Fake {
            hold: Duration::from_secs(10),
            ..Arc::into_inner(Fake::new(clock)).unwrap()
        });
        let old = accounts(&on_one_user("old"));
        let scheduler = Scheduler::new(
            fake.seed(vec![(old[0].clone(), Initial::default())]),
            fake.clone(),
            clock,
            4,
        );
        let (tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.runs().len(), 1, "the old name rotates at start");

        // Renamed while it runs. The store has no file for the new name yet.
        let renamed = accounts(&on_one_user("new"));
        tx.send(Command::Reload {
            accounts: renamed,
            rotate: fake.clone(),
        })
        .await
        .unwrap();
        // Once the old task has written its file, the new name finds it with a success.
        fake.initials.lock().unwrap().insert(
            "new".into(),
            Initial {
                last_success: Some(now),
                pending: false,
            },
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.most_per_user(), 1, "two tasks on one database user");
        assert_eq!(
            fake.asked.lock().unwrap().last(),
            Some(&("new".to_owned(), Some("old".to_owned()))),
            "the new name reads the store once the old task is over, knowing its old name"
        );
        let runs = fake.runs();
        assert_eq!(
            runs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["old"],
            "the renamed account keeps its schedule: no rotation on rename"
        );
        stop.cancel();
        task.await.unwrap();
    }

    /// The same name for another database user: the new account waits for the old task,
    /// which keeps the name's file until it ends.
    #[tokio::test(start_paused = true)]
    async fn a_name_given_to_another_user_waits_for_its_old_task() {
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Arc::new(Fake {
            hold: Duration::from_secs(10),
            ..Arc::into_inner(Fake::new(clock)).unwrap()
        });
        let first = accounts(&on_one_user("a"));
        let scheduler = Scheduler::new(
            fake.seed(vec![(first[0].clone(), Initial::default())]),
            fake.clone(),
            clock,
            4,
        );
        let (tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let other =
            accounts(&on_one_user("a").replace("account_name = \"u\"", "account_name = \"v\""));
        tx.send(Command::Reload {
            accounts: other,
            rotate: fake.clone(),
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let tasks = fake.tasks.lock().unwrap().clone();
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        assert!(
            tasks[1].2 >= tasks[0].3,
            "the name's second task started before its first ended: {tasks:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    /// A render failure is retried as a render, with backoff, and never as a rotation.
    #[tokio::test(start_paused = true)]
    async fn a_render_failure_is_retried_as_a_render() {
        struct Renders {
            clock: Clock,
            jobs: Mutex<Vec<(Job, SystemTime)>>,
            fail_renders: Mutex<bool>,
        }
        impl Rotate for Renders {
            fn initial(&self, _: &Account, _: Option<&str>) -> Initial {
                Initial::default()
            }
            fn run(
                self: Arc<Self>,
                account: Arc<Account>,
                job: Job,
            ) -> Pin<Box<dyn Future<Output = Report> + Send>> {
                Box::pin(async move {
                    let now = self.clock.now();
                    self.jobs.lock().unwrap().push((job, now));
                    Report {
                        outcome: Outcome::Success,
                        last_success: Some(now),
                        render_failed: *self.fail_renders.lock().unwrap(),
                        ..Report::new(&account.name, job)
                    }
                })
            }
        }
        let now = at("2026-11-23T00:00:00Z");
        let clock = Clock::tokio_at(now);
        let fake = Arc::new(Renders {
            clock,
            jobs: Mutex::default(),
            fail_renders: Mutex::new(true),
        });
        let list = accounts(&account("r", "every = \"30d\"").replace(
            "account_name = \"u\"",
            "account_name = \"u\"\nrender = [{ format = \"raw\", path = \"/nonexistent/r.pw\" }]",
        ));
        let scheduler = Scheduler::new(list, fake.clone(), clock, 4);
        let (_tx, stop, task) = start(scheduler);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        *fake.fail_renders.lock().unwrap() = false;
        tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
        let jobs = fake.jobs.lock().unwrap().clone();
        let rotations = jobs.iter().filter(|(j, _)| *j == Job::Rotate).count();
        assert_eq!(rotations, 1, "render failures caused rotations: {jobs:?}");
        let renders: Vec<u64> = jobs
            .iter()
            .filter(|(j, _)| *j == Job::Render)
            .map(|(_, t)| t.duration_since(now).unwrap().as_secs() / 60)
            .collect();
        // The rotation at start rendered and failed; renders follow after 5, 10, 20 and 40
        // minutes (retry_after_failure, doubling). The last one succeeds: nothing more.
        assert_eq!(renders, [5, 15, 35, 75], "minutes after start");
        stop.cancel();
        task.await.unwrap();
    }
}
