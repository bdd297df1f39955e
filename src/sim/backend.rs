//! A real database behind the simulator: each password change the simulated API accepts becomes
//! an `ALTER USER` (MySQL, MariaDB) or `ALTER ROLE` (PostgreSQL) on a real server, and each
//! `GrantAccountPrivilege` becomes real `REVOKE` and `GRANT` statements. Logins against that
//! server then show what a real database would: whether a password is live.
//!
//! The simulator reaches the server through an admin connection URL. Statements are sent as
//! text: utility statements take no bind parameters. Every name and password is checked against
//! a strict alphabet first, so quoting is never in doubt.

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, Row};

use crate::cloud::Privilege;
use crate::verify::Engine;

/// One admin connection to a real server.
pub struct Database {
    engine: Engine,
    target: Target,
}

enum Target {
    Mysql(MySqlConnectOptions),
    Postgres(PgConnectOptions),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connect options hold the admin password.
        f.debug_struct("Database")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// Why the database did not take a change. Never holds a password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(String);

fn failed(what: &str) -> impl FnOnce(sqlx::Error) -> BackendError + '_ {
    move |e| BackendError(format!("{what}: {e}"))
}

/// For statements that carry a password: a server's message can quote the statement, so only
/// its error code is kept.
fn failed_quietly(what: &str) -> impl FnOnce(sqlx::Error) -> BackendError + '_ {
    move |e| match e {
        sqlx::Error::Database(db) => BackendError(format!(
            "{what}: the server refused it with code {} (its message is withheld: it may quote the password)",
            db.code().unwrap_or_default()
        )),
        other => failed(what)(other),
    }
}

impl Database {
    /// Parses an admin URL: `mysql://user:password@host:port` or
    /// `postgres://user:password@host:port/database`.
    pub fn from_url(engine: Engine, url: &str) -> Result<Database, BackendError> {
        let bad = |e: sqlx::Error| BackendError(format!("not a {} URL: {e}", engine.as_str()));
        let target = match engine {
            Engine::Mysql => Target::Mysql(
                url.parse::<MySqlConnectOptions>()
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
            Engine::Postgresql => Target::Postgres(
                url.parse::<PgConnectOptions>()
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
        };
        Ok(Database { engine, target })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Connects once, to show the server is there; returns the TCP port it listens on.
    pub async fn probe(&self) -> Result<u16, BackendError> {
        let port: i64 = match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let port = sqlx::query_scalar::<_, i64>("SELECT CAST(@@port AS SIGNED)")
                    .fetch_one(&mut c)
                    .await
                    .map_err(failed("@@port"))?;
                c.close().await.map_err(failed("disconnect"))?;
                port
            }
            Target::Postgres(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let port = sqlx::query_scalar::<_, String>("SHOW port")
                    .fetch_one(&mut c)
                    .await
                    .map_err(failed("port"))?;
                c.close().await.map_err(failed("disconnect"))?;
                port.parse()
                    .map_err(|_| BackendError(format!("the server reports port {port:?}")))?
            }
        };
        u16::try_from(port).map_err(|_| BackendError(format!("the server reports port {port}")))
    }

    /// Drops the user if it exists.
    pub async fn drop_user(&self, user: &str) -> Result<(), BackendError> {
        let user = checked(user)?;
        match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                c.execute(format!("DROP USER IF EXISTS '{user}'@'%'").as_str())
                    .await
                    .map_err(failed("DROP USER"))?;
                c.close().await.map_err(failed("disconnect"))
            }
            Target::Postgres(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                c.execute(format!("DROP ROLE IF EXISTS \"{user}\"").as_str())
                    .await
                    .map_err(failed("DROP ROLE"))?;
                c.close().await.map_err(failed("disconnect"))
            }
        }
    }

    /// Creates the user, with a random password nobody knows, unless it exists: a cloud
    /// account exists before anyone rotates it.
    pub async fn ensure_user(&self, user: &str) -> Result<(), BackendError> {
        let user = checked(user)?;
        let password = crate::random::hex_token::<16>()
            .map_err(|e| BackendError(format!("no randomness: {e}")))?;
        match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let sql =
                    format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'");
                c.execute(sql.as_str())
                    .await
                    .map_err(failed_quietly("CREATE USER"))?;
                c.close().await.map_err(failed("disconnect"))
            }
            Target::Postgres(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let exists = sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
                    .bind(user)
                    .fetch_optional(&mut c)
                    .await
                    .map_err(failed("pg_roles"))?
                    .is_some();
                if !exists {
                    let sql = format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'");
                    c.execute(sql.as_str())
                        .await
                        .map_err(failed_quietly("CREATE ROLE"))?;
                }
                c.close().await.map_err(failed("disconnect"))
            }
        }
    }

    /// Creates the database unless it exists.
    pub async fn ensure_database(&self, db: &str) -> Result<(), BackendError> {
        let db = checked(db)?;
        match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                c.execute(format!("CREATE DATABASE IF NOT EXISTS `{db}`").as_str())
                    .await
                    .map_err(failed("CREATE DATABASE"))?;
                c.close().await.map_err(failed("disconnect"))
            }
            Target::Postgres(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(db)
                    .fetch_optional(&mut c)
                    .await
                    .map_err(failed("pg_database"))?
                    .is_some();
                if !exists {
                    c.execute(format!("CREATE DATABASE \"{db}\"").as_str())
                        .await
                        .map_err(failed("CREATE DATABASE"))?;
                }
                c.close().await.map_err(failed("disconnect"))
            }
        }
    }

    /// Sets a user's password, on every host the user is defined for.
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), BackendError> {
        let user = checked(user)?;
        if !password
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'\\')
        {
            return Err(BackendError(
                "the password holds a character the simulator will not quote".into(),
            ));
        }
        match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let hosts = mysql_hosts(&mut c, user).await?;
                for host in hosts {
                    let sql = format!("ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}'");
                    c.execute(sql.as_str())
                        .await
                        .map_err(failed_quietly("ALTER USER"))?;
                }
                c.close().await.map_err(failed("disconnect"))
            }
            Target::Postgres(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let sql = format!("ALTER ROLE \"{user}\" PASSWORD '{password}'");
                c.execute(sql.as_str())
                    .await
                    .map_err(failed_quietly("ALTER ROLE"))?;
                c.close().await.map_err(failed("disconnect"))
            }
        }
    }

    /// Makes a user's privileges on each database exactly the one given, as PolarDB's
    /// GrantAccountPrivilege does: whatever the user had on that database is revoked first.
    pub async fn grant(
        &self,
        user: &str,
        grants: &[(String, Privilege)],
    ) -> Result<(), BackendError> {
        let user = checked(user)?;
        match &self.target {
            Target::Mysql(options) => {
                let mut c = options.connect().await.map_err(failed("connect"))?;
                let hosts = mysql_hosts(&mut c, user).await?;
                for (db, privilege) in grants {
                    let db = checked(db)?;
                    let privileges = mysql_privileges(*privilege);
                    for host in &hosts {
                        let account = format!("'{user}'@'{host}'");
                        let revoke = format!("REVOKE ALL PRIVILEGES ON `{db}`.* FROM {account}");
                        match c.execute(revoke.as_str()).await {
                            Ok(_) => {}
                            Err(sqlx::Error::Database(e))
                                if e.try_downcast_ref::<MySqlDatabaseError>()
                                    .is_some_and(|e| e.number() == MYSQL_NO_SUCH_GRANT) => {}
                            Err(e) => return Err(failed("REVOKE")(e)),
                        }
                        c.execute(format!("GRANT {privileges} ON `{db}`.* TO {account}").as_str())
                            .await
                            .map_err(failed("GRANT"))?;
                    }
                }
                c.close().await.map_err(failed("disconnect"))
            }
            Target::Postgres(options) => {
                for (db, privilege) in grants {
                    let db = checked(db)?;
                    // Table and schema privileges live in the database itself.
                    let mut c = options
                        .clone()
                        .database(db)
                        .connect()
                        .await
                        .map_err(failed("connect"))?;
                    let (database, schema, tables) = postgres_privileges(*privilege);
                    let mut sql = format!(
                        "REVOKE ALL ON DATABASE \"{db}\" FROM \"{user}\";\
                         REVOKE ALL ON SCHEMA public FROM \"{user}\";\
                         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"{user}\";\
                         GRANT {database} ON DATABASE \"{db}\" TO \"{user}\";\
                         GRANT {schema} ON SCHEMA public TO \"{user}\";"
                    );
                    if let Some(tables) = tables {
                        sql.push_str(&format!(
                            "GRANT {tables} ON ALL TABLES IN SCHEMA public TO \"{user}\";"
                        ));
                    }
                    c.execute(sql.as_str()).await.map_err(failed("GRANT"))?;
                    c.close().await.map_err(failed("disconnect"))?;
                }
                Ok(())
            }
        }
    }
}

