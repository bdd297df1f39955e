//! `DescribeAccounts`, read-only, for PolarDB (2017-08-01) and RDS (2014-08-15), in the reply
//! shapes of the official references and of the official Python SDK models
//! (`alibabacloud_polardb20170801.models.DescribeAccountsResponseBody`,
//! `alibabacloud_rds20140815.models.DescribeAccountsResponseBody`):
//!
//! - PolarDB: `{"RequestId", "PageNumber", "PageRecordCount", "Accounts": [{"AccountName",
//!   "AccountStatus", "AccountType", "AccountLockState", "AccountDescription",
//!   "DatabasePrivileges": [{"DBName", "AccountPrivilege"}]}]}`. "Only the permissions of
//!   standard accounts are displayed": a privileged account lists none. `PageSize` is 30, 50
//!   or 100 and `PageNumber` a positive integer, else `InvalidPageSize.Malformed` and
//!   `InvalidPageNumber.Malformed` (400), as documented.
//! - RDS: `{"RequestId", "PageNumber", "TotalRecordCount", "Accounts": {"DBInstanceAccount":
//!   [{"DBInstanceId", "AccountName", "AccountStatus", "AccountType", "AccountDescription",
//!   "PrivExceeded", "DatabasePrivileges": {"DatabasePrivilege": [{"DBName",
//!   "AccountPrivilege", "AccountPrivilegeDetail"}]}}]}}`. `PageSize` 30 to 200; the reference
//!   names no error for other values, so they are brought into that range.
//!
//! The cluster or instance is found as for any action ([`super::Call`]'s owner and region
//! rules); its state does not matter to a read. An `AccountName` that names no account answers
//! an empty list: it filters a query, and neither reference documents an error for it.

use super::{AccountStatus, AccountType, Call, Sim, SimAccount, SimError};
use crate::cloud::{Privilege, Service};

/// The page of `total` items a request asks for: the page number and size.
fn page(call: &Call<'_>) -> Result<(usize, usize), SimError> {
    let number = match call.params.get("PageNumber") {
        None => 1,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ if call.action.service == Service::Rds => 1,
            _ => {
                return Err(SimError::new(
                    400,
                    "InvalidPageNumber.Malformed",
                    "The specified parameter PageNumber is not valid.",
                ));
            }
        },
    };
    let size = call.params.get("PageSize").map(|s| s.parse::<usize>());
    let size = match (call.action.service, size) {
        (_, None) => 30,
        (Service::PolarDb, Some(Ok(s))) if [30, 50, 100].contains(&s) => s,
        (Service::PolarDb, Some(_)) => {
            return Err(SimError::new(
                400,
                "InvalidPageSize.Malformed",
                "The specified parameter PageSize is not valid.",
            ));
        }
        (Service::Rds, Some(s)) => s.unwrap_or(30).clamp(30, 200),
    };
    Ok((number, size))
}

fn type_name(account_type: AccountType) -> &'static str {
    match account_type {
        AccountType::Normal => "Normal",
        AccountType::Super => "Super",
    }
}

/// The privileges behind each RDS `AccountPrivilege`, as `AccountPrivilegeDetail` lists them
/// for MySQL (an approximation of the RDS MySQL privilege table).
fn privilege_detail(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::ReadWrite => {
            "SELECT,INSERT,UPDATE,DELETE,CREATE,DROP,REFERENCES,INDEX,ALTER,CREATE TEMPORARY TABLES,LOCK TABLES,EXECUTE,CREATE VIEW,SHOW VIEW,CREATE ROUTINE,ALTER ROUTINE,EVENT,TRIGGER"
        }
        Privilege::ReadOnly => "SELECT,LOCK TABLES,SHOW VIEW",
        Privilege::DdlOnly => {
            "CREATE,DROP,INDEX,ALTER,CREATE TEMPORARY TABLES,LOCK TABLES,CREATE VIEW,SHOW VIEW,CREATE ROUTINE,ALTER ROUTINE"
        }
        Privilege::DmlOnly => {
            "SELECT,INSERT,UPDATE,DELETE,CREATE TEMPORARY TABLES,LOCK TABLES,EXECUTE,SHOW VIEW,EVENT,TRIGGER"
        }
        Privilege::ReadIndex => "SELECT,INDEX",
    }
}

fn polardb_account(name: &str, account: &SimAccount) -> serde_json::Value {
    let (status, lock) = match account.status {
        AccountStatus::Creating => ("Creating", "UnLock"),
        AccountStatus::Deleting => ("Deleting", "UnLock"),
        AccountStatus::Locked => ("Available", "Lock"),
        AccountStatus::Available => ("Available", "UnLock"),
        // Not a documented PolarDB status; shown as the simulator names it.
        AccountStatus::Unavailable => ("Unavailable", "UnLock"),
    };
    let privileges: Vec<_> = match account.account_type {
        AccountType::Super => Vec::new(),
        AccountType::Normal => account
            .privileges
            .iter()
            .map(|(db, p)| serde_json::json!({"DBName": db, "AccountPrivilege": p.as_str()}))
            .collect(),
    };
    serde_json::json!({
        "AccountName": name,
        "AccountStatus": status,
        "AccountType": type_name(account.account_type),
        "AccountLockState": lock,
        "AccountDescription": account.description,
        "DatabasePrivileges": privileges,
    })
}

fn rds_account(instance: &str, name: &str, account: &SimAccount) -> serde_json::Value {
    let status = match account.status {
        AccountStatus::Available => "Available",
        _ => "Unavailable",
    };
    let privileges: Vec<_> = account
        .privileges
        .iter()
        .map(|(db, p)| {
            serde_json::json!({
                "DBName": db,
                "AccountPrivilege": p.as_str(),
                "AccountPrivilegeDetail": privilege_detail(*p),
            })
        })
        .collect();
    serde_json::json!({
        "DBInstanceId": instance,
        "AccountName": name,
        "AccountStatus": status,
        "AccountType": type_name(account.account_type),
        "AccountDescription": account.description,
        "PrivExceeded": "0",
        "DatabasePrivileges": {"DatabasePrivilege": privileges},
    })
}

impl Sim {
    /// The reply body of a `DescribeAccounts` request, or its documented refusal.
    pub(super) fn describe_accounts(&self, call: &Call<'_>) -> Result<String, SimError> {
        let (number, size) = page(call)?;
        let mut state = self.lock();
        let resource = call.find_resource(state.resources(call.action.service))?;
        let wanted = call.params.get("AccountName").filter(|n| !n.is_empty());
        let matching: Vec<(&String, &SimAccount)> = resource
            .accounts
            .iter()
            .filter(|(name, _)| wanted.is_none_or(|w| w == *name))
            .collect();
        let total = matching.len();
        let on_page = matching
            .into_iter()
            .skip((number - 1).saturating_mul(size))
            .take(size);
        let request_id = super::new_request_id();
        let body = match call.action.service {
            Service::PolarDb => {
                let accounts: Vec<_> = on_page.map(|(n, a)| polardb_account(n, a)).collect();
                serde_json::json!({
                    "RequestId": request_id,
                    "PageNumber": number,
                    "PageRecordCount": accounts.len(),
                    "Accounts": accounts,
                })
            }
            Service::Rds => {
                let id = call.resource_id();
                let accounts: Vec<_> = on_page.map(|(n, a)| rds_account(id, n, a)).collect();
                serde_json::json!({
                    "RequestId": request_id,
                    "PageNumber": number,
                    "TotalRecordCount": total,
                    "Accounts": {"DBInstanceAccount": accounts},
                })
            }
        };
        Ok(body.to_string())
    }
}
