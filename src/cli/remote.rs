//! `pwrotd check --remote`: proves a config against the cloud without changing anything
//! (docs/operations.md#checking-against-the-cloud).
//!
//! For each account it calls `DescribeAccounts` (read-only) through the same client the daemon
//! uses, signed, retried and rate-limited, in the account's region, once for `account_name` and
//! once for the clone of an alternating account. From the replies it judges whether the account
//! is ready to rotate: the cluster or instance exists in that region, each user exists, is
//! `Available` and not locked, and its type fits the API. It never calls anything else, and it
//! prints no secret: the cloud's messages are scrubbed by the client.

use std::collections::BTreeMap;

use crate::cloud::{Api, Client, CloudError, DescribeAccounts, Service};
use crate::config::{Account, Config, Strategy};
use crate::daemon::profile_client;
use crate::metrics::Metrics;

use super::{CliError, CliResult, runtime};

/// What one account's `DescribeAccounts` calls found.
struct Verdict {
    /// The account's `name`.
    name: String,
    /// What was found of each user, as printed: `app: Available, unlocked, Normal`.
    found: Vec<String>,
    /// Why the account is not ready; empty when it is.
    problems: Vec<String>,
}

impl Verdict {
    /// Where `account` calls: its profile, where its credentials come from, its region.
    fn new(account: &Account, origin: &str) -> Verdict {
        Verdict {
            name: account.name.clone(),
            found: vec![format!(
                "profile {}, credentials from {origin}, region {}",
                account.profile, account.region_id
            )],
            problems: Vec::new(),
        }
    }

    /// Not asked: `account`'s profile has no client, for `why`.
    fn refused(account: &Account, why: String) -> Verdict {
        let mut verdict = Verdict::new(account, "nowhere");
        verdict.problems.push(why);
        verdict
    }
}

/// One database user, as `DescribeAccounts` lists it.
struct Facts {
    status: String,
    /// PolarDB's `AccountLockState` (`Lock`, `UnLock`); RDS has none.
    lock: Option<String>,
    account_type: String,
}

/// Runs the remote check for every account of `config`, each through its profile's client:
/// exit 0 when every one is ready, 1 naming each that is not. A profile whose credentials
/// cannot be found makes its accounts not ready; the others are still asked about.
pub fn check_remote(config: &Config) -> CliResult {
    let metrics = Metrics::new();
    let mut clients = BTreeMap::new();
    for (profile, cloud) in config.profiles_in_use() {
        clients.insert(profile, profile_client(profile, cloud, &metrics));
    }
    say!();
    say!("remote check (DescribeAccounts, read-only):");
    let verdicts = runtime()?.block_on(async {
        let mut verdicts = Vec::new();
        for account in &config.accounts {
            let verdict = match clients.get(account.profile.as_str()) {
                Some(Ok(client)) => probe(client, account).await,
                Some(Err(e)) => Verdict::refused(account, e.clone()),
                None => Verdict::refused(account, "no client for its profile".to_owned()),
            };
            verdicts.push(verdict);
        }
        verdicts
    });
    let not_ready: Vec<&Verdict> = verdicts.iter().filter(|v| !v.problems.is_empty()).collect();
    for v in &verdicts {
        let found = if v.found.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.found.join("; "))
        };
        match v.problems.as_slice() {
            [] => say!("  {:<24} ready{found}", v.name),
            problems => say!("  {:<24} NOT READY: {}{found}", v.name, problems.join("; ")),
        }
    }
    say!(
        "{} of {} account{} ready",
        verdicts.len() - not_ready.len(),
        verdicts.len(),
        if verdicts.len() == 1 { "" } else { "s" }
    );
    if not_ready.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = not_ready
        .iter()
        .map(|v| format!("{} ({})", v.name, v.problems.join("; ")))
        .collect();
    Err(CliError::failed(format!("not ready: {}", names.join(", "))))
}

/// The users `DescribeAccounts` is asked about, each with how a message names it.
fn users(account: &Account) -> Vec<(&str, &'static str)> {
    let mut users = vec![(account.account_name.as_str(), "account")];
    if let Strategy::Alternating { clone } = &account.strategy {
        users.push((clone.as_str(), "clone"));
    }
    users
}

