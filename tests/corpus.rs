//! Bad input: a corpus of bad configs (each exits 2 naming its key), bad sink files (each
//! refused, never overwritten), and fuzzing of the config loader, the sink parser and the reply
//! classifier over arbitrary bytes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use pwrotd::config::Config;

const HEAD: &str = "[cloud]\nregion_id = \"cn-hangzhou\"\n";
const ACCOUNT: &str = "[[account]]\nname = \"a\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-1\"\naccount_name = \"app\"\n";

/// (what, config text, the key its error must name)
fn bad_configs() -> Vec<(&'static str, String, &'static str)> {
    let with = |extra: &str| format!("{HEAD}{ACCOUNT}{extra}");
    vec![
        (
            "wrong type",
            format!("[daemon]\nmax_concurrent = \"four\"\n{HEAD}"),
            "max_concurrent",
        ),
        (
            "wrong type of a duration",
            format!("[daemon]\nshutdown_grace = 30\n{HEAD}"),
            "shutdown_grace",
        ),
        (
            "unknown key",
            format!("{HEAD}regoin_id = \"x\"\n"),
            "regoin_id",
        ),
        ("unknown table", format!("{HEAD}[clud]\nx = 1\n"), "clud"),
        (
            "unknown table after an account",
            with("[stor]\nkind = \"file\"\n"),
            "bad.toml:8: stor:",
        ),
        (
            "unknown array of tables",
            with("[[bogus]]\nx = 1\n"),
            "bad.toml:8: bogus:",
        ),
        (
            "unknown sub-table",
            format!("{HEAD}[cloud.nope]\nx = 1\n"),
            "bad.toml:3: cloud.nope:",
        ),
        ("unknown account key", with("pasword = \"x\"\n"), "pasword"),
        ("no region", ACCOUNT.to_owned(), "cloud.region_id"),
        (
            "length too long",
            with("[account.password]\nlength = 40\n"),
            "password.length",
        ),
        (
            "two classes",
            with("[account.password]\nrequire = [\"upper\", \"lower\"]\n"),
            "password.require",
        ),
        (
            "unknown class",
            with("[account.password]\nrequire = [\"upper\", \"lower\", \"emoji\"]\n"),
            "password.require",
        ),
        (
            "a refused special",
            with("[account.password]\nspecial = \"!~\"\n"),
            "password.special",
        ),
        (
            "everything excluded",
            with("[account.password]\nexclude = \"0123456789\"\n"),
            "password.exclude",
        ),
        (
            "duplicate names",
            format!("{HEAD}{ACCOUNT}{}", ACCOUNT.replace("pc-1", "pc-2")),
            "name",
        ),
        ("cron typo", with("cron = \"0 0 3 * * Sundy\"\n"), "cron"),
        (
            "cron without seconds",
            with("cron = \"0 3 * * *\"\n"),
            "cron",
        ),
        (
            "every and cron",
            with("every = \"1d\"\ncron = \"0 0 3 * * *\"\n"),
            "cron",
        ),
        ("bad duration", with("every = \"fortnightly\"\n"), "every"),
        (
            "http off loopback",
            format!("{HEAD}[cloud.endpoints]\npolardb = \"http://polardb.aliyuncs.com\"\n"),
            "cloud.endpoints.polardb",
        ),
        (
            "http to a private address",
            format!("{HEAD}[cloud.endpoints]\nrds = \"http://10.0.0.8:80\"\n"),
            "cloud.endpoints.rds",
        ),
        (
            "unknown api",
            with("").replace("ModifyAccountPassword", "ModifyPassword"),
            "api",
        ),
        (
            "instance_id on PolarDB",
            with("instance_id = \"rm-1\"\n"),
            "instance_id",
        ),
        (
            "grants on RDS",
            format!(
                "{HEAD}[[account]]\nname = \"r\"\napi = \"ResetAccountPassword\"\ninstance_id = \"rm-1\"\naccount_name = \"u\"\ngrants = [{{ db = \"d\", privilege = \"ReadOnly\" }}]\n"
            ),
            "grants",
        ),
        (
            "grants on a privileged ResetAccount account",
            with("grants = [{ db = \"d\", privilege = \"ReadOnly\" }]\n")
                .replace("ModifyAccountPassword", "ResetAccount"),
            "grants",
        ),
        (
            "an empty on_change command",
            with("on_change = [[]]\n"),
            "on_change[0]",
        ),
        (
            "bad privilege",
            with("grants = [{ db = \"d\", privilege = \"All\" }]\n"),
            "grants.privilege",
        ),
        (
            "bad name",
            with("").replace("name = \"a\"", "name = \"../etc/passwd\""),
            "name",
        ),
        (
            "relative state_dir",
            format!("[daemon]\nstate_dir = \"state\"\n{HEAD}"),
            "daemon.state_dir",
        ),
        (
            "bad listen address",
            format!("[daemon]\nmetrics_listen = \"everywhere\"\n{HEAD}"),
            "daemon.metrics_listen",
        ),
        (
            "zero concurrency",
            format!("[daemon]\nmax_concurrent = 0\n{HEAD}"),
            "daemon.max_concurrent",
        ),
        (
            "bad log format",
            format!("[daemon]\nlog_format = \"xml\"\n{HEAD}"),
            "daemon.log_format",
        ),
        (
            "bad signature",
            format!("{HEAD}signature = \"v2\"\n"),
            "cloud.signature",
        ),
        (
            "zero rate",
            format!("{HEAD}requests_per_second = 0.0\n"),
            "cloud.requests_per_second",
        ),
        (
            "negative keep_versions",
            with("keep_versions = -1\n"),
            "keep_versions",
        ),
        (
            "world-readable render",
            with("render = [{ format = \"env\", path = \"/run/a.env\", mode = \"0644\" }]\n"),
            "render[0].mode",
        ),
        (
            "two render entries on one file",
            with(
                "render = [{ format = \"env\", path = \"/run/a.env\" }, { format = \"raw\", path = \"/run//a.env\" }]\n",
            ),
            "bad.toml:8: account \"a\".render[1].path:",
        ),
        (
            "a render file in the state directory",
            format!(
                "[daemon]\nstate_dir = \"/var/lib/pwrotd\"\n{}",
                with(
                    "render = [{ format = \"raw\", path = \"/var/lib/pwrotd/secrets/a.json\" }]\n"
                )
            ),
            "bad.toml:10: account \"a\".render[0].path:",
        ),
        (
            "unknown strategy",
            with("strategy = \"blue-green\"\n"),
            "strategy",
        ),
        (
            "alternating without a clone",
            with("strategy = \"alternating\"\n"),
            "clone_account_name",
        ),
        (
            "a clone that is the account itself",
            with("strategy = \"alternating\"\nclone_account_name = \"app\"\n"),
            "clone_account_name",
        ),
        (
            "a clone without alternating",
            with("clone_account_name = \"app2\"\n"),
            "clone_account_name",
        ),
        (
            "alternating that keeps no previous version",
            with("strategy = \"alternating\"\nclone_account_name = \"app2\"\nkeep_versions = 0\n"),
            "keep_versions",
        ),
        (
            "unknown engine",
            with("[account.verify]\nengine = \"oracle\"\nhost = \"db\"\n"),
            "verify.engine",
        ),
        (
            "verify without a host",
            with("[account.verify]\nengine = \"mysql\"\n"),
            "verify.host",
        ),
        (
            "verify port out of range",
            with("[account.verify]\nengine = \"postgresql\"\nhost = \"db\"\nport = 70000\n"),
            "verify.port",
        ),
        (
            "unknown tls mode",
            with("[account.verify]\nengine = \"mysql\"\nhost = \"db\"\ntls = \"yes\"\n"),
            "verify.tls",
        ),
        (
            "unknown verify key",
            with("[account.verify]\nengine = \"mysql\"\nhost = \"db\"\npassword = \"x\"\n"),
            "verify.password",
        ),
        (
            "a rate that overflows the client's interval",
            format!("{HEAD}requests_per_second = 1e-300\n"),
            "cloud.requests_per_second",
        ),
        (
            "a period past ten years",
            with("every = \"8000y\"\n"),
            "account \"a\".every",
        ),
        (
            "a jitter longer than the period",
            with("every = \"1d\"\njitter = \"2d\"\n"),
            "account \"a\".jitter",
        ),
        (
            "a missing CA file",
            format!("{HEAD}ca_file = \"/nonexistent/pwrotd/ca.pem\"\n"),
            "cloud.ca_file",
        ),
        (
            "a missing verify CA file",
            with(
                "[account.verify]\nengine = \"mysql\"\nhost = \"db\"\nca_file = \"/nonexistent/pwrotd/ca.pem\"\n",
            ),
            "account \"a\".verify.ca_file",
        ),
        (
            "a verify timeout past any deadline",
            with("[account.verify]\nengine = \"mysql\"\nhost = \"db\"\ntimeout = \"1000y\"\n"),
            "account \"a\".verify.timeout",
        ),
        (
            "a cron that never fires (February 30)",
            with("cron = \"0 0 0 30 2 *\"\n"),
            "account \"a\".cron",
        ),
        (
            "a bad default, once under its own key",
            format!("{HEAD}[defaults]\nevery = \"often\"\n{ACCOUNT}"),
            "1 problem\n  ",
        ),
        (
            "a cluster key with the file store",
            format!("{HEAD}[store]\nkind = \"file\"\nkey_file = \"/etc/pwrotd/store.key\"\n"),
            "bad.toml:5: store.key_file:",
        ),
        (
            "an unknown store kind",
            format!("{HEAD}[store]\nkind = \"etcd\"\n"),
            "bad.toml:4: store.kind:",
        ),
        (
            "a relative store url_file",
            format!(
                "{HEAD}[store]\nkind = \"postgresql\"\nurl_file = \"store-url\"\nlease = \"1m\"\n"
            ),
            "bad.toml:5: store.url_file:",
        ),
        (
            "a lease under 5s",
            format!("{HEAD}timeout = \"1s\"\n[store]\nkind = \"postgresql\"\nlease = \"4s\"\n"),
            "bad.toml:6: store.lease:",
        ),
        (
            "a lease that leaves the leader too little",
            format!("{HEAD}[store]\nkind = \"postgresql\"\nlease = \"12s\"\n"),
            "bad.toml:5: store.lease: 12s is too short",
        ),
        (
            "a bad node name",
            format!(
                "{HEAD}[store]\nkind = \"postgresql\"\nlease = \"1m\"\nnode_name = \"host/a\"\n"
            ),
            "bad.toml:6: store.node_name:",
        ),
        (
            "a region id of the wrong shape",
            format!("[cloud]\nregion_id = \"CN Hangzhou\"\n{ACCOUNT}"),
            "bad.toml:2: cloud.region_id:",
        ),
        (
            "an unknown network",
            format!("{HEAD}network = \"private\"\n{ACCOUNT}"),
            "bad.toml:3: cloud.network:",
        ),
        (
            "a default region with no known endpoint",
            format!("[cloud]\nregion_id = \"mars-north-1\"\n{ACCOUNT}"),
            "bad.toml:2: cloud.region_id: \"mars-north-1\" is not a region with a known polardb endpoint",
        ),
        (
            "an account's region with no known endpoint",
            with("region_id = \"mars-north-1\"\n"),
            "bad.toml:8: account \"a\".region_id: \"mars-north-1\" is not a region",
        ),
        (
            "an account's empty region",
            with("region_id = \"\"\n"),
            "bad.toml:8: account \"a\".region_id: must not be empty",
        ),
        ("not TOML", "[cloud\nregion_id = ".to_owned(), ""),
        ("binary junk", "\u{0}\u{1}\u{2}\u{fffd}".to_owned(), ""),
    ]
}

