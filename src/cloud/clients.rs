//! One [`Client`] for each profile the accounts call through (`[cloud]` and
//! `[cloud.profiles.NAME]`, docs/configuration.md#profiles): each with its own credentials,
//! settings and endpoints, and its own rate limiter for each service and region, so the limit
//! applies per service, profile and region.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Class, Client, CloudError, ErrorKind, Operation};

/// The clients of a config's profiles, by profile name.
#[derive(Debug, Default)]
pub struct Clients(BTreeMap<String, Arc<Client>>);

impl Clients {
    /// These clients and `profile`'s, which replaces any it had.
    pub fn with(mut self, profile: impl Into<String>, client: Client) -> Clients {
        self.0.insert(profile.into(), Arc::new(client));
        self
    }

    /// The client of `profile`, or an error for `op` that says nothing was sent. A config's
    /// clients are built for every profile one of its accounts names, so this fails only for
    /// an account of another config.
    pub fn get(&self, profile: &str, op: &dyn Operation) -> Result<&Client, CloudError> {
        self.0.get(profile).map(Arc::as_ref).ok_or_else(|| {
            CloudError::new(
                op.action(),
                Class::Permanent,
                ErrorKind::Credentials(format!("no client for the profile {profile:?}")),
            )
        })
    }
}
