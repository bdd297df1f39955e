//! `[daemon]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::TIMEOUT;
use crate::config::diagnostics::Check;
use crate::config::raw::RawDaemon;
use crate::config::{Daemon, LogFormat};

/// `[daemon]`: every key has a default.
pub(in crate::config) fn validate_daemon(check: &mut Check, raw: &RawDaemon) -> Daemon {
    let state_dir = match &raw.state_dir {
        Some(dir) if !Path::new(dir.get_ref()).is_absolute() => {
            check.at(
                dir,
                "daemon.state_dir",
                format!("{:?} must be an absolute path", dir.get_ref()),
            );
            PathBuf::new()
        }
        Some(dir) => PathBuf::from(dir.get_ref()),
        None => PathBuf::from("/var/lib/pwrotd"),
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(addr) if addr.get_ref().is_empty() => None,
        Some(addr) => match addr.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                check.at(
                    addr,
                    "daemon.metrics_listen",
                    format!(
                        "{:?} is not an address like \"127.0.0.1:9860\"",
                        addr.get_ref()
                    ),
                );
                None
            }
        },
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9860))),
    };
    let max_concurrent =
        check.count(&raw.max_concurrent, "daemon.max_concurrent", 1..=1024, 4) as usize;
    let shutdown_grace = check.duration_or(
        &raw.shutdown_grace,
        "daemon.shutdown_grace",
        true,
        TIMEOUT,
        Duration::from_secs(30),
    );
    let log_format = raw
        .log_format
        .as_ref()
        .and_then(|f| check.one_of(f.get_ref(), f, "daemon.log_format"))
        .unwrap_or(LogFormat::Text);
    Daemon {
        state_dir,
        metrics_listen,
        max_concurrent,
        shutdown_grace,
        log_format,
    }
}
