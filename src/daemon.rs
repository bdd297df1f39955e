//! `pwrotd run`: the state lock, signals, reload, shutdown, systemd notify, and the request
//! queue through which `pwrotd rotate` asks a running daemon to rotate.
//!
//! Signals: `SIGHUP` reloads the config (an invalid one keeps the old); `SIGUSR1` rotates the
//! accounts queued under `state_dir/requests/`, or every account if none are queued;
//! `SIGTERM`/`SIGINT` stop scheduling and let running rotations finish within `shutdown_grace`.
//! Only one process may hold the lock on a state directory, so there is never a second writer.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cloud::{Client, CredentialSource};
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::random;
use crate::rotation::{Outcome, Report, Rotator};
use crate::scheduler::{Clock, Command, Job, ReportHook, Scheduler};
use crate::sink::{self, Sink};

/// Why the daemon (or an in-process rotation) could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another pwrotd {role} (pid {pid}) holds the lock on {dir}")]
    Locked {
        dir: PathBuf,
        pid: u32,
        role: String,
    },
    #[error("{0}")]
    Sink(#[from] sink::SinkError),
    #[error("{0}")]
    Setup(String),
}

/// The exclusive lock on a state directory, held for the life of the value. The lock file
/// names the holder's pid and role, so that `pwrotd rotate` knows whom to signal.
#[derive(Debug)]
pub struct StateLock {
    file: File,
}

/// Who holds a state lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub role: String,
}

impl StateLock {
    /// Takes the lock on `state_dir/pwrotd.lock` (creating the directory, 0700, if needed), or
    /// says who holds it.
    pub fn acquire(state_dir: &Path, role: &str) -> Result<StateLock, DaemonError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| {
                DaemonError::Setup(format!("cannot create {}: {e}", state_dir.display()))
            })?;
        let path = state_dir.join("pwrotd.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| DaemonError::Setup(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).unwrap_or(Holder {
                    pid: 0,
                    role: "process".into(),
                });
                return Err(DaemonError::Locked {
                    dir: state_dir.to_owned(),
                    pid: holder.pid,
                    role: holder.role,
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(DaemonError::Setup(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        let mut lock = StateLock { file };
        lock.announce(role)?;
        Ok(lock)
    }

    /// Writes this process's pid and role into the lock file.
    fn announce(&mut self, role: &str) -> Result<(), DaemonError> {
        let text = format!("{} {role}\n", std::process::id());
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())?;
            file.sync_data()
        };
        write(&mut self.file)
            .map_err(|e| DaemonError::Setup(format!("cannot write the lock file: {e}")))
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let mut words = text.split_whitespace();
    Some(Holder {
        pid: words.next()?.parse().ok()?,
        role: words.next()?.to_owned(),
    })
}

/// A rotation request queued for the daemon by `pwrotd rotate`.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// `None` for every account.
    accounts: Option<Vec<String>>,
}

/// One line of a rotation's result, as the daemon hands it back to `pwrotd rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportLine {
    pub account: String,
    pub outcome: String,
    pub version: Option<u64>,
    pub error_code: Option<String>,
    pub message: String,
    /// A render file could not be written, though the rotation stands.
    #[serde(default)]
    pub render_failed: bool,
}

impl From<&Report> for ReportLine {
    fn from(r: &Report) -> ReportLine {
        ReportLine {
            account: r.account.clone(),
            outcome: r.outcome.as_str().to_owned(),
            version: r.version,
            error_code: r.error_code.clone(),
            message: r.message.clone(),
            render_failed: r.render_failed,
        }
    }
}

impl ReportLine {
    /// Whether the rotation succeeded and every render file was written.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Success.as_str() && !self.render_failed
    }
}

fn requests_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("requests")
}

/// Builds the client and rotator a config calls for.
pub fn rotator(
    config: &Config,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
) -> Result<Rotator, DaemonError> {
    let credentials = CredentialSource::discover(&config.cloud.credentials)
        .map_err(|e| DaemonError::Setup(format!("credentials: {e}")))?;
    tracing::info!(origin = credentials.origin, "credentials found");
    let observed = metrics.clone();
    let client = Client::new(config.cloud.client.clone(), credentials)
        .map_err(DaemonError::Setup)?
        .with_observer(Arc::new(move |action, code| {
            observed
                .api_requests
                .with_label_values(&[action, code])
                .inc();
        }));
    Ok(Rotator::new(
        Arc::new(client),
        sink,
        metrics,
        &config.accounts,
    ))
}

