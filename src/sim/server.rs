//! The simulator's HTTP/1.1 server.
//!
//! `/` takes API requests (GET or POST, parameters in the query or a form body): PolarDB, RDS,
//! and STS (Version 2015-04-01). `/latest/` is the ECS instance metadata service and
//! `/_creds/<name>` serves credential URIs (docs/simulator.md). `/_sim/` holds the test
//! hooks, all JSON:
//! - `GET /_sim/accounts`: the live state, passwords as SHA-256 only, with each account's
//!   `status`, and `GET /_sim/resources`: each cluster's and instance's state;
//! - `GET /_sim/stats`: what the simulator answered, and the faults that took effect;
//! - `GET`/`PUT /_sim/faults`: the random fault rates ([`FaultRates`]);
//! - `POST /_sim/script`: a list of faults the next API requests meet, one each, in order, like
//!   `["throttle", {"error_after_apply": "lock_timeout"}, {"error_before_apply":
//!   "incorrect_state"}]` ([`super::Fault`]);
//! - `PUT /_sim/state`: `{"service": "polardb", "resource_id": "pc-1", "state":
//!   "ClassChanging"}` sets a cluster's or instance's state, and `{"service": "rds",
//!   "resource_id": "rm-1", "account_name": "app", "status": "Locked"}` an account's status;
//! - `PUT /_sim/resource`: `{"service": "polardb", "resource_id": "pc-1", "region":
//!   "ap-southeast-1", "owner": "2222222222222222"}` moves a cluster or instance to another
//!   region or cloud account (either key may be left out; `"region": null` is any region);
//! - `POST /_sim/cloud`: the [`super::CloudFile`] as JSON: accounts, AccessKeys, roles, OIDC
//!   providers, resources, the ECS role, credential URIs, the credential lifetime;
//! - `POST /_sim/credential_faults`: `{"endpoint": "metadata", "faults": ["server_error",
//!   "garbage"]}` for the next requests to `sts`, `metadata` or `uri`
//!   ([`super::CredentialFault`]);
//! - `GET /_sim/credentials`: the temporary credentials issued, without secrets.
//!
//! A drop fault closes the connection without writing a reply.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    AccountStatus, CloudFile, CredentialEndpoint, CredentialFault, Fault, FaultRates, Outcome, Sim,
    auth, metadata,
};
use crate::cloud::Service;

/// The largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// Returned to hyper to close a connection without a reply.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped after apply (injected fault)")
    }
}

impl std::error::Error for DropConnection {}

/// Serves `sim` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, sim: Arc<Sim>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let sim = sim.clone();
                async move { route(&sim, request).await }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    reply_typed(status, body, "application/json;charset=utf-8")
}

fn reply_typed(status: u16, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// The HTTP form of an outcome; a drop closes the connection.
fn send(outcome: Outcome) -> Result<Response<Full<Bytes>>, DropConnection> {
    match outcome {
        Outcome::Reply { status, body, .. } => Ok(reply(status, body)),
        Outcome::Text { status, body } => Ok(reply_typed(status, body, "text/plain")),
        Outcome::Drop { .. } => Err(DropConnection),
    }
}

async fn route(
    sim: &Sim,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(413, r#"{"Code":"RequestTooLarge"}"#.into())),
    };
    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::GET, "/_sim/accounts") => {
            let accounts: Vec<_> = sim
                .accounts()
                .into_iter()
                .map(|(service, resource_id, account_name, account)| {
                    serde_json::json!({
                        "service": service.name(),
                        "resource_id": resource_id,
                        "account_name": account_name,
                        "account": account,
                    })
                })
                .collect();
            Ok(reply(200, serde_json::Value::from(accounts).to_string()))
        }
        (&Method::GET, "/_sim/stats") => Ok(reply(200, serde_json::to_string(&sim.stats()).unwrap_or_default())),
        (&Method::GET, "/_sim/faults") => Ok(reply(200, serde_json::to_string(&sim.fault_rates()).unwrap_or_default())),
        (&Method::PUT, "/_sim/faults") => Ok(set_from_json(&body, |rates: FaultRates| sim.set_fault_rates(rates))),
        (&Method::GET, "/_sim/resources") => Ok(reply(200, resources(sim).to_string())),
        (&Method::POST, "/_sim/script") => Ok(set_from_json(&body, |faults: Vec<Fault>| sim.script_faults(faults))),
        (&Method::PUT, "/_sim/state") => Ok(answer(set_state(sim, &body))),
        (&Method::PUT, "/_sim/resource") => Ok(answer(set_placement(sim, &body))),
        (&Method::POST, "/_sim/cloud") => Ok(answer(apply_cloud(sim, &body))),
        (&Method::POST, "/_sim/credential_faults") => Ok(set_from_json(&body, |f: CredentialFaults| sim.script_credential_faults(f.endpoint, f.faults))),
        (&Method::GET, "/_sim/credentials") => Ok(reply(200, serde_json::to_string(&sim.issued_credentials()).unwrap_or_default())),
        (&Method::GET | &Method::POST, "/") => {
            let request = auth::Request {
                method: parts.method.as_str(),
                query: parts.uri.query().unwrap_or_default(),
                headers: &parts.headers,
                body: &body,
                host: parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()),
            };
            send(sim.handle(&request).await)
        }
        (method, _) if path.starts_with("/latest/") => {
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            send(sim.handle_metadata(&metadata::MetadataRequest {
                method,
                path: &path["/latest/".len()..],
                token: header("x-aliyun-ecs-metadata-token"),
                ttl: header("x-aliyun-ecs-metadata-token-ttl-seconds"),
            }))
        }
        (&Method::GET, _) if path.starts_with("/_creds/") => {
            send(sim.handle_credentials_uri(&path["/_creds/".len()..]))
        }
        _ => Ok(reply(404, r#"{"Code":"InvalidAction.NotFound","Message":"Specified api is not found, please check your url and method."}"#.into())),
    }
}

