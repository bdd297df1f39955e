//! The credentials every request is signed with, and where they come from
//! (docs/configuration.md#credentials): static keys or files, systemd credentials, the
//! `ALIBABA_CLOUD_*` environment variables, OIDC/RRSA, the Alibaba Cloud CLI's profile file,
//! the ECS instance's RAM role, a credentials URI, and STS `AssumeRole` on top of any of them.
//!
//! # Layout
//!
//! - `chain`: which source `[cloud.credentials]` and the environment select, decided once at
//!   start without a remote call, in the official SDKs' order.
//! - `static_keys`: keys inline, in files (read again for every request), from systemd or the
//!   environment.
//! - `ecs`, `oidc`, `cli_profile`, `uri`, `sts`: one file per remote source.
//! - `cache`: temporary credentials, cached and refreshed before they expire by a background
//!   task; never handed out once expired.
//! - `fetch`: the HTTP plumbing the remote sources share.
//!
//! Secrets and tokens are [`SecretString`]s: they never reach `Debug` output, a log line, an
//! error or a metric label.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

mod cache;
mod chain;
mod cli_profile;
mod ecs;
mod fetch;
mod oidc;
mod static_keys;
mod sts;
mod uri;

pub use chain::{check_metadata_endpoint, check_role_arn};

/// Names of the systemd credentials (`LoadCredential=`), under `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_ACCESS_KEY_ID: &str = "alibaba-cloud-access-key-id";
pub const SYSTEMD_ACCESS_KEY_SECRET: &str = "alibaba-cloud-access-key-secret";
pub const SYSTEMD_SECURITY_TOKEN: &str = "alibaba-cloud-security-token";

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
pub const ENV_CREDENTIALS_URI: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";

/// The metadata service of every ECS instance.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// STS's central endpoint.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// The role session name when none is given.
pub const DEFAULT_SESSION_NAME: &str = "pwrotd";
/// `DurationSeconds` when `assume_role.duration` is not given: an hour, STS's own default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
/// What STS accepts as `DurationSeconds`: 15 minutes to 12 hours (the role's
/// `MaxSessionDuration` may allow less).
pub const DURATION_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(900)..=Duration::from_secs(12 * 3600);

/// An AccessKey pair, with an STS token when the pair is temporary.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: Option<SecretString>,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::from(access_key_secret.into()),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(SecretString::from(token.into()));
        self
    }

    pub fn secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    pub fn token(&self) -> Option<&str> {
        self.security_token.as_ref().map(|t| t.expose_secret())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `[cloud.credentials] source`: which source to use; `chain` tries them in the SDKs' order.
/// Read from the config as its [`SourceKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Chain,
    Static,
    EcsRamRole,
    Oidc,
    CliProfile,
    Uri,
}

impl SourceKind {
    /// The name the config and the errors use.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Chain => "chain",
            SourceKind::Static => "static",
            SourceKind::EcsRamRole => "ecs_ram_role",
            SourceKind::Oidc => "oidc",
            SourceKind::CliProfile => "cli_profile",
            SourceKind::Uri => "uri",
        }
    }
}

/// `assume_role = { role_arn, session_name, external_id, duration }`: STS `AssumeRole` with
/// the credentials of the source below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    pub session_name: String,
    /// The `sts:ExternalId` the role's trust policy may ask for. Not a secret, but not logged.
    pub external_id: Option<String>,
    /// `DurationSeconds`, within [`DURATION_RANGE`].
    pub duration: Duration,
}

/// `source = "oidc"`'s keys; each one absent falls back to its environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcConfig {
    pub role_arn: Option<String>,
    pub oidc_provider_arn: Option<String>,
    pub oidc_token_file: Option<PathBuf>,
    pub role_session_name: Option<String>,
}

