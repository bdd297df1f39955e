//! `pwrotd`: the command line. Parses arguments, sets up logging, and hands off to the library.
//!
//! Exit codes: 0 success; 1 a rotation or the daemon failed; 2 a usage or config error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use pwrotd::config::{Config, LogFormat, Schedule, Strategy};
use pwrotd::control::{self, ReportLine, Request, Response};
use pwrotd::daemon::{self, DaemonError, RunOptions, StateLock};
use pwrotd::metrics::Metrics;
use pwrotd::password::{self, Password, Policy};
use pwrotd::say;
use pwrotd::scheduler;
use pwrotd::sink::{self, Sink};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Password rotation daemon for Alibaba Cloud databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: rotate every account on its schedule until SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Rotate now, once: through the running daemon if there is one, else in this process.
    #[command(group = clap::ArgGroup::new("target").required(true).args(["all", "account"]))]
    Rotate {
        #[arg(long)]
        config: PathBuf,
        /// Every account.
        #[arg(long)]
        all: bool,
        /// These accounts (repeat the flag, or list names after it).
        #[arg(long, num_args = 1..)]
        account: Vec<String>,
        /// How long to wait for a running daemon's answer.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// One row per account, from the sink and the audit log.
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Validate a config and print the plan. Exits 2 listing every problem.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Record the password an account has today as its current version, read from standard
    /// input (never argv), without an API call; with [account.verify] it must log in first.
    /// The account is then rotated on its schedule, not at start.
    Adopt {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
    },
    /// Print compliant passwords from the OS CSPRNG, one per line.
    Genpass {
        /// Characters per password (8 to 32).
        #[arg(long, default_value_t = password::DEFAULT_LENGTH)]
        length: usize,
        /// How many passwords.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Run the daemon against an in-process simulator, with nothing to set up.
    #[cfg(feature = "sim")]
    Demo {
        /// Rotate every account once, then exit.
        #[arg(long)]
        once: bool,
    },
}

/// Logs to stderr: colour only on a terminal; under systemd (`JOURNAL_STREAM` names stderr)
/// every line starts with its syslog priority, `<3>` to `<7>`, and carries no timestamp of its
/// own, so that the journal files each line at its level.
fn init_logging(format: LogFormat, default: &str) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match (format, journal) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Text, true) => {
            let text = tracing_subscriber::fmt::format().without_time();
            builder.event_format(Priority(text)).init()
        }
        (LogFormat::Json, true) => {
            let json = tracing_subscriber::fmt::format().json().without_time();
            builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(Priority(json))
                .init()
        }
    }
}

/// Whether stderr is the stream systemd connected to the journal (`JOURNAL_STREAM` is its
/// `device:inode`).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| {
            v.split_once(':')
                .map(|(d, i)| (d.parse::<u64>(), i.parse::<u64>()))
        })
        .and_then(|(d, i)| Some((d.ok()?, i.ok()?)))
    else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(stderr)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Prefixes each event with its syslog priority (sd-daemon(3)'s `<N>` convention).
struct Priority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("pwrotd: cannot start the runtime: {e}");
            None
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Reports a panic by place only: its message could hold a secret.
fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        eprintln!(
            "pwrotd: internal error (panic) at {place}; its message is withheld because it may hold a secret"
        );
    }));
}

