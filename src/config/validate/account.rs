//! Each `[[account]]`, with `[defaults]` applied, and what must be unique among them.
//!
//! [`validate_account`] reads as the list of an entry's parts, each a method of [`Entry`]:
//! identity (`name`, `api`, `cluster_id` or `instance_id`, `account_name`, `region_id`, `password_type`),
//! grants, schedule, password policy, render files, strategy, verify and `on_change`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::cloud::region_id;
use super::render::{Renders, validate_render};
use super::schedule::{
    DEFAULT_EVERY, DEFAULT_JITTER, DEFAULT_RETRY, Defaults, Timing, schedule, within_period,
};
use super::verify::validate_verify;
use super::{Label, PERIOD, policy::policy, required};
use crate::cloud::{Api, Grant, Privilege, Service};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawAccount, StrategyName};
use crate::config::{Account, Cloud, DEFAULT_PROFILE, Render, Strategy};
use crate::password::Policy;
use crate::verify::Verify;

/// `[cloud]` and `[cloud.profiles]`, validated: what an account's `profile` may name.
pub(in crate::config) type Profiles<'a> = (&'a Cloud, &'a BTreeMap<String, Cloud>);

/// Every `[[account]]` entry, each checked with `[defaults]` applied; no two may share a name
/// or rotate the same database user. Render files keep out of `state_dir` (empty when it was
/// refused).
pub(in crate::config) fn validate_accounts(
    check: &mut Check,
    raw: &[Spanned<RawAccount>],
    defaults: &Defaults,
    state_dir: &Path,
    profiles: Profiles<'_>,
) -> Vec<Arc<Account>> {
    let mut accounts = Vec::new();
    let mut names = HashSet::new();
    let mut targets = HashSet::new();
    let mut renders = Renders::new(state_dir);
    for (i, account) in raw.iter().enumerate() {
        let Some(a) = validate_account(check, i, account, defaults, &mut renders, profiles) else {
            continue;
        };
        if !names.insert(a.name.clone()) {
            let line = check.line(account.span().start);
            check.push(
                line,
                format!("account \"{}\".name", a.name),
                "is not unique",
            );
        }
        let users = std::iter::once(("account_name", &a.account_name)).chain(match &a.strategy {
            Strategy::Alternating { clone } => Some(("clone_account_name", clone)),
            Strategy::Single => None,
        });
        for (field, user) in users {
            if !targets.insert((a.api.service(), a.resource_id.clone(), user.clone())) {
                let line = check.line(account.span().start);
                check.push(
                    line,
                    format!("account \"{}\".{field}", a.name),
                    format!(
                        "{user} on {} is already rotated by another account entry",
                        a.resource_id
                    ),
                );
            }
        }
        accounts.push(Arc::new(a));
    }
    accounts
}

/// One `[[account]]` entry, `None` when any of its keys is refused (and reported). Its parts
/// are checked in this order, and problems on one line are listed in it.
fn validate_account(
    check: &mut Check,
    index: usize,
    raw: &Spanned<RawAccount>,
    defaults: &Defaults,
    renders: &mut Renders,
    profiles: Profiles<'_>,
) -> Option<Account> {
    let before = check.problems.len();
    let entry = Entry::new(check, index, raw);
    let name = entry.name(check);
    let api = entry.api(check);
    let resource_id = entry.resource_id(check, api);
    let account_name = required(
        check,
        &entry.raw.account_name,
        &entry.key("account_name"),
        entry.line,
    );
    let (profile, cloud) = entry.profile(check, profiles);
    let region_id = entry.region_id(check, api, cloud);
    let password_type = entry.password_type(check, api);
    let grants = entry.grants(check, api);
    let when = entry.schedule(check, defaults);
    let keep_versions = entry.keep_versions(check, defaults);
    let policy = entry.policy(check, defaults);
    let render = entry.render(check, renders);
    let strategy = entry.strategy(check, &account_name, keep_versions);
    let verify = entry.verify(check);
    let on_change = entry.on_change(check);

    if check.problems.len() > before {
        return None;
    }
    Some(Account {
        name,
        api: api?,
        resource_id,
        account_name,
        region_id,
        profile,
        password_type,
        grants,
        schedule: when.timing?.schedule,
        jitter: when.jitter,
        retry_after_failure: when.retry_after_failure,
        keep_versions,
        policy: policy?,
        render,
        strategy,
        verify,
        on_change,
    })
}

