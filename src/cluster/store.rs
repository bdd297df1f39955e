//! The PostgreSQL store (docs/cluster.md): the source of truth that every replica shares.
//!
//! A row of `pwrotd_secrets` is an account's secret file (docs/protocol.md#secret-files) with
//! every password sealed by the store key, bound to its account, user and version: a dump, a
//! backup or a DBA never sees a password, and a row moved to another account does not open.
//!
//! [`Term`] is the store as one leader term sees it: each of its writes is a transaction that
//! first takes a share lock on the lease row and checks that the lease still carries the
//! term's epoch. A takeover updates that row, so it waits for a write in flight, and every
//! write after it finds another epoch and is refused ([`SinkError::Fenced`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use zeroize::Zeroizing;

use super::key::{Aad, StoreKey};
use crate::config::Account;
use crate::password::Password;
use crate::sink::{AuditRecord, Pending, SecretFile, Sink, SinkError, Version};
use crate::store::{Store, StoreFuture};

/// The schema versions this binary knows, in order. A store migrated further by a newer
/// binary is refused at start.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "cluster",
    include_str!("../../migrations/0001_cluster.sql"),
)];

/// How long a write may take before it is given up as failed (it may still commit: the
/// caller treats it as it treats any write of unknown outcome, keeping the pending password).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the key check value seals: opened at start, it proves this replica's key is the one
/// the store was created with.
const KEY_CHECK: &[u8] = b"pwrotd store key check";

/// The associated data of the key check value.
const KEY_CHECK_AAD: Aad<'static> = Aad {
    purpose: "key-check",
    account: "",
    username: "",
    version: 0,
};

/// A store error, said without the URL or anything sqlx may quote from it.
pub fn store_error(what: &str, e: &sqlx::Error) -> SinkError {
    let detail = match e {
        sqlx::Error::Database(db) => format!("{what}: {}", db.message()),
        sqlx::Error::PoolTimedOut => format!("{what}: no connection within the timeout"),
        sqlx::Error::Io(io) => format!("{what}: {io}"),
        sqlx::Error::Tls(tls) => format!("{what}: TLS: {tls}"),
        sqlx::Error::Configuration(_) => format!("{what}: the store URL is not usable"),
        sqlx::Error::Migrate(m) => format!("{what}: {m}"),
        sqlx::Error::Protocol(p) => format!("{what}: protocol error: {p}"),
        other => format!("{what}: {}", kind_of(other)),
    };
    SinkError::Store(detail)
}

fn kind_of(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::RowNotFound => "no such row",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "a column did not decode",
        sqlx::Error::PoolClosed => "the connection pool is closed",
        sqlx::Error::WorkerCrashed => "the connection worker crashed",
        _ => "failed",
    }
}

