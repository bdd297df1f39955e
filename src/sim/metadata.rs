//! The ECS instance metadata service and credential URIs, on the simulator's own address.
//!
//! The metadata service, as the official SDKs use it (aliyun/credentials-go
//! `providers/ecs_ram_role.go`, aliyun/credentials-python `provider/ecs_ram_role.py`):
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds` (1 to 21600; the
//!   SDKs ask for 21600) answers a token, as text;
//! - `GET /latest/meta-data/ram/security-credentials/` answers the name of the instance's RAM
//!   role, as text;
//! - `GET /latest/meta-data/ram/security-credentials/<role>` answers `{"AccessKeyId",
//!   "AccessKeySecret", "SecurityToken", "Expiration", "LastUpdated", "Code": "Success"}`,
//!   both times in `YYYY-MM-DDThh:mm:ssZ`.
//!
//! Both GETs need a live token in `X-aliyun-ecs-metadata-token` (the security hardening mode,
//! IMDSv2) unless IMDSv1 is allowed ([`Sim::allow_imdsv1`]); a missing or dead token is 401,
//! no role attached or another role's name 404, a bad TTL 400. The SDKs only ask for 200, so
//! these statuses follow the usual IMDSv2 convention. The same credentials are served until
//! half their lifetime has passed, then new ones (the old ones stay valid until they expire),
//! as the real service renews them ahead of expiry.
//!
//! A credential URI (`ALIBABA_CLOUD_CREDENTIALS_URI`): `GET /_creds/<name>` answers
//! `{"Code": "Success", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}` —
//! the four fields credentials-go's `providers/uri.go` requires, and the `Code` that
//! credentials-python's `provider/uri.py` checks — fresh credentials for the role the name
//! stands for ([`Sim::add_credentials_uri`]); an unknown name is 404.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::identity::{Principal, TemporaryCredentials};
use super::{Outcome, Sim, SimError};

/// How long metadata-service credentials live unless [`Sim::set_credential_lifetime`] says
/// otherwise: six hours.
pub const METADATA_CREDENTIALS_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The longest metadata token TTL: 21600 seconds, what the SDKs ask for.
const MAX_TOKEN_TTL: u64 = 21600;

/// The session name of metadata-service credentials.
const ECS_SESSION: &str = "ecs-ram-role";

/// Where credentials come from: the endpoint a [`CredentialFault`] hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialEndpoint {
    /// AssumeRole and AssumeRoleWithOIDC.
    Sts,
    /// The ECS metadata service: any of its three requests.
    Metadata,
    /// A credential URI.
    Uri,
}

/// A fault the next request to a credential endpoint meets, nothing issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialFault {
    /// HTTP 500: STS's documented `InternalError` ("STS Server Internal Error happened."), a
    /// bare 500 from the metadata service or a URI.
    ServerError,
    /// STS's `Throttling.User` (400); 429 from the others.
    Throttle,
    /// A 200 reply that is not what was asked: an HTML page.
    Garbage,
    /// The connection is closed without a reply.
    Drop,
}

impl CredentialFault {
    /// Its reply from STS.
    pub(super) fn sts_outcome(self, host: &str) -> Outcome {
        match self {
            CredentialFault::ServerError => {
                SimError::new(500, "InternalError", "STS Server Internal Error happened.")
                    .reply_as(host, "Sts")
            }
            CredentialFault::Throttle => SimError::new(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
            .reply_as(host, "Sts"),
            other => other.plain_outcome(),
        }
    }

    /// Its reply from the metadata service or a credential URI.
    fn plain_outcome(self) -> Outcome {
        match self {
            CredentialFault::ServerError => text(500, "Internal Server Error"),
            CredentialFault::Throttle => text(429, "Too Many Requests"),
            CredentialFault::Garbage => Outcome::Reply {
                status: 200,
                body: "<html><body>502 Bad Gateway</body></html>".into(),
                code: "Garbage".into(),
            },
            CredentialFault::Drop => Outcome::Drop { code: "Dropped" },
        }
    }
}

fn text(status: u16, body: &str) -> Outcome {
    Outcome::Text {
        status,
        body: body.to_owned(),
    }
}

/// The metadata service's and the credential URIs' state.
#[derive(Default)]
pub(super) struct Endpoints {
    /// The ARN of the RAM role attached to the (one) simulated ECS instance.
    ecs_role: Option<String>,
    imdsv1: bool,
    /// Live metadata tokens and their expiry.
    tokens: HashMap<String, SystemTime>,
    /// The role credentials being served, with when they were issued.
    served: Option<(TemporaryCredentials, SystemTime)>,
    /// Credential URI name → role ARN.
    uris: BTreeMap<String, String>,
    faults: HashMap<CredentialEndpoint, VecDeque<CredentialFault>>,
}

/// A metadata request: the path after `/latest/`, its method, and the token header.
pub(super) struct MetadataRequest<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub ttl: Option<&'a str>,
}

