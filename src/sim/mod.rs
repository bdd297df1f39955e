//! `pwrotd-sim`: a faithful local stand-in for the PolarDB (`2017-08-01`) and RDS
//! (`2014-08-15`) OpenAPI, for tests and the demo.
//!
//! It checks what the real API checks, in the same order, and answers with the documented error
//! codes and error shape: V1 and V3 signatures, nonce replays, timestamp skew, the API version
//! and required parameters per action, the password policy, unknown resources and accounts,
//! `ResetAccount` on a non-privileged account, `GrantAccountPrivilege` on a privileged one, a
//! cluster or instance that is not running, a locked RDS account, and `ClientToken` idempotency.
//! Faults are injected on demand, each with a known truth: refusals that apply nothing
//! (throttling, 5xx, `LockTimeout`, documented refusals, a dropped connection), and outcomes
//! where the change IS applied and the client is told something else (a documented error, a
//! dropped connection, a garbage reply), plus latency.
//!
//! Its live state (who has which password) is readable in-process, and over HTTP under `/_sim/`
//! as SHA-256 digests only, so that tests can check the sink against it without the simulator
//! ever sending a password.

mod auth;
pub mod backend;
mod cloud_file;
mod describe;
mod identity;
mod metadata;
pub mod server;
mod sts;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cloud::{Privilege, Service};
use crate::config::Config;
use crate::password::{self, Password};
use crate::random::{self, OsRandom};
use crate::verify::Engine;

pub use backend::{BackendError, Database};
pub use cloud_file::CloudFile;
pub use identity::{
    DEFAULT_SESSION, IssuedCredentials, OidcProviderSpec, PRIMARY_UID, PRIMARY_USER, Principal,
    RoleSpec, TemporaryCredentials,
};
pub use metadata::{CredentialEndpoint, CredentialFault, METADATA_CREDENTIALS_LIFETIME};
pub use server::SimServer;
pub use sts::unsigned_oidc_token;

/// How far a request's timestamp may be from the simulator's clock, as on the real API.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A database account's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AccountType {
    Normal,
    Super,
}

/// One database account as the simulated cloud holds it.
#[derive(Debug, Clone, Serialize)]
pub struct SimAccount {
    #[serde(rename = "type")]
    pub account_type: AccountType,
    /// The live password; `None` until first set.
    #[serde(skip)]
    pub password: Option<Password>,
    /// Hex SHA-256 of the live password, for comparison without exposure.
    pub password_sha256: Option<String>,
    pub privileges: BTreeMap<String, Privilege>,
    /// Password changes applied, counting idempotent replays once.
    pub changes: u64,
    /// `Available` unless a test set it otherwise.
    pub status: AccountStatus,
    /// `AccountDescription`, empty unless a test set it.
    pub description: String,
    /// The real database server its changes are applied to, if any.
    #[serde(skip)]
    pub backend: Option<Engine>,
}

/// An account's status, as `DescribeAccounts` reports it.
///
/// On RDS, `ResetAccountPassword` refuses an account that is not `Available` with
/// `IncorrectAccountStatus` (documented for ResetAccountPassword and GrantAccountPrivilege,
/// 2014-08-15). The PolarDB operations document no such refusal, so a PolarDB account's status
/// changes nothing; inject `FaultCode::IncorrectAccountStatus` to see that error there.
///
/// `DescribeAccounts` shows it as documented: on PolarDB `AccountStatus` is `Creating`,
/// `Available` or `Deleting` and `AccountLockState` `Lock` or `UnLock` (a locked account is
/// `Available` and `Lock`); on RDS `AccountStatus` is `Available` or `Unavailable` (anything but
/// `Available` is `Unavailable`) and there is no lock state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    #[default]
    Available,
    Unavailable,
    /// Locked, as by PolarDB `ModifyAccountLockState`.
    Locked,
    /// Being created (PolarDB).
    Creating,
    /// Being deleted (PolarDB).
    Deleting,
}

/// The state a cluster or instance is in when nobody set it: the only one that takes changes.
pub const RUNNING: &str = "Running";

#[derive(Debug)]
struct Resource {
    accounts: BTreeMap<String, SimAccount>,
    databases: Vec<String>,
    /// `Running`, or whatever a test set (`ClassChanging`, `Rebooting`, `Restarting`, ...).
    state: String,
    /// The uid of the cloud account that owns it: [`PRIMARY_UID`] unless a test set another.
    owner: String,
    /// Its region; `None` (a resource added without a config) answers to any `RegionId`.
    region: Option<String>,
}

impl Resource {
    /// One of its accounts, or the documented refusal.
    fn account(&self, account_name: &str) -> Result<&SimAccount, SimError> {
        self.accounts
            .get(account_name)
            .ok_or_else(account_not_found)
    }
}

impl Default for Resource {
    fn default() -> Resource {
        Resource {
            accounts: BTreeMap::new(),
            databases: Vec::new(),
            state: RUNNING.to_owned(),
            owner: PRIMARY_UID.to_owned(),
            region: None,
        }
    }
}

/// An injected fault, and its truth: whether the change was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// `Throttling.User`, nothing applied.
    Throttle,
    /// HTTP 503 `ServiceUnavailable`, nothing applied. The same reply after applying is
    /// `ErrorAfterApply(FaultCode::ServiceUnavailable)`.
    ServerError,
    /// `LockTimeout`, nothing applied. The same reply after applying is
    /// `ErrorAfterApply(FaultCode::LockTimeout)`.
    LockTimeout,
    /// The change is applied, then the connection is closed without a reply.
    DropAfterApply,
    /// The connection is closed without a reply and nothing is applied: as ambiguous to the
    /// client as [`Fault::DropAfterApply`], with the opposite truth.
    DropBeforeApply,
    /// The change is applied, then a 200 reply that is not JSON.
    Garbage,
    /// The API accepts the change and replies success, but it never reaches the real database:
    /// a lost propagation, which only a login can reveal. Scripted only.
    SkipDatabase,
    /// The change (password or grant) is applied, then the reply is this documented error.
    /// A request the API refuses anyway (bad password, unknown account...) gets that refusal
    /// instead, and nothing is applied.
    ErrorAfterApply(FaultCode),
    /// Nothing is applied, and the reply is this documented error.
    ErrorBeforeApply(FaultCode),
}

impl Fault {
    /// The fault's name in [`Stats::faults`]: `throttle`, `drop_after_apply`, or for the
    /// faults with a code `error_after_apply.lock_timeout`, `error_before_apply.incorrect_state`.
    pub fn label(self) -> String {
        match self {
            Fault::Throttle => "throttle".into(),
            Fault::ServerError => "server_error".into(),
            Fault::LockTimeout => "lock_timeout".into(),
            Fault::DropAfterApply => "drop_after_apply".into(),
            Fault::DropBeforeApply => "drop_before_apply".into(),
            Fault::Garbage => "garbage".into(),
            Fault::SkipDatabase => "skip_database".into(),
            Fault::ErrorAfterApply(code) => format!("error_after_apply.{}", code.name()),
            Fault::ErrorBeforeApply(code) => format!("error_before_apply.{}", code.name()),
        }
    }
}

