//! The vault-style file sink (docs/protocol.md#secret-files): one JSON file per account under
//! `state_dir/secrets/`, the audit log, and the audit key.
//!
//! Every write is atomic and durable: a temporary file in the same directory, fsync, rename
//! over the target, fsync of the directory. A file that cannot be parsed, or whose mode, owner
//! or type is wrong, is never overwritten: the account is refused until an operator looks.
//! This module never logs a password; the only place it writes one is the secret file itself.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cloud::Service;
use crate::config::Account;
use crate::password::Password;
use crate::rotation::Outcome;
use crate::verify::Verdict;
use crate::{failpoint, random};

/// The `format` of secret files this version reads and writes.
pub const FORMAT: u32 = 1;

/// The size past which `audit.jsonl` is rotated. A line never straddles two files: an append
/// that would take the file past this size first renames it `audit.jsonl.1` and starts a new
/// one, so no file is larger unless a single line is.
pub const AUDIT_MAX_BYTES: u64 = 64 << 20;

/// How many rotated audit files are kept: `audit.jsonl.1` (the newest) to `audit.jsonl.5`.
/// A rotation removes the oldest.
pub const AUDIT_KEEP: u32 = 5;

/// How far back [`latest_audit`] reads: `audit.jsonl`, then `audit.jsonl.1`, and never more
/// than this many bytes of them together.
pub const AUDIT_LOOKBACK_BYTES: u64 = 2 * AUDIT_MAX_BYTES;

/// The longest line the backwards reader assembles; a longer one is skipped as damaged. Real
/// records are a few hundred bytes.
const AUDIT_MAX_LINE: usize = 1 << 20;

/// How much the backwards reader reads at a time.
const AUDIT_CHUNK: usize = 64 << 10;

/// A password version that is or was live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub version: u64,
    pub username: String,
    pub password: Password,
    pub created_time: String,
    pub request_id: Option<String>,
}

/// A password written before the API call that sets it: it may be live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: u64,
    pub username: String,
    pub password: Password,
    pub created_time: String,
    /// Stable for this pending version: every re-application sends the same token.
    pub client_token: String,
}

/// One account's secret file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub format: u32,
    pub account: String,
    pub api: String,
    pub resource_id: String,
    pub account_name: String,
    pub current: Option<Version>,
    pub pending: Option<Pending>,
    pub previous: Vec<Version>,
}

impl SecretFile {
    /// An empty file for an account that has never rotated.
    pub fn new(account: &Account) -> SecretFile {
        SecretFile {
            format: FORMAT,
            account: account.name.clone(),
            api: account.api.as_str().to_owned(),
            resource_id: account.resource_id.clone(),
            account_name: account.account_name.clone(),
            current: None,
            pending: None,
            previous: Vec::new(),
        }
    }

    /// The newest version the file holds, by number and then creation time.
    pub fn newest(&self) -> (u64, String) {
        self.current
            .iter()
            .chain(&self.previous)
            .map(|v| (v.version, v.created_time.clone()))
            .chain(
                self.pending
                    .iter()
                    .map(|p| (p.version, p.created_time.clone())),
            )
            .max()
            .unwrap_or_default()
    }

    /// Makes `password` the current version of `account_name` (`pwrotd adopt`): a new
    /// version, the old current kept in `previous`. The caller has checked that no pending
    /// password waits.
    pub fn adopt(&mut self, account: &Account, password: Password) {
        // The password is `account_name`'s, as the CLI asked and logged in: under the
        // alternating strategy, with the clone current, current moves back to it.
        self.pending = Some(Pending {
            version: self.latest_version() + 1,
            username: account.account_name.clone(),
            password,
            created_time: timestamp(SystemTime::now()),
            client_token: String::new(),
        });
        self.promote(None, account.keep_versions.max(1));
    }

    /// The audit line of an adoption (`settled: "adopt"`), with the password's HMAC by `hmac`.
    pub fn adopt_audit(
        &self,
        account: &Account,
        hmac: impl Fn(&Password) -> String,
    ) -> Option<AuditRecord> {
        let current = self.current.as_ref()?;
        Some(AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            account: account.name.clone(),
            api: account.api.as_str().to_owned(),
            resource_id: account.resource_id.clone(),
            account_name: current.username.clone(),
            version: current.version,
            outcome: Outcome::Success,
            error_code: None,
            request_id: None,
            attempts: 0,
            duration_ms: 0,
            password_hmac: Some(hmac(&current.password)),
            verification: None,
            settled: Some(Settlement::Adopt),
        })
    }

    /// Whether the file holds no password at all.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.pending.is_none() && self.previous.is_empty()
    }

    /// The highest version number the file has ever held.
    pub fn latest_version(&self) -> u64 {
        let current = self.current.as_ref().map(|v| v.version);
        let pending = self.pending.as_ref().map(|p| p.version);
        let previous = self.previous.iter().map(|v| v.version).max();
        current.max(pending).max(previous).unwrap_or(0)
    }

    /// When the current version was created: the last success.
    pub fn last_success(&self) -> Option<SystemTime> {
        self.current
            .as_ref()
            .and_then(|c| humantime::parse_rfc3339(&c.created_time).ok())
    }

    /// The newest version, current or previous, that belongs to database user `username`: the
    /// password that user had before a pending change.
    pub fn latest_of(&self, username: &str) -> Option<&Version> {
        self.current
            .iter()
            .chain(&self.previous)
            .find(|v| v.username == username)
    }

    /// Moves `pending` to `current`, the old `current` to the front of `previous`, and trims
    /// `previous` to `keep` versions. `request_id` is `None` when a login, not a reply, proved
    /// the change applied.
    pub fn promote(&mut self, request_id: Option<String>, keep: usize) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if let Some(old) = self.current.take() {
            self.previous.insert(0, old);
        }
        self.previous.truncate(keep);
        self.current = Some(Version {
            version: pending.version,
            username: pending.username,
            password: pending.password,
            created_time: pending.created_time,
            request_id,
        });
    }
}

