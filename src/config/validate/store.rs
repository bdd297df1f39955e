//! `[store]`: the file store by default; with `kind = "postgresql"`, where the database URL and
//! key are, the leader's lease, and this replica's name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::Longest;
use crate::config::diagnostics::Check;
use crate::config::raw::{RawStore, StoreKind};
use crate::config::{ClusterConfig, DEFAULT_LEASE, LEASE, MARGIN_SLACK, StoreConfig};

/// The longest a node name may be: a DNS label's limit, so that a short host name fits.
const MAX_NODE_NAME: usize = 63;

/// `[store]`: `File` when absent. With `kind = "postgresql"`, `lease` must leave the leader
/// more than the margin (the cloud's timeout, `cloud_timeout`, plus a second) when a renewal
/// is due; with the file store, no other key may be given.
pub(in crate::config) fn validate_store(
    check: &mut Check,
    raw: Option<&Spanned<RawStore>>,
    cloud_timeout: Duration,
) -> StoreConfig {
    let Some(raw) = raw else {
        return StoreConfig::File;
    };
    let line = check.line(raw.span().start);
    let s = raw.get_ref();
    // `None` when the word is refused: the other keys are then checked on their own.
    let kind = match &s.kind {
        Some(k) => check.one_of(k.get_ref(), k, "store.kind"),
        None => Some(StoreKind::File),
    };
    if kind == Some(StoreKind::File) {
        for (key, value) in [
            ("url_file", &s.url_file),
            ("key_file", &s.key_file),
            ("lease", &s.lease),
            ("node_name", &s.node_name),
        ] {
            if let Some(v) = value {
                let default = if s.kind.is_none() {
                    " (the default)"
                } else {
                    ""
                };
                check.at(
                    v,
                    format!("store.{key}"),
                    format!(
                        "belongs to kind = \"postgresql\"; the store is kind = \"file\"{default}, \
                         which has no {key}"
                    ),
                );
            }
        }
        return StoreConfig::File;
    }
    let before = check.problems.len();
    let url_file = s
        .url_file
        .as_ref()
        .map(|p| absolute(check, p, "store.url_file"));
    let key_file = s
        .key_file
        .as_ref()
        .map(|p| absolute(check, p, "store.key_file"));
    let lease = lease(check, &s.lease);
    let node_name = match &s.node_name {
        Some(n) => {
            if let Some(problem) = node_name_problem(n.get_ref()) {
                check.at(n, "store.node_name", problem);
            }
            n.get_ref().clone()
        }
        // Only a store that is sure to be PostgreSQL asks for the host name.
        None if kind.is_some() => match host_name() {
            Some(host) => {
                if let Some(problem) = node_name_problem(&host) {
                    check.push(
                        line,
                        "store.node_name",
                        format!(
                            "is not given, and the host name will not do: {problem}; \
                             set node_name"
                        ),
                    );
                }
                host
            }
            None => {
                check.push(
                    line,
                    "store.node_name",
                    "is not given, and the host name cannot be read; set node_name",
                );
                String::new()
            }
        },
        None => String::new(),
    };
    if let (Some(lease), Some(_)) = (lease, kind) {
        let at = s
            .lease
            .as_ref()
            .map_or(line, |l| check.line(l.span().start));
        lease_fits(check, at, lease, cloud_timeout);
    }
    match (kind, lease) {
        (Some(StoreKind::Postgresql), Some(lease)) if check.problems.len() == before => {
            StoreConfig::Postgresql(ClusterConfig {
                url_file,
                key_file,
                lease,
                node_name,
            })
        }
        _ => StoreConfig::File,
    }
}

/// An absolute path; a relative one would depend on where the command runs.
fn absolute(check: &mut Check, value: &Spanned<String>, key: &str) -> PathBuf {
    let path = PathBuf::from(value.get_ref());
    if value.get_ref().trim().is_empty() {
        check.at(value, key, "must not be empty");
    } else if !Path::new(value.get_ref()).is_absolute() {
        check.at(
            value,
            key,
            format!("{:?} must be an absolute path", value.get_ref()),
        );
    }
    path
}

/// `store.lease` within [`LEASE`], [`DEFAULT_LEASE`] when absent; `None` when refused.
fn lease(check: &mut Check, value: &Option<Spanned<String>>) -> Option<Duration> {
    match check.duration(
        value,
        "store.lease",
        false,
        Longest(*LEASE.end(), "10 minutes"),
    ) {
        None => Some(DEFAULT_LEASE),
        Some((_, None)) => None,
        Some((line, Some(d))) if d < *LEASE.start() => {
            let text = value.as_ref().map_or("", |v| v.get_ref().as_str());
            check.push(
                line,
                "store.lease",
                format!(
                    "{text:?} is shorter than {}, the least it may be",
                    humantime::format_duration(*LEASE.start())
                ),
            );
            None
        }
        Some((_, Some(d))) => Some(d),
    }
}

/// The leader renews every tenth of its lease, and starts no API attempt with less than the
/// margin (one attempt's timeout and a second) left: nine tenths of the lease, what is left
/// when a renewal is due, must be longer than the margin. Verification changes nothing in the
/// database, so its timeout is no part of the margin: a promotion after a lost lease is fenced,
/// and the next leader settles the account (docs/cluster.md#one-writer).
fn lease_fits(check: &mut Check, line: usize, lease: Duration, cloud_timeout: Duration) {
    let margin = cloud_timeout + MARGIN_SLACK;
    let left = lease * 9 / 10;
    if left > margin {
        return;
    }
    let show = |d: Duration| humantime::format_duration(d).to_string();
    let mut least = margin.as_secs() * 10 / 9;
    while Duration::from_secs(least) * 9 / 10 <= margin {
        least += 1;
    }
    let fix = if Duration::from_secs(least) <= *LEASE.end() {
        format!(
            "set store.lease to at least {}, or shorten cloud.timeout",
            show(Duration::from_secs(least))
        )
    } else {
        format!(
            "even the longest lease ({}) is too short: shorten cloud.timeout",
            show(*LEASE.end()),
        )
    };
    check.push(
        line,
        "store.lease",
        format!(
            "{} is too short: the leader renews every tenth of its lease and starts no API call \
             with less than {} left (cloud.timeout {} + {}), so nine tenths of the lease must be \
             longer than that; {fix}",
            show(lease),
            show(margin),
            show(cloud_timeout),
            show(MARGIN_SLACK),
        ),
    );
}

/// Why `name` cannot be a node name, if it cannot: 1 to 63 of `A-Z a-z 0-9 . _ -`.
fn node_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "{name:?} holds {c:?}; a node name is letters, digits, '.', '_' and '-'"
        ));
    }
    if name.len() > MAX_NODE_NAME {
        return Some(format!(
            "{name:?} is {} characters, more than {MAX_NODE_NAME}",
            name.len()
        ));
    }
    None
}

/// The host name: the kernel's, as `/proc` has it, else `gethostname(2)`.
pub(in crate::config) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
}
