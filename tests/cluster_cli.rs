//! The cluster's commands (docs/cluster.md#commands) with the real binary against a real
//! PostgreSQL: `store export`, `store import`, `status`, and `rotate`/`adopt` without a daemon.
//!
//! Skipped, saying so, without `PWROTD_TEST_POSTGRES_ADMIN`, as tests/cluster.rs is.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use pwrotd::sink::SecretFile;
use serde_json::Value;
use sqlx::{Connection, Executor};
use tokio::process::Command;

use crate::cluster::{ACCOUNTS, Fleet, admin_url, futures_settled, quiet, write_private};
use crate::daemon::eventually;

async fn run(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("pwrotd finished within a minute")
        .expect("run pwrotd")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every password of every record, to check that no output holds one.
fn passwords(records: &HashMap<String, SecretFile>) -> Vec<String> {
    records
        .values()
        .flat_map(|r| {
            r.current
                .iter()
                .chain(&r.previous)
                .map(|v| v.password.expose().to_owned())
                .chain(r.pending.iter().map(|p| p.password.expose().to_owned()))
        })
        .collect()
}

fn assert_no_password(out: &Output, passwords: &[String]) {
    let all = text(out);
    for p in passwords {
        assert!(!all.contains(p.as_str()), "a password in the output: {all}");
    }
}

fn as_value(record: &SecretFile) -> Value {
    serde_json::to_value(record).expect("a record serialises")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_the_store_as_private_files_and_status_shows_the_cluster() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 3, quiet).await;
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    let leader = fleet.leader(Duration::from_secs(20)).await;
    eventually(Duration::from_secs(30), "every account rotated", || {
        futures_settled(&fleet)
    })
    .await;
    let follower = (leader + 1) % 3;
    let records = fleet.records().await;
    let secrets = passwords(&records);

    // Export from a replica that does not lead: the store's records, 0600 in a new 0700 dir.
    let to = fleet.env.dir.path().join("export");
    let to_arg = to.to_str().expect("UTF-8 path");
    let out = run(fleet.replicas[follower].command(&["store", "export", "--to", to_arg])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_password(&out, &secrets);
    assert_eq!(std::fs::metadata(&to).expect("dir").mode() & 0o777, 0o700);
    let files: Vec<_> = std::fs::read_dir(&to).expect("list").collect();
    assert_eq!(files.len(), records.len(), "one file per record");
    for (name, record) in &records {
        let path = to.join(format!("{name}.json"));
        let meta = std::fs::symlink_metadata(&path).expect("exported");
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        assert_eq!(read_json(&path), as_value(record), "{name}");
    }
    // An existing directory is refused, and left as it is.
    let out = run(fleet.replicas[follower].command(&["store", "export", "--to", to_arg])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("exists"), "{}", text(&out));
    // A config without the PostgreSQL store: a usage error naming the key.
    let out = run(fleet
        .env
        .command(&["store", "export", "--to", "/nonexistent/x"]))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("store.kind"), "{}", text(&out));

    check_status(&fleet, leader, follower, &secrets).await;
    check_status_unreachable(&fleet, follower).await;
    export_with_an_undecryptable_row(&fleet, follower, &records).await;
    fleet.stop_all().await;
}