#[test]
fn every_bad_config_exits_2_naming_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = bad_configs();
    assert!(corpus.len() >= 30);
    for (what, text, key) in corpus {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).expect("write");
        let output = Command::new(env!("CARGO_BIN_EXE_pwrotd"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run pwrotd check");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(key),
            "{what}: the error does not name {key:?}: {stderr}"
        );
        assert!(
            stderr.contains("bad.toml:"),
            "{what}: no file and line: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

#[test]
fn an_inline_secret_in_a_loose_file_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("loose.toml");
    std::fs::write(&path, format!("{HEAD}[cloud.credentials]\naccess_key_id = \"LTAI\"\naccess_key_secret = \"hunter2-secret\"\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let output = Command::new(env!("CARGO_BIN_EXE_pwrotd"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cloud.credentials") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

/// Runs `pwrotd` with `args` and `--config path`.
fn pwrotd(args: &[&str], path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pwrotd"))
        .args(args)
        .arg("--config")
        .arg(path)
        .output()
        .expect("run pwrotd")
}

/// `check` tells the truth: values that used to pass `check` and then panic `check` or `status`
/// (a period past the year 9999 once an account has a success) or `rotate` (a rate whose
/// interval overflows) are refused by every command, with exit 2 and the key.
#[test]
fn values_that_would_panic_later_are_refused_by_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("secrets")).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let sink = state.join("secrets/a.json");
    std::fs::write(&sink, GOOD_SINK).expect("write");
    std::fs::set_permissions(&sink, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = dir.path().join("c.toml");
    for (extra_cloud, extra_account, key) in [
        ("", "every = \"8000y\"\n", "account \"a\".every"),
        (
            "requests_per_second = 1e-300\n",
            "",
            "cloud.requests_per_second",
        ),
    ] {
        let text = format!(
            "[daemon]\nstate_dir = \"{}\"\n{HEAD}{extra_cloud}[cloud.endpoints]\npolardb = \"http://127.0.0.1:9\"\n{ACCOUNT}{extra_account}",
            state.display()
        );
        std::fs::write(&path, text).expect("write");
        for args in [&["check"][..], &["status"], &["rotate", "--all"]] {
            let output = pwrotd(args, &path);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panic"), "{args:?} {key}: {stderr}");
            assert_eq!(output.status.code(), Some(2), "{args:?} {key}: {stderr}");
            assert!(stderr.contains(key), "{args:?}: {stderr}");
        }
    }
}

/// `check` prints the next due time of every account, which comes from the sink: a last
/// success late in the year 9999 (a clock set wrong, a hand-edited file) puts it past what RFC
/// 3339 can write. `check` says so instead of panicking.
#[test]
fn check_survives_a_due_time_past_the_year_9999() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("secrets")).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let sink = state.join("secrets/a.json");
    let late = GOOD_SINK.replace("2026-11-23T03:00:00Z", "9999-12-20T03:00:00Z");
    std::fs::write(&sink, late).expect("write");
    std::fs::set_permissions(&sink, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = dir.path().join("c.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\n{HEAD}{ACCOUNT}",
        state.display()
    );
    std::fs::write(&path, text).expect("write");
    let output = pwrotd(&["check"], &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("after 9999-12-31T23:59:59Z"), "{stdout}");
}

/// A period under an hour is a warning: `check` prints it on stderr with its line and key, and
/// still exits 0 with the plan.
#[test]
fn check_prints_warnings_without_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("short.toml");
    std::fs::write(&path, format!("{HEAD}{ACCOUNT}every = \"30m\"\n")).expect("write");
    let output = pwrotd(&["check"], &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains("short.toml:8: account \"a\".every: "),
        "{warning}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("every 30m"));
}

fn account() -> std::sync::Arc<pwrotd::config::Account> {
    Config::parse(&format!("{HEAD}{ACCOUNT}"), Path::new("t.toml"))
        .expect("valid")
        .accounts
        .remove(0)
}

const GOOD_SINK: &str = r#"{"format":1,"account":"a","api":"ModifyAccountPassword","resource_id":"pc-1","account_name":"app",
"current":{"version":1,"username":"app","password":"Ab1!Ab1!Ab1!","created_time":"2026-11-23T03:00:00Z","request_id":"R"},
"pending":null,"previous":[]}"#;