/// Why an account's secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link; refusing to follow it")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "{path} has mode {mode:04o}; group and others must have no access (0600 for files, 0700 for directories)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("{path} is owned by uid {owner}, not by this process (uid {me})")]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} cannot be parsed ({reason}); it is left untouched: repair or move it away")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{path} belongs to {what}; it is left untouched: move it away if the config changed on purpose"
    )]
    Mismatch { path: PathBuf, what: String },
    #[error(
        "{path} was written by a newer pwrotd (format {format}, this one knows {FORMAT}); it is left untouched: run the newer version"
    )]
    Newer { path: PathBuf, format: u32 },
    #[error(
        "{path} holds a pending password whose fate is not settled yet; let a rotation settle it (pwrotd rotate) before adopting"
    )]
    PendingExists { path: PathBuf },
    #[error(
        "{path} resolves into the state directory; a render file never replaces pwrotd's own files"
    )]
    RenderInState { path: PathBuf },
    #[error(
        "{newer} holds a newer password for the same database user than {path}; neither is used until one is moved away (keep the one whose current password logs in)"
    )]
    Stale { path: PathBuf, newer: PathBuf },
    #[error(
        "{path} holds a pending password for {user}, which this account no longer rotates; resolve it under the old config, or move the file away"
    )]
    ForeignPending { path: PathBuf, user: String },
    /// The cluster store could not be reached or refused a statement.
    #[error("the store: {0}")]
    Store(String),
    /// A fenced write of a replica whose lease term is over.
    #[error(
        "this replica no longer leads (its term, epoch {epoch}, is over); the write was refused and the new leader settles the account"
    )]
    Fenced { epoch: i64 },
    /// A row of the cluster store that the store key does not open.
    #[error(
        "the store's record of {account} does not decrypt: a different store key on this replica, or the row was altered or moved; it is left untouched"
    )]
    Undecryptable { account: String },
}

impl SinkError {
    /// A short label for metrics and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Io { .. } => "SinkIo",
            SinkError::Symlink { .. } | SinkError::NotAFile { .. } => "SinkNotAFile",
            SinkError::Mode { .. } | SinkError::Owner { .. } => "SinkPermissions",
            SinkError::Corrupt { .. } => "SinkCorrupt",
            SinkError::Newer { .. } => "SinkNewer",
            SinkError::Stale { .. } => "SinkStale",
            SinkError::RenderInState { .. } => "RenderInState",
            SinkError::PendingExists { .. } => "PendingExists",
            SinkError::ForeignPending { .. } => "SinkMismatch",
            SinkError::Mismatch { .. } => "SinkMismatch",
            SinkError::Store(_) => "StoreUnavailable",
            SinkError::Fenced { .. } => "NotLeader",
            SinkError::Undecryptable { .. } => "StoreUndecryptable",
        }
    }
}

/// One line of `audit.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub account: String,
    pub api: String,
    pub resource_id: String,
    pub account_name: String,
    pub version: u64,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// `hmac-sha256:<hex>` of the password, keyed with `audit.key`; never the password.
    pub password_hmac: Option<String>,
    /// The login that tested the password (`[account.verify]`). Absent when no login was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verdict>,
    /// How a pending password of unknown fate was resolved, or that the version was adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<Settlement>,
}

/// The audit log's `settled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Settlement {
    /// The pending password logged in, so it was promoted with no further API call.
    Login,
    /// The pending password was set again.
    Reapply,
    /// `pwrotd adopt` recorded the password the account had: no API call at all.
    Adopt,
}

impl Settlement {
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Login => "login",
            Settlement::Reapply => "reapply",
            Settlement::Adopt => "adopt",
        }
    }
}

/// The audit log being appended to, and how many lines have been written to it.
struct AuditLog {
    /// `audit.jsonl`, opened for appending.
    file: File,
    /// Lines written through this sink, in any file: the group commit's tickets.
    written: u64,
    /// The size of `file` in bytes.
    size: u64,
    /// `file` does not end with a newline (a torn line, from a crash in the middle of an
    /// append): the next append writes one first, so that the torn line stays alone and never
    /// swallows a whole record.
    torn: bool,
    /// The state directory changed (a new `audit.jsonl`, a rotation) and has not been fsynced
    /// since: no line is written until it has, so that no synced line sits in a file whose
    /// name a crash could lose.
    dir_unsynced: bool,
    /// The size past which `file` is rotated ([`AUDIT_MAX_BYTES`]).
    max_bytes: u64,
}

impl AuditLog {
    /// Opens (creating, 0600) `state_dir/audit.jsonl` for appending and finds how it ends.
    fn open(state_dir: &Path, owner: Option<(u32, u32)>, max_bytes: u64) -> io::Result<AuditLog> {
        let path = audit_path(state_dir, 0);
        let existed = fs::symlink_metadata(&path).is_ok();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        let mut log = AuditLog {
            file,
            written: 0,
            size: 0,
            torn: false,
            dir_unsynced: !existed,
            max_bytes,
        };
        log.find_end()?;
        Ok(log)
    }

    /// Reads where the file ends and whether its last line is whole.
    fn find_end(&mut self) -> io::Result<()> {
        self.size = self.file.metadata()?.len();
        self.torn = false;
        if self.size > 0 {
            let mut last = [0u8];
            self.file.read_exact_at(&mut last, self.size - 1)?;
            self.torn = last[0] != b'\n';
        }
        Ok(())
    }
}

/// `state_dir/audit.jsonl`, or with `n` > 0 its `n`th rotated file, `audit.jsonl.n`.
fn audit_path(state_dir: &Path, n: u32) -> PathBuf {
    match n {
        0 => state_dir.join("audit.jsonl"),
        n => state_dir.join(format!("audit.jsonl.{n}")),
    }
}

/// [`AUDIT_MAX_BYTES`]. In a debug build (the tests' binaries), `PWROTD_AUDIT_MAX_BYTES` may
/// set another bound, as `PWROTD_FAILPOINT` sets failpoints; a release build reads no such
/// variable.
fn audit_max_bytes() -> u64 {
    #[cfg(debug_assertions)]
    if let Some(bound) = std::env::var("PWROTD_AUDIT_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return bound;
    }
    AUDIT_MAX_BYTES
}

