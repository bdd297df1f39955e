//! Cluster mode, `[store] kind = "postgresql"` (docs/configuration.md#store): several replicas
//! share one PostgreSQL database as the source of truth, and one of them, the leader, rotates.
//!
//! - `key`: the [`StoreKey`] every replica shares, and sealing: each password is encrypted
//!   with AES-256-GCM before it reaches the database, bound to its account, user and version,
//!   so that a dump, a backup or a DBA never sees one.
//! - `secrets`: where the database URL and the key are read from (a file the config names, a
//!   systemd credential, the environment), checked without ever being shown.
//!
//! Nothing here talks to the database, and nothing here may put a URL, a key or a password in
//! an error, a log line or `Debug` output.

pub mod key;
pub mod secrets;

pub use key::{Aad, KeyError, StoreKey};
pub use secrets::SecretsError;
