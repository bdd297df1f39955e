//! `pwrotd`: the command line. Parses arguments and hands each command to the library
//! (`pwrotd::cli`), which says how the process exits (docs/operations.md#exit-codes).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pwrotd::cli;
use pwrotd::password;

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
    /// One row per account, from the sink and the audit log; in cluster mode, the leader and
    /// each replica's last mirror time first.
    #[command(override_usage = "pwrotd status --config FILE [--json]")]
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
        /// Also ask the cloud (DescribeAccounts, read-only) whether each account is ready to
        /// rotate; exit 1 naming each that is not.
        #[arg(long)]
        remote: bool,
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
    /// Move accounts between the PostgreSQL store and secret files (cluster mode).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a new store key for [store] kind = "postgresql", as base64.
    ///
    /// 32 random bytes from the OS CSPRNG, as 44 characters of base64 and a newline. Put the
    /// same key on every replica, in store.key_file (no permission for others) or the systemd
    /// credential pwrotd-store-key, and keep a copy: without it the store's passwords are lost.
    Genkey,
    /// Run the daemon against an in-process simulator, with nothing to set up.
    #[cfg(feature = "sim")]
    Demo {
        /// Rotate every account once, then exit.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Write the store's current state as secret files in a new directory.
    ///
    /// Every account's record, as DIR/<account>.json in the secret file format (0600, in a
    /// new 0700 directory; DIR must not exist). Read-only: replicas may run meanwhile. An
    /// account whose record does not decrypt is named, and the exit code is 1.
    #[command(override_usage = "pwrotd store export --config FILE --to DIR")]
    Export {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The new directory to write.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Move a file store (STATE_DIR/secrets/*.json) into the PostgreSQL store.
    ///
    /// Stop every replica first: the import takes the lease itself, and refuses while a
    /// replica leads. Each account is imported if the store has no record of it or an older
    /// one, kept if the store holds the same record, and refused (exit 1) if the store holds
    /// a newer or different one of the same version.
    #[command(override_usage = "pwrotd store import --config FILE --from STATE_DIR")]
    Import {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The state directory of the file store to import.
        #[arg(long, value_name = "STATE_DIR")]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    cli::redact_panics();
    // This process holds passwords and keys in memory: no core dump, no ptrace by others.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("pwrotd: cannot turn core dumps off: {e}");
    }
    let (name, result) = match Cli::parse().command {
        Command::Run { config } => ("run", cli::run::run(&config)),
        Command::Rotate {
            config,
            all,
            account,
            wait,
        } => (
            "rotate",
            cli::rotate::rotate(&config, (!all).then_some(account), wait),
        ),
        Command::Status { config, json } => ("status", cli::status::status(&config, json)),
        Command::Check { config, remote } => ("check", cli::check::check(&config, remote)),
        Command::Adopt { config, account } => ("adopt", cli::adopt::adopt(&config, &account)),
        Command::Genpass { length, count } => ("genpass", cli::genpass::genpass(length, count)),
        Command::Store(StoreCommand::Export { config, to }) => {
            ("store export", cli::store::export(&config, &to))
        }
        Command::Store(StoreCommand::Import { config, from }) => {
            ("store import", cli::store::import(&config, &from))
        }
        Command::Genkey => ("genkey", cli::genkey::genkey()),
        #[cfg(feature = "sim")]
        Command::Demo { once } => {
            cli::logging::init(pwrotd::config::LogFormat::Text, "warn");
            match cli::runtime() {
                Ok(rt) => return rt.block_on(pwrotd::demo::run(once)),
                Err(e) => ("demo", Err(e)),
            }
        }
    };
    cli::exit(name, result)
}