/// An `[[account]]` entry being checked: its keys as written, the label its problems are
/// reported under (`account "a"`, or `account[2]` without a name), and its first line, where a
/// missing key is reported.
struct Entry<'a> {
    raw: &'a RawAccount,
    label: Label,
    line: usize,
}

/// An account's schedule, `None` when refused (and reported), and its `jitter` and
/// `retry_after_failure`, each at most its period.
struct When {
    timing: Option<Timing>,
    jitter: Duration,
    retry_after_failure: Duration,
}

/// Whether an account name is safe as a file name and a metrics label: nothing can climb out
/// of a directory or hide in it.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Entry<'_> {
    fn new<'a>(check: &Check, index: usize, raw: &'a Spanned<RawAccount>) -> Entry<'a> {
        let a = raw.get_ref();
        let label = match &a.name {
            Some(n) => Label::new(format!("account \"{}\"", n.get_ref())),
            None => Label::new(format!("account[{index}]")),
        };
        Entry {
            raw: a,
            label,
            line: check.line(raw.span().start),
        }
    }

    fn key(&self, k: &str) -> String {
        self.label.key(k)
    }

    /// `name`: it names the sink file and labels the metrics.
    fn name(&self, check: &mut Check) -> String {
        match &self.raw.name {
            Some(n) if valid_name(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                check.at(n, self.key("name"), "use 1 to 128 of A-Z a-z 0-9 - _ . (not starting with a dot): it names the sink file");
                String::new()
            }
            None => {
                check.push(self.line, self.key("name"), "is required");
                String::new()
            }
        }
    }

    /// `api`: one of [`Api::ALL`].
    fn api(&self, check: &mut Check) -> Option<Api> {
        match &self.raw.api {
            Some(s) => match s.get_ref().parse::<Api>() {
                Ok(api) => Some(api),
                Err(_) => {
                    let allowed: Vec<&str> = Api::ALL.iter().map(|a| a.as_str()).collect();
                    check.at(
                        s,
                        self.key("api"),
                        format!("{:?} is not one of {}", s.get_ref(), allowed.join(", ")),
                    );
                    None
                }
            },
            None => {
                check.push(self.line, self.key("api"), "is required");
                None
            }
        }
    }

    /// `cluster_id` for the PolarDB APIs, `instance_id` for `ResetAccountPassword`; the other
    /// one is refused. Empty when the API is unknown.
    fn resource_id(&self, check: &mut Check, api: Option<Api>) -> String {
        let a = self.raw;
        match api.map(Api::service) {
            Some(Service::PolarDb) => {
                if let Some(i) = &a.instance_id {
                    check.at(
                        i,
                        self.key("instance_id"),
                        "belongs to ResetAccountPassword (RDS); PolarDB APIs take cluster_id",
                    );
                }
                required(check, &a.cluster_id, &self.key("cluster_id"), self.line)
            }
            Some(Service::Rds) => {
                if let Some(c) = &a.cluster_id {
                    check.at(
                        c,
                        self.key("cluster_id"),
                        "belongs to the PolarDB APIs; ResetAccountPassword takes instance_id",
                    );
                }
                required(check, &a.instance_id, &self.key("instance_id"), self.line)
            }
            None => String::new(),
        }
    }

    /// `profile`: `[cloud]` when not given (or given as `"default"`), else a table of
    /// `[cloud.profiles]`. An unknown name is refused, naming the profiles there are; the
    /// account is then checked against `[cloud]`.
    fn profile<'p>(
        &self,
        check: &mut Check,
        (cloud, profiles): Profiles<'p>,
    ) -> (String, &'p Cloud) {
        let Some(value) = &self.raw.profile else {
            return (DEFAULT_PROFILE.to_owned(), cloud);
        };
        let name = value.get_ref();
        if name == DEFAULT_PROFILE {
            return (name.clone(), cloud);
        }
        if let Some(profile) = profiles.get(name) {
            return (name.clone(), profile);
        }
        let known = if profiles.is_empty() {
            "the file has no [cloud.profiles]".to_owned()
        } else {
            let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
            format!("the profiles are {}", names.join(", "))
        };
        check.at(
            value,
            self.key("profile"),
            format!("no profile {name:?}: [cloud.profiles.{name}] is not in the file ({known})"),
        );
        (DEFAULT_PROFILE.to_owned(), cloud)
    }

    /// `region_id`, or its profile's. A region of its own needs an endpoint for the account's
    /// service: a default one, or one the profile's `endpoints` names.
    fn region_id(&self, check: &mut Check, api: Option<Api>, cloud: &Cloud) -> String {
        let client = &cloud.client;
        let Some(value) = &self.raw.region_id else {
            return client.region_id.clone();
        };
        let key = self.key("region_id");
        let Some(region) = region_id(check, value, &key) else {
            return String::new();
        };
        if let Some(api) = api
            && let Err(e) = client.endpoint(api.service(), &region)
        {
            check.at(value, key, e);
        }
        region
    }

    /// `password_type`, which only the Modify APIs accept.
    fn password_type(&self, check: &mut Check, api: Option<Api>) -> Option<String> {
        let given = self.raw.password_type.as_ref()?;
        if let Some(Api::ResetAccount | Api::ResetAccountPassword) = api {
            check.at(
                given,
                self.key("password_type"),
                "only ModifyAccountPassword and ModifyAccountPasswordZonal accept it",
            );
        }
        Some(given.get_ref().clone())
    }

    /// `grants`: PolarDB only, and not for the privileged account `ResetAccount` rotates.
    fn grants(&self, check: &mut Check, api: Option<Api>) -> Vec<Grant> {
        let mut grants = Vec::new();
        for g in &self.raw.grants {
            if api == Some(Api::ResetAccount) {
                check.at(
                    g,
                    self.key("grants"),
                    "ResetAccount rotates a privileged account, which has every privilege: \
                     GrantAccountPrivilege refuses it (IncorrectAccountPrivilegeType)",
                );
                break;
            }
            if api.is_some_and(|api| api.service() != Service::PolarDb) {
                check.at(
                    g,
                    self.key("grants"),
                    "GrantAccountPrivilege is a PolarDB API; RDS accounts cannot have grants",
                );
                break;
            }
            let raw_grant = g.get_ref();
            if raw_grant.db.is_empty() || raw_grant.db.contains(',') {
                check.at(
                    g,
                    self.key("grants.db"),
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
                        self.key("grants.privilege"),
                        format!(
                            "{:?} is not one of {}",
                            raw_grant.privilege,
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        grants
    }

    /// `every` or `cron`, `jitter` and `retry_after_failure`. An account's `every` or `cron`
    /// replaces the default schedule whole. What the account does not set comes from
    /// `[defaults]`, whose problems are reported there, once.
    fn schedule(&self, check: &mut Check, defaults: &Defaults) -> When {
        let s = &self.raw.schedule();
        if let (Some(_), Some(cron)) = (&s.every, &s.cron) {
            check.at(cron, self.key("cron"), "give `every` or `cron`, not both");
        }
        let own_schedule = s.every.is_some() || s.cron.is_some();
        let timing = if own_schedule {
            schedule(check, s, &self.label)
        } else {
            defaults.timing.clone()
        };
        let jitter = match &s.jitter {
            Some(_) => (
                check.duration(&s.jitter, &self.key("jitter"), true, PERIOD),
                true,
            ),
            None => (defaults.jitter, false),
        };
        let retry = match &s.retry_after_failure {
            Some(_) => (
                check.duration(
                    &s.retry_after_failure,
                    &self.key("retry_after_failure"),
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
                &self.label,
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
        When {
            timing,
            jitter,
            retry_after_failure,
        }
    }

    /// `keep_versions`, or the default's.
    fn keep_versions(&self, check: &mut Check, defaults: &Defaults) -> usize {
        let given = &self.raw.keep_versions;
        match given {
            Some(_) => check.count(given, &self.key("keep_versions"), 0..=100, 5) as usize,
            None => defaults.keep_versions,
        }
    }

    /// `[account.password]`, key by key over `[defaults.password]`; the default policy whole
    /// when the account sets none of its keys.
    fn policy(&self, check: &mut Check, defaults: &Defaults) -> Option<Arc<Policy>> {
        let p = &self.raw.password;
        if p.length.is_some() || p.require.is_some() || p.special.is_some() || p.exclude.is_some() {
            policy(
                check,
                p,
                &defaults.raw.password,
                &self.label.table("password"),
                self.line,
                defaults.policy.is_none(),
            )
        } else {
            defaults.policy.clone()
        }
    }

    /// `render`: the files written for applications; those refused are left out (and reported).
    fn render(&self, check: &mut Check, renders: &mut Renders) -> Vec<Render> {
        let mut render = Vec::new();
        for (i, r) in self.raw.render.iter().enumerate() {
            let label = self.label.table(&format!("render[{i}]"));
            if let Some(valid) = validate_render(check, r, &label, renders) {
                render.push(valid);
            }
        }
        render
    }

    /// `strategy` and `clone_account_name`: the alternating strategy needs a second user, and
    /// a previous version kept for it.
    fn strategy(&self, check: &mut Check, account_name: &str, keep_versions: usize) -> Strategy {
        let a = self.raw;
        let alternating = match &a.strategy {
            None => false,
            Some(s) => match check.one_of(s.get_ref(), s, self.key("strategy")) {
                Some(name) => name == StrategyName::Alternating,
                None => return Strategy::Single,
            },
        };
        match (alternating, &a.clone_account_name) {
            (false, None) => Strategy::Single,
            (false, Some(clone)) => {
                check.at(
                    clone,
                    self.key("clone_account_name"),
                    "is used only with strategy = \"alternating\"",
                );
                Strategy::Single
            }
            (true, None) => {
                check.push(
                    self.line,
                    self.key("clone_account_name"),
                    "is required with strategy = \"alternating\": the second database user",
                );
                Strategy::Single
            }
            (true, Some(clone)) => {
                let name = clone.get_ref().trim();
                if name.is_empty() {
                    check.at(clone, self.key("clone_account_name"), "must not be empty");
                } else if name == account_name {
                    check.at(
                        clone,
                        self.key("clone_account_name"),
                        "must differ from account_name: alternating needs two database users",
                    );
                }
                if keep_versions == 0 {
                    check.push(
                        self.line,
                        self.key("keep_versions"),
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

    /// `[account.verify]`, when given.
    fn verify(&self, check: &mut Check) -> Option<Box<Verify>> {
        let v = self.raw.verify.as_ref()?;
        validate_verify(check, v, &self.label.table("verify")).map(Box::new)
    }

    /// `on_change`: each command a list, program first.
    fn on_change(&self, check: &mut Check) -> Vec<Vec<String>> {
        let mut on_change = Vec::new();
        for (i, command) in self.raw.on_change.iter().enumerate() {
            match command.get_ref().first() {
                Some(program) if !program.trim().is_empty() => on_change.push(command.get_ref().clone()),
                _ => check.at(
                    command,
                    self.key(&format!("on_change[{i}]")),
                    "must be a command as a list, program first, like [\"systemctl\", \"reload\", \"app.service\"]",
                ),
            }
        }
        on_change
    }
}
