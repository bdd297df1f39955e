//! `pwrotd run`: the state lock, signals, reload, shutdown, systemd notify, and the control
//! socket through which `pwrotd rotate` and `pwrotd status` reach a running daemon.
//!
//! Signals: `SIGHUP` reloads the config (an invalid one keeps the old); `SIGUSR1` rotates every
//! account; `SIGTERM`/`SIGINT` stop scheduling and let running rotations finish within
//! `shutdown_grace`. Only one process may hold the lock on a state directory, so there is
//! never a second writer.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use secrecy::ExposeSecret;

use crate::cloud::client::Gate;
use crate::cloud::{Client, Clients, CredentialSource};
use crate::cluster::lease::Lease;
use crate::cluster::mirror::Mirror;
use crate::cluster::store::{Shared, Term};
use crate::cluster::{Cluster, NewRotator};
use crate::config::{Cloud, ClusterConfig, Config, StoreConfig, profile_table};
use crate::control;
use crate::hooks::Hooks;
use crate::metrics::{self, Metrics};
use crate::rotation::{Report, Rotator};
use crate::scheduler::{Clock, Command, Job, ReportHook, Rotate, Scheduler};
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
    /// Takes the lock on `state_dir/pwrotd.lock`, or says who holds it. The state directory
    /// is checked first (created 0700 if missing; refused if others can enter it), and the
    /// lock file is opened without following a symbolic link.
    pub fn acquire(state_dir: &Path, role: &str) -> Result<StateLock, DaemonError> {
        sink::private_dir(state_dir)?;
        let path = state_dir.join("pwrotd.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| DaemonError::Setup(format!("cannot open {}: {e}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(|e| DaemonError::Setup(format!("cannot stat {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(sink::SinkError::NotAFile { path }.into());
        }
        sink::hand_over(&file, state_dir)
            .map_err(|e| DaemonError::Setup(format!("cannot chown {}: {e}", path.display())))?;
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

/// Builds the clients and rotator a config calls for.
pub fn rotator(
    config: &Config,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    hooks: Arc<Hooks>,
) -> Result<Rotator, DaemonError> {
    let clients = clients(config, &metrics, None)?;
    Ok(Rotator::new(Arc::new(clients), sink, metrics, &config.accounts).with_hooks(hooks))
}

/// Builds a client for each profile an account of `config` calls through
/// ([`profile_client`]), each asking `gate` before every attempt if given. A profile no
/// account names is not built: its credentials are never looked for. One that cannot be built
/// fails the whole: the start, a reload (which keeps the running config), or in cluster mode
/// the term, so that a replica missing a file steps aside for one that has it. Only once every
/// client is built are the credential series of `metrics` set up, for the profiles whose
/// credentials are temporary, and the others' forgotten.
pub fn clients(
    config: &Config,
    metrics: &Arc<Metrics>,
    gate: Option<Gate>,
) -> Result<Clients, DaemonError> {
    let mut built = Vec::new();
    for (profile, cloud) in config.profiles_in_use() {
        let client = profile_client(profile, cloud, metrics).map_err(DaemonError::Setup)?;
        built.push((profile, client));
    }
    let temporary: Vec<&str> = built
        .iter()
        .filter(|(_, c)| c.credentials().is_temporary())
        .map(|(profile, _)| *profile)
        .collect();
    metrics.keep_credential_profiles(&temporary);
    let mut clients = Clients::default();
    for (profile, client) in built {
        if client.credentials().is_temporary() {
            client
                .credentials()
                .observe(metrics.credential_observer(profile));
        }
        let client = match &gate {
            Some(gate) => client.with_gate(gate.clone()),
            None => client,
        };
        clients = clients.with(profile, client);
    }
    Ok(clients)
}

/// The client of one profile: the credentials its table names, its settings, counting
/// requests in `metrics`. Its credential refreshes are reported once [`clients`] has built
/// every profile's. The error names the profile's table.
pub fn profile_client(
    profile: &str,
    cloud: &Cloud,
    metrics: &Arc<Metrics>,
) -> Result<Client, String> {
    let table = profile_table(profile);
    let credentials = CredentialSource::discover(&cloud.credentials)
        .map_err(|e| format!("{table}.credentials: {e}"))?;
    tracing::info!(
        profile,
        origin = credentials.origin,
        source = credentials.describe(),
        "credentials found"
    );
    let observed = metrics.clone();
    Ok(Client::new(cloud.client.clone(), credentials)
        .map_err(|e| format!("{table}: {e}"))?
        .with_observer(Arc::new(move |action, code| {
            observed
                .api_requests
                .with_label_values(&[action, code])
                .inc();
        })))
}

/// Builds a scheduler from a config's accounts and a rotator, counting in `metrics` and
/// telling `hook` of every report: the daemon's, or a cluster term's.
fn scheduler_factory(
    metrics: Arc<Metrics>,
    hook: ReportHook,
) -> impl Fn(&Config, Arc<dyn Rotate>) -> Scheduler + Send + Sync + 'static {
    move |config: &Config, rotate: Arc<dyn Rotate>| {
        Scheduler::new(
            config.accounts.clone(),
            rotate,
            Clock::System,
            config.daemon.max_concurrent,
        )
        .with_metrics(metrics.clone())
        .with_report_hook(hook.clone())
    }
}

/// The metrics listener: the caller's, or `daemon.metrics_listen` bound now (none if empty).
async fn metrics_listener(
    options: &mut RunOptions,
    config: &Config,
) -> Result<Option<TcpListener>, DaemonError> {
    if let Some(listener) = options.metrics_listener.take() {
        return Ok(Some(listener));
    }
    let Some(addr) = config.daemon.metrics_listen else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| DaemonError::Setup(format!("cannot listen on {addr} for metrics: {e}")))
}

/// Cluster mode: connects to the store (its URL and key from where the config says),
/// migrates it, checks the key, starts holding and taking the lease and mirroring the store
/// to this host. Exports the cluster series of `metrics`.
async fn start_cluster(
    config: &Config,
    settings: &ClusterConfig,
    sink: &Arc<Sink>,
    metrics: &Arc<Metrics>,
    hooks: &Arc<Hooks>,
    stop: &CancellationToken,
) -> Result<Arc<Cluster>, DaemonError> {
    let (url, key) = crate::cluster::secrets::load(settings)
        .map_err(|e| DaemonError::Setup(format!("store: {e}")))?;
    let shared = Shared::open(
        url.expose_secret(),
        key,
        settings.node_name.clone(),
        settings.lease,
    )
    .await?;
    let lease = Lease::new(
        settings.node_name.clone(),
        settings.lease,
        config.lease_margin(),
    );
    metrics.enable_cluster();
    metrics.cluster.store_up.set(1);
    tokio::spawn(lease.clone().run(shared.pool.clone(), stop.clone()));
    let (mut role, mut up) = (lease.subscribe(), lease.store_up());
    let (gauges, stopped) = (metrics.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            gauges
                .cluster
                .leader
                .set(i64::from(role.borrow_and_update().is_some()));
            gauges
                .cluster
                .store_up
                .set(i64::from(*up.borrow_and_update()));
            tokio::select! {
                () = stopped.cancelled() => return,
                Ok(()) = role.changed() => {}
                Ok(()) = up.changed() => {}
            }
        }
    });
    tracing::info!(node = %settings.node_name, lease = ?settings.lease, "cluster store ready");
    let cluster = Arc::new(Cluster::new(
        Arc::new(shared),
        lease,
        config,
        sink.clone(),
        metrics.clone(),
    ));
    let mirror = Mirror::new(
        cluster.shared.clone(),
        sink.clone(),
        hooks.clone(),
        metrics.clone(),
        cluster.accounts.clone(),
        cluster.lease.clone(),
    );
    tokio::spawn(mirror.run(stop.clone()));
    Ok(cluster)
}