/// The store's connection pool and key, shared by every term and the mirror.
pub struct Shared {
    pub pool: PgPool,
    key: StoreKey,
    /// HMAC key of the audit trail's `password_hmac`, derived from the store key, so every
    /// replica writes the same digest for the same password.
    audit_key: Zeroizing<Vec<u8>>,
    pub node: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects, migrates the schema, and checks the key against the store's key check value
    /// (written by the first replica that starts). `lease` bounds how long the server lets a
    /// session sit in a transaction or wait for a lock: a replica paused inside a fenced write
    /// (holding the lease row's share lock) must not keep another from taking over.
    pub async fn open(
        url: &str,
        key: StoreKey,
        node: String,
        lease: Duration,
    ) -> Result<Shared, SinkError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| store_error("cannot read the store URL", &e))?;
        // TLS is verified unless the URL says otherwise (sqlx's own default, `prefer`,
        // accepts any certificate, and no TLS at all).
        let says_sslmode = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("sslmode=")));
        let options = if says_sslmode {
            options
        } else {
            options.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull)
        };
        let hold = (lease / 5).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let hold = format!("{}ms", hold.as_millis());
        let options = options
            .options([
                ("idle_in_transaction_session_timeout", hold.as_str()),
                ("lock_timeout", hold.as_str()),
            ])
            .application_name(&format!("pwrotd {node}"))
            .log_statements(tracing::log::LevelFilter::Off)
            .log_slow_statements(tracing::log::LevelFilter::Off, Duration::ZERO);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| store_error("cannot connect", &e))?;
        migrate(&pool).await?;
        let audit_key = key.derive(b"pwrotd audit hmac key");
        let shared = Shared {
            pool,
            key,
            audit_key,
            node,
        };
        shared.check_key().await?;
        Ok(shared)
    }

    /// Seals the key check value if the store has none, then opens the one it has.
    async fn check_key(&self) -> Result<(), SinkError> {
        let sealed = self
            .key
            .seal(&KEY_CHECK_AAD, KEY_CHECK)
            .map_err(|e| SinkError::Store(format!("cannot seal the key check: {e}")))?;
        sqlx::query("INSERT INTO pwrotd_meta (name, value) VALUES ('key_check', $1) ON CONFLICT (name) DO NOTHING")
            .bind(&sealed)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("cannot write the key check", &e))?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM pwrotd_meta WHERE name = 'key_check'")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| store_error("cannot read the key check", &e))?;
        match self.key.open(&KEY_CHECK_AAD, &stored) {
            Ok(plain) if plain.as_slice() == KEY_CHECK => Ok(()),
            _ => Err(SinkError::Store(
                "this replica's store key is not the key the store was created with: every replica needs the same key_file".into(),
            )),
        }
    }

    /// Every account's record that decrypts, with its sequence number; the names of those
    /// that do not are logged and returned apart, so that one bad row stops only its account.
    pub async fn load_all(&self) -> Result<Loaded, SinkError> {
        let rows = sqlx::query("SELECT account, seq, record FROM pwrotd_secrets")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("cannot read the accounts", &e))?;
        let mut loaded = Loaded::default();
        for row in rows {
            let account: String = row
                .try_get(0)
                .map_err(|e| store_error("cannot read an account's name", &e))?;
            let seq: i64 = row
                .try_get(1)
                .map_err(|e| store_error("cannot read an account's sequence", &e))?;
            match self.decode(&account, &row, 2) {
                Ok(file) => {
                    loaded.records.insert(account, (seq, file));
                }
                Err(e) => {
                    tracing::error!(account = %account, "{e}");
                    loaded.failed.push(account);
                }
            }
        }
        Ok(loaded)
    }

    /// One account's record and its sequence number; `None` if never written.
    pub async fn load_one(&self, account: &str) -> Result<Option<(i64, SecretFile)>, SinkError> {
        let row = sqlx::query("SELECT seq, record FROM pwrotd_secrets WHERE account = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("cannot read the account", &e))?;
        row.map(|row| {
            let seq: i64 = row
                .try_get(0)
                .map_err(|e| store_error("cannot read the account's sequence", &e))?;
            Ok((seq, self.decode(account, &row, 1)?))
        })
        .transpose()
    }

    /// The secret file in column `column` of `row`, `account`'s record: a record of another
    /// shape (a DBA's edit, say) is refused as corrupt, never a panic, and stops only its own
    /// account.
    pub fn decode(
        &self,
        account: &str,
        row: &sqlx::postgres::PgRow,
        column: usize,
    ) -> Result<SecretFile, SinkError> {
        let record: sqlx::types::Json<SealedFile> =
            row.try_get(column).map_err(|e| SinkError::Corrupt {
                path: format!("the store's record of {account}").into(),
                reason: match e {
                    sqlx::Error::ColumnDecode { .. } => "not a record this pwrotd knows".into(),
                    other => kind_of(&other).into(),
                },
            })?;
        self.unseal(account, record.0)
    }

    /// `hmac-sha256:<hex>` of a password under the store's audit key.
    pub fn password_hmac(&self, password: &Password) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.audit_key)
            .expect("HMAC takes any key length");
        mac.update(password.expose().as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    fn seal_password(
        &self,
        account: &str,
        username: &str,
        version: u64,
        p: &Password,
    ) -> Result<String, SinkError> {
        self.key
            .seal(
                &password_aad(account, username, version),
                p.expose().as_bytes(),
            )
            .map_err(|e| SinkError::Store(format!("cannot seal a password: {e}")))
    }

    fn open_password(
        &self,
        account: &str,
        username: &str,
        version: u64,
        sealed: &str,
    ) -> Result<Password, SinkError> {
        let aad = password_aad(account, username, version);
        let undecryptable = || SinkError::Undecryptable {
            account: account.to_owned(),
        };
        let plain = self.key.open(&aad, sealed).map_err(|_| undecryptable())?;
        let text = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
        Ok(Password::new(text.to_owned()))
    }

    /// An account's record with every password sealed.
    pub fn seal(&self, file: &SecretFile) -> Result<SealedFile, SinkError> {
        let a = file.account.as_str();
        let version = |v: &Version| -> Result<SealedVersion, SinkError> {
            Ok(SealedVersion {
                version: v.version,
                username: v.username.clone(),
                password: self.seal_password(a, &v.username, v.version, &v.password)?,
                created_time: v.created_time.clone(),
                request_id: v.request_id.clone(),
            })
        };
        let pending = match &file.pending {
            Some(p) => Some(SealedPending {
                version: p.version,
                username: p.username.clone(),
                password: self.seal_password(a, &p.username, p.version, &p.password)?,
                created_time: p.created_time.clone(),
                client_token: p.client_token.clone(),
            }),
            None => None,
        };
        Ok(SealedFile {
            format: file.format,
            account: file.account.clone(),
            api: file.api.clone(),
            resource_id: file.resource_id.clone(),
            account_name: file.account_name.clone(),
            current: file.current.as_ref().map(version).transpose()?,
            pending,
            previous: file
                .previous
                .iter()
                .map(version)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The secret file a sealed record holds; a row of another account, or one the key does
    /// not open, is an error.
    pub fn unseal(&self, account: &str, sealed: SealedFile) -> Result<SecretFile, SinkError> {
        if sealed.account != account {
            return Err(SinkError::Undecryptable {
                account: account.to_owned(),
            });
        }
        let version = |v: SealedVersion| -> Result<Version, SinkError> {
            Ok(Version {
                password: self.open_password(account, &v.username, v.version, &v.password)?,
                version: v.version,
                username: v.username,
                created_time: v.created_time,
                request_id: v.request_id,
            })
        };
        let pending = match sealed.pending {
            Some(p) => Some(Pending {
                password: self.open_password(account, &p.username, p.version, &p.password)?,
                version: p.version,
                username: p.username,
                created_time: p.created_time,
                client_token: p.client_token,
            }),
            None => None,
        };
        Ok(SecretFile {
            format: sealed.format,
            account: sealed.account,
            api: sealed.api,
            resource_id: sealed.resource_id,
            account_name: sealed.account_name,
            current: sealed.current.map(version).transpose()?,
            pending,
            previous: sealed
                .previous
                .into_iter()
                .map(version)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// What a sealed password is bound to: its account, user and version, so that it opens
/// nowhere else.
fn password_aad<'a>(account: &'a str, username: &'a str, version: u64) -> Aad<'a> {
    Aad {
        purpose: "password",
        account,
        username,
        version,
    }
}

/// What [`Shared::load_all`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The records that decrypted, with their sequence numbers.
    pub records: HashMap<String, (i64, SecretFile)>,
    /// The accounts whose records do not decrypt.
    pub failed: Vec<String>,
}

/// Runs the migrations this binary knows. A store with a migration this binary does not know
/// was migrated by a newer pwrotd, and is refused.
async fn migrate(pool: &PgPool) -> Result<(), SinkError> {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into(),
                false,
            )
        })
        .collect();
    let migrator = Migrator {
        migrations: migrations.into(),
        ..Migrator::DEFAULT
    };
    migrator.run(pool).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMissing(v) => SinkError::Store(format!(
            "the store's schema is at version {v}, newer than this pwrotd knows ({}): run the newer pwrotd",
            MIGRATIONS.len()
        )),
        other => SinkError::Store(format!("cannot migrate the schema: {other}")),
    })
}

/// [`Version`] with its password sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedVersion {
    version: u64,
    username: String,
    password: String,
    created_time: String,
    request_id: Option<String>,
}

