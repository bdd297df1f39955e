//! Which source supplies the credentials: the one `source` names, or, for `chain` (the
//! default), the first available in the official SDKs' order (aliyun/credentials-go
//! `providers/default.go`, credentials-python's `DefaultCredentialsProvider`):
//!
//! 1. static keys or files in `[cloud.credentials]`;
//! 2. systemd credentials;
//! 3. `ALIBABA_CLOUD_ACCESS_KEY_ID`/`_SECRET` (with `ALIBABA_CLOUD_SECURITY_TOKEN`);
//! 4. OIDC from `ALIBABA_CLOUD_ROLE_ARN`, `_OIDC_PROVIDER_ARN`, `_OIDC_TOKEN_FILE`;
//! 5. the CLI profile file, when it exists;
//! 6. the ECS RAM role, unless `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`;
//! 7. `ALIBABA_CLOUD_CREDENTIALS_URI`.
//!
//! Steps 1 to 5 are decided now, from the environment and local files. The metadata service
//! can only be known by asking it, so 6 and 7 are tried in turn at the first use and the first
//! that answers is kept, as the SDKs do. Then `assume_role`, when given, goes on top.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use url::Url;

use super::cache::{Fetcher, Refreshing};
use super::ecs::EcsRamRole;
use super::oidc::Oidc;
use super::static_keys::{self, StaticKeys};
use super::sts::AssumeRole;
use super::uri::UriSource;
use super::{
    CredentialError, Credentials, CredentialsConfig, DEFAULT_DURATION, DEFAULT_METADATA_ENDPOINT,
    DEFAULT_SESSION_NAME, DEFAULT_STS_ENDPOINT, ENV_CREDENTIALS_URI, ENV_ECS_METADATA,
    ENV_ECS_METADATA_DISABLED, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE, ENV_PROFILE,
    ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, Shared, SourceKind, cli_profile,
};

type Load<'a> = Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + 'a>>;

/// A source, as [`CredentialSource`](super::CredentialSource) holds it.
#[derive(Clone)]
pub(crate) enum Node {
    /// Long-lived keys (their files read again on each load).
    Static(StaticKeys),
    /// Temporary credentials, cached and refreshed.
    Refreshed(Arc<Refreshing>),
    /// The chain's tail: each tried in turn at the first load; the first that answers is kept.
    FirstOf(Arc<FirstOf>),
}

pub(crate) struct FirstOf {
    nodes: Vec<Node>,
    chosen: OnceLock<usize>,
}

impl Node {
    /// The current credentials (boxed: an `assume_role` loads its base).
    pub(crate) fn load(&self) -> Load<'_> {
        Box::pin(async move {
            match self {
                Node::Static(keys) => keys.load(),
                Node::Refreshed(source) => source.load().await,
                Node::FirstOf(first) => first.load().await,
            }
        })
    }

    /// The source's name: `static`, `ecs_ram_role`, `oidc`, `uri`, `assume_role`, `chain`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Static(_) => "static",
            Node::Refreshed(source) => source.name(),
            Node::FirstOf(_) => "chain",
        }
    }

    /// Forgets the cached credentials with this id, wherever they are cached.
    pub(crate) fn forget(&self, access_key_id: &str) {
        match self {
            Node::Static(_) => {}
            Node::Refreshed(source) => source.forget(access_key_id),
            Node::FirstOf(first) => first.nodes.iter().for_each(|n| n.forget(access_key_id)),
        }
    }

    pub(crate) fn is_refreshed(&self) -> bool {
        !matches!(self, Node::Static(_))
    }

    /// Marks the credentials requests are signed with, which set the expiry metric.
    fn mark_top(&self) {
        match self {
            Node::Static(_) => {}
            Node::Refreshed(source) => source.mark_top(),
            Node::FirstOf(first) => first.nodes.iter().for_each(Node::mark_top),
        }
    }
}

