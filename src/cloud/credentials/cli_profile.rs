//! The Alibaba Cloud CLI's profile file (`~/.aliyun/config.json`, or
//! `ALIBABA_CLOUD_CONFIG_FILE`): `{"current": NAME, "profiles": [{"name", "mode", ...}]}`, with
//! the modes the official SDKs read: `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC` and
//! `ChainableRamRoleArn` (a role assumed with another profile's credentials).
//!
//! The file is read once, at start. Errors name the file and the profile, never a value.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::cache::{Fetcher, Refreshing};
use super::chain::Node;
use super::ecs::EcsRamRole;
use super::oidc::Oidc;
use super::static_keys::StaticKeys;
use super::sts::AssumeRole;
use super::{
    CredentialError, DEFAULT_DURATION, DEFAULT_METADATA_ENDPOINT, DEFAULT_SESSION_NAME,
    DURATION_RANGE, Shared,
};

/// How deep `ChainableRamRoleArn` profiles may nest (and so no loop runs forever).
const MAX_DEPTH: usize = 8;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<Profile>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Profile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_arn: String,
    ram_session_name: String,
    expired_seconds: u64,
    sts_region: String,
    source_profile: String,
    ram_role_name: String,
    oidc_token_file: String,
    oidc_provider_arn: String,
}

/// What [`load`] needs besides the file.
pub(crate) struct Context<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    /// `[cloud] sts_endpoint`, when given: it wins over a profile's `sts_region`.
    pub(crate) sts_endpoint: Option<&'a Url>,
}

/// The profile `name` (or the file's current one) of the file at `path`, as a source, with
/// its description for `pwrotd check`.
pub(crate) fn load(
    path: &Path,
    name: Option<&str>,
    cx: &Context<'_>,
) -> Result<(String, Node), CredentialError> {
    let fail =
        |m: String| CredentialError::source("cli_profile", format!("{}: {m}", path.display()));
    let text = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?,
    );
    let file: File = serde_json::from_slice(&text).map_err(|e| {
        // The position only: serde's message may quote a value.
        fail(format!(
            "is not a CLI config file (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let name = name
        .filter(|n| !n.is_empty())
        .unwrap_or(file.current.as_str());
    if name.is_empty() {
        return Err(fail("names no current profile; set profile".into()));
    }
    let node = build(&file, name, cx, 0).map_err(fail)?;
    Ok((format!("{}, profile {name}", path.display()), node))
}

/// The default file: `ALIBABA_CLOUD_CONFIG_FILE`, else `~/.aliyun/config.json`.
pub(crate) fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(file) = env(super::ENV_CONFIG_FILE).filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".aliyun").join("config.json"))
}

fn build(file: &File, name: &str, cx: &Context<'_>, depth: usize) -> Result<Node, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "profile {name:?}: source_profile nests deeper than {MAX_DEPTH} (a loop?)"
        ));
    }
    let p = file
        .profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("no profile named {name:?}"))?;
    let need = |value: &str, key: &str| {
        if value.is_empty() {
            Err(format!("profile {name:?} (mode {}) has no {key}", p.mode))
        } else {
            Ok(value.to_owned())
        }
    };
    let keys = || -> Result<StaticKeys, String> {
        let token = (p.mode == "StsToken")
            .then(|| need(&p.sts_token, "sts_token").map(SecretString::from))
            .transpose()?;
        Ok(StaticKeys::inline(
            need(&p.access_key_id, "access_key_id")?,
            SecretString::from(need(&p.access_key_secret, "access_key_secret")?),
            token,
        ))
    };
    let refreshing = |fetcher| Node::Refreshed(Refreshing::new(fetcher, cx.shared.clone()));
    let node = match p.mode.as_str() {
        "AK" | "StsToken" => Node::Static(keys()?),
        "RamRoleArn" => refreshing(Fetcher::AssumeRole {
            base: Node::Static(keys()?),
            role: assume(p, name, cx)?,
        }),
        "ChainableRamRoleArn" => {
            let base = build(
                file,
                &need(&p.source_profile, "source_profile")?,
                cx,
                depth + 1,
            )?;
            refreshing(Fetcher::AssumeRole {
                base,
                role: assume(p, name, cx)?,
            })
        }
        "EcsRamRole" => refreshing(Fetcher::Ecs(EcsRamRole {
            endpoint: Url::parse(DEFAULT_METADATA_ENDPOINT).map_err(|e| e.to_string())?,
            role_name: Some(p.ram_role_name.clone()).filter(|r| !r.is_empty()),
            imdsv1_fallback: false,
        })),
        "OIDC" => refreshing(Fetcher::Oidc(Oidc {
            endpoint: sts_endpoint(p, cx)?,
            role_arn: need(&p.ram_role_arn, "ram_role_arn")?,
            provider_arn: need(&p.oidc_provider_arn, "oidc_provider_arn")?,
            token_file: PathBuf::from(need(&p.oidc_token_file, "oidc_token_file")?),
            session_name: session_name(p),
            duration: duration(p, name)?,
        })),
        other => {
            return Err(format!(
                "profile {name:?} has mode {other:?}, not one of AK, StsToken, RamRoleArn, \
                 EcsRamRole, OIDC, ChainableRamRoleArn"
            ));
        }
    };
    Ok(node)
}

