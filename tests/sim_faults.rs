//! The simulator's faults and documented refusals, seen on the wire: each injected error has
//! the documented status and body, and its truth (applied or not) is checked in the simulator's
//! state. Requests are signed by hand, so that no client retry or classification gets between
//! the simulator and the test.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use pwrotd::cloud::{Privilege, Service, sign};
use pwrotd::password::Policy;
use pwrotd::sim::{AccountStatus, Fault, FaultCode, FaultRates, SimServer};
use serde_json::Value;

use crate::common::{self, post, v1_form};

/// One API request: its parameters and the account it changes.
struct Request {
    service: Service,
    resource_id: &'static str,
    account_name: &'static str,
    /// `Some(password)` for the password operations; `None` for GrantAccountPrivilege.
    password: Option<String>,
    params: Vec<(&'static str, String)>,
}

impl Request {
    fn set(api: &'static str, resource_id: &'static str, account_name: &'static str) -> Request {
        let password = Policy::default()
            .generate()
            .expect("generate")
            .expose()
            .to_owned();
        let (service, version, resource_param, password_param) = match api {
            "ResetAccountPassword" => (
                Service::Rds,
                "2014-08-15",
                "DBInstanceId",
                "AccountPassword",
            ),
            "ResetAccount" => (
                Service::PolarDb,
                "2017-08-01",
                "DBClusterId",
                "AccountPassword",
            ),
            _ => (
                Service::PolarDb,
                "2017-08-01",
                "DBClusterId",
                "NewAccountPassword",
            ),
        };
        Request {
            service,
            resource_id,
            account_name,
            params: vec![
                ("Action", api.to_owned()),
                ("Version", version.to_owned()),
                (resource_param, resource_id.to_owned()),
                ("AccountName", account_name.to_owned()),
                (password_param, password.clone()),
            ],
            password: Some(password),
        }
    }

    fn grant(account_name: &'static str, db: &str, privilege: &str) -> Request {
        Request {
            service: Service::PolarDb,
            resource_id: "pc-test0001",
            account_name,
            password: None,
            params: vec![
                ("Action", "GrantAccountPrivilege".to_owned()),
                ("Version", "2017-08-01".to_owned()),
                ("DBClusterId", "pc-test0001".to_owned()),
                ("AccountName", account_name.to_owned()),
                ("DBName", db.to_owned()),
                ("AccountPrivilege", privilege.to_owned()),
            ],
        }
    }

    /// One of each operation, on the shared fixture's accounts.
    fn each_password_operation() -> Vec<Request> {
        vec![
            Request::set("ModifyAccountPassword", "pc-test0001", "app"),
            Request::set("ModifyAccountPasswordZonal", "pc-test0002", "edge"),
            Request::set("ResetAccount", "pc-test0001", "root_admin"),
            Request::set("ResetAccountPassword", "rm-test0001", "billing"),
        ]
    }

    /// Signs and sends it, with a fresh nonce.
    async fn send(&self, addr: SocketAddr) -> (u16, Value) {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let nonce = format!("sim-faults-{}", NONCE.fetch_add(1, Ordering::Relaxed));
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let params: Vec<(&str, &str)> = self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(addr, "", v1_form(&params, &nonce, &now)).await
    }

    /// Whether its password is the account's live one.
    fn is_live(&self, server: &SimServer) -> bool {
        let password = self.password.as_deref().expect("a password request");
        server
            .sim
            .login(self.service, self.resource_id, self.account_name, password)
    }