/// Cluster mode: the rotator of a term, whose client starts no call once the term is over
/// or nearly over, and whose store is the term's.
fn term_rotator(sink: Arc<Sink>, metrics: Arc<Metrics>, hooks: Arc<Hooks>) -> NewRotator {
    Box::new(move |config: &Config, term: Arc<Term>, lease: Arc<Lease>| {
        let epoch = term.epoch();
        let gate: Gate = Arc::new(move || lease.may_call(epoch));
        let clients = clients(config, &metrics, Some(gate)).map_err(|e| e.to_string())?;
        let rotator = Rotator::new(
            Arc::new(clients),
            sink.clone(),
            metrics.clone(),
            &config.accounts,
        )
        .with_hooks(hooks.clone())
        .with_store(term);
        Ok(Arc::new(rotator) as Arc<dyn Rotate>)
    })
}

/// Cluster mode: `pwrotd rotate` on a replica that does not lead goes to the leader.
fn forwarder(cluster: &Arc<Cluster>) -> control::Forward {
    let cluster = cluster.clone();
    Arc::new(move |accounts| {
        let cluster = cluster.clone();
        Box::pin(async move {
            if cluster.lease.epoch().is_some() {
                return Ok(None);
            }
            cluster.forward(accounts).await.map_err(|e| e.to_string())?;
            let leader = match crate::cluster::lease::holder(&cluster.shared.pool).await {
                Ok(h) if h.live => format!("{} (epoch {})", h.node, h.epoch),
                _ => "whichever replica takes the lease next".to_owned(),
            };
            Ok(Some(leader))
        })
    })
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
    let mut signals = Signals::install()?;
    let (mut daemon, mut once) = Daemon::start(&mut options).await?;
    let ended = daemon.serve(&mut signals, &mut once, &options).await;
    daemon.stop().await;
    ended
}

