//! Cloud failures, judged on the two questions of docs/protocol.md#failure-rules, which must never be mixed up:
//! *may the request have been applied?* and *is it worth asking again?*
//!
//! Only a definite refusal proves that nothing was applied; every other failure, an unknown
//! code included, may have been. Callers match on [`CloudError::class`] and
//! [`CloudError::may_have_applied`], never on message text. No error here holds a password or
//! a secret: API codes and messages are scrubbed of the secret values that were sent before
//! they are stored, and a code of an unexpected shape is replaced by `Other`.

use std::fmt;

/// What one attempt's failure means for the request that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A definite refusal: nothing was applied, and asking again later may succeed
    /// (throttling, a resource busy in another task, a connection never made).
    Transient,
    /// A definite refusal: nothing was applied, and asking again cannot help (bad input,
    /// not found, a signature or credential error).
    Permanent,
    /// The request may have been applied: the new password may be live (a server error,
    /// an unknown code, a timeout or connection lost after sending, an unreadable reply).
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

/// The longest error code kept as it is; a longer one is `Other`.
const MAX_CODE: usize = 64;

/// The `code` shown for an error code that is not of the documented shape.
pub const OTHER_CODE: &str = "Other";

/// Whether `code` has the documented shape of an error code (`[A-Za-z0-9.]+`, bounded). Only
/// such codes reach a metric label, a log line, the audit log or `status`.
pub fn is_code_shaped(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
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

/// Codes that name a definite refusal, by exact name or by prefix or suffix (docs/protocol.md#failure-rules).
fn refused(code: &str) -> Option<Class> {
    const TRANSIENT_EXACT: &[&str] = &["ConcurrentTaskExceeded", "EngineMigration.ActionDisabled"];
    const PERMANENT_EXACT: &[&str] = &[
        "SignatureDoesNotMatch",
        "SignatureNonceUsed",
        "IncompleteSignature",
    ];
    const PERMANENT_PREFIX: &[&str] = &[
        "InvalidAccessKeyId.",
        "InvalidSecurityToken.",
        "InvalidTimeStamp.",
        "InvalidAccountPassword.",
        "Missing",
    ];
    const PERMANENT_SUFFIX: &[&str] = &[".Malformed", ".NotFound"];
    let incorrect = |suffix: &str| {
        code.strip_prefix("Incorrect")
            .is_some_and(|rest| rest.len() > suffix.len() && rest.ends_with(suffix))
    };
    if code.starts_with("Throttling") || TRANSIENT_EXACT.contains(&code) || incorrect("State") {
        Some(Class::Transient)
    } else if PERMANENT_EXACT.contains(&code)
        || PERMANENT_PREFIX.iter().any(|p| code.starts_with(p))
        || PERMANENT_SUFFIX.iter().any(|s| code.ends_with(s))
        || incorrect("Type")
    {
        Some(Class::Permanent)
    } else {
        None
    }
}

impl ApiError {
    /// What this reply says about the request, per docs/protocol.md#failure-rules: a definite refusal is
    /// transient or permanent; anything else, an unknown code or any 5xx included, may have
    /// been applied.
    pub fn class(&self) -> Class {
        match refused(&self.code) {
            // A 5xx is never a refusal, whatever its code says.
            Some(class) if self.http_status < 500 => class,
            _ => Class::Ambiguous,
        }
    }

    /// Whether asking again, with the same password, is worth it: refusals that pass
    /// (throttling, a busy resource) and server-side failures (5xx, `InternalError`,
    /// `ServiceUnavailable`, `LockTimeout`, `Database.ConnectError`).
    pub fn retryable(&self) -> bool {
        const SERVER_SIDE: &[&str] = &[
            "InternalError",
            "ServiceUnavailable",
            "LockTimeout",
            "Database.ConnectError",
        ];
        self.http_status >= 500
            || SERVER_SIDE.contains(&self.code.as_str())
            || self.class() == Class::Transient
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
    /// Not sent: this replica may not start an API call (cluster mode's lease).
    #[error("not sent: {0}")]
    NotLeader(String),
    /// The request could not be built (bad endpoint, unsendable parameter).
    #[error("invalid request: {0}")]
    Request(String),
}

/// A failed call: what went wrong, its class, and how many attempts were made.
#[derive(Debug)]
pub struct CloudError {
    pub action: &'static str,
    pub attempts: u32,
    /// The class of the last attempt.
    class: Class,
    /// Whether the last attempt is worth repeating.
    retry: bool,
    /// Whether any attempt of this call may have been applied.
    maybe_applied: bool,
    kind: ErrorKind,
}

impl CloudError {
    /// One attempt's failure. An API error reply brings its own judgement; other kinds are
    /// worth repeating exactly when nothing was applied and the class is transient.
    pub fn new(action: &'static str, class: Class, kind: ErrorKind) -> CloudError {
        let retry = match &kind {
            ErrorKind::Api(e) => e.retryable(),
            _ => class == Class::Transient,
        };
        CloudError {
            action,
            attempts: 1,
            class,
            retry,
            maybe_applied: class == Class::Ambiguous,
            kind,
        }
    }

    /// The class of the last attempt. For what the whole call may have done, see
    /// [`CloudError::may_have_applied`].
    pub fn class(&self) -> Class {
        self.class
    }

    /// Whether the last attempt is worth repeating, with the same parameters.
    pub fn retryable(&self) -> bool {
        self.retry
    }

    /// Whether any attempt of this call may have been applied (docs/protocol.md#failure-rules): a call that
    /// met a server error and was then throttled may still have set its password.
    pub fn may_have_applied(&self) -> bool {
        self.maybe_applied
    }

    /// Records that an earlier attempt of the same call may have been applied.
    pub(crate) fn after(mut self, earlier_maybe_applied: bool, attempts: u32) -> CloudError {
        self.maybe_applied |= earlier_maybe_applied;
        self.attempts = attempts;
        self
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
            ErrorKind::NotLeader(_) => "NotLeader",
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
        if self.maybe_applied {
            f.write_str("; the change may have been applied")?;
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

/// The code of an error reply as pwrotd keeps it: the API's own code when it has the
/// documented shape and holds none of the secrets sent, else [`OTHER_CODE`].
pub(crate) fn clean_code(code: &str, secrets: &[&str]) -> String {
    let leaks = secrets.iter().any(|s| !s.is_empty() && code.contains(s));
    if is_code_shaped(code) && !leaks {
        code.to_owned()
    } else {
        OTHER_CODE.to_owned()
    }
}

/// A request id as pwrotd keeps it: letters, digits and dashes, bounded, holding no secret;
/// anything else is dropped.
pub(crate) fn clean_request_id(id: &str, secrets: &[&str]) -> String {
    let shaped = id.len() <= MAX_CODE && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let leaks = secrets.iter().any(|s| !s.is_empty() && id.contains(s));
    if shaped && !leaks {
        id.to_owned()
    } else {
        String::new()
    }
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
    fn only_definite_refusals_prove_nothing_was_applied() {
        for code in [
            "Throttling",
            "Throttling.User",
            "Throttling.Api",
            "ConcurrentTaskExceeded",
            "EngineMigration.ActionDisabled",
            "IncorrectDBInstanceState",
            "IncorrectDBClusterState",
        ] {
            assert_eq!(api(code, 400).class(), Class::Transient, "{code}");
            assert!(api(code, 400).retryable(), "{code}");
        }
        for code in [
            "InvalidAccountPassword.Malformed",
            "InvalidAccountPassword.Format",
            "InvalidDBClusterId.NotFound",
            "InvalidDBInstanceName.NotFound",
            "InvalidAccountName.NotFound",
            "InvalidAccountName.Malformed",
            "IncorrectAccountPrivilegeType",
            "IncorrectAccountType",
            "InvalidAccessKeyId.NotFound",
            "InvalidSecurityToken.Expired",
            "SignatureDoesNotMatch",
            "SignatureNonceUsed",
            "IncompleteSignature",
            "MissingAccountName",
            "InvalidTimeStamp.Expired",
        ] {
            assert_eq!(api(code, 400).class(), Class::Permanent, "{code}");
            assert!(!api(code, 400).retryable(), "{code}");
        }
        // Worth asking again, but may have been applied.
        for (code, status) in [
            ("InternalError", 500),
            ("ServiceUnavailable", 503),
            ("LockTimeout", 400),
            ("Database.ConnectError", 400),
            ("SomethingNew", 502),
            // A 5xx is never a refusal, whatever its code says.
            ("InvalidAccountName.NotFound", 500),
            ("Throttling.User", 503),
        ] {
            assert_eq!(api(code, status).class(), Class::Ambiguous, "{code}");
            assert!(api(code, status).retryable(), "{code}");
        }
        // Unknown: may have been applied, and not retried blindly.
        for code in [
            "Account.UpdateError",
            "Forbidden.RAM",
            "IdempotentParameterMismatch",
            "SomethingNew",
            "Incorrect",
            "IncorrectState",
            "Other",
        ] {
            assert_eq!(api(code, 400).class(), Class::Ambiguous, "{code}");
            assert!(!api(code, 400).retryable(), "{code}");
        }
    }

    #[test]
    fn codes_of_another_shape_become_other() {
        assert_eq!(clean_code("Throttling.User", &[]), "Throttling.User");
        assert_eq!(clean_code("DB Operation Failed:x", &[]), OTHER_CODE);
        assert_eq!(clean_code("", &[]), OTHER_CODE);
        assert_eq!(clean_code(&"A".repeat(65), &[]), OTHER_CODE);
        assert_eq!(clean_code("Bad.Pw1Pw1Pw1", &["Pw1Pw1Pw1"]), OTHER_CODE);
        assert_eq!(clean_request_id("2FED790E-FB61", &[]), "2FED790E-FB61");
        assert_eq!(clean_request_id("a b", &[]), "");
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
