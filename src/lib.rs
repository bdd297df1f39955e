//! pwrotd rotates database passwords for Alibaba Cloud PolarDB, PolarDB-X and ApsaraDB RDS.
//!
//! On each account's schedule it generates a compliant password from the OS CSPRNG, sets it
//! through the OpenAPI, and writes it to a vault-style file sink that applications read. The one
//! property it must never break: the password the database has is always one the sink knows.
//!
//! # Layout
//!
//! Where a password is born, written down, sent and shown, one place each:
//!
//! - [`password`]: the documented policy, the generator and validator, the `Password` secret
//!   type. A password is born here, from [`random`], the OS CSPRNG.
//! - [`rotation`]: one rotation, its protocol step by step in `rotation/attempt.rs`, the only
//!   place that orders store writes and API calls; a `Report` turned into metrics in one place.
//! - [`store`]: what the protocol asks of durable state; [`sink`]: the file store under
//!   `state_dir` (secret files, the audit log, render files) where passwords are written down.
//! - [`cluster`]: cluster mode (`[store] kind = "postgresql"`): the shared store whose every
//!   write is fenced by the leader's epoch (`cluster/store.rs`), the lease (`cluster/lease.rs`),
//!   each replica's local copy (`cluster/mirror.rs`), the store key that seals every password
//!   before it reaches the database (`cluster/key.rs`), and where the URL and key are read
//!   from (`cluster/secrets.rs`).
//! - [`cloud`]: request signing (V1, V3), credentials, the operations, the default endpoint of
//!   each service in each region (`cloud/endpoints.rs`), the client and the failure rules
//!   (`cloud/error.rs`). Every byte sent to the cloud leaves through
//!   `cloud::Client::call`.
//! - [`verify`]: proving a password by logging in to the database with it.
//! - [`scheduler`]: when each account is due; one task per database user.
//! - [`daemon`]: `pwrotd run`: the state lock, signals, reload, systemd; [`control`]: the socket
//!   through which the CLI reaches it; [`metrics`]: `/metrics` and `/healthz`; [`hooks`]:
//!   `on_change` commands that tell applications.
//! - [`config`]: the TOML config file, parsed and validated.
//! - [`cli`]: the commands, behind one error type that carries the exit code.
//! - [`failpoint`]: crash points for the reliability tests (debug builds only).
//! - `demo` and `sim` (the `sim` feature, on by default): `pwrotd demo` and `pwrotd-sim`, a
//!   faithful local stand-in for the PolarDB and RDS OpenAPI. The Debian package is built
//!   without them, so the shipped `pwrotd` holds no simulator or demo code.
//!
//! The binaries are thin: `src/main.rs` (`pwrotd`) and `src/bin/pwrotd-sim.rs`. The reference
//! for users is `docs/`; the code cites it.

/// Prints a line on stdout for the CLI and the demo. A reader that stopped reading
/// (`pwrotd status | head`) ends the output quietly, where `println!` would panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod cli;
pub mod cloud;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
#[cfg(feature = "sim")]
pub mod demo;
pub mod failpoint;
pub mod hooks;
pub mod metrics;
pub mod password;
pub mod random;
pub mod rotation;
pub mod scheduler;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sink;
pub mod store;
pub mod verify;