#[test]
fn every_bad_sink_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let secrets = state.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    let path = secrets.join("a.json");
    let uid = nix::unistd::geteuid().as_raw();
    let account = account();

    let write = |text: &str, mode: u32| {
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write(GOOD_SINK, 0o600);
    assert!(
        pwrotd::sink::read_secret(state, &account, uid)
            .expect("good")
            .is_some()
    );

    let cases: [(&str, String, u32, &str); 9] = [
        (
            "truncated",
            GOOD_SINK[..GOOD_SINK.len() / 2].to_owned(),
            0o600,
            "SinkCorrupt",
        ),
        ("empty", String::new(), 0o600, "SinkCorrupt"),
        (
            "a newer format",
            GOOD_SINK.replace("\"format\":1", "\"format\":7"),
            0o600,
            "SinkNewer",
        ),
        (
            "an older format",
            GOOD_SINK.replace("\"format\":1", "\"format\":0"),
            0o600,
            "SinkCorrupt",
        ),
        (
            "unknown field",
            GOOD_SINK.replace("\"pending\":null", "\"pending\":null,\"extra\":1"),
            0o600,
            "SinkCorrupt",
        ),
        (
            "another resource",
            GOOD_SINK.replace("pc-1", "pc-9"),
            0o600,
            "SinkMismatch",
        ),
        (
            "group-readable",
            GOOD_SINK.to_owned(),
            0o640,
            "SinkPermissions",
        ),
        (
            "world-writable",
            GOOD_SINK.to_owned(),
            0o602,
            "SinkPermissions",
        ),
        (
            "a password where a number goes",
            GOOD_SINK.replace("\"version\":1", "\"version\":\"Ab1!Ab1!Ab1!\""),
            0o600,
            "SinkCorrupt",
        ),
    ];
    for (what, text, mode, code) in cases {
        write(&text, mode);
        let err = pwrotd::sink::read_secret(state, &account, uid).expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
        assert!(
            !err.to_string().contains("Ab1!Ab1!Ab1!"),
            "{what}: the error quotes a password: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            text,
            "{what}: changed"
        );
    }

    // Wrong owner (root can give the file away; others cannot run this case).
    write(GOOD_SINK, 0o600);
    if uid == 0 {
        std::os::unix::fs::chown(&path, Some(4242), None).expect("chown");
        let err = pwrotd::sink::read_secret(state, &account, 1000).expect_err("owner");
        assert_eq!(err.code(), "SinkPermissions", "{err}");
    }

    // A symlink, even to a good file, and a directory.
    let target = state.join("elsewhere.json");
    std::fs::write(&target, GOOD_SINK).expect("write");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    assert_eq!(
        pwrotd::sink::read_secret(state, &account, uid)
            .expect_err("symlink")
            .code(),
        "SinkNotAFile"
    );
    std::fs::remove_file(&path).expect("rm");
    std::fs::create_dir(&path).expect("mkdir");
    assert_eq!(
        pwrotd::sink::read_secret(state, &account, uid)
            .expect_err("dir")
            .code(),
        "SinkNotAFile"
    );
}

