//! Credential sources against pwrotd-sim (issue 14): every source hands out temporary
//! credentials that the simulator makes live 6 seconds; pwrotd's client calls the API for
//! three lifetimes and never meets an expired credential, and no secret or token shows in an
//! error, a log or the audit log.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pwrotd::cloud::{Api, Client, CredentialSource, SetPassword};
use pwrotd::config::Config;
use pwrotd::metrics::Metrics;
use pwrotd::password::Policy;
use pwrotd::sim::{OidcProviderSpec, PRIMARY_UID, RoleSpec, SimServer, unsigned_oidc_token};

use crate::common::{self, ACCOUNTS, KEY_ID, SECRET};

pub(crate) const ROLE: &str = "acs:ram::1234567890123456:role/pwrotd";
pub(crate) const OIDC_ROLE: &str = "acs:ram::1234567890123456:role/pwrotd-rrsa";
pub(crate) const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
pub(crate) const ISSUER: &str = "https://oidc-ack.cn-hangzhou.aliyuncs.com/cafe";
/// How long every temporary credential lives.
pub(crate) const LIFETIME: Duration = Duration::from_secs(6);

/// A simulator whose temporary credentials live [`LIFETIME`], with a role the primary
/// account may assume (also the ECS instance's and the credentials URI `app`'s), and a role
/// for the OIDC provider.
pub(crate) async fn start() -> SimServer {
    let server = common::start_sim().await;
    let sim = &server.sim;
    sim.add_role(RoleSpec::from_arn(ROLE).unwrap().trust_account(PRIMARY_UID));
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
    sim.set_ecs_role(Some(ROLE));
    sim.add_credentials_uri("app", ROLE);
    sim.set_credential_lifetime(Some(LIFETIME));
    server
}

/// A config pointed at the simulator, with this `[cloud.credentials]` body.
fn config_text(server: &SimServer, credentials: &str) -> String {
    let url = server.url();
    format!(
        "[cloud]\nregion_id = \"cn-hangzhou\"\nsts_endpoint = \"{url}\"\nmax_attempts = 1\n\
         [cloud.endpoints]\npolardb = \"{url}\"\nrds = \"{url}\"\n\
         [cloud.credentials]\n{credentials}\n{ACCOUNTS}"
    )
}

fn reset() -> SetPassword {
    SetPassword::new(
        Api::ResetAccountPassword,
        "rm-test0001",
        "billing",
        Policy::default().generate().unwrap(),
        "t",
        None,
    )
}

