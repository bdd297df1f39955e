//! Proving a password works by logging in with it (PRODUCT.md §8), on MySQL-compatible engines
//! (PolarDB for MySQL, PolarDB-X, RDS MySQL, MariaDB) and PostgreSQL-compatible ones.
//!
//! A login has three outcomes, and only the database's own refusal counts as "this password
//! does not work". A timeout, a refused connection, a TLS failure or any other error says nothing
//! about the password, so it is never read as a rejection: no network guesswork.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgSslMode};

use crate::password::Password;

/// The longest one login may take, within the verification's overall `timeout`.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause between logins while waiting for a password to propagate; it doubles up to
/// [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(500);
const MAX_INTERVAL: Duration = Duration::from_secs(5);

/// The MySQL server error for a refused login: ER_ACCESS_DENIED_ERROR.
const MYSQL_ACCESS_DENIED: u16 = 1045;
/// PostgreSQL's SQLSTATE for a refused password: invalid_password.
const POSTGRES_INVALID_PASSWORD: &str = "28P01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Mysql,
    Postgresql,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Postgresql => "postgresql",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Engine::Mysql => 3306,
            Engine::Postgresql => 5432,
        }
    }
}

/// How the login connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// No TLS.
    Disable,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, with the certificate checked against the trusted CAs, not the host name.
    VerifyCa,
    /// TLS, with the certificate and the host name checked. The default.
    VerifyFull,
}

impl Tls {
    pub const NAMES: [&'static str; 4] = ["disable", "require", "verify-ca", "verify-full"];

    pub fn parse(name: &str) -> Option<Tls> {
        Some(match name {
            "disable" => Tls::Disable,
            "require" => Tls::Require,
            "verify-ca" => Tls::VerifyCa,
            "verify-full" => Tls::VerifyFull,
            _ => return None,
        })
    }
}

/// `[account.verify]`: where and how to log in as the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    /// The database to connect to: none for MySQL, `postgres` for PostgreSQL by default.
    pub database: Option<String>,
    pub tls: Tls,
    /// Extra CA certificates (PEM) to trust, besides the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// How long to keep trying a new password that does not log in yet: propagation lags.
    pub timeout: Duration,
}

/// What one login showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The database accepted the password.
    Accepted,
    /// The database refused the password.
    Rejected(String),
    /// No answer about the password: the network, TLS, a timeout or another error.
    Error(String),
}

impl Login {
    /// The `outcome` label of `pwrotd_verifications_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Login::Accepted => "success",
            Login::Rejected(_) => "rejected",
            Login::Error(_) => "error",
        }
    }

    /// Why a login did not succeed, for logs and reports. Never holds the password.
    pub fn reason(&self) -> &str {
        match self {
            Login::Accepted => "accepted",
            Login::Rejected(r) | Login::Error(r) => r,
        }
    }
}

/// The pauses between logins that wait for a password to propagate.
#[derive(Debug)]
pub struct Patience {
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl Patience {
    /// Sleeps before the next try and returns true, or returns false at once if the next try
    /// would start after the deadline.
    pub async fn wait(&mut self) -> bool {
        if tokio::time::Instant::now() + self.pause > self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_INTERVAL);
        true
    }
}

