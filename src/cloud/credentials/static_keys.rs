//! Long-lived keys: inline in the config, in files the config names, systemd credentials, or
//! the `ALIBABA_CLOUD_*` environment variables. Files are read again for every request, so
//! that keys an outside agent replaces on disk are picked up without a restart.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::{
    CredentialError, Credentials, CredentialsConfig, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN, SYSTEMD_ACCESS_KEY_ID, SYSTEMD_ACCESS_KEY_SECRET, SYSTEMD_SECURITY_TOKEN,
};

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

/// Keys that are used as they are (their files read again each time), never refreshed.
#[derive(Clone)]
pub(crate) struct StaticKeys {
    id: Value,
    secret: Value,
    token: Option<Value>,
}

impl StaticKeys {
    pub(crate) fn fixed(credentials: Credentials) -> StaticKeys {
        StaticKeys {
            id: Value::Inline(SecretString::from(credentials.access_key_id)),
            secret: Value::Inline(credentials.access_key_secret),
            token: credentials.security_token.map(Value::Inline),
        }
    }

    /// The current keys. Files are read on every call.
    pub(crate) fn load(&self) -> Result<Credentials, CredentialError> {
        Ok(Credentials {
            access_key_id: self.id.read()?.expose_secret().to_owned(),
            access_key_secret: self.secret.read()?,
            security_token: self.token.as_ref().map(Value::read).transpose()?,
        })
    }

    /// Keys given inline (a CLI profile's AK or StsToken mode).
    pub(crate) fn inline(id: String, secret: SecretString, token: Option<SecretString>) -> Self {
        StaticKeys {
            id: Value::Inline(SecretString::from(id)),
            secret: Value::Inline(secret),
            token: token.map(Value::Inline),
        }
    }
}

/// The keys of `[cloud.credentials]`, `None` when it names none; read once now, so that a
/// missing file is an error at start.
pub(crate) fn from_config(
    config: &CredentialsConfig,
) -> Result<Option<StaticKeys>, CredentialError> {
    if !config.is_set() {
        return Ok(None);
    }
    let pick = |inline: &Option<SecretString>, file: &Option<PathBuf>| match (inline, file) {
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
            "the credentials table must give both the AccessKey id and the secret \
             (access_key_id or access_key_id_file, access_key_secret or access_key_secret_file)"
                .into(),
        ));
    };
    let keys = StaticKeys {
        id,
        secret,
        token: pick(&config.security_token, &config.security_token_file),
    };
    keys.load()?;
    Ok(Some(keys))
}

/// The systemd credentials under `$CREDENTIALS_DIRECTORY`, when either key file is there.
pub(crate) fn systemd(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<StaticKeys>, CredentialError> {
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    let id = dir.join(SYSTEMD_ACCESS_KEY_ID);
    let secret = dir.join(SYSTEMD_ACCESS_KEY_SECRET);
    if !(id.exists() || secret.exists()) {
        return Ok(None);
    }
    let token = dir.join(SYSTEMD_SECURITY_TOKEN);
    let keys = StaticKeys {
        id: Value::File(id),
        secret: Value::File(secret),
        token: token.exists().then_some(Value::File(token)),
    };
    keys.load()?;
    Ok(Some(keys))
}

/// `ALIBABA_CLOUD_ACCESS_KEY_ID`/`_SECRET` (and `ALIBABA_CLOUD_SECURITY_TOKEN`), when set.
pub(crate) fn environment(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<StaticKeys>, CredentialError> {
    let id = env(ENV_ACCESS_KEY_ID).filter(|v| !v.is_empty());
    let secret = env(ENV_ACCESS_KEY_SECRET).filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(StaticKeys::inline(
            id,
            SecretString::from(secret),
            env(ENV_SECURITY_TOKEN)
                .filter(|v| !v.is_empty())
                .map(SecretString::from),
        ))),
        (None, None) => Ok(None),
        _ => Err(CredentialError::Incomplete(format!(
            "set both {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
        ))),
    }
}

/// Reads a one-line secret file, trimming the trailing newline.
pub(crate) fn read_secret_file(path: &Path) -> Result<SecretString, CredentialError> {
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
