//! OIDC / RRSA: the OIDC token from its file (read again for each refresh: ACK rotates it),
//! traded for the role's credentials with STS `AssumeRoleWithOIDC`.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::CredentialError;
use super::fetch::Issued;
use super::static_keys::read_secret_file;
use super::sts::OidcRequest;

/// `source = "oidc"`, the chain's OIDC environment variables, or a CLI profile's OIDC mode.
pub(crate) struct Oidc {
    pub(crate) endpoint: Url,
    pub(crate) role_arn: String,
    pub(crate) provider_arn: String,
    pub(crate) token_file: PathBuf,
    pub(crate) session_name: String,
    pub(crate) duration: Duration,
}

impl Oidc {
    pub(crate) fn describe(&self) -> String {
        format!(
            "role {} through {}, token file {}",
            self.role_arn,
            self.provider_arn,
            self.token_file.display()
        )
    }

    pub(crate) async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, CredentialError> {
        let fail = |message: String| CredentialError::source("oidc", message);
        let token = read_secret_file(&self.token_file).map_err(|e| {
            let why = match e {
                CredentialError::Unreadable { reason, .. } => format!("cannot read: {reason}"),
                CredentialError::Empty { .. } => "is empty".to_owned(),
                other => other.to_string(),
            };
            fail(format!("token file {}: {why}", self.token_file.display()))
        })?;
        OidcRequest {
            endpoint: &self.endpoint,
            role_arn: &self.role_arn,
            provider_arn: &self.provider_arn,
            token: &token,
            session_name: &self.session_name,
            duration: self.duration,
        }
        .call(http)
        .await
        .map_err(fail)
    }
}