/// Reads `bytes` as account "a"'s secret file (mode 0600) in a fresh state directory.
fn read_fuzzed_sink(bytes: &[u8]) -> Result<(), pwrotd::sink::SinkError> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    let path = dir.path().join("secrets/a.json");
    std::fs::write(&path, bytes).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let uid = nix::unistd::geteuid().as_raw();
    pwrotd::sink::read_secret(dir.path(), &account(), uid).map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The config loader on arbitrary text: a value or problems, never a panic.
    #[test]
    fn fuzz_config_loader(text in "\\PC{0,400}") {
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
    }

    /// The config loader on mutations of a valid config: still never a panic, and every
    /// problem names a line within the file.
    #[test]
    fn fuzz_config_mutations(cut in 0usize..400, insert in "[ -~\n]{0,12}") {
        let valid = format!("[daemon]\nmax_concurrent = 4\n{HEAD}[defaults]\nevery = \"30d\"\n{ACCOUNT}grants = [{{ db = \"d\", privilege = \"ReadOnly\" }}]\n");
        let at = cut.min(valid.len());
        let text = format!("{}{insert}{}", &valid[..at], &valid[at..]);
        if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
            let lines = text.lines().count() + 1;
            for p in e.problems {
                prop_assert!(p.line <= lines, "line {} beyond the file's {}", p.line, lines);
            }
        }
    }

    /// The sink parser on arbitrary bytes: refused as corrupt (or accepted), never a panic.
    #[test]
    fn fuzz_sink_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Err(e) = read_fuzzed_sink(bytes.as_ref()) {
            prop_assert_eq!(e.code(), "SinkCorrupt");
        }
    }

    /// The sink parser on mutations of a valid file.
    #[test]
    fn fuzz_sink_mutations(cut in 0usize..400, insert in "[ -~]{0,8}") {
        let at = cut.min(GOOD_SINK.len());
        let text = format!("{}{insert}{}", &GOOD_SINK[..at], &GOOD_SINK[at..]);
        if let Err(e) = read_fuzzed_sink(text.as_ref()) {
            prop_assert!(["SinkCorrupt", "SinkMismatch", "SinkNewer"].contains(&e.code()), "{}", e);
        }
    }
}

