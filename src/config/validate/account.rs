//! One `[[account]]`, with `[defaults]` applied.

use toml::Spanned;

use super::render::{Renders, validate_render};
use super::schedule::{
    DEFAULT_EVERY, DEFAULT_JITTER, DEFAULT_RETRY, Defaults, schedule, within_period,
};
use super::verify::validate_verify;
use super::{PERIOD, policy::policy, required};
use crate::cloud::{Api, Grant, Privilege, Service};
use crate::config::diagnostics::Check;
use crate::config::raw::RawAccount;
use crate::config::{Account, Strategy};

/// Whether a name is safe as a file name and a metrics label.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(in crate::config) fn validate_account(
    check: &mut Check,
    index: usize,
    raw: &Spanned<RawAccount>,
    defaults: &Defaults,
    renders: &mut Renders,
) -> Option<Account> {
    let before = check.problems.len();
    let start = check.line(raw.span().start);
    let a = raw.get_ref();
    let label = match &a.name {
        Some(n) => format!("account \"{}\"", n.get_ref()),
        None => format!("account[{index}]"),
    };
    let key = |k: &str| format!("{label}.{k}");

    let name = match &a.name {
        Some(n) if valid_name(n.get_ref()) => n.get_ref().clone(),
        Some(n) => {
            check.at(n, key("name"), "use 1 to 128 of A-Z a-z 0-9 - _ . (not starting with a dot): it names the sink file");
            String::new()
        }
        None => {
            check.push(start, key("name"), "is required");
            String::new()
        }
    };
    let api = match &a.api {
        Some(s) => match s.get_ref().parse::<Api>() {
            Ok(api) => Some(api),
            Err(_) => {
                let allowed: Vec<&str> = Api::ALL.iter().map(|a| a.as_str()).collect();
                check.at(
                    s,
                    key("api"),
                    format!("{:?} is not one of {}", s.get_ref(), allowed.join(", ")),
                );
                None
            }
        },
        None => {
            check.push(start, key("api"), "is required");
            None
        }
    };
    let resource_id = match api.map(Api::service) {
        Some(Service::PolarDb) => {
            if let Some(i) = &a.instance_id {
                check.at(
                    i,
                    key("instance_id"),
                    "belongs to ResetAccountPassword (RDS); PolarDB APIs take cluster_id",
                );
            }
            required(check, &a.cluster_id, &key("cluster_id"), start)
        }
        Some(Service::Rds) => {
            if let Some(c) = &a.cluster_id {
                check.at(
                    c,
                    key("cluster_id"),
                    "belongs to the PolarDB APIs; ResetAccountPassword takes instance_id",
                );
            }
            required(check, &a.instance_id, &key("instance_id"), start)
        }
        None => String::new(),
    };
    let account_name = required(check, &a.account_name, &key("account_name"), start);
    if let (Some(t), Some(Api::ResetAccount | Api::ResetAccountPassword)) = (&a.password_type, api)
    {
        check.at(
            t,
            key("password_type"),
            "only ModifyAccountPassword and ModifyAccountPasswordZonal accept it",
        );
    }
    let mut grants = Vec::new();
    for g in &a.grants {
        if api == Some(Api::ResetAccount) {
            check.at(
                g,
                key("grants"),
                "ResetAccount rotates a privileged account, which has every privilege: \
                 GrantAccountPrivilege refuses it (IncorrectAccountPrivilegeType)",
            );
            break;
        }
        if api.is_some_and(|api| api.service() != Service::PolarDb) {
            check.at(
                g,
                key("grants"),
                "GrantAccountPrivilege is a PolarDB API; RDS accounts cannot have grants",
            );
            break;
        }
        let raw_grant = g.get_ref();
        if raw_grant.db.is_empty() || raw_grant.db.contains(',') {
            check.at(
                g,
                key("grants.db"),
                format!("{:?} is not a database name", raw_grant.db),
            );
        }
        match raw_grant.privilege.parse::<Privilege>() {
            Ok(privilege) => grants.push(Grant {
                db: raw_grant.db.clone(),
                privilege,
            }),
            Err(_) => {
                let allowed: Vec<&str> = Privilege::ALL.iter().map(|p| p.as_str()).collect();
                check.at(
                    g,
                    key("grants.privilege"),
                    format!(
                        "{:?} is not one of {}",
                        raw_grant.privilege,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    // Schedule: an account's `every` or `cron` replaces the default schedule whole. What the
    // account does not set comes from `[defaults]`, whose problems are reported there, once.
    let s = &a.schedule();
    if let (Some(_), Some(cron)) = (&s.every, &s.cron) {
        check.at(cron, key("cron"), "give `every` or `cron`, not both");
    }
    let own_schedule = s.every.is_some() || s.cron.is_some();
    let timing = if own_schedule {
        schedule(check, s, &key(""))
    } else {
        defaults.timing.clone()
    };
    let jitter = match &s.jitter {
        Some(_) => (
            check.duration(&s.jitter, &key("jitter"), true, PERIOD),
            true,
        ),
        None => (defaults.jitter, false),
    };
    let retry = match &s.retry_after_failure {
        Some(_) => (
            check.duration(
                &s.retry_after_failure,
                &key("retry_after_failure"),
                false,
                PERIOD,
            ),
            true,
        ),
        None => (defaults.retry_after_failure, false),
    };
    if let Some(timing) = &timing {
        within_period(
            check,
            &key,
            timing,
            own_schedule,
            [
                ("jitter", jitter.0, jitter.1),
                ("retry_after_failure", retry.0, retry.1),
            ],
        );
    }
    let period = timing.as_ref().map_or(DEFAULT_EVERY, |t| t.period);
    let jitter = match jitter.0 {
        None => DEFAULT_JITTER.min(period),
        Some((_, d)) => d.unwrap_or_default(),
    };
    let retry_after_failure = match retry.0 {
        None => DEFAULT_RETRY.min(period),
        Some((_, d)) => d.unwrap_or(DEFAULT_RETRY),
    };
    let keep_versions = match &s.keep_versions {
        Some(_) => check.count(&s.keep_versions, &key("keep_versions"), 0..=100, 5) as usize,
        None => defaults.keep_versions,
    };
    let p = &s.password;
    let policy = if p.length.is_some()
        || p.require.is_some()
        || p.special.is_some()
        || p.exclude.is_some()
    {
        policy(
            check,
            p,
            &defaults.raw.password,
            &key("password"),
            start,
            defaults.policy.is_none(),
        )
    } else {
        defaults.policy.clone()
    };
    let mut render = Vec::new();
    for (i, r) in a.render.iter().enumerate() {
        if let Some(valid) = validate_render(check, r, &key(&format!("render[{i}]")), renders) {
            render.push(valid);
        }
    }
    let strategy = validate_strategy(check, a, &account_name, keep_versions, &key, start);
    let verify = a
        .verify
        .as_ref()
        .and_then(|v| validate_verify(check, v, &key("verify")))
        .map(Box::new);

    let mut on_change = Vec::new();
    for (i, command) in a.on_change.iter().enumerate() {
        match command.get_ref().first() {
            Some(program) if !program.trim().is_empty() => on_change.push(command.get_ref().clone()),
            _ => check.at(
                command,
                key(&format!("on_change[{i}]")),
                "must be a command as a list, program first, like [\"systemctl\", \"reload\", \"app.service\"]",
            ),
        }
    }

    if check.problems.len() > before {
        return None;
    }
    Some(Account {
        name,
        api: api?,
        resource_id,
        account_name,
        password_type: a.password_type.as_ref().map(|t| t.get_ref().clone()),
        grants,
        schedule: timing?.schedule,
        jitter,
        retry_after_failure,
        keep_versions,
        policy: policy?,
        render,
        strategy,
        verify,
        on_change,
    })
}

fn validate_strategy(
    check: &mut Check,
    a: &RawAccount,
    account_name: &str,
    keep_versions: usize,
    key: &dyn Fn(&str) -> String,
    line: usize,
) -> Strategy {
    let alternating = match a.strategy.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "single")) => false,
        Some((_, "alternating")) => true,
        Some((s, other)) => {
            check.at(
                s,
                key("strategy"),
                format!("{other:?} is neither \"single\" nor \"alternating\""),
            );
            return Strategy::Single;
        }
    };
    match (alternating, &a.clone_account_name) {
        (false, None) => Strategy::Single,
        (false, Some(clone)) => {
            check.at(
                clone,
                key("clone_account_name"),
                "is used only with strategy = \"alternating\"",
            );
            Strategy::Single
        }
        (true, None) => {
            check.push(
                line,
                key("clone_account_name"),
                "is required with strategy = \"alternating\": the second database user",
            );
            Strategy::Single
        }
        (true, Some(clone)) => {
            let name = clone.get_ref().trim();
            if name.is_empty() {
                check.at(clone, key("clone_account_name"), "must not be empty");
            } else if name == account_name {
                check.at(
                    clone,
                    key("clone_account_name"),
                    "must differ from account_name: alternating needs two database users",
                );
            }
            if keep_versions == 0 {
                check.push(
                    line,
                    key("keep_versions"),
                    "must be at least 1 with strategy = \"alternating\": the previous user's \
                     password stays in the sink until the next rotation",
                );
            }
            Strategy::Alternating {
                clone: name.to_owned(),
            }
        }
    }
}