impl FirstOf {
    async fn load(&self) -> Result<Credentials, CredentialError> {
        if let Some(&i) = self.chosen.get() {
            return self.nodes[i].load().await;
        }
        let mut errors = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match node.load().await {
                Ok(credentials) => {
                    let _ = self.chosen.set(i);
                    tracing::info!(source = node.kind(), "the credential chain settled");
                    return Ok(credentials);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(CredentialError::source("chain", errors.join("; then ")))
    }
}

/// The chosen source: its origin (for the log), its description (for `pwrotd check`), and
/// the node that loads it.
pub(crate) fn resolve(
    config: &CredentialsConfig,
    env: &dyn Fn(&str) -> Option<String>,
    shared: &Arc<Shared>,
) -> Result<(&'static str, String, Node), CredentialError> {
    let (origin, mut description, mut node) = match config.source {
        SourceKind::Chain => chain(config, env, shared)?,
        kind => {
            let (description, node) = named(kind, config, env, shared)?;
            (kind.name(), format!("{}: {description}", kind.name()), node)
        }
    };
    if let Some(assume) = &config.assume_role {
        description.push_str(&format!(", then assume_role {}", assume.role_arn));
        node = refreshed(
            shared,
            Fetcher::AssumeRole {
                base: node,
                role: AssumeRole {
                    endpoint: sts_endpoint(config),
                    role_arn: assume.role_arn.clone(),
                    session_name: assume.session_name.clone(),
                    external_id: assume.external_id.clone(),
                    duration: assume.duration,
                },
            },
        );
    }
    node.mark_top();
    Ok((origin, description, node))
}

fn refreshed(shared: &Arc<Shared>, fetcher: Fetcher) -> Node {
    Node::Refreshed(Refreshing::new(fetcher, shared.clone()))
}

fn sts_endpoint(config: &CredentialsConfig) -> Url {
    config.sts_endpoint.clone().unwrap_or_else(default_sts)
}

fn default_sts() -> Url {
    Url::parse(DEFAULT_STS_ENDPOINT).unwrap_or_else(|_| unreachable!("a valid constant URL"))
}

fn default_metadata() -> Url {
    Url::parse(DEFAULT_METADATA_ENDPOINT).unwrap_or_else(|_| unreachable!("a valid constant URL"))
}

/// The source `kind` names, from its keys (or their environment variables).
fn named(
    kind: SourceKind,
    config: &CredentialsConfig,
    env: &dyn Fn(&str) -> Option<String>,
    shared: &Arc<Shared>,
) -> Result<(String, Node), CredentialError> {
    match kind {
        SourceKind::Chain | SourceKind::Static => match static_keys::from_config(config)? {
            Some(keys) => Ok(("keys in the config".into(), Node::Static(keys))),
            None => Err(CredentialError::Incomplete(
                "source = \"static\" needs access_key_id(_file) and access_key_secret(_file)"
                    .into(),
            )),
        },
        SourceKind::EcsRamRole => {
            let ecs = EcsRamRole {
                endpoint: config
                    .metadata_endpoint
                    .clone()
                    .unwrap_or_else(default_metadata),
                role_name: config.role_name.clone(),
                imdsv1_fallback: config.imdsv1_fallback,
            };
            Ok((ecs.describe(), refreshed(shared, Fetcher::Ecs(ecs))))
        }
        SourceKind::Oidc => {
            let oidc = oidc(config, env)?.ok_or_else(|| {
                CredentialError::source(
                    "oidc",
                    format!(
                        "give role_arn, oidc_provider_arn and oidc_token_file, or set \
                         {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN} and {ENV_OIDC_TOKEN_FILE}"
                    ),
                )
            })?;
            Ok((oidc.describe(), refreshed(shared, Fetcher::Oidc(oidc))))
        }
        SourceKind::CliProfile => {
            let path = config
                .file
                .clone()
                .or_else(|| cli_profile::default_path(env))
                .ok_or_else(|| {
                    CredentialError::source("cli_profile", "no file given and no $HOME")
                })?;
            let profile = config.profile.clone().or_else(|| env(ENV_PROFILE));
            cli_profile::load(&path, profile.as_deref(), &cli_context(config, shared))
        }
        SourceKind::Uri => {
            let uri = match &config.uri {
                Some(uri) => uri.clone(),
                None => env_uri(env)?.ok_or_else(|| {
                    CredentialError::source("uri", format!("give uri or set {ENV_CREDENTIALS_URI}"))
                })?,
            };
            let uri = UriSource { uri };
            Ok((uri.describe(), refreshed(shared, Fetcher::Uri(uri))))
        }
    }
}

fn cli_context<'a>(
    config: &'a CredentialsConfig,
    shared: &'a Arc<Shared>,
) -> cli_profile::Context<'a> {
    cli_profile::Context {
        shared,
        sts_endpoint: config.sts_endpoint.as_ref(),
    }
}