/// A duration as an operator might write it, mistype it or overdo it.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (
            1u64..=60,
            prop::sample::select(vec!["ms", "s", "m", "h", "d", "w", "M", "y"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        2 => prop::sample::select(vec![
            "0s",
            "1ns",
            "59s",
            "1h",
            "10y",
            "11y",
            "8000y",
            "100000000000y",
            "584942417355y",
            "18446744073709551615s",
            "99999999999999999999s",
            "-1s",
            "1.5h",
            "",
            "forever",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z0-9 .:+-]{0,12}",
    ]
}

/// A timeout: mostly seconds or minutes, sometimes anything.
fn timeout_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u64..=600, prop::sample::select(vec!["ms", "s", "m"]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => duration_text(),
    ]
}

/// A rate: plausible, at or past the bounds, or something where a number goes.
fn rate_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u32..=100_000).prop_map(|n| format!("{}.{:02}", n / 100, n % 100)),
        2 => prop::sample::select(vec![
            "0", "-1", "0.0", "-0.0", "1e-300", "1e300", "5e-324", "nan", "inf", "-inf", "0.001",
            "0.01", "1000000", "1000001", "1.7976931348623157e308", "\"10\"", "true",
        ])
        .prop_map(str::to_owned),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
    ]
}

/// A count: mostly within `plausible`, sometimes any integer or not one at all.
fn count_text(plausible: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => plausible.prop_map(|i| i.to_string()),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => prop::sample::select(vec!["-1", "0", "1e3", "\"5\"", "9223372036854775807"])
            .prop_map(str::to_owned),
    ]
}

