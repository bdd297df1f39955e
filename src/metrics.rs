//! Prometheus metrics (docs/operations.md#metrics) and the `/metrics` and `/healthz` server.
//!
//! Labels are account names, actions, outcomes and error codes: never a password, never a
//! resource secret.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::config::Account;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Every metric pwrotd exports.
pub struct Metrics {
    registry: Registry,
    pub rotation_duration: Histogram,
    /// Every per-account series but the verifications, kept as plain numbers and rendered at
    /// scrape time: a metric object per account and label set costs about 250 bytes, 50 MB
    /// per series at 100,000 accounts.
    accounts_stats: Arc<AccountStats>,
    pub api_requests: IntCounterVec,
    pub accounts: IntGauge,
    pub config_reloads: IntCounterVec,
    /// Logins that test a password (`[account.verify]`), by account and outcome: `success`,
    /// `rejected` (the database refused the password) or `error` (no answer either way).
    pub verifications: IntCounterVec,
    pub build_info: IntGaugeVec,
    /// Refreshes of temporary credentials, by profile (`default` for `[cloud]`) and outcome
    /// (`success`, `failure`).
    pub credential_refreshes: IntCounterVec,
    /// When the temporary credentials requests are signed with expire, by profile.
    pub credentials_expiry: prometheus::GaugeVec,
    /// The profiles whose credential series are exported: those of the running config whose
    /// credentials are temporary. An observer of another (a client a reload replaced, still
    /// refreshing until it is dropped) records nothing.
    credential_profiles: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Whether the scheduler runs: `/healthz` answers 200 only while it does.
    pub healthy: AtomicBool,
    /// When the scheduler's loop last went round, in seconds since `started` (a monotonic
    /// clock, which wall-clock jumps do not move): it wakes at least every [`HEARTBEAT`], so
    /// an older stamp means it is stalled.
    heartbeat: AtomicU64,
    started: std::time::Instant,
    /// The directory rotations write secret files to, which `/healthz` proves writable.
    pub secrets_dir: std::sync::OnceLock<std::path::PathBuf>,
    /// Cluster mode's series, registered by [`Metrics::enable_cluster`].
    pub cluster: ClusterGauges,
}

