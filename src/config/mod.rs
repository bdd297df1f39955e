//! The config file: the TOML file `--config` names, read and checked whole before anything runs.
//! What leaves this module is a [`Config`] the daemon can trust: every key known, every value in
//! its bounds, `[defaults]` applied to each account, equal password policies shared. What a
//! file may not say is refused with every problem at once, each with its line and key
//! ([`ConfigError`]); what it may say but probably does not mean is a warning
//! ([`Config::warnings`]).
//!
//! Every key, its default and bounds, and what is refused or warned about, are documented for
//! operators in `docs/configuration.md`; keep the two in step.
//!
//! Loading has two stages, and a module for reporting:
//!
//! - `raw`: the file as written. Serde structs take each value loosely, with its position, and
//!   refuse unknown keys; a key with a closed set of values is a serde enum.
//! - `validate`: each key checked and each problem collected, one file for each part of the
//!   file (`daemon`, `cloud`, `schedule`, `policy`, `account`, `render`, `verify`, `store`);
//!   only a fully valid [`Config`] is built.
//! - `diagnostics`: [`Problem`] and [`ConfigError`], the collector validation reports into,
//!   and TOML's own errors (wrong types, unknown keys and tables) turned into problems, every
//!   one rather than the first.
//!
//! This file holds the validated, public types and [`Config::load`] and [`Config::parse`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::cloud::{Api, ClientConfig, CredentialsConfig, Grant, Service};
use crate::password::Policy;
use crate::verify::Verify;

mod diagnostics;
mod raw;
mod validate;

pub use diagnostics::{ConfigError, Problem};
pub(crate) use validate::valid_name;

use diagnostics::{Check, type_errors};
use raw::RawFile;
use validate::{
    validate_accounts, validate_cloud, validate_daemon, validate_default_region, validate_defaults,
    validate_store,
};

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: Daemon,
    /// `[cloud]`: the profile of the accounts that name none, [`DEFAULT_PROFILE`].
    pub cloud: Cloud,
    /// `[cloud.profiles.NAME]`, each with what it does not set taken from `[cloud]`.
    pub profiles: BTreeMap<String, Cloud>,
    /// Shared with the scheduler and the rotations, never copied.
    pub accounts: Vec<Arc<Account>>,
    /// `[store]`: where the source of truth is kept.
    pub store: StoreConfig,
    /// What is allowed but probably not meant (a period under an hour), with line and key:
    /// `check` prints them and `run` logs them; they never fail a load.
    pub warnings: Vec<Problem>,
}

/// The longest `every`, the longest gap between a cron expression's firings, and so the longest
/// `jitter` and `retry_after_failure`: ten years (humantime's `"10y"`). Due times are stamped
/// as RFC 3339, which ends with the year 9999; ten years on any plausible time stays far inside.
pub const MAX_PERIOD: Duration = Duration::from_secs(10 * 31_557_600);

/// A period under an hour loads with a warning: each rotation churns a password that
/// applications must pick up, and the cloud's rate limits are shared with other tools.
pub const SHORT_PERIOD: Duration = Duration::from_secs(3600);

/// The longest `cloud.timeout`, `verify.timeout` and `daemon.shutdown_grace`: an hour. Longer
/// is a typo, and a deadline this far always fits the clock.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// `cloud.requests_per_second`: from one call every 100 s to a million a second (no limit to
/// speak of). Below the floor a rotation's few calls take hours, and a rate near zero
/// overflows the client's interval between calls.
pub const RATE: std::ops::RangeInclusive<f64> = 0.01..=1_000_000.0;

/// `store.lease`: from 5 seconds to 10 minutes, 15 seconds by default
/// (docs/configuration.md#store). Shorter leaves no room for a renewal over a slow network;
/// longer leaves the accounts without a leader that long after one dies.
pub const LEASE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(5)..=Duration::from_secs(600);

/// `store.lease` when not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// What [`Config::lease_margin`] adds to the timeouts: slack for the clocks and the database's
/// round trip.
const MARGIN_SLACK: Duration = Duration::from_secs(1);

