//! Integration tests, in one binary to keep link time low. Every network test talks to a
//! simulator on 127.0.0.1 and stops by itself.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets the unexpected should stop there, and say where"
)]

mod audit;
mod binaries;
mod client_sim;
mod cluster;
mod cluster_cli;
mod cluster_hostile;
mod common;
mod corpus;
mod credentials;
mod daemon;
mod databases;
mod field;
mod hostile;
mod policy;
mod profiles;
mod regions;
mod reliability;
mod signing;
mod sim_faults;
mod sim_identity;
mod transport;