/// `status` on a follower: the leader and every replica, as text and JSON.
async fn check_status(fleet: &Fleet, leader: usize, follower: usize, secrets: &[String]) {
    let leader_name = fleet.replicas[leader].name.clone();
    // Replicas report their mirror time every few seconds: wait until all three have.
    let mut last = None;
    let mut seen = String::new();
    for _ in 0..100 {
        let out = run(fleet.replicas[follower].command(&["status", "--json"])).await;
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if json["cluster"]["replicas"].as_array().map(Vec::len) == Some(3) {
            last = Some((out, json));
            break;
        }
        seen = text(&out);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (out, json) = last.unwrap_or_else(|| {
        let logs: Vec<String> = fleet
            .replicas
            .iter()
            .map(|r| format!("{}: {}", r.name, r.log()))
            .collect();
        panic!(
            "not every replica reported; the last status: {seen}\nlogs: {}",
            logs.join("\n")
        )
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_password(&out, secrets);
    let cluster = &json["cluster"];
    assert_eq!(cluster["store"], "up");
    assert_eq!(cluster["leader"]["node"], leader_name.as_str());
    assert_eq!(cluster["leader"]["live"], true);
    assert!(cluster["leader"]["epoch"].as_i64() >= Some(1));
    for (i, r) in cluster["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .enumerate()
    {
        assert_eq!(r["node"], format!("replica-{i}").as_str());
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
        assert!(r["mirrored_at"].is_string(), "{r}");
        assert!(r["mirror_age_seconds"].as_u64().expect("age") < 15, "{r}");
    }
    let accounts = json["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), ACCOUNTS.len());
    assert!(accounts.iter().all(|a| a["version"].as_u64() >= Some(1)));

    let out = run(fleet.replicas[follower].command(&["status"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with(&format!("LEADER {leader_name} (epoch ")),
        "{said}"
    );
    assert!(said.contains("lease live"), "{said}");
    for i in 0..3 {
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("replica-{i} ")))
            .unwrap_or_else(|| panic!("no line for replica-{i}: {said}"));
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
    }
    assert!(said.contains("ACCOUNT"), "{said}");
    assert!(said.contains("orders-app"), "{said}");
}

/// With the store unreachable, `status` still prints the local rows, says so, and exits 1.
async fn check_status_unreachable(fleet: &Fleet, follower: usize) {
    let replica = &fleet.replicas[follower];
    let url_file = replica.dir.join("store-url");
    let dead = format!(
        "postgres://pwrotd:Sup3rSecret@127.0.0.1:{}/x?sslmode=disable",
        crate::cluster::free_port()
    );
    write_private(&url_file, &dead);
    let out = run(replica.command(&["status"])).await;
    write_private(&url_file, &fleet.url);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains("Sup3rSecret"), "{all}");
    assert!(all.contains("STORE  unreachable"), "{all}");
    assert!(all.contains("orders-app"), "{all}");
}

/// A row that does not decrypt is named and makes the exit code 1; the others are written.
async fn export_with_an_undecryptable_row(
    fleet: &Fleet,
    follower: usize,
    records: &HashMap<String, SecretFile>,
) {
    let mut conn = sqlx::PgConnection::connect(&fleet.url)
        .await
        .expect("connect");
    conn.execute(
        "UPDATE pwrotd_secrets SET record = jsonb_set(record, '{current}', (SELECT record->'current' FROM pwrotd_secrets WHERE account = 'edge-app')) WHERE account = 'billing'",
    )
    .await
    .expect("tamper");
    let to = fleet.env.dir.path().join("export-2");
    let to_arg = to.to_str().expect("UTF-8 path");
    let out = run(fleet.replicas[follower].command(&["store", "export", "--to", to_arg])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.lines()
            .any(|l| l.starts_with("billing ") && l.contains("does not decrypt")),
        "{said}"
    );
    assert!(!to.join("billing.json").exists());
    for name in ["orders-app", "edge-app", "admin"] {
        assert_eq!(
            read_json(&to.join(format!("{name}.json"))),
            as_value(&records[name])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_adopt_refuse_without_a_daemon_in_cluster_mode() {
    let Some(admin) = admin_url() else { return };
    let fleet = Fleet::new(&admin, 1, quiet).await;
    let replica = &fleet.replicas[0];
    let refusal =
        "cluster mode: rotations run on the leader; start the daemon (pwrotd run) and ask again";
    let out = run(replica.command(&["rotate", "--all"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(refusal), "{}", text(&out));
    let out = run(replica.command(&["rotate", "--account", "billing"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(refusal), "{}", text(&out));
    // Refused before the password is read: with nothing on stdin it would say so otherwise.
    let mut adopt = replica.command(&["adopt", "--account", "billing"]);
    adopt.stdin(Stdio::null());
    let out = run(adopt).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(refusal), "{}", text(&out));
    // Nothing was rotated or written: no API call, no local file, no record.
    assert_eq!(fleet.env.server.sim.stats().requests, 0);
    for (name, ..) in ACCOUNTS {
        assert!(replica.local(name).is_none(), "{name}");
    }
    assert!(fleet.records().await.is_empty());
}

/// Copies a file store's secret files into a new state directory, modes kept.
fn copy_state(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    let secrets = to.join("secrets");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&secrets)
        .expect("mkdir");
    for entry in std::fs::read_dir(from.join("secrets")).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), secrets.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_moves_a_file_store_into_the_store_and_the_replicas_mirror_it() {
    let Some(admin) = admin_url() else { return };
    let mut fleet = Fleet::new(&admin, 2, quiet).await;
    // A file store (the env's own config) that rotated twice; a copy of it after the first.
    let state = fleet.env.state_dir();
    let old = fleet.env.dir.path().join("old-state");
    let out = fleet.env.pwrotd(&["rotate", "--all"]).await;
    assert!(out.status.success(), "{}", text(&out));
    copy_state(&state, &old);
    let out = fleet.env.pwrotd(&["rotate", "--all"]).await;
    assert!(out.status.success(), "{}", text(&out));
    fleet.env.assert_in_sync();
    let secrets = fleet.env.all_passwords();
    let state_arg = state.to_str().expect("UTF-8 path");

    // Into the empty store: every account imported, through a term of the import's own.
    let out = run(fleet.replicas[0].command(&["store", "import", "--from", state_arg])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_password(&out, &secrets);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        said.lines().filter(|l| l.contains(" imported ")).count(),
        4,
        "{said}"
    );
    let records = fleet.records().await;
    for (name, ..) in ACCOUNTS {
        assert_eq!(
            fleet.env.sink(name).expect("file"),
            as_value(&records[name]),
            "{name}"
        );
    }
    let holder = pwrotd::cluster::lease::holder(&fleet.store.pool)
        .await
        .expect("lease");
    assert_eq!(holder.node, "import@replica-0");
    assert_eq!(holder.epoch, 1);
    assert!(!holder.live, "the import gave its lease up");

    // Again: the store holds the very same records.
    let out = run(fleet.replicas[1].command(&["store", "import", "--from", state_arg])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        said.lines().filter(|l| l.contains(" kept ")).count(),
        4,
        "{said}"
    );

    refuse_what_is_not_newer(&fleet, &old, &records).await;

    // Replicas started after the import mirror the imported records.
    for r in &mut fleet.replicas {
        r.start(&[]);
    }
    let leader = fleet.leader(Duration::from_secs(20)).await;
    eventually(
        Duration::from_secs(15),
        "the replicas mirror the import",
        || {
            fleet.replicas.iter().all(|r| {
                ACCOUNTS
                    .iter()
                    .all(|a| r.local(a.0) == Some(as_value(&records[a.0])))
            })
        },
    )
    .await;

    // With a replica leading, an import is refused and writes nothing.
    let out =
        run(fleet.replicas[(leader + 1) % 2].command(&["store", "import", "--from", state_arg]))
            .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let holder = pwrotd::cluster::lease::holder(&fleet.store.pool)
        .await
        .expect("lease");
    assert!(holder.live);
    let expected = format!(
        "replica-{leader} leads (epoch {}); stop every replica before importing",
        holder.epoch
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));
    let after = fleet.records().await;
    for (name, ..) in ACCOUNTS {
        assert_eq!(as_value(&after[name]), as_value(&records[name]), "{name}");
    }
    fleet.stop_all().await;
}

/// Importing older records, one of the same version with another password, and one whose
/// `account` is not its file's name: each refused, the store left as it is, exit 1.
async fn refuse_what_is_not_newer(
    fleet: &Fleet,
    old: &Path,
    records: &HashMap<String, SecretFile>,
) {
    let same_version = {
        let mut v = as_value(&records["orders-app"]);
        v["current"]["password"] = Value::from("Another-Password-42");
        v
    };
    write_private(
        &old.join("secrets/orders-app.json"),
        &same_version.to_string(),
    );
    write_private(
        &old.join("secrets/stray.json"),
        &as_value(&records["billing"]).to_string(),
    );
    let old_arg = old.to_str().expect("UTF-8 path");
    let out = run(fleet.replicas[0].command(&["store", "import", "--from", old_arg])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        !text(&out).contains("Another-Password-42"),
        "{}",
        text(&out)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {said}"))
            .to_owned()
    };
    assert!(
        line("orders-app").contains(
            "refused  the store holds version 2, newer than or equal to the file's 2; left as it is"
        ),
        "{said}"
    );
    for name in ["edge-app", "admin", "billing"] {
        assert!(
            line(name).contains(
                "refused  the store holds version 2, newer than or equal to the file's 1"
            ),
            "{said}"
        );
    }
    assert!(
        line("stray").contains("refused")
            && line("stray").contains("names the account \"billing\""),
        "{said}"
    );
    let after = fleet.records().await;
    assert_eq!(after.len(), 4);
    for (name, ..) in ACCOUNTS {
        assert_eq!(as_value(&after[name]), as_value(&records[name]), "{name}");
    }
}
