//! Shared fixtures: a simulator with one account per API, and clients pointed at it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pwrotd::cloud::sign;
use pwrotd::cloud::{
    Client, ClientConfig, CredentialSource, Credentials, Endpoints, SignatureVersion,
};
use pwrotd::config::Config;
use pwrotd::sim::{Sim, SimServer};

pub const KEY_ID: &str = "LTAI5tTestKeyId0001";
/// Holds characters that V1's `secret + "&"` key and URL encoding must not trip on.
pub const SECRET: &str = "test/Secret+Key=&0001";

/// One account per API; `orders-app` has grants.
pub const ACCOUNTS: &str = r#"
[[account]]
name = "orders-app"
api = "ModifyAccountPassword"
cluster_id = "pc-test0001"
account_name = "app"
grants = [{ db = "orders", privilege = "ReadWrite" }, { db = "reports", privilege = "ReadOnly" }]

[[account]]
name = "edge-app"
api = "ModifyAccountPasswordZonal"
cluster_id = "pc-test0002"
account_name = "edge"

[[account]]
name = "admin"
api = "ResetAccount"
cluster_id = "pc-test0001"
account_name = "root_admin"

[[account]]
name = "billing"
api = "ResetAccountPassword"
instance_id = "rm-test0001"
account_name = "billing"
"#;

/// A config with [`ACCOUNTS`]: what the simulator registers, and a pwrotd config for tests.
pub fn config_text() -> String {
    format!("[cloud]\nregion_id = \"cn-hangzhou\"\n{ACCOUNTS}")
}

pub fn config() -> Config {
    Config::parse(&config_text(), Path::new("test.toml")).expect("the test config is valid")
}

pub async fn start_sim() -> SimServer {
    let sim = Sim::new(KEY_ID, SECRET);
    sim.register_config(&config());
    SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1:0")
}

/// A client for tests: fast retries, no meaningful rate limit.
pub fn client_config(server_url: reqwest::Url, signature: SignatureVersion) -> ClientConfig {
    ClientConfig {
        region_id: "cn-hangzhou".into(),
        signature,
        network: pwrotd::cloud::Network::Public,
        endpoints: Endpoints::both(server_url),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        max_attempts: 4,
        requests_per_second: 10_000.0,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(5),
        ca_file: None,
    }
}

pub fn client(server: &SimServer, signature: SignatureVersion) -> Client {
    client_with(
        client_config(server.url(), signature),
        Credentials::new(KEY_ID, SECRET),
    )
}

pub fn client_with(config: ClientConfig, credentials: Credentials) -> Client {
    Client::new(config, CredentialSource::fixed(credentials)).expect("valid client config")
}

/// Kills the child when the test ends, however it ends.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `pwrotd-sim` binary on 127.0.0.1:0 with this config and extra environment, and
/// returns it with the URL it printed.
pub fn spawn_sim_binary(config: &Path, env: &[(&str, &str)]) -> (Reaper, reqwest::Url) {
    spawn_sim_binary_with(config, env, &[])
}

/// [`spawn_sim_binary`] with extra arguments, such as fault flags.
pub fn spawn_sim_binary_with(
    config: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Reaper, reqwest::Url) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pwrotd-sim"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .args(args)
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pwrotd-sim");
    let stdout = child.stdout.take().expect("stdout");
    let reaper = Reaper(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("pwrotd-sim printed its address");
    let url = line
        .trim()
        .strip_prefix("pwrotd-sim listening on ")
        .unwrap_or_else(|| panic!("not the address line: {line:?}"));
    (reaper, reqwest::Url::parse(url).expect("a URL"))
}

pub const BOTH: [SignatureVersion; 2] = [SignatureVersion::V1, SignatureVersion::V3];

/// Reads one HTTP/1.1 request (head and `content-length` body) from a raw stream.
pub async fn read_http_request(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return raw;
        };
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return raw;
            }
        }
    }
}

/// A V1 request built by hand, for the checks the client never trips.
pub fn v1_form(params: &[(&str, &str)], nonce: &str, timestamp: &str) -> String {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend([
        ("AccessKeyId", KEY_ID),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", timestamp),
    ]);
    let signature = sign::v1_signature(SECRET, "POST", all.iter().copied());
    all.push(("Signature", &signature));
    sign::canonical_query(all.iter().copied()).to_string()
}

pub async fn post(addr: SocketAddr, query: &str, body: String) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/?{query}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("a reply");
    (status, serde_json::from_slice(&body).expect("a JSON reply"))
}