/// A documented error an injected fault answers with, in the documented body shape and with
/// the documented HTTP status. The sources, from the OpenAPI reference (PolarDB 2017-08-01, RDS
/// 2014-08-15):
/// - `ServiceUnavailable` (503) and `InternalError` (500): the common error codes of every
///   Alibaba Cloud RPC API.
/// - `LockTimeout` (400): ModifyAccountPassword, ModifyAccountPasswordZonal,
///   GrantAccountPrivilege(Zonal) on PolarDB.
/// - `Database.ConnectError` (400): RDS ResetAccountPassword and GrantAccountPrivilege
///   ("Database connect error. please check instance status and database processlist"); PolarDB
///   words it "db instance %s connect failed, please check instance status and database
///   processlist".
/// - `Account.UpdateError` (400): RDS ResetAccountPassword ("Update Account failed, please check
///   your input value"); PolarDB GrantAccountPrivilege(Zonal) ("Instance %s update Account %s
///   error").
/// - `%s` / `DB Operation Failed:%s.` (400): RDS ResetAccountPassword documents an error whose
///   code itself is variable text, with that message. The simulator fills both with one
///   database error text, which does not have the usual `Word.Word` shape of a code.
/// - `IncorrectDBClusterState` / `IncorrectDBInstanceState` (403, "Current DB cluster/instance
///   state does not support this operation."): the PolarDB and RDS error lists; the operations
///   say the cluster or instance must be Running.
/// - `IncorrectAccountStatus` (400, "Current account status does not support this
///   operation."): RDS ResetAccountPassword and GrantAccountPrivilege.
/// - `ConcurrentTaskExceeded` (403): PolarDB ResetAccount.
/// - `EngineMigration.ActionDisabled` (400): PolarDB ModifyAccountPassword(Zonal),
///   GrantAccountPrivilege(Zonal).
/// - `SomethingNew.Unknown` (400): not documented anywhere, on purpose: a code the client has
///   never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultCode {
    ServiceUnavailable,
    InternalError,
    LockTimeout,
    DatabaseConnectError,
    AccountUpdateError,
    DbOperationFailed,
    Unknown,
    IncorrectState,
    IncorrectAccountStatus,
    ConcurrentTaskExceeded,
    EngineMigrationActionDisabled,
}

/// The text the variable-code `DB Operation Failed` error carries, as its code and in its
/// message: a MySQL error after which nobody knows whether the statement ran.
pub const DB_OPERATION_FAILED_TEXT: &str = "Lost connection to MySQL server during query";

impl FaultCode {
    pub const ALL: [FaultCode; 11] = [
        FaultCode::ServiceUnavailable,
        FaultCode::InternalError,
        FaultCode::LockTimeout,
        FaultCode::DatabaseConnectError,
        FaultCode::AccountUpdateError,
        FaultCode::DbOperationFailed,
        FaultCode::Unknown,
        FaultCode::IncorrectState,
        FaultCode::IncorrectAccountStatus,
        FaultCode::ConcurrentTaskExceeded,
        FaultCode::EngineMigrationActionDisabled,
    ];

    /// The documented codes after which a change may have been applied: what an
    /// error-after-apply fault picks from by default.
    pub const MAY_HAVE_BEEN_APPLIED: [FaultCode; 7] = [
        FaultCode::ServiceUnavailable,
        FaultCode::InternalError,
        FaultCode::LockTimeout,
        FaultCode::DatabaseConnectError,
        FaultCode::AccountUpdateError,
        FaultCode::DbOperationFailed,
        FaultCode::Unknown,
    ];

    /// Definite refusals worth retrying: what an error-before-apply fault picks from by
    /// default.
    pub const REFUSALS: [FaultCode; 3] = [
        FaultCode::IncorrectState,
        FaultCode::ConcurrentTaskExceeded,
        FaultCode::EngineMigrationActionDisabled,
    ];

    /// The name used in flags, JSON and stats: `lock_timeout`, `db_operation_failed`...
    pub fn name(self) -> &'static str {
        match self {
            FaultCode::ServiceUnavailable => "service_unavailable",
            FaultCode::InternalError => "internal_error",
            FaultCode::LockTimeout => "lock_timeout",
            FaultCode::DatabaseConnectError => "database_connect_error",
            FaultCode::AccountUpdateError => "account_update_error",
            FaultCode::DbOperationFailed => "db_operation_failed",
            FaultCode::Unknown => "unknown",
            FaultCode::IncorrectState => "incorrect_state",
            FaultCode::IncorrectAccountStatus => "incorrect_account_status",
            FaultCode::ConcurrentTaskExceeded => "concurrent_task_exceeded",
            FaultCode::EngineMigrationActionDisabled => "engine_migration_action_disabled",
        }
    }

    /// The error reply for a request on `resource_id` and `account_name` of `service`.
    pub fn error(self, service: Service, resource_id: &str, account_name: &str) -> SimError {
        let polardb = service == Service::PolarDb;
        match self {
            FaultCode::ServiceUnavailable => SimError::new(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            ),
            FaultCode::InternalError => SimError::new(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error.",
            ),
            FaultCode::LockTimeout => SimError::new(
                400,
                "LockTimeout",
                "The request processing has failed due to lock timeout.",
            ),
            FaultCode::DatabaseConnectError if polardb => SimError::new(
                400,
                "Database.ConnectError",
                format!(
                    "db instance {resource_id} connect failed, please check instance status and database processlist"
                ),
            ),
            FaultCode::DatabaseConnectError => SimError::new(
                400,
                "Database.ConnectError",
                "Database connect error. please check instance status and database processlist",
            ),
            FaultCode::AccountUpdateError if polardb => SimError::new(
                400,
                "Account.UpdateError",
                format!("Instance {resource_id} update Account {account_name} error"),
            ),
            FaultCode::AccountUpdateError => SimError::new(
                400,
                "Account.UpdateError",
                "Update Account failed, please check your input value",
            ),
            FaultCode::DbOperationFailed => SimError::new(
                400,
                DB_OPERATION_FAILED_TEXT,
                format!("DB Operation Failed:{DB_OPERATION_FAILED_TEXT}."),
            ),
            FaultCode::Unknown => SimError::new(
                400,
                "SomethingNew.Unknown",
                "The request processing has failed for a reason this client has never seen.",
            ),
            FaultCode::IncorrectState if polardb => SimError::new(
                403,
                "IncorrectDBClusterState",
                "Current DB cluster state does not support this operation.",
            ),
            FaultCode::IncorrectState => SimError::new(
                403,
                "IncorrectDBInstanceState",
                "Current DB instance state does not support this operation.",
            ),
            FaultCode::IncorrectAccountStatus => SimError::new(
                400,
                "IncorrectAccountStatus",
                "Current account status does not support this operation.",
            ),
            FaultCode::ConcurrentTaskExceeded => SimError::new(
                403,
                "ConcurrentTaskExceeded",
                "The number of concurrent tasks exceeds the quota.",
            ),
            FaultCode::EngineMigrationActionDisabled => SimError::new(
                400,
                "EngineMigration.ActionDisabled",
                "Specified action is disabled while custins is in engine migration.",
            ),
        }
    }
}

