//! The OpenAPI client: signs each attempt afresh, sends its parameters as a form body, reads
//! and classifies the reply, and retries transient failures with full-jitter backoff.
//!
//! It never retries an ambiguous failure: the caller decides what to do with a password that
//! may be live. It never logs a parameter value.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HOST};
use serde::Deserialize;
use tokio::time::Instant;

use super::credentials::{CredentialSource, Credentials};
use super::endpoints::{self, Network};
use super::error::{ApiError, Class, CloudError, ErrorKind, clean_code, clean_request_id, scrub};
use super::ops::{Operation, Service};
use super::sign::{self, V3Input};
use crate::random;

/// The largest reply body read; a larger one is a malformed reply.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
const FORM: &str = "application/x-www-form-urlencoded";

/// Which signature scheme requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    /// HMAC-SHA1 over the canonical query (`SignatureVersion=1.0`).
    #[default]
    V1,
    /// `ACS3-HMAC-SHA256` in the `Authorization` header.
    V3,
}

/// The endpoints `[cloud.endpoints]` names explicitly; a service without one is reached at
/// its default endpoint for the region and network ([`endpoints`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub polardb: Option<Url>,
    pub rds: Option<Url>,
}

impl Endpoints {
    /// Both services at one address, as the simulator serves them.
    pub fn both(url: Url) -> Endpoints {
        Endpoints {
            polardb: Some(url.clone()),
            rds: Some(url),
        }
    }

    /// The endpoint given for `service`, if any.
    pub fn get(&self, service: Service) -> Option<&Url> {
        match service {
            Service::PolarDb => self.polardb.as_ref(),
            Service::Rds => self.rds.as_ref(),
        }
    }
}

/// The proxy for https endpoints that `HTTPS_PROXY` (or `https_proxy`) names, with the
/// exceptions of `NO_PROXY`. `HTTP_PROXY` and `ALL_PROXY` are never used: the only plain-http
/// endpoints pwrotd accepts are on loopback, and their requests must not leave the host.
pub(crate) fn https_proxy_from_env() -> Result<Option<reqwest::Proxy>, String> {
    let Some(url) = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    else {
        return Ok(None);
    };
    // Not the value in the message: a proxy URL may carry a password.
    let proxy = reqwest::Proxy::https(url.trim())
        .map_err(|_| "HTTPS_PROXY is not a valid proxy URL".to_owned())?;
    Ok(Some(proxy.no_proxy(reqwest::NoProxy::from_env())))
}

/// Parses an endpoint, accepting `http://` only for loopback addresses.
pub fn parse_endpoint(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(format!("{s:?} has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "{s:?} uses plain http to a non-loopback host; passwords would cross the network \
                 unencrypted: use https"
            ));
        }
        other => return Err(format!("{s:?} has scheme {other:?}; use https")),
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(format!("{s:?} must be a bare scheme://host[:port]"));
    }
    Ok(url)
}

/// Everything the client needs besides credentials.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The region of a call that names none ([`Client::call`]): `[cloud] region_id`.
    pub region_id: String,
    pub signature: SignatureVersion,
    /// Which of a region's default endpoints to use: `public` or `vpc`.
    pub network: Network,
    /// Explicit endpoints, which win over the defaults of every region.
    pub endpoints: Endpoints,
    /// The whole of one attempt: connect, send, and read the reply.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts per call, counting the first, for transient failures.
    pub max_attempts: u32,
    /// Client-side limit on requests per second, for each service in each region separately.
    pub requests_per_second: f64,
    /// The first retry waits up to this long; each further one up to twice as long.
    pub backoff_base: Duration,
    /// The longest wait between retries.
    pub backoff_cap: Duration,
    /// An extra CA (PEM) to trust for https endpoints, besides the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            region_id: "cn-hangzhou".into(),
            signature: SignatureVersion::V1,
            network: Network::Public,
            endpoints: Endpoints::default(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 5,
            requests_per_second: 10.0,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(20),
            ca_file: None,
        }
    }
}

