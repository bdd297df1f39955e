//! The HTTP plumbing of the remote sources (the metadata service, STS, credential URIs): one
//! client, bounded replies, errors that never carry a URL (a credentials URI may hold a token
//! in its query) nor a reply's secret.

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Credentials;

/// The largest reply read from a credential endpoint.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// One request to a credential endpoint, reply included.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client the remote sources share: no redirects, no proxy for plain http (the metadata
/// service is link-local), `HTTPS_PROXY` for https as the OpenAPI client does.
pub(super) fn http_client() -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().no_proxy();
    if let Some(proxy) = crate::cloud::client::https_proxy_from_env()? {
        builder = builder.proxy(proxy);
    }
    builder
        .user_agent(concat!("pwrotd/", env!("CARGO_PKG_VERSION")))
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A complete reply: its status and body (wiped when dropped: it may hold a secret).
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Zeroizing<Vec<u8>>,
}

impl Answer {
    pub(super) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends `request` and reads the whole reply; the error says what failed, without the URL.
pub(super) async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status().as_u16();
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(format!("the reply exceeds {MAX_REPLY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

/// A transport error with its causes, without the URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Temporary credentials as a source hands them out, with when they expire.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub(crate) credentials: Credentials,
    pub(crate) expiration: SystemTime,
}

/// The credential fields of the metadata service's, a credentials URI's and STS's replies.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Wire {
    pub(super) access_key_id: Option<String>,
    pub(super) access_key_secret: Option<String>,
    pub(super) security_token: Option<String>,
    pub(super) expiration: Option<String>,
}

impl Wire {
    /// The credentials, when all four fields are there and `Expiration` is a UTC timestamp.
    pub(super) fn issued(self) -> Result<Issued, String> {
        let missing = |field: &str| format!("the reply has no {field}");
        let id = self
            .access_key_id
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing("AccessKeyId"))?;
        let secret = self
            .access_key_secret
            .ok_or_else(|| missing("AccessKeySecret"))?;
        let token = self
            .security_token
            .ok_or_else(|| missing("SecurityToken"))?;
        let expiration = self.expiration.ok_or_else(|| missing("Expiration"))?;
        let expiration = parse_expiration(&expiration)
            .ok_or_else(|| format!("the reply's Expiration {expiration:?} is not a UTC time"))?;
        Ok(Issued {
            credentials: Credentials {
                access_key_id: id,
                access_key_secret: SecretString::from(secret),
                security_token: Some(SecretString::from(token)),
            },
            expiration,
        })
    }
}

/// `2006-01-02T15:04:05Z`, as the metadata service and STS write it.
pub(super) fn parse_expiration(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok()
}

/// The start of a body, printable, for an error message about a reply that is not what was
/// expected. Only for replies that are not credentials: the caller checks.
pub(super) fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "an empty body".into();
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .take(60)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{} bytes starting {text:?}", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_utc_times() {
        let t = parse_expiration("2026-11-30T06:00:00Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-11-30T06:00:00Z"
        );
        assert!(parse_expiration("tomorrow").is_none());
    }
}