impl std::fmt::Display for FaultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultCode {
    type Err = String;

    /// Takes the name (`lock_timeout`) or the API's code (`LockTimeout`,
    /// `Database.ConnectError`, `IncorrectDBClusterState`...).
    fn from_str(s: &str) -> Result<FaultCode, String> {
        let s = s.trim();
        FaultCode::ALL
            .into_iter()
            .find(|c| {
                c.name() == s
                    || Service::ALL
                        .into_iter()
                        .any(|service| c.error(service, "", "").code == s)
            })
            .ok_or_else(|| {
                let names: Vec<&str> = FaultCode::ALL.iter().map(|c| c.name()).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

/// Random fault rates, each the probability that one API request meets that fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    pub throttle: f64,
    pub server_error: f64,
    pub lock_timeout: f64,
    pub drop_after_apply: f64,
    pub drop_before_apply: f64,
    pub garbage: f64,
    /// [`Fault::ErrorAfterApply`]: the change is applied, then answered with an error.
    pub error_after_apply: f64,
    /// The codes it picks from, uniformly; empty means [`FaultCode::MAY_HAVE_BEEN_APPLIED`].
    pub error_after_apply_codes: Vec<FaultCode>,
    /// [`Fault::ErrorBeforeApply`]: nothing is applied, and the reply is an error.
    pub error_before_apply: f64,
    /// The codes it picks from, uniformly; empty means [`FaultCode::REFUSALS`].
    pub error_before_apply_codes: Vec<FaultCode>,
    /// Delay before every API reply, after the change is applied: a client that times out
    /// first sees an ambiguous outcome.
    #[serde(with = "humantime_serde_millis")]
    pub latency: Duration,
}

mod humantime_serde_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Counters of what the simulator answered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// API requests received (admin requests excluded).
    pub requests: u64,
    /// Password changes and grants applied.
    pub applied: u64,
    /// Replies by code: `OK` or the error code, plus `Dropped`, `DroppedBeforeApply` and
    /// `Garbage`. A code counts what the client was told, applied or not: see `faults` and
    /// `error_after_apply` for the truth.
    pub by_code: BTreeMap<String, u64>,
    /// Injected faults that took effect, by [`Fault::label`]. A fault that acts after the
    /// change counts only when the change was applied (or was already, for a ClientToken
    /// replay); otherwise the request got its ordinary refusal.
    pub faults: BTreeMap<String, u64>,
    /// Requests whose change was applied and that were answered with an error anyway
    /// ([`Fault::ErrorAfterApply`]), by the code of that error.
    pub error_after_apply: BTreeMap<String, u64>,
    /// Requests for credentials (STS, the ECS metadata service, credential URIs), not counted
    /// in `requests`: by what was asked and the reply's code, like `AssumeRole OK`,
    /// `AssumeRoleWithOIDC AuthenticationFail.OIDCToken.Expired`, `metadata.token OK`,
    /// `metadata.credentials OK`, `uri Garbage`.
    pub credentials: BTreeMap<String, u64>,
    /// API requests whose signature was accepted, by who signed them and the `RegionId` they
    /// carry: `acs:ram::<uid>:user/<name> cn-hangzhou`, `acs:ram::<uid>:role/<role>
    /// ap-southeast-1` (a role session is named by its role).
    pub by_caller: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    polardb: BTreeMap<String, Resource>,
    rds: BTreeMap<String, Resource>,
    /// ClientToken → (fingerprint of the request, RequestId of its first reply).
    client_tokens: HashMap<String, ([u8; 32], String)>,
    nonces: HashMap<String, SystemTime>,
    nonce_order: VecDeque<(SystemTime, String)>,
    scripted: VecDeque<Fault>,
    rates: FaultRates,
    stats: Stats,
    /// Accept a replayed nonce: only for load generators that replay pre-signed requests.
    allow_nonce_replay: bool,
}

impl State {
    fn resources(&mut self, service: Service) -> &mut BTreeMap<String, Resource> {
        match service {
            Service::PolarDb => &mut self.polardb,
            Service::Rds => &mut self.rds,
        }
    }

    /// One account of a cluster or instance.
    fn account(
        &mut self,
        service: Service,
        resource_id: &str,
        account_name: &str,
    ) -> Option<&mut SimAccount> {
        self.resources(service)
            .get_mut(resource_id)?
            .accounts
            .get_mut(account_name)
    }
}

/// The simulated cloud.
pub struct Sim {
    /// Cloud accounts, AccessKeys, RAM roles, OIDC providers, issued STS credentials.
    identity: Mutex<identity::Identity>,
    /// The ECS metadata service, credential URIs, and their faults.
    endpoints: Mutex<metadata::Endpoints>,
    state: Mutex<State>,
    /// Real servers that accepted changes are applied to, one per engine.
    databases: Vec<Arc<Database>>,
    /// Serialises changes to the real servers, so that they land in the order the simulated
    /// state records them.
    database_order: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

/// A reply, or a dropped connection.
#[derive(Debug)]
pub enum Outcome {
    /// `code` is what the stats count: `OK`, `Garbage` or the error's code.
    Reply {
        status: u16,
        body: String,
        code: String,
    },
    /// The connection is closed with no reply; `code` is what the stats count: `Dropped`
    /// (after applying) or `DroppedBeforeApply`.
    Drop { code: &'static str },
    /// A `text/plain` reply, as the ECS metadata service gives.
    Text { status: u16, body: String },
}

impl Outcome {
    /// What the stats count it as.
    fn code(&self) -> String {
        match self {
            Outcome::Drop { code } => (*code).to_owned(),
            Outcome::Reply { code, .. } => code.clone(),
            Outcome::Text { status: 200, .. } => "OK".to_owned(),
            Outcome::Text { status, .. } => status.to_string(),
        }
    }
}

impl Sim {
    /// A cloud with one account, [`PRIMARY_UID`], whose RAM user [`PRIMARY_USER`] holds this
    /// AccessKey pair and owns every cluster and instance added later, unless a test says
    /// otherwise.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Sim {
        Sim {
            identity: Mutex::new(identity::Identity::new(
                access_key_id.into(),
                access_key_secret.into(),
            )),
            endpoints: Mutex::new(metadata::Endpoints::default()),
            state: Mutex::new(State::default()),
            databases: Vec::new(),
            database_order: tokio::sync::Mutex::new(()),
        }
    }

    /// Backs the accounts whose `[account.verify]` names this engine with a real server.
    /// Call before [`Sim::register_config`].
    pub fn add_database_backend(&mut self, database: impl Into<Arc<Database>>) {
        let database = database.into();
        self.databases.retain(|d| d.engine() != database.engine());
        self.databases.push(database);
    }

    fn database(&self, engine: Option<Engine>) -> Option<&Arc<Database>> {
        let engine = engine?;
        self.databases.iter().find(|d| d.engine() == engine)
    }

    /// Creates, on the real servers, the users and databases that registered accounts need but
    /// that do not exist yet. Users get a random password nobody knows, as a new cloud account
    /// would before its first rotation.
    pub async fn prepare_databases(&self) -> Result<(), BackendError> {
        let mut users = Vec::new();
        {
            let state = self.lock();
            for resource in state.polardb.values().chain(state.rds.values()) {
                for (name, account) in &resource.accounts {
                    if let Some(db) = self.database(account.backend) {
                        users.push((db.clone(), name.clone(), resource.databases.clone()));
                    }
                }
            }
        }
        for (db, user, databases) in users {
            db.ensure_user(&user).await?;
            for name in databases {
                db.ensure_database(&name).await?;
            }
        }
        Ok(())
    }

    /// Registers the clusters, instances, accounts and databases a pwrotd config names, the
    /// clone of an alternating account included. `ResetAccount` accounts are privileged; the
    /// others are normal accounts. An account with `[account.verify]` is backed by the real
    /// server of that engine, if the simulator has one.
    ///
    /// Each cluster and instance lives in its account's `region_id` (by default the config's
    /// `[cloud] region_id`), unless it already had a region.
    pub fn register_config(&self, config: &Config) {
        for account in &config.accounts {
            let region = &account.region_id;
            let service = account.api.service();
            let mut state = self.lock();
            let resource = state
                .resources(service)
                .entry(account.resource_id.clone())
                .or_default();
            resource.region.get_or_insert_with(|| region.clone());
            drop(state);
            let account_type = match account.api {
                crate::cloud::Api::ResetAccount => AccountType::Super,
                _ => AccountType::Normal,
            };
            let engine = account.verify.as_ref().map(|v| v.engine);
            let backend = self.database(engine).map(|d| d.engine());
            let clone = match &account.strategy {
                crate::config::Strategy::Alternating { clone } => Some(clone),
                crate::config::Strategy::Single => None,
            };
            for user in std::iter::once(&account.account_name).chain(clone) {
                self.add_account(
                    account.api.service(),
                    &account.resource_id,
                    user,
                    account_type,
                    backend,
                );
            }
            for grant in &account.grants {
                self.add_database(&account.resource_id, &grant.db);
            }
        }
    }

    /// Adds an account, unless it exists; either way its changes go to `backend`'s server.
    pub fn add_account(
        &self,
        service: Service,
        resource_id: &str,
        account_name: &str,
        account_type: AccountType,
        backend: Option<Engine>,
    ) {
        let mut state = self.lock();
        let resource = state
            .resources(service)
            .entry(resource_id.to_owned())
            .or_default();
        resource
            .accounts
            .entry(account_name.to_owned())
            .or_insert(SimAccount {
                account_type,
                password: None,
                password_sha256: None,
                privileges: BTreeMap::new(),
                changes: 0,
                status: AccountStatus::Available,
                description: String::new(),
                backend: None,
            })
            .backend = backend;
    }

    /// Adds a database to a PolarDB cluster, for `GrantAccountPrivilege`.
    pub fn add_database(&self, cluster_id: &str, db: &str) {
        let mut state = self.lock();
        let resource = state.polardb.entry(cluster_id.to_owned()).or_default();
        if !resource.databases.iter().any(|d| d == db) {
            resource.databases.push(db.to_owned());
        }
    }

    /// Puts a cluster or instance in `state` (`Running`, `ClassChanging`, `Rebooting`...). Any
    /// state but [`RUNNING`] refuses every change with `IncorrectDBClusterState` (PolarDB) or
    /// `IncorrectDBInstanceState` (RDS): the operations are documented to need a Running
    /// cluster or instance. False if there is no such resource.
    pub fn set_resource_state(&self, service: Service, resource_id: &str, state: &str) -> bool {
        let mut state_lock = self.lock();
        match state_lock.resources(service).get_mut(resource_id) {
            Some(resource) => {
                state.clone_into(&mut resource.state);
                true
            }
            None => false,
        }
    }

    /// Moves a cluster or instance to `region` (`None`: answers to any `RegionId`). A request
    /// with another `RegionId` then gets `InvalidDBClusterId.NotFound` or
    /// `InvalidDBInstanceName.NotFound`. False if there is no such resource.
    pub fn set_resource_region(
        &self,
        service: Service,
        resource_id: &str,
        region: Option<&str>,
    ) -> bool {
        let mut state = self.lock();
        match state.resources(service).get_mut(resource_id) {
            Some(resource) => {
                resource.region = region.map(str::to_owned);
                true
            }
            None => false,
        }
    }

    /// Gives a cluster or instance to the cloud account `uid` (which is created if new). A
    /// principal of another account then gets `InvalidDBClusterId.NotFound` or
    /// `InvalidDBInstanceName.NotFound`. False if there is no such resource.
    pub fn set_resource_owner(&self, service: Service, resource_id: &str, uid: &str) -> bool {
        self.identity().add_account(uid);
        let mut state = self.lock();
        match state.resources(service).get_mut(resource_id) {
            Some(resource) => {
                uid.clone_into(&mut resource.owner);
                true
            }
            None => false,
        }
    }

    /// The owner's uid and the region of a cluster or instance.
    pub fn resource_placement(
        &self,
        service: Service,
        resource_id: &str,
    ) -> Option<(String, Option<String>)> {
        let mut state = self.lock();
        state
            .resources(service)
            .get(resource_id)
            .map(|r| (r.owner.clone(), r.region.clone()))
    }

    /// The state of a cluster or instance.
    pub fn resource_state(&self, service: Service, resource_id: &str) -> Option<String> {
        let mut state = self.lock();
        state
            .resources(service)
            .get(resource_id)
            .map(|r| r.state.clone())
    }

    /// Every cluster (or instance) of `service` with its state.
    pub fn resource_states(&self, service: Service) -> Vec<(String, String)> {
        let mut state = self.lock();
        state
            .resources(service)
            .iter()
            .map(|(id, r)| (id.clone(), r.state.clone()))
            .collect()
    }

    /// Sets an account's status (see [`AccountStatus`]). False if there is no such account.
    pub fn set_account_status(
        &self,
        service: Service,
        resource_id: &str,
        account_name: &str,
        status: AccountStatus,
    ) -> bool {
        match self.lock().account(service, resource_id, account_name) {
            Some(account) => {
                account.status = status;
                true
            }
            None => false,
        }
    }

    /// Sets an account's `AccountDescription`. False if there is no such account.
    pub fn set_account_description(
        &self,
        service: Service,
        resource_id: &str,
        account_name: &str,
        description: &str,
    ) -> bool {
        match self.lock().account(service, resource_id, account_name) {
            Some(account) => {
                description.clone_into(&mut account.description);
                true
            }
            None => false,
        }
    }

    /// The live state of one account.
    pub fn account(
        &self,
        service: Service,
        resource_id: &str,
        account_name: &str,
    ) -> Option<SimAccount> {
        self.lock()
            .account(service, resource_id, account_name)
            .cloned()
    }

    /// Every account, keyed by service name, resource and account name.
    pub fn accounts(&self) -> Vec<(Service, String, String, SimAccount)> {
        let mut state = self.lock();
        let mut out = Vec::new();
        for service in Service::ALL {
            for (rid, resource) in state.resources(service).iter() {
                for (name, account) in &resource.accounts {
                    out.push((service, rid.clone(), name.clone(), account.clone()));
                }
            }
        }
        out
    }

    /// Whether `password` is the account's live password: a database login, simulated.
    pub fn login(
        &self,
        service: Service,
        resource_id: &str,
        account_name: &str,
        password: &str,
    ) -> bool {
        self.account(service, resource_id, account_name)
            .and_then(|a| a.password)
            .is_some_and(|live| crate::cloud::sign::signatures_match(live.expose(), password))
    }

    /// Lets a nonce be reused, so that a load generator can replay pre-signed requests. Every
    /// other check stays on. Never for a test of the client.
    pub fn allow_nonce_replay(&self, allow: bool) {
        self.lock().allow_nonce_replay = allow;
    }

    /// Replaces the random fault rates.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    pub fn fault_rates(&self) -> FaultRates {
        self.lock().rates.clone()
    }

    /// Makes the next API requests meet these faults, one each, before any random fault.
    pub fn script_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().scripted.extend(faults);
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn identity(&self) -> std::sync::MutexGuard<'_, identity::Identity> {
        self.identity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn endpoints(&self) -> std::sync::MutexGuard<'_, metadata::Endpoints> {
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers one API request.
    pub(crate) async fn handle(&self, request: &auth::Request<'_>) -> Outcome {
        let (_, params) = auth::params(request);
        let (action, version) = auth::action_and_version(request, &params);
        if version == sts::VERSION {
            return self.handle_sts(request, &action);
        }
        let outcome = self.handle_inner(request).await;
        let mut state = self.lock();
        state.stats.requests += 1;
        *state.stats.by_code.entry(outcome.code()).or_default() += 1;
        outcome
    }

    /// Accepts the request, draws its fault, checks and makes its change, and replies as the
    /// fault has it. The latency comes after the change, before the reply.
    async fn handle_inner(&self, request: &auth::Request<'_>) -> Outcome {
        let call = match self.accept(request) {
            Ok(call) => call,
            Err(refused) => return refused,
        };
        let caller = format!("{} {}", call.principal.arn(), call.param("RegionId"));
        *self.lock().stats.by_caller.entry(caller).or_default() += 1;
        let fault = self.draw_fault();
        let latency = self.lock().rates.latency;
        if let Some(refused) = self.refuse_before_apply(&call, fault) {
            return refused;
        }
        if call.action.read_only {
            let result = self.describe_accounts(&call);
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            return match result {
                Ok(body) => self.reply_to_read(&call, fault, body),
                Err(e) => call.reply(e),
            };
        }
        let result = match self.plan(&call) {
            Ok(Planned::Replay(request_id)) => Ok(request_id),
            Ok(Planned::Change(change)) => {
                self.apply(change, fault == Some(Fault::SkipDatabase)).await
            }
            Err(e) => Err(e),
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match result {
            Ok(request_id) => self.reply_after_apply(&call, fault, &request_id),
            Err(e) => call.reply(e),
        }
    }

    /// The checks before any fault, in the API's order: the signature, the nonce and the
    /// timestamp, the version and the action, then the action's required parameters.
    fn accept<'r>(&self, request: &auth::Request<'r>) -> Result<Call<'r>, Outcome> {
        let host = request.host.unwrap_or("pwrotd-sim");
        // Before the action is known, a refusal names no service.
        let refuse = |e: SimError| e.reply(host, None);
        let verified = auth::verify(request, &|key_id, token| {
            self.identity()
                .authenticate(key_id, token, SystemTime::now())
        })
        .map_err(refuse)?;
        self.check_nonce(&verified.nonce, verified.timestamp)
            .map_err(refuse)?;
        let action = lookup_action(&verified.version, &verified.action).map_err(refuse)?;
        let call = Call {
            host,
            action,
            params: verified.params,
            principal: verified.principal,
        };
        if let Some(name) = action
            .required
            .iter()
            .find(|name| call.param(name).is_empty())
        {
            return Err(call.reply(SimError::missing(name)));
        }
        Ok(call)
    }

    /// The reply of a fault that refuses the request before anything is applied, counted; `None`
    /// when the fault (if any) lets the request through.
    fn refuse_before_apply(&self, call: &Call<'_>, fault: Option<Fault>) -> Option<Outcome> {
        let fault = fault?;
        let refused = match fault {
            Fault::Throttle => call.reply(SimError::new(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
            )),
            Fault::ServerError => call.reply(call.error(FaultCode::ServiceUnavailable)),
            Fault::LockTimeout => call.reply(call.error(FaultCode::LockTimeout)),
            Fault::ErrorBeforeApply(code) => call.reply(call.error(code)),
            Fault::DropBeforeApply => Outcome::Drop {
                code: "DroppedBeforeApply",
            },
            _ => return None,
        };
        self.count_fault(fault, None);
        Some(refused)
    }

    /// The reply to a request whose change is made (or was, for a ClientToken replay):
    /// success, unless a fault that acts after the change says otherwise.
    fn reply_after_apply(
        &self,
        call: &Call<'_>,
        fault: Option<Fault>,
        request_id: &str,
    ) -> Outcome {
        match fault {
            Some(Fault::DropAfterApply) => {
                self.count_fault(Fault::DropAfterApply, None);
                Outcome::Drop { code: "Dropped" }
            }
            Some(Fault::Garbage) => {
                self.count_fault(Fault::Garbage, None);
                Outcome::Reply {
                    status: 200,
                    body: "<html><body>502 Bad Gateway</body></html>".into(),
                    code: "Garbage".into(),
                }
            }
            Some(Fault::ErrorAfterApply(code)) => {
                let error = call.error(code);
                self.count_fault(Fault::ErrorAfterApply(code), Some(&error.code));
                call.reply(error)
            }
            other => {
                if other == Some(Fault::SkipDatabase) {
                    self.count_fault(Fault::SkipDatabase, None);
                }
                Outcome::Reply {
                    status: 200,
                    body: serde_json::json!({ "RequestId": request_id }).to_string(),
                    code: "OK".into(),
                }
            }
        }
    }

    /// The reply to a read (`DescribeAccounts`) that found `body`: the faults that act after a
    /// change act here too, with nothing applied (an error after apply is then a plain error,
    /// not counted in [`Stats::error_after_apply`]).
    fn reply_to_read(&self, call: &Call<'_>, fault: Option<Fault>, body: String) -> Outcome {
        let outcome = match fault {
            Some(Fault::DropAfterApply) => Outcome::Drop { code: "Dropped" },
            Some(Fault::Garbage) => Outcome::Reply {
                status: 200,
                body: "<html><body>502 Bad Gateway</body></html>".into(),
                code: "Garbage".into(),
            },
            Some(Fault::ErrorAfterApply(code)) => call.reply(call.error(code)),
            _ => {
                return Outcome::Reply {
                    status: 200,
                    body,
                    code: "OK".into(),
                };
            }
        };
        if let Some(fault) = fault {
            self.count_fault(fault, None);
        }
        outcome
    }

    /// Counts an injected fault that took effect; `after_apply` is the code of the error a
    /// request was answered with after its change was applied.
    fn count_fault(&self, fault: Fault, after_apply: Option<&str>) {
        let mut state = self.lock();
        *state.stats.faults.entry(fault.label()).or_default() += 1;
        if let Some(code) = after_apply {
            *state
                .stats
                .error_after_apply
                .entry(code.to_owned())
                .or_default() += 1;
        }
    }

    fn draw_fault(&self) -> Option<Fault> {
        let mut state = self.lock();
        if let Some(f) = state.scripted.pop_front() {
            return Some(f);
        }
        let rates = &state.rates;
        let mut rng = OsRandom::default();
        let mut pick = |codes: &[FaultCode], default: &[FaultCode]| {
            let codes = if codes.is_empty() { default } else { codes };
            codes[rand::RngExt::random_range(&mut rng, 0..codes.len())]
        };
        let after = pick(
            &rates.error_after_apply_codes,
            &FaultCode::MAY_HAVE_BEEN_APPLIED,
        );
        let before = pick(&rates.error_before_apply_codes, &FaultCode::REFUSALS);
        for (rate, fault) in [
            (rates.throttle, Fault::Throttle),
            (rates.server_error, Fault::ServerError),
            (rates.lock_timeout, Fault::LockTimeout),
            (rates.error_before_apply, Fault::ErrorBeforeApply(before)),
            (rates.drop_after_apply, Fault::DropAfterApply),
            (rates.drop_before_apply, Fault::DropBeforeApply),
            (rates.garbage, Fault::Garbage),
            (rates.error_after_apply, Fault::ErrorAfterApply(after)),
        ] {
            if rate > 0.0 && rand::RngExt::random_bool(&mut rng, rate.min(1.0)) {
                return Some(fault);
            }
        }
        None
    }

    /// `InvalidTimeStamp.Expired` for a timestamp further than [`MAX_SKEW`] from the clock.
    fn check_skew(timestamp: SystemTime) -> Result<(), SimError> {
        let skew = match SystemTime::now().duration_since(timestamp) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > MAX_SKEW {
            return Err(SimError::new(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        Ok(())
    }

    fn check_nonce(&self, nonce: &str, timestamp: SystemTime) -> Result<(), SimError> {
        Sim::check_skew(timestamp)?;
        let now = SystemTime::now();
        let mut state = self.lock();
        while let Some((at, _)) = state.nonce_order.front() {
            if now.duration_since(*at).unwrap_or_default() <= 2 * MAX_SKEW {
                break;
            }
            if let Some((_, old)) = state.nonce_order.pop_front() {
                state.nonces.remove(&old);
            }
        }
        if state.allow_nonce_replay {
            return Ok(());
        }
        if state.nonces.contains_key(nonce) {
            return Err(SimError::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        state.nonces.insert(nonce.to_owned(), now);
        state.nonce_order.push_back((now, nonce.to_owned()));
        Ok(())
    }

    /// Checks an accepted request and decides the change it makes, without making it. The
    /// checks run in the API's order: the account name's form, the cluster or instance and its
    /// state, then the action's own (see [`Call::plan_grant`], [`Call::check_password_change`]
    /// and [`Call::plan_password`]).
    fn plan(&self, call: &Call<'_>) -> Result<Planned, SimError> {
        let mut state = self.lock();
        if !account_name_is_well_formed(call.account_name()) {
            return Err(SimError::new(
                400,
                "InvalidAccountName.Malformed",
                "The specified parameter AccountName is not valid.",
            ));
        }
        let resource = call.find_resource(state.resources(call.action.service))?;
        // "Before you call this operation, make sure that the cluster [instance] is in the
        // Running state. Otherwise, the operation fails." (GrantAccountPrivilege, PolarDB;
        // ResetAccountPassword, RDS). The simulator asks it of every change.
        if resource.state != RUNNING {
            return Err(call.error(FaultCode::IncorrectState));
        }
        if call.action.name == "GrantAccountPrivilege" {
            return call.plan_grant(resource).map(Planned::Change);
        }
        let backend = call.check_password_change(resource)?.backend;
        call.plan_password(backend, &state.client_tokens)
    }

    /// Makes a planned change: on the real database first, if the account has one, then in the
    /// simulated state. Returns the RequestId. A change the database refuses is not applied
    /// and answers `InternalError`.
    async fn apply(&self, change: Change, skip_database: bool) -> Result<String, SimError> {
        let database = self.database(change.backend).filter(|_| !skip_database);
        // Held until the change is recorded; simulated-only accounts never wait on it.
        let _order = match database {
            Some(_) => Some(self.database_order.lock().await),
            None => None,
        };
        if let Some(db) = database {
            let user = change.target.2.as_str();
            let result = match &change.kind {
                ChangeKind::Password { password, .. } => {
                    db.set_password(user, password.expose()).await
                }
                ChangeKind::Grant(grants) => db.grant(user, grants).await,
            };
            if let Err(e) = result {
                tracing::warn!(account = user, "the database did not take the change: {e}");
                let (service, resource_id, _) = &change.target;
                return Err(FaultCode::InternalError.error(*service, resource_id, user));
            }
        }
        Ok(self.commit(change))
    }

    /// Records an applied change in the simulated state.
    fn commit(&self, change: Change) -> String {
        let request_id = new_request_id();
        let mut state = self.lock();
        if let ChangeKind::Password {
            token: Some((token, fingerprint)),
            ..
        } = &change.kind
        {
            state
                .client_tokens
                .insert(token.clone(), (*fingerprint, request_id.clone()));
        }
        state.stats.applied += 1;
        let (service, resource_id, account_name) = &change.target;
        let Some(account) = state.account(*service, resource_id, account_name) else {
            return request_id;
        };
        match change.kind {
            ChangeKind::Password {
                password,
                reset_privileges,
                ..
            } => {
                account.password_sha256 =
                    Some(crate::cloud::sign::sha256_hex(password.expose().as_bytes()));
                account.password = Some(password);
                account.changes += 1;
                if reset_privileges {
                    account.privileges.clear();
                }
            }
            ChangeKind::Grant(grants) => account.privileges.extend(grants),
        }
        request_id
    }
}

/// What the simulated API decided to do with an accepted request.
enum Planned {
    /// A ClientToken replay of a change already made: its first RequestId.
    Replay(String),
    Change(Change),
}

/// A change the simulated API accepted, before it is made.
struct Change {
    /// Service, resource and account name.
    target: (Service, String, String),
    backend: Option<Engine>,
    kind: ChangeKind,
}

enum ChangeKind {
    Password {
        password: Password,
        /// The ClientToken and the request's fingerprint, recorded once the change is made.
        token: Option<(String, [u8; 32])>,
        reset_privileges: bool,
    },
    Grant(Vec<(String, Privilege)>),
}

/// An authenticated request for a known action, with all its required parameters: what its
/// checks, its change and its reply read.
struct Call<'r> {
    /// The request's `Host`, which an error reply names as its `HostId`.
    host: &'r str,
    action: &'static ActionSpec,
    /// Every parameter, from the query and the form body.
    params: BTreeMap<String, String>,
    /// Who signed it.
    principal: Principal,
}

impl Call<'_> {
    /// The cluster or instance the request names, as the caller can see it. Each resource
    /// belongs to one cloud account and lives in one region: the RPC API of a region knows the
    /// resources of that region only, and an account sees its own resources only. A cluster
    /// of another account, or asked for with another `RegionId`, is answered as one that does
    /// not exist (`InvalidDBClusterId.NotFound`, `InvalidDBInstanceName.NotFound`): the PolarDB
    /// and RDS references document no separate code for either case (their `Forbidden.RAM` is
    /// a RAM policy's refusal within the owner's account, which the simulator does not model).
    /// A request without `RegionId` is not checked: the V3 requests of the official SDKs carry
    /// none, the endpoint naming the region.
    fn find_resource<'s>(
        &self,
        resources: &'s BTreeMap<String, Resource>,
    ) -> Result<&'s Resource, SimError> {
        let not_found = || resource_not_found(self.action.service);
        let resource = resources.get(self.resource_id()).ok_or_else(not_found)?;
        if resource.owner != self.principal.uid() {
            return Err(not_found());
        }
        match (&resource.region, self.params.get("RegionId")) {
            (Some(region), Some(asked)) if region != asked => Err(not_found()),
            _ => Ok(resource),
        }
    }

    /// A parameter's value; empty when it is absent.
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The cluster (PolarDB) or instance (RDS) the request names.
    fn resource_id(&self) -> &str {
        self.param(self.action.service.resource_param())
    }

    fn account_name(&self) -> &str {
        self.param("AccountName")
    }

    /// The documented error `code` for this request's service, resource and account.
    fn error(&self, code: FaultCode) -> SimError {
        code.error(self.action.service, self.resource_id(), self.account_name())
    }

    /// The reply carrying `error`.
    fn reply(&self, error: SimError) -> Outcome {
        error.reply(self.host, Some(self.action.service))
    }

    /// A change to the request's account.
    fn change(&self, backend: Option<Engine>, kind: ChangeKind) -> Change {
        Change {
            target: (
                self.action.service,
                self.resource_id().to_owned(),
                self.account_name().to_owned(),
            ),
            backend,
            kind,
        }
    }

    /// `GrantAccountPrivilege`'s checks, in order: the databases and privileges, each
    /// database on the cluster, then an account that is not privileged.
    fn plan_grant(&self, resource: &Resource) -> Result<Change, SimError> {
        let grants = self.grants()?;
        if grants
            .iter()
            .any(|(db, _)| !resource.databases.iter().any(|d| d == db))
        {
            return Err(SimError::new(
                404,
                "InvalidDBName.NotFound",
                "The specified database name does not exist.",
            ));
        }
        let account = resource.account(self.account_name())?;
        // "A privileged account has all permissions on the databases of the cluster by
        // default": GrantAccountPrivilege is for standard accounts, and GrantAccountPrivilege
        // and GrantAccountPrivilegeZonal document 403 IncorrectAccountPrivilegeType, "Current
        // account privilege type does not support this operation." (PolarDB 2017-08-01).
        if account.account_type == AccountType::Super {
            return Err(SimError::new(
                403,
                "IncorrectAccountPrivilegeType",
                "Current account privilege type does not support this operation.",
            ));
        }
        Ok(self.change(account.backend, ChangeKind::Grant(grants)))
    }

    /// `DBName` and `AccountPrivilege`, comma-separated lists of the same length, paired.
    fn grants(&self) -> Result<Vec<(String, Privilege)>, SimError> {
        let dbs: Vec<&str> = self.param("DBName").split(',').collect();
        let privileges: Vec<&str> = self.param("AccountPrivilege").split(',').collect();
        if dbs.len() != privileges.len() {
            return Err(SimError::new(
                400,
                "InvalidAccountPrivilege.Malformed",
                "The number of AccountPrivilege values must match the number of DBName values.",
            ));
        }
        let mut grants = Vec::new();
        for (db, p) in dbs.into_iter().zip(privileges) {
            let privilege = p.parse::<Privilege>().map_err(|_| {
                SimError::new(
                    400,
                    "InvalidAccountPrivilege.Malformed",
                    "The specified parameter AccountPrivilege is not valid.",
                )
            })?;
            grants.push((db.to_owned(), privilege));
        }
        Ok(grants)
    }

    /// The new password, for the password-setting actions.
    fn password(&self) -> &str {
        self.param(self.action.password_param.unwrap_or_default())
    }

    /// The password-setting actions' checks, in order: the password policy, the account,
    /// `ResetAccount` on a privileged account only, and on RDS an `Available` account.
    /// Returns the account.
    fn check_password_change<'a>(
        &self,
        resource: &'a Resource,
    ) -> Result<&'a SimAccount, SimError> {
        if password::validate(self.password()).is_err() {
            return Err(match self.action.service {
                Service::PolarDb => SimError::new(
                    400,
                    "InvalidAccountPassword.Malformed",
                    "The specified parameter AccountPassword is not valid.",
                ),
                Service::Rds => SimError::new(
                    400,
                    "InvalidAccountPassword.Format",
                    "Specified account password format is not valid.",
                ),
            });
        }
        let account = resource.account(self.account_name())?;
        if self.action.name == "ResetAccount" && account.account_type != AccountType::Super {
            return Err(SimError::new(
                400,
                "IncorrectAccountPrivilegeType",
                "ResetAccount applies to privileged accounts only.",
            ));
        }
        // RDS ResetAccountPassword documents 400 IncorrectAccountStatus for an account whose
        // status does not allow it; the PolarDB operations document nothing of the kind.
        if self.action.service == Service::Rds && account.status != AccountStatus::Available {
            return Err(self.error(FaultCode::IncorrectAccountStatus));
        }
        Ok(account)
    }