/// The state directory: secret files, the audit log and its key.
pub struct Sink {
    state_dir: PathBuf,
    secrets: PathBuf,
    audit_key: Zeroizing<Vec<u8>>,
    audit: Mutex<AuditLog>,
    /// How many audit lines are known to be on disk.
    audit_synced: Mutex<u64>,
    uid: u32,
    /// Whom new files are handed to (see [`state_owner`]).
    owner: Option<(u32, u32)>,
    /// Sink I/O run on the blocking pool. It cannot be cancelled, so a daemon that stops
    /// waits for it before it lets go of the state lock.
    io_tasks: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` with mode 0700 if missing; refuses one that others can enter or that another
/// user owns (root may use any). A symbolic link is followed only when root or this user owns
/// the link itself, as with a state directory that systemd links into `/var/lib/private`.
pub fn private_dir(dir: &Path) -> Result<(), SinkError> {
    let me = nix::unistd::geteuid().as_raw();
    let meta = match fs::symlink_metadata(dir) {
        Ok(link) if link.file_type().is_symlink() => {
            if link.uid() != 0 && link.uid() != me {
                return Err(SinkError::Symlink {
                    path: dir.to_owned(),
                });
            }
            fs::metadata(dir).map_err(io_error(dir))?
        }
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error(dir))?;
            return fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error(dir));
        }
        Err(e) => return Err(io_error(dir)(e)),
    };
    if !meta.is_dir() {
        return Err(SinkError::NotAFile {
            path: dir.to_owned(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SinkError::Mode {
            path: dir.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.uid() != me && me != 0 {
        return Err(SinkError::Owner {
            path: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// What [`private_dir`] would say of `dir`, without creating it: `Ok` if it is missing (it
/// will be created 0700) or fit to hold secrets.
pub fn check_private_dir(dir: &Path) -> Result<(), SinkError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => private_dir(dir),
    }
}

/// Whom the files this process creates under `state_dir` must belong to: when root runs a
/// command on a state directory that another user (the service's) owns, that user and group,
/// so that the daemon can use the files afterwards; otherwise nobody else.
pub fn state_owner(state_dir: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = fs::metadata(state_dir).ok()?;
    (meta.uid() != 0).then_some((meta.uid(), meta.gid()))
}

/// Gives a file this process created under `state_dir` to the state directory's owner, when
/// root creates it for another user's state directory (see [`state_owner`]).
pub fn hand_over(file: &File, state_dir: &Path) -> io::Result<()> {
    match state_owner(state_dir) {
        Some((uid, gid)) => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

impl Sink {
    /// Opens (creating if needed) the state directory, its `secrets/`, the audit key and log.
    pub fn open(state_dir: &Path) -> Result<Sink, SinkError> {
        Sink::open_with(state_dir, audit_max_bytes())
    }

    /// [`Sink::open`], with the audit log rotated past `audit_max_bytes`.
    fn open_with(state_dir: &Path, audit_max_bytes: u64) -> Result<Sink, SinkError> {
        private_dir(state_dir)?;
        let owner = state_owner(state_dir);
        let secrets = state_dir.join("secrets");
        if fs::symlink_metadata(&secrets).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(SinkError::Symlink { path: secrets });
        }
        private_dir(&secrets)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&secrets, Some(uid), Some(gid))
                .map_err(io_error(&secrets))?;
        }
        let key_path = state_dir.join("audit.key");
        let audit_key = match fs::read(&key_path) {
            Ok(key) if key.len() >= 32 => Zeroizing::new(key),
            Ok(_) => {
                return Err(SinkError::Corrupt {
                    path: key_path,
                    reason: "shorter than 32 bytes".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = random::hex_token::<32>().map_err(|e| SinkError::Io {
                    path: key_path.clone(),
                    source: io::Error::other(e.to_string()),
                })?;
                let key = Zeroizing::new(key.into_bytes());
                write_file(state_dir, "audit.key", &key, Perms::private(owner), true)?;
                key
            }
            Err(e) => return Err(io_error(&key_path)(e)),
        };
        let audit_path = audit_path(state_dir, 0);
        let audit =
            AuditLog::open(state_dir, owner, audit_max_bytes).map_err(io_error(&audit_path))?;
        Ok(Sink {
            state_dir: state_dir.to_owned(),
            secrets,
            audit_key,
            audit: Mutex::new(audit),
            audit_synced: Mutex::new(0),
            uid: nix::unistd::geteuid().as_raw(),
            owner,
            io_tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where sink I/O runs on the blocking pool, tracked for [`Sink::drain_io`].
    pub fn io_tasks(&self) -> &tokio_util::task::TaskTracker {
        &self.io_tasks
    }

    /// Waits, at most `limit`, for sink I/O that stopped tasks left running (a rotation
    /// aborted at shutdown leaves its blocking write going). Returns whether all of it ended.
    pub async fn drain_io(&self, limit: std::time::Duration) -> bool {
        self.io_tasks.close();
        tokio::time::timeout(limit, self.io_tasks.wait())
            .await
            .is_ok()
    }

    /// Whom files this process creates are handed to (see [`state_owner`]).
    pub fn owner_uid(&self) -> Option<u32> {
        self.owner.map(|o| o.0)
    }

    /// The path of an account's secret file.
    pub fn path(&self, account: &str) -> PathBuf {
        secret_path(&self.state_dir, account)
    }

    /// Takes over the secret file of the account `from`, renamed to `account`, if it holds the
    /// same database users: the file is written under the new name, durably, and then the old
    /// one is removed. `None` when `from` has no such file. The caller guarantees that nothing
    /// writes either file meanwhile.
    pub fn adopt(&self, account: &Account, from: &str) -> Result<Option<SecretFile>, SinkError> {
        let old = self.path(from);
        let Some(mut file) = read_secret_file(&old, self.uid)? else {
            return Ok(None);
        };
        let service = file.api.parse::<crate::cloud::Api>().map(|a| a.service());
        let usernames: Vec<String> = account.users().into_iter().map(|u| u.username).collect();
        let users_match = file
            .current
            .iter()
            .map(|v| &v.username)
            .chain(file.previous.iter().map(|v| &v.username))
            .chain(file.pending.iter().map(|p| &p.username))
            .all(|u| usernames.contains(u));
        if file.account != from
            || service != Ok(account.api.service())
            || file.resource_id != account.resource_id
            || file.account_name != account.account_name
            || !users_match
        {
            return Ok(None);
        }
        file.account = account.name.clone();
        file.api = account.api.as_str().to_owned();
        self.write_secret(&file, true)?;
        fs::remove_file(&old).map_err(io_error(&old))?;
        File::open(&self.secrets)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.secrets))?;
        tracing::warn!(account = %account.name, from, "took over the secret file of the renamed account");
        Ok(Some(file))
    }

    /// Reads an account's secret file; see [`read_secret`].
    pub fn load(&self, account: &Account) -> Result<Option<SecretFile>, SinkError> {
        read_secret(&self.state_dir, account, self.uid)
    }

    /// The secret file named `name`, whatever account it is about (the cluster mirror's
    /// copy); `None` if there is none.
    pub fn load_named(&self, name: &str) -> Result<Option<SecretFile>, SinkError> {
        read_secret_file(&secret_path(&self.state_dir, name), self.uid)
    }

    /// Records `password` as the password `account`'s database user has today (`pwrotd
    /// adopt`): a new current version, the old current kept in `previous`, and an audit line
    /// (`settled: "adopt"`). Refused while the file holds a pending password, whose fate must
    /// be settled first. Durable on return.
    pub fn adopt_current(
        &self,
        account: &Account,
        password: Password,
    ) -> Result<SecretFile, SinkError> {
        let mut file = self
            .load(account)?
            .unwrap_or_else(|| SecretFile::new(account));
        if file.pending.is_some() {
            return Err(SinkError::PendingExists {
                path: self.path(&account.name),
            });
        }
        file.adopt(account, password);
        self.write_secret(&file, true)?;
        if let Some(record) = file.adopt_audit(account, |p| self.password_hmac(p))
            && let Err(e) = self.audit(&record)
        {
            tracing::error!(account = %account.name, "cannot write the audit log: {e}");
        }
        Ok(file)
    }

