//! Cloud failures, each carrying its class: transient, permanent or ambiguous (PRODUCT.md §1).
//!
//! The class decides retry and recovery, so callers match on [`CloudError::class`], never on
//! message text. No error here holds a password or a secret: API messages are scrubbed of the
//! secret values that were sent before they are stored.

use std::fmt;

/// What a failure means for the password that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Nothing was applied; retrying with backoff may succeed.
    Transient,
    /// Nothing was applied, and retrying cannot help.
    Permanent,
    /// The request may have been applied: the new password may be live.
    Ambiguous,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Transient => "transient",
            Class::Permanent => "permanent",
            Class::Ambiguous => "ambiguous",
        })
    }
}

/// An error reply in the documented shape `{"RequestId","HostId","Code","Message","Recommend"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    /// The HTTP status of the reply; not part of the body.
    #[serde(skip)]
    pub http_status: u16,
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub host_id: String,
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub recommend: String,
}

impl ApiError {
    /// The class of an error code, per PRODUCT.md §1. Codes the list does not name fall back on
    /// the HTTP status: 5xx is transient, anything else permanent.
    pub fn class(&self) -> Class {
        const TRANSIENT: &[&str] = &[
            "ServiceUnavailable",
            "InternalError",
            "LockTimeout",
            "ConcurrentTaskExceeded",
            "Database.ConnectError",
            "EngineMigration.ActionDisabled",
            "IncorrectDBInstanceState",
            "IncorrectDBClusterState",
        ];
        let code = self.code.as_str();
        if code.starts_with("Throttling") || TRANSIENT.contains(&code) {
            Class::Transient
        } else if code.starts_with("InvalidTimeStamp")
            || code.starts_with("InvalidAccessKeyId")
            || code == "SignatureDoesNotMatch"
            || code.ends_with(".NotFound")
            || code.ends_with(".Malformed")
            || code.starts_with("InvalidAccountPassword")
        {
            Class::Permanent
        } else if self.http_status >= 500 {
            Class::Transient
        } else {
            Class::Permanent
        }
    }

    /// A plain-language hint for codes whose cause is not the request itself.
    fn hint(&self) -> Option<&'static str> {
        if self.code.starts_with("InvalidTimeStamp") {
            Some("clock skew: the cloud rejected this host's clock; check NTP (time sync) here")
        } else if self.code == "SignatureDoesNotMatch" {
            Some("the AccessKey secret does not match the AccessKey id")
        } else if self.code.starts_with("InvalidAccessKeyId") {
            Some("the AccessKey id is unknown or disabled")
        } else {
            None
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(hint) = self.hint() {
            write!(f, "{hint}: ")?;
        }
        write!(f, "{} (HTTP {})", self.code, self.http_status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if !self.request_id.is_empty() {
            write!(f, " [RequestId {}]", self.request_id)?;
        }
        Ok(())
    }
}

/// What went wrong, without the class.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The API answered with an error body.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// No connection was made, so nothing was sent.
    #[error("could not connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    /// The request went out and no complete reply came back in time.
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection failed after the request was sent.
    #[error("the connection failed after the request was sent: {0}")]
    Interrupted(String),
    /// A reply came back but it is not a readable API reply.
    #[error("unreadable reply (HTTP {status}): {detail}")]
    MalformedReply { status: u16, detail: String },
    /// No usable AccessKey.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The request could not be built (bad endpoint, unsendable parameter).
    #[error("invalid request: {0}")]
    Request(String),
}

/// A failed call: what went wrong, its class, and how many attempts were made.
#[derive(Debug)]
pub struct CloudError {
    pub action: &'static str,
    pub attempts: u32,
    class: Class,
    kind: ErrorKind,
}

impl CloudError {
    pub fn new(action: &'static str, class: Class, kind: ErrorKind) -> CloudError {
        CloudError {
            action,
            attempts: 1,
            class,
            kind,
        }
    }