/// MySQL's ER_NONEXISTING_GRANT: a REVOKE found nothing to revoke.
const MYSQL_NO_SUCH_GRANT: u16 = 1141;

/// A user or database name the simulator can quote without doubt.
fn checked(name: &str) -> Result<&str, BackendError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(BackendError(format!(
            "{name:?} is not a name the simulator passes to a real database (use A-Z a-z 0-9 _ - .)"
        )))
    }
}

/// The hosts a MySQL user is defined for: `ALTER USER` needs `'user'@'host'`.
async fn mysql_hosts(
    c: &mut sqlx::MySqlConnection,
    user: &str,
) -> Result<Vec<String>, BackendError> {
    let rows = sqlx::query("SELECT CONVERT(Host USING utf8mb4) FROM mysql.user WHERE User = ?")
        .bind(user)
        .fetch_all(&mut *c)
        .await
        .map_err(failed("mysql.user"))?;
    let hosts: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .filter(|h| checked(h).is_ok() || h == "%")
        .collect();
    if hosts.is_empty() {
        return Err(BackendError(format!("no user {user} in the database")));
    }
    Ok(hosts)
}

/// PolarDB for MySQL's privilege levels as MySQL privileges on one database.
fn mysql_privileges(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::ReadWrite => "ALL PRIVILEGES",
        Privilege::ReadOnly => "SELECT, LOCK TABLES, SHOW VIEW",
        Privilege::DmlOnly => {
            "SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, \
             SHOW VIEW, EVENT, TRIGGER"
        }
        Privilege::DdlOnly => {
            "CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, \
             SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE"
        }
        Privilege::ReadIndex => "SELECT, INDEX",
    }
}

/// The same levels for PostgreSQL: on the database, on schema `public`, on its tables.
fn postgres_privileges(privilege: Privilege) -> (&'static str, &'static str, Option<&'static str>) {
    match privilege {
        Privilege::ReadWrite => (
            "CONNECT, TEMPORARY",
            "USAGE, CREATE",
            Some("SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"),
        ),
        Privilege::ReadOnly | Privilege::ReadIndex => ("CONNECT", "USAGE", Some("SELECT")),
        Privilege::DmlOnly => ("CONNECT", "USAGE", Some("SELECT, INSERT, UPDATE, DELETE")),
        Privilege::DdlOnly => ("CONNECT, TEMPORARY", "USAGE, CREATE", None),
    }
}
