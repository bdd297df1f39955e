//! Temporary credentials: cached, refreshed ahead of their expiry by a background task, and
//! never handed out once they are too close to it.
//!
//! The design: [`Refreshing::load`] answers from the cache while the credentials are usable,
//! and fetches inline only when none are (the first call, or after every refresh failed until
//! they expired). A background task, started by the first fetch, sleeps until the refresh
//! time ([`timing`]) and refreshes; a failure keeps the cached credentials and is retried with
//! backoff. The task holds only a weak reference: when the client that owns the source is
//! dropped (a reload, a new cluster term), the task ends at its next wake-up. So a rotation
//! never waits for a refresh while valid credentials exist, the expiry metric stays true
//! while the daemon is idle, and a refresh failure shows before a rotation needs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::chain::Node;
use super::fetch::Issued;
use super::{CredentialError, Credentials, Shared, ecs, oidc, sts, uri};

/// Credentials are refreshed at the latest this long before they expire...
pub const REFRESH_AHEAD: Duration = Duration::from_secs(180);
/// ...and never used in the last tenth of their life, nor in the last this long: a request
/// signed now must still reach the API before the expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// The first retry of a failed refresh; each further one waits twice as long, up to
/// [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);
/// Credentials with less life than this left are refused as already expired.
const SHORTEST_LIFE: Duration = Duration::from_secs(2);

/// When credentials with `remaining` life left should be refreshed, and until when they may be
/// used, both counted from now. The refresh comes at two thirds of the life, or 3 minutes
/// before the expiry when that is sooner, but never before half of the life has passed (so a
/// lifetime under 6 minutes still gets used).
pub(crate) fn timing(remaining: Duration) -> (Duration, Duration) {
    let refresh = (remaining * 2 / 3)
        .min(remaining.saturating_sub(REFRESH_AHEAD))
        .max(remaining / 2);
    let usable = remaining.saturating_sub((remaining / 10).min(EXPIRY_MARGIN));
    (refresh, usable.max(refresh))
}

/// The wait before retry `failures` (1 for the first) of a failed refresh.
pub(crate) fn backoff(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RETRY_CAP)
}

/// Where temporary credentials come from.
pub(crate) enum Fetcher {
    Ecs(ecs::EcsRamRole),
    Oidc(oidc::Oidc),
    Uri(uri::UriSource),
    /// STS `AssumeRole`, signed with the credentials of `base`.
    AssumeRole {
        base: Node,
        role: sts::AssumeRole,
    },
    /// A test's stand-in: counts its calls, fails while told to.
    #[cfg(test)]
    Fake(tests::Fake),
}

impl Fetcher {
    /// The source's name, in errors and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Fetcher::Ecs(_) => "ecs_ram_role",
            Fetcher::Oidc(_) => "oidc",
            Fetcher::Uri(_) => "uri",
            Fetcher::AssumeRole { .. } => "assume_role",
            #[cfg(test)]
            Fetcher::Fake(_) => "fake",
        }
    }

    /// Fetches new credentials (boxed: an `assume_role` loads its base, which may be another
    /// refreshed source).
    fn fetch<'a>(
        &'a self,
        http: &'a reqwest::Client,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Issued, CredentialError>> + Send + 'a>> {
        Box::pin(async move { self.fetch_inner(http).await })
    }

    async fn fetch_inner(&self, http: &reqwest::Client) -> Result<Issued, CredentialError> {
        let name = self.name();
        let wrap = |message: String| CredentialError::source(name, message);
        match self {
            Fetcher::Ecs(ecs) => ecs.fetch(http).await.map_err(wrap),
            Fetcher::Oidc(oidc) => oidc.fetch(http).await,
            Fetcher::Uri(uri) => uri.fetch(http).await.map_err(wrap),
            Fetcher::AssumeRole { base, role } => {
                let credentials = base.load().await?;
                role.call(http, &credentials).await.map_err(wrap)
            }
            #[cfg(test)]
            Fetcher::Fake(fake) => fake.fetch().map_err(wrap),
        }
    }
}

/// Credentials in the cache, with the instants that decide their use.
struct Cached {
    credentials: Credentials,
    /// Past this, a refresh is due.
    refresh_at: Instant,
    /// Past this, they are not handed out any more.
    usable_until: Instant,
}

/// A source of temporary credentials with its cache.
pub(crate) struct Refreshing {
    fetcher: Fetcher,
    shared: Arc<Shared>,
    cached: Mutex<Option<Cached>>,
    /// One fetch at a time: concurrent callers wait for it rather than all asking.
    fetching: tokio::sync::Mutex<()>,
    /// Whether this source's credentials are the ones requests are signed with (rather than
    /// the base of an `assume_role`): only those set the expiry metric.
    top: AtomicBool,
    /// Whether the background task runs.
    task: AtomicBool,
}

