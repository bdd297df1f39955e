//! Who may call the simulated cloud: cloud accounts (a 16-digit uid each), the AccessKeys of
//! their root and RAM users, RAM roles with a trust policy, OIDC identity providers, and the
//! temporary credentials that STS, the ECS metadata service and credential URIs hand out.
//!
//! Every request is authenticated to a [`Principal`], who acts in one cloud account: a cluster
//! or instance of another account is, to it, a resource that does not exist.
//!
//! Temporary credentials follow the common error codes of the RPC gateway (the table every
//! Alibaba Cloud product's error-code page repeats, e.g. the FPGA-as-a-Service API reference,
//! and the STS troubleshooting page "STS FAQ / common errors" for `MissingSecurityToken`):
//! - `MissingSecurityToken` (400, "SecurityToken is mandatory for this action."): an STS
//!   AccessKey without its token;
//! - `InvalidSecurityToken.MismatchWithAccessKey` (400, "Specified SecurityToken mismatch with
//!   the AccessKey."): a token that is not the one issued with that AccessKey;
//! - `InvalidSecurityToken.Expired` (400, "Specified SecurityToken is expired."): past the
//!   `Expiration` STS announced. Some product pages give it 403; the code is what clients act
//!   on;
//! - `InvalidAccessKeyId.NotFound` (404, "Specified access key is not found.") and
//!   `InvalidAccessKeyId.Inactive` (400, "Specified access key is disabled.").
//!
//! A long-term AccessKey sent with a `SecurityToken` is accepted and the token ignored: the
//! documents say nothing of that case, and the simulator stays lenient there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::TryRng;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::SimError;
use crate::random::OsRandom;

/// The cloud account of the AccessKey given to [`super::Sim::new`], and the owner of every
/// cluster and instance unless a test says otherwise.
pub const PRIMARY_UID: &str = "1234567890123456";

/// The RAM user name of the AccessKey given to [`super::Sim::new`].
pub const PRIMARY_USER: &str = "pwrotd-sim";

/// How long STS credentials live when the request names no `DurationSeconds`: 3600 seconds,
/// the documented default of AssumeRole and AssumeRoleWithOIDC.
pub const DEFAULT_SESSION: Duration = Duration::from_secs(3600);

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    /// The Alibaba Cloud account itself: an AccessKey of the root account.
    Root { uid: String },
    /// A RAM user of the account.
    User { uid: String, name: String },
    /// A session of an assumed RAM role: STS credentials.
    AssumedRole {
        uid: String,
        role: String,
        session: String,
    },
}

impl Principal {
    /// The cloud account it acts in.
    pub fn uid(&self) -> &str {
        match self {
            Principal::Root { uid }
            | Principal::User { uid, .. }
            | Principal::AssumedRole { uid, .. } => uid,
        }
    }

    /// How a trust policy names it: `acs:ram::<uid>:root`, `acs:ram::<uid>:user/<name>`, or
    /// for a role session the role's ARN, `acs:ram::<uid>:role/<role>`.
    pub fn arn(&self) -> String {
        match self {
            Principal::Root { uid } => format!("acs:ram::{uid}:root"),
            Principal::User { uid, name } => format!("acs:ram::{uid}:user/{name}"),
            Principal::AssumedRole { uid, role, .. } => role_arn(uid, role),
        }
    }
}

/// `acs:ram::<uid>:role/<name>`.
pub fn role_arn(uid: &str, name: &str) -> String {
    format!("acs:ram::{uid}:role/{name}")
}

/// Splits `acs:ram::<uid>:<kind>/<name>` into uid and name, if it has that shape with a 16-digit
/// uid and a name of letters, digits and `.-_@`. The same shape serves roles
/// (`kind` = `role`) and OIDC providers (`oidc-provider`).
pub fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (uid, rest) = rest.split_once(':')?;
    let name = rest.strip_prefix(kind)?.strip_prefix('/')?;
    let uid_ok = uid.len() == 16 && uid.bytes().all(|b| b.is_ascii_digit());
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    (uid_ok && name_ok).then_some((uid, name))
}

/// A RAM role and its trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    pub uid: String,
    pub name: String,
    /// Cloud accounts whose RAM users and roles may assume it (`"RAM":
    /// ["acs:ram::<uid>:root"]` in a trust policy).
    pub trusted_accounts: Vec<String>,
    /// Single principals that may assume it, by [`Principal::arn`].
    pub trusted_principals: Vec<String>,
    /// OIDC providers, by ARN, whose tokens may assume it with AssumeRoleWithOIDC (`"Federated"`).
    pub trusted_oidc_providers: Vec<String>,
    /// The `sts:ExternalId` condition: AssumeRole must name exactly this ExternalId.
    pub external_id: Option<String>,
    /// The role's `MaxSessionDuration`: the largest DurationSeconds (3600 unless set, up to
    /// 43200 on the real service).
    pub max_session_duration: Duration,
}