    fn changes(&self, server: &SimServer) -> u64 {
        server
            .sim
            .account(self.service, self.resource_id, self.account_name)
            .expect("registered")
            .changes
    }
}

/// GETs a `/_sim/` hook and parses its JSON.
async fn get_json<T: serde::de::DeserializeOwned>(url: impl reqwest::IntoUrl) -> T {
    let body = reqwest::get(url)
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("a body");
    serde_json::from_slice(&body).expect("JSON")
}

/// The documented reply to each code, written out here rather than taken from the simulator.
fn documented(
    code: FaultCode,
    service: Service,
    resource_id: &str,
    account: &str,
) -> (u16, String, String) {
    let polardb = service == Service::PolarDb;
    let (status, code, message) = match code {
        FaultCode::ServiceUnavailable => (
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.".to_owned(),
        ),
        FaultCode::InternalError => (
            500,
            "InternalError",
            "The request processing has failed due to some unknown error.".to_owned(),
        ),
        FaultCode::LockTimeout => (
            400,
            "LockTimeout",
            "The request processing has failed due to lock timeout.".to_owned(),
        ),
        FaultCode::DatabaseConnectError => (
            400,
            "Database.ConnectError",
            if polardb {
                format!(
                    "db instance {resource_id} connect failed, please check instance status and database processlist"
                )
            } else {
                "Database connect error. please check instance status and database processlist"
                    .to_owned()
            },
        ),
        FaultCode::AccountUpdateError => (
            400,
            "Account.UpdateError",
            if polardb {
                format!("Instance {resource_id} update Account {account} error")
            } else {
                "Update Account failed, please check your input value".to_owned()
            },
        ),
        FaultCode::DbOperationFailed => (
            400,
            "Lost connection to MySQL server during query",
            "DB Operation Failed:Lost connection to MySQL server during query.".to_owned(),
        ),
        FaultCode::Unknown => (400, "SomethingNew.Unknown", String::new()),
        FaultCode::IncorrectState if polardb => (
            403,
            "IncorrectDBClusterState",
            "Current DB cluster state does not support this operation.".to_owned(),
        ),
        FaultCode::IncorrectState => (
            403,
            "IncorrectDBInstanceState",
            "Current DB instance state does not support this operation.".to_owned(),
        ),
        FaultCode::IncorrectAccountStatus => (
            400,
            "IncorrectAccountStatus",
            "Current account status does not support this operation.".to_owned(),
        ),
        FaultCode::ConcurrentTaskExceeded => (
            403,
            "ConcurrentTaskExceeded",
            "The number of concurrent tasks exceeds the quota.".to_owned(),
        ),
        FaultCode::EngineMigrationActionDisabled => (
            400,
            "EngineMigration.ActionDisabled",
            "Specified action is disabled while custins is in engine migration.".to_owned(),
        ),
    };
    (status, code.to_owned(), message)
}

/// Asserts an error reply: its status, the documented body shape, its code and (unless empty)
/// its message.
fn assert_error(
    (status, body): &(u16, Value),
    (want_status, want_code, want_message): &(u16, String, String),
    what: &str,
) {
    for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(
            body[key].is_string(),
            "{what}: the body lacks {key}: {body}"
        );
    }
    assert_eq!(body["RequestId"].as_str().map(str::len), Some(36), "{what}");
    assert_eq!(
        (*status, body["Code"].as_str()),
        (*want_status, Some(want_code.as_str())),
        "{what}: {body}"
    );
    if !want_message.is_empty() {
        assert_eq!(body["Message"], want_message.as_str(), "{what}");
    }
}

#[tokio::test]
async fn each_error_after_apply_code_answers_as_documented_and_the_change_is_live() {
    let server = common::start_sim().await;
    let mut expected_total = 0;
    for code in FaultCode::MAY_HAVE_BEEN_APPLIED {
        for request in Request::each_password_operation() {
            let before = request.changes(&server);
            server.sim.script_faults([Fault::ErrorAfterApply(code)]);
            let reply = request.send(server.addr).await;
            let what = format!("{code} on {}", request.params[0].1);
            assert_error(
                &reply,
                &documented(
                    code,
                    request.service,
                    request.resource_id,
                    request.account_name,
                ),
                &what,
            );
            assert!(request.is_live(&server), "{what}: the password is not live");
            assert_eq!(request.changes(&server), before + 1, "{what}");
            expected_total += 1;
        }

        // A grant is applied too: the privilege alternates, so each one is a real change.
        let privilege = if expected_total % 2 == 0 {
            "ReadOnly"
        } else {
            "ReadWrite"
        };
        let grant = Request::grant("app", "orders", privilege);
        server.sim.script_faults([Fault::ErrorAfterApply(code)]);
        let reply = grant.send(server.addr).await;
        assert_error(
            &reply,
            &documented(code, Service::PolarDb, "pc-test0001", "app"),
            &format!("{code} on GrantAccountPrivilege"),
        );
        let live = server
            .sim
            .account(Service::PolarDb, "pc-test0001", "app")
            .expect("app");
        assert_eq!(
            live.privileges.get("orders"),
            Some(&privilege.parse::<Privilege>().expect("a privilege")),
            "{code}: the grant was not applied"
        );
        expected_total += 1;
    }

    let stats = server.sim.stats();
    assert_eq!(
        stats.error_after_apply.values().sum::<u64>(),
        expected_total,
        "{stats:?}"
    );
    assert_eq!(stats.applied, expected_total);
    assert_eq!(stats.by_code.get("OK"), None, "{stats:?}");
    for code in FaultCode::MAY_HAVE_BEEN_APPLIED {
        assert_eq!(
            stats.faults.get(&format!("error_after_apply.{code}")),
            Some(&5),
            "{stats:?}"
        );
    }
    assert_eq!(stats.error_after_apply.get("LockTimeout"), Some(&5));
    assert_eq!(
        stats
            .error_after_apply
            .get("Lost connection to MySQL server during query"),
        Some(&5)
    );
    // The reply code is counted as the client saw it, next to the truth above.
    assert_eq!(stats.by_code.get("ServiceUnavailable"), Some(&5));
}