impl Verify {
    /// Logs in once as `user` with `password`, then disconnects.
    pub async fn login(&self, user: &str, password: &Password) -> Login {
        let limit = LOGIN_TIMEOUT.min(self.timeout.max(Duration::from_secs(1)));
        // Connected means authenticated: how the goodbye goes says nothing about the password.
        let attempt = async {
            match self.engine {
                Engine::Mysql => {
                    let connection = self.mysql(user, password).connect().await?;
                    let _ = sqlx::Connection::close(connection).await;
                }
                Engine::Postgresql => {
                    let connection = self.postgres(user, password).connect().await?;
                    let _ = sqlx::Connection::close(connection).await;
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(())) => Login::Accepted,
            Ok(Err(e)) => self.classify(&e),
            Err(_) => Login::Error(format!(
                "no answer from {}:{} within {}",
                self.host,
                self.port,
                humantime::format_duration(limit)
            )),
        }
    }

    /// Whether the database checks `user`'s password at all: a login with a random password
    /// that was never set must be refused. Trust authentication, or a pooler that takes any
    /// password, would otherwise make every login look like proof.
    pub async fn checks_passwords(&self, user: &str) -> bool {
        let Ok(decoy) = crate::random::hex_token::<16>() else {
            return false;
        };
        let decoy = Password::new(format!("Decoy-{decoy}!"));
        matches!(self.login(user, &decoy).await, Login::Rejected(_))
    }

    /// Logs in until the password is accepted or `timeout` has passed, pausing between tries:
    /// a new password can take a moment to reach every node. Returns the last outcome.
    pub async fn login_within(&self, user: &str, password: &Password) -> Login {
        let mut patience = self.patience();
        loop {
            let login = self.login(user, password).await;
            if login == Login::Accepted || !patience.wait().await {
                return login;
            }
        }
    }

    /// Pauses between logins, ending after `timeout`.
    pub fn patience(&self) -> Patience {
        Patience {
            deadline: tokio::time::Instant::now() + self.timeout,
            pause: FIRST_INTERVAL,
        }
    }

    /// Where logins go, for messages.
    pub fn target(&self) -> String {
        format!("{} {}:{}", self.engine.as_str(), self.host, self.port)
    }

    fn classify(&self, error: &sqlx::Error) -> Login {
        if let sqlx::Error::Database(db) = error {
            let rejected = match self.engine {
                Engine::Mysql => db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == MYSQL_ACCESS_DENIED),
                Engine::Postgresql => db
                    .try_downcast_ref::<PgDatabaseError>()
                    .is_some_and(|e| e.code() == POSTGRES_INVALID_PASSWORD),
            };
            if rejected {
                return Login::Rejected(format!("{} refused it: {}", self.target(), db.message()));
            }
        }
        Login::Error(format!("{}: {error}", self.target()))
    }

    fn mysql(&self, user: &str, password: &Password) -> MySqlConnectOptions {
        let mut options = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(user)
            .password(password.expose())
            .ssl_mode(match self.tls {
                Tls::Disable => MySqlSslMode::Disabled,
                Tls::Require => MySqlSslMode::Required,
                Tls::VerifyCa => MySqlSslMode::VerifyCa,
                Tls::VerifyFull => MySqlSslMode::VerifyIdentity,
            })
            .disable_statement_logging();
        if let Some(db) = &self.database {
            options = options.database(db);
        }
        if let Some(ca) = &self.ca_file {
            options = options.ssl_ca(ca);
        }
        options
    }

    fn postgres(&self, user: &str, password: &Password) -> PgConnectOptions {
        // Not `new()`: it would read PG* variables and ~/.pgpass, and a login must use exactly
        // the password under test.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(user)
            .password(password.expose())
            .database(self.database.as_deref().unwrap_or("postgres"))
            .application_name("pwrotd")
            .ssl_mode(match self.tls {
                Tls::Disable => PgSslMode::Disable,
                Tls::Require => PgSslMode::Require,
                Tls::VerifyCa => PgSslMode::VerifyCa,
                Tls::VerifyFull => PgSslMode::VerifyFull,
            })
            .disable_statement_logging();
        if let Some(ca) = &self.ca_file {
            options = options.ssl_root_cert(ca);
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes() {
        for name in Tls::NAMES {
            assert!(Tls::parse(name).is_some(), "{name}");
        }
        assert_eq!(Tls::parse("verify-full"), Some(Tls::VerifyFull));
        assert_eq!(Tls::parse("true"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn patience_backs_off_and_ends_by_the_timeout() {
        let verify = Verify {
            engine: Engine::Mysql,
            host: "db".into(),
            port: 3306,
            database: None,
            tls: Tls::VerifyFull,
            ca_file: None,
            timeout: Duration::from_secs(20),
        };
        let start = tokio::time::Instant::now();
        let mut patience = verify.patience();
        let mut pauses = Vec::new();
        let mut before = start;
        while patience.wait().await {
            pauses.push(before.elapsed().as_millis());
            before = tokio::time::Instant::now();
        }
        // 0.5, 1, 2, 4, 5, 5 s: 17.5 s; a seventh pause would end past 20 s.
        assert_eq!(pauses, [500, 1000, 2000, 4000, 5000, 5000]);
        assert!(start.elapsed() <= verify.timeout);
    }
}
