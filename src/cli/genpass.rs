//! `pwrotd genpass`: compliant passwords from the OS CSPRNG, one per line.

use std::io::Write;

use super::{CliError, CliResult};
use crate::password::{self, Policy};

pub fn genpass(length: usize, count: usize) -> CliResult {
    let policy =
        Policy::new(length, &password::Class::ALL, password::SPECIALS, "").map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| format!("--{e}")).collect();
            CliError::usage(text.join("; "))
        })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let password = policy
            .generate()
            .map_err(|e| CliError::failed(e.to_string()))?;
        writeln!(out, "{}", password.expose()).map_err(write_failed)?;
    }
    out.flush().map_err(write_failed)
}

/// A reader that stopped reading (`pwrotd genpass | head`) is a normal end; anything else
/// fails.
fn write_failed(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::quiet_success()
    } else {
        CliError::failed(e.to_string())
    }
}
