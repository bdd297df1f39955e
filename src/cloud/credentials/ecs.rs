//! The ECS instance's RAM role, from the metadata service, over IMDSv2 as the official SDKs
//! ask for it: `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds`, then
//! `GET /latest/meta-data/ram/security-credentials/` (the role, when not configured) and
//! `GET .../<role>` with `X-aliyun-ecs-metadata-token`. Without a token (IMDSv1) only when
//! `imdsv1_fallback` allows it.

use serde::Deserialize;
use url::Url;

use super::fetch::{self, Issued, Wire};

const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
/// The session token's life, in seconds: what the SDKs ask for.
const TOKEN_TTL: &str = "21600";

/// `source = "ecs_ram_role"`.
pub(crate) struct EcsRamRole {
    pub(crate) endpoint: Url,
    /// `None`: asked of the metadata service each time.
    pub(crate) role_name: Option<String>,
    pub(crate) imdsv1_fallback: bool,
}

impl EcsRamRole {
    /// Where it asks, for `pwrotd check`.
    pub(crate) fn describe(&self) -> String {
        let role = match &self.role_name {
            Some(r) => format!("role {r}"),
            None => "role asked of it".to_owned(),
        };
        let v1 = if self.imdsv1_fallback {
            ", IMDSv1 fallback"
        } else {
            ""
        };
        format!(
            "metadata service {}, {role}{v1}",
            self.endpoint.as_str().trim_end_matches('/')
        )
    }

    fn at(&self) -> String {
        format!(
            "the metadata service at {}",
            self.endpoint.as_str().trim_end_matches('/')
        )
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        self.endpoint
            .join(path)
            .map_err(|e| format!("{}: bad path {path:?}: {e}", self.at()))
    }

    /// Fetches the role's credentials.
    pub(crate) async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, String> {
        let token = match self.token(http).await {
            Ok(token) => Some(token),
            Err(_) if self.imdsv1_fallback => None,
            Err(e) => return Err(e),
        };
        let role = match &self.role_name {
            Some(role) => role.clone(),
            None => {
                let answer = self.get(http, CREDENTIALS_PATH, token.as_deref()).await?;
                let role = String::from_utf8_lossy(&answer).trim().to_owned();
                if role.is_empty() || !role.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!(
                        "{} answered no RAM role name: is a role attached to the instance?",
                        self.at()
                    ));
                }
                role
            }
        };
        let path = format!("{CREDENTIALS_PATH}{role}");
        let body = self.get(http, &path, token.as_deref()).await?;
        parse_credentials(&body).map_err(|e| format!("{} {e}", self.at()))
    }

    /// The session token of IMDSv2.
    async fn token(&self, http: &reqwest::Client) -> Result<String, String> {
        let request = http
            .put(self.url(TOKEN_PATH)?)
            .header(TTL_HEADER, TOKEN_TTL);
        let answer = fetch::send(request)
            .await
            .map_err(|e| format!("{} is unreachable: {e}", self.at()))?;
        let token = String::from_utf8_lossy(&answer.body).trim().to_owned();
        if !answer.ok() || token.is_empty() {
            return Err(format!(
                "{} answered HTTP {} to the session token request ({TOKEN_PATH}); set \
                 imdsv1_fallback = true only if the instance does not support IMDSv2",
                self.at(),
                answer.status
            ));
        }
        Ok(token)
    }

    async fn get(
        &self,
        http: &reqwest::Client,
        path: &str,
        token: Option<&str>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let mut request = http.get(self.url(path)?);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let answer = fetch::send(request)
            .await
            .map_err(|e| format!("{} is unreachable: {e}", self.at()))?;
        if !answer.ok() {
            return Err(format!(
                "{} answered HTTP {} to GET {}",
                self.at(),
                answer.status,
                path
            ));
        }
        Ok(answer.body)
    }
}

/// The credentials reply: `Code` must be `Success`, and the four fields there.
pub(crate) fn parse_credentials(body: &[u8]) -> Result<Issued, String> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Code")]
        code: Option<String>,
        #[serde(flatten)]
        wire: Wire,
    }
    let reply: Reply = serde_json::from_slice(body)
        .map_err(|_| "answered garbage (not the JSON credentials reply)".to_owned())?;
    match reply.code.as_deref() {
        Some("Success") => {}
        Some(code) if crate::cloud::error::is_code_shaped(code) => {
            return Err(format!("answered Code {code:?}, not \"Success\""));
        }
        _ => return Err("answered without Code \"Success\"".to_owned()),
    }
    reply
        .wire
        .issued()
        .map_err(|e| format!("answered garbage: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_replies() {
        let ok = br#"{"AccessKeyId":"STS.a","AccessKeySecret":"s3cr3t","SecurityToken":"t0k",
            "Expiration":"2030-01-01T00:00:00Z","LastUpdated":"2029-12-31T18:00:00Z","Code":"Success"}"#;
        let issued = parse_credentials(ok).unwrap();
        assert_eq!(issued.credentials.access_key_id, "STS.a");
        let failed = parse_credentials(br#"{"Code":"Failed"}"#).unwrap_err();
        assert!(failed.contains("\"Failed\""), "{failed}");
        let garbage = parse_credentials(b"<html>s3cr3t</html>").unwrap_err();
        assert!(
            garbage.contains("garbage") && !garbage.contains("s3cr3t"),
            "{garbage}"
        );
        let partial = parse_credentials(
            br#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s3cr3t","SecurityToken":"t0k"}"#,
        )
        .unwrap_err();
        assert!(
            partial.contains("Expiration") && !partial.contains("s3cr3t"),
            "{partial}"
        );
    }
}
