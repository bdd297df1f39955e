//! The client against the simulator: all five operations with V1 and V3, each failure class,
//! and the simulator's documented checks.

use std::time::{Duration, SystemTime};

use pwrotd::cloud::sign;
use pwrotd::cloud::{
    Api, Class, Credentials, ErrorKind, GrantAccountPrivilege, Operation, Privilege, Service,
    SetPassword, SignatureVersion,
};
use pwrotd::password::{Password, Policy};
use pwrotd::sim::{Fault, FaultRates};
use tokio::io::AsyncWriteExt;

use crate::common::{self, BOTH, KEY_ID, SECRET, post, v1_form};

fn fresh() -> Password {
    Policy::default().generate().expect("generate")
}

fn set(api: Api, resource: &str, account: &str, password: &Password, token: &str) -> SetPassword {
    SetPassword::new(api, resource, account, password.clone(), token, None)
}

#[tokio::test]
async fn all_five_operations_with_v1_and_v3() {
    let server = common::start_sim().await;
    let config = common::config();
    for signature in BOTH {
        let client = common::client(&server, signature);
        for (i, account) in config.accounts.iter().enumerate() {
            let password = account.policy.generate().expect("generate");
            let op = set(
                account.api,
                &account.resource_id,
                &account.account_name,
                &password,
                &format!("t-{signature:?}-{i}"),
            );
            let reply = client
                .call(&op)
                .await
                .unwrap_or_else(|e| panic!("{} {signature:?}: {e}", account.api));
            assert_eq!(reply.attempts, 1);
            assert_eq!(reply.request_id.len(), 36);
            let live = server
                .sim
                .account(
                    account.api.service(),
                    &account.resource_id,
                    &account.account_name,
                )
                .expect("registered");
            assert_eq!(
                live.password.as_ref().map(Password::expose),
                Some(password.expose()),
                "{}",
                account.api
            );
            assert!(server.sim.login(
                account.api.service(),
                &account.resource_id,
                &account.account_name,
                password.expose()
            ));
        }

        let orders = config.account("orders-app").expect("orders-app");
        let grant =
            GrantAccountPrivilege::new(&orders.resource_id, &orders.account_name, &orders.grants);
        client
            .call(&grant)
            .await
            .unwrap_or_else(|e| panic!("grant {signature:?}: {e}"));
        let live = server
            .sim
            .account(Service::PolarDb, "pc-test0001", "app")
            .expect("app");
        assert_eq!(live.privileges.get("orders"), Some(&Privilege::ReadWrite));
        assert_eq!(live.privileges.get("reports"), Some(&Privilege::ReadOnly));
    }
    assert_eq!(server.sim.stats().by_code.get("OK"), Some(&10));
}