impl RoleSpec {
    /// A role of account `uid` that trusts nobody yet.
    pub fn new(uid: impl Into<String>, name: impl Into<String>) -> RoleSpec {
        RoleSpec {
            uid: uid.into(),
            name: name.into(),
            trusted_accounts: Vec::new(),
            trusted_principals: Vec::new(),
            trusted_oidc_providers: Vec::new(),
            external_id: None,
            max_session_duration: DEFAULT_SESSION,
        }
    }

    /// The role named by `arn` (`acs:ram::<uid>:role/<name>`), or why that is not a role ARN.
    pub fn from_arn(arn: &str) -> Result<RoleSpec, String> {
        let (uid, name) =
            parse_arn(arn, "role").ok_or_else(|| format!("{arn:?} is not a RAM role ARN"))?;
        Ok(RoleSpec::new(uid, name))
    }

    pub fn arn(&self) -> String {
        role_arn(&self.uid, &self.name)
    }

    /// Lets the RAM users and roles of account `uid` assume it.
    pub fn trust_account(mut self, uid: impl Into<String>) -> RoleSpec {
        self.trusted_accounts.push(uid.into());
        self
    }

    /// Lets one principal assume it, by ARN (`acs:ram::<uid>:user/<name>` or a role's ARN).
    pub fn trust_principal(mut self, arn: impl Into<String>) -> RoleSpec {
        self.trusted_principals.push(arn.into());
        self
    }

    /// Lets tokens of the OIDC provider `arn` assume it.
    pub fn trust_oidc_provider(mut self, arn: impl Into<String>) -> RoleSpec {
        self.trusted_oidc_providers.push(arn.into());
        self
    }

    /// Requires this ExternalId of AssumeRole.
    pub fn require_external_id(mut self, external_id: impl Into<String>) -> RoleSpec {
        self.external_id = Some(external_id.into());
        self
    }

    pub fn max_session_duration(mut self, max: Duration) -> RoleSpec {
        self.max_session_duration = max;
        self
    }

    /// Whether its trust policy lets `principal` call AssumeRole on it.
    pub(super) fn trusts(&self, principal: &Principal) -> bool {
        let arn = principal.arn();
        self.trusted_accounts.iter().any(|a| a == principal.uid())
            || self.trusted_principals.contains(&arn)
    }

    /// An 17-digit id, stable for the ARN: the `<id>` of `AssumedRoleId`, `<id>:<session>`.
    pub(super) fn role_id(&self) -> String {
        let digest = super::fingerprint(&[&self.arn()]);
        let mut n = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
        n %= 90_000_000_000_000_000;
        (n + 10_000_000_000_000_000).to_string()
    }
}

/// An OIDC identity provider registered in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProviderSpec {
    pub uid: String,
    pub name: String,
    /// Must equal a token's `iss` claim.
    pub issuer_url: String,
    /// A token's `aud` claim must name one of them.
    pub client_ids: Vec<String>,
}

impl OidcProviderSpec {
    pub fn new(
        uid: impl Into<String>,
        name: impl Into<String>,
        issuer_url: impl Into<String>,
        client_ids: impl IntoIterator<Item = impl Into<String>>,
    ) -> OidcProviderSpec {
        OidcProviderSpec {
            uid: uid.into(),
            name: name.into(),
            issuer_url: issuer_url.into(),
            client_ids: client_ids.into_iter().map(Into::into).collect(),
        }
    }

    /// `acs:ram::<uid>:oidc-provider/<name>`.
    pub fn arn(&self) -> String {
        format!("acs:ram::{}:oidc-provider/{}", self.uid, self.name)
    }
}

/// Temporary credentials the simulator issued: what STS, the metadata service and a credential
/// URI reply. The secret and the token are secret types: Debug output hides them.
#[derive(Clone)]
pub struct TemporaryCredentials {
    /// `STS.` and 24 characters.
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    pub security_token: SecretString,
    /// Whole seconds, as `Expiration` shows it; the credentials are refused from then on.
    pub expiration: SystemTime,
    pub principal: Principal,
}

