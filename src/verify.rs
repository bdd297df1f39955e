//! Proving a password works by logging in with it (docs/protocol.md#verification), on MySQL-compatible engines
//! (PolarDB for MySQL, PolarDB-X, RDS MySQL, MariaDB) and PostgreSQL-compatible ones.
//!
//! A login has three outcomes, and only the database's own refusal counts as "this password
//! does not work". A timeout, a refused connection, a TLS failure or any other error says nothing
//! about the password, so it is never read as a rejection: no network guesswork.
//!
//! pwrotd makes the TCP connection itself: it resolves `host` and tries the addresses in the
//! resolver's order, each with its own timeout (`address_timeout`), so that one address that
//! drops packets costs seconds, not the OS's minutes of SYN retries and with them the whole
//! login. sqlx has no way to take a connected stream, but it can connect to a Unix socket while
//! it still checks TLS against `host`: so a `Relay` puts the connection behind a private Unix
//! socket, and sqlx logs in through that.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgSslMode};

use crate::password::Password;

/// The longest one login may take, within the verification's overall `timeout`.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest and the shortest time a TCP connect to one of the host's addresses gets before
/// the next address is tried; see [`address_timeout`].
const MAX_ADDRESS_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_ADDRESS_TIMEOUT: Duration = Duration::from_secs(1);
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

/// What a login showed, without the why: the `outcome` label of
/// `pwrotd_verifications_total` and the audit log's `verification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The database accepted the password.
    Success,
    /// The database refused it.
    Rejected,
    /// No answer about it.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Rejected => "rejected",
            Verdict::Error => "error",
        }
    }
}

impl Login {
    pub fn verdict(&self) -> Verdict {
        match self {
            Login::Accepted => Verdict::Success,
            Login::Rejected(_) => Verdict::Rejected,
            Login::Error(_) => Verdict::Error,
        }
    }

    /// The `outcome` label of `pwrotd_verifications_total`.
    pub fn outcome(&self) -> &'static str {
        self.verdict().as_str()
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
        let deadline = tokio::time::Instant::now() + limit;
        let tcp = match self.connect(limit, deadline).await {
            Ok(tcp) => tcp,
            Err(reason) => return Login::Error(format!("{}: {reason}", self.target())),
        };
        // Torn down when this function returns or its future is dropped, on every path.
        let relay = match Relay::start(tcp, &self.socket_name()) {
            Ok(relay) => relay,
            Err(e) => {
                return Login::Error(format!(
                    "{}: cannot set up the login's private socket: {e}",
                    self.target()
                ));
            }
        };
        // Connected means authenticated: how the goodbye goes says nothing about the password.
        let attempt = async {
            match self.engine {
                Engine::Mysql => {
                    let options = self.mysql(user, password).socket(relay.socket());
                    let connection = options.connect().await?;
                    let _ = sqlx::Connection::close(connection).await;
                }
                Engine::Postgresql => {
                    // PostgreSQL's option names the directory; sqlx appends `.s.PGSQL.<port>`.
                    let options = self.postgres(user, password).socket(relay.dir());
                    let connection = options.connect().await?;
                    let _ = sqlx::Connection::close(connection).await;
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        let login = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(())) => Login::Accepted,
            Ok(Err(e)) => self.classify(&e),
            Err(_) => Login::Error(format!(
                "no answer from {}:{} within {}",
                self.host,
                self.port,
                humantime::format_duration(limit)
            )),
        };
        drop(relay);
        login
    }

