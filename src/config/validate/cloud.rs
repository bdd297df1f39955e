//! `[cloud]`: the client's settings, the region and network, the endpoints and the
//! credentials; and the check that every region an account calls in has an endpoint.

use std::collections::BTreeSet;

use toml::Spanned;

use super::TIMEOUT;
use crate::cloud::client::{Endpoints, parse_endpoint};
use crate::cloud::{Api, ClientConfig, Service, SignatureVersion};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawAccount, RawCloud, RawEndpoints};
use crate::config::{Cloud, RATE};

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

/// `[cloud]`: `region_id` is required; the rest have defaults.
pub(in crate::config) fn validate_cloud(check: &mut Check, raw: &RawCloud) -> Cloud {
    let mut client = ClientConfig::default();
    match &raw.region_id {
        Some(r) => {
            if let Some(region) = region_id(check, r, "cloud.region_id") {
                client.region_id = region;
            }
        }
        None => check.push(
            0,
            "cloud.region_id",
            "is required, for example \"cn-hangzhou\"",
        ),
    }
    if let Some(n) = &raw.network
        && let Some(network) = check.one_of(n.get_ref(), n, "cloud.network")
    {
        client.network = network;
    }
    client.signature = raw
        .signature
        .as_ref()
        .and_then(|s| check.one_of(s.get_ref(), s, "cloud.signature"))
        .map_or(SignatureVersion::V1, SignatureVersion::from);
    client.timeout = check.duration_or(
        &raw.timeout,
        "cloud.timeout",
        false,
        TIMEOUT,
        client.timeout,
    );
    client.connect_timeout = client.connect_timeout.min(client.timeout);
    client.max_attempts = check.count(&raw.max_attempts, "cloud.max_attempts", 1..=100, 5) as u32;
    if let Some(rps) = &raw.requests_per_second {
        if RATE.contains(rps.get_ref()) {
            client.requests_per_second = *rps.get_ref();
        } else {
            check.at(
                rps,
                "cloud.requests_per_second",
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
        client.ca_file = Some(check.ca_file(ca, "cloud.ca_file"));
    }
    client.endpoints = endpoints(check, &raw.endpoints);
    let mut credentials = super::credentials::credentials(check, &raw.credentials);
    credentials.sts_endpoint = raw.sts_endpoint.as_ref().and_then(|s| {
        parse_endpoint(s.get_ref())
            .map_err(|e| check.at(s, "cloud.sts_endpoint", e))
            .ok()
    });
    Cloud {
        client,
        credentials,
    }
}

/// The accounts that call in `[cloud] region_id` (they set no `region_id` of their own) need
/// an endpoint there for their service: when the region has no default one and the config
/// names none, the problem is reported on `cloud.region_id`, once for each service.
/// An account's own `region_id` is checked with the account.
pub(in crate::config) fn validate_default_region(
    check: &mut Check,
    raw: &RawCloud,
    client: &ClientConfig,
    accounts: &[Spanned<RawAccount>],
) {
    let Some(value) = &raw.region_id else { return };
    if value.get_ref() != &client.region_id {
        return; // refused, and reported
    }
    let services: BTreeSet<Service> = accounts
        .iter()
        .map(Spanned::get_ref)
        .filter(|a| a.region_id.is_none())
        .filter_map(|a| a.api.as_ref()?.get_ref().parse::<Api>().ok())
        .map(Api::service)
        .collect();
    for service in services {
        if let Err(e) = client.endpoint(service, &client.region_id) {
            check.at(value, "cloud.region_id", e);
        }
    }
}

/// `[cloud.endpoints]`: the URLs given, which replace each service's defaults.
fn endpoints(check: &mut Check, raw: &RawEndpoints) -> Endpoints {
    let mut endpoints = Endpoints::default();
    for (service, value) in [(Service::PolarDb, &raw.polardb), (Service::Rds, &raw.rds)] {
        let Some(value) = value else { continue };
        match parse_endpoint(value.get_ref()) {
            Ok(url) => match service {
                Service::PolarDb => endpoints.polardb = Some(url),
                Service::Rds => endpoints.rds = Some(url),
            },
            Err(e) => check.at(value, format!("cloud.endpoints.{}", service.name()), e),
        }
    }
    endpoints
}
