//! `on_change` hooks (docs/operations.md#hooks): how applications are told that their password changed.
//!
//! After an account's files change (a rotation, or a re-render that rewrote a render file),
//! its commands run once per burst of changes, one after another, each with a timeout. They
//! run with no shell and a clean environment: `PATH`, plus `PWROTD_ACCOUNT`, `PWROTD_VERSION`
//! and `PWROTD_USERNAME`. Never the password, and nothing of pwrotd's own environment, which
//! may hold an AccessKey. A failing hook is logged and counted; it never undoes a rotation and
//! never causes one.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::config::Account;
use crate::metrics::Metrics;

/// How long a hook may run before it is killed, with its process group.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// The `PATH` hooks run with.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most of a failing hook's stderr that reaches the log.
const MAX_STDERR: usize = 512;

/// What changed, for a hook's environment.
#[derive(Debug, Clone)]
struct Change {
    version: u64,
    username: String,
    commands: Vec<Vec<String>>,
}

/// One account's burst: the newest change, and whether its hooks run or must run again.
struct Burst {
    latest: Change,
    running: bool,
    again: bool,
}

/// Runs the hooks of every account, each account's bursts one at a time.
pub struct Hooks {
    /// Changes closer together than this make one burst: the hooks run once, after it.
    debounce: Duration,
    metrics: Arc<Metrics>,
    bursts: Mutex<HashMap<String, Burst>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("debounce", &self.debounce)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    pub fn new(debounce: Duration, metrics: Arc<Metrics>) -> Arc<Hooks> {
        Arc::new(Hooks {
            debounce,
            metrics,
            bursts: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    /// Notes that `account`'s files now hold `version` for `username`; its hooks run once the
    /// burst is over.
    pub fn changed(self: &Arc<Self>, account: &Account, version: u64, username: &str) {
        if account.on_change.is_empty() {
            return;
        }
        let change = Change {
            version,
            username: username.to_owned(),
            commands: account.on_change.clone(),
        };
        let mut bursts = self.bursts.lock().unwrap_or_else(|p| p.into_inner());
        match bursts.get_mut(&account.name) {
            Some(burst) if burst.running => {
                burst.latest = change;
                burst.again = true;
                return;
            }
            _ => {
                bursts.insert(
                    account.name.clone(),
                    Burst {
                        latest: change,
                        running: true,
                        again: false,
                    },
                );
            }
        }
        let hooks = self.clone();
        let name = account.name.clone();
        self.tasks
            .spawn(async move { hooks.run_bursts(name).await });
    }

    /// Waits until no hook runs or waits to run (the CLI, before it exits).
    pub async fn idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    async fn run_bursts(self: Arc<Self>, account: String) {
        loop {
            tokio::time::sleep(self.debounce).await;
            let change = {
                let mut bursts = self.bursts.lock().unwrap_or_else(|p| p.into_inner());
                let Some(burst) = bursts.get_mut(&account) else {
                    return;
                };
                burst.again = false;
                burst.latest.clone()
            };
            for command in &change.commands {
                if let Err(why) = run(command, &account, &change, HOOK_TIMEOUT).await {
                    tracing::error!(account = %account, program = %command[0], "on_change hook failed: {why}");
                    self.metrics.count_hook_failure(&account);
                } else {
                    tracing::info!(account = %account, program = %command[0], version = change.version, "on_change hook ran");
                }
            }
            let mut bursts = self.bursts.lock().unwrap_or_else(|p| p.into_inner());
            match bursts.get_mut(&account) {
                Some(burst) if burst.again => {}
                _ => {
                    bursts.remove(&account);
                    return;
                }
            }
        }
    }
}

/// Runs one hook to its end, or kills it (and its process group) after `timeout`.
async fn run(
    command: &[String],
    account: &str,
    change: &Change,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .env("PATH", PATH)
        .env("PWROTD_ACCOUNT", account)
        .env("PWROTD_VERSION", change.version.to_string())
        .env("PWROTD_USERNAME", &change.username)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let pid = child.id();
    let stderr = child.stderr.take();
    let read_stderr = async {
        let mut text = Vec::new();
        if let Some(stderr) = stderr {
            use tokio::io::AsyncReadExt;
            let _ = stderr.take(MAX_STDERR as u64).read_to_end(&mut text).await;
        }
        String::from_utf8_lossy(&text).trim().to_owned()
    };
    let waited = tokio::time::timeout(timeout, async {
        let (status, text) = tokio::join!(child.wait(), read_stderr);
        (status, text)
    })
    .await;
    match waited {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), text)) => Err(format!("{status}: {text}")),
        Ok((Err(e), _)) => Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!(
                "still running after {}; killed",
                humantime::format_duration(timeout)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change() -> Change {
        Change {
            version: 7,
            username: "app".into(),
            commands: Vec::new(),
        }
    }

    /// A hook that outlives its timeout is killed with everything it started.
    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let command = ["/bin/sh".to_owned(), "-c".to_owned(), script];
        let started = std::time::Instant::now();
        let result = run(&command, "a", &change(), Duration::from_millis(500)).await;
        assert!(result.is_err_and(|e| e.contains("killed")));
        assert!(started.elapsed() < Duration::from_secs(10));
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The child dies with its group (give the kernel a moment to reap it).
        let mut gone = false;
        for _ in 0..50 {
            let status = std::fs::read_to_string(format!("/proc/{child}/status"));
            if status.is_err() || status.is_ok_and(|s| s.contains("State:\tZ")) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gone, "the hook's child outlived it");
    }

    /// A hook gets the three variables, a PATH, and nothing of pwrotd's environment.
    #[tokio::test]
    async fn a_hook_sees_only_what_it_needs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let command = [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("env > {}", out.display()),
        ];
        run(&command, "orders-app", &change(), Duration::from_secs(10))
            .await
            .unwrap();
        let mut env: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .map(str::to_owned)
            .collect();
        env.sort();
        assert_eq!(
            env,
            [
                format!("PATH={PATH}"),
                "PWROTD_ACCOUNT=orders-app".to_owned(),
                "PWROTD_USERNAME=app".to_owned(),
                "PWROTD_VERSION=7".to_owned(),
            ]
        );
    }
}