/// `[store]`: where the source of truth is kept (docs/configuration.md#store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// `kind = "file"`: the secret files under `state_dir` (docs/protocol.md).
    #[default]
    File,
    /// `kind = "postgresql"`: a PostgreSQL database shared by every replica, one of which leads.
    Postgresql(ClusterConfig),
}

/// `[store]` with `kind = "postgresql"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The file holding the database URL; `None` to look for the systemd credential
    /// `pwrotd-store-url`, then `PWROTD_STORE_URL` ([`crate::cluster::secrets`]).
    pub url_file: Option<PathBuf>,
    /// The file holding the store key; `None` to look for the systemd credential
    /// `pwrotd-store-key`.
    pub key_file: Option<PathBuf>,
    /// How long the leader's lease lasts: it renews every tenth of it, and another replica may
    /// take over once it runs out. Within [`LEASE`], and nine tenths of it longer than
    /// [`Config::lease_margin`].
    pub lease: Duration,
    /// This replica's name in the store (the leader, the mirror times): 1 to 63 of
    /// `A-Z a-z 0-9 . _ -`; the host name by default.
    pub node_name: String,
}

/// `[daemon]`.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub state_dir: PathBuf,
    /// Where `/metrics` and `/healthz` are served; `None` when set to `""`.
    pub metrics_listen: Option<SocketAddr>,
    /// Rotations in flight at once.
    pub max_concurrent: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

/// `daemon.log_format`: `text` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The name `[cloud]` goes by as a profile: an account that names no `profile` has it, and
/// the `profile` label of its series says it. No `[cloud.profiles]` table may take it.
pub const DEFAULT_PROFILE: &str = "default";

/// The table of the profile `name`: `cloud`, or `cloud.profiles.NAME`.
pub fn profile_table(name: &str) -> String {
    if name == DEFAULT_PROFILE {
        "cloud".to_owned()
    } else {
        format!("cloud.profiles.{name}")
    }
}

/// `[cloud]`, or one of `[cloud.profiles]`: where and how an account's calls go.
#[derive(Debug, Clone)]
pub struct Cloud {
    pub client: ClientConfig,
    pub credentials: CredentialsConfig,
}

/// When an account is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A fixed period, counted from the last success recorded in the sink.
    Every(Duration),
    /// A cron expression, seconds field first, evaluated in UTC.
    Cron(Box<Cron>),
}

/// A parsed cron expression (croner, the engine of tokio-cron-scheduler), seconds first.
#[derive(Debug, Clone)]
pub struct Cron {
    expression: String,
    parsed: croner::Cron,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Cron {}

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(expression)
            .map_err(|e| e.to_string())?;
        Ok(Cron {
            expression: expression.to_owned(),
            parsed,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing strictly after `after`, or `None` if it never fires again.
    pub fn next_after(&self, after: std::time::SystemTime) -> Option<std::time::SystemTime> {
        let after: chrono::DateTime<chrono::Utc> = after.into();
        self.parsed
            .find_next_occurrence(&after, false)
            .ok()
            .map(Into::into)
    }
}

/// One `[[account]]`, with `[defaults]` applied.
#[derive(Debug, Clone)]
pub struct Account {
    /// Unique; the sink file name and the metrics label.
    pub name: String,
    pub api: Api,
    /// `cluster_id` for the PolarDB APIs, `instance_id` for `ResetAccountPassword`.
    pub resource_id: String,
    /// The database user whose password rotates.
    pub account_name: String,
    /// The region of the cluster or instance: every call for this account carries it as
    /// `RegionId` and goes to the service's endpoint there. The profile's `region_id` by
    /// default.
    pub region_id: String,
    /// The profile its calls go through: a name of `[cloud.profiles]`, or [`DEFAULT_PROFILE`]
    /// for `[cloud]`. Its credentials sign them, its client settings and endpoints serve them.
    pub profile: String,
    pub password_type: Option<String>,
    pub grants: Vec<Grant>,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub retry_after_failure: Duration,
    pub keep_versions: usize,
    /// Shared between accounts with the same policy.
    pub policy: Arc<Policy>,
    /// Files written for applications after each success.
    pub render: Vec<Render>,
    /// Which database user each rotation changes.
    pub strategy: Strategy,
    /// `[account.verify]`: log in with a new password before promoting it.
    pub verify: Option<Box<Verify>>,
    /// Commands run after the account's files change (a rotation, or a re-render), each an
    /// argv list run with no shell (docs/operations.md#hooks). Empty for most accounts.
    pub on_change: Vec<Vec<String>>,
}

/// One database user, the thing a password belongs to: whatever an account is named, no two
/// rotations of the same user may ever run at once, and its secret file follows it across a
/// rename.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub service: Service,
    pub resource_id: String,
    pub username: String,
}

impl Account {
    /// The database users this account rotates: `account_name`, and its clone under the
    /// alternating strategy.
    pub fn users(&self) -> Vec<UserKey> {
        let key = |username: &str| UserKey {
            service: self.api.service(),
            resource_id: self.resource_id.clone(),
            username: username.to_owned(),
        };
        match &self.strategy {
            Strategy::Single => vec![key(&self.account_name)],
            Strategy::Alternating { clone } => vec![key(&self.account_name), key(clone)],
        }
    }

