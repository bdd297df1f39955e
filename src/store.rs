//! The store: where the rotation protocol writes passwords down, and the only thing it asks of
//! durable state (docs/protocol.md#rotation-steps). The protocol (`rotation`) calls these five
//! operations in its fixed order and nothing else; where they keep their data is the store's
//! business.
//!
//! [`FileStore`] keeps each account in `state_dir/secrets/<account>.json` and the audit trail in
//! `state_dir/audit.jsonl`, through [`Sink`]. Its blocking file I/O runs on tokio's blocking
//! pool, tracked so that a stopping daemon can wait for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Account;
use crate::password::Password;
use crate::sink::{AuditRecord, SecretFile, Sink, SinkError, Unclaimed};

/// What a store operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// Durable state for the rotation protocol. Every write is durable when its future resolves.
pub trait Store: Send + Sync + 'static {
    /// An account's record; `None` if it was never written. A store may take over the record
    /// of a renamed account that held the same database users (`renamed_from` names one the
    /// caller knows of).
    fn load<'a>(
        &'a self,
        account: &'a Account,
        renamed_from: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SecretFile>>;

    /// [`Store::load`], blocking the calling thread: for the scheduler, which reads every
    /// account's state at start and reload.
    fn load_now(
        &self,
        account: &Account,
        renamed_from: Option<&str>,
    ) -> Result<Option<SecretFile>, SinkError>;

    /// Writes a record that holds a new pending password: before any API call that sends it.
    fn write_pending<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()>;

    /// Writes a record after an outcome: a promotion, or a pending password cleared.
    fn write_outcome<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()>;

    /// Appends one line to the audit trail.
    fn append_audit<'a>(&'a self, record: &'a AuditRecord) -> StoreFuture<'a, ()>;

    /// Records the password an account has today as its current version (`pwrotd adopt`).
    fn adopt<'a>(&'a self, account: &'a Account, password: Password)
    -> StoreFuture<'a, SecretFile>;

    /// `hmac-sha256:<hex>` of a password, for the audit trail: never the password.
    fn password_hmac(&self, password: &Password) -> String;
}

/// The file store: secret files and the audit log under `state_dir`.
pub struct FileStore {
    sink: Arc<Sink>,
    /// The secret files no configured account claims, which a renamed account takes over.
    unclaimed: Arc<Unclaimed>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// The store of `sink`, for a config whose accounts are `accounts`.
    pub fn new(sink: Arc<Sink>, accounts: &[Arc<Account>]) -> FileStore {
        FileStore {
            sink,
            unclaimed: Arc::new(Unclaimed::new(accounts.iter().map(|a| a.name.clone()))),
        }
    }

    /// Runs blocking file I/O on the blocking pool, tracked by the sink.
    async fn io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Sink) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let sink = self.sink.clone();
        self.sink
            .io_tasks()
            .spawn_blocking(move || f(&sink))
            .await
            .unwrap_or_else(|e| {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                Err(SinkError::Io {
                    path: self.sink.state_dir().to_owned(),
                    source: std::io::Error::other(format!("the sink I/O task {what}")),
                })
            })
    }
}

impl Store for FileStore {
    fn load<'a>(
        &'a self,
        account: &'a Account,
        renamed_from: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SecretFile>> {
        let (account, renamed_from) = (account.clone(), renamed_from.map(str::to_owned));
        let unclaimed = self.unclaimed.clone();
        Box::pin(self.io(move |sink| unclaimed.load(sink, &account, renamed_from.as_deref())))
    }

    fn load_now(
        &self,
        account: &Account,
        renamed_from: Option<&str>,
    ) -> Result<Option<SecretFile>, SinkError> {
        self.unclaimed.load(&self.sink, account, renamed_from)
    }

    fn write_pending<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()> {
        let file = file.clone();
        Box::pin(self.io(move |sink| sink.store_pending(&file)))
    }

    fn write_outcome<'a>(&'a self, file: &'a SecretFile) -> StoreFuture<'a, ()> {
        let file = file.clone();
        Box::pin(self.io(move |sink| sink.store(&file)))
    }

    fn append_audit<'a>(&'a self, record: &'a AuditRecord) -> StoreFuture<'a, ()> {
        let record = record.clone();
        Box::pin(self.io(move |sink| sink.audit(&record)))
    }

    fn adopt<'a>(
        &'a self,
        account: &'a Account,
        password: Password,
    ) -> StoreFuture<'a, SecretFile> {
        let account = account.clone();
        Box::pin(self.io(move |sink| sink.adopt_current(&account, password)))
    }

    fn password_hmac(&self, password: &Password) -> String {
        self.sink.password_hmac(password)
    }
}