    /// Writes an account's secret file holding a new `pending` password: atomically, with the
    /// file and the directory fsynced, so that it survives a crash before the API call.
    pub fn store_pending(&self, file: &SecretFile) -> Result<(), SinkError> {
        self.write_secret(file, true)
    }

    /// Writes an account's secret file after an outcome (a promotion, a cleared pending):
    /// atomically, with the file fsynced but not the directory. If a crash loses the rename,
    /// the directory still shows the state [`Sink::store_pending`] made durable, whose
    /// `pending` is then re-applied: safe, and one fsync cheaper per write.
    pub fn store(&self, file: &SecretFile) -> Result<(), SinkError> {
        self.write_secret(file, false)
    }

    fn write_secret(&self, file: &SecretFile, sync_dir: bool) -> Result<(), SinkError> {
        let json = Zeroizing::new(serde_json::to_vec_pretty(file).map_err(|e| SinkError::Io {
            path: self.path(&file.account),
            source: io::Error::other(e),
        })?);
        let name = format!("{}.json", file.account);
        write_file(
            &self.secrets,
            &name,
            &json,
            Perms::private(self.owner),
            sync_dir,
        )
    }

    /// `hmac-sha256:<hex>` of a password under the audit key.
    pub fn password_hmac(&self, password: &Password) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.audit_key)
            .expect("HMAC takes any key length");
        mac.update(password.expose().as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Appends one line to `audit.jsonl` and returns once it is synced. Lines written at the
    /// same time share one fdatasync (group commit): only the first writer syncs, for all.
    ///
    /// A line that would take the file past its bound ([`AUDIT_MAX_BYTES`]) first rotates it
    /// (see `Sink::rotate_audit`). A line always starts a line of its own: after a torn
    /// last line, a newline is written first.
    pub fn audit(&self, record: &AuditRecord) -> Result<(), SinkError> {
        let path = audit_path(&self.state_dir, 0);
        let mut line =
            serde_json::to_vec(record).map_err(|e| io_error(&path)(io::Error::other(e)))?;
        line.push(b'\n');
        let ticket = {
            let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            if log.size > 0 && log.size.saturating_add(line.len() as u64) > log.max_bytes {
                match self.rotate_audit(&mut log) {
                    Ok(()) => tracing::info!(path = %path.display(), "rotated the audit log"),
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        "cannot rotate the audit log ({e}); appending to it as it is"
                    ),
                }
            }
            if log.dir_unsynced {
                File::open(&self.state_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(&self.state_dir))?;
                log.dir_unsynced = false;
            }
            if log.torn {
                line.insert(0, b'\n');
            }
            if let Err(e) = log.file.write_all(&line) {
                // Part of the line may be there: learn how the file ends now.
                if log.find_end().is_err() {
                    log.torn = true;
                }
                return Err(io_error(&path)(e));
            }
            log.size += line.len() as u64;
            log.torn = false;
            log.written += 1;
            log.written
        };
        // Whoever takes the sync lock first syncs every line written so far. A line written
        // before a rotation is in the old file, which the rotation synced: syncing the file
        // written now covers every line up to `upto`.
        let mut synced = self.audit_synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced < ticket {
            let (file, upto) = {
                let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
                (log.file.try_clone().map_err(io_error(&path))?, log.written)
            };
            file.sync_data().map_err(io_error(&path))?;
            *synced = upto;
        }
        Ok(())
    }

    /// Rotates the audit log, with its lock held: syncs the current file (every line written
    /// so far is then on disk, whatever file a later sync covers), creates the new file under
    /// a temporary name (0600, handed to the state directory's owner), shifts
    /// `audit.jsonl.{n}` to `.{n+1}` up to [`AUDIT_KEEP`] (the oldest is replaced), renames
    /// `audit.jsonl` to `audit.jsonl.1` and the new file to `audit.jsonl`. The directory is
    /// fsynced before the next line is written. On failure, appends go on in the old file and
    /// a later append tries again.
    fn rotate_audit(&self, log: &mut AuditLog) -> io::Result<()> {
        let dir = &self.state_dir;
        log.file.sync_data()?;
        let fresh_path = dir.join(".audit.jsonl.new");
        match fs::remove_file(&fresh_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let fresh = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&fresh_path)?;
        let renamed = (|| {
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::fchown(&fresh, Some(uid), Some(gid))?;
            }
            log.dir_unsynced = true;
            for n in (0..AUDIT_KEEP).rev() {
                match fs::rename(audit_path(dir, n), audit_path(dir, n + 1)) {
                    Ok(()) => {}
                    // A gap left by an operator or a crash; or no `audit.jsonl` at all, when
                    // it was removed under the open file.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if let Err(e) = fs::rename(&fresh_path, audit_path(dir, 0)) {
                let _ = fs::rename(audit_path(dir, 1), audit_path(dir, 0));
                return Err(e);
            }
            Ok(())
        })();
        if let Err(e) = renamed {
            let _ = fs::remove_file(&fresh_path);
            return Err(e);
        }
        log.file = fresh;
        log.size = 0;
        log.torn = false;
        Ok(())
    }
}

