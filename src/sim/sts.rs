//! STS, Version `2015-04-01`, on the simulator's own address (point `sts_endpoint` at it):
//! `AssumeRole` and `AssumeRoleWithOIDC`, as the official credential SDKs call them.
//!
//! What the requests look like comes from aliyun/credentials-go (`providers/ram_role_arn.go`:
//! a V1-signed POST, the signature and common parameters in the query, `RoleArn`,
//! `RoleSessionName`, `DurationSeconds`, `ExternalId`, `Policy` in a form body, `SecurityToken`
//! when the source credentials are temporary; `providers/oidc.go`: an unsigned POST with
//! `RoleArn`, `OIDCProviderArn`, `OIDCToken`, `RoleSessionName`, `DurationSeconds` in the body)
//! and aliyun/credentials-python (`provider/ram_role_arn.py` and `provider/oidc.py`: the same
//! as GET query strings). The official `alibabacloud_sts20150401` client sends both as V1 RPC
//! requests, AssumeRoleWithOIDC with `auth_type = 'Anonymous'`, unsigned.
//!
//! The reply and the errors follow the RAM reference, "AssumeRole" and "AssumeRoleWithOIDC"
//! (api-sts-2015-04-01-assumerole, -assumerolewithoidc) and its STS error-code page
//! (api-sts-2015-04-01-errorcodes):
//! - `{"RequestId", "AssumedRoleUser": {"Arn": "acs:ram::<uid>:role/<role>/<session>",
//!   "AssumedRoleId": "<role id>:<session>"}, "Credentials": {"AccessKeyId": "STS.…",
//!   "AccessKeySecret", "SecurityToken", "Expiration": "YYYY-MM-DDThh:mm:ssZ"}}`, and for
//!   OIDC also `"OIDCTokenInfo": {"Issuer", "Subject", "ClientIds"}`;
//! - 400 `InvalidParameter.RoleArn` ("The parameter RoleArn is wrongly formed."),
//!   `InvalidParameter.RoleSessionName` (2 to 64 letters, digits and `. @ - _`),
//!   `InvalidParameter.DurationSeconds` ("The Min/Max value of DurationSeconds is 15min/1hr.":
//!   900 to the role's `MaxSessionDuration`), `InvalidParameter.ExternalId` (2 to 1,224
//!   characters of `[\w+=,.@:/-]`), `InvalidParameter.PolicyGrammar`,
//!   `InvalidParameter.PolicySize` (2,048 bytes);
//! - 403 `NoPermission`: "Roles may not be assumed by root accounts." for the AccessKey of an
//!   Alibaba Cloud account (the STS FAQ; the reference: "You cannot use an Alibaba Cloud
//!   account to call this operation"), and "No permission perform sts:AssumeRole on this Role.
//!   Maybe you are not authorized to perform sts:AssumeRole or the specified role does not
//!   trust you" when the trust policy does not name the caller, or its `sts:ExternalId`
//!   condition does not hold;
//! - 404 `EntityNotExist.Role` ("The specified Role not exists.");
//! - 401 `AuthenticationFail.NoPermission` ("No such OIDC Provider registered.", or "There is
//!   no permission" when the role does not trust the provider),
//!   `AuthenticationFail.OIDCToken.Invalid` (an empty token, not three parts, not base64url,
//!   HS256, unreadable claims), `AuthenticationFail.OIDCToken.Expired` ("This JsonWebToken is
//!   expired."), `AuthenticationFail.OIDCToken.IssuerNotMatch`,
//!   `AuthenticationFail.OIDCToken.AudienceNotMatch` ("Invalid audience.");
//! - 500 `InternalError` ("STS Server Internal Error happened.") and 400 `Throttling.User`, as
//!   injected faults ([`super::CredentialFault`]).
//!
//! The OIDC token is not verified cryptographically: the simulator reads the claims of the
//! unsigned payload (`iss`, `aud`, `exp`, `sub`), checks them against the provider, and ignores
//! the signature. [`unsigned_oidc_token`] makes such tokens.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::ExposeSecret;

use super::identity::{DEFAULT_SESSION, Principal, RoleSpec, TemporaryCredentials};
use super::metadata::CredentialEndpoint;
use super::{Outcome, Sim, SimError, auth, new_request_id};

/// The STS API version, which routes a request here.
pub(super) const VERSION: &str = "2015-04-01";