/// The series of cluster mode (docs/cluster.md#metrics).
pub struct ClusterGauges {
    /// 1 on the leader, else 0.
    pub leader: IntGauge,
    /// 1 while the store answers.
    pub store_up: IntGauge,
    mirror_age: prometheus::Gauge,
    /// When this replica's files last matched the store; its age is taken at scrape time.
    mirrored_at: std::sync::Mutex<Option<SystemTime>>,
    enabled: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The `outcome` labels of `pwrotd_verifications_total`.
const VERIFICATION_OUTCOMES: [&str; 3] = ["success", "rejected", "error"];

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric")
        };
        let m = Metrics {
            rotation_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "pwrotd_rotation_duration_seconds",
                    "Duration of one rotation, API retries included.",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
            )
            .expect("a valid metric"),
            accounts_stats: Arc::new(AccountStats::default()),
            api_requests: counter(
                "pwrotd_api_requests_total",
                "OpenAPI requests by action and reply code.",
                &["action", "code"],
            ),
            accounts: IntGauge::new("pwrotd_accounts", "Accounts in the loaded config.")
                .expect("a valid metric"),
            config_reloads: counter(
                "pwrotd_config_reloads_total",
                "Config reloads by outcome.",
                &["outcome"],
            ),
            verifications: counter(
                "pwrotd_verifications_total",
                "Password verifications by login, by account and outcome.",
                &["account", "outcome"],
            ),
            build_info: IntGaugeVec::new(
                Opts::new("pwrotd_build_info", "The running version."),
                &["version"],
            )
            .expect("a valid metric"),
            credential_refreshes: counter(
                "pwrotd_credential_refreshes_total",
                "Refreshes of temporary credentials, by profile and outcome.",
                &["profile", "outcome"],
            ),
            credentials_expiry: prometheus::GaugeVec::new(
                Opts::new(
                    "pwrotd_credentials_expiry_timestamp_seconds",
                    "When the temporary credentials in use expire, by profile.",
                ),
                &["profile"],
            )
            .expect("a valid metric"),
            credential_profiles: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            healthy: AtomicBool::new(false),
            heartbeat: AtomicU64::new(0),
            started: std::time::Instant::now(),
            secrets_dir: std::sync::OnceLock::new(),
            cluster: ClusterGauges {
                leader: IntGauge::new("pwrotd_leader", "1 on the cluster's leader, else 0.")
                    .expect("a valid metric"),
                store_up: IntGauge::new("pwrotd_store_up", "1 while the cluster store answers.")
                    .expect("a valid metric"),
                mirror_age: prometheus::Gauge::new(
                    "pwrotd_mirror_age_seconds",
                    "Seconds since this replica's local files last matched the store.",
                )
                .expect("a valid metric"),
                mirrored_at: std::sync::Mutex::new(None),
                enabled: AtomicBool::new(false),
            },
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(m.credential_refreshes.clone()),
            Box::new(m.credentials_expiry.clone()),
            Box::new(m.rotation_duration.clone()),
            Box::new(StatsCollector::new(m.accounts_stats.clone())),
            Box::new(m.api_requests.clone()),
            Box::new(m.accounts.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.verifications.clone()),
            Box::new(m.build_info.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = m.registry.register(Box::new(process)) {
            tracing::warn!("process metrics unavailable: {e}");
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for outcome in ["success", "failure"] {
            m.config_reloads.with_label_values(&[outcome]);
        }
        Arc::new(m)
    }

    /// The observer of a profile's credential source: counts its refreshes and sets the
    /// expiry of the credentials in use. Its series start at 0.
    pub fn credential_observer(
        self: &Arc<Self>,
        profile: &str,
    ) -> crate::cloud::credentials::RefreshObserver {
        for outcome in ["success", "failure"] {
            self.credential_refreshes
                .with_label_values(&[profile, outcome]);
        }
        self.credential_profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(profile.to_owned());
        let (metrics, profile) = (self.clone(), profile.to_owned());
        Arc::new(move |outcome, expiry| {
            let live = metrics
                .credential_profiles
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !live.contains(&profile) {
                return;
            }
            metrics
                .credential_refreshes
                .with_label_values(&[profile.as_str(), outcome])
                .inc();
            if let Some(at) = expiry {
                metrics
                    .credentials_expiry
                    .with_label_values(&[profile.as_str()])
                    .set(seconds(at));
            }
        })
    }

    /// Forgets the credential series of every profile but `keep`, the profiles whose
    /// credentials are temporary now: a reload removed the others, or gave them long-lived keys.
    /// From now on only observers of `keep` record.
    pub fn keep_credential_profiles(&self, keep: &[&str]) {
        let mut live = self
            .credential_profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for profile in live.iter().filter(|p| !keep.contains(&p.as_str())) {
            let _ = self.credentials_expiry.remove_label_values(&[profile]);
            for outcome in ["success", "failure"] {
                let _ = self
                    .credential_refreshes
                    .remove_label_values(&[profile, outcome]);
            }
        }
        *live = keep.iter().map(|p| (*p).to_owned()).collect();
    }

    /// Exports cluster mode's series.
    pub fn enable_cluster(&self) {
        if self.cluster.enabled.swap(true, Ordering::Relaxed) {
            return;
        }
        let c = &self.cluster;
        let collectors: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(c.leader.clone()),
            Box::new(c.store_up.clone()),
            Box::new(c.mirror_age.clone()),
        ];
        for collector in collectors {
            if let Err(e) = self.registry.register(collector) {
                tracing::warn!("cluster metrics: {e}");
            }
        }
    }

    /// Records that this replica's files matched the store at `at`.
    pub fn set_mirrored(&self, at: SystemTime) {
        *self
            .cluster
            .mirrored_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Seconds since this replica's files last matched the store (since start if never).
    pub fn mirror_age(&self) -> f64 {
        let at = *self
            .cluster
            .mirrored_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match at {
            Some(at) => SystemTime::now()
                .duration_since(at)
                .unwrap_or_default()
                .as_secs_f64(),
            None => self.started.elapsed().as_secs_f64(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        if self.cluster.enabled.load(Ordering::Relaxed) {
            self.cluster.mirror_age.set(self.mirror_age());
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Makes every per-account series of `account` exist, at 0 where nothing happened yet,
    /// so that `increase(...)` alerts see its first failure.
    pub fn add_account(&self, account: &Account) {
        self.accounts_stats
            .lock()
            .entry(account.name.clone())
            .or_default();
        if account.verify.is_some() {
            for outcome in VERIFICATION_OUTCOMES {
                self.verifications
                    .with_label_values(&[account.name.as_str(), outcome]);
            }
        }
    }

    /// Forgets the per-account series of an account no longer configured.
    pub fn forget_account(&self, account: &str) {
        self.accounts_stats.lock().remove(account);
        for outcome in VERIFICATION_OUTCOMES {
            let _ = self.verifications.remove_label_values(&[account, outcome]);
        }
    }

    fn update(&self, account: &str, change: impl FnOnce(&mut Stats)) {
        change(
            self.accounts_stats
                .lock()
                .entry(account.to_owned())
                .or_default(),
        );
    }

    /// `pwrotd_last_success_timestamp_seconds{account}`.
    pub fn set_last_success(&self, account: &str, at: SystemTime) {
        self.update(account, |s| s.last_success = Some(seconds(at)));
    }

    /// `pwrotd_next_rotation_timestamp_seconds{account}`: when the daemon will really try
    /// next.
    pub fn set_next_rotation(&self, account: &str, at: SystemTime) {
        self.update(account, |s| s.next_rotation = Some(seconds(at)));
    }

    /// `pwrotd_rotations_total{account,outcome}`.
    pub fn count_rotation(&self, account: &str, success: bool) {
        self.update(account, |s| {
            if success {
                s.successes += 1;
            } else {
                s.failures += 1;
            }
        });
    }

    /// `pwrotd_render_failures_total{account}`.
    pub fn count_render_failure(&self, account: &str) {
        self.update(account, |s| s.render_failures += 1);
    }

    /// `pwrotd_hook_failures_total{account}`.
    pub fn count_hook_failure(&self, account: &str) {
        self.update(account, |s| s.hook_failures += 1);
    }

    /// `pwrotd_account_pending{account}`, and with it `pwrotd_pending_rotations`.
    pub fn set_pending(&self, account: &str, pending: bool) {
        self.update(account, |s| s.pending = pending);
    }

    /// The value of one per-account counter or gauge, for tests and the demo.
    pub fn account_value(&self, account: &str, metric: &str) -> Option<f64> {
        let stats = self.accounts_stats.lock();
        let s = stats.get(account)?;
        Some(match metric {
            "successes" => s.successes as f64,
            "failures" => s.failures as f64,
            "render_failures" => s.render_failures as f64,
            "hook_failures" => s.hook_failures as f64,
            "pending" => f64::from(u8::from(s.pending)),
            _ => return None,
        })
    }
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One account's series.
#[derive(Debug, Default, Clone)]
struct Stats {
    last_success: Option<f64>,
    next_rotation: Option<f64>,
    successes: u64,
    failures: u64,
    render_failures: u64,
    hook_failures: u64,
    pending: bool,
}

#[derive(Default)]
struct AccountStats(std::sync::Mutex<HashMap<String, Stats>>);

impl AccountStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stats>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The families [`AccountStats`] renders: name, help, type, and its labels beyond `account`.
const FAMILIES: [(&str, &str, MetricType); 7] = [
    (
        "pwrotd_rotations_total",
        "Rotations by account and outcome (success, failure).",
        MetricType::COUNTER,
    ),
    (
        "pwrotd_last_success_timestamp_seconds",
        "When the current password of each account was set.",
        MetricType::GAUGE,
    ),
    (
        "pwrotd_next_rotation_timestamp_seconds",
        "When the daemon will next try to rotate each account: a failing account's retry time.",
        MetricType::GAUGE,
    ),
    (
        "pwrotd_account_pending",
        "1 while an account's sink holds a pending password that may be live.",
        MetricType::GAUGE,
    ),
    (
        "pwrotd_pending_rotations",
        "Accounts whose sink holds a pending password that may be live.",
        MetricType::GAUGE,
    ),
    (
        "pwrotd_render_failures_total",
        "Render files that could not be written, by account.",
        MetricType::COUNTER,
    ),
    (
        "pwrotd_hook_failures_total",
        "on_change hooks that failed or timed out, by account.",
        MetricType::COUNTER,
    ),
];

/// Renders [`AccountStats`] when scraped.
struct StatsCollector {
    descs: Vec<Desc>,
    stats: Arc<AccountStats>,
}

impl StatsCollector {
    fn new(stats: Arc<AccountStats>) -> StatsCollector {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                let labels = match *name {
                    "pwrotd_pending_rotations" => vec![],
                    "pwrotd_rotations_total" => vec!["account".into(), "outcome".into()],
                    _ => vec!["account".into()],
                };
                Desc::new((*name).into(), (*help).into(), labels, HashMap::new())
                    .expect("a valid metric")
            })
            .collect();
        StatsCollector { descs, stats }
    }
}

fn sample(labels: &[(&str, &str)], kind: MetricType, value: f64) -> Metric {
    let mut metric = Metric::default();
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut label = LabelPair::default();
                label.set_name((*name).into());
                label.set_value((*value).into());
                label
            })
            .collect(),
    );
    if kind == MetricType::COUNTER {
        let mut counter = prometheus::proto::Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = prometheus::proto::Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    metric
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.stats.lock();
        let mut names: Vec<&String> = stats.keys().collect();
        names.sort_unstable();
        let mut families = Vec::new();
        for (name, help, kind) in FAMILIES {
            let mut family = MetricFamily::default();
            family.set_name(name.into());
            family.set_help(help.into());
            family.set_field_type(kind);
            let metrics = family.mut_metric();
            if name == "pwrotd_pending_rotations" {
                let pending = stats.values().filter(|s| s.pending).count();
                metrics.push(sample(&[], kind, pending as f64));
            }
            for account in &names {
                let s = &stats[*account];
                let one = |value: f64| sample(&[("account", account.as_str())], kind, value);
                match name {
                    "pwrotd_rotations_total" => {
                        for (outcome, value) in [("success", s.successes), ("failure", s.failures)]
                        {
                            metrics.push(sample(
                                &[("account", account.as_str()), ("outcome", outcome)],
                                kind,
                                value as f64,
                            ));
                        }
                    }
                    "pwrotd_last_success_timestamp_seconds" => {
                        metrics.extend(s.last_success.map(one));
                    }
                    "pwrotd_next_rotation_timestamp_seconds" => {
                        metrics.extend(s.next_rotation.map(one));
                    }
                    "pwrotd_account_pending" => metrics.push(one(f64::from(u8::from(s.pending)))),
                    "pwrotd_render_failures_total" => metrics.push(one(s.render_failures as f64)),
                    "pwrotd_hook_failures_total" => metrics.push(one(s.hook_failures as f64)),
                    _ => {}
                }
            }
            if !family.get_metric().is_empty() {
                families.push(family);
            }
        }
        families
    }
}