    /// Resolves `host` and makes the TCP connection: to each address in the resolver's order,
    /// each with its own timeout, until one takes it. The error names every address tried and
    /// what happened there.
    async fn connect(
        &self,
        limit: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<tokio::net::TcpStream, String> {
        // As sqlx does: an IPv6 address may come in brackets.
        let host = self.host.trim_matches(['[', ']']);
        let addresses: Vec<SocketAddr> =
            match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, self.port)))
                .await
            {
                Ok(Ok(addresses)) => addresses.collect(),
                Ok(Err(e)) => return Err(format!("cannot resolve {host}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "cannot resolve {host} within {}",
                        humantime::format_duration(limit)
                    ));
                }
            };
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        let each = address_timeout(limit, addresses.len());
        connect_in_order(&addresses, each, deadline).await
    }

    /// The name of the relay's socket file: PostgreSQL's is fixed by the port.
    fn socket_name(&self) -> String {
        match self.engine {
            Engine::Mysql => "mysql.sock".to_owned(),
            Engine::Postgresql => format!(".s.PGSQL.{}", self.port),
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

/// How long a TCP connect to one address may take before the next is tried: the login's
/// budget shared among the addresses, at least 1 s (a SYN lost once is resent after 1 s) and at
/// most 3 s. With the usual 10 s budget that is 3 s for up to three addresses. Addresses that do
/// not fit in the budget are not tried, and the error says so.
fn address_timeout(limit: Duration, addresses: usize) -> Duration {
    let share = limit / u32::try_from(addresses.max(1)).unwrap_or(u32::MAX);
    share.clamp(MIN_ADDRESS_TIMEOUT, MAX_ADDRESS_TIMEOUT)
}

/// Connects to `addresses` in order, giving each up to `each` and all of them until
/// `deadline`. A refused connection moves to the next address at once.
async fn connect_in_order(
    addresses: &[SocketAddr],
    each: Duration,
    deadline: tokio::time::Instant,
) -> Result<tokio::net::TcpStream, String> {
    let mut failures = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let rest: Vec<String> = addresses[i..].iter().map(ToString::to_string).collect();
            failures.push(format!("{}: not tried, out of time", rest.join(", ")));
            break;
        }
        let until = deadline.min(now + each);
        match tokio::time::timeout_at(until, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // As sqlx does with the connections it makes.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => failures.push(format!("{address}: {e}")),
            Err(_) => failures.push(format!(
                "{address}: no answer within {}",
                in_millis(until - now)
            )),
        }
    }
    Err(format!(
        "no address took the TCP connection: {}",
        failures.join("; ")
    ))
}