#[tokio::test]
async fn sts_credentials_sign_the_security_token() {
    let server = common::start_sim().await;
    for signature in BOTH {
        let client = common::client_with(
            common::client_config(server.url(), signature),
            Credentials::new(KEY_ID, SECRET).with_security_token("CAIS+sts/token=="),
        );
        let password = fresh();
        client
            .call(&set(
                Api::ResetAccountPassword,
                "rm-test0001",
                "billing",
                &password,
                "t",
            ))
            .await
            .unwrap_or_else(|e| panic!("{signature:?}: {e}"));
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let server = common::start_sim().await;
    for signature in BOTH {
        let client = common::client(&server, signature);
        server
            .sim
            .script_faults([Fault::Throttle, Fault::ServerError, Fault::LockTimeout]);
        let password = fresh();
        let reply = client
            .call(&set(
                Api::ModifyAccountPassword,
                "pc-test0001",
                "app",
                &password,
                "t",
            ))
            .await
            .expect("succeeds after three transient failures");
        // Each retry is a new request: a reused nonce would have been refused.
        assert_eq!(reply.attempts, 4);
        assert!(
            server
                .sim
                .login(Service::PolarDb, "pc-test0001", "app", password.expose())
        );
    }
    let stats = server.sim.stats();
    for code in ["Throttling.User", "ServiceUnavailable", "LockTimeout"] {
        assert_eq!(stats.by_code.get(code), Some(&2), "{code}");
    }
    assert_eq!(stats.by_code.get("SignatureNonceUsed"), None);
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let server = common::start_sim().await;
    let client = common::client(&server, SignatureVersion::V1);
    server.sim.script_faults([Fault::Throttle; 10]);
    let err = client
        .call(&set(
            Api::ModifyAccountPassword,
            "pc-test0001",
            "app",
            &fresh(),
            "t",
        ))
        .await
        .expect_err("every attempt is throttled");
    assert_eq!(
        (err.class(), err.attempts, err.code()),
        (Class::Transient, 4, "Throttling.User")
    );
    assert_eq!(server.sim.stats().requests, 4);
}

#[tokio::test]
async fn permanent_failures_are_attempted_once() {
    let server = common::start_sim().await;
    let weak = Password::new("short".into());
    let cases: [(SetPassword, &str); 6] = [
        (
            set(Api::ModifyAccountPassword, "pc-test0001", "app", &weak, "t"),
            "InvalidAccountPassword.Malformed",
        ),
        (
            set(
                Api::ResetAccountPassword,
                "rm-test0001",
                "billing",
                &weak,
                "t",
            ),
            "InvalidAccountPassword.Format",
        ),
        (
            set(Api::ModifyAccountPassword, "pc-nope", "app", &fresh(), "t"),
            "InvalidDBClusterId.NotFound",
        ),
        (
            set(
                Api::ResetAccountPassword,
                "rm-nope",
                "billing",
                &fresh(),
                "t",
            ),
            "InvalidDBInstanceName.NotFound",
        ),
        (
            set(
                Api::ModifyAccountPasswordZonal,
                "pc-test0002",
                "ghost",
                &fresh(),
                "t",
            ),
            "InvalidAccountName.NotFound",
        ),
        (
            set(Api::ResetAccount, "pc-test0001", "app", &fresh(), "t"),
            "IncorrectAccountPrivilegeType",
        ),
    ];
    for signature in BOTH {
        let client = common::client(&server, signature);
        for (op, code) in &cases {
            let before = server.sim.stats().requests;
            let err = client.call(op).await.expect_err(code);
            assert_eq!(
                (err.class(), err.attempts, err.code()),
                (Class::Permanent, 1, *code),
                "{signature:?}"
            );
            assert_eq!(
                server.sim.stats().requests,
                before + 1,
                "{code} was retried"
            );
            let text = err.to_string();
            let password = op.password().expect("carries a password").expose();
            assert!(!text.contains(password), "{text}");
            assert!(err.request_id().is_some(), "{text}");
        }
    }
    let live = server
        .sim
        .account(Service::PolarDb, "pc-test0001", "app")
        .expect("app");
    assert!(live.password.is_none(), "a refused change was applied");
}

#[tokio::test]
async fn wrong_secret_is_a_signature_mismatch() {
    let server = common::start_sim().await;
    for signature in BOTH {
        let client = common::client_with(
            common::client_config(server.url(), signature),
            Credentials::new(KEY_ID, "not-the-secret"),
        );
        let err = client
            .call(&set(
                Api::ModifyAccountPassword,
                "pc-test0001",
                "app",
                &fresh(),
                "t",
            ))
            .await
            .expect_err("wrong secret");
        assert_eq!(
            (err.class(), err.code(), err.attempts),
            (Class::Permanent, "SignatureDoesNotMatch", 1)
        );
        let text = err.to_string();
        assert!(text.contains("AccessKey secret does not match"), "{text}");
        assert!(!text.contains("not-the-secret"), "{text}");

        let unknown = common::client_with(
            common::client_config(server.url(), signature),
            Credentials::new("LTAIunknown", SECRET),
        );
        let err = unknown
            .call(&set(
                Api::ModifyAccountPassword,
                "pc-test0001",
                "app",
                &fresh(),
                "t",
            ))
            .await
            .expect_err("unknown key");
        assert_eq!(
            (err.class(), err.code()),
            (Class::Permanent, "InvalidAccessKeyId.NotFound")
        );
    }
}

#[tokio::test]
async fn drop_after_apply_is_ambiguous_and_the_password_is_live() {
    let server = common::start_sim().await;
    for signature in BOTH {
        let client = common::client(&server, signature);
        for fault in [Fault::DropAfterApply, Fault::Garbage] {
            let password = fresh();
            server.sim.script_faults([fault]);
            let err = client
                .call(&set(
                    Api::ResetAccountPassword,
                    "rm-test0001",
                    "billing",
                    &password,
                    "t",
                ))
                .await
                .expect_err("no readable reply");
            assert_eq!(
                (err.class(), err.attempts),
                (Class::Ambiguous, 1),
                "{fault:?} {signature:?}: {err}"
            );
            assert!(err.to_string().contains("may have been applied"));
            assert!(!err.to_string().contains(password.expose()));
            assert!(
                server
                    .sim
                    .login(Service::Rds, "rm-test0001", "billing", password.expose()),
                "{fault:?}"
            );
        }
    }
}

#[tokio::test]
async fn re_applying_the_same_password_settles_an_ambiguous_zonal_call() {
    let server = common::start_sim().await;
    let client = common::client(&server, SignatureVersion::V3);
    let password = fresh();
    let op = set(
        Api::ModifyAccountPasswordZonal,
        "pc-test0002",
        "edge",
        &password,
        "pwrotd-edge-app-7",
    );
    server.sim.script_faults([Fault::DropAfterApply]);
    assert_eq!(
        client.call(&op).await.expect_err("dropped").class(),
        Class::Ambiguous
    );
    let first = server
        .sim
        .account(Service::PolarDb, "pc-test0002", "edge")
        .expect("edge");
    // The same ClientToken with the same password: answered, not applied twice.
    client.call(&op).await.expect("replay succeeds");
    let again = server
        .sim
        .account(Service::PolarDb, "pc-test0002", "edge")
        .expect("edge");
    assert_eq!((first.changes, again.changes), (1, 1));
    // The same token with another password is refused.
    let other = set(
        Api::ModifyAccountPasswordZonal,
        "pc-test0002",
        "edge",
        &fresh(),
        "pwrotd-edge-app-7",
    );
    let err = client.call(&other).await.expect_err("token reuse");
    // Not on the list of definite refusals (docs/protocol.md#failure-rules): it may have been applied.
    assert_eq!(
        (err.class(), err.code(), err.may_have_applied()),
        (Class::Ambiguous, "IdempotentParameterMismatch", true)
    );
    assert!(
        server
            .sim
            .login(Service::PolarDb, "pc-test0002", "edge", password.expose())
    );
}

#[tokio::test]
async fn an_unreadable_grant_reply_is_retried_because_grants_are_idempotent() {
    let server = common::start_sim().await;
    let client = common::client(&server, SignatureVersion::V1);
    let orders = common::config()
        .account("orders-app")
        .expect("orders")
        .clone();
    server
        .sim
        .script_faults([Fault::DropAfterApply, Fault::Garbage]);
    let reply = client
        .call(&GrantAccountPrivilege::new(
            &orders.resource_id,
            &orders.account_name,
            &orders.grants,
        ))
        .await
        .expect("retried");
    assert_eq!(reply.attempts, 3);

    let mut bad = orders.grants.clone();
    bad[0].db = "nope".into();
    let err = client
        .call(&GrantAccountPrivilege::new(
            &orders.resource_id,
            &orders.account_name,
            &bad,
        ))
        .await
        .expect_err("unknown database");
    assert_eq!(
        (err.class(), err.code()),
        (Class::Permanent, "InvalidDBName.NotFound")
    );
}

#[tokio::test]
async fn a_timeout_after_sending_is_ambiguous() {
    let server = common::start_sim().await;
    server.sim.set_fault_rates(FaultRates {
        latency: Duration::from_millis(1500),
        ..FaultRates::default()
    });
    let mut config = common::client_config(server.url(), SignatureVersion::V1);
    config.timeout = Duration::from_millis(300);
    let client = common::client_with(config, Credentials::new(KEY_ID, SECRET));
    let password = fresh();
    let err = client
        .call(&set(
            Api::ModifyAccountPassword,
            "pc-test0001",
            "app",
            &password,
            "t",
        ))
        .await
        .expect_err("times out");
    assert_eq!(
        (err.class(), err.code(), err.attempts),
        (Class::Ambiguous, "Timeout", 1)
    );
    assert!(
        server
            .sim
            .login(Service::PolarDb, "pc-test0001", "app", password.expose())
    );
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = reqwest::Url::parse(&format!("http://{addr}")).expect("url");
    let client = common::client_with(
        common::client_config(url, SignatureVersion::V1),
        Credentials::new(KEY_ID, SECRET),
    );
    let err = client
        .call(&set(
            Api::ModifyAccountPassword,
            "pc-test0001",
            "app",
            &fresh(),
            "t",
        ))
        .await
        .expect_err("nothing listens");
    assert_eq!(
        (err.class(), err.code(), err.attempts),
        (Class::Transient, "Network", 4)
    );
    assert!(matches!(err.kind(), ErrorKind::Connect { .. }));
}

/// Reads one HTTP request from a raw loopback listener and answers it with `reply`.
async fn capture_one(listener: &tokio::net::TcpListener, reply: &str) -> String {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let raw = common::read_http_request(&mut stream).await;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.write_all(response.as_bytes()).await.expect("write");
    String::from_utf8_lossy(&raw).to_string()
}

#[tokio::test]
async fn passwords_travel_in_the_form_body_never_in_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = reqwest::Url::parse(&format!("http://{}", listener.local_addr().expect("addr")))
        .expect("url");
    for signature in BOTH {
        let client = common::client_with(
            common::client_config(url.clone(), signature),
            Credentials::new(KEY_ID, SECRET),
        );
        let password = Password::new("Ab1!@#$%^&*()_+-=x".into());
        let encoded = sign::percent_encode(password.expose());
        let mut nonces = Vec::new();
        for _ in 0..2 {
            let op = set(Api::ModifyAccountPassword, "pc-1", "app", &password, "t");
            let (request, reply) = tokio::join!(
                capture_one(&listener, r#"{"RequestId":"R-1"}"#),
                client.call(&op)
            );
            reply.expect("the capture server answers");
            let (head, body) = request.split_once("\r\n\r\n").expect("a request");
            let request_line = head.lines().next().expect("request line");
            assert_eq!(request_line, "POST / HTTP/1.1", "{signature:?}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/x-www-form-urlencoded")
            );
            assert!(
                !head.contains(password.expose()) && !head.contains(encoded.as_str()),
                "password in the headers"
            );
            assert!(
                body.contains(&format!("NewAccountPassword={}", encoded.as_str())),
                "{signature:?}: {body}"
            );
            assert!(!request.contains(SECRET), "the AccessKey secret was sent");
            let nonce = match signature {
                SignatureVersion::V1 => body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("SignatureNonce="))
                    .map(str::to_owned),
                SignatureVersion::V3 => head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-acs-signature-nonce: "))
                    .map(str::to_owned),
            };
            nonces.push(nonce.expect("a nonce is sent"));
        }
        assert_ne!(nonces[0], nonces[1], "every request gets a fresh nonce");
    }
}