/// The shortest `DurationSeconds`: 15 minutes.
const MIN_DURATION: Duration = Duration::from_secs(900);

fn invalid(what: &str) -> SimError {
    SimError::new(
        400,
        format!("InvalidParameter.{what}"),
        format!("The parameter {what} is wrongly formed."),
    )
}

fn not_trusted() -> SimError {
    SimError::new(
        403,
        "NoPermission",
        "No permission perform sts:AssumeRole on this Role. Maybe you are not authorized to perform sts:AssumeRole or the specified role does not trust you",
    )
}

fn oidc_failure(code: &str, message: &str) -> SimError {
    SimError::new(401, format!("AuthenticationFail.{code}"), message)
}

fn oidc_invalid(message: &str) -> SimError {
    oidc_failure("OIDCToken.Invalid", message)
}

/// The checked parameters both calls share.
struct Request<'p> {
    params: &'p BTreeMap<String, String>,
}

impl<'p> Request<'p> {
    fn required(&self, name: &str) -> Result<&'p str, SimError> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SimError::missing(name))
    }

    fn role_arn(&self) -> Result<&'p str, SimError> {
        let arn = self.required("RoleArn")?;
        match super::identity::parse_arn(arn, "role") {
            Some(_) => Ok(arn),
            None => Err(invalid("RoleArn")),
        }
    }

    fn session_name(&self) -> Result<&'p str, SimError> {
        let name = self.required("RoleSessionName")?;
        let ok = (2..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".@-_".contains(&b));
        if ok {
            Ok(name)
        } else {
            Err(invalid("RoleSessionName"))
        }
    }

    /// `DurationSeconds`, at least 900, or the default 3600; the role's maximum is checked
    /// once the role is known ([`check_max`]).
    fn duration(&self) -> Result<Duration, SimError> {
        let Some(text) = self.params.get("DurationSeconds") else {
            return Ok(DEFAULT_SESSION);
        };
        match text.parse::<u64>() {
            Ok(secs) if Duration::from_secs(secs) >= MIN_DURATION => Ok(Duration::from_secs(secs)),
            _ => Err(duration_out_of_range()),
        }
    }

    fn external_id(&self) -> Result<Option<&'p str>, SimError> {
        let Some(id) = self.params.get("ExternalId") else {
            return Ok(None);
        };
        let ok = (2..=1224).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
        if ok {
            Ok(Some(id))
        } else {
            Err(invalid("ExternalId"))
        }
    }

    /// A `Policy` must be a JSON object of at most 2,048 bytes; its content is not enforced
    /// (the simulator has no RAM policies).
    fn check_policy(&self) -> Result<(), SimError> {
        let Some(policy) = self.params.get("Policy") else {
            return Ok(());
        };
        if policy.len() > 2048 {
            return Err(SimError::new(
                400,
                "InvalidParameter.PolicySize",
                "The size of Policy must be smaller than 2048 bytes.",
            ));
        }
        match serde_json::from_str::<serde_json::Value>(policy) {
            Ok(v) if v.is_object() => Ok(()),
            _ => Err(SimError::new(
                400,
                "InvalidParameter.PolicyGrammar",
                "The parameter Policy has not passed grammar check.",
            )),
        }
    }
}

fn duration_out_of_range() -> SimError {
    SimError::new(
        400,
        "InvalidParameter.DurationSeconds",
        "The Min/Max value of DurationSeconds is 15min/1hr.",
    )
}

fn check_max(duration: Duration, role: &RoleSpec) -> Result<(), SimError> {
    if duration > role.max_session_duration {
        return Err(duration_out_of_range());
    }
    Ok(())
}

fn role_not_found() -> SimError {
    SimError::new(404, "EntityNotExist.Role", "The specified Role not exists.")
}

/// The claims the simulator reads from an OIDC token.
struct Claims {
    issuer: String,
    subject: String,
    audience: Vec<String>,
}