impl Refreshing {
    pub(crate) fn new(fetcher: Fetcher, shared: Arc<Shared>) -> Arc<Refreshing> {
        Arc::new(Refreshing {
            fetcher,
            shared,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            top: AtomicBool::new(false),
            task: AtomicBool::new(false),
        })
    }

    pub(crate) fn mark_top(&self) {
        self.top.store(true, Ordering::Relaxed);
    }

    pub(crate) fn name(&self) -> &'static str {
        self.fetcher.name()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached credentials while they are usable.
    fn usable(&self) -> Option<Credentials> {
        let now = Instant::now();
        self.lock()
            .as_ref()
            .filter(|c| now < c.usable_until)
            .map(|c| c.credentials.clone())
    }

    /// Forgets the cached credentials when they are still the ones with `access_key_id`: the
    /// API said they expired (a clock ahead of ours), so the next load fetches new ones.
    pub(crate) fn forget(&self, access_key_id: &str) {
        let mut cached = self.lock();
        if cached
            .as_ref()
            .is_some_and(|c| c.credentials.access_key_id == access_key_id)
        {
            *cached = None;
        }
    }

    /// Whether the cached credentials are usable and not yet due for a refresh.
    fn fresh(&self) -> bool {
        let now = Instant::now();
        self.lock().as_ref().is_some_and(|c| now < c.refresh_at)
    }

    /// Usable credentials: from the cache, or fetched now when it holds none.
    pub(crate) async fn load(self: &Arc<Self>) -> Result<Credentials, CredentialError> {
        if let Some(credentials) = self.usable() {
            return Ok(credentials);
        }
        let _one = self.fetching.lock().await;
        if let Some(credentials) = self.usable() {
            return Ok(credentials);
        }
        self.refresh().await
    }

