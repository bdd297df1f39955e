//! Moving accounts between the PostgreSQL store and secret files (docs/cluster.md#commands).
//!
//! - [`export`] writes the store's records as secret files (docs/protocol.md#secret-files) in
//!   a new 0700 directory, each 0600, atomically and durably. It only reads the store.
//! - [`import`] moves a file store (`STATE_DIR/secrets/*.json`) into the store as its only
//!   writer: it takes the lease itself, only once the lease has lapsed by the database's clock
//!   (a new epoch), writes every record through a fenced [`Term`], and gives the lease up. It
//!   never replaces a record with one that is not newer.
//!
//! Nothing here puts a password anywhere but a 0600 file in a 0700 directory or a sealed row;
//! no error or report line holds one.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::lease;
use super::store::{Loaded, Shared, Term};
use crate::sink::{self, Perms, SecretFile, SinkError};
use crate::store::Store;

/// Why an export or an import could not run at all. Problems with single accounts are
/// reported in their lines instead.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// `store export` writes only into a directory it creates.
    #[error("{} exists; the export goes into a new directory: name one that does not exist", .0.display())]
    Exists(PathBuf),
    /// The directory to import from has no `secrets/`.
    #[error("{} has no secrets directory: it is not a pwrotd state directory", .0.display())]
    NoSecrets(PathBuf),
    /// A live leader holds the lease.
    #[error("replica {node} leads (epoch {epoch}); stop every replica before importing")]
    Leading {
        /// The leader's node name.
        node: String,
        /// Its term.
        epoch: i64,
    },
    /// The lease lapsed and was taken between two statements: someone else just started.
    #[error(
        "the lease changed hands while the import tried to take it; stop every replica and try again"
    )]
    Contended,
    /// The file store or the PostgreSQL store refused.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What [`export`] did.
#[derive(Debug, Default)]
pub struct Exported {
    /// The accounts written, with their newest version.
    pub written: Vec<(String, u64)>,
    /// The accounts not written, with why.
    pub failed: Vec<(String, String)>,
}

/// What became of one account in [`import`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the store.
    Imported,
    /// The store already holds this very record: nothing to do.
    Kept,
    /// Not written: the store's record is newer or as new, or the file cannot be used.
    Refused,
}

impl Outcome {
    /// The word printed for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Kept => "kept",
            Outcome::Refused => "refused",
        }
    }
}

/// One account's line of [`import`].
#[derive(Debug, Clone)]
pub struct ImportLine {
    /// The account, from the file's name.
    pub account: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Why, in words; never a password.
    pub message: String,
}

impl ImportLine {
    fn new(account: &str, outcome: Outcome, message: impl Into<String>) -> ImportLine {
        ImportLine {
            account: account.to_owned(),
            outcome,
            message: message.into(),
        }
    }
}

/// Writes every record of the store that decrypts as `to/<account>.json`. `to` must not
/// exist: it is created 0700. Records that do not decrypt are listed in
/// [`Exported::failed`]; the others are still written.
pub async fn export(shared: &Shared, to: &Path) -> Result<Exported, TransferError> {
    let loaded = shared.load_all().await?;
    create_new_private_dir(to)?;
    Ok(write_export(to, loaded))
}

/// Creates `dir`, which must not exist, with mode 0700, and makes its entry durable.
pub fn create_new_private_dir(dir: &Path) -> Result<(), TransferError> {
    let io = |source: io::Error| SinkError::Io {
        path: dir.to_owned(),
        source,
    };
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(TransferError::Exists(dir.to_owned()));
        }
        Err(e) => return Err(io(e).into()),
    }
    // The umask may have taken bits away; 0700 exactly, then the sink's own check.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    sink::private_dir(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| SinkError::Io {
            path: parent.to_owned(),
            source,
        })?;
    Ok(())
}

