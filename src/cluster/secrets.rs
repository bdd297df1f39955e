//! The two secrets of cluster mode, found once at start (docs/configuration.md#store):
//!
//! - the database URL, which holds the store's password: `store.url_file`, else the systemd
//!   credential `pwrotd-store-url`, else the environment variable `PWROTD_STORE_URL`;
//! - the [`StoreKey`]: `store.key_file`, else the systemd credential `pwrotd-store-key`.
//!
//! A file that others may read is refused, as is one that is not a regular file or is too large
//! to be a secret. Errors name where a value came from (a path, a credential, a variable), never
//! the value: the URL is checked only for its scheme, and nothing of it is shown.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::key::{KeyError, StoreKey};
use crate::config::ClusterConfig;

/// The systemd credential (`LoadCredential=`, under `$CREDENTIALS_DIRECTORY`) holding the URL.
pub const SYSTEMD_STORE_URL: &str = "pwrotd-store-url";
/// The systemd credential holding the store key.
pub const SYSTEMD_STORE_KEY: &str = "pwrotd-store-key";
/// The environment variable that may hold the URL.
pub const ENV_STORE_URL: &str = "PWROTD_STORE_URL";

/// The largest URL or key file read: either is well under a kilobyte.
const MAX_FILE: u64 = 64 << 10;

/// Where a secret came from, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file the config names: `store.url_file` or `store.key_file`.
    Config {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A systemd credential, and the file it is.
    Systemd {
        /// The credential's name.
        name: &'static str,
        /// `$CREDENTIALS_DIRECTORY/<name>`.
        path: PathBuf,
    },
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Config { key, path } => write!(f, "{key} {}", path.display()),
            Origin::Systemd { name, path } => {
                write!(f, "the systemd credential {name} ({})", path.display())
            }
            Origin::Env(name) => write!(f, "the environment variable {name}"),
        }
    }
}

/// Why the store's URL or key could not be had. No variant holds a byte of either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// No URL in any of the three places.
    #[error(
        "no store URL: set store.url_file, provide the systemd credential {SYSTEMD_STORE_URL}, \
         or set the environment variable {ENV_STORE_URL}"
    )]
    NoUrl,
    /// No key in either place.
    #[error(
        "no store key: set store.key_file, or provide the systemd credential {SYSTEMD_STORE_KEY} \
         (make a key with `pwrotd genkey`)"
    )]
    NoKey,
    /// The file could not be opened or read.
    #[error("cannot read {origin}: {reason}")]
    Unreadable {
        /// Where.
        origin: Origin,
        /// The I/O error.
        reason: String,
    },
    /// The path is a directory, a device or a pipe.
    #[error("{origin} is not a regular file")]
    NotAFile {
        /// Where.
        origin: Origin,
    },
    /// Others have permissions on the file.
    #[error(
        "{origin} holds a secret but others may read it (mode {mode:04o}); \
         run chmod o-rwx on it (0600, or 0640 for a group pwrotd is in)"
    )]
    Mode {
        /// Where.
        origin: Origin,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any URL or key.
    #[error("{origin} is larger than {} KiB: not a URL or key", MAX_FILE >> 10)]
    TooLarge {
        /// Where.
        origin: Origin,
    },
    /// The URL is empty, not one line, or not a PostgreSQL URL.
    #[error("the store URL in {origin} {reason}")]
    Url {
        /// Where.
        origin: Origin,
        /// What is wrong with it, without any of it.
        reason: String,
    },
    /// The key file does not hold a key.
    #[error("the store key in {origin} is not a key: {error}")]
    Key {
        /// Where.
        origin: Origin,
        /// Why.
        error: KeyError,
    },
}

