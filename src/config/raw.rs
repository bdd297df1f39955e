//! The file as written: serde structs that take each value loosely (a string, an integer), with
//! its position, and refuse unknown keys. Validation (`super::validate`) then checks what they
//! hold and reports every problem with its line and key.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFile {
    pub(super) daemon: RawDaemon,
    pub(super) cloud: RawCloud,
    pub(super) defaults: RawSchedule,
    #[serde(rename = "account")]
    pub(super) accounts: Vec<Spanned<RawAccount>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    pub(super) max_concurrent: Option<Spanned<i64>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) log_format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCloud {
    pub(super) region_id: Option<Spanned<String>>,
    pub(super) signature: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) requests_per_second: Option<Spanned<f64>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) endpoints: RawEndpoints,
    pub(super) credentials: RawCredentials,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEndpoints {
    pub(super) polardb: Option<Spanned<String>>,
    pub(super) rds: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCredentials {
    pub(super) access_key_id: Option<String>,
    pub(super) access_key_secret: Option<Spanned<String>>,
    pub(super) security_token: Option<Spanned<String>>,
    pub(super) access_key_id_file: Option<PathBuf>,
    pub(super) access_key_secret_file: Option<PathBuf>,
    pub(super) security_token_file: Option<PathBuf>,
}

/// The keys `[defaults]` and `[[account]]` share.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSchedule {
    pub(super) every: Option<Spanned<String>>,
    pub(super) cron: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) retry_after_failure: Option<Spanned<String>>,
    pub(super) keep_versions: Option<Spanned<i64>>,
    pub(super) password: RawPolicy,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    pub(super) length: Option<Spanned<i64>>,
    pub(super) require: Option<Spanned<Vec<String>>>,
    pub(super) special: Option<Spanned<String>>,
    pub(super) exclude: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) name: Option<Spanned<String>>,
    pub(super) api: Option<Spanned<String>>,
    pub(super) cluster_id: Option<Spanned<String>>,
    pub(super) instance_id: Option<Spanned<String>>,
    pub(super) account_name: Option<Spanned<String>>,
    pub(super) password_type: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) grants: Vec<Spanned<RawGrant>>,
    // The `[defaults]` keys, spelled out: serde's `flatten` would lose their positions.
    pub(super) every: Option<Spanned<String>>,
    pub(super) cron: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) retry_after_failure: Option<Spanned<String>>,
    pub(super) keep_versions: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) password: RawPolicy,
    #[serde(default)]
    pub(super) render: Vec<Spanned<RawRender>>,
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) clone_account_name: Option<Spanned<String>>,
    pub(super) verify: Option<Spanned<RawVerify>>,
    #[serde(default)]
    pub(super) on_change: Vec<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    pub(super) engine: Option<Spanned<String>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) database: Option<Spanned<String>>,
    /// A mode name, or `true` (verify-full) / `false` (disable).
    pub(super) tls: Option<Spanned<toml::Value>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRender {
    pub(super) format: String,
    pub(super) path: String,
    pub(super) mode: Option<String>,
    pub(super) group: Option<String>,
}

impl RawAccount {
    pub(super) fn schedule(&self) -> RawSchedule {
        RawSchedule {
            every: self.every.clone(),
            cron: self.cron.clone(),
            jitter: self.jitter.clone(),
            retry_after_failure: self.retry_after_failure.clone(),
            keep_versions: self.keep_versions.clone(),
            password: self.password.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrant {
    pub(super) db: String,
    pub(super) privilege: String,
}