fn main() -> ExitCode {
    redact_panics();
    // This process holds passwords and keys in memory: no core dump, no ptrace by others.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("pwrotd: cannot turn core dumps off: {e}");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Rotate {
            config,
            all,
            account,
            wait,
        } => rotate(&config, (!all).then_some(account), wait),
        Command::Status { config, json } => status(&config, json),
        Command::Check { config } => check(&config),
        Command::Adopt { config, account } => adopt(&config, &account),
        Command::Genpass { length, count } => genpass(length, count),
        #[cfg(feature = "sim")]
        Command::Demo { once } => {
            init_logging(LogFormat::Text, "warn");
            match runtime() {
                Some(rt) => rt.block_on(pwrotd::demo::run(once)),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.daemon.log_format, "info");
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let options = RunOptions {
        config,
        shutdown: CancellationToken::new(),
        on_report: None,
        metrics_listener: None,
        once: false,
    };
    match rt.block_on(daemon::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn print_lines(lines: &[ReportLine]) -> ExitCode {
    for line in lines {
        let version = line
            .version
            .map_or_else(|| "-".to_owned(), |v| format!("v{v}"));
        say!(
            "{:<24} {:<8} {:<5} {}",
            line.account,
            line.outcome.as_str(),
            version,
            line.message
        );
    }
    if lines.iter().all(ReportLine::succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn rotate(path: &Path, accounts: Option<Vec<String>>, wait: Duration) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.daemon.log_format, "warn");
    if let Some(wanted) = &accounts {
        let unknown: Vec<&String> = wanted
            .iter()
            .filter(|n| config.account(n).is_none())
            .collect();
        if !unknown.is_empty() {
            eprintln!(
                "pwrotd rotate: no account named {} in {}; it has {}",
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                path.display(),
                names(&config)
            );
            return ExitCode::from(2);
        }
    }
    let state_dir = config.daemon.state_dir.clone();
    match StateLock::acquire(&state_dir, "rotate") {
        Ok(lock) => {
            let Some(rt) = runtime() else {
                return ExitCode::FAILURE;
            };
            let result = rt.block_on(rotate_here(&config, accounts));
            drop(lock);
            match result {
                Ok(lines) => print_lines(&lines),
                Err(e) => {
                    eprintln!("pwrotd rotate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(DaemonError::Locked { role, .. }) if role == "daemon" => {
            match control::call(&state_dir, &Request::Rotate { accounts }, wait) {
                Ok(Response::Rotated { reports }) => print_lines(&reports),
                Ok(other) => {
                    eprintln!("pwrotd rotate: the daemon answered {other:?}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("pwrotd rotate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("pwrotd rotate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rotates in this process, `max_concurrent` at a time. The caller holds the state lock.
async fn rotate_here(
    config: &Config,
    names: Option<Vec<String>>,
) -> Result<Vec<ReportLine>, DaemonError> {
    let sink = Arc::new(Sink::open(&config.daemon.state_dir)?);
    let metrics = Metrics::new();
    // No debounce: each account rotates once here, and the hooks run before the CLI exits.
    let hooks = pwrotd::hooks::Hooks::new(Duration::ZERO, metrics.clone());
    let rotator = Arc::new(daemon::rotator(config, sink, metrics, hooks.clone())?);
    let accounts: Vec<_> = config
        .accounts
        .iter()
        .filter(|a| names.as_ref().is_none_or(|n| n.contains(&a.name)))
        .cloned()
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(config.daemon.max_concurrent));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, account) in accounts.into_iter().enumerate() {
        let rotator = rotator.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire().await;
            (index, ReportLine::from(&rotator.rotate(&account).await))
        });
    }
    let mut lines = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(line) => lines.push(line),
            // Not `{e}`: a JoinError shows the panic's message, which could hold a secret.
            Err(e) => {
                return Err(DaemonError::Setup(format!(
                    "a rotation task {}",
                    if e.is_panic() {
                        "panicked"
                    } else {
                        "was cancelled"
                    }
                )));
            }
        }
    }
    hooks.idle().await;
    lines.sort_by_key(|(index, _)| *index);
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

fn status(path: &Path, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let state_dir = &config.daemon.state_dir;
    if let Err(e) = std::fs::metadata(state_dir) {
        eprintln!(
            "pwrotd status: cannot read the state directory {}: {e}; has pwrotd run with this config?",
            state_dir.display()
        );
        return ExitCode::FAILURE;
    }
    // What the running daemon knows: its retry times and what is in flight.
    let live: std::collections::HashMap<String, pwrotd::scheduler::SlotStatus> =
        match control::call(state_dir, &Request::Status, Duration::from_secs(10)) {
            Ok(Response::Status { accounts }) => accounts
                .into_iter()
                .map(|a| (a.account.clone(), a))
                .collect(),
            _ => Default::default(),
        };
    // Only the newest record of each account, read backwards from the end of the log.
    let wanted: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    let audit = match sink::latest_audit(state_dir, &wanted) {
        Ok(tail) => tail,
        Err(e) => {
            eprintln!("pwrotd status: {e}");
            return ExitCode::FAILURE;
        }
    };
    if audit.skipped > 0 {
        eprintln!(
            "pwrotd status: skipped {} unreadable line{} of the audit log (not UTF-8, or not a whole record: torn by a crash)",
            audit.skipped,
            if audit.skipped == 1 { "" } else { "s" }
        );
    }
    let uid = nix::unistd::geteuid().as_raw();
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut problems = false;
    for account in &config.accounts {
        let last_error = audit
            .latest
            .get(&account.name)
            .and_then(|r| r.error_code.clone());
        let row = match sink::read_secret(state_dir, account, uid) {
            Ok(file) => {
                let file = file.as_ref();
                let initial = scheduler::Initial::of(file);
                let (last, pending) = (initial.last_success, initial.pending);
                let scheduled = scheduler::scheduled(account, initial)
                    .map(sink::timestamp)
                    .unwrap_or_else(|| "at start".into());
                let live = live.get(&account.name);
                let next_due = match live {
                    Some(l) if l.in_flight => "now (running)".to_owned(),
                    Some(l) if l.waiting => "waiting for a renamed account's task".to_owned(),
                    Some(l) => l.next_attempt.clone(),
                    None => scheduled,
                };
                serde_json::json!({
                    "account": account.name,
                    "api": account.api.as_str(),
                    "resource_id": account.resource_id,
                    "account_name": account.account_name,
                    "version": file.and_then(|f| f.current.as_ref()).map(|c| c.version),
                    // The user applications log in as: under the alternating strategy, it flips.
                    "username": file.and_then(|f| f.current.as_ref()).map(|c| c.username.as_str()),
                    "last_success": last.map(sink::timestamp),
                    "age_seconds": last.and_then(|l| now.duration_since(l).ok()).map(|d| d.as_secs()),
                    "pending": pending,
                    "last_error": last_error,
                    "next_due": next_due,
                    "failures": live.map(|l| l.failures),
                    "render_retry": live.and_then(|l| l.render_retry.clone()),
                    "daemon": live.is_some(),
                    "sink_error": null,
                })
            }
            Err(e) => {
                problems = true;
                serde_json::json!({
                    "account": account.name,
                    "api": account.api.as_str(),
                    "resource_id": account.resource_id,
                    "account_name": account.account_name,
                    "sink_error": e.to_string(),
                    "last_error": e.code(),
                })
            }
        };
        rows.push(row);
    }
    if json {
        say!("{}", serde_json::Value::from(rows));
    } else {
        say!(
            "{:<24} {:<27} {:>7}  {:<20} {:>9}  {:<7} {:<32} NEXT DUE",
            "ACCOUNT",
            "API",
            "VERSION",
            "LAST SUCCESS",
            "AGE",
            "PENDING",
            "LAST ERROR"
        );
        for r in &rows {
            let text = |k: &str| r[k].as_str().map(str::to_owned);
            let age = r["age_seconds"]
                .as_u64()
                .map(|s| humantime::format_duration(Duration::from_secs(s - s % 60)).to_string());
            say!(
                "{:<24} {:<27} {:>7}  {:<20} {:>9}  {:<7} {:<32} {}",
                text("account").unwrap_or_default(),
                text("api").unwrap_or_default(),
                r["version"].as_u64().map_or("-".into(), |v| v.to_string()),
                text("last_success").unwrap_or_else(|| "never".into()),
                age.unwrap_or_else(|| "-".into()),
                if r["pending"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                text("last_error").unwrap_or_else(|| "-".into()),
                text("sink_error")
                    .or_else(|| text("next_due"))
                    .unwrap_or_default(),
            );
        }
    }
    if problems {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Allowed but probably not meant: said on stderr, without failing.
    for w in &config.warnings {
        eprintln!("warning: {}", w.display(&config.path));
    }
    say!(
        "{}: ok, {} account{}, region {}, signature {:?}, state in {}",
        path.display(),
        config.accounts.len(),
        if config.accounts.len() == 1 { "" } else { "s" },
        config.cloud.client.region_id,
        config.cloud.client.signature,
        config.daemon.state_dir.display(),
    );
    let uid = nix::unistd::geteuid().as_raw();
    let now = SystemTime::now();
    for a in &config.accounts {
        let schedule = match &a.schedule {
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => format!("cron {:?} UTC", c.expression()),
        };
        let next = match sink::read_secret(&config.daemon.state_dir, a, uid) {
            Ok(file) => match scheduler::scheduled(a, scheduler::Initial::of(file.as_ref())) {
                Some(due) if due <= now => "overdue: caught up at start".to_owned(),
                Some(due) => sink::timestamp(due),
                None => "at start".to_owned(),
            },
            Err(e) => format!("refused: {}", e.code()),
        };
        let users = match &a.strategy {
            Strategy::Single => a.account_name.clone(),
            Strategy::Alternating { clone } => format!("{}<>{clone}", a.account_name),
        };
        let mut extra = String::new();
        if !a.grants.is_empty() {
            let n = a.grants.len();
            extra.push_str(&format!(", {n} grant{}", if n == 1 { "" } else { "s" }));
        }
        if let Some(v) = &a.verify {
            extra.push_str(&format!(", verified by login to {}", v.target()));
        }
        say!(
            "  {:<24} {:<27} {:<32} {:<26} next {next}{extra}",
            a.name,
            a.api,
            format!("{}/{users}", a.resource_id),
            schedule,
        );
    }
    ExitCode::SUCCESS
}

fn adopt(path: &Path, name: &str) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.daemon.log_format, "warn");
    let Some(account) = config.account(name).cloned() else {
        eprintln!(
            "pwrotd adopt: no account named {name:?} in {}; it has {}",
            path.display(),
            names(&config)
        );
        return ExitCode::from(2);
    };
    let password = match read_password(&format!(
        "the password {} has today on {}",
        account.account_name, account.resource_id
    )) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pwrotd adopt: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    if let Some(verify) = &account.verify {
        use pwrotd::verify::Login;
        let user = &account.account_name;
        match rt.block_on(verify.login(user, &password)) {
            Login::Accepted if rt.block_on(verify.checks_passwords(user)) => {}
            Login::Accepted => {
                eprintln!(
                    "pwrotd adopt: {} takes any password for {user}, so a login proves nothing; not adopted",
                    verify.target()
                );
                return ExitCode::FAILURE;
            }
            other => {
                eprintln!(
                    "pwrotd adopt: the password does not log in as {user} ({}); not adopted",
                    other.reason()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let state_dir = config.daemon.state_dir.clone();
    let adopted = match StateLock::acquire(&state_dir, "adopt") {
        Ok(lock) => {
            let result = Sink::open(&state_dir)
                .and_then(|sink| sink.adopt_current(&account, password))
                .map(drop)
                .map_err(|e| e.to_string());
            drop(lock);
            result
        }
        Err(DaemonError::Locked { role, .. }) if role == "daemon" => {
            let request = Request::Adopt {
                account: account.name.clone(),
                password,
            };
            match control::call(&state_dir, &request, Duration::from_secs(60)) {
                Ok(Response::Adopted) => Ok(()),
                Ok(other) => Err(format!("the daemon answered {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match adopted {
        Ok(()) => {
            say!(
                "{}: adopted as its current password; rotated on its schedule from now",
                account.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pwrotd adopt: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The accounts of a config, for a message that names the valid ones.
fn names(config: &Config) -> String {
    let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    match names.len() {
        0 => "no accounts".to_owned(),
        n if n > 20 => format!("{n} accounts: {}, …", names[..20].join(", ")),
        _ => names.join(", "),
    }
}

/// Reads one line from standard input as a password: without echo on a terminal, and never
/// from argv, where other users could read it.
fn read_password(what: &str) -> Result<Password, String> {
    use std::io::{BufRead, IsTerminal};
    use zeroize::Zeroizing;
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let saved = if terminal {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        eprint!("{what}: ");
        let saved = tcgetattr(&stdin).map_err(|e| format!("cannot read the terminal: {e}"))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| format!("cannot turn the terminal's echo off: {e}"))?;
        Some(saved)
    } else {
        None
    };
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.map_err(|e| format!("cannot read standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("no password on standard input ({what})"));
    }
    Ok(Password::new(password.to_owned()))
}

fn genpass(length: usize, count: usize) -> ExitCode {
    let policy = match Policy::new(length, &password::Class::ALL, password::SPECIALS, "") {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("pwrotd genpass: --{e}");
            }
            return ExitCode::from(2);
        }
    };
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let password = match policy.generate() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pwrotd genpass: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = writeln!(out, "{}", password.expose()) {
            return write_failed(&e);
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => write_failed(&e),
    }
}

/// A reader that stopped reading (`pwrotd genpass | head`) is a normal end; anything else fails.
fn write_failed(e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        eprintln!("pwrotd genpass: {e}");
        ExitCode::FAILURE
    }
}
