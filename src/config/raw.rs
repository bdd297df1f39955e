//! The file as written: serde structs that take each value loosely (a string, an integer), with
//! its position, and refuse unknown keys. Validation (`super::validate`) then checks what they
//! hold and reports every problem with its line and key.
//!
//! A key with a closed set of values is a serde enum read through [`OneOf`], which keeps a word
//! outside the set for validation to report rather than failing the whole file.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::value::StrDeserializer;
use serde::de::{DeserializeOwned, Deserializer};
use toml::Spanned;

use super::{LogFormat, RenderFormat};
use crate::cloud::{Network, SignatureVersion, SourceKind};
use crate::verify::Engine;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFile {
    pub(super) daemon: RawDaemon,
    pub(super) cloud: RawCloud,
    pub(super) defaults: RawSchedule,
    #[serde(rename = "account")]
    pub(super) accounts: Vec<Spanned<RawAccount>>,
    pub(super) store: Option<Spanned<RawStore>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    pub(super) max_concurrent: Option<Spanned<i64>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) log_format: Option<Spanned<OneOf<LogFormat>>>,
}

/// `[store]`; every key is optional, and all but `kind` belong to `kind = "postgresql"`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) kind: Option<Spanned<OneOf<StoreKind>>>,
    pub(super) url_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) lease: Option<Spanned<String>>,
    pub(super) node_name: Option<Spanned<String>>,
}

/// `store.kind`, as written.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StoreKind {
    File,
    Postgresql,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCloud {
    pub(super) region_id: Option<Spanned<String>>,
    pub(super) network: Option<Spanned<OneOf<Network>>>,
    pub(super) signature: Option<Spanned<OneOf<SignatureVersion>>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) requests_per_second: Option<Spanned<f64>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) sts_endpoint: Option<Spanned<String>>,
    pub(super) endpoints: RawEndpoints,
    pub(super) credentials: Option<RawCredentials>,
    /// `[cloud.profiles.NAME]`: the same keys, each falling back to `[cloud]`'s but for
    /// `credentials` (whole) and `endpoints` (never). A profile that holds `profiles` of its
    /// own is refused by validation.
    pub(super) profiles: std::collections::BTreeMap<String, Spanned<RawCloud>>,
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
    pub(super) source: Option<Spanned<OneOf<SourceKind>>>,
    pub(super) role_name: Option<Spanned<String>>,
    pub(super) metadata_endpoint: Option<Spanned<String>>,
    pub(super) imdsv1_fallback: Option<Spanned<bool>>,
    pub(super) role_arn: Option<Spanned<String>>,
    pub(super) oidc_provider_arn: Option<Spanned<String>>,
    pub(super) oidc_token_file: Option<Spanned<String>>,
    pub(super) role_session_name: Option<Spanned<String>>,
    pub(super) profile: Option<Spanned<String>>,
    pub(super) file: Option<Spanned<String>>,
    pub(super) uri: Option<Spanned<String>>,
    pub(super) assume_role: Option<Spanned<RawAssumeRole>>,
}

/// `assume_role = { role_arn, session_name, external_id, duration }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssumeRole {
    pub(super) role_arn: Option<Spanned<String>>,
    pub(super) session_name: Option<Spanned<String>>,
    pub(super) external_id: Option<Spanned<String>>,
    pub(super) duration: Option<Spanned<String>>,
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
    pub(super) region_id: Option<Spanned<String>>,
    pub(super) profile: Option<Spanned<String>>,
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
    pub(super) strategy: Option<Spanned<OneOf<StrategyName>>>,
    pub(super) clone_account_name: Option<Spanned<String>>,
    pub(super) verify: Option<Spanned<RawVerify>>,
    #[serde(default)]
    pub(super) on_change: Vec<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    pub(super) engine: Option<Spanned<OneOf<EngineName>>>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) database: Option<Spanned<String>>,
    /// A mode name, or `true` (verify-full) / `false` (disable). Any TOML value, matched by
    /// hand rather than an untagged enum: the names are [`Tls::NAMES`](crate::verify::Tls), and
    /// a value of neither type (`tls = 1`) is still reported under the account's key with the
    /// values allowed, where an untagged enum would fail the file with "data did not match any
    /// variant".
    pub(super) tls: Option<Spanned<toml::Value>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRender {
    pub(super) format: OneOf<RenderFormat>,
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

/// A word from a closed set: `T`, a serde enum of unit variants, when the word names one of
/// them; else the word as given, with the names `T` has. Deserialising `T` directly would fail
/// the whole file at the first wrong word, reported as TOML's error under the table's key
/// (`account.strategy`, `account.render`), with no other problem listed; kept, it is reported
/// by validation under the entry's own key (`account "a".strategy`), with every other problem.
/// A value that is not a string at all is still TOML's error.
pub(super) enum OneOf<T> {
    Known(T),
    Unknown {
        given: String,
        allowed: &'static [&'static str],
    },
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OneOf<T>, D::Error> {
        let given = String::deserialize(deserializer)?;
        let word = match T::deserialize(StrDeserializer::<Unlisted>::new(&given)) {
            Ok(known) => OneOf::Known(known),
            Err(Unlisted(allowed)) => OneOf::Unknown { given, allowed },
        };
        Ok(word)
    }
}

/// The error of a word that names none of an enum's variants: serde hands over their names.
#[derive(Debug)]
struct Unlisted(&'static [&'static str]);

impl serde::de::Error for Unlisted {
    /// Not reached from an enum of unit variants read from a string.
    fn custom<M: fmt::Display>(_: M) -> Unlisted {
        Unlisted(&[])
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Unlisted {
        Unlisted(expected)
    }
}

impl fmt::Display for Unlisted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not one of {}", self.0.join(", "))
    }
}

impl std::error::Error for Unlisted {}

/// `strategy`, as written; validation pairs it with `clone_account_name` into a
/// [`Strategy`](super::Strategy).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StrategyName {
    Single,
    Alternating,
}

/// `verify.engine`, as written: [`Engine`] lives with the verifier.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum EngineName {
    Mysql,
    Postgresql,
}

impl From<EngineName> for Engine {
    fn from(e: EngineName) -> Engine {
        match e {
            EngineName::Mysql => Engine::Mysql,
            EngineName::Postgresql => Engine::Postgresql,
        }
    }
}
