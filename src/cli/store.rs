//! `pwrotd store export` and `pwrotd store import` (docs/cluster.md#commands): the store's
//! records as secret files in a new directory, and a file store moved into the store.
//!
//! Both need `[store] kind = "postgresql"`. Neither prints a URL, a key or a password.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{CliError, CliResult, load, logging, runtime};
use crate::cluster::secrets;
use crate::cluster::store::Shared;
use crate::cluster::transfer::{self, Outcome, TransferError};
use crate::config::{ClusterConfig, Config, StoreConfig};
use crate::daemon::{DaemonError, StateLock};

/// How long connecting to the store, migrating it and checking the key may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// `pwrotd store export --config FILE --to DIR`.
pub fn export(path: &Path, to: &Path) -> CliResult {
    let config = load(path)?;
    logging::init(config.daemon.log_format, "warn");
    let settings = cluster_settings(&config, "store export")?;
    let exported = runtime()?.block_on(async {
        let shared = open(settings, "export").await?;
        transfer::export(&shared, to).await.map_err(failed)
    })?;
    for (account, version) in &exported.written {
        say!("{account:<24} exported v{version}");
    }
    for (account, why) in &exported.failed {
        say!("{account:<24} failed   {why}");
    }
    say!(
        "wrote {} secret file{} to {}",
        exported.written.len(),
        if exported.written.len() == 1 { "" } else { "s" },
        to.display()
    );
    if exported.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::some_failed())
    }
}

/// `pwrotd store import --config FILE --from STATE_DIR`.
pub fn import(path: &Path, from: &Path) -> CliResult {
    let config = load(path)?;
    logging::init(config.daemon.log_format, "warn");
    let settings = cluster_settings(&config, "store import")?;
    if let Err(e) = std::fs::symlink_metadata(from) {
        return Err(CliError::failed(format!(
            "cannot read {}: {e}",
            from.display()
        )));
    }
    // No daemon may write the file store while it is moved.
    let lock = match StateLock::acquire(from, "import") {
        Ok(lock) => lock,
        Err(DaemonError::Locked { role, pid, .. }) => {
            return Err(CliError::failed(format!(
                "a pwrotd {role} (pid {pid}) holds {}; stop every replica before importing",
                from.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let files = transfer::read_file_store(from).map_err(failed)?;
    let lines = runtime()?.block_on(async {
        let shared = Arc::new(open(settings, "import").await?);
        transfer::import(shared, files, settings.lease)
            .await
            .map_err(failed)
    })?;
    drop(lock);
    for line in &lines {
        say!(
            "{:<24} {:<8} {}",
            line.account,
            line.outcome.as_str(),
            line.message
        );
    }
    let count = |o: Outcome| lines.iter().filter(|l| l.outcome == o).count();
    say!(
        "{} imported, {} kept, {} refused",
        count(Outcome::Imported),
        count(Outcome::Kept),
        count(Outcome::Refused)
    );
    if count(Outcome::Refused) == 0 {
        Ok(())
    } else {
        Err(CliError::some_failed())
    }
}

/// The config's `[store]` in cluster mode, or a usage error that names the key.
pub fn cluster_settings<'a>(
    config: &'a Config,
    command: &str,
) -> Result<&'a ClusterConfig, CliError> {
    match &config.store {
        StoreConfig::Postgresql(settings) => Ok(settings),
        StoreConfig::File => Err(CliError::usage(format!(
            "{}: `pwrotd {command}` needs the PostgreSQL store: set store.kind = \"postgresql\" ([store] kind), with store.url_file and store.key_file",
            config.path.display()
        ))),
    }
}

/// Opens the store, as `<role>@<node_name>`: its URL and key from where the config says, the
/// schema migrated and the key checked, all within `OPEN_TIMEOUT`.
pub async fn open(settings: &ClusterConfig, role: &str) -> Result<Shared, CliError> {
    let (url, key) =
        secrets::load(settings).map_err(|e| CliError::failed(format!("the store: {e}")))?;
    let node = format!("{role}@{}", settings.node_name);
    let opened = Shared::open(url.expose_secret(), key, node, settings.lease);
    match tokio::time::timeout(OPEN_TIMEOUT, opened).await {
        Ok(Ok(shared)) => Ok(shared),
        Ok(Err(e)) => Err(CliError::failed(e.to_string())),
        Err(_) => Err(CliError::failed(format!(
            "the store: no answer within {OPEN_TIMEOUT:?}"
        ))),
    }
}

fn failed(e: TransferError) -> CliError {
    CliError::failed(e.to_string())
}