fn assume(p: &Profile, name: &str, cx: &Context<'_>) -> Result<AssumeRole, String> {
    if p.ram_role_arn.is_empty() {
        return Err(format!(
            "profile {name:?} (mode {}) has no ram_role_arn",
            p.mode
        ));
    }
    Ok(AssumeRole {
        endpoint: sts_endpoint(p, cx)?,
        role_arn: p.ram_role_arn.clone(),
        session_name: session_name(p),
        external_id: None,
        duration: duration(p, name)?,
    })
}

fn session_name(p: &Profile) -> String {
    if p.ram_session_name.is_empty() {
        DEFAULT_SESSION_NAME.to_owned()
    } else {
        p.ram_session_name.clone()
    }
}

/// `expired_seconds`, within STS's range; an hour when absent.
fn duration(p: &Profile, name: &str) -> Result<Duration, String> {
    if p.expired_seconds == 0 {
        return Ok(DEFAULT_DURATION);
    }
    let d = Duration::from_secs(p.expired_seconds);
    if DURATION_RANGE.contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "profile {name:?}: expired_seconds {} is out of range 900..=43200",
            p.expired_seconds
        ))
    }
}

/// `[cloud] sts_endpoint`, else the profile's `sts_region`'s, else the central one.
fn sts_endpoint(p: &Profile, cx: &Context<'_>) -> Result<Url, String> {
    if let Some(url) = cx.sts_endpoint {
        return Ok(url.clone());
    }
    let text = if p.sts_region.is_empty() {
        super::DEFAULT_STS_ENDPOINT.to_owned()
    } else if p
        .sts_region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        format!("https://sts.{}.aliyuncs.com", p.sts_region)
    } else {
        return Err(format!("sts_region {:?} is not a region id", p.sts_region));
    };
    Url::parse(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "current": "ak",
        "profiles": [
            {"name": "ak", "mode": "AK", "access_key_id": "LTAIak", "access_key_secret": "S3CRET-AK"},
            {"name": "sts", "mode": "StsToken", "access_key_id": "STS.x", "access_key_secret": "S3CRET-STS", "sts_token": "T0KEN"},
            {"name": "role", "mode": "RamRoleArn", "access_key_id": "LTAIak", "access_key_secret": "S3CRET-AK",
             "ram_role_arn": "acs:ram::1234567890123456:role/pwrotd", "expired_seconds": 900, "sts_region": "cn-shanghai"},
            {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "pwrotd-ecs"},
            {"name": "oidc", "mode": "OIDC", "ram_role_arn": "acs:ram::1:role/r", "oidc_provider_arn": "acs:ram::1:oidc-provider/p", "oidc_token_file": "/var/run/token"},
            {"name": "chained", "mode": "ChainableRamRoleArn", "source_profile": "ecs", "ram_role_arn": "acs:ram::2:role/x"},
            {"name": "loop", "mode": "ChainableRamRoleArn", "source_profile": "loop", "ram_role_arn": "acs:ram::2:role/x"},
            {"name": "odd", "mode": "Bearer"},
            {"name": "half", "mode": "AK", "access_key_id": "LTAI"}
        ]
    }"#;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            http: reqwest::Client::new(),
            observer: std::sync::OnceLock::new(),
        })
    }

    fn profile(name: Option<&str>) -> Result<(String, Node), CredentialError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, FILE).unwrap();
        let shared = shared();
        load(
            &path,
            name,
            &Context {
                shared: &shared,
                sts_endpoint: None,
            },
        )
    }

    #[tokio::test]
    async fn modes() {
        let (description, node) = profile(None).unwrap();
        assert!(description.ends_with("profile ak"), "{description}");
        assert_eq!(node.load().await.unwrap().secret(), "S3CRET-AK");
        let (_, sts) = profile(Some("sts")).unwrap();
        assert_eq!(sts.load().await.unwrap().token(), Some("T0KEN"));
        for (name, kind) in [
            ("role", "assume_role"),
            ("ecs", "ecs_ram_role"),
            ("oidc", "oidc"),
            ("chained", "assume_role"),
        ] {
            let (_, node) = profile(Some(name)).unwrap();
            assert_eq!(node.kind(), kind, "{name}");
        }
    }

    #[test]
    fn bad_profiles_are_named() {
        let message = |name| profile(Some(name)).err().map(|e| e.to_string()).unwrap();
        let missing = message("nope");
        assert!(
            missing.starts_with("credentials (cli_profile): ")
                && missing.ends_with("no profile named \"nope\""),
            "{missing}"
        );
        assert!(message("loop").contains("nests deeper"));
        assert!(message("odd").contains("mode \"Bearer\""));
        assert!(message("half").contains("has no access_key_secret"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let shared = shared();
        let cx = Context {
            shared: &shared,
            sts_endpoint: None,
        };
        let absent = load(&path, None, &cx).err().unwrap().to_string();
        assert!(absent.contains("cannot read"), "{absent}");
        std::fs::write(
            &path,
            r#"{"profiles": [{"name": "x", "access_key_secret": 5, "mode": "S3CRET"}"#,
        )
        .unwrap();
        let malformed = load(&path, None, &cx).err().unwrap().to_string();
        assert!(
            malformed.contains("is not a CLI config file (line 1") && !malformed.contains("S3CRET"),
            "{malformed}"
        );
    }
}
