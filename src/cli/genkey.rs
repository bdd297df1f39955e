//! `pwrotd genkey`: a new store key for cluster mode, from the OS CSPRNG, printed as standard
//! base64 and a newline, ready for `store.key_file` or the systemd credential
//! `pwrotd-store-key` (docs/operations.md#pwrotd-genkey). The same key goes on every replica.

use std::io::Write;

use super::{CliError, CliResult, write_failed};
use crate::cluster::StoreKey;

/// Prints one new key.
pub fn genkey() -> CliResult {
    let key = StoreKey::generate().map_err(|e| CliError::failed(e.to_string()))?;
    let text = key.to_base64();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.as_str()).map_err(write_failed)?;
    out.flush().map_err(write_failed)
}
