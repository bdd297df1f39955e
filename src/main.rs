//! `pwrotd`: the command line. Parses arguments, sets up logging, and hands off to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pwrotd::config::{Config, Schedule};
use pwrotd::password::{self, Policy};

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
    /// Print compliant passwords from the OS CSPRNG, one per line.
    Genpass {
        /// Characters per password (8 to 32).
        #[arg(long, default_value_t = password::DEFAULT_LENGTH)]
        length: usize,
        /// How many passwords.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Validate a config and print the accounts it rotates. Exits 2 listing every problem.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Rotate accounts of all four APIs against an in-process simulator, with nothing to set up.
    Demo {
        /// Rotate once and exit (the only mode until the daemon lands).
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match cli.command {
        Command::Genpass { length, count } => genpass(length, count),
        Command::Check { config } => check(&config),
        Command::Demo { once: _ } => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(pwrotd::demo::run()),
            Err(e) => {
                eprintln!("pwrotd: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
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
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let result = policy.generate().map_err(|e| e.to_string()).and_then(|p| {
            use std::io::Write;
            writeln!(out, "{}", p.expose()).map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            eprintln!("pwrotd genpass: {e}");
            return ExitCode::FAILURE;
        }
    }
    match std::io::Write::flush(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pwrotd genpass: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}: ok, {} account{}, region {}, signature {:?}",
        path.display(),
        config.accounts.len(),
        if config.accounts.len() == 1 { "" } else { "s" },
        config.cloud.client.region_id,
        config.cloud.client.signature,
    );
    for a in &config.accounts {
        let schedule = match &a.schedule {
            Schedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => format!("cron {c:?}"),
        };
        println!(
            "  {:<24} {:<27} {}/{}  {schedule}{}",
            a.name,
            a.api,
            a.resource_id,
            a.account_name,
            if a.grants.is_empty() {
                String::new()
            } else {
                format!(", {} grants", a.grants.len())
            },
        );
    }
    ExitCode::SUCCESS
}