impl Sim {
    /// Attaches the RAM role `arn` (which must be added with [`Sim::add_role`] for credentials
    /// to be issued) to the simulated ECS instance, or detaches it with `None`.
    pub fn set_ecs_role(&self, arn: Option<&str>) {
        let mut endpoints = self.endpoints();
        endpoints.ecs_role = arn.map(str::to_owned);
        endpoints.served = None;
    }

    /// Lets metadata requests without a token through (the normal mode, IMDSv1). Off by default:
    /// the security hardening mode.
    pub fn allow_imdsv1(&self, allow: bool) {
        self.endpoints().imdsv1 = allow;
    }

    /// Serves fresh credentials of the role `arn` at `GET /_creds/<name>`.
    pub fn add_credentials_uri(&self, name: &str, arn: &str) {
        self.endpoints()
            .uris
            .insert(name.to_owned(), arn.to_owned());
    }

    /// Makes the next requests to `endpoint` meet these faults, one each, in order.
    pub fn script_credential_faults(
        &self,
        endpoint: CredentialEndpoint,
        faults: impl IntoIterator<Item = CredentialFault>,
    ) {
        self.endpoints()
            .faults
            .entry(endpoint)
            .or_default()
            .extend(faults);
    }

    pub(super) fn take_credential_fault(
        &self,
        endpoint: CredentialEndpoint,
    ) -> Option<CredentialFault> {
        self.endpoints().faults.get_mut(&endpoint)?.pop_front()
    }

    /// Counts a credential request in [`super::Stats::credentials`].
    pub(super) fn count_credentials(&self, what: &str, outcome: &Outcome) {
        let key = format!("{what} {}", outcome.code());
        *self.lock().stats.credentials.entry(key).or_default() += 1;
    }

    /// New credentials of the role `arn` for `session`, in-process: what [`Sim::issue_credentials`]
    /// and the credential endpoints hand out. `None` if there is no such role.
    fn issue_for_role(
        &self,
        arn: &str,
        session: &str,
        lifetime: Duration,
        issued_by: &str,
    ) -> Option<TemporaryCredentials> {
        let mut identity = self.identity();
        let role = identity.role(arn)?.clone();
        let principal = Principal::AssumedRole {
            uid: role.uid,
            role: role.name,
            session: session.to_owned(),
        };
        Some(identity.issue(principal, lifetime, issued_by, SystemTime::now()))
    }

    /// Answers a request under `/latest/`.
    pub(super) fn handle_metadata(&self, request: &MetadataRequest<'_>) -> Outcome {
        let (what, outcome) = match self.take_credential_fault(CredentialEndpoint::Metadata) {
            Some(fault) => ("metadata", fault.plain_outcome()),
            None => self.metadata_reply(request),
        };
        self.count_credentials(what, &outcome);
        outcome
    }

    fn metadata_reply(&self, request: &MetadataRequest<'_>) -> (&'static str, Outcome) {
        const CREDENTIALS: &str = "meta-data/ram/security-credentials/";
        if request.path == "api/token" {
            return ("metadata.token", self.metadata_token(request));
        }
        let Some(role_name) = request.path.strip_prefix(CREDENTIALS) else {
            return ("metadata", text(404, "Not Found"));
        };
        let what = if role_name.is_empty() {
            "metadata.role_name"
        } else {
            "metadata.credentials"
        };
        if *request.method != http::Method::GET {
            return (what, text(405, "Method Not Allowed"));
        }
        if let Some(refused) = self.check_metadata_token(request.token) {
            return (what, refused);
        }
        let Some(arn) = self.endpoints().ecs_role.clone() else {
            return (what, text(404, "Not Found"));
        };
        let name = arn.rsplit('/').next().unwrap_or_default().to_owned();
        if role_name.is_empty() {
            return (what, text(200, &name));
        }
        if role_name != name {
            return (what, text(404, "Not Found"));
        }
        (what, self.role_credentials(&arn))
    }