impl std::fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration_text())
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl TemporaryCredentials {
    /// `Expiration` as every reply shows it: UTC `YYYY-MM-DDThh:mm:ssZ`.
    pub fn expiration_text(&self) -> String {
        humantime::format_rfc3339_seconds(self.expiration).to_string()
    }
}

/// What the simulator shows of issued credentials: no secret, no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub principal: Principal,
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub expiration: String,
    /// What issued them: `AssumeRole`, `AssumeRoleWithOIDC`, `metadata`, `uri` or `in-process`.
    pub issued_by: String,
}

struct Key {
    secret: SecretString,
    principal: Principal,
    active: bool,
    /// For STS credentials: the token, the expiry, and what issued them.
    temporary: Option<(SecretString, SystemTime, String)>,
}

/// The simulated RAM and STS state.
#[derive(Default)]
pub(super) struct Identity {
    accounts: BTreeSet<String>,
    keys: HashMap<String, Key>,
    roles: BTreeMap<String, RoleSpec>,
    oidc_providers: BTreeMap<String, OidcProviderSpec>,
    /// When set, every credential issued from now on lives this long, whatever was asked.
    pub lifetime: Option<Duration>,
}

fn key_error(status: u16, code: &str, message: &str) -> SimError {
    SimError::new(status, code, message)
}

impl Identity {
    /// The primary account, with one RAM user holding the given AccessKey.
    pub fn new(access_key_id: String, secret: String) -> Identity {
        let mut identity = Identity::default();
        identity.add_access_key(
            access_key_id,
            secret,
            Principal::User {
                uid: PRIMARY_UID.into(),
                name: PRIMARY_USER.into(),
            },
        );
        identity
    }

    pub fn add_account(&mut self, uid: &str) {
        self.accounts.insert(uid.to_owned());
    }

    /// Adds (or replaces) a long-term AccessKey; its principal's account is added too.
    pub fn add_access_key(&mut self, id: String, secret: String, principal: Principal) {
        self.accounts.insert(principal.uid().to_owned());
        self.keys.insert(
            id,
            Key {
                secret: SecretString::from(secret),
                principal,
                active: true,
                temporary: None,
            },
        );
    }

    /// False if there is no such AccessKey.
    pub fn set_active(&mut self, id: &str, active: bool) -> bool {
        self.keys.get_mut(id).map(|k| k.active = active).is_some()
    }

    /// Makes issued credentials expire now. False if there are no such temporary credentials.
    pub fn expire(&mut self, id: &str, now: SystemTime) -> bool {
        match self.keys.get_mut(id).and_then(|k| k.temporary.as_mut()) {
            Some((_, expires, _)) => {
                *expires = now;
                true
            }
            None => false,
        }
    }

    pub fn add_role(&mut self, role: RoleSpec) {
        self.accounts.insert(role.uid.clone());
        self.roles.insert(role.arn(), role);
    }

    pub fn role(&self, arn: &str) -> Option<&RoleSpec> {
        self.roles.get(arn)
    }

    pub fn add_oidc_provider(&mut self, provider: OidcProviderSpec) {
        self.accounts.insert(provider.uid.clone());
        self.oidc_providers.insert(provider.arn(), provider);
    }

    pub fn oidc_provider(&self, arn: &str) -> Option<&OidcProviderSpec> {
        self.oidc_providers.get(arn)
    }