/// Reads and checks a token's claims against `issuer` and `client_ids` at `now`, in this
/// order: the JWT's form, its header's algorithm, its expiry, its issuer, its audience.
fn check_token(
    token: &str,
    issuer: &str,
    client_ids: &[String],
    now: SystemTime,
) -> Result<Claims, SimError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(oidc_invalid(
            "The number of Jwt field should be divided into 3 parts with '.' .",
        ));
    }
    let decode = |part: &str| -> Result<serde_json::Value, SimError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| {
                oidc_invalid("Cannot decode base64 encoded response(format invalided).")
            })?;
        serde_json::from_slice(&bytes)
            .map_err(|_| oidc_invalid("The Jwt content is invalid that cannot be recognized."))
    };
    let header = decode(parts[0])?;
    if header["alg"] == "HS256" {
        return Err(oidc_invalid(
            "The algorithm HS256 that be specified in Jwt header is unknown.",
        ));
    }
    let claims = decode(parts[1])?;
    let (Some(iss), Some(exp)) = (claims["iss"].as_str(), claims["exp"].as_u64()) else {
        return Err(oidc_invalid(
            "The Jwt content is invalid that cannot be recognized.",
        ));
    };
    if UNIX_EPOCH + Duration::from_secs(exp) <= now {
        return Err(oidc_failure(
            "OIDCToken.Expired",
            "This JsonWebToken is expired.",
        ));
    }
    if iss != issuer {
        return Err(oidc_failure(
            "OIDCToken.IssuerNotMatch",
            "The issuer in the OIDC Token doesn't match the OIDC Provider registered.",
        ));
    }
    let audience: Vec<String> = match &claims["aud"] {
        serde_json::Value::String(a) => vec![a.clone()],
        serde_json::Value::Array(list) => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !audience.iter().any(|a| client_ids.contains(a)) {
        return Err(oidc_failure(
            "OIDCToken.AudienceNotMatch",
            "Invalid audience.",
        ));
    }
    Ok(Claims {
        issuer: iss.to_owned(),
        subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
        audience,
    })
}

/// An OIDC token as the simulator reads it: a JWT whose header says RS256, with these claims,
/// and a signature nobody checks. For tests of AssumeRoleWithOIDC and the OIDC credential
/// source.
pub fn unsigned_oidc_token(
    issuer: &str,
    audience: &str,
    subject: &str,
    expires: SystemTime,
) -> String {
    let encode = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = expires
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{}.{}.{}",
        encode(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "pwrotd-sim"})),
        encode(serde_json::json!({
            "iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": exp,
        })),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"not a signature"),
    )
}

/// The success reply of both calls.
fn reply(role: &RoleSpec, session: &str, credentials: &TemporaryCredentials) -> serde_json::Value {
    serde_json::json!({
        "RequestId": new_request_id(),
        "AssumedRoleUser": {
            "Arn": format!("{}/{session}", role.arn()),
            "AssumedRoleId": format!("{}:{session}", role.role_id()),
        },
        "Credentials": {
            "AccessKeyId": credentials.access_key_id,
            "AccessKeySecret": credentials.access_key_secret.expose_secret(),
            "SecurityToken": credentials.security_token.expose_secret(),
            "Expiration": credentials.expiration_text(),
        },
    })
}

impl Sim {
    /// Answers a request for Version 2015-04-01: an injected fault, or the action's reply.
    pub(super) fn handle_sts(&self, request: &auth::Request<'_>, action: &str) -> Outcome {
        let host = request.host.unwrap_or("pwrotd-sim");
        let outcome = match self.take_credential_fault(CredentialEndpoint::Sts) {
            Some(fault) => fault.sts_outcome(host),
            None => {
                let result = match action {
                    "AssumeRole" => self.assume_role(request),
                    "AssumeRoleWithOIDC" => self.assume_role_with_oidc(request),
                    _ => Err(SimError::new(
                        404,
                        "InvalidAction.NotFound",
                        "Specified api is not found, please check your url and method.",
                    )),
                };
                match result {
                    Ok(body) => Outcome::Reply {
                        status: 200,
                        body: body.to_string(),
                        code: "OK".into(),
                    },
                    Err(e) => e.reply_as(host, "Sts"),
                }
            }
        };
        self.count_credentials(action, &outcome);
        outcome
    }