/// The signals the daemon answers.
struct Signals {
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let setup =
            |e: std::io::Error| DaemonError::Setup(format!("cannot install signal handlers: {e}"));
        Ok(Signals {
            hup: signal(SignalKind::hangup()).map_err(setup)?,
            usr1: signal(SignalKind::user_defined1()).map_err(setup)?,
            term: signal(SignalKind::terminate()).map_err(setup)?,
            int: signal(SignalKind::interrupt()).map_err(setup)?,
        })
    }
}

/// Counts finished rotations, for the demo's `--once`.
struct Once {
    done: mpsc::UnboundedReceiver<()>,
    finished: usize,
    total: usize,
}

/// A running daemon: what it holds between start and stop.
struct Daemon {
    config: Config,
    /// The running config, as cluster mode's terms read it at start and reload.
    live: Arc<Mutex<Config>>,
    lock: StateLock,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    hooks: Arc<Hooks>,
    commands: mpsc::Sender<Command>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    stop_scheduler: CancellationToken,
    /// Stops the metrics server and the control socket.
    stop_servers: CancellationToken,
    /// The metrics server of the moment: a reload that changes metrics_listen replaces it.
    metrics_server: Option<CancellationToken>,
}

impl Daemon {
    /// Takes the lock, opens the sink, starts the scheduler and the servers, and tells systemd
    /// it is ready.
    async fn start(options: &mut RunOptions) -> Result<(Daemon, Once), DaemonError> {
        let config = options.config.clone();
        let state_dir = config.daemon.state_dir.clone();
        warn_about(&config);
        let mut lock = StateLock::acquire(&state_dir, "daemon-starting")?;
        let sink = Arc::new(Sink::open(&state_dir)?);
        raise_file_limit();
        let control = control::bind(&state_dir).map_err(|e| {
            DaemonError::Setup(format!(
                "cannot listen on {}: {e}",
                control::socket_path(&state_dir).display()
            ))
        })?;
        lock.announce("daemon")?;

        let metrics = Metrics::new();
        let _ = metrics.secrets_dir.set(sink.state_dir().join("secrets"));
        // Changes closer than a second apart (a rotation, then a re-render) run hooks once.
        let hooks = Hooks::new(std::time::Duration::from_secs(1), metrics.clone());
        let rotator = Arc::new(rotator(
            &config,
            sink.clone(),
            metrics.clone(),
            hooks.clone(),
        )?);
        let (once_tx, once_rx) = mpsc::unbounded_channel::<()>();
        let user_hook = options.on_report.take();
        let hook: ReportHook = Arc::new(move |report: &Report| {
            if let Some(hook) = &user_hook {
                hook(report);
            }
            if report.job == Job::Rotate {
                let _ = once_tx.send(());
            }
        });
        let new_scheduler = scheduler_factory(metrics.clone(), hook);
        let stop_servers = CancellationToken::new();
        let listener = metrics_listener(options, &config).await?;
        let (commands, command_rx) = mpsc::channel(64);
        let stop_scheduler = CancellationToken::new();
        let live = Arc::new(Mutex::new(config.clone()));
        let (scheduler, cluster) = match &config.store {
            StoreConfig::File => {
                let scheduler = new_scheduler(&config, rotator);
                let run = scheduler.run(
                    command_rx,
                    stop_scheduler.clone(),
                    config.daemon.shutdown_grace,
                );
                (tokio::spawn(run), None)
            }
            StoreConfig::Postgresql(settings) => {
                let cluster =
                    start_cluster(&config, settings, &sink, &metrics, &hooks, &stop_servers)
                        .await?;
                let new_rotator = term_rotator(sink.clone(), metrics.clone(), hooks.clone());
                let run = cluster.clone().run_terms(
                    live.clone(),
                    command_rx,
                    stop_scheduler.clone(),
                    Box::new(new_scheduler),
                    new_rotator,
                );
                (tokio::spawn(run), Some(cluster))
            }
        };
        let metrics_server = listener.map(|l| serve_metrics(l, &metrics, &stop_servers));
        tokio::spawn(control::serve(
            control,
            commands.clone(),
            config.path.clone(),
            stop_servers.clone(),
            cluster.as_ref().map(forwarder),
        ));
        metrics.healthy.store(true, Ordering::Relaxed);
        notify(sd_notify::NotifyState::Ready);
        let total = config.accounts.len();
        tracing::info!(accounts = total, state_dir = %state_dir.display(), "pwrotd is running");
        let once = Once {
            done: once_rx,
            finished: 0,
            total,
        };
        let daemon = Daemon {
            live,
            config,
            lock,
            sink,
            metrics,
            hooks,
            commands,
            scheduler: Some(scheduler),
            stop_scheduler,
            stop_servers,
            metrics_server,
        };
        Ok((daemon, once))
    }