    /// `PUT /latest/api/token`.
    fn metadata_token(&self, request: &MetadataRequest<'_>) -> Outcome {
        if *request.method != http::Method::PUT {
            return text(405, "Method Not Allowed");
        }
        let ttl = request.ttl.and_then(|t| t.trim().parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=MAX_TOKEN_TTL).contains(t)) else {
            return text(400, "Bad Request");
        };
        let token = crate::random::hex_token::<24>().unwrap_or_default();
        let now = SystemTime::now();
        let mut endpoints = self.endpoints();
        endpoints.tokens.retain(|_, expires| *expires > now);
        endpoints
            .tokens
            .insert(token.clone(), now + Duration::from_secs(ttl));
        text(200, &token)
    }

    /// The refusal of a request without a live token, unless IMDSv1 lets it through.
    fn check_metadata_token(&self, token: Option<&str>) -> Option<Outcome> {
        let endpoints = self.endpoints();
        match token {
            None if endpoints.imdsv1 => None,
            Some(t)
                if endpoints
                    .tokens
                    .get(t)
                    .is_some_and(|e| *e > SystemTime::now()) =>
            {
                None
            }
            _ => Some(text(401, "Unauthorized")),
        }
    }

    /// The instance role's credentials: the ones being served, or new ones once half their
    /// lifetime has passed.
    fn role_credentials(&self, arn: &str) -> Outcome {
        let now = SystemTime::now();
        let fresh = self.endpoints().served.clone().filter(|(c, issued)| {
            let life = c.expiration.duration_since(*issued).unwrap_or_default();
            c.expiration.duration_since(now).unwrap_or_default() > life / 2
        });
        let (credentials, issued) = match fresh {
            Some(served) => served,
            None => {
                let Some(c) = self.issue_for_role(
                    arn,
                    ECS_SESSION,
                    METADATA_CREDENTIALS_LIFETIME,
                    "metadata",
                ) else {
                    return text(404, "Not Found");
                };
                let issued = super::identity::whole_seconds(now);
                self.endpoints().served = Some((c.clone(), issued));
                (c, issued)
            }
        };
        Outcome::Reply {
            status: 200,
            body: serde_json::json!({
                "AccessKeyId": credentials.access_key_id,
                "AccessKeySecret": credentials.access_key_secret.expose_secret(),
                "SecurityToken": credentials.security_token.expose_secret(),
                "Expiration": credentials.expiration_text(),
                "LastUpdated": humantime::format_rfc3339_seconds(issued).to_string(),
                "Code": "Success",
            })
            .to_string(),
            code: "OK".into(),
        }
    }

    /// Answers `GET /_creds/<name>`.
    pub(super) fn handle_credentials_uri(&self, name: &str) -> Outcome {
        let outcome = match self.take_credential_fault(CredentialEndpoint::Uri) {
            Some(fault) => fault.plain_outcome(),
            None => self.uri_reply(name),
        };
        self.count_credentials("uri", &outcome);
        outcome
    }

    fn uri_reply(&self, name: &str) -> Outcome {
        let arn = self.endpoints().uris.get(name).cloned();
        let issued = arn.and_then(|arn| {
            self.issue_for_role(&arn, &format!("uri-{name}"), super::DEFAULT_SESSION, "uri")
        });
        let Some(credentials) = issued else {
            return Outcome::Reply {
                status: 404,
                body: serde_json::json!({"Code": "NotFound", "Message": "No such credentials."})
                    .to_string(),
                code: "NotFound".into(),
            };
        };
        Outcome::Reply {
            status: 200,
            body: serde_json::json!({
                "Code": "Success",
                "AccessKeyId": credentials.access_key_id,
                "AccessKeySecret": credentials.access_key_secret.expose_secret(),
                "SecurityToken": credentials.security_token.expose_secret(),
                "Expiration": credentials.expiration_text(),
            })
            .to_string(),
            code: "OK".into(),
        }
    }
}