/// `[cloud.credentials]` as the validated config gives it. Inline values and files may be
/// mixed per key.
#[derive(Clone, Default)]
pub struct CredentialsConfig {
    pub source: SourceKind,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<SecretString>,
    pub security_token: Option<SecretString>,
    pub access_key_id_file: Option<PathBuf>,
    pub access_key_secret_file: Option<PathBuf>,
    pub security_token_file: Option<PathBuf>,
    /// `ecs_ram_role`: the role; `None` to ask the metadata service.
    pub role_name: Option<String>,
    /// `ecs_ram_role`: `None` for [`DEFAULT_METADATA_ENDPOINT`].
    pub metadata_endpoint: Option<Url>,
    /// `ecs_ram_role`: go on without a session token (IMDSv1) when none can be had.
    pub imdsv1_fallback: bool,
    pub oidc: OidcConfig,
    /// `cli_profile`: the profile; `None` for `ALIBABA_CLOUD_PROFILE`, then the file's current.
    pub profile: Option<String>,
    /// `cli_profile`: `None` for `ALIBABA_CLOUD_CONFIG_FILE`, then `~/.aliyun/config.json`.
    pub file: Option<PathBuf>,
    /// `uri`: `None` for `ALIBABA_CLOUD_CREDENTIALS_URI`.
    pub uri: Option<Url>,
    pub assume_role: Option<AssumeRoleConfig>,
    /// `[cloud] sts_endpoint`: `None` for [`DEFAULT_STS_ENDPOINT`].
    pub sts_endpoint: Option<Url>,
}

impl fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<SecretString>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("CredentialsConfig")
            .field("source", &self.source)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &redacted(&self.access_key_secret))
            .field("security_token", &redacted(&self.security_token))
            .field("access_key_id_file", &self.access_key_id_file)
            .field("access_key_secret_file", &self.access_key_secret_file)
            .field("security_token_file", &self.security_token_file)
            .field("role_name", &self.role_name)
            .field("metadata_endpoint", &self.metadata_endpoint)
            .field("imdsv1_fallback", &self.imdsv1_fallback)
            .field("oidc", &self.oidc)
            .field("profile", &self.profile)
            .field("file", &self.file)
            .field("uri", &self.uri.as_ref().map(|_| "<set>"))
            .field(
                "assume_role",
                &self.assume_role.as_ref().map(|a| &a.role_arn),
            )
            .field("sts_endpoint", &self.sts_endpoint)
            .finish()
    }
}

impl CredentialsConfig {
    /// Whether the config names any static key at all.
    pub fn is_set(&self) -> bool {
        self.access_key_id.is_some()
            || self.access_key_secret.is_some()
            || self.access_key_id_file.is_some()
            || self.access_key_secret_file.is_some()
    }

    /// Whether the config file itself holds a secret.
    pub fn has_inline_secret(&self) -> bool {
        self.access_key_secret.is_some() || self.security_token.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no credentials found: set the credentials table's source or keys, provide the \
         systemd credentials {SYSTEMD_ACCESS_KEY_ID} and {SYSTEMD_ACCESS_KEY_SECRET}, set \
         {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}, the OIDC variables, a CLI profile, run \
         on ECS with a RAM role, or set {ENV_CREDENTIALS_URI}"
    )]
    NotFound,
    #[error("{0}")]
    Incomplete(String),
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    /// A source failed: `credentials (ecs_ram_role): the metadata service at ... answered
    /// garbage`. The message never holds a secret or a token.
    #[error("credentials ({source_name}): {message}")]
    Source {
        source_name: &'static str,
        message: String,
    },
}

impl CredentialError {
    pub(crate) fn source(source_name: &'static str, message: impl Into<String>) -> Self {
        CredentialError::Source {
            source_name,
            message: message.into(),
        }
    }
}

