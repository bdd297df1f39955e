//! `pwrotd run`: the daemon, until SIGTERM or SIGINT.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::{CliError, CliResult, load, logging, runtime};
use crate::daemon::{self, RunOptions};

pub fn run(path: &Path) -> CliResult {
    let config = load(path)?;
    logging::init(config.daemon.log_format, "info");
    let rt = runtime()?;
    let options = RunOptions {
        config,
        shutdown: CancellationToken::new(),
        on_report: None,
        metrics_listener: None,
        once: false,
    };
    rt.block_on(daemon::run(options)).map_err(|e| {
        // Logged once, where the journal sees it; nothing more on stderr.
        tracing::error!("{e}");
        CliError::some_failed()
    })
}
