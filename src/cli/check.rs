//! `pwrotd check`: validate a config and print the plan. A config it accepts does not fail at
//! start for a reason it could know (docs/configuration.md#checking-a-config). With `--remote`
//! it then proves the config against the cloud ([`super::remote`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use super::{CliError, CliResult, load};
use crate::config::{DEFAULT_PROFILE, Schedule, StoreConfig, Strategy, profile_table};
use crate::{scheduler, sink};

/// Checks the config at `path` and prints the plan; with `remote`, asks the cloud whether each
/// account is ready.
pub fn check(path: &Path, remote: bool) -> CliResult {
    let config = load(path)?;
    // The state directory, as far as it exists: others may not enter it, nor another user own
    // it (root may run `check` on the service's).
    if let Err(e) = sink::check_private_dir(&config.daemon.state_dir) {
        return Err(CliError::usage(format!(
            "{}: daemon.state_dir: {e}",
            path.display()
        )));
    }
    // Allowed but probably not meant: said on stderr, without failing.
    for w in &config.warnings {
        eprintln!("warning: {}", w.display(&config.path));
    }
    say!(
        "{}: ok, {} account{}, region {} ({} network), signature {:?}, state in {}",
        path.display(),
        config.accounts.len(),
        if config.accounts.len() == 1 { "" } else { "s" },
        config.cloud.client.region_id,
        config.cloud.client.network,
        config.cloud.client.signature,
        config.daemon.state_dir.display(),
    );
    // What each profile's credentials resolve to, from the environment and local files:
    // nothing is fetched. Only the profiles some account names are looked at, as at start.
    let mut sources = BTreeMap::new();
    for (profile, cloud) in config.profiles_in_use() {
        let source = match crate::cloud::CredentialSource::discover(&cloud.credentials) {
            Ok(source) => source,
            // With --remote, the profile's accounts are not ready, and the others are asked.
            Err(e) if remote => {
                say!("  credentials (profile {profile}): none: {e}");
                sources.insert(profile, "nowhere".to_owned());
                continue;
            }
            Err(e) => {
                return Err(CliError::usage(format!(
                    "{}: {}.credentials: {e}",
                    path.display(),
                    profile_table(profile)
                )));
            }
        };
        if profile != DEFAULT_PROFILE {
            say!(
                "  profile {profile}: region {} ({} network), signature {:?}",
                cloud.client.region_id,
                cloud.client.network,
                cloud.client.signature
            );
        }
        say!("  credentials (profile {profile}): {}", source.describe());
        sources.insert(profile, source.summary());
    }
    for profile in config.profiles.keys() {
        if !sources.contains_key(profile.as_str()) {
            say!("  profile {profile}: no account names it; its credentials are not looked for");
        }
    }
    if let StoreConfig::Postgresql(cluster) = &config.store {
        say!(
            "  store postgresql, node {}, lease {} (no API call started with under {} left)",
            cluster.node_name,
            humantime::format_duration(cluster.lease),
            humantime::format_duration(config.lease_margin()),
        );
    }
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
        // Validation proved every account's endpoint; a failure here cannot happen.
        let endpoint = config
            .endpoint(a)
            .map_or_else(|e| e, |url| url.as_str().trim_end_matches('/').to_owned());
        say!(
            "  {:<24} profile {}, region {}, endpoint {endpoint}, credentials from {}",
            "",
            a.profile,
            a.region_id,
            sources.get(a.profile.as_str()).map_or("?", String::as_str),
        );
    }
    if remote {
        return super::remote::check_remote(&config);
    }
    Ok(())
}