    /// The secret and principal of `key_id`, after the checks of the key and, for temporary
    /// credentials, of the `token` sent with it, in that order (module documentation).
    pub fn authenticate(
        &self,
        key_id: &str,
        token: Option<&str>,
        now: SystemTime,
    ) -> Result<(SecretString, Principal), SimError> {
        let key = self.keys.get(key_id).ok_or_else(|| {
            key_error(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        if !key.active {
            return Err(key_error(
                400,
                "InvalidAccessKeyId.Inactive",
                "Specified access key is disabled.",
            ));
        }
        if let Some((issued, expires, _)) = &key.temporary {
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                return Err(SimError::missing("SecurityToken"));
            };
            if !crate::cloud::sign::signatures_match(issued.expose_secret(), token) {
                return Err(key_error(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            if now >= *expires {
                return Err(key_error(
                    400,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                ));
            }
        }
        Ok((key.secret.clone(), key.principal.clone()))
    }

    /// New temporary credentials for `principal`, living `requested` (or the lifetime override).
    /// Credentials expired for over an hour are forgotten (they then answer
    /// `InvalidAccessKeyId.NotFound`).
    pub fn issue(
        &mut self,
        principal: Principal,
        requested: Duration,
        issued_by: &str,
        now: SystemTime,
    ) -> TemporaryCredentials {
        self.keys.retain(|_, k| match &k.temporary {
            Some((_, expires, _)) => now
                .duration_since(*expires)
                .map_or(true, |d| d < Duration::from_secs(3600)),
            None => true,
        });
        let lifetime = self.lifetime.unwrap_or(requested);
        let expiration = whole_seconds(now + lifetime);
        let credentials = TemporaryCredentials {
            access_key_id: format!("STS.{}", random_text(18, true)),
            access_key_secret: SecretString::from(random_text(30, true)),
            security_token: SecretString::from(format!("CAIS{}", random_text(240, false))),
            expiration,
            principal,
        };
        self.keys.insert(
            credentials.access_key_id.clone(),
            Key {
                secret: credentials.access_key_secret.clone(),
                principal: credentials.principal.clone(),
                active: true,
                temporary: Some((
                    credentials.security_token.clone(),
                    expiration,
                    issued_by.to_owned(),
                )),
            },
        );
        credentials
    }

    /// Every temporary credential still remembered, oldest expiry first.
    pub fn issued(&self) -> Vec<IssuedCredentials> {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .filter_map(|(id, k)| {
                let (_, expires, by) = k.temporary.as_ref()?;
                Some((
                    *expires,
                    IssuedCredentials {
                        access_key_id: id.clone(),
                        principal: k.principal.clone(),
                        expiration: humantime::format_rfc3339_seconds(*expires).to_string(),
                        issued_by: by.clone(),
                    },
                ))
            })
            .collect();
        out.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.access_key_id.cmp(&b.1.access_key_id))
        });
        out.into_iter().map(|(_, i)| i).collect()
    }
}

impl super::Sim {
    /// Adds a cloud account (a 16-digit uid), for resources and roles to belong to.
    pub fn add_cloud_account(&self, uid: &str) {
        self.identity().add_account(uid);
    }

    /// Adds (or replaces) a long-term AccessKey held by `principal`: the root of a cloud
    /// account ([`Principal::Root`], which STS refuses to let assume roles) or one of its RAM
    /// users ([`Principal::User`]). The account is added if new.
    pub fn add_access_key(&self, id: &str, secret: &str, principal: Principal) {
        self.identity()
            .add_access_key(id.to_owned(), secret.to_owned(), principal);
    }

    /// Disables (`InvalidAccessKeyId.Inactive`) or re-enables an AccessKey, temporary ones
    /// included. False if there is no such key.
    pub fn set_access_key_active(&self, id: &str, active: bool) -> bool {
        self.identity().set_active(id, active)
    }

    /// Adds (or replaces) a RAM role and its trust policy.
    pub fn add_role(&self, role: RoleSpec) {
        self.identity().add_role(role);
    }

    /// Adds (or replaces) an OIDC identity provider.
    pub fn add_oidc_provider(&self, provider: OidcProviderSpec) {
        self.identity().add_oidc_provider(provider);
    }

    /// With `Some(d)`, every temporary credential issued from now on (STS, the metadata
    /// service, credential URIs, [`super::Sim::issue_credentials`]) expires `d` after it was
    /// issued, whatever `DurationSeconds` asked, so that refreshes can be seen in seconds.
    /// `DurationSeconds` is still checked against its documented range. `None` restores the
    /// asked lifetimes.
    pub fn set_credential_lifetime(&self, lifetime: Option<Duration>) {
        self.identity().lifetime = lifetime;
    }

    /// New temporary credentials of the role `arn` for the session `session`, as AssumeRole
    /// would issue them for 3600 seconds (or the lifetime set by
    /// [`super::Sim::set_credential_lifetime`]), without asking STS. `None` if there is no such
    /// role.
    pub fn issue_credentials(&self, arn: &str, session: &str) -> Option<TemporaryCredentials> {
        let mut identity = self.identity();
        let role = identity.role(arn)?.clone();
        let principal = Principal::AssumedRole {
            uid: role.uid,
            role: role.name,
            session: session.to_owned(),
        };
        Some(identity.issue(principal, DEFAULT_SESSION, "in-process", SystemTime::now()))
    }

    /// Makes temporary credentials expire now: their next use gets
    /// `InvalidSecurityToken.Expired`. False if there are no such credentials.
    pub fn expire_credentials(&self, access_key_id: &str) -> bool {
        self.identity().expire(access_key_id, SystemTime::now())
    }

    /// The temporary credentials issued and not yet forgotten, without secrets.
    pub fn issued_credentials(&self) -> Vec<IssuedCredentials> {
        self.identity().issued()
    }

    /// The secret and the security token of every temporary credential not yet forgotten:
    /// what a test looks for in pwrotd's output, files and metrics, to find none.
    pub fn issued_secrets(&self) -> Vec<SecretString> {
        let identity = self.identity();
        identity
            .keys
            .values()
            .filter_map(|k| {
                let (token, _, _) = k.temporary.as_ref()?;
                Some([k.secret.clone(), token.clone()])
            })
            .flatten()
            .collect()
    }
}

/// `t` rounded down to a whole second: what a `YYYY-MM-DDThh:mm:ssZ` text can say.
pub(super) fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Random text from `bytes` random bytes: alphanumeric only (AccessKey ids and secrets), or
/// standard base64 with `+`, `/` and `=` (security tokens, which carry them on the real
/// service, so that clients are seen to encode them).
fn random_text(bytes: usize, alphanumeric: bool) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = OsRandom::default().try_fill_bytes(&mut buf);
    let text = base64::engine::general_purpose::STANDARD.encode(&buf);
    if alphanumeric {
        text.chars().filter(char::is_ascii_alphanumeric).collect()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            parse_arn("acs:ram::1234567890123456:role/pwrotd", "role"),
            Some(("1234567890123456", "pwrotd"))
        );
        assert_eq!(parse_arn("acs:ram::123:role/pwrotd", "role"), None);
        assert_eq!(
            parse_arn("acs:ram::1234567890123456:user/pwrotd", "role"),
            None
        );
        assert_eq!(parse_arn("acs:ram::1234567890123456:role/", "role"), None);
        let role = RoleSpec::from_arn("acs:ram::2222222222222222:role/x").unwrap();
        assert_eq!(role.arn(), "acs:ram::2222222222222222:role/x");
        assert_eq!(role.role_id().len(), 17);
        assert_eq!(role.role_id(), role.clone().role_id());
    }