/// Every record of the audit log, oldest first: the rotated files `audit.jsonl.5` to `.1`,
/// then `audit.jsonl`; none if there is no log yet. Lines that do not parse (not UTF-8, not
/// JSON, torn) are skipped. It holds the whole log in memory: for tests and tools on small
/// logs; `status` uses [`latest_audit`].
pub fn read_audit(state_dir: &Path) -> Result<Vec<AuditRecord>, SinkError> {
    let mut records = Vec::new();
    for n in (0..=AUDIT_KEEP).rev() {
        let path = audit_path(state_dir, n);
        match fs::read(&path) {
            Ok(bytes) => records.extend(
                bytes
                    .split(|&b| b == b'\n')
                    .filter_map(|l| serde_json::from_slice::<AuditRecord>(l).ok()),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
    }
    Ok(records)
}

/// The newest audit records of some accounts, as [`latest_audit`] found them.
#[derive(Debug, Default)]
pub struct AuditTail {
    /// Each account's newest record, for the accounts that have one within the lookback.
    pub latest: HashMap<String, AuditRecord>,
    /// Lines read that could not be used: not UTF-8, not a whole JSON record (torn by a crash),
    /// or longer than 1 MiB. Lines past the last one needed are not read, so not counted.
    pub skipped: u64,
}

/// The newest record of each of `accounts` in the audit log, read backwards from its end in
/// chunks: `audit.jsonl`, then `audit.jsonl.1`, stopping as soon as every account is found or
/// [`AUDIT_LOOKBACK_BYTES`] have been read. Memory holds one chunk, one line and one record per
/// account, whatever the log's size. A missing file is no error; damaged lines are counted in
/// [`AuditTail::skipped`], never fatal.
pub fn latest_audit(state_dir: &Path, accounts: &[&str]) -> Result<AuditTail, SinkError> {
    let wanted: HashSet<&str> = accounts.iter().copied().collect();
    let mut tail = AuditTail::default();
    let mut budget = AUDIT_LOOKBACK_BYTES;
    for n in [0, 1] {
        if tail.latest.len() == wanted.len() || budget == 0 {
            break;
        }
        let path = audit_path(state_dir, n);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mut lines = Backwards::new(file, budget).map_err(io_error(&path))?;
        while tail.latest.len() < wanted.len() {
            let Some(line) = lines.next_line().map_err(io_error(&path))? else {
                break;
            };
            let record = match line {
                Line::Text(text) if text.is_empty() => continue,
                Line::Text(text) => serde_json::from_slice::<AuditRecord>(&text).ok(),
                Line::Overlong => None,
            };
            match record {
                Some(record) => {
                    if wanted.contains(record.account.as_str())
                        && !tail.latest.contains_key(&record.account)
                    {
                        tail.latest.insert(record.account.clone(), record);
                    }
                }
                None => tail.skipped += 1,
            }
        }
        budget = lines.budget;
    }
    Ok(tail)
}

/// A line read by [`Backwards`].
enum Line {
    /// The line's bytes, without its newline.
    Text(Vec<u8>),
    /// A line longer than [`AUDIT_MAX_LINE`], dropped unread.
    Overlong,
}

/// The lines of a file from its end backwards, read [`AUDIT_CHUNK`] bytes at a time: memory
/// holds a chunk and a line, whatever the file's size.
struct Backwards {
    file: File,
    /// Everything before this offset is unread.
    pos: u64,
    /// How many more bytes may be read.
    budget: u64,
    /// Bytes read but not yet returned, from `pos` on: the end of the line being assembled,
    /// then whole lines.
    carry: Vec<u8>,
    /// The line being assembled is longer than [`AUDIT_MAX_LINE`]: its bytes are dropped
    /// until its start is found.
    overlong: bool,
}

impl Backwards {
    fn new(file: File, budget: u64) -> io::Result<Backwards> {
        let pos = file.metadata()?.len();
        Ok(Backwards {
            file,
            pos,
            budget,
            carry: Vec::new(),
            overlong: false,
        })
    }

    /// The line before the last one returned; an empty line for the end of a file that ends
    /// with a newline; `None` at the start of the file, or where the budget runs out (the line
    /// cut there is not returned).
    fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(newline) = self.carry.iter().rposition(|&b| b == b'\n') {
                let line = self.carry.split_off(newline + 1);
                self.carry.truncate(newline);
                if std::mem::take(&mut self.overlong) {
                    return Ok(Some(Line::Overlong));
                }
                return Ok(Some(Line::Text(line)));
            }
            if self.overlong || self.carry.len() > AUDIT_MAX_LINE {
                self.carry.clear();
                self.overlong = true;
            }
            if self.pos == 0 {
                // The file's first line.
                if std::mem::take(&mut self.overlong) {
                    return Ok(Some(Line::Overlong));
                }
                if self.carry.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Text(std::mem::take(&mut self.carry))));
            }
            if self.budget == 0 {
                return Ok(None);
            }
            let n = (AUDIT_CHUNK as u64).min(self.pos).min(self.budget);
            let mut chunk = vec![0; usize::try_from(n).unwrap_or(AUDIT_CHUNK)];
            self.file.read_exact_at(&mut chunk, self.pos - n)?;
            self.pos -= n;
            self.budget -= n;
            chunk.extend_from_slice(&self.carry);
            self.carry = chunk;
        }
    }
}

/// The database users a secret file holds: its service, resource and `account_name`.
type FileKey = (Service, String, String);

/// The secret files in `secrets/` that no configured account claims, indexed by the database
/// users they hold: what a renamed account takes over. Listed and read once, when first needed.
pub struct Unclaimed {
    configured: HashSet<String>,
    index: Mutex<Option<Index>>,
}

/// Unclaimed files by the users they hold: each file's name and newest version.
type Index = HashMap<FileKey, Vec<(String, Newest)>>;

/// The newest version a file holds: its number and creation time.
type Newest = (u64, String);

fn file_key(file: &SecretFile) -> Option<FileKey> {
    let service = file.api.parse::<crate::cloud::Api>().ok()?.service();
    Some((service, file.resource_id.clone(), file.account_name.clone()))
}

fn account_key(account: &Account) -> FileKey {
    (
        account.api.service(),
        account.resource_id.clone(),
        account.account_name.clone(),
    )
}

impl Unclaimed {
    /// The secret files that none of `configured` (the config's account names) claims.
    pub fn new(configured: impl IntoIterator<Item = String>) -> Unclaimed {
        Unclaimed {
            configured: configured.into_iter().collect(),
            index: Mutex::new(None),
        }
    }