/// Asks about each of `account`'s users in its region, and judges what comes back.
async fn probe(client: &Client, account: &Account) -> Verdict {
    let service = account.api.service();
    let resource = match service {
        Service::PolarDb => "cluster",
        Service::Rds => "instance",
    };
    let region = &account.region_id;
    let mut verdict = Verdict::new(account, &client.credentials().summary());
    for (user, role) in users(account) {
        let op = DescribeAccounts {
            service,
            resource_id: account.resource_id.clone(),
            account_name: user.to_owned(),
        };
        let body = match client.query(region, &op).await {
            Ok((_, body)) => body,
            Err(e) if resource_missing(&e) => {
                verdict.problems.push(format!(
                    "{resource} {} not found in {region} ({})",
                    account.resource_id,
                    e.code()
                ));
                break;
            }
            Err(e) => {
                verdict.problems.push(format!("{role} {user}: {e}"));
                continue;
            }
        };
        match facts(&body, user) {
            None => verdict.problems.push(format!(
                "{role} {user} does not exist on {resource} {}",
                account.resource_id
            )),
            Some(facts) => {
                verdict.found.push(facts.summary(user));
                verdict.problems.extend(facts.problems(account, user, role));
            }
        }
    }
    verdict
}

/// Whether a failure says the cluster or instance does not exist (in that region, for these
/// credentials): `InvalidDBClusterId.NotFound`, `InvalidDBInstanceId.NotFound`,
/// `InvalidDBInstanceName.NotFound`.
fn resource_missing(error: &CloudError) -> bool {
    let code = error.code();
    code.ends_with(".NotFound")
        && (code.starts_with("InvalidDBClusterId") || code.starts_with("InvalidDBInstance"))
}

/// The entry for `user` in a `DescribeAccounts` reply: PolarDB lists `Accounts` as an array,
/// RDS as `Accounts.DBInstanceAccount`.
fn facts(body: &serde_json::Value, user: &str) -> Option<Facts> {
    let accounts = &body["Accounts"];
    let list = accounts
        .as_array()
        .or_else(|| accounts["DBInstanceAccount"].as_array())?;
    let entry = list
        .iter()
        .find(|a| a["AccountName"].as_str() == Some(user))?;
    let text = |key: &str| entry[key].as_str().unwrap_or("unknown").to_owned();
    Some(Facts {
        status: text("AccountStatus"),
        lock: entry["AccountLockState"].as_str().map(str::to_owned),
        account_type: text("AccountType"),
    })
}

impl Facts {
    /// `app: Available, unlocked, Normal`.
    fn summary(&self, user: &str) -> String {
        let lock = match self.lock.as_deref() {
            Some("Lock") => ", locked",
            Some(_) => ", unlocked",
            None => "",
        };
        format!("{user}: {}{lock}, {}", self.status, self.account_type)
    }

    /// Why this user keeps `account` from rotating, if it does.
    fn problems(&self, account: &Account, user: &str, role: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.status != "Available" {
            problems.push(format!("{role} {user} is {}, not Available", self.status));
        }
        if self.lock.as_deref() == Some("Lock") {
            problems.push(format!("{role} {user} is locked"));
        }
        let privileged = self.account_type == "Super";
        if account.api == Api::ResetAccount && !privileged {
            problems.push(format!(
                "ResetAccount needs a privileged account (AccountType Super); {role} {user} is {}",
                self.account_type
            ));
        }
        if !account.grants.is_empty() && privileged {
            problems.push(format!(
                "grants need a standard account: GrantAccountPrivilege refuses the privileged \
                 {role} {user}"
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_reply_shapes_are_read() {
        let polardb = serde_json::json!({"RequestId": "R", "Accounts": [
            {"AccountName": "app", "AccountStatus": "Available", "AccountType": "Normal",
             "AccountLockState": "Lock"}]});
        let facts = facts(&polardb, "app").unwrap();
        assert_eq!(facts.summary("app"), "app: Available, locked, Normal");
        assert!(super::facts(&polardb, "other").is_none());
        let rds = serde_json::json!({"RequestId": "R", "Accounts": {"DBInstanceAccount": [
            {"AccountName": "u", "AccountStatus": "Unavailable", "AccountType": "Super"}]}});
        let facts = super::facts(&rds, "u").unwrap();
        assert_eq!(facts.summary("u"), "u: Unavailable, Super");
        assert!(super::facts(&serde_json::json!({}), "u").is_none());
    }
}
