//! `[cloud.credentials]`: the source, the keys each source takes (a key of another source is
//! refused, not ignored), and `assume_role` on top.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use toml::Spanned;

use crate::cloud::credentials::{
    AssumeRoleConfig, DEFAULT_DURATION, DEFAULT_SESSION_NAME, DURATION_RANGE, OidcConfig,
    check_metadata_endpoint, check_role_arn,
};
use crate::cloud::{CredentialsConfig, SourceKind};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawAssumeRole, RawCredentials};

/// `[cloud.credentials]` (or a profile's, named `table` in problems), validated;
/// `sts_endpoint` is filled in by the caller.
pub(super) fn credentials(check: &mut Check, c: &RawCredentials, table: &str) -> CredentialsConfig {
    let source = c
        .source
        .as_ref()
        .and_then(|s| check.one_of(s.get_ref(), s, format!("{table}.source")))
        .unwrap_or_default();
    both_forms(check, c, table);
    foreign_keys(check, c, source, table);
    if source == SourceKind::Static
        && !(c.access_key_id.is_some() || c.access_key_id_file.is_some())
    {
        let line = c.source.as_ref().map_or(0, |s| check.line(s.span().start));
        check.push(
            line,
            format!("{table}.source"),
            "\"static\" needs access_key_id (or access_key_id_file) and access_key_secret (or \
             access_key_secret_file)",
        );
    }
    let text = |v: &Option<Spanned<String>>, key: &str, check: &mut Check| {
        v.as_ref().and_then(|v| {
            if v.get_ref().trim().is_empty() {
                check.at(v, format!("{table}.{key}"), "must not be empty");
                None
            } else {
                Some(v.get_ref().clone())
            }
        })
    };
    CredentialsConfig {
        source,
        access_key_id: c.access_key_id.clone(),
        access_key_secret: c
            .access_key_secret
            .as_ref()
            .map(|s| SecretString::from(s.get_ref().clone())),
        security_token: c
            .security_token
            .as_ref()
            .map(|s| SecretString::from(s.get_ref().clone())),
        access_key_id_file: c.access_key_id_file.clone(),
        access_key_secret_file: c.access_key_secret_file.clone(),
        security_token_file: c.security_token_file.clone(),
        role_name: text(&c.role_name, "role_name", check),
        metadata_endpoint: c.metadata_endpoint.as_ref().and_then(|m| {
            check_metadata_endpoint(m.get_ref(), false)
                .map_err(|e| check.at(m, format!("{table}.metadata_endpoint"), e))
                .ok()
        }),
        imdsv1_fallback: c.imdsv1_fallback.as_ref().is_some_and(|b| *b.get_ref()),
        oidc: oidc(check, c, table),
        profile: text(&c.profile, "profile", check),
        file: c
            .file
            .as_ref()
            .and_then(|f| absolute(check, f, table, "file")),
        uri: c.uri.as_ref().and_then(|u| {
            check_metadata_endpoint(u.get_ref(), true)
                .map_err(|e| check.at(u, format!("{table}.uri"), e))
                .ok()
        }),
        assume_role: c.assume_role.as_ref().map(|a| assume_role(check, a, table)),
        sts_endpoint: None,
    }
}

/// Each secret inline or in a file, not both.
fn both_forms(check: &mut Check, c: &RawCredentials, table: &str) {
    for (inline, file, key) in [
        (
            c.access_key_secret.as_ref(),
            &c.access_key_secret_file,
            "access_key_secret",
        ),
        (
            c.security_token.as_ref(),
            &c.security_token_file,
            "security_token",
        ),
    ] {
        if let (Some(inline), Some(_)) = (inline, file) {
            check.at(
                inline,
                format!("{table}.{key}"),
                format!("give {key} or {key}_file, not both"),
            );
        }
    }
}

/// A source's key: its name, where it stands if given, and the sources that take it.
type KeyOf<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [SourceKind]);

/// Keys of another source than the one chosen: refused, naming the source they belong to.
fn foreign_keys(check: &mut Check, c: &RawCredentials, source: SourceKind, table: &str) {
    use SourceKind::*;
    let spans: [KeyOf<'_>; 10] = [
        (
            "role_name",
            c.role_name.as_ref().map(Spanned::span),
            &[EcsRamRole],
        ),
        (
            "metadata_endpoint",
            c.metadata_endpoint.as_ref().map(Spanned::span),
            &[EcsRamRole],
        ),
        (
            "imdsv1_fallback",
            c.imdsv1_fallback.as_ref().map(Spanned::span),
            &[EcsRamRole, Chain],
        ),
        ("role_arn", c.role_arn.as_ref().map(Spanned::span), &[Oidc]),
        (
            "oidc_provider_arn",
            c.oidc_provider_arn.as_ref().map(Spanned::span),
            &[Oidc],
        ),
        (
            "oidc_token_file",
            c.oidc_token_file.as_ref().map(Spanned::span),
            &[Oidc],
        ),
        (
            "role_session_name",
            c.role_session_name.as_ref().map(Spanned::span),
            &[Oidc],
        ),
        (
            "profile",
            c.profile.as_ref().map(Spanned::span),
            &[CliProfile],
        ),
        ("file", c.file.as_ref().map(Spanned::span), &[CliProfile]),
        ("uri", c.uri.as_ref().map(Spanned::span), &[Uri]),
    ];
    for (key, span, owners) in spans {
        let Some(span) = span else { continue };
        if !owners.contains(&source) {
            let line = check.line(span.start);
            check.push(
                line,
                format!("{table}.{key}"),
                format!(
                    "belongs to source = {:?}, but the source is {:?}",
                    owners[0].name(),
                    source.name()
                ),
            );
        }
    }
    let has_static = c.access_key_id.is_some()
        || c.access_key_secret.is_some()
        || c.access_key_id_file.is_some()
        || c.access_key_secret_file.is_some()
        || c.security_token.is_some()
        || c.security_token_file.is_some();
    if has_static && !matches!(source, Static | Chain) {
        let line = c.source.as_ref().map_or(0, |s| check.line(s.span().start));
        check.push(
            line,
            format!("{table}.source"),
            format!(
                "static keys (access_key_id...) are given, but the source is {:?}; use \
                 source = \"static\", or assume_role to use them for a role",
                source.name()
            ),
        );
    }
}