    /// The database user the next rotation sets, given the user of the current version: always
    /// `account_name`, or under the alternating strategy the user that is not current.
    pub fn next_username(&self, current: Option<&str>) -> &str {
        match (&self.strategy, current) {
            (Strategy::Alternating { clone }, Some(current)) if current == self.account_name => {
                clone
            }
            _ => &self.account_name,
        }
    }
}

/// Which database user a rotation changes (docs/protocol.md#alternating-users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Every rotation changes `account_name`.
    Single,
    /// Rotations alternate between `account_name` and its clone: each one changes the user that
    /// is not current, so the previous user keeps working until the next rotation.
    Alternating { clone: String },
}

/// A render file: the current credentials in an application's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Render {
    pub format: RenderFormat,
    pub path: PathBuf,
    pub mode: u32,
    /// The file's group; `None` keeps pwrotd's own.
    pub gid: Option<u32>,
}

/// A render file's `format`: `env`, `json` or `raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenderFormat {
    /// `PWROTD_USERNAME='…'`, `PWROTD_PASSWORD='…'`, `PWROTD_VERSION=…`: for a shell or
    /// systemd's `EnvironmentFile=`.
    Env,
    /// `{"username","password","version","created_time"}`.
    Json,
    /// The password alone, no newline.
    Raw,
}