    /// Reads `name`'s file into the index, if it holds a password.
    fn note(&self, sink: &Sink, index: &mut Index, name: &str) {
        match read_secret_file(&sink.path(name), sink.uid) {
            Ok(Some(file)) if file.account == name && !file.is_empty() => {
                if let Some(key) = file_key(&file) {
                    let entry = index.entry(key).or_default();
                    entry.retain(|(n, _)| n != name);
                    entry.push((name.to_owned(), file.newest()));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("an unclaimed secret file cannot be read: {e}"),
        }
    }

    fn build(&self, sink: &Sink) -> Result<Index, SinkError> {
        let mut index = HashMap::new();
        let entries = fs::read_dir(&sink.secrets).map_err(io_error(&sink.secrets))?;
        for entry in entries {
            let entry = entry.map_err(io_error(&sink.secrets))?;
            let name = entry.file_name();
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && !stem.starts_with('.')
                && !self.configured.contains(stem)
            {
                self.note(sink, &mut index, stem);
            }
        }
        Ok(index)
    }

    /// Reads `account`'s secret file. With none, takes over the newest unclaimed file that
    /// holds the same database users (`renamed_from` names one that may have appeared since
    /// the files were listed). A file of its own that is older than an unclaimed one for the
    /// same users is refused: which holds the database's password is for an operator to say.
    pub fn load(
        &self,
        sink: &Sink,
        account: &Account,
        renamed_from: Option<&str>,
    ) -> Result<Option<SecretFile>, SinkError> {
        let own = sink.load(account)?;
        let mut guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.build(sink)?);
        }
        let index = guard.get_or_insert_default();
        if let Some(from) = renamed_from.filter(|n| !self.configured.contains(*n)) {
            self.note(sink, index, from);
        }
        let key = account_key(account);
        let newest = index
            .get(&key)
            .and_then(|c| c.iter().max_by(|a, b| a.1.cmp(&b.1)))
            .cloned();
        match (own, newest) {
            (Some(own), Some((other, at))) if at > own.newest() => Err(SinkError::Stale {
                path: sink.path(&account.name),
                newer: sink.path(&other),
            }),
            (Some(own), _) => Ok(Some(own)),
            (None, None) => Ok(None),
            (None, Some((from, _))) => {
                let adopted = sink.adopt(account, &from)?;
                if let Some(candidates) = index.get_mut(&key) {
                    candidates.retain(|(n, _)| *n != from);
                    for (left, _) in candidates.iter() {
                        tracing::warn!(account = %account.name, "{} holds older passwords of the same database user; it is left as it is", sink.path(left).display());
                    }
                }
                Ok(adopted)
            }
        }
    }
}

/// Reads an account's secret file under `state_dir`; `None` if it has never been written.
/// Refuses a file that is a link, not regular, open to others, owned by someone other than
/// `uid` (root may read any), unparseable, or about other database users. A file about other
/// users that holds no password at all (left by a run with a mistyped resource id, say) is
/// treated as absent, so that the corrected config can replace it. Creates nothing.
pub fn read_secret(
    state_dir: &Path,
    account: &Account,
    uid: u32,
) -> Result<Option<SecretFile>, SinkError> {
    let path = secret_path(state_dir, &account.name);
    let Some(file) = read_secret_file(&path, uid)? else {
        return Ok(None);
    };
    if file.account != account.name
        || file.resource_id != account.resource_id
        || file.account_name != account.account_name
    {
        if file.is_empty() {
            tracing::info!(path = %path.display(), "replacing a secret file that holds no password and names other users");
            return Ok(None);
        }
        return Err(SinkError::Mismatch {
            path,
            what: format!(
                "{} ({}/{})",
                file.account, file.resource_id, file.account_name
            ),
        });
    }
    if let Some(pending) = &file.pending
        && !account
            .users()
            .iter()
            .any(|u| u.username == pending.username)
    {
        return Err(SinkError::ForeignPending {
            path,
            user: pending.username.clone(),
        });
    }
    Ok(Some(file))
}

fn secret_path(state_dir: &Path, account: &str) -> PathBuf {
    state_dir.join("secrets").join(format!("{account}.json"))
}

/// Reads and checks one secret file, whatever account it names; `None` if there is none.
fn read_secret_file(path: &Path, uid: u32) -> Result<Option<SecretFile>, SinkError> {
    let path = path.to_owned();
    let meta = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(SinkError::Symlink { path });
    }
    if !meta.is_file() {
        return Err(SinkError::NotAFile { path });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SinkError::Mode {
            path,
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.uid() != uid && uid != 0 {
        return Err(SinkError::Owner {
            path,
            owner: meta.uid(),
            me: uid,
        });
    }
    let bytes = Zeroizing::new(fs::read(&path).map_err(io_error(&path))?);
    // The format first: a newer one may hold fields this version does not know.
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    if let Ok(Format { format }) = serde_json::from_slice::<Format>(&bytes)
        && format > FORMAT
    {
        return Err(SinkError::Newer { path, format });
    }
    let file: SecretFile = serde_json::from_slice(&bytes).map_err(|e| SinkError::Corrupt {
        path: path.clone(),
        // Only the kind and place of the error: serde_json's message may quote a value.
        reason: format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    if file.format != FORMAT {
        return Err(SinkError::Corrupt {
            path,
            reason: format!("format {} is not {FORMAT}", file.format),
        });
    }
    Ok(Some(file))
}

/// The mode and owner a written file gets before it replaces its target.
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Perms {
    /// 0600, handed to `owner` if set.
    fn private(owner: Option<(u32, u32)>) -> Perms {
        Perms {
            mode: 0o600,
            uid: owner.map(|o| o.0),
            gid: owner.map(|o| o.1),
        }
    }
}

/// The atomic write: a new temporary file in `dir`, given its mode and owner before it
/// replaces the target (so that readers never see it otherwise), fsync, rename over the
/// target, and (`sync_dir`) fsync of `dir`, so that the rename itself is durable on return.
/// On failure the target is untouched and the temporary file is removed.
fn write_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    perms: Perms,
    sync_dir: bool,
) -> Result<(), SinkError> {
    let target = dir.join(name);
    // One name per target: only one process writes a target (the state lock), so a file by
    // this name can only be left over from a crash between write and rename. Unlinking does
    // not follow a symlink, and `create_new` refuses to write through one.
    let temp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&temp) {
        Ok(()) => {
            tracing::info!(path = %temp.display(), "removed a temporary file left by a crash")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&temp)(e)),
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(perms.mode)
            .open(&temp)
            .map_err(io_error(&temp))?;
        if perms.uid.is_some() || perms.gid.is_some() {
            std::os::unix::fs::fchown(&file, perms.uid, perms.gid).map_err(io_error(&temp))?;
        }
        file.set_permissions(fs::Permissions::from_mode(perms.mode))
            .map_err(io_error(&temp))?;
        failpoint::io("write").map_err(io_error(&temp))?;
        file.write_all(contents).map_err(io_error(&temp))?;
        failpoint::io("fsync").map_err(io_error(&temp))?;
        file.sync_all().map_err(io_error(&temp))?;
        drop(file);
        failpoint::crash("before_rename");
        fs::rename(&temp, &target).map_err(io_error(&target))?;
        if !sync_dir {
            return Ok(());
        }
        failpoint::io("fsync").map_err(io_error(dir))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// What writing an account's render files did.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Files written.
    pub written: usize,
    /// Every failure.
    pub errors: Vec<SinkError>,
}

/// The content of one render file for `current`.
fn render_contents(format: crate::config::RenderFormat, current: &Version) -> Zeroizing<Vec<u8>> {
    use crate::config::RenderFormat;
    Zeroizing::new(match format {
        RenderFormat::Raw => current.password.expose().as_bytes().to_vec(),
        // Single quotes: no documented password character needs escaping inside them, and
        // both shells and systemd's EnvironmentFile= read them.
        RenderFormat::Env => format!(
            "PWROTD_USERNAME='{}'\nPWROTD_PASSWORD='{}'\nPWROTD_VERSION={}\n",
            current.username,
            current.password.expose(),
            current.version
        )
        .into_bytes(),
        RenderFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&serde_json::json!({
                "username": current.username,
                "password": current.password.expose(),
                "version": current.version,
                "created_time": current.created_time,
            }))
            .unwrap_or_default();
            v.push(b'\n');
            v
        }
    })
}