/// [`Pending`] with its password sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPending {
    version: u64,
    username: String,
    password: String,
    created_time: String,
    client_token: String,
}

/// [`SecretFile`] with every password sealed: the `record` column of `pwrotd_secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedFile {
    format: u32,
    account: String,
    api: String,
    resource_id: String,
    account_name: String,
    current: Option<SealedVersion>,
    pending: Option<SealedPending>,
    previous: Vec<SealedVersion>,
}

/// The store as one leader term writes it: every write fenced by the term's epoch.
pub struct Term {
    shared: Arc<Shared>,
    epoch: i64,
    /// Every record as this term last read or wrote it, for [`Store::load_now`]. Only this
    /// term writes while it lasts, so the copy stays true.
    cache: Mutex<HashMap<String, SecretFile>>,
    /// The accounts whose records did not decrypt when the term began.
    failed: Vec<String>,
    /// This host's file store: an account the store has no record of, but this host's files
    /// hold passwords for, was never imported, and is refused rather than rotated.
    local: Option<Arc<Sink>>,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("node", &self.shared.node)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Term {
    /// The store for the term with `epoch`, with every record read now.
    pub async fn begin(shared: Arc<Shared>, epoch: i64) -> Result<Term, SinkError> {
        let loaded = shared.load_all().await?;
        Ok(Term {
            shared,
            epoch,
            cache: Mutex::new(
                loaded
                    .records
                    .into_iter()
                    .map(|(k, (_, f))| (k, f))
                    .collect(),
            ),
            failed: loaded.failed,
            local: None,
        })
    }

    /// Refuses an account the store has no record of while `sink` (this host's state
    /// directory) holds passwords for it: rotating it would leave the host's secret file, which
    /// the mirror never overwrites with an older version, stale. `pwrotd store import` first.
    pub fn guarding(mut self, sink: Arc<Sink>) -> Term {
        self.local = Some(sink);
        self
    }

    /// `file` (the store's record of `account`), unless it is missing where this host holds
    /// passwords of the account that were never imported.
    fn imported(
        &self,
        account: &Account,
        file: Option<SecretFile>,
    ) -> Result<Option<SecretFile>, SinkError> {
        if file.is_some() {
            return Ok(file);
        }
        let Some(local) = &self.local else {
            return Ok(None);
        };
        match local.load_named(&account.name) {
            Ok(Some(held)) if !held.is_empty() => Err(SinkError::Store(format!(
                "the store has no record of {} but {} holds its passwords: stop every replica and run `pwrotd store import`",
                account.name,
                local.path(&account.name).display()
            ))),
            _ => Ok(None),
        }
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Writes `file` in one transaction that holds the lease row's share lock and checks the
    /// term's epoch first. Replicas are told by NOTIFY, sent at commit.
    async fn write(&self, file: &SecretFile) -> Result<(), SinkError> {
        tokio::time::timeout(WRITE_TIMEOUT, self.write_fenced(file))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Store(format!(
                    "no answer to a write within {WRITE_TIMEOUT:?}"
                )))
            })
    }

    async fn write_fenced(&self, file: &SecretFile) -> Result<(), SinkError> {
        let sealed = self.shared.seal(file)?;
        let fail = |e: sqlx::Error| store_error("cannot write the account", &e);
        let mut tx = self.shared.pool.begin().await.map_err(fail)?;
        fence(&mut tx, &self.shared.node, self.epoch).await?;
        sqlx::query(
            "INSERT INTO pwrotd_secrets (account, seq, version, record, epoch, updated_at)
             VALUES ($1, nextval('pwrotd_secrets_seq'), $2, $3, $4, now())
             ON CONFLICT (account) DO UPDATE SET seq = EXCLUDED.seq, version = EXCLUDED.version,
                 record = EXCLUDED.record, epoch = EXCLUDED.epoch, updated_at = now()",
        )
        .bind(&file.account)
        .bind(i64::try_from(file.latest_version()).unwrap_or(i64::MAX))
        .bind(sqlx::types::Json(&sealed))
        .bind(self.epoch)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query("SELECT pg_notify('pwrotd_secrets', $1)")
            .bind(&file.account)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file.account.clone(), file.clone());
        Ok(())
    }

    /// The record of `account` in the store, checked against the config as the file store
    /// checks its files: a record about other database users is refused, unless it holds no
    /// password at all.
    fn checked(
        account: &Account,
        file: Option<SecretFile>,
    ) -> Result<Option<SecretFile>, SinkError> {
        match file {
            Some(f)
                if f.api != account.api.as_str()
                    || f.resource_id != account.resource_id
                    || f.account_name != account.account_name =>
            {
                if f.is_empty() {
                    Ok(None)
                } else {
                    Err(SinkError::Mismatch {
                        path: format!("store:{}", account.name).into(),
                        what: format!("{} {} {}", f.api, f.resource_id, f.account_name),
                    })
                }
            }
            other => Ok(other),
        }
    }
}

