//! The command line's commands, behind one error type that carries its exit code
//! (docs/operations.md#exit-codes): 0 success; 1 a rotation, a command or the daemon failed;
//! 2 a usage or config error. `src/main.rs` parses the arguments and calls these.

pub mod adopt;
pub mod check;
pub mod genkey;
pub mod genpass;
pub mod logging;
pub mod remote;
pub mod rotate;
pub mod run;
pub mod status;
pub mod store;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use crate::daemon::DaemonError;

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct CliError {
    /// What to print on stderr; `None` when the command already said it (its output lists
    /// the failures).
    message: Option<String>,
    /// Printed as it is, without the command's name first: a config's list of problems.
    plain: bool,
    code: u8,
}

impl CliError {
    /// A usage or config error: exit 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: Some(message.into()),
            plain: false,
            code: 2,
        }
    }

    /// The command could not do its work: exit 1.
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            message: Some(message.into()),
            plain: false,
            code: 1,
        }
    }

    /// Some of the work failed, and the output already said which: exit 1, nothing more.
    pub fn some_failed() -> CliError {
        CliError {
            message: None,
            plain: false,
            code: 1,
        }
    }

    /// The output's reader went away (`pwrotd genpass | head`): a normal end, exit 0.
    pub fn quiet_success() -> CliError {
        CliError {
            message: None,
            plain: false,
            code: 0,
        }
    }

    /// What is printed on stderr, if anything.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> CliError {
        CliError {
            message: Some(e.to_string()),
            plain: true,
            code: 2,
        }
    }
}

impl From<DaemonError> for CliError {
    fn from(e: DaemonError) -> CliError {
        CliError::failed(e.to_string())
    }
}

/// What a command returns.
pub type CliResult = Result<(), CliError>;

/// Prints a failed command's message, once, and gives its exit code.
pub fn exit(command: &str, result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match (&e.message, e.plain) {
                (Some(m), true) => eprintln!("{m}"),
                (Some(m), false) => eprintln!("pwrotd {command}: {m}"),
                (None, _) => {}
            }
            ExitCode::from(e.code)
        }
    }
}

/// A failed write to stdout: a reader that stopped reading (`pwrotd genpass | head`) is a
/// normal end; anything else fails.
pub fn write_failed(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::quiet_success()
    } else {
        CliError::failed(e.to_string())
    }
}

/// Loads and validates the config: a bad one is exit 2 with every problem listed.
pub fn load(path: &Path) -> Result<Config, CliError> {
    Ok(Config::load(path)?)
}

/// A tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))
}

/// Reports a panic by place only: its message could hold a secret.
pub fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        eprintln!(
            "pwrotd: internal error (panic) at {place}; its message is withheld because it may hold a secret"
        );
    }));
}

/// The accounts of a config, for a message that names the valid ones.
pub fn names(config: &Config) -> String {
    let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    match names.len() {
        0 => "no accounts".to_owned(),
        n if n > 20 => format!("{n} accounts: {}, …", names[..20].join(", ")),
        _ => names.join(", "),
    }
}