/// How `run` is started.
pub struct RunOptions {
    pub config: Config,
    /// Cancelled by the caller to stop the daemon (the signals cancel it too).
    pub shutdown: CancellationToken,
    /// Called with every finished rotation.
    pub on_report: Option<ReportHook>,
    /// A bound metrics listener; by default `daemon.metrics_listen` is bound.
    pub metrics_listener: Option<TcpListener>,
    /// Exit after every account has rotated once (the demo's `--once`).
    pub once: bool,
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Runs the daemon until SIGTERM, SIGINT or `options.shutdown`.
pub async fn run(mut options: RunOptions) -> Result<(), DaemonError> {
    let config = options.config.clone();
    let state_dir = config.daemon.state_dir.clone();
    let lock = StateLock::acquire(&state_dir, "daemon-starting")?;
    let sink = Arc::new(Sink::open(&state_dir)?);
    let requests = requests_dir(&state_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&requests)
        .map_err(|e| DaemonError::Setup(format!("cannot create {}: {e}", requests.display())))?;

    let setup =
        |e: std::io::Error| DaemonError::Setup(format!("cannot install signal handlers: {e}"));
    let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(setup)?;
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    // Only now, with SIGUSR1 handled, may `pwrotd rotate` signal this process.
    let mut lock = lock;
    lock.announce("daemon")?;

    let metrics = Metrics::new();
    let rotator = Arc::new(rotator(&config, sink.clone(), metrics.clone())?);
    let total = config.accounts.len();
    let (once_tx, mut once_rx) = mpsc::unbounded_channel::<()>();
    let user_hook = options.on_report.take();
    let hook: ReportHook = Arc::new(move |report: &Report| {
        if let Some(hook) = &user_hook {
            hook(report);
        }
        if report.job == Job::Rotate {
            let _ = once_tx.send(());
        }
    });
    let scheduler = Scheduler::new(
        config.accounts.clone(),
        rotator,
        Clock::System,
        config.daemon.max_concurrent,
    )
    .with_metrics(metrics.clone())
    .with_report_hook(hook);

    let stop_metrics = CancellationToken::new();
    let listener = match options.metrics_listener.take() {
        Some(l) => Some(l),
        None => match config.daemon.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                DaemonError::Setup(format!("cannot listen on {addr} for metrics: {e}"))
            })?),
            None => None,
        },
    };
    if let Some(listener) = listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            stop_metrics.clone(),
        ));
    }

    let (commands, command_rx) = mpsc::channel(64);
    let stop_scheduler = CancellationToken::new();
    let mut scheduler_task = tokio::spawn(scheduler.run(
        command_rx,
        stop_scheduler.clone(),
        config.daemon.shutdown_grace,
    ));
    metrics.healthy.store(true, Ordering::Relaxed);
    notify(sd_notify::NotifyState::Ready);
    tracing::info!(accounts = total, state_dir = %state_dir.display(), "pwrotd is running");

    let mut watchdog = sd_notify::watchdog_enabled().map(|usec| tokio::time::interval(usec / 2));
    let mut config = config;
    let mut finished = 0usize;
    loop {
        let tick = async {
            match watchdog.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = options.shutdown.cancelled() => break,
            _ = hup.recv() => {
                notify(sd_notify::NotifyState::Reloading);
                config = reload(config, &sink, &metrics, &commands).await;
                notify(sd_notify::NotifyState::Ready);
            }
            _ = usr1.recv() => take_requests(&requests, &commands).await,
            Some(()) = once_rx.recv() => {
                finished += 1;
                if options.once && finished >= total {
                    break;
                }
            }
            result = &mut scheduler_task => {
                metrics.healthy.store(false, Ordering::Relaxed);
                return Err(DaemonError::Setup(format!("the scheduler stopped unexpectedly: {result:?}")));
            }
            () = tick => notify(sd_notify::NotifyState::Watchdog),
        }
    }

    notify(sd_notify::NotifyState::Stopping);
    tracing::info!(grace = ?config.daemon.shutdown_grace, "stopping");
    metrics.healthy.store(false, Ordering::Relaxed);
    stop_scheduler.cancel();
    if let Err(e) = scheduler_task.await {
        tracing::error!("the scheduler ended badly: {e}");
    }
    stop_metrics.cancel();
    drop(lock);
    Ok(())
}

