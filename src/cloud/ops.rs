//! The five OpenAPI operations pwrotd calls to rotate, and the read-only `DescribeAccounts` that
//! `check --remote` calls, as typed requests with the exact parameter names and API versions
//! (docs/protocol.md#failure-rules).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::password::Password;

/// The cloud service an operation belongs to: its endpoint, API version and rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    PolarDb,
    Rds,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::PolarDb, Service::Rds];

    /// The `Version` parameter of every call to this service.
    pub fn version(self) -> &'static str {
        match self {
            Service::PolarDb => "2017-08-01",
            Service::Rds => "2014-08-15",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::PolarDb => "polardb",
            Service::Rds => "rds",
        }
    }

    /// The name of the resource parameter: `DBClusterId` or `DBInstanceId`.
    pub fn resource_param(self) -> &'static str {
        match self {
            Service::PolarDb => "DBClusterId",
            Service::Rds => "DBInstanceId",
        }
    }
}

/// A request the client can sign and send.
pub trait Operation: Send + Sync {
    fn action(&self) -> &'static str;
    fn service(&self) -> Service;
    /// The operation's own parameters, names exactly as the API spells them. The client adds
    /// the common ones (`Action`, `Version`, `RegionId`, signature parameters).
    fn params(&self) -> Vec<(&'static str, &str)>;
    /// The password this request carries. When set, a reply that cannot be read, or a lost
    /// connection after sending, is ambiguous: the password may now be live.
    fn password(&self) -> Option<&Password> {
        None
    }
}

/// The password-setting API an account uses: the `api` key of an `[[account]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Api {
    ModifyAccountPassword,
    ModifyAccountPasswordZonal,
    ResetAccount,
    ResetAccountPassword,
}

impl Api {
    pub const ALL: [Api; 4] = [
        Api::ModifyAccountPassword,
        Api::ModifyAccountPasswordZonal,
        Api::ResetAccount,
        Api::ResetAccountPassword,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::ModifyAccountPassword => "ModifyAccountPassword",
            Api::ModifyAccountPasswordZonal => "ModifyAccountPasswordZonal",
            Api::ResetAccount => "ResetAccount",
            Api::ResetAccountPassword => "ResetAccountPassword",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Api::ResetAccountPassword => Service::Rds,
            _ => Service::PolarDb,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Api, String> {
        Api::ALL
            .into_iter()
            .find(|api| api.as_str() == s)
            .ok_or_else(|| format!("unknown api {s:?}"))
    }
}

/// PolarDB `ModifyAccountPassword`.
#[derive(Debug, Clone)]
pub struct ModifyAccountPassword {
    pub cluster_id: String,
    pub account_name: String,
    pub new_password: Password,
    pub password_type: Option<String>,
}

/// PolarDB `ModifyAccountPasswordZonal`, idempotent through `ClientToken`.
#[derive(Debug, Clone)]
pub struct ModifyAccountPasswordZonal {
    pub cluster_id: String,
    pub account_name: String,
    pub new_password: Password,
    pub password_type: Option<String>,
    /// At most 64 ASCII characters; the same token for every attempt with the same password.
    pub client_token: String,
}

/// PolarDB `ResetAccount`: privileged accounts only; it also resets the account's permissions.
#[derive(Debug, Clone)]
pub struct ResetAccount {
    pub cluster_id: String,
    pub account_name: String,
    pub account_password: Password,
}

/// RDS `ResetAccountPassword`.
#[derive(Debug, Clone)]
pub struct ResetAccountPassword {
    pub instance_id: String,
    pub account_name: String,
    pub account_password: Password,
}

/// A privilege `GrantAccountPrivilege` can give on one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Privilege {
    ReadWrite,
    ReadOnly,
    #[serde(rename = "DMLOnly")]
    DmlOnly,
    #[serde(rename = "DDLOnly")]
    DdlOnly,
    ReadIndex,
}

impl Privilege {
    pub const ALL: [Privilege; 5] = [
        Privilege::ReadWrite,
        Privilege::ReadOnly,
        Privilege::DmlOnly,
        Privilege::DdlOnly,
        Privilege::ReadIndex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::ReadWrite => "ReadWrite",
            Privilege::ReadOnly => "ReadOnly",
            Privilege::DmlOnly => "DMLOnly",
            Privilege::DdlOnly => "DDLOnly",
            Privilege::ReadIndex => "ReadIndex",
        }
    }
}