    /// Answers signals until one says stop (or `--once` is done); an error if the scheduler
    /// itself ended.
    async fn serve(
        &mut self,
        signals: &mut Signals,
        once: &mut Once,
        options: &RunOptions,
    ) -> Result<(), DaemonError> {
        let mut watchdog =
            sd_notify::watchdog_enabled().map(|usec| tokio::time::interval(usec / 2));
        let Some(mut scheduler) = self.scheduler.take() else {
            return Ok(());
        };
        let ended = loop {
            let tick = async {
                match watchdog.as_mut() {
                    Some(interval) => {
                        interval.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signals.term.recv() => break Ok(()),
                _ = signals.int.recv() => break Ok(()),
                () = options.shutdown.cancelled() => break Ok(()),
                _ = signals.hup.recv() => self.reload().await,
                _ = signals.usr1.recv() => {
                    tracing::info!("SIGUSR1: rotating every account now");
                    let _ = self.commands.send(Command::RotateNow { accounts: None, reply: None }).await;
                }
                Some(()) = once.done.recv() => {
                    once.finished += 1;
                    if options.once && once.finished >= once.total {
                        break Ok(());
                    }
                }
                result = &mut scheduler => {
                    self.metrics.healthy.store(false, Ordering::Relaxed);
                    // Not the JoinError itself: a panic's message could hold a secret.
                    let what = match result {
                        Err(e) if e.is_panic() => "panicked",
                        _ => "ended",
                    };
                    return Err(DaemonError::Setup(format!("the scheduler {what} unexpectedly")));
                }
                // Only a scheduler that still goes round keeps the watchdog fed: a stalled
                // one gets the service restarted.
                () = tick => match self.metrics.unhealthy() {
                    Some(why) if why.contains("stalled") => tracing::error!("not feeding the watchdog: {why}"),
                    _ => notify(sd_notify::NotifyState::Watchdog),
                },
            }
        };
        self.scheduler = Some(scheduler);
        ended
    }

    /// SIGHUP: the config again, and the metrics server moved if its address changed.
    async fn reload(&mut self) {
        notify(sd_notify::NotifyState::Reloading);
        let listen = self.config.daemon.metrics_listen;
        let old = self.config.clone();
        self.config = reload(
            old,
            &self.sink,
            &self.metrics,
            &self.hooks,
            &self.commands,
            &self.live,
        )
        .await;
        if self.config.daemon.metrics_listen != listen {
            self.metrics_server = rebind_metrics(
                self.metrics_server.take(),
                self.config.daemon.metrics_listen,
                &self.metrics,
                &self.stop_servers,
            )
            .await;
        }
        notify(sd_notify::NotifyState::Ready);
    }

    /// Stops scheduling, lets running rotations finish within `shutdown_grace`, waits for
    /// their sink writes, and only then lets go of the state lock.
    async fn stop(mut self) {
        notify(sd_notify::NotifyState::Stopping);
        tracing::info!(grace = %humantime::format_duration(self.config.daemon.shutdown_grace), "stopping");
        self.metrics.healthy.store(false, Ordering::Relaxed);
        self.stop_scheduler.cancel();
        if let Some(scheduler) = self.scheduler.take()
            && let Err(e) = scheduler.await
        {
            let what = if e.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            };
            tracing::error!("the scheduler {what}");
        }
        self.stop_servers.cancel();
        // While the lock is held: the next daemon binds its own socket once it has the lock.
        let _ = fs::remove_file(control::socket_path(&self.config.daemon.state_dir));
        // Sink writes of aborted rotations still run on the blocking pool: the next process
        // may write the same files only once they are done.
        if !self.sink.drain_io(std::time::Duration::from_secs(30)).await {
            tracing::error!(
                "sink writes still running after 30 s; the state lock is held until the process exits"
            );
            std::mem::forget(self.lock);
        } else {
            drop(self.lock);
        }
    }
}

/// SIGHUP: loads the config again; on any problem keeps the running one.
async fn reload(
    old: Config,
    sink: &Arc<Sink>,
    metrics: &Arc<Metrics>,
    hooks: &Arc<Hooks>,
    commands: &mpsc::Sender<Command>,
    live: &Mutex<Config>,
) -> Config {
    let result = Config::load(&old.path).and_then(|new| {
        let refuse = |key: &str, message: String| {
            Err(crate::config::ConfigError {
                path: new.path.clone(),
                problems: vec![crate::config::Problem {
                    line: 0,
                    key: key.into(),
                    message,
                }],
            })
        };
        let restart = "cannot change while running; restart pwrotd";
        if new.store != old.store {
            return refuse("store", restart.into());
        }
        if new.daemon.state_dir != old.daemon.state_dir {
            return refuse("daemon.state_dir", restart.into());
        }
        // The lease keeps the margin it started with: a longer timeout would let an attempt
        // outlive the lease, a shorter one end the hold on a released lease too early.
        if matches!(new.store, StoreConfig::Postgresql(_))
            && new.lease_margin() != old.lease_margin()
        {
            return refuse(
                "cloud.timeout",
                format!(
                    "in cluster mode the longest timeout of [cloud] and its profiles sets the \
                     lease margin ({} running, {} in the file), which {restart}",
                    humantime::format_duration(old.lease_margin()),
                    humantime::format_duration(new.lease_margin()),
                ),
            );
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
    warn_about(&new);
    match rotator(&new, sink.clone(), metrics.clone(), hooks.clone()) {
        Ok(rotator) => {
            *live.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
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

/// Serves metrics on `listener` until `stop` or the returned token is cancelled.
fn serve_metrics(
    listener: TcpListener,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> CancellationToken {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let this = stop.child_token();
    tokio::spawn(metrics::serve(listener, metrics.clone(), this.clone()));
    this
}

/// A reload changed `metrics_listen`: serves on the new address, then stops the old server.
/// If the new address cannot be bound, the old server stays and the error is logged.
async fn rebind_metrics(
    old: Option<CancellationToken>,
    listen: Option<std::net::SocketAddr>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> Option<CancellationToken> {
    let new = match listen {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(serve_metrics(listener, metrics, stop)),
            Err(e) => {
                tracing::error!(
                    "cannot listen on {addr} for metrics: {e}; the old address stays until a restart"
                );
                return old;
            }
        },
        None => None,
    };
    if let Some(old) = old {
        old.cancel();
    }
    if new.is_none() {
        tracing::info!("metrics server stopped: metrics_listen is empty");
    }
    new
}

/// Logs what `pwrotd check` prints as warnings.
fn warn_about(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{}", warning.display(&config.path));
    }
}

/// Raises the soft limit on open files to the hard one (systemd's default soft limit is 1024):
/// rotations, the metrics server and the control socket share the daemon's descriptors.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
}
