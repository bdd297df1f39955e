//! Validation: each key of the raw file checked, each problem reported into [`Check`] with its
//! line and key, and only what passes built into the public types. A module for each part of
//! the file:
//!
//! - `daemon`, `cloud`: `[daemon]` and `[cloud]`.
//! - `schedule`: `every` or `cron`, `jitter`, `retry_after_failure`, and `[defaults]`.
//! - `policy`: the password policy, key by key from the account or else `[defaults]`.
//! - `account`: each `[[account]]`, and what must be unique among them.
//! - `render`, `verify`: an account's render files and its `[account.verify]`.
//! - `store`: `[store]`, the file store or cluster mode's PostgreSQL.
//!
//! This file holds the checks of single values that the parts share.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use toml::Spanned;

use super::diagnostics::Check;
use super::raw::OneOf;
use super::{MAX_PERIOD, MAX_TIMEOUT};
use crate::password::{Class, Policy};

mod account;
pub(crate) use account::valid_name;
mod cloud;
mod credentials;
mod daemon;
mod policy;
mod render;
mod schedule;
mod store;
mod verify;

pub(super) use account::validate_accounts;
pub(super) use cloud::{validate_cloud, validate_default_region};
pub(super) use daemon::validate_daemon;
pub(super) use schedule::validate_defaults;
#[cfg(test)]
pub(super) use store::host_name;
pub(super) use store::validate_store;

/// What validation works out once and shares, kept in [`Check`].
pub(super) struct Memo {
    /// Policies already built, so that accounts with the same policy share one.
    pub(super) policies: HashMap<(usize, Vec<Class>, String, String), Arc<Policy>>,
    /// When cron expressions are asked for their next firings.
    pub(super) now: SystemTime,
    /// Each cron expression's shortest gap between firings, or why it is refused.
    pub(super) crons: HashMap<String, Result<Duration, String>>,
}

impl Memo {
    pub(super) fn new() -> Memo {
        Memo {
            policies: HashMap::new(),
            now: SystemTime::now(),
            crons: HashMap::new(),
        }
    }
}

/// How the problems of a table name its keys: `defaults.every`, `account "a".every`, or
/// `account[2].every` for an entry without a name; `account "a".verify.host` below it.
pub(super) struct Label(String);

impl Label {
    pub(super) fn new(table: impl Into<String>) -> Label {
        Label(table.into())
    }

    /// The key `k` of this table.
    pub(super) fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.0)
    }

    /// The table `k` below this one.
    pub(super) fn table(&self, k: &str) -> Label {
        Label(self.key(k))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration key as given: `None` when absent, else its line and its value, `None` when it was
/// refused (and reported).
pub(super) type Given = Option<(usize, Option<Duration>)>;

/// The longest a duration key may be, and how a message names that.
#[derive(Clone, Copy)]
pub(super) struct Longest(Duration, &'static str);

pub(super) const PERIOD: Longest = Longest(MAX_PERIOD, "10 years");
pub(super) const TIMEOUT: Longest = Longest(MAX_TIMEOUT, "an hour");

/// The largest CA file read: a bundle of every public root is a few hundred KiB.
const MAX_CA_FILE: u64 = 16 << 20;

impl Check {
    /// A duration from zero (when `zero` allows it) to `longest`.
    pub(super) fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        zero: bool,
        longest: Longest,
    ) -> Given {
        let v = value.as_ref()?;
        let line = self.line(v.span().start);
        let text = v.get_ref();
        let problem = match humantime::parse_duration(text) {
            Err(e) => format!("{text:?} is not a duration like \"30s\", \"10m\", \"30d\": {e}"),
            Ok(d) if d.is_zero() && !zero => "must be longer than zero".to_owned(),
            Ok(d) if d > longest.0 => {
                format!("{text:?} is longer than {}, the most it may be", longest.1)
            }
            Ok(d) => return Some((line, Some(d))),
        };
        self.push(line, key, problem);
        Some((line, None))
    }

    /// A duration within bounds, or `default` when absent or refused.
    pub(super) fn duration_or(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        zero: bool,
        longest: Longest,
        default: Duration,
    ) -> Duration {
        self.duration(value, key, zero, longest)
            .and_then(|(_, d)| d)
            .unwrap_or(default)
    }

    /// A CA file: an absolute path to a readable regular file holding at least one PEM
    /// certificate, checked now rather than at the first connection that needs it.
    pub(super) fn ca_file(&mut self, value: &Spanned<String>, key: &str) -> PathBuf {
        let path = PathBuf::from(value.get_ref());
        let problem = if !path.is_absolute() {
            Some(format!("{:?} must be an absolute path", value.get_ref()))
        } else {
            match std::fs::metadata(&path) {
                Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                Ok(m) if !m.is_file() => Some(format!("{} is not a file", path.display())),
                Ok(m) if m.len() > MAX_CA_FILE => Some(format!(
                    "{} is larger than {} MiB: not a CA bundle",
                    path.display(),
                    MAX_CA_FILE >> 20
                )),
                Ok(_) => match std::fs::read(&path) {
                    Err(e) => Some(format!("cannot read {}: {e}", path.display())),
                    Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                        Ok(certificates) if !certificates.is_empty() => None,
                        Ok(_) => Some(format!("{} holds no PEM certificate", path.display())),
                        Err(e) => Some(format!(
                            "{} holds no usable PEM certificate: {e}",
                            path.display()
                        )),
                    },
                },
            }
        };
        if let Some(problem) = problem {
            self.at(value, key, problem);
        }
        path
    }

    /// A word from a closed set, `None` when it is none of the set (and reported on the line
    /// of `at`), with the words allowed: `"xml" is neither "text" nor "json"`, `"yaml" is not
    /// one of env, json, raw`.
    pub(super) fn one_of<T: Copy, S>(
        &mut self,
        word: &OneOf<T>,
        at: &Spanned<S>,
        key: impl Into<String>,
    ) -> Option<T> {
        let (given, allowed) = match word {
            OneOf::Known(known) => return Some(*known),
            OneOf::Unknown { given, allowed } => (given, allowed),
        };
        let message = match allowed {
            [a, b] => format!("{given:?} is neither {a:?} nor {b:?}"),
            _ => format!("{given:?} is not one of {}", allowed.join(", ")),
        };
        self.at(at, key, message);
        None
    }

    /// An integer in `range`, or `default` when absent or refused.
    pub(super) fn count(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(v) = value else { return default };
        if range.contains(v.get_ref()) {
            *v.get_ref()
        } else {
            self.at(
                v,
                key,
                format!(
                    "{} is out of range {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

/// A string that must be given and not blank; empty when refused. A missing key is reported on
/// `line`, its table's first.
pub(super) fn required(
    check: &mut Check,
    value: &Option<Spanned<String>>,
    key: &str,
    line: usize,
) -> String {
    match value {
        Some(v) if !v.get_ref().trim().is_empty() => v.get_ref().clone(),
        Some(v) => {
            check.at(v, key, "must not be empty");
            String::new()
        }
        None => {
            check.push(line, key, "is required");
            String::new()
        }
    }
}