/// `d` to the millisecond, for messages.
fn in_millis(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// One TCP connection behind a Unix socket in a fresh private directory (mode 0700, a random
/// name under the temporary directory), for sqlx to log in through. It accepts one connection
/// and relays it to the TCP stream. Dropping it stops the relay, closes both ends and removes
/// the directory.
struct Relay {
    dir: PathBuf,
    socket: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    fn start(tcp: tokio::net::TcpStream, socket_name: &str) -> io::Result<Relay> {
        let token = crate::random::hex_token::<8>().map_err(io::Error::other)?;
        let dir = std::env::temp_dir().join(format!("pwrotd-login-{token}"));
        // `create`, not `create_all`: a directory that already exists is not ours.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let mut relay = Relay {
            socket: dir.join(socket_name),
            dir,
            task: None,
        };
        let listener = tokio::net::UnixListener::bind(&relay.socket)?;
        relay.task = Some(tokio::spawn(async move {
            let Ok((mut unix, _)) = listener.accept().await else {
                return;
            };
            // Exactly one connection.
            drop(listener);
            let mut tcp = tcp;
            let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
        }));
        Ok(relay)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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

    #[test]
    fn each_address_gets_a_share_of_the_login_between_1_and_3_seconds() {
        let s = Duration::from_secs;
        assert_eq!(address_timeout(s(10), 1), s(3));
        assert_eq!(address_timeout(s(10), 3), s(3));
        assert_eq!(address_timeout(s(10), 4), Duration::from_millis(2500));
        assert_eq!(address_timeout(s(10), 50), s(1));
        assert_eq!(address_timeout(s(2), 2), s(1));
        assert_eq!(address_timeout(s(1), 1), s(1));
        assert_eq!(address_timeout(s(10), 0), s(3));
    }

    /// A loopback address that drops packets: the accept queue (backlog 0) is full with a
    /// connection nobody accepts, so the kernel drops every further SYN.
    async fn blackhole() -> (tokio::net::TcpListener, tokio::net::TcpStream, SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let listener = socket.listen(0).unwrap();
        let at = listener.local_addr().unwrap();
        let filler = tokio::net::TcpStream::connect(at).await.unwrap();
        let probe = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(at),
        )
        .await;
        assert!(probe.is_err(), "a connect to {at} must hang: {probe:?}");
        (listener, filler, at)
    }

    fn closed() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn within(d: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + d
    }

    #[tokio::test]
    async fn a_connect_moves_past_an_address_that_drops_packets_after_its_timeout() {
        let (_hole, _filler, dead) = blackhole().await;
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_at = live.local_addr().unwrap();
        let start = std::time::Instant::now();
        let stream = connect_in_order(
            &[dead, live_at],
            Duration::from_secs(1),
            within(LOGIN_TIMEOUT),
        )
        .await
        .unwrap();
        let took = start.elapsed();
        assert_eq!(stream.peer_addr().unwrap(), live_at);
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connect_moves_to_the_next_address_at_once() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_at = live.local_addr().unwrap();
        let start = std::time::Instant::now();
        let stream = connect_in_order(
            &[closed(), live_at],
            Duration::from_secs(3),
            within(LOGIN_TIMEOUT),
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live_at);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn when_no_address_takes_the_connection_the_error_names_each_and_why() {
        let (_hole, _filler, dead) = blackhole().await;
        let (_hole2, _filler2, dead2) = blackhole().await;
        let refused = closed();
        let error = connect_in_order(
            &[dead, refused],
            Duration::from_secs(1),
            within(LOGIN_TIMEOUT),
        )
        .await
        .unwrap_err();
        assert!(
            error.contains(&format!("{dead}: no answer within 1s")),
            "{error}"
        );
        assert!(error.contains(&format!("{refused}: ")), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");

        // Out of time: the last address is not tried at all.
        let start = std::time::Instant::now();
        let error = connect_in_order(
            &[dead, dead2, refused],
            Duration::from_secs(1),
            within(Duration::from_millis(1500)),
        )
        .await
        .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(1800),
            "{:?}",
            start.elapsed()
        );
        assert!(
            error.contains(&format!("{dead}: no answer within 1s")),
            "{error}"
        );
        assert!(
            error.contains(&format!("{dead2}: no answer within ")),
            "{error}"
        );
        assert!(
            error.contains(&format!("{refused}: not tried, out of time")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_login_that_reaches_no_address_is_an_error_naming_it_never_a_rejection() {
        let refused = closed();
        let verify = Verify {
            engine: Engine::Postgresql,
            host: "127.0.0.1".into(),
            port: refused.port(),
            database: None,
            tls: Tls::Disable,
            ca_file: None,
            timeout: Duration::from_secs(2),
        };
        match verify.login("app", &Password::new("x".into())).await {
            Login::Error(reason) => {
                assert!(reason.contains(&format!("{refused}: ")), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_relay_is_private_carries_one_connection_and_is_gone_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(server.local_addr().unwrap())
            .await
            .unwrap();
        let (mut far, _) = server.accept().await.unwrap();
        let relay = Relay::start(tcp, ".s.PGSQL.5432").unwrap();
        let dir = relay.dir().to_owned();
        assert_eq!(relay.socket(), dir.join(".s.PGSQL.5432"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let mut unix = tokio::net::UnixStream::connect(relay.socket())
            .await
            .unwrap();
        unix.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        far.write_all(b"pong").await.unwrap();
        unix.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // One connection only: the listener is gone once it took the first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::net::UnixStream::connect(relay.socket())
                .await
                .is_err()
        );

        drop(relay);
        assert!(!dir.exists(), "{}", dir.display());
        // Both ends are closed.
        assert_eq!(far.read(&mut buf).await.unwrap(), 0);
        assert_eq!(unix.read(&mut buf).await.unwrap(), 0);
    }
}
