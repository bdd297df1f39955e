//! The control socket, `state_dir/control.sock`: how `pwrotd rotate` and `pwrotd status` reach
//! the running daemon. One request and one reply per connection, each a line of JSON.
//!
//! The socket is a file of mode 0600 in the 0700 state directory, and the daemon also checks
//! each caller's credentials: only root and the daemon's own user are answered. So root's
//! shell reaches a service that runs as its own user, and nobody else reaches it at all. The
//! CLI never writes a file for the daemon to read, and waits only for an answer that can come.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::password::Password;
use crate::rotation::{Outcome, Report};
use crate::scheduler::{Command, SlotStatus};

/// The socket's name in the state directory.
const SOCKET: &str = "control.sock";
/// The longest request line read.
const MAX_REQUEST: u64 = 64 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// How long a caller may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket's path for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// What the CLI asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Rotate these accounts (every account if `None`) and answer when all have finished.
    Rotate { accounts: Option<Vec<String>> },
    /// What the scheduler knows now: in flight, next attempt, failures.
    Status,
    /// Record the password an account has today (`pwrotd adopt`). The account is looked up in
    /// the config file on disk, which may have it before the running config does.
    Adopt { account: String, password: Password },
}

/// What the daemon answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Rotated {
        reports: Vec<ReportLine>,
    },
    Status {
        accounts: Vec<SlotStatus>,
    },
    Adopted,
    Refused {
        reason: String,
    },
    /// Cluster mode: this replica does not lead, and asked the leader through the store.
    Forwarded {
        leader: String,
    },
}

/// Cluster mode: sends a rotation to the leader when this replica does not lead. Answers
/// `Some(leader)` once forwarded, `None` when this replica leads and rotates itself.
pub type Forward = Arc<
    dyn Fn(
            Option<Vec<String>>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send>,
        > + Send
        + Sync,
>;

/// One line of a rotation's result, as the daemon hands it back to `pwrotd rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportLine {
    pub account: String,
    pub outcome: Outcome,
    pub version: Option<u64>,
    pub error_code: Option<String>,
    pub message: String,
    /// A render file could not be written, though the rotation stands.
    #[serde(default)]
    pub render_failed: bool,
}

impl From<&Report> for ReportLine {
    fn from(r: &Report) -> ReportLine {
        ReportLine {
            account: r.account.clone(),
            outcome: r.outcome,
            version: r.version,
            error_code: r.error_code.clone(),
            message: r.message.clone(),
            render_failed: r.render_failed,
        }
    }
}

impl ReportLine {
    /// Whether the rotation succeeded and every render file was written.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Success && !self.render_failed
    }
}

/// Why the CLI got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no answer from the daemon within {0}; the rotations may still complete (see pwrotd status)"
    )]
    Timeout(String),
    #[error("the daemon closed the connection without an answer: {0}")]
    Lost(String),
    #[error("the daemon refused: {0}")]
    Refused(String),
}

/// Binds the control socket, replacing one left by an earlier run. The caller holds the
/// state lock, so no other daemon is serving it.
pub fn bind(state_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the control socket until `shutdown` is cancelled, passing requests to the
/// scheduler.
pub async fn serve(
    listener: UnixListener,
    commands: mpsc::Sender<Command>,
    config: PathBuf,
    shutdown: CancellationToken,
    forward: Option<Forward>,
) {
    let config = Arc::new(config);
    let me = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let (commands, config, forward) = (commands.clone(), config.clone(), forward.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let peer = stream.peer_cred().map(|c| c.uid());
            let (read, mut write) = stream.into_split();
            let response = match peer {
                Ok(uid) if uid == 0 || uid == me => {
                    answer(read, &commands, &config, forward.as_ref()).await
                }
                Ok(uid) => {
                    tracing::warn!(
                        uid,
                        "control socket: refused a caller that is neither root nor this daemon's user"
                    );
                    Response::Refused {
                        reason: format!("uid {uid} may not control this daemon"),
                    }
                }
                Err(e) => Response::Refused {
                    reason: format!("cannot read the caller's credentials: {e}"),
                },
            };
            let mut line = serde_json::to_vec(&response).unwrap_or_default();
            line.push(b'\n');
            let _ = write.write_all(&line).await;
        });
    }
}