/// Calls the API every 250 ms for three lifetimes with the source `credentials` selects:
/// every call succeeds. Returns the secrets and tokens the source handed out and the metrics.
async fn run(server: &SimServer, credentials: &str) -> (BTreeSet<String>, Arc<Metrics>) {
    let config = Config::parse(&config_text(server, credentials), Path::new("t.toml")).unwrap();
    let metrics = Metrics::new();
    let source = CredentialSource::discover(&config.cloud.credentials)
        .unwrap()
        .with_observer(metrics.credential_observer("default"));
    assert!(source.is_temporary(), "{}", source.describe());
    let client = Client::new(config.cloud.client.clone(), source.clone()).unwrap();
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < LIFETIME * 3 {
        if let Err(e) = client.call(&reset()).await {
            panic!("call {calls} after {:?}: {e}", started.elapsed());
        }
        let c = source.load().await.unwrap();
        seen.insert(c.secret().to_owned());
        seen.extend(c.token().map(str::to_owned));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let refreshes = metrics
        .credential_refreshes
        .with_label_values(&["default", "success"])
        .get();
    assert!(refreshes >= 5, "{refreshes} refreshes in three lifetimes");
    let failures = metrics
        .credential_refreshes
        .with_label_values(&["default", "failure"])
        .get();
    assert_eq!(failures, 0);
    let expiry = metrics
        .credentials_expiry
        .with_label_values(&["default"])
        .get();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now - 1.0 && expiry < now + 7.0,
        "{expiry} vs {now}"
    );
    let stats = server.sim.stats();
    assert_eq!(
        stats
            .by_code
            .get("InvalidSecurityToken.Expired")
            .copied()
            .unwrap_or(0),
        0,
        "{stats:?}"
    );
    assert!(
        seen.len() >= 6,
        "only {} secrets and tokens seen",
        seen.len()
    );
    let rendered = format!("{source:?} {client:?} {}", metrics.render());
    for s in &seen {
        assert!(
            !rendered.contains(s.as_str()),
            "a secret in Debug or /metrics"
        );
    }
    (seen, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_ram_role_over_imdsv2_for_three_lifetimes() {
    let server = start().await;
    let url = server.url();
    let url = url.as_str().trim_end_matches('/');
    run(
        &server,
        &format!("source = \"ecs_ram_role\"\nmetadata_endpoint = \"{url}\""),
    )
    .await;
    // IMDSv2: a session token before every credentials request.
    let asked = server.sim.stats().credentials;
    let tokens = asked.get("metadata.token OK").copied().unwrap_or(0);
    let fetched = asked.get("metadata.credentials OK").copied().unwrap_or(0);
    assert!(tokens >= 5 && tokens == fetched, "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_uri_for_three_lifetimes() {
    let server = start().await;
    run(
        &server,
        &format!("source = \"uri\"\nuri = \"{}_creds/app\"", server.url()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_for_three_lifetimes() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let token = unsigned_oidc_token(
        ISSUER,
        "sts.aliyuncs.com",
        "system:serviceaccount:db:pwrotd",
        SystemTime::now() + Duration::from_secs(3600),
    );
    std::fs::write(&token_file, &token).unwrap();
    run(
        &server,
        &format!(
            "source = \"oidc\"\nrole_arn = \"{OIDC_ROLE}\"\noidc_provider_arn = \"{PROVIDER}\"\n\
             oidc_token_file = \"{}\"",
            token_file.display()
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_with_assume_role_for_three_lifetimes() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    run(
        &server,
        &format!(
            "source = \"static\"\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret_file = \"{}\"\n\
             assume_role = {{ role_arn = \"{ROLE}\", session_name = \"pwrotd-test\", duration = \"15m\" }}",
            secret.display()
        ),
    )
    .await;
}

/// A CLI config file whose current profile `rot` is ChainableRamRoleArn ([`ROLE`]) on top of
/// the AK profile `ak`; the STS endpoint is the pwrotd config's.
pub(crate) fn write_chained_cli_profile(file: &Path) {
    std::fs::write(
        file,
        serde_json::json!({
            "current": "rot",
            "profiles": [
                {"name": "ak", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET},
                {"name": "rot", "mode": "ChainableRamRoleArn", "source_profile": "ak",
                 "ram_role_arn": ROLE, "expired_seconds": 900}
            ]
        })
        .to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_profile_chained_role_for_three_lifetimes() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    write_chained_cli_profile(&file);
    run(
        &server,
        &format!("source = \"cli_profile\"\nfile = \"{}\"", file.display()),
    )
    .await;
}

/// Bad input, each a clear error naming its source: an STS refusal, a metadata service that
/// answers garbage or is unreachable, an OIDC token that expired. No attempt is sent without
/// valid credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_their_source() {
    let server = start().await;
    let code_of = |credentials: String| {
        let server = &server;
        async move {
            let text = config_text(server, &credentials);
            let config = Config::parse(&text, Path::new("t.toml")).unwrap();
            let source = CredentialSource::discover(&config.cloud.credentials).unwrap();
            let client = Client::new(config.cloud.client.clone(), source).unwrap();
            client.call(&reset()).await.unwrap_err().to_string()
        }
    };
    let refused = code_of(format!(
        "source = \"static\"\naccess_key_id = \"{KEY_ID}\"\naccess_key_secret = \"{SECRET}\"\n\
         assume_role = {{ role_arn = \"acs:ram::1234567890123456:role/absent\" }}"
    ))
    .await;
    assert!(
        refused.contains("credentials (assume_role): STS AssumeRole refused: EntityNotExist.Role"),
        "{refused}"
    );
    let unreachable =
        code_of("source = \"ecs_ram_role\"\nmetadata_endpoint = \"http://127.0.0.1:9\"".into())
            .await;
    assert!(
        unreachable.contains(
            "credentials (ecs_ram_role): the metadata service at http://127.0.0.1:9 is unreachable"
        ),
        "{unreachable}"
    );
    // The simulator's API address answers the credentials path with an API error: garbage.
    let garbage = code_of(format!(
        "source = \"uri\"\nuri = \"{}_creds/absent\"",
        server.url()
    ))
    .await;
    assert!(
        garbage.contains("credentials (uri): the credentials URI") && garbage.contains("HTTP 404"),
        "{garbage}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let expired = unsigned_oidc_token(
        ISSUER,
        "sts.aliyuncs.com",
        "s",
        SystemTime::now() - Duration::from_secs(60),
    );
    std::fs::write(&token_file, expired).unwrap();
    let oidc = code_of(format!(
        "source = \"oidc\"\nrole_arn = \"{OIDC_ROLE}\"\noidc_provider_arn = \"{PROVIDER}\"\n\
         oidc_token_file = \"{}\"",
        token_file.display()
    ))
    .await;
    assert!(
        oidc.contains("credentials (oidc): STS AssumeRoleWithOIDC refused: AuthenticationFail.OIDCToken.Expired"),
        "{oidc}"
    );
    // None of them reached the API.
    let stats = server.sim.stats();
    assert!(
        !stats.by_code.contains_key("OK")
            && !stats.by_code.contains_key("InvalidSecurityToken.Expired"),
        "{stats:?}"
    );
}

/// The binary: `pwrotd rotate --all` with the ECS RAM role, twice a lifetime apart, and
/// nothing of a token in its output or the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rotates_with_a_role_and_shows_no_token() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let url = server.url();
    let metadata = url.as_str().trim_end_matches('/');
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nmetrics_listen = \"\"\n{}",
        state.display(),
        config_text(
            &server,
            &format!("source = \"ecs_ram_role\"\nmetadata_endpoint = \"{metadata}\"")
        )
    );
    let config = dir.path().join("pwrotd.toml");
    std::fs::write(&config, text).unwrap();
    let mut outputs = Vec::new();
    for round in 0..2 {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pwrotd"))
            .args(["rotate", "--all", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(output);
        tokio::time::sleep(LIFETIME + Duration::from_secs(1)).await;
    }
    let mut everything = String::new();
    for o in &outputs {
        everything.push_str(&String::from_utf8_lossy(&o.stdout));
        everything.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    let audit: Vec<_> = walk(&state)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("audit.jsonl"))
        .collect();
    assert!(!audit.is_empty(), "no audit log under {}", state.display());
    for path in audit {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"outcome\":\"success\""), "{text}");
        everything.push_str(&text);
    }
    // The simulator's tokens start with CAIS, as real STS tokens do.
    assert!(
        !everything.contains("CAIS"),
        "a security token in the output"
    );
    let issued = server.sim.issued_credentials();
    assert!(issued.len() >= 2, "{issued:?}");
    let stats = server.sim.stats();
    assert_eq!(stats.by_code.get("InvalidSecurityToken.Expired"), None);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Credentials the API calls expired before their time (a clock ahead of pwrotd's) are
/// dropped at once: the call after the refusal fetches new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_expired_early_are_replaced_at_the_next_call() {
    let server = start().await;
    server.sim.set_credential_lifetime(None);
    let url = server.url();
    let text = config_text(
        &server,
        &format!("source = \"uri\"\nuri = \"{}_creds/app\"", url.as_str()),
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let source = CredentialSource::discover(&config.cloud.credentials).unwrap();
    let client = Client::new(config.cloud.client.clone(), source.clone()).unwrap();
    client.call(&reset()).await.unwrap();
    let first = source.load().await.unwrap();
    assert!(server.sim.expire_credentials(&first.access_key_id));
    let refused = client.call(&reset()).await.unwrap_err();
    assert_eq!(refused.code(), "InvalidSecurityToken.Expired");
    client.call(&reset()).await.unwrap();
    assert_ne!(
        source.load().await.unwrap().access_key_id,
        first.access_key_id
    );
}
