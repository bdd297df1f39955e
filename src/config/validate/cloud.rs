//! `[cloud]` and `[cloud.profiles.NAME]`: the client's settings, the region and network, the
//! endpoints and the credentials; and the check that every region an account calls in has an
//! endpoint.
//!
//! A profile takes the keys of `[cloud]`, and each key it does not set is `[cloud]`'s, but for
//! two tables. Its `credentials` are whole: a profile with a `credentials` table of its own
//! takes nothing from `[cloud.credentials]`, one without uses them as they are. Its `endpoints`
//! are its own: an explicit endpoint serves every region, so one inherited from `[cloud]` would
//! send a profile in another region or network to `[cloud]`'s place
//! (docs/configuration.md#profiles).

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::TIMEOUT;
use super::account::valid_name;
use crate::cloud::client::{Endpoints, parse_endpoint};
use crate::cloud::{Api, ClientConfig, CredentialsConfig, Service};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawAccount, RawCloud, RawEndpoints};
use crate::config::{Cloud, DEFAULT_PROFILE, RATE};

/// Whether `region` has the shape of a region id: `cn-hangzhou`, `ap-southeast-1`,
/// `cn-shanghai-finance-1`.
fn region_shaped(region: &str) -> bool {
    region.len() <= 64
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && !region.ends_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A `region_id` key (`cloud.region_id` or an account's): `None` when refused (and reported).
pub(in crate::config) fn region_id(
    check: &mut Check,
    value: &Spanned<String>,
    key: &str,
) -> Option<String> {
    let region = value.get_ref();
    if region.is_empty() {
        check.at(value, key, "must not be empty");
        None
    } else if !region_shaped(region) {
        check.at(
            value,
            key,
            format!(
                "{region:?} is not a region id like \"cn-hangzhou\" or \"ap-southeast-1\" \
                 (lower-case letters, digits and dashes)"
            ),
        );
        None
    } else {
        Some(region.clone())
    }
}

/// `[cloud]`, with `region_id` required, and each `[cloud.profiles.NAME]` on top of it.
pub(in crate::config) fn validate_cloud(
    check: &mut Check,
    raw: &RawCloud,
) -> (Cloud, BTreeMap<String, Cloud>) {
    let base = Cloud {
        client: ClientConfig::default(),
        credentials: CredentialsConfig::default(),
    };
    if raw.region_id.is_none() {
        check.push(
            0,
            "cloud.region_id",
            "is required, for example \"cn-hangzhou\"",
        );
    }
    let cloud = settings(check, raw, &base, "cloud");
    let mut profiles = BTreeMap::new();
    for (name, profile) in &raw.profiles {
        let table = format!("cloud.profiles.{name}");
        let named = valid_name(name) && name != DEFAULT_PROFILE;
        if !named {
            check.at(
                profile,
                table.clone(),
                if name == DEFAULT_PROFILE {
                    "\"default\" is [cloud] itself (the profile of accounts that name none): \
                     give this profile another name"
                        .to_owned()
                } else {
                    format!(
                        "{name:?} is not a profile name: 1 to 128 of A-Z a-z 0-9 . _ -, not \
                         starting with a dot"
                    )
                },
            );
        }
        if !profile.get_ref().profiles.is_empty() {
            check.at(
                profile,
                format!("{table}.profiles"),
                "profiles do not nest: declare each as [cloud.profiles.NAME]",
            );
        }
        // Its keys are checked all the same; an account cannot name it.
        let settings = settings(check, profile.get_ref(), &cloud, &table);
        if named {
            profiles.insert(name.clone(), settings);
        }
    }
    (cloud, profiles)
}

/// The keys of one table (`[cloud]` or a profile, named `table` in problems) on top of `base`:
/// what the table does not set is `base`'s.
fn settings(check: &mut Check, raw: &RawCloud, base: &Cloud, table: &str) -> Cloud {
    let key = |k: &str| format!("{table}.{k}");
    let mut client = base.client.clone();
    if let Some(r) = &raw.region_id
        && let Some(region) = region_id(check, r, &key("region_id"))
    {
        client.region_id = region;
    }
    if let Some(n) = &raw.network
        && let Some(network) = check.one_of(n.get_ref(), n, key("network"))
    {
        client.network = network;
    }
    if let Some(s) = &raw.signature
        && let Some(signature) = check.one_of(s.get_ref(), s, key("signature"))
    {
        client.signature = signature;
    }
    client.timeout = check.duration_or(
        &raw.timeout,
        &key("timeout"),
        false,
        TIMEOUT,
        client.timeout,
    );
    client.connect_timeout = ClientConfig::default().connect_timeout.min(client.timeout);
    client.max_attempts = check.count(
        &raw.max_attempts,
        &key("max_attempts"),
        1..=100,
        i64::from(client.max_attempts),
    ) as u32;
    if let Some(rps) = &raw.requests_per_second {
        if RATE.contains(rps.get_ref()) {
            client.requests_per_second = *rps.get_ref();
        } else {
            check.at(
                rps,
                key("requests_per_second"),
                format!(
                    "{} is out of range {}..={} (calls a second to each service)",
                    rps.get_ref(),
                    RATE.start(),
                    RATE.end()
                ),
            );
        }
    }
    if let Some(ca) = &raw.ca_file {
        client.ca_file = Some(check.ca_file(ca, &key("ca_file")));
    }
    client.endpoints = endpoints(check, &raw.endpoints, table);
    let mut credentials = match &raw.credentials {
        Some(c) => super::credentials::credentials(check, c, &key("credentials")),
        None => base.credentials.clone(),
    };
    credentials.sts_endpoint = match &raw.sts_endpoint {
        Some(s) => parse_endpoint(s.get_ref())
            .map_err(|e| check.at(s, key("sts_endpoint"), e))
            .ok(),
        None => base.credentials.sts_endpoint.clone(),
    };
    Cloud {
        client,
        credentials,
    }
}

/// The accounts that call in their profile's `region_id` (they set no `region_id` of their
/// own) need an endpoint there for their service: when the region has no default one and the
/// config names none, the problem is reported on the `region_id` that chose the region (the
/// profile's, or `cloud.region_id`), once for each profile and service. An account's own
/// `region_id` is checked with the account.
pub(in crate::config) fn validate_default_region(
    check: &mut Check,
    raw: &RawCloud,
    cloud: &Cloud,
    profiles: &BTreeMap<String, Cloud>,
    accounts: &[Spanned<RawAccount>],
) {
    let mut used: BTreeSet<(String, Service)> = BTreeSet::new();
    for a in accounts.iter().map(Spanned::get_ref) {
        if a.region_id.is_some() {
            continue;
        }
        let Some(api) = a
            .api
            .as_ref()
            .and_then(|api| api.get_ref().parse::<Api>().ok())
        else {
            continue;
        };
        let profile = a
            .profile
            .as_ref()
            .map_or(DEFAULT_PROFILE, |p| p.get_ref().as_str());
        used.insert((profile.to_owned(), api.service()));
    }
    for (profile, service) in used {
        let (settings, table) = if profile == DEFAULT_PROFILE {
            (cloud, raw)
        } else {
            match (profiles.get(&profile), raw.profiles.get(&profile)) {
                (Some(settings), Some(table)) => (settings, table.get_ref()),
                _ => continue, // an unknown profile, reported with the account
            }
        };
        // The region was refused, and reported, where it was written.
        let (value, key) = match &table.region_id {
            Some(value) if profile != DEFAULT_PROFILE => {
                (value, format!("cloud.profiles.{profile}.region_id"))
            }
            _ => match &raw.region_id {
                Some(value) => (value, "cloud.region_id".to_owned()),
                None => continue,
            },
        };
        if value.get_ref() != &settings.client.region_id {
            continue;
        }
        if let Err(e) = settings
            .client
            .endpoint(service, &settings.client.region_id)
        {
            check.at(value, key, e);
        }
    }
}

/// `endpoints`: the URLs given, which replace each service's defaults.
fn endpoints(check: &mut Check, raw: &RawEndpoints, table: &str) -> Endpoints {
    let mut endpoints = Endpoints::default();
    for (service, value) in [(Service::PolarDb, &raw.polardb), (Service::Rds, &raw.rds)] {
        let Some(value) = value else { continue };
        match parse_endpoint(value.get_ref()) {
            Ok(url) => match service {
                Service::PolarDb => endpoints.polardb = Some(url),
                Service::Rds => endpoints.rds = Some(url),
            },
            Err(e) => check.at(value, format!("{table}.endpoints.{}", service.name()), e),
        }
    }
    endpoints
}
