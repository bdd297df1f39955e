//! The simulator's identities, credentials, regions and cloud accounts (issue 14): STS
//! AssumeRole and AssumeRoleWithOIDC in the request shapes of the official credential SDKs, the
//! ECS metadata service (IMDSv2, IMDSv1 only when allowed), credential URIs, temporary
//! credentials that expire, each resource's region and owner, and DescribeAccounts. STS and
//! DescribeAccounts requests are signed by hand, so that every reply field and error code is
//! seen as sent; the password calls go through pwrotd's own client, to show that what the
//! simulator issues signs real requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use pwrotd::cloud::{Api, Credentials, Service, SetPassword, SignatureVersion, sign};
use pwrotd::password::Policy;
use pwrotd::sim::{
    AccountStatus, CredentialEndpoint, CredentialFault, OidcProviderSpec, PRIMARY_UID, Principal,
    RoleSpec, SimServer, unsigned_oidc_token,
};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::common::{self, BOTH, KEY_ID, SECRET};

/// A second cloud account.
const OTHER_UID: &str = "2222222222222222";
const ROLE: &str = "acs:ram::1234567890123456:role/pwrotd";
const CROSS_ROLE: &str = "acs:ram::2222222222222222:role/pwrotd-cross";
const OIDC_ROLE: &str = "acs:ram::1234567890123456:role/pwrotd-rrsa";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
const ISSUER: &str = "https://oidc-ack.cn-hangzhou.aliyuncs.com/cafe";

/// Signing material: a long-term AccessKey, or STS credentials with their token.
struct Key {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Key {
    fn primary() -> Key {
        Key {
            id: KEY_ID.into(),
            secret: SECRET.into(),
            token: None,
        }
    }

    /// The `Credentials` object of an AssumeRole, metadata or URI reply.
    fn from_reply(credentials: &Value) -> Key {
        Key {
            id: credentials["AccessKeyId"].as_str().unwrap().into(),
            secret: credentials["AccessKeySecret"].as_str().unwrap().into(),
            token: Some(credentials["SecurityToken"].as_str().unwrap().into()),
        }
    }

    fn credentials(&self) -> Credentials {
        let credentials = Credentials::new(&self.id, &self.secret);
        match &self.token {
            Some(token) => credentials.with_security_token(token),
            None => credentials,
        }
    }
}

fn nonce() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("sim-identity-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A V1-signed query string, as credentials-go's `ram_role_arn.go` signs (the token included
/// when the source credentials are temporary).
fn signed(params: &[(&str, &str)], key: &Key) -> String {
    let (nonce, timestamp) = (nonce(), now_text());
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend([
        ("AccessKeyId", key.id.as_str()),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &nonce),
        ("Timestamp", &timestamp),
    ]);
    if let Some(token) = &key.token {
        all.push(("SecurityToken", token));
    }
    let signature = sign::v1_signature(&key.secret, "POST", all.iter().copied());
    all.push(("Signature", &signature));
    sign::canonical_query(all.iter().copied()).to_string()
}

async fn call(addr: SocketAddr, params: &[(&str, &str)], key: &Key) -> (u16, Value) {
    common::post(addr, &signed(params, key), String::new()).await
}

async fn assume_role(addr: SocketAddr, key: &Key, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut params = vec![
        ("Action", "AssumeRole"),
        ("Version", "2015-04-01"),
        ("RoleSessionName", "pwrotd-test"),
    ];
    params.extend_from_slice(extra);
    call(addr, &params, key).await
}

/// Who signs, the AssumeRole parameters, and the status and code expected.
type Case<'a> = (&'a Key, &'a [(&'a str, &'a str)], (u16, &'a str));

fn code(reply: &(u16, Value)) -> (u16, &str) {
    (reply.0, reply.1["Code"].as_str().unwrap_or_default())
}

