//! The vault-style file sink (PRODUCT.md §4): one JSON file per account under
//! `state_dir/secrets/`, the audit log, and the audit key.
//!
//! Every write is atomic and durable: a temporary file in the same directory, fsync, rename
//! over the target, fsync of the directory. A file that cannot be parsed, or whose mode, owner
//! or type is wrong, is never overwritten: the account is refused until an operator looks.
//! This module never logs a password; the only place it writes one is the secret file itself.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cloud::Service;
use crate::config::Account;
use crate::password::Password;
use crate::{failpoint, random};

/// The `format` of secret files this version reads and writes.
pub const FORMAT: u32 = 1;

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
    /// `success`, `failure` or `pending`.
    pub outcome: String,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// `hmac-sha256:<hex>` of the password, keyed with `audit.key`; never the password.
    pub password_hmac: Option<String>,
    /// The login that tested the password (`[account.verify]`): `success`, `rejected` or
    /// `error`. Absent when no login was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// How a pending password of unknown fate was resolved: `login` (it logged in, so it was
    /// promoted with no further API call) or `reapply` (it was set again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<String>,
}

/// The audit log and how many lines have been written to it.
struct AuditLog {
    file: File,
    written: u64,
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
        let audit_path = state_dir.join("audit.jsonl");
        let audit = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&audit_path)
            .map_err(io_error(&audit_path))?;
        hand_over(&audit, state_dir).map_err(io_error(&audit_path))?;
        Ok(Sink {
            state_dir: state_dir.to_owned(),
            secrets,
            audit_key,
            audit: Mutex::new(AuditLog {
                file: audit,
                written: 0,
            }),
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
        let username = file
            .current
            .as_ref()
            .map_or(account.account_name.clone(), |c| c.username.clone());
        file.pending = Some(Pending {
            version: file.latest_version() + 1,
            username,
            password,
            created_time: timestamp(SystemTime::now()),
            client_token: String::new(),
        });
        file.promote(None, account.keep_versions.max(1));
        self.write_secret(&file, true)?;
        if let Some(current) = &file.current {
            let record = AuditRecord {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                account: account.name.clone(),
                api: account.api.as_str().to_owned(),
                resource_id: account.resource_id.clone(),
                account_name: current.username.clone(),
                version: current.version,
                outcome: "success".into(),
                error_code: None,
                request_id: None,
                attempts: 0,
                duration_ms: 0,
                password_hmac: Some(self.password_hmac(&current.password)),
                verification: None,
                settled: Some("adopt".into()),
            };
            if let Err(e) = self.audit(&record) {
                tracing::error!(account = %account.name, "cannot write the audit log: {e}");
            }
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
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.audit_key)
            .expect("HMAC takes any key length");
        mac.update(password.expose().as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Appends one line to `audit.jsonl` and returns once it is synced. Lines written at the
    /// same time share one fdatasync (group commit): only the first writer syncs, for all.
    pub fn audit(&self, record: &AuditRecord) -> Result<(), SinkError> {
        let path = self.state_dir.join("audit.jsonl");
        let mut line =
            serde_json::to_vec(record).map_err(|e| io_error(&path)(io::Error::other(e)))?;
        line.push(b'\n');
        let ticket = {
            let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
            log.file.write_all(&line).map_err(io_error(&path))?;
            log.written += 1;
            log.written
        };
        // Whoever takes the sync lock first syncs every line written so far.
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
}

/// Every record of `state_dir/audit.jsonl`, oldest first; none if there is no log yet. Lines
/// that do not parse are skipped.
pub fn read_audit(state_dir: &Path) -> Result<Vec<AuditRecord>, SinkError> {
    let path = state_dir.join("audit.jsonl");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error(&path)(e)),
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