/// Writes `loaded`'s records into `dir` (see [`export`]), in the order of their names.
pub fn write_export(dir: &Path, loaded: Loaded) -> Exported {
    let mut exported = Exported::default();
    for account in loaded.failed {
        let why = SinkError::Undecryptable {
            account: account.clone(),
        };
        exported.failed.push((account, why.to_string()));
    }
    let mut records: Vec<(String, SecretFile)> = loaded
        .records
        .into_iter()
        .map(|(name, (_, file))| (name, file))
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, file) in records {
        if !crate::config::valid_name(&name) {
            exported.failed.push((
                name,
                "the account's name cannot be a file name; not written".to_owned(),
            ));
            continue;
        }
        let written = serde_json::to_vec_pretty(&file)
            .map(Zeroizing::new)
            .map_err(|e| SinkError::Io {
                path: dir.join(format!("{name}.json")),
                source: io::Error::other(e),
            })
            .and_then(|json| {
                sink::write_file(
                    dir,
                    &format!("{name}.json"),
                    &json,
                    Perms::private(None),
                    true,
                )
            });
        match written {
            Ok(()) => exported.written.push((name, file.latest_version())),
            Err(e) => exported.failed.push((name, e.to_string())),
        }
    }
    exported.failed.sort();
    exported
}

/// A file of the file store: its record, or why it cannot be used.
pub type Read = (String, Result<SecretFile, String>);

/// Reads `state_dir/secrets/*.json` with the sink's checks (no link, no access for others,
/// this user's or root's, a known format), in the order of their names. A file whose
/// `account` is not its name is refused.
pub fn read_file_store(state_dir: &Path) -> Result<Vec<Read>, TransferError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SinkError::Io { path, source }
    };
    fs::symlink_metadata(state_dir).map_err(io(state_dir))?;
    sink::check_private_dir(state_dir)?;
    let secrets = state_dir.join("secrets");
    match fs::symlink_metadata(&secrets) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(SinkError::Symlink { path: secrets }.into());
        }
        Ok(_) => sink::check_private_dir(&secrets)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TransferError::NoSecrets(state_dir.to_owned()));
        }
        Err(e) => return Err(io(&secrets)(e).into()),
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(&secrets).map_err(io(&secrets))? {
        let entry = entry.map_err(io(&secrets))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        // Temporary files of an interrupted write start with a dot.
        if !name.starts_with('.') {
            names.push(name.to_owned());
        }
    }
    names.sort();
    let uid = nix::unistd::geteuid().as_raw();
    Ok(names
        .into_iter()
        .map(|name| {
            let read = if crate::config::valid_name(&name) {
                read_one(&secrets.join(format!("{name}.json")), &name, uid)
            } else {
                Err("its name cannot be an account's; not imported".to_owned())
            };
            (name, read)
        })
        .collect())
}

