//! The config file (PRODUCT.md §5): TOML, unknown keys rejected.
//!
//! Parsing has two stages. The file-facing `Raw*` structs take values loosely, with their
//! positions; validation then checks every key and collects every problem, each with its line
//! and key, before it reports. Only a fully valid [`Config`] leaves this module.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use toml::Spanned;

use crate::cloud::client::{Endpoints, parse_endpoint};
use crate::cloud::{
    Api, ClientConfig, CredentialsConfig, Grant, Privilege, Service, SignatureVersion,
};
use crate::password::{self, Class, Policy};
use crate::verify::{Engine, Tls, Verify};

mod diagnostics;
mod raw;

pub use diagnostics::{ConfigError, Problem};

use diagnostics::{Check, type_errors};
use raw::{RawAccount, RawCloud, RawDaemon, RawFile, RawPolicy, RawRender, RawSchedule, RawVerify};

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: Daemon,
    pub cloud: Cloud,
    /// Shared with the scheduler and the rotations, never copied.
    pub accounts: Vec<Arc<Account>>,
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

/// The largest CA file read: a bundle of every public root is a few hundred KiB.
const MAX_CA_FILE: u64 = 16 << 20;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[cloud]`.
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
    /// argv list run with no shell (PRODUCT.md §4). Empty for most accounts.
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

/// Which database user a rotation changes (PRODUCT.md §8).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFormat {
    /// `PWROTD_USERNAME='…'`, `PWROTD_PASSWORD='…'`, `PWROTD_VERSION=…`: for a shell or
    /// systemd's `EnvironmentFile=`.
    Env,
    /// `{"username","password","version","created_time"}`.
    Json,
    /// The password alone, no newline.
    Raw,
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// A duration key as given: `None` when absent, else its line and its value, `None` when it was
/// refused (and reported).
type Given = Option<(usize, Option<Duration>)>;

/// The longest a duration key may be, and how a message names that.
#[derive(Clone, Copy)]
struct Longest(Duration, &'static str);

const PERIOD: Longest = Longest(MAX_PERIOD, "10 years");
const TIMEOUT: Longest = Longest(MAX_TIMEOUT, "an hour");

impl Check {
    /// A duration from zero (when `zero` allows it) to `longest`.
    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        zero: bool,
        longest: Longest,
    ) -> Given {
        let v = value.as_ref()?;
        let line = self.line(v.span().start);
        let text = v.get_ref();
        let problem = match humantime::parse_duration(text) {
            Err(e) => format!("{text:?} is not a duration like \"30s\", \"10m\", \"30d\": {e}"),
            Ok(d) if d.is_zero() && !zero => "must be longer than zero".to_owned(),
            Ok(d) if d > longest.0 => {
                format!("{text:?} is longer than {}, the most it may be", longest.1)
            }
            Ok(d) => return Some((line, Some(d))),
        };
        self.push(line, key, problem);
        Some((line, None))
    }

    /// A duration within bounds, or `default` when absent or refused.
    fn duration_or(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        zero: bool,
        longest: Longest,
        default: Duration,
    ) -> Duration {
        self.duration(value, key, zero, longest)
            .and_then(|(_, d)| d)
            .unwrap_or(default)
    }

    /// A CA file: an absolute path to a readable regular file holding at least one PEM
    /// certificate, checked now rather than at the first connection that needs it.
    fn ca_file(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let path = PathBuf::from(value.get_ref());
        let problem = if !path.is_absolute() {
            Some(format!("{:?} must be an absolute path", value.get_ref()))
        } else {
            match std::fs::metadata(&path) {
                Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                Ok(m) if !m.is_file() => Some(format!("{} is not a file", path.display())),
                Ok(m) if m.len() > MAX_CA_FILE => Some(format!(
                    "{} is larger than {} MiB: not a CA bundle",
                    path.display(),
                    MAX_CA_FILE >> 20
                )),
                Ok(_) => match std::fs::read(&path) {
                    Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                    Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                        Ok(certificates) if !certificates.is_empty() => None,
                        Ok(_) => Some(format!("{} holds no PEM certificate", path.display())),
                        Err(e) => Some(format!(
                            "{} holds no usable PEM certificate: {e}",
                            path.display()
                        )),
                    },
                },
            }
        };
        if let Some(problem) = problem {
            self.at(value, key, problem);
        }
        path
    }

    /// A cron expression's shortest gap between firings over its next few, or why it is
    /// refused: it never fires, stops firing within a few years (a year field), or leaves more
    /// than [`MAX_PERIOD`] between firings. Worked out once per expression.
    fn cron_period(&mut self, cron: &Cron) -> Result<Duration, String> {
        if let Some(known) = self.crons.get(cron.expression()) {
            return known.clone();
        }
        let result = cron_period(cron, self.now);
        self.crons
            .insert(cron.expression().to_owned(), result.clone());
        result
    }

    fn count(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(v) = value else { return default };
        if range.contains(v.get_ref()) {
            *v.get_ref()
        } else {
            self.at(
                v,
                key,
                format!(
                    "{} is out of range {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
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
        if config.cloud.credentials.has_inline_secret() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| fail(format!("cannot stat: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "cloud.credentials: the file holds a secret inline but its mode is {:04o}, \
                     readable beyond its owner; run chmod 600 on it, or use access_key_secret_file",
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
        let cloud = validate_cloud(&mut check, &raw.cloud);
        let defaults = validate_defaults(&mut check, &raw.defaults);
        let mut accounts = Vec::new();
        let mut names = HashSet::new();
        let mut targets = HashSet::new();
        let mut renders = Renders {
            state_dir: (!daemon.state_dir.as_os_str().is_empty())
                .then(|| resolve(&daemon.state_dir)),
            seen: std::collections::HashMap::new(),
        };
        for (i, account) in raw.accounts.iter().enumerate() {
            if let Some(a) = validate_account(&mut check, i, account, &defaults, &mut renders) {
                if !names.insert(a.name.clone()) {
                    let line = check.line(account.span().start);
                    check.push(
                        line,
                        format!("account \"{}\".name", a.name),
                        "is not unique",
                    );
                }
                let users =
                    std::iter::once(("account_name", &a.account_name)).chain(match &a.strategy {
                        Strategy::Alternating { clone } => Some(("clone_account_name", clone)),
                        Strategy::Single => None,
                    });
                for (field, user) in users {
                    if !targets.insert((a.api.service(), a.resource_id.clone(), user.clone())) {
                        let line = check.line(account.span().start);
                        check.push(
                            line,
                            format!("account \"{}\".{field}", a.name),
                            format!(
                                "{user} on {} is already rotated by another account entry",
                                a.resource_id
                            ),
                        );
                    }
                }
                accounts.push(Arc::new(a));
            }
        }
        if !check.problems.is_empty() {
            return Err(fail(check.problems));
        }
        let mut warnings = check.warnings;
        warnings.sort_by_key(|w| w.line);
        Ok(Config {
            path: path.to_owned(),
            daemon,
            cloud,
            accounts,
            warnings,
        })
    }

    pub fn account(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

fn validate_daemon(check: &mut Check, raw: &RawDaemon) -> Daemon {
    let state_dir = match &raw.state_dir {
        Some(dir) if !Path::new(dir.get_ref()).is_absolute() => {
            check.at(
                dir,
                "daemon.state_dir",
                format!("{:?} must be an absolute path", dir.get_ref()),
            );
            PathBuf::new()
        }
        Some(dir) => PathBuf::from(dir.get_ref()),
        None => PathBuf::from("/var/lib/pwrotd"),
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(addr) if addr.get_ref().is_empty() => None,
        Some(addr) => match addr.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                check.at(
                    addr,
                    "daemon.metrics_listen",
                    format!(
                        "{:?} is not an address like \"127.0.0.1:9860\"",
                        addr.get_ref()
                    ),
                );
                None
            }
        },
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9860))),
    };
    let max_concurrent =
        check.count(&raw.max_concurrent, "daemon.max_concurrent", 1..=1024, 4) as usize;
    let shutdown_grace = check.duration_or(
        &raw.shutdown_grace,
        "daemon.shutdown_grace",
        true,
        TIMEOUT,
        Duration::from_secs(30),
    );
    let log_format = match raw.log_format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "text")) => LogFormat::Text,
        Some((_, "json")) => LogFormat::Json,
        Some((f, other)) => {
            check.at(
                f,
                "daemon.log_format",
                format!("{other:?} is neither \"text\" nor \"json\""),
            );
            LogFormat::Text
        }
    };
    Daemon {
        state_dir,
        metrics_listen,
        max_concurrent,
        shutdown_grace,
        log_format,
    }
}

fn validate_cloud(check: &mut Check, raw: &RawCloud) -> Cloud {
    let mut client = ClientConfig::default();
    match &raw.region_id {
        Some(r) if !r.get_ref().is_empty() => client.region_id = r.get_ref().clone(),
        Some(r) => check.at(r, "cloud.region_id", "must not be empty"),
        None => check.push(
            0,
            "cloud.region_id",
            "is required, for example \"cn-hangzhou\"",
        ),
    }
    client.signature = match raw.signature.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "v1")) => SignatureVersion::V1,
        Some((_, "v3")) => SignatureVersion::V3,
        Some((s, other)) => {
            check.at(
                s,
                "cloud.signature",
                format!("{other:?} is neither \"v1\" nor \"v3\""),
            );
            SignatureVersion::V1
        }
    };
    client.timeout = check.duration_or(
        &raw.timeout,
        "cloud.timeout",
        false,
        TIMEOUT,
        client.timeout,
    );
    client.connect_timeout = client.connect_timeout.min(client.timeout);
    client.max_attempts = check.count(&raw.max_attempts, "cloud.max_attempts", 1..=100, 5) as u32;
    if let Some(rps) = &raw.requests_per_second {
        if RATE.contains(rps.get_ref()) {
            client.requests_per_second = *rps.get_ref();
        } else {
            check.at(
                rps,
                "cloud.requests_per_second",
                format!(
                    "{} is out of range {}..={} (calls a second to each service)",
                    rps.get_ref(),
                    RATE.start(),
                    RATE.end()
                ),
            );
        }
    }
    if let Some(ca) = &raw.ca_file {
        client.ca_file = Some(check.ca_file(ca, "cloud.ca_file"));
    }
    let mut endpoints = Endpoints::default();
    for (service, value) in [
        (Service::PolarDb, &raw.endpoints.polardb),
        (Service::Rds, &raw.endpoints.rds),
    ] {
        let Some(value) = value else { continue };
        match parse_endpoint(value.get_ref()) {
            Ok(url) => match service {
                Service::PolarDb => endpoints.polardb = url,
                Service::Rds => endpoints.rds = url,
            },
            Err(e) => check.at(value, format!("cloud.endpoints.{}", service.name()), e),
        }
    }
    client.endpoints = endpoints;
    let c = &raw.credentials;
    for (inline, file, key) in [
        (
            c.access_key_secret.as_ref(),
            &c.access_key_secret_file,
            "access_key_secret",
        ),
        (
            c.security_token.as_ref(),
            &c.security_token_file,
            "security_token",
        ),
    ] {
        if let (Some(inline), Some(_)) = (inline, file) {
            check.at(
                inline,
                format!("cloud.credentials.{key}"),
                format!("give {key} or {key}_file, not both"),
            );
        }
    }
    let credentials = CredentialsConfig {
        access_key_id: c.access_key_id.clone(),
        access_key_secret: c
            .access_key_secret
            .as_ref()
            .map(|s| SecretString::from(s.get_ref().clone())),
        security_token: c
            .security_token
            .as_ref()
            .map(|s| SecretString::from(s.get_ref().clone())),
        access_key_id_file: c.access_key_id_file.clone(),
        access_key_secret_file: c.access_key_secret_file.clone(),
        security_token_file: c.security_token_file.clone(),
    };
    Cloud {
        client,
        credentials,
    }
}

/// Whether a name is safe as a file name and a metrics label.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn validate_account(
    check: &mut Check,
    index: usize,
    raw: &Spanned<RawAccount>,
    defaults: &Defaults,
    renders: &mut Renders,
) -> Option<Account> {
    let before = check.problems.len();
    let start = check.line(raw.span().start);
    let a = raw.get_ref();
    let label = match &a.name {
        Some(n) => format!("account \"{}\"", n.get_ref()),
        None => format!("account[{index}]"),
    };
    let key = |k: &str| format!("{label}.{k}");

    let name = match &a.name {
        Some(n) if valid_name(n.get_ref()) => n.get_ref().clone(),
        Some(n) => {
            check.at(n, key("name"), "use 1 to 128 of A-Z a-z 0-9 - _ . (not starting with a dot): it names the sink file");
            String::new()
        }
        None => {
            check.push(start, key("name"), "is required");
            String::new()
        }
    };
    let api = match &a.api {
        Some(s) => match s.get_ref().parse::<Api>() {
            Ok(api) => Some(api),
            Err(_) => {
                let allowed: Vec<&str> = Api::ALL.iter().map(|a| a.as_str()).collect();
                check.at(
                    s,
                    key("api"),
                    format!("{:?} is not one of {}", s.get_ref(), allowed.join(", ")),
                );
                None
            }
        },
        None => {
            check.push(start, key("api"), "is required");
            None
        }
    };
    let resource_id = match api.map(Api::service) {
        Some(Service::PolarDb) => {
            if let Some(i) = &a.instance_id {
                check.at(
                    i,
                    key("instance_id"),
                    "belongs to ResetAccountPassword (RDS); PolarDB APIs take cluster_id",
                );
            }
            required(check, &a.cluster_id, &key("cluster_id"), start)
        }
        Some(Service::Rds) => {
            if let Some(c) = &a.cluster_id {
                check.at(
                    c,
                    key("cluster_id"),
                    "belongs to the PolarDB APIs; ResetAccountPassword takes instance_id",
                );
            }
            required(check, &a.instance_id, &key("instance_id"), start)
        }
        None => String::new(),
    };
    let account_name = required(check, &a.account_name, &key("account_name"), start);
    if let (Some(t), Some(Api::ResetAccount | Api::ResetAccountPassword)) = (&a.password_type, api)
    {
        check.at(
            t,
            key("password_type"),
            "only ModifyAccountPassword and ModifyAccountPasswordZonal accept it",
        );
    }
    let mut grants = Vec::new();
    for g in &a.grants {
        if api == Some(Api::ResetAccount) {
            check.at(
                g,
                key("grants"),
                "ResetAccount rotates a privileged account, which has every privilege: \
                 GrantAccountPrivilege refuses it (IncorrectAccountPrivilegeType)",
            );
            break;
        }
        if api.is_some_and(|api| api.service() != Service::PolarDb) {
            check.at(
                g,
                key("grants"),
                "GrantAccountPrivilege is a PolarDB API; RDS accounts cannot have grants",
            );
            break;
        }
        let raw_grant = g.get_ref();
        if raw_grant.db.is_empty() || raw_grant.db.contains(',') {
            check.at(
                g,
                key("grants.db"),
                format!("{:?} is not a database name", raw_grant.db),
            );
        }
        match raw_grant.privilege.parse::<Privilege>() {
            Ok(privilege) => grants.push(Grant {
                db: raw_grant.db.clone(),
                privilege,
            }),
            Err(_) => {
                let allowed: Vec<&str> = Privilege::ALL.iter().map(|p| p.as_str()).collect();
                check.at(
                    g,
                    key("grants.privilege"),
                    format!(
                        "{:?} is not one of {}",
                        raw_grant.privilege,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    // Schedule: an account's `every` or `cron` replaces the default schedule whole. What the
    // account does not set comes from `[defaults]`, whose problems are reported there, once.
    let s = &a.schedule();
    if let (Some(_), Some(cron)) = (&s.every, &s.cron) {
        check.at(cron, key("cron"), "give `every` or `cron`, not both");
    }
    let own_schedule = s.every.is_some() || s.cron.is_some();
    let timing = if own_schedule {
        schedule(check, s, &key(""))
    } else {
        defaults.timing.clone()
    };
    let jitter = match &s.jitter {
        Some(_) => (
            check.duration(&s.jitter, &key("jitter"), true, PERIOD),
            true,
        ),
        None => (defaults.jitter, false),
    };
    let retry = match &s.retry_after_failure {
        Some(_) => (
            check.duration(
                &s.retry_after_failure,
                &key("retry_after_failure"),
                false,
                PERIOD,
            ),
            true,
        ),
        None => (defaults.retry_after_failure, false),
    };
    if let Some(timing) = &timing {
        within_period(
            check,
            &key,
            timing,
            own_schedule,
            [
                ("jitter", jitter.0, jitter.1),
                ("retry_after_failure", retry.0, retry.1),
            ],
        );
    }
    let period = timing.as_ref().map_or(DEFAULT_EVERY, |t| t.period);
    let jitter = match jitter.0 {
        None => DEFAULT_JITTER.min(period),
        Some((_, d)) => d.unwrap_or_default(),
    };
    let retry_after_failure = match retry.0 {
        None => DEFAULT_RETRY.min(period),
        Some((_, d)) => d.unwrap_or(DEFAULT_RETRY),
    };
    let keep_versions = match &s.keep_versions {
        Some(_) => check.count(&s.keep_versions, &key("keep_versions"), 0..=100, 5) as usize,
        None => defaults.keep_versions,
    };
    let p = &s.password;
    let policy = if p.length.is_some()
        || p.require.is_some()
        || p.special.is_some()
        || p.exclude.is_some()
    {
        policy(
            check,
            p,
            &defaults.raw.password,
            &key("password"),
            start,
            defaults.policy.is_none(),
        )
    } else {
        defaults.policy.clone()
    };
    let mut render = Vec::new();
    for (i, r) in a.render.iter().enumerate() {
        if let Some(valid) = validate_render(check, r, &key(&format!("render[{i}]")), renders) {
            render.push(valid);
        }
    }
    let strategy = validate_strategy(check, a, &account_name, keep_versions, &key, start);
    let verify = a
        .verify
        .as_ref()
        .and_then(|v| validate_verify(check, v, &key("verify")))
        .map(Box::new);

    let mut on_change = Vec::new();
    for (i, command) in a.on_change.iter().enumerate() {
        match command.get_ref().first() {
            Some(program) if !program.trim().is_empty() => on_change.push(command.get_ref().clone()),
            _ => check.at(
                command,
                key(&format!("on_change[{i}]")),
                "must be a command as a list, program first, like [\"systemctl\", \"reload\", \"app.service\"]",
            ),
        }
    }

    if check.problems.len() > before {
        return None;
    }
    Some(Account {
        name,
        api: api?,
        resource_id,
        account_name,
        password_type: a.password_type.as_ref().map(|t| t.get_ref().clone()),
        grants,
        schedule: timing?.schedule,
        jitter,
        retry_after_failure,
        keep_versions,
        policy: policy?,
        render,
        strategy,
        verify,
        on_change,
    })
}

fn validate_strategy(
    check: &mut Check,
    a: &RawAccount,
    account_name: &str,
    keep_versions: usize,
    key: &dyn Fn(&str) -> String,
    line: usize,
) -> Strategy {
    let alternating = match a.strategy.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "single")) => false,
        Some((_, "alternating")) => true,
        Some((s, other)) => {
            check.at(
                s,
                key("strategy"),
                format!("{other:?} is neither \"single\" nor \"alternating\""),
            );
            return Strategy::Single;
        }
    };
    match (alternating, &a.clone_account_name) {
        (false, None) => Strategy::Single,
        (false, Some(clone)) => {
            check.at(
                clone,
                key("clone_account_name"),
                "is used only with strategy = \"alternating\"",
            );
            Strategy::Single
        }
        (true, None) => {
            check.push(
                line,
                key("clone_account_name"),
                "is required with strategy = \"alternating\": the second database user",
            );
            Strategy::Single
        }
        (true, Some(clone)) => {
            let name = clone.get_ref().trim();
            if name.is_empty() {
                check.at(clone, key("clone_account_name"), "must not be empty");
            } else if name == account_name {
                check.at(
                    clone,
                    key("clone_account_name"),
                    "must differ from account_name: alternating needs two database users",
                );
            }
            if keep_versions == 0 {
                check.push(
                    line,
                    key("keep_versions"),
                    "must be at least 1 with strategy = \"alternating\": the previous user's \
                     password stays in the sink until the next rotation",
                );
            }
            Strategy::Alternating {
                clone: name.to_owned(),
            }
        }
    }
}

fn validate_verify(check: &mut Check, raw: &Spanned<RawVerify>, key: &str) -> Option<Verify> {
    let before = check.problems.len();
    let line = check.line(raw.span().start);
    let v = raw.get_ref();
    let engine = match v.engine.as_ref().map(|e| (e, e.get_ref().as_str())) {
        Some((_, "mysql")) => Engine::Mysql,
        Some((_, "postgresql")) => Engine::Postgresql,
        Some((e, other)) => {
            check.at(
                e,
                format!("{key}.engine"),
                format!("{other:?} is neither \"mysql\" nor \"postgresql\""),
            );
            Engine::Mysql
        }
        None => {
            check.push(
                line,
                format!("{key}.engine"),
                "is required: \"mysql\" or \"postgresql\"",
            );
            Engine::Mysql
        }
    };
    let host = required(check, &v.host, &format!("{key}.host"), line);
    let port = u16::try_from(check.count(
        &v.port,
        &format!("{key}.port"),
        1..=65535,
        i64::from(engine.default_port()),
    ))
    .unwrap_or(engine.default_port());
    let database = match &v.database {
        Some(d) if d.get_ref().trim().is_empty() => {
            check.at(d, format!("{key}.database"), "must not be empty");
            None
        }
        d => d.as_ref().map(|d| d.get_ref().clone()),
    };
    let tls = match v.tls.as_ref() {
        None => Some(Tls::VerifyFull),
        Some(t) => match t.get_ref() {
            toml::Value::Boolean(true) => Some(Tls::VerifyFull),
            toml::Value::Boolean(false) => Some(Tls::Disable),
            toml::Value::String(name) => Tls::parse(name),
            _ => None,
        }
        .or_else(|| {
            let names = Tls::NAMES.map(|n| format!("{n:?}")).join(", ");
            check.at(
                t,
                format!("{key}.tls"),
                format!("{} is not one of {names}, true or false", t.get_ref()),
            );
            None
        }),
    }
    .unwrap_or(Tls::VerifyFull);
    let ca_file = v
        .ca_file
        .as_ref()
        .map(|ca| check.ca_file(ca, &format!("{key}.ca_file")));
    let timeout = check.duration_or(
        &v.timeout,
        &format!("{key}.timeout"),
        false,
        TIMEOUT,
        Duration::from_secs(60),
    );
    (check.problems.len() == before).then_some(Verify {
        engine,
        host,
        port,
        database,
        tls,
        ca_file,
        timeout,
    })
}

/// The render files of the accounts checked so far, and the state directory they must keep out of.
struct Renders {
    /// Resolved (see [`resolve`]); `None` when `daemon.state_dir` itself was refused.
    state_dir: Option<PathBuf>,
    /// Each resolved render path, with the key and line of the entry that named it first.
    seen: std::collections::HashMap<PathBuf, (String, usize)>,
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

fn validate_render(
    check: &mut Check,
    raw: &Spanned<RawRender>,
    key: &str,
    renders: &mut Renders,
) -> Option<Render> {
    let before = check.problems.len();
    let r = raw.get_ref();
    let format = match r.format.as_str() {
        "env" => RenderFormat::Env,
        "json" => RenderFormat::Json,
        "raw" => RenderFormat::Raw,
        other => {
            check.at(
                raw,
                format!("{key}.format"),
                format!("{other:?} is not one of env, json, raw"),
            );
            RenderFormat::Raw
        }
    };
    let written = PathBuf::from(&r.path);
    let path = normalize(&written);
    let resolved = resolve(&written);
    if !written.is_absolute() || written.file_name().is_none() {
        check.at(
            raw,
            format!("{key}.path"),
            format!("{:?} must be an absolute file path", r.path),
        );
    } else {
        let line = check.line(raw.span().start);
        if let Some(state_dir) = &renders.state_dir
            && (resolved.starts_with(state_dir) || state_dir.starts_with(&resolved))
        {
            check.push(
                line,
                format!("{key}.path"),
                format!(
                    "{:?} {} daemon.state_dir {:?}, where pwrotd keeps its secret files, \
                     temporary files, lock and audit log",
                    r.path,
                    if resolved.starts_with(state_dir) {
                        "lies in"
                    } else {
                        "would replace a directory above"
                    },
                    state_dir.display().to_string(),
                ),
            );
        } else if let Some((first, first_line)) = renders.seen.get(&resolved) {
            let message = format!(
                "{:?} is already the file of {first} (line {first_line}): two render entries \
                 cannot share a file",
                r.path
            );
            check.push(line, format!("{key}.path"), message);
        } else {
            renders.seen.insert(resolved, (key.to_owned(), line));
        }
    }
    let mode = match &r.mode {
        None => 0o600,
        Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
            Ok(mode) if mode & 0o007 == 0 && mode & 0o400 != 0 && mode <= 0o777 => mode,
            Ok(_) => {
                check.at(
                    raw,
                    format!("{key}.mode"),
                    format!("{m:?} must give the owner read access and others none, like \"0640\""),
                );
                0o600
            }
            Err(_) => {
                check.at(
                    raw,
                    format!("{key}.mode"),
                    format!("{m:?} is not an octal mode like \"0640\""),
                );
                0o600
            }
        },
    };
    let gid = match &r.group {
        None => None,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => match nix::unistd::Group::from_name(g) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                _ => {
                    check.at(
                        raw,
                        format!("{key}.group"),
                        format!("no group named {g:?} on this host"),
                    );
                    None
                }
            },
        },
    };
    (check.problems.len() == before).then_some(Render {
        format,
        path,
        mode,
        gid,
    })
}

fn required(check: &mut Check, value: &Option<Spanned<String>>, key: &str, line: usize) -> String {
    match value {
        Some(v) if !v.get_ref().trim().is_empty() => v.get_ref().clone(),
        Some(v) => {
            check.at(v, key, "must not be empty");
            String::new()
        }
        None => {
            check.push(line, key, "is required");
            String::new()
        }
    }
}

/// A schedule, with the shortest time between two of its rotations.
#[derive(Clone)]
struct Timing {
    schedule: Schedule,
    /// `every` itself, or a cron expression's shortest gap between firings.
    period: Duration,
    /// The line of `every` or `cron`; 0 for the built-in default.
    line: usize,
}

/// The schedule when neither `[defaults]` nor the account gives one.
const DEFAULT_EVERY: Duration = Duration::from_secs(30 * 86_400);
/// `jitter` and `retry_after_failure` when nothing sets them, each at most the period.
const DEFAULT_JITTER: Duration = Duration::from_secs(600);
const DEFAULT_RETRY: Duration = Duration::from_secs(300);

/// `cron`, else `every`, else the built-in 30 days; `None` when refused (and reported). Both
/// given is the caller's to report. A period under an hour is a warning.
fn schedule(check: &mut Check, s: &RawSchedule, prefix: &str) -> Option<Timing> {
    if let Some(cron) = &s.cron {
        let key = format!("{prefix}cron");
        let line = check.line(cron.span().start);
        let parsed = match Cron::parse(cron.get_ref()) {
            Ok(parsed) => parsed,
            Err(e) => {
                check.push(
                    line,
                    key,
                    format!(
                        "{:?} is not a cron expression with the seconds field first, like \"0 0 3 * * Sun\": {e}",
                        cron.get_ref()
                    ),
                );
                return None;
            }
        };
        let period = match check.cron_period(&parsed) {
            Ok(period) => period,
            Err(why) => {
                check.push(line, key, format!("{:?} {why}", cron.get_ref()));
                return None;
            }
        };
        if period < SHORT_PERIOD {
            check.warn(
                line,
                key,
                format!(
                    "{:?} fires as often as every {}, under an hour: {SHORT_PERIOD_NOTE}",
                    cron.get_ref(),
                    humantime::format_duration(period)
                ),
            );
        }
        return Some(Timing {
            schedule: Schedule::Cron(Box::new(parsed)),
            period,
            line,
        });
    }
    let key = format!("{prefix}every");
    match check.duration(&s.every, &key, false, PERIOD) {
        None => Some(Timing {
            schedule: Schedule::Every(DEFAULT_EVERY),
            period: DEFAULT_EVERY,
            line: 0,
        }),
        Some((_, None)) => None,
        Some((line, Some(every))) => {
            if every < SHORT_PERIOD {
                check.warn(
                    line,
                    key,
                    format!(
                        "{} is under an hour: {SHORT_PERIOD_NOTE}",
                        humantime::format_duration(every)
                    ),
                );
            }
            Some(Timing {
                schedule: Schedule::Every(every),
                period: every,
                line,
            })
        }
    }
}

const SHORT_PERIOD_NOTE: &str = "each rotation hands applications a new password and spends \
     API calls; fine for a demo or a test, rarely meant in production";

/// See [`Check::cron_period`].
fn cron_period(cron: &Cron, now: SystemTime) -> Result<Duration, String> {
    /// How far on the expression must still fire: past any year field written for today.
    const LATER: Duration = Duration::from_secs(5 * 31_557_600);
    /// How many gaps between firings are measured.
    const GAPS: usize = 8;
    let when = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let gap = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    let Some(first) = cron.next_after(now) else {
        return Err(
            "never fires: no date matches it (a day no month has, or a year gone by)".into(),
        );
    };
    if gap(now, first) > MAX_PERIOD {
        return Err(format!(
            "first fires at {}, more than 10 years from now",
            when(first)
        ));
    }
    let later = now + LATER;
    match cron.next_after(later) {
        None => {
            return Err(format!(
                "stops firing: it has no time after {}",
                when(later)
            ));
        }
        Some(next) if gap(later, next) > MAX_PERIOD => {
            return Err(format!(
                "has no time between {} and {}: more than 10 years",
                when(later),
                when(next)
            ));
        }
        Some(_) => {}
    }
    let (mut shortest, mut at) = (MAX_PERIOD, first);
    for _ in 0..GAPS {
        let Some(next) = cron.next_after(at) else {
            break;
        };
        if gap(at, next) > MAX_PERIOD {
            return Err(format!(
                "has no time between {} and {}: more than 10 years",
                when(at),
                when(next)
            ));
        }
        shortest = shortest.min(gap(at, next));
        at = next;
    }
    Ok(shortest)
}

/// `jitter` and `retry_after_failure` are at most the schedule's period: a catch-up spread
/// wider than the period runs into the next rotation, and a first retry after it is no retry.
/// `own_schedule` tells whether the period is the caller's own or inherited.
fn within_period(
    check: &mut Check,
    key: &dyn Fn(&str) -> String,
    timing: &Timing,
    own_schedule: bool,
    values: [(&str, Given, bool); 2],
) {
    let show = humantime::format_duration;
    for (name, given, own) in values {
        let Some((line, Some(value))) = given else {
            continue;
        };
        // Both inherited: `[defaults]` has reported it already.
        if value <= timing.period || !(own || own_schedule) {
            continue;
        }
        let period = match timing.schedule {
            Schedule::Every(_) => format!("the period, {}", show(timing.period)),
            Schedule::Cron(_) => format!(
                "the shortest gap between the cron's firings, {}",
                show(timing.period)
            ),
        };
        if own {
            check.push(
                line,
                key(name),
                format!("{} is longer than {period}", show(value)),
            );
        } else {
            check.push(
                timing.line,
                key(name),
                format!(
                    "the {name} of {} from [defaults] (line {line}) is longer than {period}; \
                     give this account a {name} of its own",
                    show(value)
                ),
            );
        }
    }
}

/// `[defaults]`, checked once: its problems are its own, under `defaults.` keys, whether or
/// not an account takes the value. Each account takes what it does not set itself.
struct Defaults<'a> {
    raw: &'a RawSchedule,
    /// `None` when refused (and reported).
    timing: Option<Timing>,
    jitter: Given,
    retry_after_failure: Given,
    keep_versions: usize,
    /// `None` when refused (and reported).
    policy: Option<Arc<Policy>>,
}

fn validate_defaults<'a>(check: &mut Check, raw: &'a RawSchedule) -> Defaults<'a> {
    let key = |k: &str| format!("defaults.{k}");
    if let Some(cron) = &raw.cron
        && raw.every.is_some()
    {
        check.at(cron, key("cron"), "give `every` or `cron`, not both");
    }
    let timing = schedule(check, raw, "defaults.");
    let jitter = check.duration(&raw.jitter, &key("jitter"), true, PERIOD);
    let retry_after_failure = check.duration(
        &raw.retry_after_failure,
        &key("retry_after_failure"),
        false,
        PERIOD,
    );
    if let Some(timing) = &timing {
        within_period(
            check,
            &key,
            timing,
            true,
            [
                ("jitter", jitter, true),
                ("retry_after_failure", retry_after_failure, true),
            ],
        );
    }
    let keep_versions = check.count(&raw.keep_versions, &key("keep_versions"), 0..=100, 5) as usize;
    let policy = policy(
        check,
        &RawPolicy::default(),
        &raw.password,
        &key("password"),
        0,
        false,
    );
    Defaults {
        raw,
        timing,
        jitter,
        retry_after_failure,
        keep_versions,
        policy,
    }
}

/// The password policy, key by key from `own` or else `default`. With `inherited_reported`,
/// `default` was refused on its own already, so problems with the keys it gives are not
/// reported again.
fn policy(
    check: &mut Check,
    own: &RawPolicy,
    default: &RawPolicy,
    key: &str,
    line: usize,
    inherited_reported: bool,
) -> Option<Arc<Policy>> {
    let reported = |name: &str| {
        inherited_reported
            && match name {
                "length" => own.length.is_none(),
                "require" => own.require.is_none(),
                "special" => own.special.is_none(),
                _ => own.exclude.is_none(),
            }
    };
    let length = own.length.as_ref().or(default.length.as_ref());
    let require = own.require.as_ref().or(default.require.as_ref());
    let special = own.special.as_ref().or(default.special.as_ref());
    let exclude = own.exclude.as_ref().or(default.exclude.as_ref());
    let (special_span, exclude_span) = (special.map(|v| v.span()), exclude.map(|v| v.span()));
    let line_of = |check: &Check, name: &str| {
        let span = match name {
            "length" => length.map(|v| v.span()),
            "require" => require.map(|v| v.span()),
            "special" => special_span.clone(),
            _ => exclude_span.clone(),
        };
        span.map_or(line, |s| check.line(s.start))
    };
    let mut classes = Vec::new();
    if let Some(require) = require {
        for name in require.get_ref() {
            match Class::ALL.into_iter().find(|c| c.name() == name) {
                Some(c) => classes.push(c),
                None if reported("require") => {}
                None => check.at(
                    require,
                    format!("{key}.require"),
                    format!("{name:?} is not one of upper, lower, digit, special"),
                ),
            }
        }
    } else {
        classes.extend(Class::ALL);
    }
    let length = length.map_or(password::DEFAULT_LENGTH as i64, |l| *l.get_ref());
    let length = usize::try_from(length).unwrap_or(0);
    let special = special.map_or(password::SPECIALS, |s| s.get_ref());
    let exclude = exclude.map_or("", |s| s.get_ref());
    let cache_key = (
        length,
        classes.clone(),
        special.to_owned(),
        exclude.to_owned(),
    );
    if let Some(shared) = check.policies.get(&cache_key) {
        return Some(shared.clone());
    }
    match Policy::new(length, &classes, special, exclude) {
        Ok(p) => {
            let shared = Arc::new(p);
            check.policies.insert(cache_key, shared.clone());
            Some(shared)
        }
        Err(errors) => {
            for e in errors.into_iter().filter(|e| !reported(e.key)) {
                let line = line_of(check, e.key);
                check.push(line, format!("{key}.{}", e.key), e.message);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
