//! `pwrotd demo`: a newcomer's first run, with nothing to set up.
//!
//! It starts the simulator in-process on loopback with accounts of all four rotation APIs (one
//! with grants), then rotates each through the real client, once with V1 and once with V3
//! signatures, and checks each new password by a simulated login. It never prints a password.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cloud::{
    Client, ClientConfig, CredentialSource, Credentials, Endpoints, GrantAccountPrivilege,
    SetPassword, SignatureVersion,
};
use crate::config::{Account, Config};
use crate::random;
use crate::sim::{Fault, Sim, SimServer};

const DEMO_CONFIG: &str = r#"
[cloud]
region_id = "cn-hangzhou"

[[account]]
name = "orders-app"
api = "ModifyAccountPassword"
cluster_id = "pc-demo0001"
account_name = "orders_app"
grants = [{ db = "orders", privilege = "ReadWrite" }, { db = "reports", privilege = "ReadOnly" }]

[[account]]
name = "edge-app"
api = "ModifyAccountPasswordZonal"
cluster_id = "pc-demo0002"
account_name = "edge_app"

[[account]]
name = "cluster-admin"
api = "ResetAccount"
cluster_id = "pc-demo0001"
account_name = "root_admin"

[[account]]
name = "billing"
api = "ResetAccountPassword"
instance_id = "rm-demo0001"
account_name = "billing"
[account.password]
length = 16
require = ["upper", "lower", "digit"]
"#;

/// Runs the demo; the exit code says whether every rotation succeeded.
pub async fn run() -> ExitCode {
    match demo().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pwrotd demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<bool, String> {
    let config = Config::parse(DEMO_CONFIG, Path::new("<demo>")).map_err(|e| e.to_string())?;
    let key_id = format!(
        "LTAIdemo{}",
        random::hex_token::<6>().map_err(|e| e.to_string())?
    );
    let secret = random::hex_token::<20>().map_err(|e| e.to_string())?;
    let sim = Sim::new(key_id.clone(), secret.clone());
    sim.register_config(&config);
    let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    println!(
        "pwrotd demo: the simulated PolarDB and RDS OpenAPI is serving on {}",
        server.url()
    );
    println!("(a throwaway AccessKey {key_id} signs every request; no password is ever printed)\n");

    let mut all_ok = true;
    for (round, signature) in [(1, SignatureVersion::V1), (2, SignatureVersion::V3)] {
        let client = Client::new(
            ClientConfig {
                signature,
                endpoints: Endpoints::both(server.url()),
                backoff_base: Duration::from_millis(50),
                ..config.cloud.client.clone()
            },
            CredentialSource::fixed(Credentials::new(key_id.clone(), secret.clone())),
        )?;
        println!(
            "round {round}: {} signatures",
            match signature {
                SignatureVersion::V1 => "V1 (HMAC-SHA1)",
                SignatureVersion::V3 => "V3 (ACS3-HMAC-SHA256)",
            }
        );
        // The first call of each round meets a throttle, to show a transient failure retried.
        server.sim.script_faults([Fault::Throttle]);
        for (i, account) in config.accounts.iter().enumerate() {
            all_ok &= rotate(&client, &server.sim, account, &format!("demo-{round}-{i}")).await;
        }
        println!();
    }
    let stats = server.sim.stats();
    println!(
        "the simulator answered {} requests: {}",
        stats.requests,
        stats
            .by_code
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\nThis demo exercises the client, signer, password generator and simulator. The daemon \
         (schedules, the file sink, metrics, signals) is the next piece to land."
    );
    server.stop().await;
    Ok(all_ok)
}

async fn rotate(client: &Client, sim: &Sim, account: &Account, token: &str) -> bool {
    let target = format!("{}/{}", account.resource_id, account.account_name);
    let password = match account.policy.generate() {
        Ok(p) => p,
        Err(e) => {
            println!("  {:<14} cannot generate a password: {e}", account.name);
            return false;
        }
    };
    let op = SetPassword::new(
        account.api,
        &account.resource_id,
        &account.account_name,
        password.clone(),
        token,
        account.password_type.as_deref(),
    );
    match client.call(&op).await {
        Ok(reply) => {
            let login = sim.login(
                account.api.service(),
                &account.resource_id,
                &account.account_name,
                password.expose(),
            );
            println!(
                "  {:<14} {:<27} {:<24} ok  RequestId {}  attempts {}  login with the new password: {}",
                account.name,
                account.api,
                target,
                reply.request_id,
                reply.attempts,
                if login { "ok" } else { "FAILED" }
            );
            if !login {
                return false;
            }
        }
        Err(e) => {
            println!(
                "  {:<14} {:<27} {:<24} FAILED: {e}",
                account.name, account.api, target
            );
            return false;
        }
    }
    if account.grants.is_empty() {
        return true;
    }
    let grants: Vec<String> = account
        .grants
        .iter()
        .map(|g| format!("{}={}", g.db, g.privilege.as_str()))
        .collect();
    let op =
        GrantAccountPrivilege::new(&account.resource_id, &account.account_name, &account.grants);
    match client.call(&op).await {
        Ok(reply) => {
            println!(
                "  {:<14} {:<27} {:<24} ok  RequestId {}",
                "",
                "GrantAccountPrivilege",
                grants.join(","),
                reply.request_id
            );
            true
        }
        Err(e) => {
            println!("  {:<14} {:<27} FAILED: {e}", "", "GrantAccountPrivilege");
            false
        }
    }
}