/// A hook that takes a JSON body: `{}` once `apply` took it, or 400 with why it is not a `T`.
fn set_from_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    apply: impl FnOnce(T),
) -> Response<Full<Bytes>> {
    match serde_json::from_slice::<T>(body) {
        Ok(value) => {
            apply(value);
            reply(200, "{}".into())
        }
        Err(e) => reply(
            400,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

/// A hook's answer: `{}`, or the status and why not.
fn answer(result: Result<(), (u16, String)>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => reply(200, "{}".into()),
        Err((status, e)) => reply(status, serde_json::json!({ "error": e }).to_string()),
    }
}

/// A `POST /_sim/credential_faults` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFaults {
    endpoint: CredentialEndpoint,
    faults: Vec<CredentialFault>,
}

/// A `PUT /_sim/resource` body. `region` absent leaves it; `null` makes it any region.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Placement {
    service: String,
    resource_id: String,
    #[serde(default, with = "serde_with_double_option")]
    region: Option<Option<String>>,
    owner: Option<String>,
}

/// `Option<Option<T>>` that tells an absent key (`None`) from `null` (`Some(None)`).
mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

fn service_named(name: &str) -> Result<Service, (u16, String)> {
    Service::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| (400, format!("unknown service {name:?}")))
}

fn set_placement(sim: &Sim, body: &[u8]) -> Result<(), (u16, String)> {
    let change: Placement = serde_json::from_slice(body).map_err(|e| (400, e.to_string()))?;
    let service = service_named(&change.service)?;
    let id = change.resource_id.as_str();
    if sim.resource_placement(service, id).is_none() {
        return Err((404, "no such resource".to_owned()));
    }
    if let Some(owner) = &change.owner {
        if owner.len() != 16 || !owner.bytes().all(|b| b.is_ascii_digit()) {
            return Err((400, format!("{owner:?} is not a 16-digit uid")));
        }
        sim.set_resource_owner(service, id, owner);
    }
    if let Some(region) = &change.region {
        sim.set_resource_region(service, id, region.as_deref());
    }
    Ok(())
}

fn apply_cloud(sim: &Sim, body: &[u8]) -> Result<(), (u16, String)> {
    let file: CloudFile = serde_json::from_slice(body).map_err(|e| (400, e.to_string()))?;
    file.apply(sim).map_err(|e| (400, e))
}

/// A `PUT /_sim/state` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    service: String,
    resource_id: String,
    /// The cluster's or instance's new state.
    state: Option<String>,
    /// With `status`: the account whose status changes.
    account_name: Option<String>,
    status: Option<AccountStatus>,
}

fn set_state(sim: &Sim, body: &[u8]) -> Result<(), (u16, String)> {
    let change: StateChange = serde_json::from_slice(body).map_err(|e| (400, e.to_string()))?;
    let service = service_named(&change.service)?;
    let found = match (change.state, change.account_name, change.status) {
        (Some(state), None, None) => sim.set_resource_state(service, &change.resource_id, &state),
        (None, Some(account), Some(status)) => {
            sim.set_account_status(service, &change.resource_id, &account, status)
        }
        _ => {
            return Err((
                400,
                "give either state, or account_name and status".to_owned(),
            ));
        }
    };
    if found {
        Ok(())
    } else {
        Err((404, "no such resource or account".to_owned()))
    }
}

fn resources(sim: &Sim) -> serde_json::Value {
    let mut out = Vec::new();
    for service in Service::ALL {
        for (resource_id, state) in sim.resource_states(service) {
            let (owner, region) = sim
                .resource_placement(service, &resource_id)
                .unwrap_or_default();
            out.push(serde_json::json!({
                "service": service.name(),
                "resource_id": resource_id,
                "state": state,
                "owner": owner,
                "region": region,
            }));
        }
    }
    serde_json::Value::from(out)
}

/// A simulator serving on a loopback port, for tests and the demo. Stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (use port 0 for any free port) and serves `sim` in the background.
    pub async fn start(sim: Sim, addr: SocketAddr) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(sim);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, sim.clone(), async {
            let _ = stopped.await;
        }));
        Ok(SimServer {
            addr,
            sim,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}", self.addr))
            .expect("a socket address is a valid URL host")
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
