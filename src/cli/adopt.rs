//! `pwrotd adopt`: record the password an account has today as its current version, read from
//! standard input (never argv), with no API call (docs/operations.md#pwrotd-adopt).

use std::path::Path;
use std::time::Duration;

use super::{CliError, CliResult, load, logging, names, runtime};
use crate::config::StoreConfig;
use crate::control::{self, Request, Response};
use crate::daemon::{DaemonError, StateLock};
use crate::password::Password;
use crate::sink::Sink;
use crate::verify::Login;

/// `pwrotd adopt`: the password read from standard input becomes `name`'s current version,
/// through the daemon if one runs; in cluster mode only through it.
pub fn adopt(path: &Path, name: &str) -> CliResult {
    let config = load(path)?;
    logging::init(config.daemon.log_format, "warn");
    let Some(account) = config.account(name).cloned() else {
        return Err(CliError::usage(format!(
            "no account named {name:?} in {}; it has {}",
            path.display(),
            names(&config)
        )));
    };
    let cluster = matches!(config.store, StoreConfig::Postgresql(_));
    let state_dir = config.daemon.state_dir.clone();
    // In cluster mode only a daemon may adopt: said before the password is asked for.
    if cluster && StateLock::acquire(&state_dir, "adopt").is_ok() {
        return Err(CliError::failed(super::rotate::CLUSTER_NEEDS_DAEMON));
    }
    let password = read_password(&format!(
        "the password {} has today on {}",
        account.account_name, account.resource_id
    ))
    .map_err(CliError::usage)?;
    if let Some(verify) = &account.verify {
        let rt = runtime()?;
        let user = &account.account_name;
        match rt.block_on(verify.login(user, &password)) {
            Login::Accepted if rt.block_on(verify.checks_passwords(user)) => {}
            Login::Accepted => {
                return Err(CliError::failed(format!(
                    "{} takes any password for {user}, so a login proves nothing; not adopted",
                    verify.target()
                )));
            }
            other => {
                return Err(CliError::failed(format!(
                    "the password does not log in as {user} ({}); not adopted",
                    other.reason()
                )));
            }
        }
    }
    match StateLock::acquire(&state_dir, "adopt") {
        Ok(lock) if cluster => {
            drop(lock);
            return Err(CliError::failed(super::rotate::CLUSTER_NEEDS_DAEMON));
        }
        Ok(lock) => {
            let adopted = Sink::open(&state_dir)
                .and_then(|sink| sink.adopt_current(&account, password))
                .map_err(|e| CliError::failed(e.to_string()));
            drop(lock);
            adopted?;
        }
        Err(DaemonError::Locked { role, .. }) if role == "daemon" => {
            let request = Request::Adopt {
                account: account.name.clone(),
                password,
            };
            match control::call(&state_dir, &request, Duration::from_secs(60)) {
                Ok(Response::Adopted) => {}
                Ok(other) => {
                    return Err(CliError::failed(format!("the daemon answered {other:?}")));
                }
                Err(e) => return Err(CliError::failed(e.to_string())),
            }
        }
        Err(e) => return Err(e.into()),
    }
    say!(
        "{}: adopted as its current password; rotated on its schedule from now",
        account.name
    );
    Ok(())
}

/// Reads one line from standard input as a password: without echo on a terminal, and never
/// from argv, where other users could read it.
fn read_password(what: &str) -> Result<Password, String> {
    use std::io::{BufRead, IsTerminal};
    use zeroize::Zeroizing;
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let saved = if terminal {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        eprint!("{what}: ");
        let saved = tcgetattr(&stdin).map_err(|e| format!("cannot read the terminal: {e}"))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| format!("cannot turn the terminal's echo off: {e}"))?;
        Some(saved)
    } else {
        None
    };
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| format!("cannot read standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("no password on standard input ({what})"));
    }
    Ok(Password::new(password.to_owned()))
}