/// A cron expression: plausible, impossible, year-bound, or noise.
fn cron_text() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "*", "0", "*/5", "*/20", "1-3", "29", "30", "31", "L", "?", "59", "2", "12", "Sun", "5#5",
        "1,15",
    ]);
    prop_oneof![
        8 => prop::sample::select(vec![
            "0 0 3 * * Sun",
            "0 0 3 * * *",
            "0 30 2 1 * *",
            "0 0 0 29 2 *",
            "0 0 0 1 1 *",
            "0 0 */6 * * *",
            "@yearly",
            "@hourly",
            "0 0 0 L 2 *",
            "0 0 0 * * 5#5",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "0 0 0 30 2 *",
            "0 0 0 31 4 *",
            "* * * * * *",
            "0 0 0 1 1 * 2020",
            "0 0 0 1 1 * 2030",
            "0 0 0 1 1 * 4999",
            "0 0 0 1 1 * 2030,2045",
            "0 0 0 29 2 * 2100",
        ])
        .prop_map(str::to_owned),
        1 => prop::collection::vec(field, 6..=7).prop_map(|f| f.join(" ")),
        1 => "[0-9*/ ,LW#?-]{0,20}",
    ]
}

/// `every`, `cron`, neither, or (rarely, and refused) both.
fn schedule_lines() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        4 => duration_text().prop_map(|d| format!("every = \"{d}\"\n")),
        3 => cron_text().prop_map(|c| format!("cron = \"{c}\"\n")),
        1 => (duration_text(), cron_text())
            .prop_map(|(d, c)| format!("every = \"{d}\"\ncron = \"{c}\"\n")),
    ]
}

