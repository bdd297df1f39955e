//! The simulated cloud beyond the pwrotd config: cloud accounts, AccessKeys, RAM roles, OIDC
//! providers, where clusters and instances live and who owns them, the ECS instance's role,
//! credential URIs, and short credential lifetimes. `pwrotd-sim --cloud FILE` reads it as
//! TOML; `POST /_sim/cloud` takes the same as JSON. Unknown keys are refused.
//!
//! ```toml
//! credential_lifetime = "5s"           # every temporary credential lives 5 s (tests)
//! accounts = ["2222222222222222"]      # more cloud accounts (16-digit uids)
//!
//! [[access_key]]                       # a RAM user's AccessKey; without `user`, the root's
//! id = "LTAI5tSecondAccount"
//! secret = "..."
//! account = "2222222222222222"
//! user = "ops"
//!
//! [[role]]
//! arn = "acs:ram::2222222222222222:role/pwrotd"
//! trust_accounts = ["1234567890123456"]    # RAM users and roles of these accounts
//! trust_principals = []                    # or single principals, by ARN
//! trust_oidc_providers = ["acs:ram::2222222222222222:oidc-provider/ack"]
//! external_id = "abcd1234"                 # optional: AssumeRole must send it
//! max_session_duration = "12h"             # optional, default 1h
//!
//! [[oidc_provider]]
//! arn = "acs:ram::2222222222222222:oidc-provider/ack"
//! issuer = "https://oidc-ack.example"
//! client_ids = ["sts.aliyuncs.com"]
//!
//! [[resource]]                         # a cluster or instance registered from the config
//! service = "polardb"                  # or "rds"
//! id = "pc-sg0001"
//! region = "ap-southeast-1"
//! owner = "2222222222222222"
//!
//! [ecs]                                # the metadata service's instance
//! role = "acs:ram::1234567890123456:role/pwrotd-ecs"
//! imdsv1 = false                       # true: requests without a token are answered
//!
//! [[credentials_uri]]                  # GET /_creds/app
//! name = "app"
//! role = "acs:ram::1234567890123456:role/pwrotd-ecs"
//! ```