fn read_one(path: &Path, name: &str, uid: u32) -> Result<SecretFile, String> {
    match sink::read_secret_file(path, uid) {
        Ok(Some(file)) if file.account == name => Ok(file),
        Ok(Some(file)) => Err(format!(
            "{} names the account {:?}, not its file name; not imported",
            path.display(),
            file.account
        )),
        Ok(None) => Err(format!("{} went away while being read", path.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// Imports `files` (from [`read_file_store`]) into the store as its only writer, with a term
/// of its own: `shared`'s node takes the lease for `lease` if it has lapsed, writes through
/// the fenced path, and gives the lease up at the end, whatever happened. A live leader is
/// [`TransferError::Leading`], and nothing is written.
pub async fn import(
    shared: Arc<Shared>,
    files: Vec<Read>,
    lease: Duration,
) -> Result<Vec<ImportLine>, TransferError> {
    let node = shared.node.clone();
    let Some(epoch) = lease::take_lapsed(&shared.pool, &node, lease).await? else {
        let holder = lease::holder(&shared.pool).await?;
        return Err(if holder.live {
            TransferError::Leading {
                node: holder.node,
                epoch: holder.epoch,
            }
        } else {
            TransferError::Contended
        });
    };
    tracing::info!(epoch, "took the lease to import");
    let result = import_as(shared.clone(), epoch, files, lease).await;
    if let Err(e) = lease::give_up(&shared.pool, &node, epoch, Duration::ZERO).await {
        tracing::warn!("{e}; the next leader waits the lease out");
    }
    result
}

/// The import's term: every file compared with the store's record, and written if newer.
async fn import_as(
    shared: Arc<Shared>,
    epoch: i64,
    files: Vec<Read>,
    lease: Duration,
) -> Result<Vec<ImportLine>, TransferError> {
    let term = Term::begin(shared.clone(), epoch).await?;
    let stored = shared.load_all().await?;
    let mut lines = Vec::new();
    // Why the term ended early, if it did: the accounts after it are refused, and the
    // lines before it still say what was imported.
    let mut lost: Option<String> = None;
    for (name, read) in files {
        let file = match read {
            Ok(file) => file,
            Err(why) => {
                lines.push(ImportLine::new(&name, Outcome::Refused, why));
                continue;
            }
        };
        if let Some(line) = compare(&stored, &name, &file) {
            lines.push(line);
            continue;
        }
        // Renewed before each write, so that a long import keeps its term; a write after
        // the term is over would be refused by the fence anyway.
        if lost.is_none() {
            lost = match lease::renew(&shared.pool, &shared.node, epoch, lease).await {
                Ok(true) => None,
                Ok(false) => Some("the import's lease lapsed (did a replica start?)".into()),
                Err(e) => Some(e.to_string()),
            };
        }
        let line = match &lost {
            Some(why) => ImportLine::new(&name, Outcome::Refused, format!("not imported: {why}")),
            None => match term.write_outcome(&file).await {
                Ok(()) => ImportLine::new(&name, Outcome::Imported, imported(&file)),
                Err(e) => ImportLine::new(&name, Outcome::Refused, format!("not imported: {e}")),
            },
        };
        lines.push(line);
    }
    Ok(lines)
}

/// What the store holds of `name` says about importing `file`: `None` to import it.
fn compare(stored: &Loaded, name: &str, file: &SecretFile) -> Option<ImportLine> {
    if stored.failed.iter().any(|f| f == name) {
        let why = SinkError::Undecryptable {
            account: name.to_owned(),
        };
        return Some(ImportLine::new(name, Outcome::Refused, why.to_string()));
    }
    let (_, current) = stored.records.get(name)?;
    if same(current, file) {
        return Some(ImportLine::new(
            name,
            Outcome::Kept,
            format!(
                "the store already holds this record (version {})",
                file.latest_version()
            ),
        ));
    }
    let (theirs, ours) = (current.latest_version(), file.latest_version());
    (theirs >= ours).then(|| {
        ImportLine::new(
            name,
            Outcome::Refused,
            format!(
                "the store holds version {theirs}, newer than or equal to the file's {ours}; left as it is"
            ),
        )
    })
}

/// The message of an imported account.
fn imported(file: &SecretFile) -> String {
    let mut said = format!("version {}", file.latest_version());
    if file.pending.is_some() {
        said.push_str(", with a pending password: the next leader settles it first");
    }
    said
}

/// Whether two records hold the same state, passwords included.
fn same(a: &SecretFile, b: &SecretFile) -> bool {
    match (serde_json::to_vec(a), serde_json::to_vec(b)) {
        (Ok(a), Ok(b)) => Zeroizing::new(a) == Zeroizing::new(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(account: &str, version: u64) -> SecretFile {
        SecretFile {
            format: sink::FORMAT,
            account: account.to_owned(),
            api: "ResetAccountPassword".to_owned(),
            resource_id: "rm-1".to_owned(),
            account_name: "app".to_owned(),
            current: Some(sink::Version {
                version,
                username: "app".to_owned(),
                password: crate::password::Password::new(format!("Pw-{version}-secret")),
                created_time: "2025-01-01T00:00:00Z".to_owned(),
                request_id: None,
            }),
            pending: None,
            previous: Vec::new(),
        }
    }

    fn loaded(files: &[SecretFile], failed: &[&str]) -> Loaded {
        Loaded {
            records: files
                .iter()
                .map(|f| (f.account.clone(), (1, f.clone())))
                .collect(),
            failed: failed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn an_export_writes_0600_files_into_a_new_0700_directory_and_lists_what_failed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        create_new_private_dir(&dir).unwrap();
        assert!(matches!(
            create_new_private_dir(&dir),
            Err(TransferError::Exists(_))
        ));
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let done = write_export(&dir, loaded(&[file("a", 3), file("../x", 1)], &["broken"]));
        assert_eq!(done.written, vec![("a".to_owned(), 3)]);
        let failed: Vec<&str> = done.failed.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(failed, ["../x", "broken"]);
        let meta = fs::metadata(dir.join("a.json")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let back = sink::read_secret_file(&dir.join("a.json"), meta.uid())
            .unwrap()
            .unwrap();
        assert!(same(&back, &file("a", 3)));
        assert!(!tmp.path().join("x.json").exists());
    }

    #[test]
    fn an_import_takes_only_what_is_newer_and_keeps_what_is_the_same() {
        let stored = loaded(
            &[file("same", 2), file("newer", 5), file("older", 1)],
            &["bad"],
        );
        assert_eq!(
            compare(&stored, "same", &file("same", 2)).unwrap().outcome,
            Outcome::Kept
        );
        let mut other = file("same", 2);
        other.current.as_mut().unwrap().password = crate::password::Password::new("Other-1".into());
        let refused = compare(&stored, "same", &other).unwrap();
        assert_eq!(refused.outcome, Outcome::Refused);
        assert!(
            refused
                .message
                .contains("version 2, newer than or equal to the file's 2")
        );
        assert!(!refused.message.contains("Other-1"));
        assert_eq!(
            compare(&stored, "newer", &file("newer", 4))
                .unwrap()
                .outcome,
            Outcome::Refused
        );
        assert!(compare(&stored, "older", &file("older", 2)).is_none());
        assert!(compare(&stored, "absent", &file("absent", 1)).is_none());
        assert_eq!(
            compare(&stored, "bad", &file("bad", 9)).unwrap().outcome,
            Outcome::Refused
        );
    }

    #[test]
    fn an_import_reads_with_the_sinks_checks_and_refuses_a_misnamed_record() {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        assert!(matches!(
            read_file_store(&tmp.path().join("missing")),
            Err(TransferError::Sink(_))
        ));
        fs::DirBuilder::new().mode(0o700).create(&state).unwrap();
        assert!(matches!(
            read_file_store(&state),
            Err(TransferError::NoSecrets(_))
        ));
        let secrets = state.join("secrets");
        fs::DirBuilder::new().mode(0o700).create(&secrets).unwrap();
        let write = |name: &str, f: &SecretFile, mode: u32| {
            let json = serde_json::to_vec(f).unwrap();
            let mut o = fs::OpenOptions::new();
            o.write(true).create(true).mode(mode);
            io::Write::write_all(&mut o.open(secrets.join(name)).unwrap(), &json).unwrap();
            fs::set_permissions(secrets.join(name), fs::Permissions::from_mode(mode)).unwrap();
        };
        write("a.json", &file("a", 1), 0o600);
        write("b.json", &file("c", 1), 0o600);
        write("open.json", &file("open", 1), 0o644);
        write(".a.json.tmp", &file("a", 1), 0o600);
        std::os::unix::fs::symlink(secrets.join("a.json"), secrets.join("link.json")).unwrap();
        let read = read_file_store(&state).unwrap();
        let names: Vec<&str> = read.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["a", "b", "link", "open"]);
        assert!(read[0].1.is_ok());
        assert!(
            read[1]
                .1
                .as_ref()
                .unwrap_err()
                .contains("names the account \"c\"")
        );
        assert!(read[2].1.as_ref().unwrap_err().contains("symbolic link"));
        assert!(read[3].1.as_ref().unwrap_err().contains("mode 0644"));
    }
}
