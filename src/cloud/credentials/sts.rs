//! STS (Version `2015-04-01`): `AssumeRole`, V1-signed with the credentials of the source
//! below it (with their `SecurityToken` when they are temporary), and `AssumeRoleWithOIDC`,
//! unsigned. Both are RPC calls with their parameters in a form body, as the OpenAPI client
//! sends its own.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::Credentials;
use super::fetch::{self, Issued, Wire};
use crate::cloud::error::{clean_code, scrub};
use crate::cloud::sign;
use crate::random;

/// The STS API version.
pub(crate) const VERSION: &str = "2015-04-01";

/// `assume_role` (or a CLI profile's RamRoleArn modes): the role and how to ask for it.
pub(crate) struct AssumeRole {
    pub(crate) endpoint: Url,
    pub(crate) role_arn: String,
    pub(crate) session_name: String,
    pub(crate) external_id: Option<String>,
    pub(crate) duration: Duration,
}

impl AssumeRole {
    /// Assumes the role with `base`'s credentials.
    pub(crate) async fn call(
        &self,
        http: &reqwest::Client,
        base: &Credentials,
    ) -> Result<Issued, String> {
        let nonce = random::hex_token::<16>().map_err(|e| format!("random source failed: {e}"))?;
        let timestamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let duration = self.duration.as_secs().to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("Action", "AssumeRole"),
            ("Version", VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", base.access_key_id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce.as_str()),
            ("Timestamp", timestamp.as_str()),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(external_id) = &self.external_id {
            params.push(("ExternalId", external_id));
        }
        if let Some(token) = base.token() {
            params.push(("SecurityToken", token));
        }
        let signature = sign::v1_signature(base.secret(), "POST", params.iter().copied());
        params.push(("Signature", &signature));
        let body = sign::canonical_query(params.iter().copied());
        let secrets: Vec<&str> = [Some(base.secret()), base.token()]
            .into_iter()
            .flatten()
            .collect();
        post(
            http,
            &self.endpoint,
            "AssumeRole",
            body.as_bytes(),
            &secrets,
        )
        .await
    }
}

/// `AssumeRoleWithOIDC`: the OIDC token (read from its file by the caller) for the role.
pub(crate) struct OidcRequest<'a> {
    pub(crate) endpoint: &'a Url,
    pub(crate) role_arn: &'a str,
    pub(crate) provider_arn: &'a str,
    pub(crate) token: &'a SecretString,
    pub(crate) session_name: &'a str,
    pub(crate) duration: Duration,
}

impl OidcRequest<'_> {
    pub(crate) async fn call(&self, http: &reqwest::Client) -> Result<Issued, String> {
        let nonce = random::hex_token::<16>().map_err(|e| format!("random source failed: {e}"))?;
        let timestamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let duration = self.duration.as_secs().to_string();
        let token = self.token.expose_secret();
        let params = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", VERSION),
            ("Format", "JSON"),
            ("SignatureNonce", nonce.as_str()),
            ("Timestamp", timestamp.as_str()),
            ("RoleArn", self.role_arn),
            ("OIDCProviderArn", self.provider_arn),
            ("OIDCToken", token),
            ("RoleSessionName", self.session_name),
            ("DurationSeconds", duration.as_str()),
        ];
        let body = sign::canonical_query(params);
        post(
            http,
            self.endpoint,
            "AssumeRoleWithOIDC",
            body.as_bytes(),
            &[token],
        )
        .await
    }
}

/// Posts one STS request and reads its credentials.
async fn post(
    http: &reqwest::Client,
    endpoint: &Url,
    action: &str,
    body: &[u8],
    secrets: &[&str],
) -> Result<Issued, String> {
    let request = http
        .post(endpoint.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.to_vec());
    let answer = fetch::send(request)
        .await
        .map_err(|e| format!("STS {action} at {endpoint}: {}", scrub(&e, secrets)))?;
    parse_reply(action, answer.status, &answer.body, secrets)
}

/// Reads an STS reply: the credentials of a 2xx, else the refusal's code and message.
pub(crate) fn parse_reply(
    action: &str,
    status: u16,
    body: &[u8],
    secrets: &[&str],
) -> Result<Issued, String> {
    if (200..300).contains(&status) {
        #[derive(Deserialize)]
        struct Success {
            #[serde(rename = "Credentials")]
            credentials: Option<Wire>,
        }
        return match serde_json::from_slice::<Success>(body) {
            Ok(Success {
                credentials: Some(wire),
            }) => wire
                .issued()
                .map_err(|e| format!("STS {action} answered without credentials: {e}")),
            _ => Err(format!(
                "STS {action} answered HTTP {status} without credentials"
            )),
        };
    }
    #[derive(Deserialize)]
    struct Refusal {
        #[serde(rename = "Code", default)]
        code: String,
        #[serde(rename = "Message", default)]
        message: String,
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(r) if !r.code.is_empty() => {
            let message: String = scrub(&r.message, secrets).chars().take(200).collect();
            Err(format!(
                "STS {action} refused: {} ({message})",
                clean_code(&r.code, secrets)
            ))
        }
        _ => Err(format!(
            "STS {action} answered HTTP {status}, not an STS reply: {}",
            fetch::snippet(&scrub(&String::from_utf8_lossy(body), secrets).into_bytes())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_replies() {
        let ok = br#"{"RequestId":"R","AssumedRoleUser":{"Arn":"acs:ram::1:role/x/s","AssumedRoleId":"1:s"},
            "Credentials":{"AccessKeyId":"STS.abc","AccessKeySecret":"sec","SecurityToken":"tok","Expiration":"2030-01-01T00:00:00Z"}}"#;
        let issued = parse_reply("AssumeRole", 200, ok, &[]).unwrap();
        assert_eq!(issued.credentials.access_key_id, "STS.abc");
        assert_eq!(issued.credentials.token(), Some("tok"));
        let refused = parse_reply(
            "AssumeRole",
            403,
            br#"{"RequestId":"R","Code":"NoPermission","Message":"No permission perform sts:AssumeRole on this Role."}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            refused.starts_with("STS AssumeRole refused: NoPermission ("),
            "{refused}"
        );
        let missing = parse_reply(
            "AssumeRole",
            404,
            br#"{"Code":"EntityNotExist.Role","Message":"The specified Role not exists."}"#,
            &[],
        )
        .unwrap_err();
        assert!(missing.contains("EntityNotExist.Role"), "{missing}");
        let garbage =
            parse_reply("AssumeRoleWithOIDC", 502, b"<html>tok</html>", &["tok"]).unwrap_err();
        assert!(
            garbage.contains("not an STS reply") && !garbage.contains("tok<"),
            "{garbage}"
        );
        let partial = parse_reply(
            "AssumeRole",
            200,
            br#"{"Credentials":{"AccessKeyId":"STS.x","AccessKeySecret":"sec"}}"#,
            &[],
        )
        .unwrap_err();
        assert!(
            partial.contains("no SecurityToken") && !partial.contains("sec"),
            "{partial}"
        );
    }
}