    /// AssumeRole: a signed request from a RAM user or role whom the role trusts.
    fn assume_role(&self, request: &auth::Request<'_>) -> Result<serde_json::Value, SimError> {
        let verified = auth::verify(request, &|key_id, token| {
            self.identity()
                .authenticate(key_id, token, SystemTime::now())
        })?;
        self.check_nonce(&verified.nonce, verified.timestamp)?;
        if let Principal::Root { .. } = verified.principal {
            return Err(SimError::new(
                403,
                "NoPermission",
                "Roles may not be assumed by root accounts.",
            ));
        }
        let p = Request {
            params: &verified.params,
        };
        let (arn, session) = (p.role_arn()?, p.session_name()?);
        let (duration, external_id) = (p.duration()?, p.external_id()?);
        p.check_policy()?;
        let mut identity = self.identity();
        let role = identity.role(arn).cloned().ok_or_else(role_not_found)?;
        check_max(duration, &role)?;
        if !role.trusts(&verified.principal) {
            return Err(not_trusted());
        }
        if role.external_id.is_some() && role.external_id.as_deref() != external_id {
            return Err(not_trusted());
        }
        let principal = Principal::AssumedRole {
            uid: role.uid.clone(),
            role: role.name.clone(),
            session: session.to_owned(),
        };
        let credentials = identity.issue(principal, duration, "AssumeRole", SystemTime::now());
        Ok(reply(&role, session, &credentials))
    }

    /// AssumeRoleWithOIDC: unsigned; the token's claims must match a registered provider that
    /// the role trusts.
    fn assume_role_with_oidc(
        &self,
        request: &auth::Request<'_>,
    ) -> Result<serde_json::Value, SimError> {
        let (_, params) = auth::params(request);
        if let Some(timestamp) = params.get("Timestamp") {
            Sim::check_skew(auth::parse_timestamp(timestamp)?)?;
        }
        let p = Request { params: &params };
        let (arn, provider_arn) = (p.role_arn()?, p.required("OIDCProviderArn")?);
        let token = params
            .get("OIDCToken")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| oidc_invalid("The OIDCToken can not empty."))?;
        let (session, duration) = (p.session_name()?, p.duration()?);
        p.check_policy()?;
        let now = SystemTime::now();
        let mut identity = self.identity();
        let provider = identity
            .oidc_provider(provider_arn)
            .cloned()
            .ok_or_else(|| oidc_failure("NoPermission", "No such OIDC Provider registered."))?;
        let claims = check_token(token, &provider.issuer_url, &provider.client_ids, now)?;
        let role = identity.role(arn).cloned().ok_or_else(role_not_found)?;
        check_max(duration, &role)?;
        if !role
            .trusted_oidc_providers
            .iter()
            .any(|t| t == provider_arn)
        {
            return Err(oidc_failure("NoPermission", "There is no permission"));
        }
        let principal = Principal::AssumedRole {
            uid: role.uid.clone(),
            role: role.name.clone(),
            session: session.to_owned(),
        };
        let credentials = identity.issue(principal, duration, "AssumeRoleWithOIDC", now);
        let mut body = reply(&role, session, &credentials);
        body["OIDCTokenInfo"] = serde_json::json!({
            "Issuer": claims.issuer,
            "Subject": claims.subject,
            "ClientIds": claims.audience.join(","),
        });
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_in_order() {
        let now = SystemTime::now();
        let later = now + Duration::from_secs(600);
        let ids = vec!["sts.aliyuncs.com".to_owned()];
        let good = unsigned_oidc_token("https://issuer", "sts.aliyuncs.com", "system:sa", later);
        let claims = check_token(&good, "https://issuer", &ids, now).unwrap();
        assert_eq!(claims.subject, "system:sa");
        let code = |token: &str, issuer: &str| {
            check_token(token, issuer, &ids, now)
                .err()
                .map(|e| e.code)
                .unwrap_or_default()
        };
        assert_eq!(
            code(&good, "https://other"),
            "AuthenticationFail.OIDCToken.IssuerNotMatch"
        );
        let wrong_aud = unsigned_oidc_token("https://issuer", "someone", "s", later);
        assert_eq!(
            code(&wrong_aud, "https://issuer"),
            "AuthenticationFail.OIDCToken.AudienceNotMatch"
        );
        let expired = unsigned_oidc_token("https://issuer", "sts.aliyuncs.com", "s", now);
        assert_eq!(
            code(&expired, "https://issuer"),
            "AuthenticationFail.OIDCToken.Expired"
        );
        for bad in ["a.b", "!!!.!!!.!!!", "e30.e30.x"] {
            assert_eq!(
                code(bad, "https://issuer"),
                "AuthenticationFail.OIDCToken.Invalid"
            );
        }
    }
}