impl Config {
    /// Reads, parses and validates a config file. A file holding a secret inline is refused
    /// when group or others can read it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            path: path.to_owned(),
            problems: vec![Problem {
                line: 0,
                key: String::new(),
                message,
            }],
        };
        let src = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let config = Config::parse(&src, path)?;
        if let Some(table) = config
            .tables()
            .find(|(_, c)| c.credentials.has_inline_secret())
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| fail(format!("cannot stat: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "{}.credentials: the file holds a secret inline but its mode is {:04o}, \
                     readable beyond its owner; run chmod 600 on it, or use access_key_secret_file",
                    profile_table(table.0),
                    mode & 0o7777
                )));
            }
        }
        Ok(config)
    }

    /// Parses and validates config text. `path` only labels the problems.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |mut problems: Vec<Problem>| {
            problems.sort_by_key(|p| p.line);
            ConfigError {
                path: path.to_owned(),
                problems,
            }
        };
        let mut check = Check::new(src);
        let raw: RawFile = match toml::from_str(src) {
            Ok(raw) => raw,
            Err(first) => {
                type_errors(&mut check, src, first);
                return Err(fail(check.problems));
            }
        };
        let daemon = validate_daemon(&mut check, &raw.daemon);
        let (cloud, profiles) = validate_cloud(&mut check, &raw.cloud);
        let defaults = validate_defaults(&mut check, &raw.defaults);
        let accounts = validate_accounts(
            &mut check,
            &raw.accounts,
            &defaults,
            &daemon.state_dir,
            (&cloud, &profiles),
        );
        validate_default_region(&mut check, &raw.cloud, &cloud, &profiles, &raw.accounts);
        let longest = longest_timeout(std::iter::once(&cloud).chain(profiles.values()));
        let store = validate_store(&mut check, raw.store.as_ref(), longest);
        if !check.problems.is_empty() {
            return Err(fail(check.problems));
        }
        let mut warnings = check.warnings;
        warnings.sort_by_key(|w| w.line);
        Ok(Config {
            path: path.to_owned(),
            daemon,
            cloud,
            profiles,
            accounts,
            store,
            warnings,
        })
    }

    /// Where `account`'s calls go: its service's endpoint in its region, as its profile has it.
    pub fn endpoint(&self, account: &Account) -> Result<url::Url, String> {
        self.cloud_of(account)
            .client
            .endpoint(account.api.service(), &account.region_id)
    }

    /// The profile named `name`: `[cloud]` for [`DEFAULT_PROFILE`].
    pub fn profile(&self, name: &str) -> Option<&Cloud> {
        if name == DEFAULT_PROFILE {
            Some(&self.cloud)
        } else {
            self.profiles.get(name)
        }
    }

    /// The profile `account` calls through. Validation refused an account naming a profile the
    /// file does not have, so this is never `[cloud]` in its place.
    pub fn cloud_of(&self, account: &Account) -> &Cloud {
        self.profile(&account.profile).unwrap_or(&self.cloud)
    }

    /// The profiles some account calls through, each once by name: `[cloud]` (as
    /// [`DEFAULT_PROFILE`]) first if any account uses it, then the rest by name. Only these
    /// have their credentials looked for and a client built.
    pub fn profiles_in_use(&self) -> Vec<(&str, &Cloud)> {
        let used: std::collections::BTreeSet<&str> =
            self.accounts.iter().map(|a| a.profile.as_str()).collect();
        self.tables()
            .filter(|(name, _)| used.contains(name))
            .collect()
    }

    /// `[cloud]` as [`DEFAULT_PROFILE`], then every profile by name.
    fn tables(&self) -> impl Iterator<Item = (&str, &Cloud)> {
        std::iter::once((DEFAULT_PROFILE, &self.cloud))
            .chain(self.profiles.iter().map(|(name, c)| (name.as_str(), c)))
    }

    pub fn account(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// How much of the lease a leader keeps in hand: it starts no API attempt once less than
    /// this is left before its lease runs out, so that every attempt it sent has ended before
    /// another replica may take over. One attempt's timeout (`cloud.timeout`), plus a second.
    /// A login that verifies changes nothing, so its timeout is no part of it
    /// (docs/cluster.md#one-writer). With profiles, the longest of their timeouts.
    pub fn lease_margin(&self) -> Duration {
        longest_timeout(self.tables().map(|(_, c)| c)) + MARGIN_SLACK
    }
}

/// The longest `timeout` of `[cloud]` and its profiles: how long one attempt may take.
fn longest_timeout<'a>(tables: impl Iterator<Item = &'a Cloud>) -> Duration {
    tables.map(|c| c.client.timeout).max().unwrap_or_default()
}

/// `path` as the file system has it today: its longest existing ancestor with every symbolic
/// link resolved, then the rest normalised. Two paths that reach one file through links
/// resolve alike.
pub fn resolve(path: &Path) -> PathBuf {
    let path = normalize(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// `path` with `.` and empty components dropped and each `..` taking away the component before
/// it, without asking the file system: `/a/./b`, `/a//b` and `/a/x/../b` are all `/a/b`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            // At the root, `..` stays at the root, as the kernel has it.
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
