//! A credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI`, or `uri`): `GET` answers
//! `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`, as
//! the official SDKs read it. The URI may hold a token in its query: errors name only its
//! scheme, host and path.

use url::Url;

use super::ecs::parse_credentials;
use super::fetch::{self, Issued};

/// `source = "uri"`.
pub(crate) struct UriSource {
    pub(crate) uri: Url,
}

impl UriSource {
    /// The URI without its query, for messages and `pwrotd check`.
    pub(crate) fn describe(&self) -> String {
        let mut shown = self.uri.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown.to_string()
    }

    pub(crate) async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, String> {
        let at = self.describe();
        let answer = fetch::send(http.get(self.uri.clone()))
            .await
            .map_err(|e| format!("the credentials URI {at} is unreachable: {e}"))?;
        if !answer.ok() {
            return Err(format!(
                "the credentials URI {at} answered HTTP {}",
                answer.status
            ));
        }
        parse_credentials(&answer.body).map_err(|e| format!("the credentials URI {at} {e}"))
    }
}