    pub fn class(&self) -> Class {
        self.class
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The API's error code, or a synthetic one (`Timeout`, `Network`, `MalformedReply`,
    /// `Credentials`, `InvalidRequest`) for failures the API did not name. This is the `code`
    /// label of `pwrotd_api_requests_total`.
    pub fn code(&self) -> &str {
        match &self.kind {
            ErrorKind::Api(e) => &e.code,
            ErrorKind::Timeout(_) => "Timeout",
            ErrorKind::Connect { .. } | ErrorKind::Interrupted(_) => "Network",
            ErrorKind::MalformedReply { .. } => "MalformedReply",
            ErrorKind::Credentials(_) => "Credentials",
            ErrorKind::Request(_) => "InvalidRequest",
        }
    }

    /// The API's request id, when the failure came with one.
    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Api(e) if !e.request_id.is_empty() => Some(&e.request_id),
            _ => None,
        }
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({}", self.action, self.class)?;
        if self.attempts > 1 {
            write!(f, ", {} attempts", self.attempts)?;
        }
        write!(f, "): {}", self.kind)?;
        if self.class == Class::Ambiguous {
            f.write_str("; the new password may have been applied")?;
        }
        Ok(())
    }
}

impl std::error::Error for CloudError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// Removes every occurrence of each secret, raw or percent-encoded, from text that came back
/// from the network. Some APIs echo the string they signed, which holds the password.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    const MAX: usize = 512;
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let encoded = super::sign::percent_encode(secret);
        let twice = super::sign::percent_encode(&encoded);
        for form in [secret, encoded.as_str(), twice.as_str()] {
            out = out.replace(form, "<redacted>");
        }
    }
    // A real signature-mismatch message ends with the server's string to sign; drop it whole.
    if let Some(at) = out.find("server string to sign is:") {
        out.truncate(at);
        out.push_str("server string to sign is: <redacted>");
    }
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str, status: u16) -> ApiError {
        ApiError {
            http_status: status,
            request_id: "R".into(),
            host_id: String::new(),
            code: code.into(),
            message: String::new(),
            recommend: String::new(),
        }
    }

    #[test]
    fn classifies_documented_codes() {
        for code in [
            "Throttling",
            "Throttling.User",
            "Throttling.Api",
            "ServiceUnavailable",
            "InternalError",
            "LockTimeout",
            "ConcurrentTaskExceeded",
            "Database.ConnectError",
            "EngineMigration.ActionDisabled",
            "IncorrectDBInstanceState",
        ] {
            assert_eq!(api(code, 400).class(), Class::Transient, "{code}");
        }
        for code in [
            "InvalidAccountPassword.Malformed",
            "InvalidAccountPassword.Format",
            "InvalidDBClusterId.NotFound",
            "InvalidAccountName.NotFound",
            "InvalidDBClusterId.Malformed",
            "IncorrectAccountPrivilegeType",
            "IncorrectAccountType",
            "InvalidAccessKeyId.NotFound",
            "SignatureDoesNotMatch",
            "InvalidTimeStamp.Expired",
            "Forbidden.RAM",
        ] {
            assert_eq!(api(code, 400).class(), Class::Permanent, "{code}");
        }
        assert_eq!(api("SomethingNew", 502).class(), Class::Transient);
        assert_eq!(
            api("InvalidAccountName.NotFound", 500).class(),
            Class::Permanent
        );
    }

    #[test]
    fn clock_skew_is_said_plainly() {
        let text = api("InvalidTimeStamp.Expired", 400).to_string();
        assert!(text.starts_with("clock skew"), "{text}");
    }

    #[test]
    fn scrub_removes_raw_and_encoded_secrets() {
        let secret = "Ab1!@#$ %";
        let encoded = super::super::sign::percent_encode(secret);
        let text = format!("bad {secret} and {} ok", encoded.as_str());
        let clean = scrub(&text, &[secret]);
        assert_eq!(clean, "bad <redacted> and <redacted> ok");
        let echoed = "Specified signature is not matched. server string to sign is:POST&%2F&Pw%3D";
        assert!(scrub(echoed, &[]).ends_with("server string to sign is: <redacted>"));
    }
}