/// `source = "chain"`: the first available, in the SDKs' order.
fn chain(
    config: &CredentialsConfig,
    env: &dyn Fn(&str) -> Option<String>,
    shared: &Arc<Shared>,
) -> Result<(&'static str, String, Node), CredentialError> {
    if let Some(keys) = static_keys::from_config(config)? {
        let what = "chain: static keys in the config".into();
        return Ok(("config", what, Node::Static(keys)));
    }
    if let Some(keys) = static_keys::systemd(env)? {
        let what = "chain: systemd credentials".into();
        return Ok(("systemd credentials", what, Node::Static(keys)));
    }
    if let Some(keys) = static_keys::environment(env)? {
        let what = "chain: environment (ALIBABA_CLOUD_ACCESS_KEY_ID)".into();
        return Ok(("environment", what, Node::Static(keys)));
    }
    if let Some(oidc) = oidc(config, env)? {
        let what = format!("chain: oidc (environment): {}", oidc.describe());
        return Ok(("oidc", what, refreshed(shared, Fetcher::Oidc(oidc))));
    }
    if let Some(path) = cli_profile::default_path(env).filter(|p| p.exists()) {
        let profile = env(ENV_PROFILE);
        let (what, node) =
            cli_profile::load(&path, profile.as_deref(), &cli_context(config, shared))?;
        return Ok(("cli_profile", format!("chain: cli_profile: {what}"), node));
    }
    let mut tail = Vec::new();
    let mut said = Vec::new();
    let disabled = env(ENV_ECS_METADATA_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !disabled {
        let ecs = EcsRamRole {
            endpoint: default_metadata(),
            role_name: env(ENV_ECS_METADATA).filter(|r| !r.is_empty()),
            imdsv1_fallback: config.imdsv1_fallback,
        };
        said.push(format!("ecs_ram_role ({})", ecs.describe()));
        tail.push(refreshed(shared, Fetcher::Ecs(ecs)));
    }
    if let Some(uri) = env_uri(env)? {
        let uri = UriSource { uri };
        said.push(format!("uri ({})", uri.describe()));
        tail.push(refreshed(shared, Fetcher::Uri(uri)));
    }
    match tail.len() {
        0 => Err(CredentialError::NotFound),
        1 => {
            let node = tail.remove(0);
            let origin = node.kind();
            Ok((origin, format!("chain: {}", said.join("")), node))
        }
        _ => Ok((
            "chain",
            format!("chain: {}, whichever answers first", said.join(", else ")),
            Node::FirstOf(Arc::new(FirstOf {
                nodes: tail,
                chosen: OnceLock::new(),
            })),
        )),
    }
}

/// OIDC from the config's keys, each falling back to its environment variable; `None` when
/// none is given anywhere, an error when only some are.
fn oidc(
    config: &CredentialsConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Oidc>, CredentialError> {
    let pick = |given: &Option<String>, var: &str| {
        given.clone().or_else(|| env(var)).filter(|v| !v.is_empty())
    };
    let c = &config.oidc;
    let role_arn = pick(&c.role_arn, ENV_ROLE_ARN);
    let provider_arn = pick(&c.oidc_provider_arn, ENV_OIDC_PROVIDER_ARN);
    let token_file = c.oidc_token_file.clone().or_else(|| {
        env(ENV_OIDC_TOKEN_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match (role_arn, provider_arn, token_file) {
        (None, None, None) => Ok(None),
        (Some(role_arn), Some(provider_arn), Some(token_file)) => Ok(Some(Oidc {
            endpoint: sts_endpoint(config),
            role_arn,
            provider_arn,
            token_file,
            session_name: pick(&c.role_session_name, ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned()),
            duration: DEFAULT_DURATION,
        })),
        _ => Err(CredentialError::source(
            "oidc",
            format!(
                "set all of {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN} and {ENV_OIDC_TOKEN_FILE} \
                 (or role_arn, oidc_provider_arn and oidc_token_file), not only some"
            ),
        )),
    }
}

/// `ALIBABA_CLOUD_CREDENTIALS_URI`, checked as the `uri` key is.
fn env_uri(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Url>, CredentialError> {
    let Some(text) = env(ENV_CREDENTIALS_URI).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    check_metadata_endpoint(&text, true)
        .map(Some)
        .map_err(|e| CredentialError::source("uri", format!("{ENV_CREDENTIALS_URI}: {e}")))
}

/// A metadata endpoint or credentials URI: `https://`, or `http://` only to the metadata
/// service's own address (100.100.100.200) or loopback, where nothing crosses a network.
/// `with_path`: a credentials URI may have a path and query; an endpoint is bare.
pub fn check_metadata_endpoint(text: &str, with_path: bool) -> Result<Url, String> {
    // Not the text in the messages of a URI: its query may hold a token.
    let shown = if with_path { "the URI" } else { text };
    let url = Url::parse(text).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    let local = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => {
            IpAddr::V4(ip).is_loopback() || ip == std::net::Ipv4Addr::new(100, 100, 100, 200)
        }
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(format!("{shown:?} has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        "http" => {
            return Err(format!(
                "{shown:?} uses plain http to a host that is neither 100.100.100.200 nor \
                 loopback: use https"
            ));
        }
        other => return Err(format!("{shown:?} has scheme {other:?}; use https")),
    }
    if !with_path && (url.path() != "/" || url.query().is_some()) {
        return Err(format!("{shown:?} must be a bare scheme://host[:port]"));
    }
    Ok(url)
}

/// A RAM role ARN: `acs:ram::<16-digit account id>:role/<name>`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let shape = arn
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(":role/"))
        .is_some_and(|(uid, name)| {
            !uid.is_empty()
                && uid.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        });
    if shape {
        Ok(())
    } else {
        Err(format!(
            "{arn:?} is not a RAM role ARN like \"acs:ram::1234567890123456:role/pwrotd\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const NO_ECS: (&str, &str) = (ENV_ECS_METADATA_DISABLED, "true");

    #[tokio::test]
    async fn config_files_come_first_and_are_reread() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "LTAIfile\n").unwrap();
        std::fs::write(&secret, "file-secret\n").unwrap();
        let config = CredentialsConfig {
            access_key_id_file: Some(id),
            access_key_secret_file: Some(secret.clone()),
            ..Default::default()
        };
        let source = CredentialSource::discover_with(
            &config,
            env(&[
                (ENV_ACCESS_KEY_ID, "LTAIenv"),
                (ENV_ACCESS_KEY_SECRET, "env"),
            ]),
        )
        .unwrap();
        assert_eq!(source.origin, "config");
        assert!(!source.is_temporary());
        let c = source.load().await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret()),
            ("LTAIfile", "file-secret")
        );
        std::fs::write(&secret, "rotated\n").unwrap();
        assert_eq!(source.load().await.unwrap().secret(), "rotated");
    }

    #[tokio::test]
    async fn systemd_credentials_before_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SYSTEMD_ACCESS_KEY_ID), "LTAIsd").unwrap();
        std::fs::write(dir.path().join(SYSTEMD_ACCESS_KEY_SECRET), "sd-secret").unwrap();
        let d = dir.path().to_str().unwrap();
        let source = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[
                ("CREDENTIALS_DIRECTORY", d),
                (ENV_ACCESS_KEY_ID, "LTAIenv"),
                (ENV_ACCESS_KEY_SECRET, "env"),
            ]),
        )
        .unwrap();
        assert_eq!(source.origin, "systemd credentials");
        assert_eq!(source.load().await.unwrap().access_key_id, "LTAIsd");
    }

    #[tokio::test]
    async fn environment_with_sts_token() {
        let source = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[
                (ENV_ACCESS_KEY_ID, "STS.id"),
                (ENV_ACCESS_KEY_SECRET, "S3CRET-VALUE"),
                (ENV_SECURITY_TOKEN, "T0KEN-VALUE"),
                (ENV_ROLE_ARN, "acs:ram::1:role/x"),
            ]),
        )
        .unwrap();
        let c = source.load().await.unwrap();
        assert_eq!(c.token(), Some("T0KEN-VALUE"));
        let debug = format!("{c:?} {source:?}");
        assert!(
            !debug.contains("T0KEN") && !debug.contains("S3CRET"),
            "{debug}"
        );
    }

    #[test]
    fn the_chain_in_the_sdks_order() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "eyJ.x.y").unwrap();
        let cli = dir.path().join("config.json");
        std::fs::write(
            &cli,
            r#"{"current":"p","profiles":[{"name":"p","mode":"EcsRamRole","ram_role_name":"r"}]}"#,
        )
        .unwrap();
        let (t, c) = (token.to_str().unwrap(), cli.to_str().unwrap());
        let resolve = |vars: &[(&str, &str)]| {
            CredentialSource::discover_with(&CredentialsConfig::default(), env(vars)).unwrap()
        };
        let oidc = [
            (ENV_ROLE_ARN, "acs:ram::1234567890123456:role/r"),
            (
                ENV_OIDC_PROVIDER_ARN,
                "acs:ram::1234567890123456:oidc-provider/p",
            ),
            (ENV_OIDC_TOKEN_FILE, t),
        ];
        // OIDC before the CLI profile, the CLI profile before the metadata service.
        let mut vars = oidc.to_vec();
        vars.push((ENV_CONFIG_FILE, c));
        assert_eq!(resolve(&vars).origin, "oidc");
        let s = resolve(&[(ENV_CONFIG_FILE, c)]);
        assert_eq!(s.origin, "cli_profile");
        assert!(s.describe().contains("profile p"), "{}", s.describe());
        // The metadata service, then a credentials URI.
        let s = resolve(&[(ENV_CREDENTIALS_URI, "http://127.0.0.1:9/creds?token=T0KEN")]);
        assert_eq!(s.origin, "chain");
        assert!(
            s.describe().contains("ecs_ram_role")
                && s.describe().contains("else uri")
                && !s.describe().contains("T0KEN"),
            "{}",
            s.describe()
        );
        let s = resolve(&[NO_ECS, (ENV_CREDENTIALS_URI, "http://127.0.0.1:9/creds")]);
        assert_eq!(s.origin, "uri");
        assert!(s.is_temporary());
        let s = resolve(&[(ENV_ECS_METADATA, "pwrotd-ecs")]);
        assert_eq!(s.origin, "ecs_ram_role");
        assert!(s.describe().contains("role pwrotd-ecs"), "{}", s.describe());
    }

    #[test]
    fn assume_role_goes_on_top() {
        let config = CredentialsConfig {
            source: SourceKind::EcsRamRole,
            assume_role: Some(AssumeRoleConfig {
                role_arn: "acs:ram::2222222222222222:role/pwrotd".into(),
                session_name: "pwrotd".into(),
                external_id: Some("abcd".into()),
                duration: DEFAULT_DURATION,
            }),
            ..Default::default()
        };
        let s = CredentialSource::discover_with(&config, env(&[])).unwrap();
        assert_eq!(s.node.kind(), "assume_role");
        assert!(
            s.describe()
                .starts_with("ecs_ram_role: metadata service http://100.100.100.200")
                && s.describe()
                    .ends_with("then assume_role acs:ram::2222222222222222:role/pwrotd"),
            "{}",
            s.describe()
        );
    }

    #[test]
    fn missing_and_partial_credentials_are_errors() {
        let none = CredentialSource::discover_with(&CredentialsConfig::default(), env(&[NO_ECS]));
        assert_eq!(none.unwrap_err(), CredentialError::NotFound);
        let half = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[(ENV_ACCESS_KEY_ID, "x")]),
        );
        assert!(matches!(half, Err(CredentialError::Incomplete(_))));
        let config = CredentialsConfig {
            access_key_id: Some("x".into()),
            access_key_secret_file: Some("/nonexistent/secret".into()),
            ..Default::default()
        };
        let err = CredentialSource::discover_with(&config, env(&[])).unwrap_err();
        assert!(matches!(err, CredentialError::Unreadable { .. }), "{err}");
        let partial_oidc = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[(ENV_ROLE_ARN, "acs:ram::1:role/x")]),
        )
        .unwrap_err();
        assert!(
            partial_oidc
                .to_string()
                .starts_with("credentials (oidc): set all of")
        );
        let plain = CredentialSource::discover_with(
            &CredentialsConfig::default(),
            env(&[(ENV_CREDENTIALS_URI, "http://10.0.0.1/creds?t=T0KEN")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            plain.contains("plain http") && !plain.contains("T0KEN"),
            "{plain}"
        );
    }

    #[test]
    fn endpoints_and_arns() {
        assert!(check_metadata_endpoint("http://100.100.100.200", false).is_ok());
        assert!(check_metadata_endpoint("http://127.0.0.1:8080", false).is_ok());
        assert!(check_metadata_endpoint("https://meta.example", false).is_ok());
        assert!(check_metadata_endpoint("http://100.100.100.201", false).is_err());
        assert!(check_metadata_endpoint("http://127.0.0.1/x", false).is_err());
        assert!(check_role_arn("acs:ram::1234567890123456:role/pwrotd").is_ok());
        for bad in [
            "arn:aws:iam::1:role/x",
            "acs:ram::12a:role/x",
            "acs:ram::1:role/",
            "acs:ram::1:user/x",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_oidc_token_file_that_is_missing_is_named() {
        let config = CredentialsConfig {
            source: SourceKind::Oidc,
            oidc: OidcConfig {
                role_arn: Some("acs:ram::1234567890123456:role/r".into()),
                oidc_provider_arn: Some("acs:ram::1234567890123456:oidc-provider/p".into()),
                oidc_token_file: Some("/nonexistent/token".into()),
                role_session_name: None,
            },
            ..Default::default()
        };
        let s = CredentialSource::discover_with(&config, env(&[])).unwrap();
        let err = s.load().await.unwrap_err().to_string();
        assert!(
            err.starts_with("credentials (oidc): token file /nonexistent/token: cannot read"),
            "{err}"
        );
    }
}
