//! pwrotd rotates database passwords for Alibaba Cloud PolarDB, PolarDB-X and ApsaraDB RDS.
//!
//! On each account's schedule it generates a compliant password from the OS CSPRNG, sets it
//! through the OpenAPI, and writes it to a vault-style file sink that applications read. The one
//! property it must never break: the password the database has is always one the sink knows.
//!
//! # Layout
//!
//! - [`password`]: the documented policy, the generator and validator, the `Password` secret type.
//! - [`random`]: the OS CSPRNG, the only source of randomness.
//! - [`cloud`]: request signing (V1, V3), credentials, the five operations, the client, errors.
//! - [`config`]: the TOML config file, parsed and validated.
//! - [`verify`]: proving a password by logging in to the database with it.
//! - [`control`]: the control socket through which the CLI reaches the running daemon.
//! - [`hooks`]: `on_change` commands that tell applications their password changed.
//! - [`demo`]: `pwrotd demo`, the first thing a newcomer runs.
//! - [`sim`]: `pwrotd-sim`, a faithful local stand-in for the PolarDB and RDS OpenAPI.
//!
//! The binaries are thin: `src/main.rs` (`pwrotd`) and `src/bin/pwrotd-sim.rs`.
//!
//! The `sim` feature (on by default) brings [`sim`], [`demo`] and the `pwrotd-sim` binary. The
//! Debian package is built without it, so the shipped `pwrotd` holds no simulator or demo code.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

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