/// Whether the render file at `path` already is a regular file with `contents`, `mode` and
/// `gid`.
fn rendered_already(path: &Path, contents: &[u8], mode: u32, gid: Option<u32>) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file()
        || meta.mode() & 0o7777 != mode
        || gid.is_some_and(|g| g != meta.gid())
        || meta.len() != contents.len() as u64
    {
        return false;
    }
    fs::read(path).is_ok_and(|on_disk| Zeroizing::new(on_disk).as_slice() == contents)
}

/// Writes an account's render files from its current version: every one, or (`always` off)
/// only those that are not already what they should be.
/// `uid` hands the files to the state directory's owner (see [`state_owner`]). A render
/// directory that resolves into `state_dir` (through a link made after `check`, say) is
/// refused: a render file must never replace a secret file.
pub fn render(
    account: &Account,
    current: &Version,
    always: bool,
    state_dir: &Path,
    uid: Option<u32>,
) -> Rendered {
    let mut rendered = Rendered::default();
    let state_dir = fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    for render in &account.render {
        let contents = render_contents(render.format, current);
        let (Some(dir), Some(name)) = (
            render.path.parent(),
            render.path.file_name().and_then(|n| n.to_str()),
        ) else {
            continue;
        };
        if fs::canonicalize(dir).is_ok_and(|real| real.starts_with(&state_dir)) {
            rendered.errors.push(SinkError::RenderInState {
                path: render.path.clone(),
            });
            continue;
        }
        if !always && rendered_already(&render.path, &contents, render.mode, render.gid) {
            continue;
        }
        let perms = Perms {
            mode: render.mode,
            uid,
            gid: render.gid,
        };
        match write_file(dir, name, &contents, perms, true) {
            Ok(()) => rendered.written += 1,
            Err(e) => rendered.errors.push(e),
        }
        failpoint::crash("during_render");
    }
    rendered
}