#[tokio::test]
async fn the_simulator_checks_nonce_timestamp_version_and_parameters() {
    let server = common::start_sim().await;
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let base = [
        ("Action", "ResetAccountPassword"),
        ("Version", "2014-08-15"),
        ("DBInstanceId", "rm-test0001"),
        ("AccountName", "billing"),
        ("AccountPassword", "Pw123456"),
    ];

    let form = v1_form(&base, "nonce-1", &now);
    let (status, ok) = post(server.addr, "", form.clone()).await;
    assert_eq!((status, ok["RequestId"].is_string()), (200, true), "{ok}");
    let (status, replay) = post(server.addr, "", form).await;
    assert_eq!(
        (status, replay["Code"].as_str()),
        (400, Some("SignatureNonceUsed"))
    );
    for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(replay[key].is_string(), "error body lacks {key}: {replay}");
    }

    let old = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(16 * 60))
        .to_string();
    let (_, expired) = post(server.addr, "", v1_form(&base, "nonce-2", &old)).await;
    assert_eq!(expired["Code"], "InvalidTimeStamp.Expired");

    let (_, malformed) = post(server.addr, "", v1_form(&base, "nonce-3", "yesterday")).await;
    assert_eq!(malformed["Code"], "InvalidTimeStamp.Format");

    let mut wrong_version = base;
    wrong_version[1] = ("Version", "2017-08-01");
    let (status, e) = post(server.addr, "", v1_form(&wrong_version, "nonce-4", &now)).await;
    assert_eq!(
        (status, e["Code"].as_str()),
        (404, Some("InvalidAction.NotFound"))
    );
    wrong_version[1] = ("Version", "2099-01-01");
    let (_, e) = post(server.addr, "", v1_form(&wrong_version, "nonce-5", &now)).await;
    assert_eq!(e["Code"], "InvalidVersion");

    let (_, e) = post(server.addr, "", v1_form(&base[..4], "nonce-6", &now)).await;
    assert_eq!(e["Code"], "MissingAccountPassword");

    // The official SDKs put V1 parameters in the query string of a POST; that works too.
    let form = v1_form(&base, "nonce-7", &now);
    let (status, e) = post(server.addr, &form, String::new()).await;
    assert_eq!(status, 200, "{e}");

    // A tampered parameter breaks the signature.
    let form = v1_form(&base, "nonce-8", &now).replace("Pw123456", "Pw123457");
    let (_, e) = post(server.addr, "", form).await;
    assert_eq!(e["Code"], "SignatureDoesNotMatch");

    let (_, e) = post(server.addr, "", "Action=ResetAccountPassword".into()).await;
    assert_eq!(e["Code"], "MissingSignature");
}

#[tokio::test]
async fn clock_skew_is_reported_plainly() {
    let server = common::start_sim().await;
    let now = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600))
        .to_string();
    let (_, body) = post(
        server.addr,
        "",
        v1_form(
            &[
                ("Action", "ResetAccountPassword"),
                ("Version", "2014-08-15"),
            ],
            "n",
            &now,
        ),
    )
    .await;
    let error: pwrotd::cloud::ApiError = serde_json::from_value(body).expect("documented shape");
    assert_eq!(error.class(), Class::Permanent);
    assert!(error.to_string().starts_with("clock skew"), "{error}");
}

#[tokio::test]
async fn the_client_rate_limit_spaces_requests_per_service() {
    let server = common::start_sim().await;
    let mut config = common::client_config(server.url(), SignatureVersion::V1);
    config.requests_per_second = 20.0;
    let client = common::client_with(config, Credentials::new(KEY_ID, SECRET));
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        client
            .call(&set(
                Api::ModifyAccountPassword,
                "pc-test0001",
                "app",
                &fresh(),
                "t",
            ))
            .await
            .expect("ok");
    }
    // Five requests at 20/s need at least four 50 ms gaps. A lower bound only: never an upper.
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}