/// SIGHUP: loads the config again; on any problem keeps the running one.
async fn reload(
    old: Config,
    sink: &Arc<Sink>,
    metrics: &Arc<Metrics>,
    commands: &mpsc::Sender<Command>,
) -> Config {
    let result = Config::load(&old.path).and_then(|new| {
        if new.daemon.state_dir != old.daemon.state_dir {
            return Err(crate::config::ConfigError {
                path: new.path.clone(),
                problems: vec![crate::config::Problem {
                    line: 0,
                    key: "daemon.state_dir".into(),
                    message: "cannot change while running; restart pwrotd".into(),
                }],
            });
        }
        Ok(new)
    });
    let new = match result {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("config reload failed, keeping the running config: {e}");
            metrics.config_reloads.with_label_values(&["failure"]).inc();
            return old;
        }
    };
    if new.daemon.metrics_listen != old.daemon.metrics_listen {
        tracing::warn!("daemon.metrics_listen changes take effect at the next restart");
    }
    match rotator(&new, sink.clone(), metrics.clone()) {
        Ok(rotator) => {
            let _ = commands
                .send(Command::Reload {
                    accounts: new.accounts.clone(),
                    rotate: Arc::new(rotator),
                })
                .await;
            metrics.config_reloads.with_label_values(&["success"]).inc();
            tracing::info!(accounts = new.accounts.len(), "config reloaded");
            new
        }
        Err(e) => {
            tracing::error!("config reload failed, keeping the running config: {e}");
            metrics.config_reloads.with_label_values(&["failure"]).inc();
            old
        }
    }
}

/// SIGUSR1: queues every request file; with none, rotates every account.
async fn take_requests(dir: &Path, commands: &mpsc::Sender<Command>) {
    let mut found = false;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries.flatten().collect::<Vec<_>>(),
        Err(e) => {
            tracing::error!("cannot read {}: {e}", dir.display());
            Vec::new()
        }
    };
    for entry in entries {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".request"))
            .map(str::to_owned)
        else {
            continue;
        };
        found = true;
        let request: Option<Request> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let _ = fs::remove_file(&path);
        let Some(request) = request else {
            tracing::warn!("ignoring an unreadable request {}", path.display());
            continue;
        };
        tracing::info!(request = %id, accounts = ?request.accounts, "rotation requested");
        let (reply, answer) = tokio::sync::oneshot::channel();
        if commands
            .send(Command::RotateNow {
                accounts: request.accounts,
                reply: Some(reply),
            })
            .await
            .is_err()
        {
            return;
        }
        let dir = dir.to_owned();
        tokio::spawn(async move {
            let Ok(reports) = answer.await else { return };
            let lines: Vec<ReportLine> = reports.iter().map(ReportLine::from).collect();
            let body = serde_json::to_vec(&lines).unwrap_or_default();
            if let Err(e) = sink::write_atomic(&dir, &format!("{id}.result"), &body, 0o600) {
                tracing::error!("cannot write the result of request {id}: {e}");
            }
        });
    }
    if !found {
        tracing::info!("SIGUSR1: rotating every account now");
        let _ = commands
            .send(Command::RotateNow {
                accounts: None,
                reply: None,
            })
            .await;
    }
}

/// `pwrotd rotate` while a daemon holds the lock: queue the request, signal the daemon, and
/// wait (at most `wait`) for its result.
pub fn request_from_daemon(
    state_dir: &Path,
    holder: &Holder,
    accounts: Option<Vec<String>>,
    wait: Duration,
) -> Result<Vec<ReportLine>, DaemonError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    if holder.role != "daemon" {
        return Err(DaemonError::Setup(format!(
            "another pwrotd {} (pid {}) holds the lock on {}; try again when it ends",
            holder.role,
            holder.pid,
            state_dir.display()
        )));
    }
    let dir = requests_dir(state_dir);
    let id = random::hex_token::<8>().map_err(|e| DaemonError::Setup(e.to_string()))?;
    let body =
        serde_json::to_vec(&Request { accounts }).map_err(|e| DaemonError::Setup(e.to_string()))?;
    sink::write_atomic(&dir, &format!("{id}.request"), &body, 0o600)?;
    let pid = Pid::from_raw(
        i32::try_from(holder.pid)
            .map_err(|_| DaemonError::Setup("bad pid in the lock file".into()))?,
    );
    kill(pid, Signal::SIGUSR1)
        .map_err(|e| DaemonError::Setup(format!("cannot signal the daemon (pid {pid}): {e}")))?;
    let result = dir.join(format!("{id}.result"));
    let started = std::time::Instant::now();
    loop {
        if let Ok(bytes) = fs::read(&result) {
            let _ = fs::remove_file(&result);
            return serde_json::from_slice(&bytes).map_err(|e| {
                DaemonError::Setup(format!("unreadable result from the daemon: {e}"))
            });
        }
        if kill(pid, None).is_err() {
            return Err(DaemonError::Setup(format!(
                "the daemon (pid {pid}) exited before answering"
            )));
        }
        if started.elapsed() > wait {
            let _ = fs::remove_file(dir.join(format!("{id}.request")));
            return Err(DaemonError::Setup(format!(
                "no answer from the daemon within {}; the rotations may still complete (see pwrotd status)",
                humantime::format_duration(wait)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