/// A simulator with three roles: [`ROLE`] and [`CROSS_ROLE`] (in [`OTHER_UID`], which wants
/// ExternalId `ext-1234`) trust the primary account; [`OIDC_ROLE`] trusts [`PROVIDER`].
async fn start() -> SimServer {
    let server = common::start_sim().await;
    let sim = &server.sim;
    sim.add_role(RoleSpec::from_arn(ROLE).unwrap().trust_account(PRIMARY_UID));
    sim.add_role(
        RoleSpec::from_arn(CROSS_ROLE)
            .unwrap()
            .trust_account(PRIMARY_UID)
            .require_external_id("ext-1234")
            .max_session_duration(Duration::from_secs(7200)),
    );
    sim.add_role(
        RoleSpec::from_arn(OIDC_ROLE)
            .unwrap()
            .trust_oidc_provider(PROVIDER),
    );
    sim.add_oidc_provider(OidcProviderSpec::new(
        PRIMARY_UID,
        "ack-rrsa",
        ISSUER,
        ["sts.aliyuncs.com"],
    ));
    server
}

fn reset(password_tag: &str) -> SetPassword {
    let password = Policy::default().generate().unwrap();
    SetPassword::new(
        Api::ResetAccountPassword,
        "rm-test0001",
        "billing",
        password,
        password_tag,
        None,
    )
}

fn modify(cluster: &str, account: &str) -> SetPassword {
    let password = Policy::default().generate().unwrap();
    SetPassword::new(
        Api::ModifyAccountPassword,
        cluster,
        account,
        password,
        "t",
        None,
    )
}

/// Calls `op` through pwrotd's client with these credentials and region: `OK` or the code.
async fn client_code(
    server: &SimServer,
    key: &Key,
    region: &str,
    signature: SignatureVersion,
    op: &SetPassword,
) -> String {
    let mut config = common::client_config(server.url(), signature);
    region.clone_into(&mut config.region_id);
    config.max_attempts = 1;
    match common::client_with(config, key.credentials())
        .call(op)
        .await
    {
        Ok(_) => "OK".into(),
        Err(e) => e.code().to_owned(),
    }
}