#[tokio::test]
async fn error_before_apply_faults_and_the_old_refusals_apply_nothing() {
    let server = common::start_sim().await;
    let mut faults: Vec<(Fault, (u16, String, String))> = FaultCode::ALL
        .into_iter()
        .map(|code| {
            (
                Fault::ErrorBeforeApply(code),
                documented(code, Service::Rds, "rm-test0001", "billing"),
            )
        })
        .collect();
    faults.extend([
        (
            Fault::ServerError,
            documented(FaultCode::ServiceUnavailable, Service::Rds, "", ""),
        ),
        (
            Fault::LockTimeout,
            documented(FaultCode::LockTimeout, Service::Rds, "", ""),
        ),
        (
            Fault::Throttle,
            (
                400,
                "Throttling.User".to_owned(),
                "Request was denied due to user flow control.".to_owned(),
            ),
        ),
    ]);
    for (fault, expected) in &faults {
        let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
        server.sim.script_faults([*fault]);
        let reply = request.send(server.addr).await;
        assert_error(&reply, expected, &format!("{fault:?}"));
        assert!(!request.is_live(&server), "{fault:?} applied the change");
        assert_eq!(request.changes(&server), 0, "{fault:?}");
    }
    let stats = server.sim.stats();
    assert_eq!(stats.applied, 0);
    assert!(stats.error_after_apply.is_empty(), "{stats:?}");
    assert_eq!(
        stats.faults.values().sum::<u64>(),
        faults.len() as u64,
        "{stats:?}"
    );
    assert_eq!(
        stats.faults.get("error_before_apply.incorrect_state"),
        Some(&1)
    );
    assert_eq!(stats.faults.get("server_error"), Some(&1));
}

#[tokio::test]
async fn an_error_after_apply_on_a_refused_request_is_only_the_refusal() {
    let server = common::start_sim().await;
    let mut request = Request::set("ModifyAccountPassword", "pc-test0001", "app");
    request.params[4].1 = "short".into();
    server
        .sim
        .script_faults([Fault::ErrorAfterApply(FaultCode::LockTimeout)]);
    let (status, body) = request.send(server.addr).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidAccountPassword.Malformed"))
    );
    assert_eq!(request.changes(&server), 0);
    let stats = server.sim.stats();
    assert!(
        stats.error_after_apply.is_empty() && stats.faults.is_empty(),
        "{stats:?}"
    );
}