use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::Sim;
use super::identity::{OidcProviderSpec, Principal, RoleSpec, parse_arn};
use crate::cloud::Service;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFile {
    /// Like "5s": the lifetime of every temporary credential issued.
    #[serde(default)]
    pub credential_lifetime: Option<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default, rename = "access_key")]
    pub access_keys: Vec<AccessKeyEntry>,
    #[serde(default, rename = "role")]
    pub roles: Vec<RoleEntry>,
    #[serde(default, rename = "oidc_provider")]
    pub oidc_providers: Vec<OidcProviderEntry>,
    #[serde(default, rename = "resource")]
    pub resources: Vec<ResourceEntry>,
    #[serde(default)]
    pub ecs: Option<EcsEntry>,
    #[serde(default, rename = "credentials_uri")]
    pub credentials_uris: Vec<CredentialsUriEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyEntry {
    pub id: String,
    /// A secret type: Debug output hides it.
    #[serde(deserialize_with = "secret")]
    pub secret: SecretString,
    pub account: String,
    /// The RAM user holding it; none for the account's root.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    pub arn: String,
    #[serde(default)]
    pub trust_accounts: Vec<String>,
    #[serde(default)]
    pub trust_principals: Vec<String>,
    #[serde(default)]
    pub trust_oidc_providers: Vec<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub max_session_duration: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderEntry {
    pub arn: String,
    pub issuer: String,
    pub client_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    pub service: String,
    pub id: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsEntry {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub imdsv1: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsUriEntry {
    pub name: String,
    pub role: String,
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

fn uid(text: &str) -> Result<&str, String> {
    if text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text)
    } else {
        Err(format!("{text:?} is not a cloud account uid (16 digits)"))
    }
}

fn duration(what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{what} {text:?}: {e}"))
}

impl CloudFile {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<CloudFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Applies it to `sim`, after the config's clusters and instances are registered (a
    /// `[[resource]]` must name one of them). Stops at the first entry that is wrong.
    pub fn apply(&self, sim: &Sim) -> Result<(), String> {
        if let Some(lifetime) = &self.credential_lifetime {
            sim.set_credential_lifetime(Some(duration("credential_lifetime", lifetime)?));
        }
        for account in &self.accounts {
            sim.add_cloud_account(uid(account)?);
        }
        for key in &self.access_keys {
            let uid = uid(&key.account)?.to_owned();
            let principal = match &key.user {
                Some(name) => Principal::User {
                    uid,
                    name: name.clone(),
                },
                None => Principal::Root { uid },
            };
            sim.add_access_key(&key.id, key.secret.expose_secret(), principal);
        }
        for role in &self.roles {
            sim.add_role(role.spec()?);
        }
        for provider in &self.oidc_providers {
            let (uid, name) = parse_arn(&provider.arn, "oidc-provider")
                .ok_or_else(|| format!("{:?} is not an OIDC provider ARN", provider.arn))?;
            sim.add_oidc_provider(OidcProviderSpec::new(
                uid,
                name,
                &provider.issuer,
                &provider.client_ids,
            ));
        }
        for resource in &self.resources {
            resource.apply(sim)?;
        }
        if let Some(ecs) = &self.ecs {
            sim.set_ecs_role(ecs.role.as_deref());
            sim.allow_imdsv1(ecs.imdsv1);
        }
        for uri in &self.credentials_uris {
            sim.add_credentials_uri(&uri.name, &uri.role);
        }
        Ok(())
    }
}

impl RoleEntry {
    fn spec(&self) -> Result<RoleSpec, String> {
        let mut role = RoleSpec::from_arn(&self.arn)?;
        for account in &self.trust_accounts {
            role = role.trust_account(uid(account)?);
        }
        role.trusted_principals.clone_from(&self.trust_principals);
        role.trusted_oidc_providers
            .clone_from(&self.trust_oidc_providers);
        role.external_id.clone_from(&self.external_id);
        if let Some(max) = &self.max_session_duration {
            role.max_session_duration = duration("max_session_duration", max)?;
        }
        Ok(role)
    }
}

impl ResourceEntry {
    fn apply(&self, sim: &Sim) -> Result<(), String> {
        let service = Service::ALL
            .into_iter()
            .find(|s| s.name() == self.service)
            .ok_or_else(|| format!("unknown service {:?}", self.service))?;
        let missing = || format!("no {} resource {:?} is registered", self.service, self.id);
        if let Some(region) = &self.region
            && !sim.set_resource_region(service, &self.id, Some(region))
        {
            return Err(missing());
        }
        if let Some(owner) = &self.owner
            && !sim.set_resource_owner(service, &self.id, uid(owner)?)
        {
            return Err(missing());
        }
        if sim.resource_placement(service, &self.id).is_none() {
            return Err(missing());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_applies() {
        let doc = include_str!("cloud_file.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let file: CloudFile = toml::from_str(&example).unwrap();
        assert_eq!(file.roles.len(), 1);
        let sim = Sim::new("LTAIprimary", "secret");
        sim.add_account(
            Service::PolarDb,
            "pc-sg0001",
            "app",
            super::super::AccountType::Normal,
            None,
        );
        file.apply(&sim).unwrap();
        assert_eq!(
            sim.resource_placement(Service::PolarDb, "pc-sg0001"),
            Some((
                "2222222222222222".to_owned(),
                Some("ap-southeast-1".to_owned())
            ))
        );
        let bad: CloudFile =
            toml::from_str("[[resource]]\nservice = \"rds\"\nid = \"rm-x\"\n").unwrap();
        assert!(bad.apply(&sim).unwrap_err().contains("rm-x"));
        assert!(toml::from_str::<CloudFile>("nope = 1\n").is_err());
    }
}
