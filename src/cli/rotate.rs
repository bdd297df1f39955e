//! `pwrotd rotate`: rotate now, through the running daemon's control socket if a daemon holds
//! the state lock, else in this process (never both: one writer per state directory).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{CliError, CliResult, load, logging, names, runtime};
use crate::config::Config;
use crate::control::{self, ReportLine, Request, Response};
use crate::daemon::{self, DaemonError, StateLock};
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::sink::Sink;

pub fn rotate(path: &Path, accounts: Option<Vec<String>>, wait: Duration) -> CliResult {
    let config = load(path)?;
    logging::init(config.daemon.log_format, "warn");
    if let Some(wanted) = &accounts {
        let unknown: Vec<String> = wanted
            .iter()
            .filter(|n| config.account(n).is_none())
            .map(|n| format!("{n:?}"))
            .collect();
        if !unknown.is_empty() {
            return Err(CliError::usage(format!(
                "no account named {} in {}; it has {}",
                unknown.join(", "),
                path.display(),
                names(&config)
            )));
        }
    }
    let state_dir = config.daemon.state_dir.clone();
    let lines = match StateLock::acquire(&state_dir, "rotate") {
        Ok(lock) => {
            let lines = runtime()?.block_on(rotate_here(&config, accounts));
            drop(lock);
            lines?
        }
        Err(DaemonError::Locked { role, .. }) if role == "daemon" => {
            match control::call(&state_dir, &Request::Rotate { accounts }, wait) {
                Ok(Response::Rotated { reports }) => reports,
                Ok(Response::Forwarded { leader }) => {
                    say!("forwarded to the leader, {leader}: `pwrotd status` shows the outcome");
                    return Ok(());
                }
                Ok(other) => {
                    return Err(CliError::failed(format!("the daemon answered {other:?}")));
                }
                Err(e) => return Err(CliError::failed(e.to_string())),
            }
        }
        Err(e) => return Err(e.into()),
    };
    print_lines(&lines)
}

/// One line per account; exit 1 if any failed.
fn print_lines(lines: &[ReportLine]) -> CliResult {
    for line in lines {
        let version = line
            .version
            .map_or_else(|| "-".to_owned(), |v| format!("v{v}"));
        say!(
            "{:<24} {:<8} {:<5} {}",
            line.account,
            line.outcome.as_str(),
            version,
            line.message
        );
    }
    if lines.iter().all(ReportLine::succeeded) {
        Ok(())
    } else {
        Err(CliError::some_failed())
    }
}

/// Rotates in this process, `max_concurrent` at a time. The caller holds the state lock.
async fn rotate_here(
    config: &Config,
    names: Option<Vec<String>>,
) -> Result<Vec<ReportLine>, CliError> {
    let sink = Arc::new(Sink::open(&config.daemon.state_dir).map_err(DaemonError::from)?);
    let metrics = Metrics::new();
    // No debounce: each account rotates once here, and the hooks run before the CLI exits.
    let hooks = Hooks::new(Duration::ZERO, metrics.clone());
    let rotator = Arc::new(daemon::rotator(config, sink, metrics, hooks.clone())?);
    let accounts: Vec<_> = config
        .accounts
        .iter()
        .filter(|a| names.as_ref().is_none_or(|n| n.contains(&a.name)))
        .cloned()
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(config.daemon.max_concurrent));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, account) in accounts.into_iter().enumerate() {
        let (rotator, limit) = (rotator.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await;
            (index, ReportLine::from(&rotator.rotate(&account).await))
        });
    }
    let mut lines = Vec::new();
    while let Some(done) = tasks.join_next().await {
        // Not `{e}`: a JoinError shows the panic's message, which could hold a secret.
        let line = done.map_err(|e| {
            CliError::failed(if e.is_panic() {
                "a rotation task panicked"
            } else {
                "a rotation task was cancelled"
            })
        })?;
        lines.push(line);
    }
    hooks.idle().await;
    lines.sort_by_key(|(index, _)| *index);
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}
