//! `[cloud]`: the client's settings, the endpoints and the credentials.

use super::TIMEOUT;
use crate::cloud::client::{Endpoints, parse_endpoint};
use crate::cloud::{ClientConfig, Service, SignatureVersion};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawCloud, RawEndpoints};
use crate::config::{Cloud, RATE};

/// `[cloud]`: `region_id` is required; the rest have defaults.
pub(in crate::config) fn validate_cloud(check: &mut Check, raw: &RawCloud) -> Cloud {
    let mut client = ClientConfig::default();
    match &raw.region_id {
        Some(r) if !r.get_ref().is_empty() => client.region_id = r.get_ref().clone(),
        Some(r) => check.at(r, "cloud.region_id", "must not be empty"),
        None => check.push(
            0,
            "cloud.region_id",
            "is required, for example \"cn-hangzhou\"",
        ),
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

/// `[cloud.endpoints]`: each service's default, or the URL given.
fn endpoints(check: &mut Check, raw: &RawEndpoints) -> Endpoints {
    let mut endpoints = Endpoints::default();
    for (service, value) in [(Service::PolarDb, &raw.polardb), (Service::Rds, &raw.rds)] {
        let Some(value) = value else { continue };
        match parse_endpoint(value.get_ref()) {
            Ok(url) => match service {
                Service::PolarDb => endpoints.polardb = url,
                Service::Rds => endpoints.rds = url,
            },
            Err(e) => check.at(value, format!("cloud.endpoints.{}", service.name()), e),
        }
    }
    endpoints
}