/// The scheduler's loop wakes at least this often; `/healthz` fails when it has not for
/// several times as long.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Connections the metrics server serves at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client may take to send a request's headers, on a new or an idle connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

impl Metrics {
    /// Stamps the scheduler's heartbeat.
    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_secs(), Ordering::Relaxed);
    }

    /// Why rotations cannot proceed now, if they cannot: the scheduler is not running or has
    /// stalled, or the state directory cannot take a new file (read-only, full of inodes, or
    /// no file descriptor left).
    pub fn unhealthy(&self) -> Option<String> {
        if !self.healthy.load(Ordering::Relaxed) {
            return Some("the scheduler is not running".into());
        }
        let beat = self.heartbeat.load(Ordering::Relaxed);
        let age = self.started.elapsed().as_secs().saturating_sub(beat);
        if age > 6 * HEARTBEAT.as_secs() {
            return Some(format!(
                "the scheduler has stalled ({age} s without a beat)"
            ));
        }
        let dir = self.secrets_dir.get()?;
        let probe = dir.join(".healthz");
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&probe);
        // One byte: a full disk refuses it even where an empty file still fits.
        match created.and_then(|mut file| std::io::Write::write_all(&mut file, b"\n")) {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                None
            }
            Err(e) => Some(format!("{} cannot take a new file: {e}", dir.display())),
        }
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` is cancelled: at most
/// [`MAX_CONNECTIONS`] at once, each closed if its headers take longer than
/// [`HEADER_TIMEOUT`] or it lives longer than a minute, so that idle clients cannot take the
/// file descriptors that rotations need.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

fn answer(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        (&Method::GET, "/healthz") => match metrics.unhealthy() {
            None => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", why + "\n"),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifications_are_exported_by_account_and_outcome() {
        let m = Metrics::new();
        m.verifications
            .with_label_values(&["orders-app", "rejected"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(
                "pwrotd_verifications_total{account=\"orders-app\",outcome=\"rejected\"} 1"
            ),
            "{text}"
        );
    }
}
