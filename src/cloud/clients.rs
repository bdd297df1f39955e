//! One [`Client`] for each profile the accounts call through (`[cloud]` and
//! `[cloud.profiles.NAME]`, docs/configuration.md#profiles): each with its own credentials,
//! settings and endpoints, and its own rate limiter for each service and region, so the limit
//! applies per service, profile and region.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Class, Client, CloudError, ErrorKind, Operation};

/// The clients of a config's profiles, by profile name; a profile whose client could not be
/// built keeps the reason, and its calls fail with it, unsent.
#[derive(Debug, Default)]
pub struct Clients(BTreeMap<String, Result<Arc<Client>, String>>);

impl Clients {
    /// These clients and `profile`'s, which replaces any it had.
    pub fn with(mut self, profile: impl Into<String>, client: Client) -> Clients {
        self.0.insert(profile.into(), Ok(Arc::new(client)));
        self
    }

    /// These clients, and none for `profile`, for `reason`: its accounts' calls fail, unsent,
    /// with code `Credentials` and the reason, while the other profiles' accounts go on.
    pub fn without(mut self, profile: impl Into<String>, reason: String) -> Clients {
        self.0.insert(profile.into(), Err(reason));
        self
    }

    /// The client of `profile`, or an error for `op` that says nothing was sent: the profile's
    /// client could not be built, or (for an account of another config) there is none.
    pub fn get(&self, profile: &str, op: &dyn Operation) -> Result<&Client, CloudError> {
        let refused = |why: String| {
            CloudError::new(
                op.action(),
                Class::Permanent,
                ErrorKind::Credentials(format!("profile {profile}: {why}")),
            )
        };
        match self.0.get(profile) {
            Some(Ok(client)) => Ok(client),
            Some(Err(why)) => Err(refused(why.clone())),
            None => Err(refused("no client for it".into())),
        }
    }
}