    /// The password change to an account on `backend`; with a `ClientToken`
    /// (`ModifyAccountPasswordZonal` only) already seen in `client_tokens`, the replay of the
    /// change made then, or a mismatch.
    fn plan_password(
        &self,
        backend: Option<Engine>,
        client_tokens: &HashMap<String, ([u8; 32], String)>,
    ) -> Result<Planned, SimError> {
        let password = self.password();
        let mut token = None;
        if let Some(t) = self
            .params
            .get("ClientToken")
            .filter(|_| self.action.name == "ModifyAccountPasswordZonal")
        {
            if t.len() > 64 || !t.is_ascii() {
                return Err(SimError::new(
                    400,
                    "InvalidClientToken.Malformed",
                    "The specified parameter ClientToken is not valid.",
                ));
            }
            let fingerprint = fingerprint(&[
                self.action.name,
                self.resource_id(),
                self.account_name(),
                password,
            ]);
            match client_tokens.get(t) {
                Some((seen, first_id)) if *seen == fingerprint => {
                    return Ok(Planned::Replay(first_id.clone()));
                }
                Some(_) => {
                    return Err(SimError::new(
                        400,
                        "IdempotentParameterMismatch",
                        "The request uses the same client token as a previous, but non-identical request.",
                    ));
                }
                None => token = Some((t.clone(), fingerprint)),
            }
        }
        Ok(Planned::Change(self.change(
            backend,
            ChangeKind::Password {
                password: Password::new(password.to_owned()),
                token,
                reset_privileges: self.action.name == "ResetAccount",
            },
        )))
    }
}

