//! The AccessKey, found through the chain of docs/configuration.md#credentials: the config's own keys or files, then
//! systemd credentials, then the `ALIBABA_CLOUD_*` environment variables.
//!
//! Files are read again for every request, so an STS token that an outside agent refreshes on
//! disk is picked up without a restart. The secret and the token are [`SecretString`]s: they
//! never reach `Debug` output, a log line or an error.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Names of the systemd credentials (`LoadCredential=`), under `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_ACCESS_KEY_ID: &str = "alibaba-cloud-access-key-id";
pub const SYSTEMD_ACCESS_KEY_SECRET: &str = "alibaba-cloud-access-key-secret";
pub const SYSTEMD_SECURITY_TOKEN: &str = "alibaba-cloud-security-token";

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

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

/// `[cloud.credentials]` as the config gives it. Inline values and files may be mixed per key.
#[derive(Clone, Default)]
pub struct CredentialsConfig {
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<SecretString>,
    pub security_token: Option<SecretString>,
    pub access_key_id_file: Option<PathBuf>,
    pub access_key_secret_file: Option<PathBuf>,
    pub security_token_file: Option<PathBuf>,
}

impl fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("access_key_id", &self.access_key_id)
            .field(
                "access_key_secret",
                &self.access_key_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("access_key_id_file", &self.access_key_id_file)
            .field("access_key_secret_file", &self.access_key_secret_file)
            .field("security_token_file", &self.security_token_file)
            .finish()
    }
}

impl CredentialsConfig {
    /// Whether the config names any credential at all.
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
        "no AccessKey found: set [cloud.credentials], provide the systemd credentials \
         {SYSTEMD_ACCESS_KEY_ID} and {SYSTEMD_ACCESS_KEY_SECRET}, or set \
         {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
    )]
    NotFound,
    #[error("{0}")]
    Incomplete(String),
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
}

/// One value of a credential: inline, or a file read each time it is needed.
#[derive(Clone)]
enum Value {
    Inline(SecretString),
    File(PathBuf),
}

impl Value {
    fn read(&self) -> Result<SecretString, CredentialError> {
        match self {
            Value::Inline(v) => Ok(v.clone()),
            Value::File(path) => read_secret_file(path),
        }
    }
}

/// Where the credentials come from, decided once at start-up.
#[derive(Clone)]
pub struct CredentialSource {
    /// Which link of the chain supplied them, for `pwrotd check` and the start-up log.
    pub origin: &'static str,
    id: Value,
    secret: Value,
    token: Option<Value>,
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSource")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// Fixed credentials, for tests and the demo.
    pub fn fixed(credentials: Credentials) -> CredentialSource {
        CredentialSource {
            origin: "fixed",
            id: Value::Inline(SecretString::from(credentials.access_key_id)),
            secret: Value::Inline(credentials.access_key_secret),
            token: credentials.security_token.map(Value::Inline),
        }
    }