impl FromStr for Privilege {
    type Err = String;

    fn from_str(s: &str) -> Result<Privilege, String> {
        Privilege::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown privilege {s:?}"))
    }
}

/// One database and the privilege an account should have on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub db: String,
    pub privilege: Privilege,
}

/// PolarDB `GrantAccountPrivilege`: `DBName` and `AccountPrivilege` are comma-separated lists
/// of the same length.
#[derive(Debug, Clone)]
pub struct GrantAccountPrivilege {
    pub cluster_id: String,
    pub account_name: String,
    db_names: String,
    privileges: String,
}

impl GrantAccountPrivilege {
    pub fn new(cluster_id: &str, account_name: &str, grants: &[Grant]) -> GrantAccountPrivilege {
        let join = |f: &dyn Fn(&Grant) -> &str| grants.iter().map(f).collect::<Vec<_>>().join(",");
        GrantAccountPrivilege {
            cluster_id: cluster_id.to_owned(),
            account_name: account_name.to_owned(),
            db_names: join(&|g| g.db.as_str()),
            privileges: join(&|g| g.privilege.as_str()),
        }
    }
}

fn with_password_type<'a>(
    mut params: Vec<(&'static str, &'a str)>,
    password_type: &'a Option<String>,
) -> Vec<(&'static str, &'a str)> {
    if let Some(t) = password_type {
        params.push(("PasswordType", t));
    }
    params
}

impl Operation for ModifyAccountPassword {
    fn action(&self) -> &'static str {
        "ModifyAccountPassword"
    }
    fn service(&self) -> Service {
        Service::PolarDb
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        with_password_type(
            vec![
                ("DBClusterId", &self.cluster_id),
                ("AccountName", &self.account_name),
                ("NewAccountPassword", self.new_password.expose()),
            ],
            &self.password_type,
        )
    }
    fn password(&self) -> Option<&Password> {
        Some(&self.new_password)
    }
}

impl Operation for ModifyAccountPasswordZonal {
    fn action(&self) -> &'static str {
        "ModifyAccountPasswordZonal"
    }
    fn service(&self) -> Service {
        Service::PolarDb
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        with_password_type(
            vec![
                ("DBClusterId", &self.cluster_id),
                ("AccountName", &self.account_name),
                ("NewAccountPassword", self.new_password.expose()),
                ("ClientToken", &self.client_token),
            ],
            &self.password_type,
        )
    }
    fn password(&self) -> Option<&Password> {
        Some(&self.new_password)
    }
}

impl Operation for ResetAccount {
    fn action(&self) -> &'static str {
        "ResetAccount"
    }
    fn service(&self) -> Service {
        Service::PolarDb
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("DBClusterId", &self.cluster_id),
            ("AccountName", &self.account_name),
            ("AccountPassword", self.account_password.expose()),
        ]
    }
    fn password(&self) -> Option<&Password> {
        Some(&self.account_password)
    }
}

impl Operation for ResetAccountPassword {
    fn action(&self) -> &'static str {
        "ResetAccountPassword"
    }
    fn service(&self) -> Service {
        Service::Rds
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("DBInstanceId", &self.instance_id),
            ("AccountName", &self.account_name),
            ("AccountPassword", self.account_password.expose()),
        ]
    }
    fn password(&self) -> Option<&Password> {
        Some(&self.account_password)
    }
}

impl Operation for GrantAccountPrivilege {
    fn action(&self) -> &'static str {
        "GrantAccountPrivilege"
    }
    fn service(&self) -> Service {
        Service::PolarDb
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("DBClusterId", &self.cluster_id),
            ("AccountName", &self.account_name),
            ("DBName", &self.db_names),
            ("AccountPrivilege", &self.privileges),
        ]
    }
}

/// `DescribeAccounts` of one account: PolarDB (2017-08-01, `DBClusterId`) or RDS (2014-08-15,
/// `DBInstanceId`), filtered by `AccountName`. Read-only; it carries no password.
#[derive(Debug, Clone)]
pub struct DescribeAccounts {
    pub service: Service,
    pub resource_id: String,
    pub account_name: String,
}

impl Operation for DescribeAccounts {
    fn action(&self) -> &'static str {
        "DescribeAccounts"
    }
    fn service(&self) -> Service {
        self.service
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        vec![
            (self.service.resource_param(), &self.resource_id),
            ("AccountName", &self.account_name),
        ]
    }
}