#[tokio::test]
async fn random_errors_pick_among_the_chosen_codes() {
    let server = common::start_sim().await;
    server.sim.set_fault_rates(FaultRates {
        error_after_apply: 1.0,
        error_after_apply_codes: vec![FaultCode::LockTimeout, FaultCode::Unknown],
        ..FaultRates::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..24 {
        let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
        let (status, body) = request.send(server.addr).await;
        let code = body["Code"].as_str().expect("an error").to_owned();
        assert_eq!(status, 400);
        assert!(
            ["LockTimeout", "SomethingNew.Unknown"].contains(&code.as_str()),
            "{body}"
        );
        assert!(request.is_live(&server), "{code}: not applied");
        seen.insert(code);
    }
    assert_eq!(
        seen.len(),
        2,
        "one code never came up in 24 draws: {seen:?}"
    );
    assert_eq!(
        server.sim.stats().error_after_apply.values().sum::<u64>(),
        24
    );

    // Refusals, from the default set: nothing applied.
    server.sim.set_fault_rates(FaultRates {
        error_before_apply: 1.0,
        ..FaultRates::default()
    });
    for _ in 0..12 {
        let request = Request::set("ModifyAccountPassword", "pc-test0001", "app");
        let (_, body) = request.send(server.addr).await;
        assert!(
            [
                "IncorrectDBClusterState",
                "ConcurrentTaskExceeded",
                "EngineMigration.ActionDisabled"
            ]
            .contains(&body["Code"].as_str().unwrap_or_default()),
            "{body}"
        );
        assert!(!request.is_live(&server));
    }
    let rates: FaultRates = serde_json::from_value(serde_json::json!({
        "error_after_apply": 0.5,
        "error_after_apply_codes": ["internal_error", "db_operation_failed"]
    }))
    .expect("the rates' JSON names the codes in snake case");
    assert_eq!(
        rates.error_after_apply_codes,
        [FaultCode::InternalError, FaultCode::DbOperationFailed]
    );
}

#[tokio::test]
async fn a_missing_rds_instance_is_invalid_db_instance_name_not_found() {
    let server = common::start_sim().await;
    let reply = Request::set("ResetAccountPassword", "rm-nope", "billing")
        .send(server.addr)
        .await;
    assert_error(
        &reply,
        &(
            404,
            "InvalidDBInstanceName.NotFound".into(),
            "The database instance does not exist.".into(),
        ),
        "rm-nope",
    );
}

#[tokio::test]
async fn a_malformed_account_name_is_refused() {
    let server = common::start_sim().await;
    let thirty_three = "a".repeat(33);
    for name in [
        "Bad-Name",
        "9lives",
        "app_",
        "App",
        "a b",
        thirty_three.as_str(),
    ] {
        for api in [
            "ModifyAccountPassword",
            "ResetAccount",
            "ResetAccountPassword",
        ] {
            let resource = if api == "ResetAccountPassword" {
                "rm-test0001"
            } else {
                "pc-test0001"
            };
            let mut request = Request::set(api, resource, "app");
            request.params[3].1 = name.to_owned();
            let reply = request.send(server.addr).await;
            assert_error(
                &reply,
                &(
                    400,
                    "InvalidAccountName.Malformed".into(),
                    "The specified parameter AccountName is not valid.".into(),
                ),
                &format!("{api} {name:?}"),
            );
        }
        let mut grant = Request::grant("app", "orders", "ReadOnly");
        grant.params[3].1 = name.to_owned();
        let (_, body) = grant.send(server.addr).await;
        assert_eq!(body["Code"], "InvalidAccountName.Malformed", "{name:?}");
    }
    assert_eq!(server.sim.stats().applied, 0);
}

#[tokio::test]
async fn a_cluster_or_instance_that_is_not_running_refuses_changes() {
    let server = common::start_sim().await;

    // In-process.
    assert!(
        server
            .sim
            .set_resource_state(Service::PolarDb, "pc-test0001", "ClassChanging")
    );
    for request in [
        Request::set("ModifyAccountPassword", "pc-test0001", "app"),
        Request::set("ResetAccount", "pc-test0001", "root_admin"),
        Request::grant("app", "orders", "ReadOnly"),
    ] {
        let reply = request.send(server.addr).await;
        assert_error(
            &reply,
            &documented(FaultCode::IncorrectState, Service::PolarDb, "", ""),
            &request.params[0].1,
        );
    }
    assert_eq!(server.sim.stats().applied, 0);
    // Another cluster is not affected.
    let zonal = Request::set("ModifyAccountPasswordZonal", "pc-test0002", "edge");
    assert_eq!(zonal.send(server.addr).await.0, 200);
    server
        .sim
        .set_resource_state(Service::PolarDb, "pc-test0001", "Running");
    let request = Request::set("ModifyAccountPassword", "pc-test0001", "app");
    assert_eq!(request.send(server.addr).await.0, 200);
    assert!(request.is_live(&server));

    // Over the /_sim/ hook.
    let client = reqwest::Client::new();
    let hook = |path: &str| format!("{}{path}", server.url().as_str().trim_end_matches('/'));
    let put = |body: Value| {
        client
            .put(hook("/_sim/state"))
            .body(body.to_string())
            .send()
    };
    let response = put(serde_json::json!({
        "service": "rds", "resource_id": "rm-test0001", "state": "Rebooting"
    }))
    .await
    .expect("PUT");
    assert_eq!(response.status(), 200);
    assert_eq!(
        server
            .sim
            .resource_state(Service::Rds, "rm-test0001")
            .as_deref(),
        Some("Rebooting")
    );
    let resources: Value = get_json(hook("/_sim/resources")).await;
    assert!(
        resources
            .as_array()
            .expect("a list")
            .iter()
            .any(|r| r["resource_id"] == "rm-test0001" && r["state"] == "Rebooting"),
        "{resources}"
    );
    let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
    let reply = request.send(server.addr).await;
    assert_error(
        &reply,
        &documented(FaultCode::IncorrectState, Service::Rds, "", ""),
        "rds",
    );
    assert!(!request.is_live(&server));

    for (body, status) in [
        (
            serde_json::json!({"service": "rds", "resource_id": "rm-nope", "state": "Running"}),
            404,
        ),
        (
            serde_json::json!({"service": "ecs", "resource_id": "rm-test0001", "state": "Running"}),
            400,
        ),
        (
            serde_json::json!({"service": "rds", "resource_id": "rm-test0001"}),
            400,
        ),
    ] {
        assert_eq!(
            put(body.clone()).await.expect("PUT").status(),
            status,
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_rds_account_that_is_not_available_is_incorrect_account_status() {
    let server = common::start_sim().await;
    assert!(server.sim.set_account_status(
        Service::Rds,
        "rm-test0001",
        "billing",
        AccountStatus::Locked
    ));
    let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
    let reply = request.send(server.addr).await;
    assert_error(
        &reply,
        &documented(FaultCode::IncorrectAccountStatus, Service::Rds, "", ""),
        "locked",
    );
    assert!(!request.is_live(&server));

    // The status shows in /_sim/accounts; the hook sets it back.
    let url = server.url();
    let accounts: Value = get_json(url.join("/_sim/accounts").expect("url")).await;
    assert!(
        accounts
            .as_array()
            .expect("a list")
            .iter()
            .any(|a| a["account_name"] == "billing" && a["account"]["status"] == "Locked"),
        "{accounts}"
    );
    let response = reqwest::Client::new()
        .put(url.join("/_sim/state").expect("url"))
        .body(
            serde_json::json!({
                "service": "rds", "resource_id": "rm-test0001",
                "account_name": "billing", "status": "Available"
            })
            .to_string(),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), 200);
    assert_eq!(request.send(server.addr).await.0, 200);
    assert!(request.is_live(&server));

    // PolarDB documents no such refusal: a locked account's password changes.
    server.sim.set_account_status(
        Service::PolarDb,
        "pc-test0001",
        "app",
        AccountStatus::Locked,
    );
    let request = Request::set("ModifyAccountPassword", "pc-test0001", "app");
    assert_eq!(request.send(server.addr).await.0, 200);
    assert!(request.is_live(&server));
}

#[tokio::test]
async fn granting_to_a_privileged_account_is_incorrect_account_privilege_type() {
    let server = common::start_sim().await;
    let reply = Request::grant("root_admin", "orders", "ReadWrite")
        .send(server.addr)
        .await;
    assert_error(
        &reply,
        &(
            403,
            "IncorrectAccountPrivilegeType".into(),
            "Current account privilege type does not support this operation.".into(),
        ),
        "grant to root_admin",
    );
    let live = server
        .sim
        .account(Service::PolarDb, "pc-test0001", "root_admin")
        .expect("root_admin");
    assert!(live.privileges.is_empty());
}

#[tokio::test]
async fn faults_are_scripted_over_http_and_counted_in_the_stats() {
    let server = common::start_sim().await;
    let url = server.url();
    let client = reqwest::Client::new();
    let script = |body: &str| {
        client
            .post(url.join("/_sim/script").expect("url"))
            .body(body.to_owned())
            .send()
    };
    let response = script(
        r#"["throttle", {"error_after_apply": "account_update_error"}, {"error_before_apply": "concurrent_task_exceeded"}]"#,
    )
    .await
    .expect("POST");
    assert_eq!(response.status(), 200);
    assert_eq!(
        script(r#"["nope"]"#).await.expect("POST").status(),
        400,
        "an unknown fault is refused"
    );

    let mut codes = Vec::new();
    let mut live = Vec::new();
    for _ in 0..3 {
        let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
        let (_, body) = request.send(server.addr).await;
        codes.push(body["Code"].as_str().unwrap_or_default().to_owned());
        live.push(request.is_live(&server));
    }
    assert_eq!(
        codes,
        [
            "Throttling.User",
            "Account.UpdateError",
            "ConcurrentTaskExceeded"
        ]
    );
    assert_eq!(live, [false, true, false]);

    let stats: Value = get_json(url.join("/_sim/stats").expect("url")).await;
    assert_eq!(
        stats["error_after_apply"]["Account.UpdateError"], 1,
        "{stats}"
    );
    assert_eq!(stats["faults"]["throttle"], 1, "{stats}");
    assert_eq!(
        stats["faults"]["error_after_apply.account_update_error"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["faults"]["error_before_apply.concurrent_task_exceeded"], 1,
        "{stats}"
    );
    assert_eq!(stats["applied"], 1, "{stats}");
}

#[test]
fn fault_codes_parse_from_their_names_and_the_apis_codes() {
    for code in FaultCode::ALL {
        assert_eq!(code.name().parse::<FaultCode>(), Ok(code));
    }
    for (text, code) in [
        ("LockTimeout", FaultCode::LockTimeout),
        ("Database.ConnectError", FaultCode::DatabaseConnectError),
        ("IncorrectDBInstanceState", FaultCode::IncorrectState),
        ("IncorrectDBClusterState", FaultCode::IncorrectState),
        ("SomethingNew.Unknown", FaultCode::Unknown),
    ] {
        assert_eq!(text.parse::<FaultCode>(), Ok(code), "{text}");
    }
    let err = "nope".parse::<FaultCode>().expect_err("unknown");
    assert!(err.contains("lock_timeout"), "{err}");
    // What a fault serialises to, for POST /_sim/script.
    assert_eq!(
        serde_json::to_value(Fault::ErrorAfterApply(FaultCode::DbOperationFailed)).expect("json"),
        serde_json::json!({"error_after_apply": "db_operation_failed"})
    );
    assert_eq!(
        Fault::ErrorBeforeApply(FaultCode::IncorrectState).label(),
        "error_before_apply.incorrect_state"
    );
}

#[tokio::test]
async fn the_sim_binary_injects_errors_after_apply_from_its_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sim.toml");
    std::fs::write(&config, common::config_text()).expect("write");
    let (_reaper, url) = common::spawn_sim_binary_with(
        &config,
        &[],
        &[
            "--error-after-apply",
            "1",
            "--error-after-apply-codes",
            "Database.ConnectError,internal_error",
        ],
    );
    let rates: FaultRates = get_json(url.join("/_sim/faults").expect("url")).await;
    assert_eq!(rates.error_after_apply, 1.0);
    assert_eq!(
        rates.error_after_apply_codes,
        [FaultCode::DatabaseConnectError, FaultCode::InternalError]
    );

    let addr: SocketAddr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    )
    .parse()
    .expect("an address");
    let request = Request::set("ResetAccountPassword", "rm-test0001", "billing");
    let (status, body) = request.send(addr).await;
    assert!(
        [(400, "Database.ConnectError"), (500, "InternalError")]
            .contains(&(status, body["Code"].as_str().unwrap_or_default())),
        "{status} {body}"
    );
    let accounts: Value = get_json(url.join("/_sim/accounts").expect("url")).await;
    let want = sign::sha256_hex(request.password.as_deref().unwrap_or_default().as_bytes());
    assert!(
        accounts
            .as_array()
            .expect("a list")
            .iter()
            .any(|a| a["account_name"] == "billing"
                && a["account"]["password_sha256"] == want.as_str()),
        "the change was not applied: {accounts}"
    );

    // A code the simulator does not know is a usage error, named.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd-sim"))
        .args(["--config"])
        .arg(&config)
        .args(["--error-after-apply-codes", "lock_timeout,Nope"])
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", common::KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", common::SECRET)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"Nope\""), "{stderr}");

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd-sim"))
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--error-after-apply ",
        "--error-after-apply-codes",
        "--error-before-apply ",
        "/_sim/script",
        "/_sim/state",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}