fn expiration(credentials: &Value) -> SystemTime {
    humantime::parse_rfc3339(credentials["Expiration"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn assume_role_issues_credentials_that_sign_api_calls() {
    let server = start().await;
    let (status, body) = assume_role(
        server.addr,
        &Key::primary(),
        &[("RoleArn", ROLE), ("DurationSeconds", "1800")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["RequestId"].as_str().unwrap().len(), 36);
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        format!("{ROLE}/pwrotd-test")
    );
    assert!(
        body["AssumedRoleUser"]["AssumedRoleId"]
            .as_str()
            .unwrap()
            .ends_with(":pwrotd-test")
    );
    let credentials = &body["Credentials"];
    assert!(
        credentials["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("STS.")
    );
    let left = expiration(credentials)
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(1790) && left <= Duration::from_secs(1800));
    let key = Key::from_reply(credentials);
    for signature in BOTH {
        let code = client_code(&server, &key, "cn-hangzhou", signature, &reset("t")).await;
        assert_eq!(code, "OK", "{signature:?}");
    }

    // Chained: temporary source credentials sign AssumeRole with their SecurityToken.
    let (status, body) = assume_role(
        server.addr,
        &key,
        &[("RoleArn", CROSS_ROLE), ("ExternalId", "ext-1234")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let without_token = Key { token: None, ..key };
    let reply = assume_role(server.addr, &without_token, &[("RoleArn", ROLE)]).await;
    assert_eq!(code(&reply), (400, "MissingSecurityToken"));

    let issued = server.sim.issued_credentials();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].issued_by, "AssumeRole");
    assert_eq!(
        issued[1].principal,
        Principal::AssumedRole {
            uid: OTHER_UID.into(),
            role: "pwrotd-cross".into(),
            session: "pwrotd-test".into(),
        }
    );
    let stats = server.sim.stats();
    assert_eq!(stats.credentials.get("AssumeRole OK"), Some(&2));
}

#[tokio::test]
async fn assume_role_refusals_are_the_documented_ones() {
    let server = start().await;
    server
        .sim
        .add_role(RoleSpec::from_arn("acs:ram::1234567890123456:role/nobody").unwrap());
    server.sim.add_access_key(
        "LTAIroot0001",
        "root-secret",
        Principal::Root {
            uid: PRIMARY_UID.into(),
        },
    );
    let root = Key {
        id: "LTAIroot0001".into(),
        secret: "root-secret".into(),
        token: None,
    };
    let primary = Key::primary();
    let cases: [Case<'_>; 9] = [
        (
            &primary,
            &[("RoleArn", "acs:ram::1234567890123456:role/nobody")],
            (403, "NoPermission"),
        ),
        (&primary, &[("RoleArn", CROSS_ROLE)], (403, "NoPermission")),
        (
            &primary,
            &[("RoleArn", CROSS_ROLE), ("ExternalId", "ext-wrong")],
            (403, "NoPermission"),
        ),
        (&root, &[("RoleArn", ROLE)], (403, "NoPermission")),
        (
            &primary,
            &[("RoleArn", "acs:ram::1234567890123456:role/missing")],
            (404, "EntityNotExist.Role"),
        ),
        (
            &primary,
            &[("RoleArn", "arn:pwrotd")],
            (400, "InvalidParameter.RoleArn"),
        ),
        (
            &primary,
            &[("RoleArn", ROLE), ("DurationSeconds", "600")],
            (400, "InvalidParameter.DurationSeconds"),
        ),
        (
            &primary,
            &[("RoleArn", ROLE), ("DurationSeconds", "7200")],
            (400, "InvalidParameter.DurationSeconds"),
        ),
        (&primary, &[], (400, "MissingRoleArn")),
    ];
    for (key, params, want) in cases {
        let reply = assume_role(server.addr, key, params).await;
        assert_eq!(code(&reply), want, "{params:?}: {}", reply.1);
    }
    // The cross-account role allows 2 hours, with its ExternalId.
    let reply = assume_role(
        server.addr,
        &primary,
        &[
            ("RoleArn", CROSS_ROLE),
            ("ExternalId", "ext-1234"),
            ("DurationSeconds", "7200"),
        ],
    )
    .await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    let wrong = Key {
        secret: "not-the-secret".into(),
        ..Key::primary()
    };
    let reply = assume_role(server.addr, &wrong, &[("RoleArn", ROLE)]).await;
    assert_eq!(code(&reply), (400, "SignatureDoesNotMatch"));
    assert!(server.sim.issued_credentials().len() == 1);
}

/// AssumeRoleWithOIDC as credentials-go sends it: unsigned, the common parameters in the query,
/// the rest in a form body.
async fn assume_role_with_oidc(
    addr: SocketAddr,
    role: &str,
    provider: &str,
    token: &str,
) -> (u16, Value) {
    let query = sign::canonical_query([
        ("Action", "AssumeRoleWithOIDC"),
        ("Version", "2015-04-01"),
        ("Format", "JSON"),
        ("Timestamp", now_text().as_str()),
    ])
    .to_string();
    let body = sign::canonical_query([
        ("RoleArn", role),
        ("OIDCProviderArn", provider),
        ("OIDCToken", token),
        ("RoleSessionName", "rrsa-session"),
        ("DurationSeconds", "3600"),
    ])
    .to_string();
    common::post(addr, &query, body).await
}

#[tokio::test]
async fn assume_role_with_oidc_checks_the_token() {
    let server = start().await;
    let later = SystemTime::now() + Duration::from_secs(600);
    let token = unsigned_oidc_token(
        ISSUER,
        "sts.aliyuncs.com",
        "system:serviceaccount:db:pwrotd",
        later,
    );
    let (status, body) = assume_role_with_oidc(server.addr, OIDC_ROLE, PROVIDER, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["OIDCTokenInfo"]["Issuer"], ISSUER);
    assert_eq!(
        body["OIDCTokenInfo"]["Subject"],
        "system:serviceaccount:db:pwrotd"
    );
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        format!("{OIDC_ROLE}/rrsa-session")
    );
    let key = Key::from_reply(&body["Credentials"]);
    let code_now = client_code(
        &server,
        &key,
        "cn-hangzhou",
        SignatureVersion::V3,
        &reset("o"),
    )
    .await;
    assert_eq!(code_now, "OK");

    let expired = unsigned_oidc_token(
        ISSUER,
        "sts.aliyuncs.com",
        "s",
        SystemTime::now() - Duration::from_secs(5),
    );
    let other_audience = unsigned_oidc_token(ISSUER, "someone-else", "s", later);
    let other_issuer = unsigned_oidc_token("https://elsewhere", "sts.aliyuncs.com", "s", later);
    let unknown = "acs:ram::1234567890123456:oidc-provider/unknown";
    let cases = [
        (
            OIDC_ROLE,
            PROVIDER,
            expired.as_str(),
            "AuthenticationFail.OIDCToken.Expired",
        ),
        (
            OIDC_ROLE,
            PROVIDER,
            "not.a-jwt",
            "AuthenticationFail.OIDCToken.Invalid",
        ),
        (
            OIDC_ROLE,
            PROVIDER,
            other_audience.as_str(),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        (
            OIDC_ROLE,
            PROVIDER,
            other_issuer.as_str(),
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
        ),
        (
            OIDC_ROLE,
            unknown,
            token.as_str(),
            "AuthenticationFail.NoPermission",
        ),
        (
            ROLE,
            PROVIDER,
            token.as_str(),
            "AuthenticationFail.NoPermission",
        ),
    ];
    for (role, provider, token, want) in cases {
        let reply = assume_role_with_oidc(server.addr, role, provider, token).await;
        assert_eq!(code(&reply), (401, want), "{}", reply.1);
    }
    let reply = assume_role_with_oidc(
        server.addr,
        "acs:ram::1234567890123456:role/missing",
        PROVIDER,
        &token,
    )
    .await;
    assert_eq!(code(&reply), (404, "EntityNotExist.Role"));
    assert_eq!(
        server
            .sim
            .stats()
            .credentials
            .get("AssumeRoleWithOIDC AuthenticationFail.OIDCToken.Expired"),
        Some(&1)
    );
}

#[tokio::test]
async fn expired_and_mismatched_security_tokens_are_refused() {
    let server = start().await;
    server
        .sim
        .set_credential_lifetime(Some(Duration::from_secs(2)));
    let (status, body) = assume_role(server.addr, &Key::primary(), &[("RoleArn", ROLE)]).await;
    assert_eq!(status, 200, "{body}");
    let expires = expiration(&body["Credentials"]);
    assert!(expires <= SystemTime::now() + Duration::from_secs(2));
    let key = Key::from_reply(&body["Credentials"]);
    let op = [
        ("Action", "DescribeAccounts"),
        ("Version", "2014-08-15"),
        ("DBInstanceId", "rm-test0001"),
    ];
    assert_eq!(call(server.addr, &op, &key).await.0, 200);

    let mismatched = Key {
        token: Some("CAISnot/the+token==".into()),
        ..Key::from_reply(&body["Credentials"])
    };
    let reply = call(server.addr, &op, &mismatched).await;
    assert_eq!(
        code(&reply),
        (400, "InvalidSecurityToken.MismatchWithAccessKey")
    );

    // Past its Expiration, by the wall clock: the lifetime is 2 s.
    if let Ok(wait) = expires.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(100)).await;
    }
    let reply = call(server.addr, &op, &key).await;
    assert_eq!(code(&reply), (400, "InvalidSecurityToken.Expired"));
    for signature in BOTH {
        let code = client_code(&server, &key, "cn-hangzhou", signature, &reset("e")).await;
        assert_eq!(code, "InvalidSecurityToken.Expired", "{signature:?}");
    }

    // Expiring on demand, without waiting.
    server.sim.set_credential_lifetime(None);
    let fresh = server.sim.issue_credentials(ROLE, "in-process").unwrap();
    let key = Key {
        id: fresh.access_key_id.clone(),
        secret: fresh.access_key_secret.expose_secret().to_owned(),
        token: Some(fresh.security_token.expose_secret().to_owned()),
    };
    assert_eq!(call(server.addr, &op, &key).await.0, 200);
    assert!(server.sim.expire_credentials(&fresh.access_key_id));
    let reply = call(server.addr, &op, &key).await;
    assert_eq!(code(&reply), (400, "InvalidSecurityToken.Expired"));
    // Neither Debug nor the hook shows a secret or a token.
    let debug = format!("{fresh:?}");
    let hook = reqwest::get(format!("{}_sim/credentials", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [debug, hook] {
        assert!(shown.contains(&fresh.access_key_id), "{shown}");
        assert!(
            !shown.contains(fresh.access_key_secret.expose_secret()),
            "{shown}"
        );
        assert!(
            !shown.contains(fresh.security_token.expose_secret()),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn the_metadata_service_wants_a_token_unless_imdsv1_is_allowed() {
    let server = start().await;
    server.sim.set_ecs_role(Some(ROLE));
    let base = server.url();
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!(
            "{base}latest/meta-data/ram/security-credentials/{path}"
        ));
        if let Some(token) = token {
            request = request.header("X-aliyun-ecs-metadata-token", token);
        }
        request.send()
    };
    let put_token = |ttl: &str| {
        http.put(format!("{base}latest/api/token"))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", ttl)
            .send()
    };
    assert_eq!(put_token("0").await.unwrap().status(), 400);
    assert_eq!(put_token("21601").await.unwrap().status(), 400);
    let token = put_token("21600").await.unwrap().text().await.unwrap();
    assert!(!token.is_empty());
    assert_eq!(get("", None).await.unwrap().status(), 401);
    assert_eq!(get("", Some("forged")).await.unwrap().status(), 401);
    let name = get("", Some(&token)).await.unwrap().text().await.unwrap();
    assert_eq!(name, "pwrotd");
    assert_eq!(get("other-role", Some(&token)).await.unwrap().status(), 404);
    let reply: Value = get("pwrotd", Some(&token))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(reply["Code"], "Success");
    assert!(reply["LastUpdated"].is_string());
    let left = expiration(&reply)
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(6 * 3600 - 10));
    let key = Key::from_reply(&reply);
    let again: Value = get("pwrotd", Some(&token))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(
        again["AccessKeyId"], reply["AccessKeyId"],
        "served until half their life"
    );
    assert_eq!(
        client_code(
            &server,
            &key,
            "cn-hangzhou",
            SignatureVersion::V1,
            &reset("m")
        )
        .await,
        "OK"
    );

    server.sim.allow_imdsv1(true);
    assert_eq!(get("", None).await.unwrap().text().await.unwrap(), "pwrotd");
    server.sim.set_ecs_role(None);
    assert_eq!(get("", Some(&token)).await.unwrap().status(), 404);

    server.sim.set_ecs_role(Some(ROLE));
    server.sim.script_credential_faults(
        CredentialEndpoint::Metadata,
        [CredentialFault::Garbage, CredentialFault::ServerError],
    );
    let garbage = get("pwrotd", Some(&token)).await.unwrap();
    assert_eq!(garbage.status(), 200);
    assert!(serde_json::from_str::<Value>(&garbage.text().await.unwrap()).is_err());
    assert_eq!(get("pwrotd", Some(&token)).await.unwrap().status(), 500);
    assert_eq!(get("pwrotd", Some(&token)).await.unwrap().status(), 200);
    let stats = server.sim.stats().credentials;
    assert_eq!(stats.get("metadata.token OK"), Some(&1));
    assert_eq!(stats.get("metadata Garbage"), Some(&1));
}

#[tokio::test]
async fn a_credentials_uri_serves_the_sdk_reply() {
    let server = start().await;
    server.sim.add_credentials_uri("app", ROLE);
    let url = format!("{}_creds/app", server.url());
    let reply: Value = reqwest::get(&url)
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(reply["Code"], "Success");
    for field in [
        "AccessKeyId",
        "AccessKeySecret",
        "SecurityToken",
        "Expiration",
    ] {
        assert!(reply[field].is_string(), "{field}: {reply}");
    }
    let key = Key::from_reply(&reply);
    assert_eq!(
        client_code(
            &server,
            &key,
            "cn-hangzhou",
            SignatureVersion::V3,
            &reset("u")
        )
        .await,
        "OK"
    );
    let missing = reqwest::get(format!("{}_creds/nope", server.url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server
        .sim
        .script_credential_faults(CredentialEndpoint::Uri, [CredentialFault::Throttle]);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 429);
    server
        .sim
        .script_credential_faults(CredentialEndpoint::Sts, [CredentialFault::ServerError]);
    let reply = assume_role(server.addr, &Key::primary(), &[("RoleArn", ROLE)]).await;
    assert_eq!(code(&reply), (500, "InternalError"));
    assert_eq!(
        assume_role(server.addr, &Key::primary(), &[("RoleArn", ROLE)])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn each_resource_answers_in_its_region_and_to_its_account() {
    let server = start().await;
    let primary = Key::primary();
    let v3 = SignatureVersion::V3;
    // The config's region_id is cn-hangzhou.
    assert_eq!(
        client_code(&server, &primary, "ap-southeast-1", v3, &reset("r")).await,
        "InvalidDBInstanceName.NotFound"
    );
    assert_eq!(
        client_code(&server, &primary, "cn-hangzhou", v3, &reset("r")).await,
        "OK"
    );
    assert!(
        server
            .sim
            .set_resource_region(Service::Rds, "rm-test0001", Some("ap-southeast-1"))
    );
    assert_eq!(
        client_code(&server, &primary, "cn-hangzhou", v3, &reset("r")).await,
        "InvalidDBInstanceName.NotFound"
    );
    assert_eq!(
        client_code(&server, &primary, "ap-southeast-1", v3, &reset("r")).await,
        "OK"
    );
    let op = modify("pc-test0002", "edge");
    assert_eq!(
        client_code(&server, &primary, "ap-southeast-1", v3, &op).await,
        "InvalidDBClusterId.NotFound"
    );

    // pc-test0002 moves to the other cloud account: reachable only through its role there.
    assert!(
        server
            .sim
            .set_resource_owner(Service::PolarDb, "pc-test0002", OTHER_UID)
    );
    assert_eq!(
        client_code(&server, &primary, "cn-hangzhou", v3, &op).await,
        "InvalidDBClusterId.NotFound"
    );
    let (status, body) = assume_role(
        server.addr,
        &primary,
        &[("RoleArn", CROSS_ROLE), ("ExternalId", "ext-1234")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cross = Key::from_reply(&body["Credentials"]);
    for signature in BOTH {
        assert_eq!(
            client_code(&server, &cross, "cn-hangzhou", signature, &op).await,
            "OK"
        );
        let own = modify("pc-test0001", "app");
        assert_eq!(
            client_code(&server, &cross, "cn-hangzhou", signature, &own).await,
            "InvalidDBClusterId.NotFound"
        );
    }
    assert_eq!(
        server
            .sim
            .resource_placement(Service::PolarDb, "pc-test0002"),
        Some((OTHER_UID.to_owned(), Some("cn-hangzhou".to_owned())))
    );
}

fn describe(service: Service, resource: &str) -> Vec<(&'static str, String)> {
    let (version, param) = match service {
        Service::PolarDb => ("2017-08-01", "DBClusterId"),
        Service::Rds => ("2014-08-15", "DBInstanceId"),
    };
    vec![
        ("Action", "DescribeAccounts".into()),
        ("Version", version.into()),
        (param, resource.into()),
        ("RegionId", "cn-hangzhou".into()),
    ]
}

async fn describe_call(addr: SocketAddr, params: &[(&'static str, String)]) -> (u16, Value) {
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    call(addr, &borrowed, &Key::primary()).await
}

#[tokio::test]
async fn describe_accounts_has_the_documented_shapes() {
    let server = start().await;
    let sim = &server.sim;
    assert!(sim.set_account_status(
        Service::PolarDb,
        "pc-test0001",
        "app",
        AccountStatus::Locked
    ));
    assert!(sim.set_account_description(Service::PolarDb, "pc-test0001", "app", "orders"));
    let (status, body) =
        describe_call(server.addr, &describe(Service::PolarDb, "pc-test0001")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["PageNumber"], 1);
    assert_eq!(body["PageRecordCount"], 2);
    let accounts = body["Accounts"].as_array().unwrap();
    let app = accounts.iter().find(|a| a["AccountName"] == "app").unwrap();
    assert_eq!(app["AccountType"], "Normal");
    assert_eq!(app["AccountStatus"], "Available");
    assert_eq!(app["AccountLockState"], "Lock");
    assert_eq!(app["AccountDescription"], "orders");
    assert!(app["DatabasePrivileges"].is_array());
    let admin = accounts
        .iter()
        .find(|a| a["AccountName"] == "root_admin")
        .unwrap();
    assert_eq!(admin["AccountType"], "Super");
    assert_eq!(admin["AccountLockState"], "UnLock");

    let mut one = describe(Service::PolarDb, "pc-test0001");
    one.push(("AccountName", "root_admin".into()));
    let (_, body) = describe_call(server.addr, &one).await;
    assert_eq!(body["Accounts"].as_array().unwrap().len(), 1);
    let mut bad_page = describe(Service::PolarDb, "pc-test0001");
    bad_page.push(("PageSize", "7".into()));
    assert_eq!(
        code(&describe_call(server.addr, &bad_page).await),
        (400, "InvalidPageSize.Malformed")
    );

    assert!(sim.set_account_status(
        Service::Rds,
        "rm-test0001",
        "billing",
        AccountStatus::Locked
    ));
    let (status, body) = describe_call(server.addr, &describe(Service::Rds, "rm-test0001")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TotalRecordCount"], 1);
    let billing = &body["Accounts"]["DBInstanceAccount"][0];
    assert_eq!(billing["AccountName"], "billing");
    assert_eq!(billing["DBInstanceId"], "rm-test0001");
    assert_eq!(billing["AccountStatus"], "Unavailable");
    assert!(billing["DatabasePrivileges"]["DatabasePrivilege"].is_array());

    let mut elsewhere = describe(Service::Rds, "rm-test0001");
    elsewhere[3].1 = "ap-southeast-1".into();
    assert_eq!(
        code(&describe_call(server.addr, &elsewhere).await),
        (404, "InvalidDBInstanceName.NotFound")
    );
    assert_eq!(
        code(&describe_call(server.addr, &describe(Service::PolarDb, "pc-nope")).await).1,
        "InvalidDBClusterId.NotFound"
    );
    // A read changes nothing, and counts as a request.
    assert_eq!(
        sim.account(Service::Rds, "rm-test0001", "billing")
            .unwrap()
            .changes,
        0
    );
    assert_eq!(sim.stats().by_code.get("OK"), Some(&3));
}

#[tokio::test]
async fn the_binary_reads_a_cloud_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sim.toml");
    std::fs::write(&config, common::config_text()).unwrap();
    let cloud = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud,
        format!(
            r#"
credential_lifetime = "20m"
accounts = ["{OTHER_UID}"]

[[role]]
arn = "{CROSS_ROLE}"
trust_accounts = ["{PRIMARY_UID}"]

[[resource]]
service = "rds"
id = "rm-test0001"
region = "ap-southeast-1"
owner = "{OTHER_UID}"

[ecs]
role = "{CROSS_ROLE}"
imdsv1 = true

[[credentials_uri]]
name = "app"
role = "{CROSS_ROLE}"
"#
        ),
    )
    .unwrap();
    let cloud_arg = cloud.to_str().unwrap();
    let (_sim, url) = common::spawn_sim_binary_with(&config, &[], &["--cloud", cloud_arg]);
    let addr: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap();
    let (status, body) = assume_role(addr, &Key::primary(), &[("RoleArn", CROSS_ROLE)]).await;
    assert_eq!(status, 200, "{body}");
    let left = expiration(&body["Credentials"])
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left <= Duration::from_secs(1200), "the credential_lifetime");
    let key = Key::from_reply(&body["Credentials"]);
    let mut params = describe(Service::Rds, "rm-test0001");
    params[3].1 = "ap-southeast-1".into();
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(call(addr, &borrowed, &key).await.0, 200);
    assert_eq!(
        code(&call(addr, &borrowed, &Key::primary()).await).1,
        "InvalidDBInstanceName.NotFound"
    );
    let role = reqwest::get(format!("{url}latest/meta-data/ram/security-credentials/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(role, "pwrotd-cross");
    let uri: Value = reqwest::get(format!("{url}_creds/app"))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(uri["Code"], "Success");

    // A bad file is refused at start, naming the flag.
    std::fs::write(&cloud, "[[role]]\narn = \"not-an-arn\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd-sim"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .args(["--cloud", cloud_arg])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cloud") && stderr.contains("not-an-arn"),
        "{stderr}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--cloud") && help.contains("/latest/") && help.contains("AssumeRole"),
        "{help}"
    );
}