/// A password change through whichever of the four APIs an account uses.
#[derive(Debug, Clone)]
pub enum SetPassword {
    Modify(ModifyAccountPassword),
    Zonal(ModifyAccountPasswordZonal),
    Reset(ResetAccount),
    ResetRds(ResetAccountPassword),
}

impl SetPassword {
    /// Builds the request for `api`. `client_token` is sent only by the Zonal API, which needs
    /// it; `password_type` only by the two Modify APIs, which accept it.
    pub fn new(
        api: Api,
        resource_id: &str,
        account_name: &str,
        password: Password,
        client_token: &str,
        password_type: Option<&str>,
    ) -> SetPassword {
        let cluster_id = resource_id.to_owned();
        let account_name = account_name.to_owned();
        let password_type = password_type.map(str::to_owned);
        match api {
            Api::ModifyAccountPassword => SetPassword::Modify(ModifyAccountPassword {
                cluster_id,
                account_name,
                new_password: password,
                password_type,
            }),
            Api::ModifyAccountPasswordZonal => SetPassword::Zonal(ModifyAccountPasswordZonal {
                cluster_id,
                account_name,
                new_password: password,
                password_type,
                client_token: client_token.to_owned(),
            }),
            Api::ResetAccount => SetPassword::Reset(ResetAccount {
                cluster_id,
                account_name,
                account_password: password,
            }),
            Api::ResetAccountPassword => SetPassword::ResetRds(ResetAccountPassword {
                instance_id: cluster_id,
                account_name,
                account_password: password,
            }),
        }
    }

    fn inner(&self) -> &dyn Operation {
        match self {
            SetPassword::Modify(op) => op,
            SetPassword::Zonal(op) => op,
            SetPassword::Reset(op) => op,
            SetPassword::ResetRds(op) => op,
        }
    }
}

impl Operation for SetPassword {
    fn action(&self) -> &'static str {
        self.inner().action()
    }
    fn service(&self) -> Service {
        self.inner().service()
    }
    fn params(&self) -> Vec<(&'static str, &str)> {
        self.inner().params()
    }
    fn password(&self) -> Option<&Password> {
        self.inner().password()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_and_versions() {
        let pw = || Password::new("Ab1!Ab1!Ab1!".into());
        let names =
            |op: &dyn Operation| -> Vec<&str> { op.params().into_iter().map(|(n, _)| n).collect() };
        let zonal = SetPassword::new(
            Api::ModifyAccountPasswordZonal,
            "pc-1",
            "app",
            pw(),
            "t-1",
            None,
        );
        assert_eq!(
            names(&zonal),
            [
                "DBClusterId",
                "AccountName",
                "NewAccountPassword",
                "ClientToken"
            ]
        );
        let modify = SetPassword::new(
            Api::ModifyAccountPassword,
            "pc-1",
            "app",
            pw(),
            "t",
            Some("Normal"),
        );
        assert_eq!(
            names(&modify),
            [
                "DBClusterId",
                "AccountName",
                "NewAccountPassword",
                "PasswordType"
            ]
        );
        let reset = SetPassword::new(Api::ResetAccount, "pc-1", "root", pw(), "t", None);
        assert_eq!(
            names(&reset),
            ["DBClusterId", "AccountName", "AccountPassword"]
        );
        let rds = SetPassword::new(Api::ResetAccountPassword, "rm-1", "u", pw(), "t", None);
        assert_eq!(
            names(&rds),
            ["DBInstanceId", "AccountName", "AccountPassword"]
        );
        assert_eq!(
            (rds.service(), rds.service().version()),
            (Service::Rds, "2014-08-15")
        );
        assert_eq!(reset.service().version(), "2017-08-01");

        let grant = GrantAccountPrivilege::new(
            "pc-1",
            "app",
            &[
                Grant {
                    db: "orders".into(),
                    privilege: Privilege::ReadWrite,
                },
                Grant {
                    db: "billing".into(),
                    privilege: Privilege::DmlOnly,
                },
            ],
        );
        assert_eq!(
            grant.params(),
            [
                ("DBClusterId", "pc-1"),
                ("AccountName", "app"),
                ("DBName", "orders,billing"),
                ("AccountPrivilege", "ReadWrite,DMLOnly")
            ]
        );
        assert!(grant.password().is_none());
    }
}