    /// Fetches, caches and reports; starts the background task after the first success.
    /// The caller holds `fetching`.
    fn refresh(
        self: &Arc<Self>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>>
    {
        // Boxed: the background task awaits this, and this starts the task.
        Box::pin(self.refresh_inner())
    }

    async fn refresh_inner(self: &Arc<Self>) -> Result<Credentials, CredentialError> {
        let result = self
            .fetcher
            .fetch(&self.shared.http)
            .await
            .and_then(|issued| self.store(issued));
        match &result {
            Ok(_) => {
                if !self.task.swap(true, Ordering::AcqRel) {
                    tokio::spawn(run(Arc::downgrade(self)));
                }
            }
            Err(_) => self.shared.observe("failure", None),
        }
        result
    }

    /// Caches `issued`, refusing credentials that are already (nearly) expired.
    fn store(&self, issued: Issued) -> Result<Credentials, CredentialError> {
        let remaining = issued
            .expiration
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if remaining < SHORTEST_LIFE {
            return Err(CredentialError::source(
                self.name(),
                format!(
                    "the credentials handed out expire at {}, which is past or too close",
                    humantime::format_rfc3339_seconds(issued.expiration)
                ),
            ));
        }
        let (refresh, usable) = timing(remaining);
        let now = Instant::now();
        *self.lock() = Some(Cached {
            credentials: issued.credentials.clone(),
            refresh_at: now + refresh,
            usable_until: now + usable,
        });
        let top = self.top.load(Ordering::Relaxed);
        self.shared
            .observe("success", top.then_some(issued.expiration));
        tracing::debug!(
            source = self.name(),
            expires = %humantime::format_rfc3339_seconds(issued.expiration),
            "temporary credentials refreshed"
        );
        Ok(issued.credentials)
    }

    /// When the background task should wake next, after `failures` failed refreshes in a row.
    fn next_wake(&self, failures: u32) -> Instant {
        let now = Instant::now();
        if failures > 0 {
            return now + backoff(failures);
        }
        self.lock().as_ref().map_or(now, |c| c.refresh_at)
    }
}

/// The background task of one source: refreshes at each refresh time, retries failures with
/// backoff, and ends once the source is dropped.
async fn run(source: Weak<Refreshing>) {
    let mut failures = 0u32;
    loop {
        let wake = match source.upgrade() {
            Some(source) => source.next_wake(failures),
            None => return,
        };
        tokio::time::sleep_until(wake).await;
        let Some(source) = source.upgrade() else {
            return;
        };
        let _one = source.fetching.lock().await;
        if source.fresh() {
            failures = 0;
            continue;
        }
        match source.refresh().await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                let still_valid = source.usable().is_some();
                tracing::warn!(
                    source = source.name(),
                    still_valid,
                    retry_in = ?backoff(failures),
                    "cannot refresh temporary credentials: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A fetcher that hands out credentials living `life`, numbered by call, and fails while
    /// `failing` is set.
    #[derive(Clone)]
    pub(crate) struct Fake {
        pub(crate) calls: Arc<AtomicU32>,
        pub(crate) failing: Arc<AtomicBool>,
        pub(crate) life: Duration,
    }

    impl Fake {
        pub(crate) fn fetch(&self) -> Result<Issued, String> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.failing.load(Ordering::SeqCst) {
                return Err("the fake refuses".into());
            }
            Ok(Issued {
                credentials: Credentials::new(format!("STS.{n}"), "secret")
                    .with_security_token("token"),
                expiration: SystemTime::now() + self.life,
            })
        }
    }

    fn source(life: Duration) -> (Arc<Refreshing>, Fake) {
        let fake = Fake {
            calls: Arc::default(),
            failing: Arc::default(),
            life,
        };
        let shared = Arc::new(Shared {
            http: reqwest::Client::new(),
            observer: std::sync::OnceLock::new(),
        });
        (Refreshing::new(Fetcher::Fake(fake.clone()), shared), fake)
    }

    #[test]
    fn refresh_timing() {
        let min = |m: u64| Duration::from_secs(m * 60);
        // An hour: at 40 minutes (two thirds), well before 3 minutes ahead.
        assert_eq!(timing(min(60)).0, min(40));
        // Six hours (the metadata service): at 4 hours.
        assert_eq!(timing(min(360)).0, min(240));
        // 15 minutes (STS's shortest): at 10 minutes.
        assert_eq!(timing(min(15)).0, min(10));
        // 5 minutes: 3 minutes ahead would be 2 minutes in; half the life comes later.
        assert_eq!(timing(min(5)).0, Duration::from_secs(150));
        // 6 seconds (a test's): at half the life, 3 s; usable until 5.4 s.
        let (refresh, usable) = timing(Duration::from_secs(6));
        assert_eq!(refresh, Duration::from_secs(3));
        assert_eq!(usable, Duration::from_millis(5400));
        // Never later than 3 minutes ahead, never used in the last 30 seconds.
        for m in [10, 15, 60, 720] {
            let (refresh, usable) = timing(min(m));
            assert!(refresh <= min(m) - REFRESH_AHEAD, "{m}");
            assert!(usable <= min(m) - EXPIRY_MARGIN, "{m}");
        }
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), RETRY_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshed_in_the_background_before_expiry() {
        let (source, fake) = source(Duration::from_secs(3600));
        let first = source.load().await.unwrap();
        assert_eq!(first.access_key_id, "STS.1");
        // Cached: no second fetch.
        assert_eq!(source.load().await.unwrap().access_key_id, "STS.1");
        tokio::time::sleep(Duration::from_secs(39 * 60)).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2 * 60)).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2, "refreshed at 40 min");
        assert_eq!(source.load().await.unwrap().access_key_id, "STS.2");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_valid_credentials_and_retries_with_backoff() {
        let (source, fake) = source(Duration::from_secs(3600));
        source.load().await.unwrap();
        fake.failing.store(true, Ordering::SeqCst);
        // 40 min: the refresh fails; then 1, 2, 4, 8... seconds later it is tried again.
        tokio::time::sleep(Duration::from_secs(40 * 60 + 1)).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            4,
            "retried at +1 s and +3 s"
        );
        // Meanwhile the cached credentials still serve, without a fetch.
        let calls = fake.calls.load(Ordering::SeqCst);
        assert_eq!(source.load().await.unwrap().access_key_id, "STS.1");
        assert_eq!(fake.calls.load(Ordering::SeqCst), calls);
        fake.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(RETRY_CAP).await;
        assert_ne!(source.load().await.unwrap().access_key_id, "STS.1");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_credentials_are_never_handed_out() {
        let (source, fake) = source(Duration::from_secs(3600));
        source.load().await.unwrap();
        fake.failing.store(true, Ordering::SeqCst);
        // Past the usable end (an hour less 30 s), every refresh having failed.
        tokio::time::sleep(Duration::from_secs(3600 - 29)).await;
        let err = source.load().await.unwrap_err();
        assert!(err.to_string().contains("credentials (fake)"), "{err}");
        fake.failing.store(false, Ordering::SeqCst);
        assert!(source.load().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_the_api_calls_expired_are_fetched_again() {
        let (source, fake) = source(Duration::from_secs(3600));
        let first = source.load().await.unwrap();
        source.forget("STS.other");
        assert_eq!(source.load().await.unwrap().access_key_id, "STS.1");
        source.forget(&first.access_key_id);
        assert_eq!(source.load().await.unwrap().access_key_id, "STS.2");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_with_its_source() {
        let (source, fake) = source(Duration::from_secs(60));
        source.load().await.unwrap();
        drop(source);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }
}