    /// Walks the chain with the process environment.
    pub fn discover(config: &CredentialsConfig) -> Result<CredentialSource, CredentialError> {
        Self::discover_with(config, |name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// Walks the chain, reading environment variables through `env`.
    pub fn discover_with(
        config: &CredentialsConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<CredentialSource, CredentialError> {
        if config.is_set() {
            let pick = |inline: &Option<SecretString>, file: &Option<PathBuf>| match (inline, file)
            {
                (Some(v), _) => Some(Value::Inline(v.clone())),
                (None, Some(p)) => Some(Value::File(p.clone())),
                (None, None) => None,
            };
            let id = pick(
                &config.access_key_id.clone().map(SecretString::from),
                &config.access_key_id_file,
            );
            let secret = pick(&config.access_key_secret, &config.access_key_secret_file);
            let (Some(id), Some(secret)) = (id, secret) else {
                return Err(CredentialError::Incomplete(
                    "[cloud.credentials] must give both the AccessKey id and the secret \
                     (access_key_id or access_key_id_file, access_key_secret or access_key_secret_file)"
                        .into(),
                ));
            };
            let source = CredentialSource {
                origin: "config",
                id,
                secret,
                token: pick(&config.security_token, &config.security_token_file),
            };
            source.load()?;
            return Ok(source);
        }

        if let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let id = dir.join(SYSTEMD_ACCESS_KEY_ID);
            let secret = dir.join(SYSTEMD_ACCESS_KEY_SECRET);
            if id.exists() || secret.exists() {
                let token = dir.join(SYSTEMD_SECURITY_TOKEN);
                let source = CredentialSource {
                    origin: "systemd credentials",
                    id: Value::File(id),
                    secret: Value::File(secret),
                    token: token.exists().then_some(Value::File(token)),
                };
                source.load()?;
                return Ok(source);
            }
        }

        let id = env(ENV_ACCESS_KEY_ID).filter(|v| !v.is_empty());
        let secret = env(ENV_ACCESS_KEY_SECRET).filter(|v| !v.is_empty());
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(CredentialSource {
                origin: "environment",
                id: Value::Inline(SecretString::from(id)),
                secret: Value::Inline(SecretString::from(secret)),
                token: env(ENV_SECURITY_TOKEN)
                    .filter(|v| !v.is_empty())
                    .map(|t| Value::Inline(SecretString::from(t))),
            }),
            (None, None) => Err(CredentialError::NotFound),
            _ => Err(CredentialError::Incomplete(format!(
                "set both {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
            ))),
        }
    }

    /// The current credentials. Files are read on every call.
    pub fn load(&self) -> Result<Credentials, CredentialError> {
        Ok(Credentials {
            access_key_id: self.id.read()?.expose_secret().to_owned(),
            access_key_secret: self.secret.read()?,
            security_token: self.token.as_ref().map(Value::read).transpose()?,
        })
    }
}

/// Reads a one-line secret file, trimming the trailing newline.
fn read_secret_file(path: &Path) -> Result<SecretString, CredentialError> {
    let raw = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        CredentialError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    })?);
    let value = raw.trim();
    if value.is_empty() {
        return Err(CredentialError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn config_files_come_first_and_are_reread() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "LTAIfile\n").unwrap();
        std::fs::write(&secret, "file-secret\n").unwrap();
        let config = CredentialsConfig {
            access_key_id_file: Some(id),
            access_key_secret_file: Some(secret.clone()),
            ..Default::default()
        };
        let source = CredentialSource::discover_with(
            &config,
            env(&[
                (ENV_ACCESS_KEY_ID, "LTAIenv"),
                (ENV_ACCESS_KEY_SECRET, "env"),
            ]),
        )
        .unwrap();
        assert_eq!(source.origin, "config");
        let c = source.load().unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret()),
            ("LTAIfile", "file-secret")
        );
        std::fs::write(&secret, "rotated\n").unwrap();
        assert_eq!(source.load().unwrap().secret(), "rotated");
    }

    #[test]
    fn systemd_credentials_before_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SYSTEMD_ACCESS_KEY_ID), "LTAIsd").unwrap();
        std::fs::write(dir.path().join(SYSTEMD_ACCESS_KEY_SECRET), "sd-secret").unwrap();
        let d = dir.path().to_str().unwrap();
        let source = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[
                ("CREDENTIALS_DIRECTORY", d),
                (ENV_ACCESS_KEY_ID, "LTAIenv"),
                (ENV_ACCESS_KEY_SECRET, "env"),
            ]),
        )
        .unwrap();
        assert_eq!(source.origin, "systemd credentials");
        assert_eq!(source.load().unwrap().access_key_id, "LTAIsd");
    }

    #[test]
    fn environment_with_sts_token() {
        let source = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[
                (ENV_ACCESS_KEY_ID, "STS.id"),
                (ENV_ACCESS_KEY_SECRET, "S3CRET-VALUE"),
                (ENV_SECURITY_TOKEN, "T0KEN-VALUE"),
            ]),
        )
        .unwrap();
        let c = source.load().unwrap();
        assert_eq!(c.token(), Some("T0KEN-VALUE"));
        let debug = format!("{c:?} {source:?}");
        assert!(
            !debug.contains("T0KEN") && !debug.contains("S3CRET"),
            "{debug}"
        );
    }

    #[test]
    fn missing_and_partial_credentials_are_errors() {
        let none = CredentialSource::discover_with(&CredentialsConfig::default(), env(&[]));
        assert_eq!(none.unwrap_err(), CredentialError::NotFound);
        let half = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[(ENV_ACCESS_KEY_ID, "x")]),
        );
        assert!(matches!(half, Err(CredentialError::Incomplete(_))));
        let config = CredentialsConfig {
            access_key_id: Some("x".into()),
            access_key_secret_file: Some("/nonexistent/secret".into()),
            ..Default::default()
        };
        let err = CredentialSource::discover_with(&config, env(&[])).unwrap_err();
        assert!(matches!(err, CredentialError::Unreadable { .. }), "{err}");
    }
}