/// Takes the lease row's share lock and checks that it still carries `epoch` for `node`;
/// refuses the transaction otherwise.
pub async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    node: &str,
    epoch: i64,
) -> Result<(), SinkError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT epoch FROM pwrotd_lease WHERE id = 1 AND holder = $1 AND epoch = $2 FOR SHARE",
    )
    .bind(node)
    .bind(epoch)
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| store_error("cannot check the lease", &e))?;
    match held {
        Some(_) => Ok(()),
        None => Err(SinkError::Fenced { epoch }),
    }
}

impl Store for Term {
    fn load<'a>(
        &'a self,
        account: &'a Account,
        _renamed_from: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SecretFile>> {
        Box::pin(async move {
            let file = self.shared.load_one(&account.name).await?.map(|(_, f)| f);
            if let Some(f) = &file {
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(account.name.clone(), f.clone());
            }
            Term::checked(account, self.imported(account, file)?)
        })
    }

    fn load_now(
        &self,
        account: &Account,
        _renamed_from: Option<&str>,
    ) -> Result<Option<SecretFile>, SinkError> {
        if self.failed.contains(&account.name) {
            return Err(SinkError::Undecryptable {
                account: account.name.clone(),
            });
        }
        let file = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account.name)
            .cloned();
        Term::checked(account, self.imported(account, file)?)
    }

    fn write_pending<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()> {
        Box::pin(self.write(file))
    }

    fn write_outcome<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()> {
        Box::pin(self.write(file))
    }

    fn append_audit<'a>(&'a self, record: &'a AuditRecord) -> StoreFuture<'a, ()> {
        // Fenced too: a term that is over writes nothing, not even its own failures; the
        // next leader's audit tells what became of the account.
        Box::pin(async move {
            let fail = |e: sqlx::Error| store_error("cannot append to the audit trail", &e);
            let append = async {
                let mut tx = self.shared.pool.begin().await.map_err(fail)?;
                fence(&mut tx, &self.shared.node, self.epoch).await?;
                sqlx::query(
                    "INSERT INTO pwrotd_audit (account, node, epoch, record) VALUES ($1, $2, $3, $4)",
                )
                .bind(&record.account)
                .bind(&self.shared.node)
                .bind(self.epoch)
                .bind(sqlx::types::Json(record))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                tx.commit().await.map_err(fail)
            };
            tokio::time::timeout(WRITE_TIMEOUT, append)
                .await
                .unwrap_or_else(|_| {
                    Err(SinkError::Store(
                        "no answer to an audit append in time".into(),
                    ))
                })
        })
    }

    fn adopt<'a>(
        &'a self,
        account: &'a Account,
        password: Password,
    ) -> StoreFuture<'a, SecretFile> {
        Box::pin(async move {
            let mut file = self
                .load(account, None)
                .await?
                .unwrap_or_else(|| SecretFile::new(account));
            if file.pending.is_some() {
                return Err(SinkError::PendingExists {
                    path: format!("store:{}", account.name).into(),
                });
            }
            file.adopt(account, password);
            self.write(&file).await?;
            if let Some(record) = file.adopt_audit(account, |p| self.password_hmac(p))
                && let Err(e) = self.append_audit(&record).await
            {
                tracing::error!(account = %account.name, "cannot write the audit trail: {e}");
            }
            Ok(file)
        })
    }

    fn password_hmac(&self, password: &Password) -> String {
        self.shared.password_hmac(password)
    }
}