/// The store's URL and key, with the process environment.
pub fn load(cfg: &ClusterConfig) -> Result<(SecretString, StoreKey), SecretsError> {
    load_with(cfg, |name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// The store's URL and key, reading environment variables through `env`.
pub fn load_with(
    cfg: &ClusterConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(SecretString, StoreKey), SecretsError> {
    let credentials = env("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    // The file a config key names, else the systemd credential's if it exists.
    let file = |given: &Option<PathBuf>, key: &'static str, name: &'static str| match given {
        Some(path) => Some((
            path.clone(),
            Origin::Config {
                key,
                path: path.clone(),
            },
        )),
        None => {
            let path = credentials.as_ref()?.join(name);
            path.exists()
                .then(|| (path.clone(), Origin::Systemd { name, path }))
        }
    };
    let url = match file(&cfg.url_file, "store.url_file", SYSTEMD_STORE_URL) {
        Some((path, origin)) => url_from_file(&path, origin)?,
        None => match env(ENV_STORE_URL).filter(|v| !v.is_empty()) {
            Some(value) => check_url(Origin::Env(ENV_STORE_URL), Zeroizing::new(value))?,
            None => return Err(SecretsError::NoUrl),
        },
    };
    let Some((path, origin)) = file(&cfg.key_file, "store.key_file", SYSTEMD_STORE_KEY) else {
        return Err(SecretsError::NoKey);
    };
    let bytes = read_private(&path, &origin)?;
    let key = StoreKey::parse(&bytes).map_err(|error| SecretsError::Key { origin, error })?;
    Ok((url, key))
}

/// The URL a file holds, one line, with surrounding whitespace (a trailing newline) trimmed.
fn url_from_file(path: &Path, origin: Origin) -> Result<SecretString, SecretsError> {
    let bytes = read_private(path, &origin)?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => Zeroizing::new(text.to_owned()),
        Err(_) => {
            return Err(SecretsError::Url {
                origin,
                reason: "is not UTF-8 text".to_owned(),
            });
        }
    };
    check_url(origin, text)
}

/// A URL for PostgreSQL: one line, `postgres://` or `postgresql://`, that parses.
fn check_url(origin: Origin, text: Zeroizing<String>) -> Result<SecretString, SecretsError> {
    let url = text.trim();
    let problem = if url.is_empty() {
        Some("is empty".to_owned())
    } else if url.contains(['\n', '\r']) {
        Some("is more than one line".to_owned())
    } else if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        Some("must start with postgres:// or postgresql://".to_owned())
    } else {
        // url's errors name the kind of problem, never the text.
        url::Url::parse(url)
            .err()
            .map(|e| format!("is not a valid URL: {e}"))
    };
    match problem {
        Some(reason) => Err(SecretsError::Url { origin, reason }),
        None => Ok(SecretString::from(url.to_owned())),
    }
}

/// A secret file's bytes: a regular file that others have no permission on, of at most
/// [`MAX_FILE`] bytes. The checks are of the file opened, not of the path before it.
fn read_private(path: &Path, origin: &Origin) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let unreadable = |e: std::io::Error| SecretsError::Unreadable {
        origin: origin.clone(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(SecretsError::NotAFile {
            origin: origin.clone(),
        });
    }
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(SecretsError::Mode {
            origin: origin.clone(),
            mode: mode & 0o7777,
        });
    }
    if meta.len() > MAX_FILE {
        return Err(SecretsError::TooLarge {
            origin: origin.clone(),
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(meta.len()).unwrap_or(0) + 1,
    ));
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(SecretsError::TooLarge {
            origin: origin.clone(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;
    use std::time::Duration;

    const URL: &str = "postgres://pwrotd:Sup3rS3cretPw@db.internal:5432/pwrotd?sslmode=verify-full";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn cfg(url_file: Option<&Path>, key_file: Option<&Path>) -> ClusterConfig {
        ClusterConfig {
            url_file: url_file.map(Path::to_owned),
            key_file: key_file.map(Path::to_owned),
            lease: Duration::from_secs(15),
            node_name: "host-a".to_owned(),
        }
    }

    /// Writes `text` to `dir/name` with `mode`.
    fn write(dir: &Path, name: &str, text: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Neither the URL's password nor the key shows in an error, its `Debug`, or the `Debug`
    /// of what was loaded.
    fn assert_hidden(shown: &str, key: &StoreKey) {
        assert!(!shown.contains("Sup3rS3cretPw"), "{shown}");
        assert!(!shown.contains("db.internal"), "{shown}");
        assert!(!shown.contains(&key.to_base64()[..12]), "{shown}");
    }

    #[test]
    fn config_files_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        let key = StoreKey::generate().unwrap();
        let other = StoreKey::generate().unwrap();
        let url = write(dir.path(), "url", format!("{URL}\n").as_bytes(), 0o600);
        let key_file = write(dir.path(), "key", key.to_base64().as_bytes(), 0o640);
        write(
            creds.path(),
            SYSTEMD_STORE_URL,
            b"postgres://other/x",
            0o400,
        );
        write(
            creds.path(),
            SYSTEMD_STORE_KEY,
            other.to_base64().as_bytes(),
            0o400,
        );
        let (got_url, got_key) = load_with(
            &cfg(Some(&url), Some(&key_file)),
            env(&[
                ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
                (ENV_STORE_URL, "postgres://env/x"),
            ]),
        )
        .unwrap();
        assert_eq!(got_url.expose_secret(), URL, "the newline is trimmed");
        assert_eq!(got_key.to_base64(), key.to_base64());
        assert_hidden(&format!("{got_url:?} {got_key:?}"), &key);
    }

    #[test]
    fn systemd_credentials_before_the_environment() {
        let creds = tempfile::tempdir().unwrap();
        let key = StoreKey::generate().unwrap();
        write(creds.path(), SYSTEMD_STORE_URL, URL.as_bytes(), 0o400);
        write(
            creds.path(),
            SYSTEMD_STORE_KEY,
            format!("{}\n", &*key.to_base64()).as_bytes(),
            0o400,
        );
        let (url, got) = load_with(
            &cfg(None, None),
            env(&[
                ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
                (ENV_STORE_URL, "postgres://env/x"),
            ]),
        )
        .unwrap();
        assert_eq!(url.expose_secret(), URL);
        assert_eq!(got.to_base64(), key.to_base64());
    }

    #[test]
    fn the_environment_last_for_the_url_and_never_for_the_key() {
        let creds = tempfile::tempdir().unwrap();
        let key = StoreKey::generate().unwrap();
        write(
            creds.path(),
            SYSTEMD_STORE_KEY,
            key.to_base64().as_bytes(),
            0o400,
        );
        let dir = creds.path().to_str().unwrap();
        let (url, _) = load_with(
            &cfg(None, None),
            env(&[("CREDENTIALS_DIRECTORY", dir), (ENV_STORE_URL, URL)]),
        )
        .unwrap();
        assert_eq!(url.expose_secret(), URL);
        // A credentials directory without the URL's file, and no variable: every place named.
        let err = load_with(&cfg(None, None), env(&[("CREDENTIALS_DIRECTORY", dir)])).unwrap_err();
        assert_eq!(err, SecretsError::NoUrl);
        let shown = err.to_string();
        for place in ["store.url_file", SYSTEMD_STORE_URL, ENV_STORE_URL] {
            assert!(shown.contains(place), "{shown}");
        }
        // No key anywhere: the URL is fine, the key is missing.
        let err = load_with(&cfg(None, None), env(&[(ENV_STORE_URL, URL)])).unwrap_err();
        assert_eq!(err, SecretsError::NoKey);
        let shown = err.to_string();
        assert!(
            shown.contains("store.key_file")
                && shown.contains(SYSTEMD_STORE_KEY)
                && shown.contains("pwrotd genkey"),
            "{shown}"
        );
        // An empty variable or credentials directory counts as none.
        let err = load_with(
            &cfg(None, None),
            env(&[("CREDENTIALS_DIRECTORY", ""), (ENV_STORE_URL, "")]),
        )
        .unwrap_err();
        assert_eq!(err, SecretsError::NoUrl);
    }

    #[test]
    fn a_named_file_that_is_missing_does_not_fall_through() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load_with(&cfg(Some(&missing), None), env(&[(ENV_STORE_URL, URL)])).unwrap_err();
        assert!(matches!(err, SecretsError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("store.url_file"), "{err}");
    }

    #[test]
    fn bad_urls_are_refused_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::generate().unwrap();
        let key_file = write(dir.path(), "key", key.to_base64().as_bytes(), 0o600);
        let bad = [
            "".to_owned(),
            "\n\n".to_owned(),
            "mysql://pwrotd:Sup3rS3cretPw@db.internal/pwrotd".to_owned(),
            "https://pwrotd:Sup3rS3cretPw@db.internal/".to_owned(),
            "db.internal:5432 Sup3rS3cretPw".to_owned(),
            format!("{URL}\n# the password is Sup3rS3cretPw\n"),
            "postgres://pwrotd:Sup3rS3cretPw@db.internal:99999/pwrotd".to_owned(),
        ];
        for text in &bad {
            let url = write(dir.path(), "url", text.as_bytes(), 0o600);
            let err = load_with(&cfg(Some(&url), Some(&key_file)), env(&[])).unwrap_err();
            assert!(matches!(err, SecretsError::Url { .. }), "{err}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(&*url.to_string_lossy()), "{shown}");
            assert_hidden(&shown, &key);
        }
        // From the environment: the variable is named, not its value.
        for text in &bad[2..] {
            let err = load_with(
                &cfg(None, Some(&key_file)),
                env(&[(ENV_STORE_URL, text.as_str())]),
            )
            .unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(ENV_STORE_URL), "{shown}");
            assert_hidden(&shown, &key);
        }
        // Not UTF-8.
        let url = write(dir.path(), "url", b"postgres://\xff\xfe", 0o600);
        let err = load_with(&cfg(Some(&url), Some(&key_file)), env(&[])).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        // postgresql:// is the other spelling.
        let url = write(
            dir.path(),
            "url",
            b"postgresql://u:p@h/d?sslmode=require",
            0o600,
        );
        assert!(load_with(&cfg(Some(&url), Some(&key_file)), env(&[])).is_ok());
    }

    #[test]
    fn bad_keys_are_refused_without_being_shown() {
        let dir = tempfile::tempdir().unwrap();
        let url = write(dir.path(), "url", URL.as_bytes(), 0o600);
        let key = StoreKey::generate().unwrap();
        let b64 = key.to_base64();
        for text in [
            b64[..40].to_owned(),
            format!("{}{}", &*b64, &*b64),
            b64.replace('=', "*"),
            String::new(),
        ] {
            let key_file = write(dir.path(), "key", text.as_bytes(), 0o600);
            let err = load_with(&cfg(Some(&url), Some(&key_file)), env(&[])).unwrap_err();
            assert!(matches!(err, SecretsError::Key { .. }), "{err}");
            let shown = format!("{err} {err:?}");
            assert!(
                shown.contains("store.key_file") && shown.contains(&*key_file.to_string_lossy()),
                "{shown}"
            );
            assert_hidden(&shown, &key);
        }
    }

    #[test]
    fn files_others_may_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::generate().unwrap();
        let good_url = write(dir.path(), "good-url", URL.as_bytes(), 0o600);
        let good_key = write(dir.path(), "good-key", key.to_base64().as_bytes(), 0o640);
        for mode in [0o644, 0o604, 0o601, 0o666] {
            let url = write(dir.path(), "url", URL.as_bytes(), mode);
            let err = load_with(&cfg(Some(&url), Some(&good_key)), env(&[])).unwrap_err();
            assert_eq!(
                err,
                SecretsError::Mode {
                    origin: Origin::Config {
                        key: "store.url_file",
                        path: url.clone()
                    },
                    mode
                }
            );
            assert!(err.to_string().contains("chmod o-rwx"), "{err}");
            let key_file = write(dir.path(), "key", key.to_base64().as_bytes(), mode);
            let err = load_with(&cfg(Some(&good_url), Some(&key_file)), env(&[])).unwrap_err();
            assert!(matches!(err, SecretsError::Mode { .. }), "{err}");
            assert_hidden(&format!("{err} {err:?}"), &key);
        }
        // A directory, and a file too large to be a secret.
        let err = load_with(&cfg(Some(dir.path()), Some(&good_key)), env(&[])).unwrap_err();
        assert!(matches!(err, SecretsError::NotAFile { .. }), "{err}");
        let big = write(dir.path(), "big", &vec![b'a'; 70_000], 0o600);
        let err = load_with(&cfg(Some(&good_url), Some(&big)), env(&[])).unwrap_err();
        assert!(matches!(err, SecretsError::TooLarge { .. }), "{err}");
        // The credential's own file is held to the same rule.
        let creds = tempfile::tempdir().unwrap();
        write(creds.path(), SYSTEMD_STORE_URL, URL.as_bytes(), 0o444);
        let err = load_with(
            &cfg(None, Some(&good_key)),
            env(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("the systemd credential pwrotd-store-url"),
            "{err}"
        );
    }
}