/// Whether an AccountName could name an account. CreateAccount documents the rules: a lower-case
/// letter first, then lower-case letters, digits and underscores, ending with a letter or digit;
/// at most 16 characters on PolarDB and 32 on RDS. Anything else is
/// `InvalidAccountName.Malformed` (documented for ResetAccount and GrantAccountPrivilege on
/// PolarDB). The simulator allows up to 32 on both, and a single character, which the real API
/// refuses (2 at least) but the tests' throwaway accounts use.
fn account_name_is_well_formed(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= 32
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The documented refusal of a cluster (PolarDB) or instance (RDS) that does not exist.
fn resource_not_found(service: Service) -> SimError {
    match service {
        Service::PolarDb => SimError::new(
            404,
            "InvalidDBClusterId.NotFound",
            "The DBClusterId provided does not exist in our records.",
        ),
        // The RDS reference documents a missing instance as InvalidDBInstanceName.NotFound
        // (404, "The database instance does not exist."), e.g. on RestartDBInstance and
        // ModifySecurityIps, 2014-08-15; not InvalidDBInstanceId.NotFound.
        Service::Rds => SimError::new(
            404,
            "InvalidDBInstanceName.NotFound",
            "The database instance does not exist.",
        ),
    }
}

fn account_not_found() -> SimError {
    SimError::new(
        404,
        "InvalidAccountName.NotFound",
        "The specified account name does not exist.",
    )
}

fn fingerprint(parts: &[&str]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// A RequestId in the API's upper-case UUID shape.
fn new_request_id() -> String {
    let hex = random::hex_token::<16>()
        .unwrap_or_else(|_| "0".repeat(32))
        .to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What the simulator knows of an action.
#[derive(Debug)]
struct ActionSpec {
    name: &'static str,
    service: Service,
    required: &'static [&'static str],
    /// The parameter carrying the new password, for the password-setting actions.
    password_param: Option<&'static str>,
    /// `DescribeAccounts`: changes nothing.
    read_only: bool,
}

const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "ModifyAccountPassword",
        service: Service::PolarDb,
        required: &["DBClusterId", "AccountName", "NewAccountPassword"],
        password_param: Some("NewAccountPassword"),
        read_only: false,
    },
    ActionSpec {
        name: "ModifyAccountPasswordZonal",
        service: Service::PolarDb,
        required: &["DBClusterId", "AccountName", "NewAccountPassword"],
        password_param: Some("NewAccountPassword"),
        read_only: false,
    },
    ActionSpec {
        name: "ResetAccount",
        service: Service::PolarDb,
        required: &["DBClusterId", "AccountName", "AccountPassword"],
        password_param: Some("AccountPassword"),
        read_only: false,
    },
    ActionSpec {
        name: "GrantAccountPrivilege",
        service: Service::PolarDb,
        required: &["DBClusterId", "AccountName", "DBName", "AccountPrivilege"],
        password_param: None,
        read_only: false,
    },
    // DescribeAccounts: DBClusterId required, AccountName, PageSize, PageNumber optional
    // (PolarDB 2017-08-01); DBInstanceId required, the others optional (RDS 2014-08-15).
    ActionSpec {
        name: "DescribeAccounts",
        service: Service::PolarDb,
        required: &["DBClusterId"],
        password_param: None,
        read_only: true,
    },
    ActionSpec {
        name: "DescribeAccounts",
        service: Service::Rds,
        required: &["DBInstanceId"],
        password_param: None,
        read_only: true,
    },
    ActionSpec {
        name: "ResetAccountPassword",
        service: Service::Rds,
        required: &["DBInstanceId", "AccountName", "AccountPassword"],
        password_param: Some("AccountPassword"),
        read_only: false,
    },
];