    #[test]
    fn temporary_credentials_are_checked_in_order() {
        let mut id = Identity::new("LTAIkey".into(), "secret".into());
        let now = SystemTime::now();
        let who = Principal::AssumedRole {
            uid: PRIMARY_UID.into(),
            role: "r".into(),
            session: "s".into(),
        };
        let creds = id.issue(who.clone(), Duration::from_secs(60), "in-process", now);
        assert!(creds.access_key_id.starts_with("STS."));
        assert!(creds.expiration <= now + Duration::from_secs(60));
        let code = |r: Result<(SecretString, Principal), SimError>| r.unwrap_err().code;
        let key = &creds.access_key_id;
        assert_eq!(
            code(id.authenticate(key, None, now)),
            "MissingSecurityToken"
        );
        assert_eq!(
            code(id.authenticate(key, Some("CAISother"), now)),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        let token = Some(creds.security_token.expose_secret());
        assert_eq!(id.authenticate(key, token, now).unwrap().1, who);
        assert_eq!(
            code(id.authenticate(key, token, creds.expiration)),
            "InvalidSecurityToken.Expired"
        );
        assert_eq!(
            code(id.authenticate("LTAInope", None, now)),
            "InvalidAccessKeyId.NotFound"
        );
        // A long-term key ignores a token.
        assert!(id.authenticate("LTAIkey", Some("x"), now).is_ok());
        assert!(id.set_active("LTAIkey", false));
        assert_eq!(
            code(id.authenticate("LTAIkey", None, now)),
            "InvalidAccessKeyId.Inactive"
        );
        assert_eq!(id.issued().len(), 1);
        // An hour after expiry they are forgotten.
        id.issue(
            who,
            Duration::from_secs(1),
            "x",
            now + Duration::from_secs(7200),
        );
        assert_eq!(
            code(id.authenticate(key, token, now)),
            "InvalidAccessKeyId.NotFound"
        );
    }

    #[test]
    fn trust() {
        let role = RoleSpec::new("2222222222222222", "r")
            .trust_account(PRIMARY_UID)
            .trust_principal("acs:ram::3333333333333333:user/bob");
        let user = |uid: &str, name: &str| Principal::User {
            uid: uid.into(),
            name: name.into(),
        };
        assert!(role.trusts(&user(PRIMARY_UID, "anyone")));
        assert!(role.trusts(&user("3333333333333333", "bob")));
        assert!(!role.trusts(&user("3333333333333333", "eve")));
        assert!(!role.trusts(&user("2222222222222222", "own-account-user")));
    }
}