impl ClientConfig {
    /// Where `service` is reached for a call in `region`: the explicit endpoint if the config
    /// names one, else the default for the region and network. An error names the region when
    /// it has no default endpoint.
    pub fn endpoint(&self, service: Service, region: &str) -> Result<Url, String> {
        if let Some(url) = self.endpoints.get(service) {
            return Ok(url.clone());
        }
        let default =
            endpoints::default_endpoint(service, region, self.network).ok_or_else(|| {
                format!(
                    "{region:?} is not a region with a known {} endpoint (known: {}); set \
                     endpoints.{} explicitly, in [cloud.endpoints] or the profile's",
                    service.name(),
                    endpoints::some_regions(),
                    service.name()
                )
            })?;
        Url::parse(&default).map_err(|e| format!("{default:?} is not a URL: {e}"))
    }
}

/// A successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub request_id: String,
    /// Attempts made, counting the one that succeeded.
    pub attempts: u32,
}

/// Called after every attempt with the action and the reply code (`OK`, the API's error code,
/// `Timeout`, `Network`...): the source of `pwrotd_api_requests_total`.
pub type Observer = std::sync::Arc<dyn Fn(&'static str, &str) + Send + Sync>;

/// Asked before every attempt whether a request may start now; an `Err` says why not
/// (cluster mode: this replica's lease term is over, or too little of it is left).
pub type Gate = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The OpenAPI client. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    credentials: CredentialSource,
    /// Each (service, region) pair called so far: its endpoint and its own rate limiter,
    /// made at its first call.
    lanes: Mutex<HashMap<(Service, String), Arc<Lane>>>,
    /// The spacing of each lane's requests: `1 / requests_per_second`.
    interval: Duration,
    observer: Option<Observer>,
    gate: Option<Gate>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: ClientConfig, credentials: CredentialSource) -> Result<Client, String> {
        for service in Service::ALL {
            if let Some(url) = config.endpoints.get(service) {
                parse_endpoint(url.as_str())?;
            }
        }
        if !(config.requests_per_second > 0.0 && config.requests_per_second.is_finite()) {
            return Err(format!(
                "requests_per_second must be a positive number, not {}",
                config.requests_per_second
            ));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{} holds no usable PEM certificate: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        // No proxy from the environment reaches a plain-http (loopback) endpoint: it would
        // see the form body, password included. HTTPS_PROXY, with NO_PROXY, serves https
        // endpoints only, where the proxy sees a CONNECT tunnel and nothing else.
        builder = builder.no_proxy();
        if let Some(proxy) = https_proxy_from_env()? {
            builder = builder.proxy(proxy);
        }
        let http = builder
            .user_agent(concat!("pwrotd/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .https_only(false)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let interval = Duration::from_secs_f64(1.0 / config.requests_per_second);
        Ok(Client {
            http,
            lanes: Mutex::new(HashMap::new()),
            interval,
            config,
            credentials,
            observer: None,
            gate: None,
        })
    }

    /// Reports every attempt's outcome to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Client {
        self.observer = Some(observer);
        self
    }

    /// Asks `gate` before every attempt: no request starts while it says no.
    pub fn with_gate(mut self, gate: Gate) -> Client {
        self.gate = Some(gate);
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Where its credentials come from.
    pub fn credentials(&self) -> &CredentialSource {
        &self.credentials
    }

    /// Calls `op` in the default region (`[cloud] region_id`); see [`Client::call_in`].
    pub async fn call(&self, op: &dyn Operation) -> Result<Reply, CloudError> {
        self.call_in(&self.config.region_id, op).await
    }

    /// Calls `op` with `RegionId` `region`, at the service's endpoint for that region,
    /// retrying what is worth retrying (docs/protocol.md#retries) up to `max_attempts` with
    /// full-jitter backoff, always with the same parameters. Every attempt is a new request
    /// with a fresh nonce and timestamp. The error of a failed call says whether any of its
    /// attempts may have been applied, whatever the last one said.
    pub async fn call_in(&self, region: &str, op: &dyn Operation) -> Result<Reply, CloudError> {
        self.exchange(region, op).await.map(|(reply, _)| reply)
    }

    /// Calls a read-only `op` as [`Client::call_in`] does, and returns the reply's JSON body
    /// too. An operation that carries a password is refused unsent: its reply is never kept.
    pub async fn query(
        &self,
        region: &str,
        op: &dyn Operation,
    ) -> Result<(Reply, serde_json::Value), CloudError> {
        if op.password().is_some() {
            return Err(CloudError::new(
                op.action(),
                Class::Permanent,
                ErrorKind::Request("a call that carries a password is not a query".into()),
            ));
        }
        let (reply, body) = self.exchange(region, op).await?;
        let json = serde_json::from_slice(&body).map_err(|e| {
            CloudError::new(
                op.action(),
                Class::Transient,
                ErrorKind::MalformedReply {
                    status: 200,
                    detail: format!("the reply is not JSON: {e}"),
                },
            )
        })?;
        Ok((reply, json))
    }

    /// The retry loop of [`Client::call_in`]; a success brings its reply body.
    async fn exchange(
        &self,
        region: &str,
        op: &dyn Operation,
    ) -> Result<(Reply, Vec<u8>), CloudError> {
        let lane = self.lane(op, region)?;
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 0;
        let mut maybe_applied = false;
        loop {
            attempt += 1;
            lane.limiter.acquire().await;
            // Never expired credentials: with none valid, the attempt fails unsent. The gate
            // is asked last, right before the request goes out (a credential fetch may wait).
            let result = match self.credentials.load().await {
                Err(e) => Err(CloudError::new(
                    op.action(),
                    Class::Permanent,
                    ErrorKind::Credentials(e.to_string()),
                )),
                Ok(credentials) => match self.gate.as_ref().map_or(Ok(()), |gate| gate()) {
                    Err(why) => Err(CloudError::new(
                        op.action(),
                        Class::Permanent,
                        ErrorKind::NotLeader(why),
                    )),
                    Ok(()) => {
                        let result = self.attempt(op, &lane, region, &credentials).await;
                        if let Err(e) = &result
                            && e.code() == "InvalidSecurityToken.Expired"
                        {
                            self.credentials.expired(&credentials);
                        }
                        result
                    }
                },
            };
            if let Some(observe) = &self.observer {
                observe(
                    op.action(),
                    result.as_ref().map_or_else(CloudError::code, |_| "OK"),
                );
            }
            match result {
                Ok((request_id, body)) => {
                    tracing::debug!(action = op.action(), region, attempt, %request_id, "call succeeded");
                    let reply = Reply {
                        request_id,
                        attempts: attempt,
                    };
                    return Ok((reply, body));
                }
                Err(error) => {
                    let error = error.after(maybe_applied, attempt);
                    maybe_applied = error.may_have_applied();
                    if !error.retryable() || attempt >= max_attempts {
                        return Err(error);
                    }
                    let ceiling = self
                        .config
                        .backoff_base
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(self.config.backoff_cap);
                    let delay = random::jitter(ceiling);
                    tracing::warn!(
                        action = op.action(),
                        region,
                        attempt,
                        code = error.code(),
                        ?delay,
                        "transient failure, retrying: {error}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The endpoint and rate limiter of `op`'s service in `region`, made at the first call
    /// there. A region without an endpoint refuses the call unsent.
    fn lane(&self, op: &dyn Operation, region: &str) -> Result<Arc<Lane>, CloudError> {
        let service = op.service();
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lane) = lanes.get(&(service, region.to_owned())) {
            return Ok(lane.clone());
        }
        let url = self
            .config
            .endpoint(service, region)
            .and_then(|url| parse_endpoint(url.as_str()))
            .map_err(|e| CloudError::new(op.action(), Class::Permanent, ErrorKind::Request(e)))?;
        let lane = Arc::new(Lane {
            url,
            limiter: RateLimiter::new(self.interval),
        });
        lanes.insert((service, region.to_owned()), lane.clone());
        Ok(lane)
    }

    /// How many (service, region) lanes, each with its own rate limiter, calls have used.
    pub fn lanes_in_use(&self) -> usize {
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// One signed request; returns the `RequestId` of a success.
    async fn attempt(
        &self,
        op: &dyn Operation,
        lane: &Lane,
        region: &str,
        credentials: &Credentials,
    ) -> Result<(String, Vec<u8>), CloudError> {
        let request = self.signed(op, &lane.url, region, credentials)?;
        self.send(op, &lane.url, credentials, request).await
    }

    /// The request for one attempt: its parameters in a form body, signed afresh (a new nonce
    /// and timestamp) with V1 (in the body) or V3 (in the `Authorization` header).
    fn signed(
        &self,
        op: &dyn Operation,
        url: &Url,
        region: &str,
        credentials: &Credentials,
    ) -> Result<reqwest::RequestBuilder, CloudError> {
        let action = op.action();
        let service = op.service();
        let failed = |class, kind| CloudError::new(action, class, kind);
        let nonce = random::hex_token::<16>().map_err(|e| {
            failed(
                Class::Transient,
                ErrorKind::Request(format!("random source failed: {e}")),
            )
        })?;
        let timestamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();

        let mut params = op.params();
        params.push(("RegionId", region));
        let request = self.http.post(url.clone()).header(CONTENT_TYPE, FORM);
        let request = match self.config.signature {
            SignatureVersion::V1 => {
                params.extend([
                    ("Action", action),
                    ("Version", service.version()),
                    ("Format", "JSON"),
                    ("AccessKeyId", credentials.access_key_id.as_str()),
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("SignatureNonce", nonce.as_str()),
                    ("Timestamp", timestamp.as_str()),
                ]);
                if let Some(token) = credentials.token() {
                    params.push(("SecurityToken", token));
                }
                let signature =
                    sign::v1_signature(credentials.secret(), "POST", params.iter().copied());
                params.push(("Signature", &signature));
                let body = sign::canonical_query(params.iter().copied());
                request.body(body.as_bytes().to_vec())
            }
            SignatureVersion::V3 => {
                let body = sign::canonical_query(params.iter().copied());
                let payload_hash = sign::sha256_hex(body.as_bytes());
                let host = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_owned(),
                };
                let mut headers = vec![
                    ("host", host.as_str()),
                    ("x-acs-action", action),
                    ("x-acs-version", service.version()),
                    ("x-acs-date", timestamp.as_str()),
                    ("x-acs-signature-nonce", nonce.as_str()),
                    ("x-acs-content-sha256", payload_hash.as_str()),
                    ("content-type", FORM),
                ];
                if let Some(token) = credentials.token() {
                    headers.push(("x-acs-security-token", token));
                }
                let signature = sign::v3_signature(
                    credentials.secret(),
                    &V3Input {
                        method: "POST",
                        path: "/",
                        query: &[],
                        headers: &headers,
                        payload_hash: &payload_hash,
                    },
                );
                let mut request = request.header(
                    "authorization",
                    signature.authorization(&credentials.access_key_id),
                );
                for (name, value) in &headers {
                    if *name == "host" {
                        request = request.header(HOST, *value);
                    } else if *name != "content-type" {
                        request = request.header(*name, *value);
                    }
                }
                request.body(body.as_bytes().to_vec())
            }
        };
        Ok(request)
    }

    /// Sends one signed request and classifies what comes back.
    async fn send(
        &self,
        op: &dyn Operation,
        url: &Url,
        credentials: &Credentials,
        request: reqwest::RequestBuilder,
    ) -> Result<(String, Vec<u8>), CloudError> {
        let action = op.action();
        let failed = |class, kind| CloudError::new(action, class, kind);
        let secrets: Vec<&str> = op
            .password()
            .map(|p| p.expose())
            .into_iter()
            .chain(Some(credentials.secret()))
            .chain(credentials.token())
            .collect();
        // After the request may have reached the API, a failure is ambiguous when it carried a
        // password, and merely transient when repeating it is harmless.
        let unsure = if op.password().is_some() {
            Class::Ambiguous
        } else {
            Class::Transient
        };

        tracing::trace!(action, endpoint = %url, "sending request");
        let response = request.send().await.map_err(|e| {
            let detail = scrub(&describe(&e), &secrets);
            if e.is_connect() {
                failed(
                    Class::Transient,
                    ErrorKind::Connect {
                        endpoint: url.to_string(),
                        detail,
                    },
                )
            } else if e.is_timeout() {
                failed(unsure, ErrorKind::Timeout(self.config.timeout))
            } else {
                failed(unsure, ErrorKind::Interrupted(detail))
            }
        })?;
        crate::failpoint::crash("after_send");
        let status = response.status().as_u16();
        let body = read_capped(response).await.map_err(|e| match e {
            ReadError::TooLarge => failed(
                unsure,
                ErrorKind::MalformedReply {
                    status,
                    detail: format!("the reply exceeds {MAX_REPLY_BYTES} bytes"),
                },
            ),
            ReadError::Http(e) if e.is_timeout() => {
                failed(unsure, ErrorKind::Timeout(self.config.timeout))
            }
            ReadError::Http(e) => failed(
                unsure,
                ErrorKind::Interrupted(scrub(&describe(&e), &secrets)),
            ),
        })?;
        match parse_reply(status, &body, &secrets) {
            Ok(request_id) => Ok((request_id, body)),
            // An unreadable reply says nothing: as unsure as a lost connection.
            Err((_, kind @ ErrorKind::MalformedReply { .. })) => Err(failed(unsure, kind)),
            Err((class, kind)) => Err(failed(class, kind)),
        }
    }
}

/// Classifies a complete reply. A 2xx needs a `RequestId`; anything else needs the documented
/// error shape. What is neither is returned as ambiguous, for the caller to soften when the
/// request carried no password.
fn parse_reply(status: u16, body: &[u8], secrets: &[&str]) -> Result<String, (Class, ErrorKind)> {
    let malformed = |detail: String| {
        (
            Class::Ambiguous,
            ErrorKind::MalformedReply { status, detail },
        )
    };
    if (200..300).contains(&status) {
        #[derive(Deserialize)]
        struct Success {
            #[serde(rename = "RequestId")]
            request_id: String,
        }
        return match serde_json::from_slice::<Success>(body) {
            // Applied: a request id of an odd shape is replaced, never a reason to doubt it.
            Ok(s) if !s.request_id.is_empty() => {
                Ok(match clean_request_id(&s.request_id, secrets) {
                    id if id.is_empty() => super::error::OTHER_CODE.to_owned(),
                    id => id,
                })
            }
            Ok(_) => Err(malformed("the reply's RequestId is empty".into())),
            Err(e) => Err(malformed(format!(
                "not a JSON object with a RequestId ({e}): {}",
                snippet(body, secrets)
            ))),
        };
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(mut error) if !error.code.is_empty() => {
            error.http_status = status;
            error.code = clean_code(&error.code, secrets);
            error.request_id = clean_request_id(&error.request_id, secrets);
            error.host_id = scrub(&error.host_id, secrets);
            error.message = scrub(&error.message, secrets);
            error.recommend = scrub(&error.recommend, secrets);
            Err((error.class(), ErrorKind::Api(Box::new(error))))
        }
        _ => Err(malformed(format!(
            "not an API error reply: {}",
            snippet(body, secrets)
        ))),
    }
}

/// The start of a body, printable and scrubbed, for an error message.
fn snippet(body: &[u8], secrets: &[&str]) -> String {
    if body.is_empty() {
        return "empty body".into();
    }
    // Scrubbed whole, then cut: a secret that straddles the cut must not leave a prefix.
    let text: String = scrub(&String::from_utf8_lossy(body), secrets)
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{} bytes, starting {text:?}", body.len())
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error with its causes, which say what actually failed.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where one service is reached in one region, and the rate limit of the calls there.
struct Lane {
    url: Url,
    limiter: RateLimiter,
}

/// Spaces requests at least `interval` apart (a token bucket holding one token).
struct RateLimiter {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    fn new(interval: Duration) -> RateLimiter {
        RateLimiter {
            interval,
            next: Mutex::new(None),
        }
    }

    async fn acquire(&self) {
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_refuse_plain_http_off_loopback() {
        assert!(parse_endpoint("https://polardb.aliyuncs.com").is_ok());
        assert!(parse_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(parse_endpoint("http://127.8.9.10").is_ok());
        assert!(parse_endpoint("http://[::1]:9").is_ok());
        assert!(parse_endpoint("http://localhost:9").is_ok());
        for bad in [
            "http://polardb.aliyuncs.com",
            "http://10.0.0.1",
            "http://[::2]",
            "ftp://x",
            "polardb.aliyuncs.com",
            "https://x/path",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(
            parse_reply(200, br#"{"RequestId":"R-1"}"#, &[]).ok(),
            Some("R-1".into())
        );
        for (status, body) in [
            (200, &b""[..]),
            (200, b"<html>ok</html>"),
            (200, br#"{"Foo":1}"#),
            (200, br#"{"RequestId":""}"#),
            (502, b"<html>bad gateway</html>"),
            (400, br#"{"RequestId":"x"}"#),
        ] {
            let (class, kind) = parse_reply(status, body, &[]).unwrap_err();
            assert_eq!(class, Class::Ambiguous, "{status} {body:?}");
            assert!(matches!(kind, ErrorKind::MalformedReply { .. }));
        }
        let (class, kind) = parse_reply(
            400,
            br#"{"RequestId":"R","Code":"InvalidAccountPassword.Malformed","Message":"bad Pw1!Pw1!x"}"#,
            &["Pw1!Pw1!x"],
        )
        .unwrap_err();
        assert_eq!(class, Class::Permanent);
        assert!(!kind.to_string().contains("Pw1!Pw1!x"), "{kind}");
        let (class, _) = parse_reply(
            400,
            br#"{"Code":"Throttling.User","Message":"slow down"}"#,
            &[],
        )
        .unwrap_err();
        assert_eq!(class, Class::Transient);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        /// The reply classifier on arbitrary bytes: a RequestId only from a 2xx, a class
        /// otherwise, never a panic, and never the secret in the error.
        #[test]
        fn fuzz_reply_parser(status in 100u16..600, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500)) {
            match parse_reply(status, &body, &["Zz9!Zz9!Zz9!"]) {
                Ok(id) => proptest::prop_assert!((200..300).contains(&status) && !id.is_empty()),
                Err((_, kind)) => proptest::prop_assert!(!kind.to_string().contains("Zz9!Zz9!Zz9!")),
            }
        }

        /// Mutations of real replies.
        #[test]
        fn fuzz_reply_mutations(status in proptest::prop_oneof![proptest::prelude::Just(200u16), proptest::prelude::Just(400), proptest::prelude::Just(503)], cut in 0usize..120, insert in "[ -~]{0,6}") {
            let real = r#"{"RequestId":"2FED790E-FB61","HostId":"polardb.aliyuncs.com","Code":"Throttling.User","Message":"Zz9!Zz9!Zz9!","Recommend":"https://x"}"#;
            let at = cut.min(real.len());
            let body = format!("{}{insert}{}", &real[..at], &real[at..]);
            if let Err((_, kind)) = parse_reply(status, body.as_bytes(), &["Zz9!Zz9!Zz9!"]) {
                proptest::prop_assert!(!kind.to_string().contains("Zz9!Zz9!Zz9!"));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::new(Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        tokio::time::advance(Duration::from_secs(1)).await;
        let again = Instant::now();
        limiter.acquire().await;
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "an idle limiter does not bank delay"
        );
    }
}