fn lookup_action(version: &str, action: &str) -> Result<&'static ActionSpec, SimError> {
    let Some(service) = Service::ALL.into_iter().find(|s| s.version() == version) else {
        return Err(SimError::new(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        ));
    };
    ACTIONS
        .iter()
        .find(|a| a.service == service && a.name == action)
        .ok_or_else(|| {
            SimError::new(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        })
}

/// An error reply in the documented shape.
#[derive(Debug)]
pub struct SimError {
    status: u16,
    code: String,
    message: String,
}

impl SimError {
    fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> SimError {
        SimError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `Missing<name>`: a required parameter is absent (or, for an action's own, empty).
    fn missing(name: &str) -> SimError {
        SimError::new(
            400,
            format!("Missing{name}"),
            format!("{name} is mandatory for this action."),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `Code` of the body.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The `Message` of the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn reply(self, host: &str, service: Option<Service>) -> Outcome {
        let product = match service {
            Some(Service::Rds) => "Rds",
            _ => "polardb",
        };
        self.reply_as(host, product)
    }

    /// The reply carrying it, `product` naming the service in `Recommend`.
    fn reply_as(self, host: &str, product: &str) -> Outcome {
        Outcome::Reply {
            status: self.status,
            body: serde_json::json!({
                "RequestId": new_request_id(),
                "HostId": host,
                "Code": self.code,
                "Message": self.message,
                "Recommend": format!(
                    "https://api.aliyun.com/troubleshoot?q={}&product={product}",
                    crate::cloud::sign::percent_encode(&self.code).as_str()
                ),
            })
            .to_string(),
            code: self.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_the_apis() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(id, id.to_uppercase());
    }

    #[test]
    fn versions_and_actions() {
        assert!(lookup_action("2017-08-01", "ResetAccount").is_ok());
        assert!(lookup_action("2014-08-15", "ResetAccountPassword").is_ok());
        assert_eq!(
            lookup_action("2014-08-15", "ResetAccount")
                .unwrap_err()
                .code,
            "InvalidAction.NotFound"
        );
        assert_eq!(
            lookup_action("2020-01-01", "ResetAccount")
                .unwrap_err()
                .code,
            "InvalidVersion"
        );
    }
}