/// Reads one request and has the scheduler answer it.
async fn answer(
    read: tokio::net::unix::OwnedReadHalf,
    commands: &mpsc::Sender<Command>,
    config: &Path,
    forward: Option<&Forward>,
) -> Response {
    use tokio::io::AsyncReadExt;
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) => serde_json::from_str::<Request>(&line),
        Ok(Err(e)) => {
            return Response::Refused {
                reason: format!("cannot read the request: {e}"),
            };
        }
        Err(_) => {
            return Response::Refused {
                reason: "no request in time".into(),
            };
        }
    };
    let gone = || Response::Refused {
        reason: "the daemon is stopping".into(),
    };
    // A caller that gives up closes its end: stop waiting for it, so that it holds no
    // connection slot. (It sends nothing after its request line.)
    let left = async {
        let mut byte = [0u8; 1];
        let _ = reader.read(&mut byte).await;
    };
    tokio::select! {
        response = dispatch(request, commands, config, forward, gone) => response,
        () = left => Response::Refused { reason: "the caller left".into() },
    }
}

/// Has the scheduler answer one request.
async fn dispatch(
    request: serde_json::Result<Request>,
    commands: &mpsc::Sender<Command>,
    config: &Path,
    forward: Option<&Forward>,
    gone: impl Fn() -> Response,
) -> Response {
    match request {
        Ok(Request::Adopt { account, password }) => {
            let path = config.to_owned();
            let loaded = tokio::task::spawn_blocking(move || crate::config::Config::load(&path))
                .await
                .map_err(|_| "the config could not be read".to_owned())
                .and_then(|c| c.map_err(|e| e.to_string()));
            let account = match loaded.map(|c| c.account(&account).cloned()) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Response::Refused {
                        reason: format!("no account named {account:?} in the config file"),
                    };
                }
                Err(e) => return Response::Refused { reason: e },
            };
            tracing::info!(account = %account.name, "adoption requested");
            let (reply, answer) = oneshot::channel();
            let command = Command::Adopt {
                account,
                password,
                reply,
            };
            if commands.send(command).await.is_err() {
                return gone();
            }
            match answer.await {
                Ok(Ok(())) => Response::Adopted,
                Ok(Err(reason)) => Response::Refused { reason },
                Err(_) => gone(),
            }
        }
        Ok(Request::Rotate { accounts }) => {
            match &accounts {
                Some(names) => tracing::info!(accounts = %names.join(","), "rotation requested"),
                None => tracing::info!("rotation of every account requested"),
            }
            if let Some(forward) = forward {
                match forward(accounts.clone()).await {
                    Ok(Some(leader)) => return Response::Forwarded { leader },
                    Ok(None) => {}
                    Err(reason) => return Response::Refused { reason },
                }
            }
            let (reply, answer) = oneshot::channel();
            let command = Command::RotateNow {
                accounts,
                reply: Some(reply),
            };
            if commands.send(command).await.is_err() {
                return gone();
            }
            match answer.await {
                Ok(reports) => Response::Rotated {
                    reports: reports.iter().map(ReportLine::from).collect(),
                },
                Err(_) => gone(),
            }
        }
        Ok(Request::Status) => {
            let (reply, answer) = oneshot::channel();
            if commands.send(Command::Status { reply }).await.is_err() {
                return gone();
            }
            match answer.await {
                Ok(accounts) => Response::Status { accounts },
                Err(_) => gone(),
            }
        }
        Err(e) => Response::Refused {
            reason: format!("not a request: {e}"),
        },
    }
}

/// Sends `request` to the daemon of `state_dir` and waits at most `wait` for its answer.
pub fn call(state_dir: &Path, request: &Request, wait: Duration) -> Result<Response, ControlError> {
    let path = socket_path(state_dir);
    let connect = |source| ControlError::Connect {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(&path).map_err(connect)?;
    stream.set_read_timeout(Some(wait)).map_err(connect)?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(connect)?;
    let mut line = serde_json::to_vec(request).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line).map_err(connect)?;
    let mut answer = String::new();
    let started = std::time::Instant::now();
    match BufReader::new(&stream).read_line(&mut answer) {
        Ok(0) => return Err(ControlError::Lost("end of stream".into())),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) || started.elapsed() >= wait =>
        {
            return Err(ControlError::Timeout(
                humantime::format_duration(wait).to_string(),
            ));
        }
        Err(e) => return Err(ControlError::Lost(e.to_string())),
    }
    match serde_json::from_str::<Response>(&answer) {
        Ok(Response::Refused { reason }) => Err(ControlError::Refused(reason)),
        Ok(response) => Ok(response),
        Err(e) => Err(ControlError::Lost(format!("an unreadable answer: {e}"))),
    }
}