/// `key = "value"` or `key = value`, or nothing.
fn line(key: &'static str, value: Option<String>, quoted: bool) -> String {
    match value {
        None => String::new(),
        Some(v) if quoted => format!("{key} = \"{v}\"\n"),
        Some(v) => format!("{key} = {v}\n"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `Config::parse` never panics on any of these values, and for every config it accepts,
    /// the scheduler's next time from a last success now, ten years ago or a year ahead (a clock
    /// set wrong), the catch-up at start, every retry delay, the client's rate limit and the
    /// verification deadline can all be computed without a panic, and printed as `check` and
    /// `status` print them.
    #[test]
    fn accepted_configs_never_panic_the_scheduler(
        schedule in schedule_lines(),
        own_schedule in schedule_lines(),
        jitter in proptest::option::weighted(0.4, duration_text()),
        retry in proptest::option::weighted(0.4, duration_text()),
        own_retry in proptest::option::weighted(0.2, duration_text()),
        rate in proptest::option::weighted(0.2, rate_text()),
        timeout in proptest::option::weighted(0.2, timeout_text()),
        grace in proptest::option::weighted(0.2, timeout_text()),
        verify_timeout in proptest::option::weighted(0.2, timeout_text()),
        keep in proptest::option::weighted(0.2, count_text(0..=120)),
        length in proptest::option::weighted(0.2, count_text(6..=40)),
        attempts in proptest::option::weighted(0.2, count_text(0..=120)),
    ) {
        let text = format!(
            "[daemon]\n{}[cloud]\nregion_id = \"cn-hangzhou\"\n{}{}{}[defaults]\n{schedule}{}{}{}[defaults.password]\n{}{ACCOUNT}{own_schedule}{}[account.verify]\nengine = \"mysql\"\nhost = \"db\"\n{}",
            line("shutdown_grace", grace, true),
            line("timeout", timeout, true),
            line("requests_per_second", rate, false),
            line("max_attempts", attempts, false),
            line("jitter", jitter, true),
            line("retry_after_failure", retry, true),
            line("keep_versions", keep, false),
            line("length", length, false),
            line("retry_after_failure", own_retry, true),
            line("timeout", verify_timeout, true),
        );
        let Ok(config) = Config::parse(&text, Path::new("prop.toml")) else {
            return Ok(());
        };
        use pwrotd::scheduler::{self, Initial};
        use pwrotd::sink::timestamp;
        use std::time::{Duration, SystemTime};
        const YEAR: Duration = Duration::from_secs(31_557_600);
        let now = SystemTime::now();
        for a in &config.accounts {
            for last in [now, now - 10 * YEAR, now + YEAR] {
                let next = scheduler::next_after(&a.schedule, last);
                timestamp(next);
                let initial = Initial { last_success: Some(last), pending: false };
                timestamp(scheduler::initial_due(a, initial, now));
                timestamp(scheduler::initial_due(a, initial, last));
                if let Some(at) = scheduler::scheduled(a, initial) {
                    timestamp(scheduler::next_after(&a.schedule, at));
                }
            }
            for failures in [1, 2, 10, 31, 32, 1000, u32::MAX] {
                for at in [now, now + YEAR] {
                    timestamp(at + scheduler::retry_delay(a, failures, at));
                }
            }
            if let Some(verify) = &a.verify {
                let _ = verify.patience();
            }
        }
        let credentials = pwrotd::cloud::Credentials::new("id", "secret");
        let client = pwrotd::cloud::Client::new(
            config.cloud.client.clone(),
            pwrotd::cloud::CredentialSource::fixed(credentials),
        );
        prop_assert!(client.is_ok(), "{text}");
    }
}

/// With the PostgreSQL store, `check` says so, with this replica's node name and the lease;
/// with the file store it says nothing of a store.
#[test]
fn check_prints_the_cluster_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}{ACCOUNT}[store]\nkind = \"postgresql\"\nkey_file = \"/etc/pwrotd/store.key\"\nlease = \"30s\"\nnode_name = \"host-a\"\n"
        ),
    )
    .expect("write");
    let output = pwrotd(&["check"], &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "store postgresql, node host-a, lease 30s (no API call started with under 11s left)"
        ),
        "{stdout}"
    );
    std::fs::write(&path, format!("{HEAD}{ACCOUNT}")).expect("write");
    let output = pwrotd(&["check"], &path);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("store"));
}
