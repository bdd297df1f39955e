//! Request authentication for the simulator: V1 and V3 signatures, verified with the same
//! signing code the client uses, over parameters from the query string and the form body.

use std::collections::BTreeMap;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::SimError;
use super::identity::Principal;
use crate::cloud::sign::{self, V3Input};

/// An HTTP request as the simulator sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    pub host: Option<&'a str>,
}

/// An authenticated request.
pub(super) struct Verified {
    pub action: String,
    pub version: String,
    pub nonce: String,
    pub timestamp: SystemTime,
    /// Every parameter, from the query and the form body.
    pub params: BTreeMap<String, String>,
    /// Who signed it.
    pub principal: Principal,
}

/// Looks up an AccessKey given the SecurityToken sent with it (if any): its secret and who
/// holds it, or the documented refusal of the key or the token.
pub(super) type KeyLookup<'a> =
    dyn Fn(&str, Option<&str>) -> Result<(SecretString, Principal), SimError> + 'a;

pub(super) fn header<'a>(request: &'a Request<'_>, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn parse_timestamp(value: &str) -> Result<SystemTime, SimError> {
    humantime::parse_rfc3339(value).map_err(|_| {
        SimError::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })
}

fn signature_mismatch() -> SimError {
    SimError::new(
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation.",
    )
}

/// The parameters of a request: those of the query string alone, and all of them, from the
/// query and a form body (a body that is not a form is not read).
pub(super) fn params(request: &Request<'_>) -> (Vec<(String, String)>, BTreeMap<String, String>) {
    let query: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    let is_form = header(request, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body: Vec<(String, String)> = if is_form {
        form_urlencoded::parse(request.body).into_owned().collect()
    } else {
        Vec::new()
    };
    let all = query.iter().chain(&body).cloned().collect();
    (query, all)
}

/// The action and version a request names: the `x-acs-action` and `x-acs-version` headers of
/// the V3 scheme, else the `Action` and `Version` parameters. Empty when absent.
pub(super) fn action_and_version(
    request: &Request<'_>,
    params: &BTreeMap<String, String>,
) -> (String, String) {
    let pick = |header_name: &str, param: &str| {
        header(request, header_name)
            .map(str::to_owned)
            .or_else(|| params.get(param).cloned())
            .unwrap_or_default()
    };
    (
        pick("x-acs-action", "Action"),
        pick("x-acs-version", "Version"),
    )
}

pub(super) fn verify(request: &Request<'_>, keys: &KeyLookup<'_>) -> Result<Verified, SimError> {
    let (query, mut params) = params(request);
    let authorization = header(request, "authorization").unwrap_or_default();
    if let Some(fields) = authorization.strip_prefix(sign::V3_ALGORITHM) {
        return verify_v3(request, fields, &query, params, keys);
    }

    let Some(signature) = params.remove("Signature") else {
        return Err(SimError::missing("Signature"));
    };
    for name in [
        "AccessKeyId",
        "SignatureMethod",
        "SignatureNonce",
        "Timestamp",
        "Action",
        "Version",
    ] {
        if !params.contains_key(name) {
            return Err(SimError::missing(name));
        }
    }
    if params["SignatureMethod"] != "HMAC-SHA1" {
        return Err(SimError::new(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not supported.",
        ));
    }
    if params.get("SignatureVersion").is_some_and(|v| v != "1.0") {
        return Err(SimError::new(
            400,
            "InvalidSignatureVersion",
            "Specified signature version is not supported.",
        ));
    }
    let (secret, principal) = keys(
        &params["AccessKeyId"],
        params.get("SecurityToken").map(String::as_str),
    )?;
    let timestamp = parse_timestamp(&params["Timestamp"])?;
    let expected = sign::v1_signature(
        secret.expose_secret(),
        request.method,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if !sign::signatures_match(&expected, &signature) {
        return Err(signature_mismatch());
    }
    Ok(Verified {
        action: params["Action"].clone(),
        version: params["Version"].clone(),
        nonce: params["SignatureNonce"].clone(),
        timestamp,
        params,
        principal,
    })
}

fn verify_v3(
    request: &Request<'_>,
    fields: &str,
    query: &[(String, String)],
    params: BTreeMap<String, String>,
    keys: &KeyLookup<'_>,
) -> Result<Verified, SimError> {
    let incomplete = || {
        SimError::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.trim().split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(incomplete()),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete());
    };
    // The V3 scheme carries the token in `x-acs-security-token`, signed like any header.
    let (secret, principal) = keys(credential, header(request, "x-acs-security-token"))?;
    let mut headers = Vec::new();
    for name in signed_headers.split(';') {
        let value = header(request, name).ok_or_else(incomplete)?;
        headers.push((name, value));
    }
    for required in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if !headers.iter().any(|(n, _)| *n == required) {
            return Err(incomplete());
        }
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    };
    let payload_hash = value("x-acs-content-sha256");
    if payload_hash != sign::sha256_hex(request.body) {
        return Err(signature_mismatch());
    }
    let timestamp = parse_timestamp(value("x-acs-date"))?;
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expected = sign::v3_signature(
        secret.expose_secret(),
        &V3Input {
            method: request.method,
            path: "/",
            query: &query,
            headers: &headers,
            payload_hash,
        },
    );
    if !sign::signatures_match(&expected.signature, signature) {
        return Err(signature_mismatch());
    }
    Ok(Verified {
        action: value("x-acs-action").to_owned(),
        version: value("x-acs-version").to_owned(),
        nonce: value("x-acs-signature-nonce").to_owned(),
        timestamp,
        params,
        principal,
    })
}