/// Told of every refresh of temporary credentials: its outcome (`success` or `failure`) and,
/// for the credentials requests are signed with, their new expiry. The source of
/// `pwrotd_credential_refreshes_total` and `pwrotd_credentials_expiry_timestamp_seconds`.
pub type RefreshObserver = Arc<dyn Fn(&'static str, Option<SystemTime>) + Send + Sync>;

/// What the sources of one [`CredentialSource`] share.
pub(crate) struct Shared {
    /// For the metadata service, STS and credential URIs.
    http: reqwest::Client,
    observer: OnceLock<RefreshObserver>,
}

impl Shared {
    fn observe(&self, outcome: &'static str, expiry: Option<SystemTime>) {
        if let Some(observe) = self.observer.get() {
            observe(outcome, expiry);
        }
    }
}

/// Where the credentials come from, decided once at start-up ([`CredentialSource::discover`]);
/// [`CredentialSource::load`] gives the credentials of the moment.
#[derive(Clone)]
pub struct CredentialSource {
    /// Which source supplied them, for the start-up log: `config`, `systemd credentials`,
    /// `environment`, `oidc`, `cli_profile`, `ecs_ram_role`, `uri`, `fixed`.
    pub origin: &'static str,
    /// What `pwrotd check` says: the source and where it reads from, never a secret.
    description: String,
    node: chain::Node,
    shared: Arc<Shared>,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSource")
            .field("origin", &self.origin)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// Fixed credentials, for tests and the demo.
    pub fn fixed(credentials: Credentials) -> CredentialSource {
        let shared = Arc::new(Shared {
            http: reqwest::Client::builder().build().unwrap_or_default(),
            observer: OnceLock::new(),
        });
        CredentialSource {
            origin: "fixed",
            description: "fixed".into(),
            node: chain::Node::Static(static_keys::StaticKeys::fixed(credentials)),
            shared,
        }
    }

    /// Walks the chain with the process environment.
    pub fn discover(config: &CredentialsConfig) -> Result<CredentialSource, CredentialError> {
        Self::discover_with(config, |name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// Decides the source, reading environment variables through `env`. Local files are read
    /// now (a missing key file or a malformed CLI profile is an error here); nothing is asked
    /// of the network.
    pub fn discover_with(
        config: &CredentialsConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<CredentialSource, CredentialError> {
        let shared = Arc::new(Shared {
            http: fetch::http_client()
                .map_err(|e| CredentialError::Incomplete(format!("credentials: {e}")))?,
            observer: OnceLock::new(),
        });
        let (origin, description, node) = chain::resolve(config, &env, &shared)?;
        Ok(CredentialSource {
            origin,
            description,
            node,
            shared,
        })
    }

    /// Reports refreshes to `observer` (set once; later calls are ignored).
    pub fn with_observer(self, observer: RefreshObserver) -> CredentialSource {
        self.observe(observer);
        self
    }

    /// Reports refreshes to `observer`, here and in every clone of this source (set once;
    /// later calls are ignored).
    pub fn observe(&self, observer: RefreshObserver) {
        let _ = self.shared.observer.set(observer);
    }

    /// What `pwrotd check` prints: the source and where it reads from, e.g.
    /// `chain: ecs_ram_role (metadata service http://100.100.100.200, role asked of it)`.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// What `check` says of an account's credentials: where they come from, and
    /// `+ assume_role` when a role is assumed with them: `ecs_ram_role + assume_role`.
    pub fn summary(&self) -> String {
        if self.node.kind() == "assume_role" {
            format!("{} + assume_role", self.origin)
        } else {
            self.origin.to_owned()
        }
    }

    /// Whether the credentials are temporary ones that this source refreshes.
    pub fn is_temporary(&self) -> bool {
        self.node.is_refreshed()
    }

    /// Told that the API refused `credentials` as expired (`InvalidSecurityToken.Expired`):
    /// they are dropped from the cache, so that the next call fetches new ones rather than
    /// wait for the refresh time.
    pub fn expired(&self, credentials: &Credentials) {
        self.node.forget(&credentials.access_key_id);
    }

    /// The current credentials: static files read again, temporary credentials from the cache
    /// (fetched now when none are valid). Never credentials that have expired.
    pub async fn load(&self) -> Result<Credentials, CredentialError> {
        self.node.load().await
    }
}
