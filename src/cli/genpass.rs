//! `pwrotd genpass`: compliant passwords from the OS CSPRNG, one per line.

use std::io::Write;

use super::{CliError, CliResult, write_failed};
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