/// The current UTC time as `YYYY-MM-DDThh:mm:ssZ`.
/// A time RFC 3339 cannot write (past the year 9999; a last success in the sink can be that
/// late, plus a period) is shown as `after 9999-12-31T23:59:59Z`, never a panic.
pub fn timestamp(at: SystemTime) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    match write!(text, "{}", humantime::format_rfc3339_seconds(at)) {
        Ok(()) => text,
        Err(_) => "after 9999-12-31T23:59:59Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(account: &str, version: u64) -> AuditRecord {
        AuditRecord {
            time: "2026-01-01T00:00:00.000Z".into(),
            account: account.into(),
            api: "ModifyAccountPassword".into(),
            resource_id: "pc-test0001".into(),
            account_name: "app".into(),
            version,
            outcome: Outcome::Success,
            error_code: None,
            request_id: Some("5B0C1C1D-0000-4000-8000-000000000000".into()),
            attempts: 1,
            duration_ms: 12,
            password_hmac: Some(format!("hmac-sha256:{version:064x}")),
            verification: None,
            settled: None,
        }
    }

    fn state_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    /// Every line of the kept audit files, oldest first, each parsed; panics on a damaged
    /// one. Also checks every file's bound and mode.
    fn all_lines(dir: &Path, bound: u64) -> Vec<AuditRecord> {
        let mut records = Vec::new();
        for n in (0..=AUDIT_KEEP).rev() {
            let path = audit_path(dir, n);
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            assert!(
                bytes.len() as u64 <= bound,
                "{} is over the bound",
                path.display()
            );
            let mode = fs::metadata(&path).expect("stat").mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            assert!(
                bytes.is_empty() || bytes.ends_with(b"\n"),
                "{}",
                path.display()
            );
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                records.push(serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!("{}: {e}: {}", path.display(), String::from_utf8_lossy(line))
                }));
            }
        }
        assert!(!audit_path(dir, AUDIT_KEEP + 1).exists(), "too many kept");
        assert!(!dir.join(".audit.jsonl.new").exists(), "a leftover");
        records
    }

    #[test]
    fn concurrent_appends_across_rotations_keep_every_line_whole_and_in_order() {
        const THREADS: u64 = 8;
        const EACH: u64 = 40;
        const BOUND: u64 = 20_000;
        let dir = state_dir();
        let sink = Sink::open_with(dir.path(), BOUND).expect("open");
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let sink = &sink;
                s.spawn(move || {
                    for v in 0..EACH {
                        sink.audit(&record(&format!("t{t}"), v)).expect("audit");
                    }
                });
            }
        });
        assert!(audit_path(dir.path(), 3).exists(), "rotated several times");
        let records = all_lines(dir.path(), BOUND);
        assert_eq!(records.len() as u64, THREADS * EACH, "a line was lost");
        // Each thread's lines are in the order it wrote them, across the files.
        let mut next = HashMap::new();
        for r in &records {
            let expected = next.entry(r.account.clone()).or_insert(0);
            assert_eq!(r.version, *expected, "{} out of order", r.account);
            *expected += 1;
        }
        assert_eq!(
            *sink.audit_synced.lock().expect("lock"),
            THREADS * EACH,
            "every line is counted as synced"
        );
    }

    #[test]
    fn rotation_keeps_five_files_and_drops_the_oldest() {
        const BOUND: u64 = 1000;
        let dir = state_dir();
        let sink = Sink::open_with(dir.path(), BOUND).expect("open");
        for v in 0..100 {
            sink.audit(&record("a", v)).expect("audit");
        }
        let records = all_lines(dir.path(), BOUND);
        assert!(audit_path(dir.path(), AUDIT_KEEP).exists());
        let versions: Vec<u64> = records.iter().map(|r| r.version).collect();
        let first = versions[0];
        assert!(first > 0, "the oldest lines are gone");
        assert_eq!(
            versions,
            (first..100).collect::<Vec<_>>(),
            "the newest, contiguous"
        );
        // A new sink (a restart) appends to the same file and rotates on the same bound.
        drop(sink);
        let sink = Sink::open_with(dir.path(), BOUND).expect("reopen");
        for v in 100..110 {
            sink.audit(&record("a", v)).expect("audit");
        }
        let records = all_lines(dir.path(), BOUND);
        assert_eq!(records.last().map(|r| r.version), Some(109));
        assert!(records.windows(2).all(|w| w[1].version == w[0].version + 1));
    }

    #[test]
    fn an_append_after_a_torn_line_starts_a_new_line_and_an_oversized_log_rotates_first() {
        let dir = state_dir();
        let path = audit_path(dir.path(), 0);
        let whole = serde_json::to_string(&record("a", 1)).expect("json");
        let torn = &whole[..whole.len() / 2];
        fs::write(&path, format!("{whole}\n{torn}")).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let sink = Sink::open_with(dir.path(), 1 << 20).expect("open");
        sink.audit(&record("a", 2)).expect("audit");
        sink.audit(&record("a", 3)).expect("audit");
        let text = fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[1], torn, "the torn line stays alone");
        let versions: Vec<u64> = read_audit(dir.path())
            .expect("read")
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
        drop(sink);

        // A log already over the bound (from before rotation existed) is rotated at the first
        // append, untouched, torn end and all.
        fs::write(&path, format!("{whole}\n{whole}\n{torn}")).expect("write");
        let before = fs::read(&path).expect("read");
        let sink = Sink::open_with(dir.path(), before.len() as u64).expect("open");
        sink.audit(&record("a", 4)).expect("audit");
        assert_eq!(
            fs::read(audit_path(dir.path(), 1)).expect("read .1"),
            before
        );
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!(
                "{}\n",
                serde_json::to_string(&record("a", 4)).expect("json")
            )
        );
    }

    #[test]
    fn a_new_audit_file_is_handed_to_the_state_directorys_owner() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root creates files for another user");
            return;
        }
        let dir = state_dir();
        std::os::unix::fs::chown(dir.path(), Some(4242), Some(4243)).expect("chown");
        let sink = Sink::open_with(dir.path(), 600).expect("open");
        for v in 0..6 {
            sink.audit(&record("a", v)).expect("audit");
        }
        for n in [0, 1, 2] {
            let meta = fs::metadata(audit_path(dir.path(), n)).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "audit.jsonl.{n}");
            assert_eq!(meta.mode() & 0o777, 0o600);
        }
    }

    fn backwards(bytes: &[u8], budget: u64) -> Vec<Option<Vec<u8>>> {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(bytes).expect("write");
        let mut lines = Backwards::new(file, budget).expect("open");
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().expect("read") {
            out.push(match line {
                Line::Text(t) => Some(t),
                Line::Overlong => None,
            });
        }
        out
    }

    #[test]
    fn backwards_returns_every_line_in_reverse_across_chunks_and_drops_overlong_ones() {
        let long = vec![b'x'; AUDIT_CHUNK * 3 + 17];
        let lines: Vec<Vec<u8>> = vec![
            b"first".to_vec(),
            Vec::new(),
            long.clone(),
            b"\xff\xfe not utf-8".to_vec(),
            b"last, torn".to_vec(),
        ];
        let text = lines.join(&b'\n');
        let expected: Vec<Option<Vec<u8>>> = lines.iter().rev().cloned().map(Some).collect();
        assert_eq!(backwards(&text, u64::MAX), expected);
        // A file ending with a newline starts with an empty line.
        let mut ended = text.clone();
        ended.push(b'\n');
        let got = backwards(&ended, u64::MAX);
        assert_eq!(got[0], Some(Vec::new()));
        assert_eq!(got[1..], expected[..]);
        assert!(backwards(b"", u64::MAX).is_empty());

        // A line over the limit comes back as one overlong line, wherever it is.
        let huge = vec![b'{'; AUDIT_MAX_LINE + AUDIT_CHUNK + 1];
        for text in [
            [b"a\n".as_slice(), &huge, b"\nb"].concat(),
            [huge.as_slice(), b"\nb"].concat(),
        ] {
            let got = backwards(&text, u64::MAX);
            assert_eq!(got[0], Some(b"b".to_vec()));
            assert_eq!(got[1], None);
            assert!(got.len() <= 3, "{}", got.len());
        }

        // The budget stops the reading; the line it cuts is not returned.
        let text = b"aaaa\nbbbb\ncccc\n";
        assert_eq!(
            backwards(text, 7),
            [Some(Vec::new()), Some(b"cccc".to_vec())]
        );
    }

    #[test]
    fn latest_audit_reads_into_the_rotated_file_only_as_far_as_needed() {
        let dir = state_dir();
        let line = |account: &str, version: u64, error: Option<&str>| {
            let mut r = record(account, version);
            r.error_code = error.map(str::to_owned);
            format!("{}\n", serde_json::to_string(&r).expect("json"))
        };
        fs::write(
            audit_path(dir.path(), 1),
            [line("a", 1, Some("Old")), line("b", 1, Some("LockTimeout"))].concat(),
        )
        .expect("write .1");
        fs::write(
            audit_path(dir.path(), 0),
            [
                line("a", 2, None),
                "torn {\"ti".into(),
                "\n".into(),
                line("a", 3, Some("InternalError")),
            ]
            .concat(),
        )
        .expect("write");
        fs::write(audit_path(dir.path(), 2), line("c", 1, Some("TooOld"))).expect("write .2");
        let tail = latest_audit(dir.path(), &["a", "b", "c"]).expect("read");
        assert_eq!(tail.latest["a"].version, 3);
        assert_eq!(
            tail.latest["a"].error_code.as_deref(),
            Some("InternalError")
        );
        assert_eq!(tail.latest["b"].error_code.as_deref(), Some("LockTimeout"));
        assert!(
            !tail.latest.contains_key("c"),
            "only the current file and .1"
        );
        assert_eq!(tail.skipped, 1);
        // Found in the current file: the rest is not read.
        let tail = latest_audit(dir.path(), &["a"]).expect("read");
        assert_eq!((tail.latest["a"].version, tail.skipped), (3, 0));
        // No log at all is no error.
        let empty = state_dir();
        let tail = latest_audit(empty.path(), &["a"]).expect("read");
        assert!(tail.latest.is_empty());
    }
}