/// `source = "oidc"`'s keys, checked for their shape.
fn oidc(check: &mut Check, c: &RawCredentials, table: &str) -> OidcConfig {
    let role_arn = c.role_arn.as_ref().and_then(|r| {
        check_role_arn(r.get_ref())
            .map_err(|e| check.at(r, format!("{table}.role_arn"), e))
            .ok()
            .map(|()| r.get_ref().clone())
    });
    let oidc_provider_arn = c.oidc_provider_arn.as_ref().and_then(|p| {
        let ok = p
            .get_ref()
            .strip_prefix("acs:ram::")
            .and_then(|rest| rest.split_once(":oidc-provider/"))
            .is_some_and(|(uid, name)| {
                !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
            });
        if ok {
            Some(p.get_ref().clone())
        } else {
            check.at(
                p,
                format!("{table}.oidc_provider_arn"),
                format!(
                    "{:?} is not an OIDC provider ARN like \
                     \"acs:ram::1234567890123456:oidc-provider/ack-rrsa\"",
                    p.get_ref()
                ),
            );
            None
        }
    });
    OidcConfig {
        role_arn,
        oidc_provider_arn,
        oidc_token_file: c
            .oidc_token_file
            .as_ref()
            .and_then(|f| absolute(check, f, table, "oidc_token_file")),
        role_session_name: c
            .role_session_name
            .as_ref()
            .and_then(|s| session_name(check, s, &format!("{table}.role_session_name"))),
    }
}

/// `assume_role = { ... }`: `role_arn` required; the rest have defaults.
fn assume_role(check: &mut Check, a: &Spanned<RawAssumeRole>, table: &str) -> AssumeRoleConfig {
    let key = |k: &str| format!("{table}.assume_role.{k}");
    let raw = a.get_ref();
    let role_arn = match &raw.role_arn {
        Some(r) => {
            if let Err(e) = check_role_arn(r.get_ref()) {
                check.at(r, key("role_arn"), e);
            }
            r.get_ref().clone()
        }
        None => {
            check.at(a, key("role_arn"), "is required");
            String::new()
        }
    };
    let session_name = raw
        .session_name
        .as_ref()
        .and_then(|s| session_name(check, s, &key("session_name")))
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
    let external_id = raw.external_id.as_ref().and_then(|e| {
        let v = e.get_ref();
        let shaped = (2..=1224).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
        if shaped {
            Some(v.clone())
        } else {
            check.at(
                e,
                key("external_id"),
                "must be 2 to 1224 of A-Z a-z 0-9 _ + = , . @ : / -",
            );
            None
        }
    });
    let duration = match &raw.duration {
        None => DEFAULT_DURATION,
        Some(d) => match humantime::parse_duration(d.get_ref()) {
            Ok(v) if DURATION_RANGE.contains(&v) => Duration::from_secs(v.as_secs()),
            Ok(_) => {
                check.at(
                    d,
                    key("duration"),
                    format!("{:?} is out of STS's range, 15m to 12h", d.get_ref()),
                );
                DEFAULT_DURATION
            }
            Err(e) => {
                check.at(
                    d,
                    key("duration"),
                    format!("{:?} is not a duration like \"1h\": {e}", d.get_ref()),
                );
                DEFAULT_DURATION
            }
        },
    };
    AssumeRoleConfig {
        role_arn,
        session_name,
        external_id,
        duration,
    }
}

/// A role session name: 2 to 64 of `A-Z a-z 0-9 . @ - _`, as STS takes it.
fn session_name(check: &mut Check, s: &Spanned<String>, key: &str) -> Option<String> {
    let v = s.get_ref();
    let shaped = (2..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'));
    if shaped {
        Some(v.clone())
    } else {
        check.at(
            s,
            key,
            format!("{v:?} must be 2 to 64 of A-Z a-z 0-9 . @ - _"),
        );
        None
    }
}

/// An absolute path.
fn absolute(check: &mut Check, v: &Spanned<String>, table: &str, key: &str) -> Option<PathBuf> {
    let path = PathBuf::from(v.get_ref());
    if path.is_absolute() {
        Some(path)
    } else {
        check.at(
            v,
            format!("{table}.{key}"),
            format!("{:?} must be an absolute path", v.get_ref()),
        );
        None
    }
}
