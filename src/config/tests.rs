use super::*;
use crate::cloud::SignatureVersion;
use crate::verify::{Engine, Tls};

const GOOD: &str = r#"
[daemon]
state_dir = "/var/lib/pwrotd"
metrics_listen = "127.0.0.1:9860"
max_concurrent = 8

[cloud]
region_id = "cn-hangzhou"
signature = "v3"
timeout = "5s"
[cloud.endpoints]
polardb = "http://127.0.0.1:18080"

[defaults]
every = "30d"
[defaults.password]
length = 20

[[account]]
name = "orders-app"
api = "ModifyAccountPasswordZonal"
cluster_id = "pc-1"
account_name = "app"
grants = [{ db = "orders", privilege = "ReadWrite" }, { db = "audit", privilege = "DMLOnly" }]

[[account]]
name = "billing"
api = "ResetAccountPassword"
instance_id = "rm-1"
account_name = "billing"
cron = "0 0 3 * * Sun"
[account.password]
require = ["upper", "lower", "digit"]
"#;

fn problems(src: &str) -> Vec<(usize, String)> {
    Config::parse(src, Path::new("t.toml"))
        .unwrap_err()
        .problems
        .into_iter()
        .map(|p| (p.line, p.key))
        .collect()
}

#[test]
fn a_good_config() {
    let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
    assert_eq!(c.daemon.max_concurrent, 8);
    assert_eq!(c.cloud.client.signature, SignatureVersion::V3);
    assert_eq!(
        c.cloud
            .client
            .endpoints
            .polardb
            .as_ref()
            .map(|u| u.as_str()),
        Some("http://127.0.0.1:18080/")
    );
    assert_eq!(c.accounts.len(), 2);
    let orders = c.account("orders-app").unwrap();
    assert_eq!(orders.policy.length(), 20);
    assert_eq!(
        orders.schedule,
        Schedule::Every(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(orders.grants.len(), 2);
    let billing = c.account("billing").unwrap();
    assert_eq!(billing.resource_id, "rm-1");
    assert_eq!(
        billing.schedule,
        Schedule::Cron(Box::new(Cron::parse("0 0 3 * * Sun").unwrap()))
    );
    assert_eq!(billing.policy.classes().count(), 3);
    assert_eq!(billing.policy.length(), 20, "defaults apply key by key");
}

#[test]
fn every_problem_is_listed_with_line_and_key() {
    let src = r#"
[cloud]
region_id = "cn-hangzhou"
signature = "v2"
[cloud.endpoints]
rds = "http://rds.example.com"

[[account]]
name = "a"
api = "ModifyAccountPasword"
cluster_id = "pc-1"

[[account]]
name = "b"
api = "ResetAccountPassword"
cluster_id = "pc-2"
account_name = "x"
every = "often"
grants = [{ db = "d", privilege = "ReadWrite" }]
[account.password]
length = 40
special = "!~"
"#;
    let found = problems(src);
    for expected in [
        (4, "cloud.signature"),
        (6, "cloud.endpoints.rds"),
        (10, "account \"a\".api"),
        (8, "account \"a\".account_name"),
        (16, "account \"b\".cluster_id"),
        (13, "account \"b\".instance_id"),
        (18, "account \"b\".every"),
        (19, "account \"b\".grants"),
        (21, "account \"b\".password.length"),
        (22, "account \"b\".password.special"),
    ] {
        assert!(
            found.iter().any(|(l, k)| (*l, k.as_str()) == expected),
            "{expected:?} missing from {found:?}"
        );
    }
    assert_eq!(found.len(), 10, "{found:?}");
}

#[test]
fn every_wrong_type_and_unknown_key_is_listed_at_once() {
    let src = "[daemon]\nmax_concurrent = \"four\"\nshutdown_grace = 30\nloglevel = \"x\"\n[cloud]\nregion_id = 7\ntimeout = \"5s\"\n[[account]]\nname = \"a\"\nkeep_versions = \"five\"\n";
    assert_eq!(
        problems(src),
        [
            (2, "daemon.max_concurrent".to_owned()),
            (3, "daemon.shutdown_grace".to_owned()),
            (4, "daemon.loglevel".to_owned()),
            (6, "cloud.region_id".to_owned()),
            (10, "account.keep_versions".to_owned()),
        ]
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let p = problems("[cloud]\nregion_id = \"x\"\nregoin = 1\n");
    assert_eq!(p[0], (3, "cloud.regoin".to_owned()));
    let p = problems("[daemon]\nmax_concurrent = \"four\"\n[cloud]\nregion_id = \"x\"\n");
    assert_eq!(p[0], (2, "daemon.max_concurrent".to_owned()));
}

#[test]
fn render_files_are_checked() {
    let src = r#"
[cloud]
region_id = "cn-hangzhou"
[[account]]
name = "a"
api = "ModifyAccountPassword"
cluster_id = "pc-1"
account_name = "app"
render = [
  { format = "env", path = "/run/app/db.env", mode = "0640", group = "0" },
  { format = "yaml", path = "relative.yaml", mode = "0644", group = "no-such-group-here" },
]
"#;
    let keys: Vec<String> = problems(src).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        keys,
        [
            "account \"a\".render[1].format",
            "account \"a\".render[1].path",
            "account \"a\".render[1].mode",
            "account \"a\".render[1].group"
        ]
    );
    let good = src.replace(
        "  { format = \"yaml\", path = \"relative.yaml\", mode = \"0644\", group = \"no-such-group-here\" },\n",
        "  { format = \"raw\", path = \"/run/app/db.pw\" },\n",
    );
    let c = Config::parse(&good, Path::new("t.toml")).unwrap();
    let render = &c.accounts[0].render;
    assert_eq!(render.len(), 2);
    assert_eq!(
        (render[0].format, render[0].mode, render[0].gid),
        (RenderFormat::Env, 0o640, Some(0))
    );
    assert_eq!(
        (render[1].format, render[1].mode, render[1].gid),
        (RenderFormat::Raw, 0o600, None)
    );
}

/// An unknown table is one problem, named by its header and on its line; the keys in its
/// body are not reported again as keys of the table above it.
#[test]
fn an_unknown_table_is_one_problem_named_by_its_header() {
    const A: &str = "[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\n";
    let head = "[cloud]\nregion_id = \"cn-hangzhou\"\n";
    let cases: [(String, Vec<(usize, &str)>); 8] = [
        // After an account: not "account: unknown field", and x, y are not account keys.
        (
            format!("{head}{A}[bogus]\nx = 1\ny = \"2\"\n"),
            vec![(8, "bogus")],
        ),
        // Before any account.
        (format!("{head}[bogus]\nx = 1\n{A}"), vec![(3, "bogus")]),
        // An array of tables, given twice: one problem, at the first.
        (
            format!("{head}{A}[[bogus]]\nx = 1\n[[bogus]]\nx = 2\n"),
            vec![(8, "bogus")],
        ),
        // Unknown sub-tables of known tables.
        (
            format!("{head}[cloud.nope]\nx = 1\n{A}"),
            vec![(3, "cloud.nope")],
        ),
        (
            format!("{head}[defaults]\nevery = \"1d\"\n[defaults.nope]\nx = 1\n{A}"),
            vec![(5, "defaults.nope")],
        ),
        (
            format!("{head}{A}[account.nope]\nx = 1\n"),
            vec![(8, "account.nope")],
        ),
        // The unknown table's own sub-tables belong to it.
        (
            format!("{head}[bogus]\nx = 1\n[bogus.inner]\ny = 2\n{A}"),
            vec![(3, "bogus")],
        ),
        // What follows an unknown table is still checked.
        (
            format!("{head}[bogus]\nx = 1\n[daemon]\nmax_concurrent = \"four\"\n{A}"),
            vec![(3, "bogus"), (6, "daemon.max_concurrent")],
        ),
    ];
    for (src, expected) in cases {
        let expected: Vec<(usize, String)> = expected
            .into_iter()
            .map(|(l, k)| (l, k.to_owned()))
            .collect();
        assert_eq!(problems(&src), expected, "{src}");
    }
}

/// Two render entries never share a file, in one account or two, and none lies in the state
/// directory, where it would collide with the secret files, temporary files, lock or audit
/// log. Paths are compared after lexical normalisation.
#[test]
fn render_paths_are_unique_and_outside_the_state_dir() {
    let head = "[daemon]\nstate_dir = \"/var/lib/pwrotd\"\n[cloud]\nregion_id = \"cn-hangzhou\"\n";
    let account = |name: &str, render: &str| {
        format!(
            "[[account]]\nname = \"{name}\"\napi = \"ResetAccount\"\ncluster_id = \"pc-{name}\"\naccount_name = \"r\"\nrender = [{render}]\n"
        )
    };
    let entry = |path: &str| format!("{{ format = \"env\", path = \"{path}\" }}");
    let config = |a: &str, b: &str| format!("{head}{}{}", account("a", a), account("b", b));
    // Account "a"'s render line is 10, "b"'s is 16.
    let bad = [
        (
            config(
                &format!("{}, {}", entry("/run/app/db"), entry("/run/app/db")),
                &entry("/run/b"),
            ),
            (10, "account \"a\".render[1].path"),
        ),
        (
            config(&entry("/run/app/db"), &entry("/run//app/x/../db")),
            (16, "account \"b\".render[0].path"),
        ),
        (
            config(&entry("/run/app/db"), &entry("/run/./app/db")),
            (16, "account \"b\".render[0].path"),
        ),
        (
            config(&entry("/var/lib/pwrotd/secrets/a.json"), &entry("/run/b")),
            (10, "account \"a\".render[0].path"),
        ),
        (
            config(&entry("/run/a"), &entry("/var/lib//pwrotd/audit.jsonl")),
            (16, "account \"b\".render[0].path"),
        ),
        (
            config(&entry("/var/lib/x/../pwrotd/.lock"), &entry("/run/b")),
            (10, "account \"a\".render[0].path"),
        ),
        (
            config(&entry("/var/lib/pwrotd/"), &entry("/run/b")),
            (10, "account \"a\".render[0].path"),
        ),
        // An ancestor of the state directory: the rename would replace a directory.
        (
            config(&entry("/var/lib"), &entry("/run/b")),
            (10, "account \"a\".render[0].path"),
        ),
    ];
    for (src, (line, key)) in bad {
        assert_eq!(problems(&src), [(line, key.to_owned())], "{src}");
    }
    // A sibling whose name merely starts like the state directory is fine, and the path
    // kept is the normalised one.
    let good = config(
        &entry("/var/lib/pwrotd-render/a.env"),
        &entry("/run//b/./x/../b.env"),
    );
    let c = Config::parse(&good, Path::new("t.toml")).unwrap();
    assert_eq!(c.accounts[1].render[0].path, Path::new("/run/b/b.env"));
}

const ONE: &str = "[cloud]\nregion_id = \"cn-hangzhou\"\n[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\n";

/// `ONE` with `cloud` keys after line 2 and account keys at the end (line 8 on).
fn one(cloud: &str, account: &str) -> String {
    ONE.replacen(
        "region_id = \"cn-hangzhou\"\n",
        &format!("region_id = \"cn-hangzhou\"\n{cloud}"),
        1,
    ) + account
}

/// Values that would panic or fail later, or that make no sense, are refused at load with
/// their key; the bounds themselves are accepted.
#[test]
fn values_out_of_range_are_refused() {
    let bad = [
        (
            "requests_per_second = 1e-300\n",
            "",
            "cloud.requests_per_second",
        ),
        (
            "requests_per_second = 0.001\n",
            "",
            "cloud.requests_per_second",
        ),
        (
            "requests_per_second = 1e300\n",
            "",
            "cloud.requests_per_second",
        ),
        (
            "requests_per_second = nan\n",
            "",
            "cloud.requests_per_second",
        ),
        (
            "requests_per_second = -inf\n",
            "",
            "cloud.requests_per_second",
        ),
        (
            "requests_per_second = -5\n",
            "",
            "cloud.requests_per_second",
        ),
        ("timeout = \"2h\"\n", "", "cloud.timeout"),
        ("timeout = \"0s\"\n", "", "cloud.timeout"),
        ("", "every = \"8000y\"\n", "account \"a\".every"),
        ("", "every = \"11y\"\n", "account \"a\".every"),
        ("", "every = \"0s\"\n", "account \"a\".every"),
        (
            "",
            "every = \"30d\"\njitter = \"31d\"\n",
            "account \"a\".jitter",
        ),
        ("", "jitter = \"50000y\"\n", "account \"a\".jitter"),
        (
            "",
            "every = \"1d\"\nretry_after_failure = \"2d\"\n",
            "account \"a\".retry_after_failure",
        ),
        (
            "",
            "retry_after_failure = \"0s\"\n",
            "account \"a\".retry_after_failure",
        ),
        (
            "",
            "[account.verify]\nengine = \"mysql\"\nhost = \"db\"\ntimeout = \"1000y\"\n",
            "account \"a\".verify.timeout",
        ),
    ];
    for (cloud, account, key) in bad {
        let src = one(cloud, account);
        let keys: Vec<String> = problems(&src).into_iter().map(|(_, k)| k).collect();
        assert_eq!(keys, [key], "{src}");
    }
    let daemon = format!("[daemon]\nshutdown_grace = \"2h\"\n{ONE}");
    assert_eq!(problems(&daemon), [(2, "daemon.shutdown_grace".to_owned())]);

    for (cloud, account) in [
        ("requests_per_second = 0.01\n", ""),
        ("requests_per_second = 1000000\ntimeout = \"1h\"\n", ""),
        (
            "",
            "every = \"10y\"\njitter = \"10y\"\nretry_after_failure = \"10y\"\n",
        ),
        // A short period caps the default jitter (10m) and first retry (5m) to itself.
        ("", "every = \"1m\"\n"),
    ] {
        let src = one(cloud, account);
        if let Err(e) = Config::parse(&src, Path::new("t.toml")) {
            panic!("{src}\n{e}");
        }
    }
    let c = Config::parse(&one("", "every = \"1m\"\n"), Path::new("t.toml")).unwrap();
    let a = &c.accounts[0];
    assert_eq!(
        (a.jitter, a.retry_after_failure),
        (Duration::from_secs(60), Duration::from_secs(60))
    );
}

/// A CA file that is missing, empty or not PEM fails at load, not at the first rotation.
#[test]
fn ca_files_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem");
    let verify = |ca: &Path| {
        format!(
            "[account.verify]\nengine = \"mysql\"\nhost = \"db\"\nca_file = \"{}\"\n",
            ca.display()
        )
    };
    for ca in [&missing, &empty, &junk, dir.path()] {
        let src = one(&format!("ca_file = \"{}\"\n", ca.display()), "");
        assert_eq!(problems(&src), [(3, "cloud.ca_file".to_owned())], "{src}");
        let src = one("", &verify(ca));
        assert_eq!(
            problems(&src),
            [(11, "account \"a\".verify.ca_file".to_owned())],
            "{src}"
        );
    }
    let src = one(
        &format!("ca_file = \"{}\"\n", good.display()),
        &verify(&good),
    );
    let c = Config::parse(&src, Path::new("t.toml")).unwrap();
    assert_eq!(c.cloud.client.ca_file.as_deref(), Some(good.as_path()));
}

/// A cron expression that never fires, or stops firing within a few years, is refused; it
/// used to be taken as yearly.
#[test]
fn a_cron_that_never_fires_is_refused() {
    let year: i32 = chrono::Datelike::year(&chrono::Utc::now());
    for cron in [
        "0 0 0 30 2 *".to_owned(),
        "0 0 0 31 4 *".to_owned(),
        "0 0 0 1 1 * 2020".to_owned(),
        format!("0 0 0 1 1 * {}", year + 1),
        format!("* * * * * * {}-{}", year, year + 1),
        "0 0 0 1 1 * 4000".to_owned(),
    ] {
        let src = one("", &format!("cron = \"{cron}\"\n"));
        assert_eq!(
            problems(&src),
            [(8, "account \"a\".cron".to_owned())],
            "{cron}"
        );
    }
    for cron in ["0 0 0 29 2 *", "0 0 3 * * Sun", "0 0 0 1 1 *"] {
        let src = one("", &format!("cron = \"{cron}\"\n"));
        assert!(Config::parse(&src, Path::new("t.toml")).is_ok(), "{cron}");
    }
}

/// A period under an hour loads, with a warning naming its line and key: once for
/// `[defaults]`, however many accounts take it.
#[test]
fn a_period_under_an_hour_is_a_warning() {
    let warnings = |src: &str| -> Vec<(usize, String)> {
        Config::parse(src, Path::new("t.toml"))
            .unwrap()
            .warnings
            .into_iter()
            .map(|w| (w.line, w.key))
            .collect()
    };
    assert_eq!(
        warnings(&one("", "every = \"30m\"\n")),
        [(8, "account \"a\".every".to_owned())]
    );
    assert_eq!(
        warnings(&one("", "every = \"1s\"\n")),
        [(8, "account \"a\".every".to_owned())]
    );
    assert_eq!(
        warnings(&one("", "cron = \"0 */5 * * * *\"\n")),
        [(8, "account \"a\".cron".to_owned())]
    );
    let two = "[defaults]\nevery = \"5m\"\n[cloud]\nregion_id = \"cn-hangzhou\"\n[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\n[[account]]\nname = \"b\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"s\"\n";
    assert_eq!(warnings(two), [(2, "defaults.every".to_owned())]);
    assert!(warnings(&one("", "every = \"1h\"\n")).is_empty());
    assert!(warnings(ONE).is_empty());
}

/// A bad `[defaults]` value is one problem under its `defaults.` key, not one per account
/// under the account's; and it is a problem even when no account takes it.
#[test]
fn defaults_problems_are_reported_once_under_defaults() {
    let accounts = "[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\n[[account]]\nname = \"b\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"s\"\n";
    let src = format!(
        "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\nevery = \"often\"\njitter = \"x\"\nretry_after_failure = \"0s\"\nkeep_versions = -1\n[defaults.password]\nlength = 40\n{accounts}"
    );
    assert_eq!(
        problems(&src),
        [
            (4, "defaults.every".to_owned()),
            (5, "defaults.jitter".to_owned()),
            (6, "defaults.retry_after_failure".to_owned()),
            (7, "defaults.keep_versions".to_owned()),
            (9, "defaults.password.length".to_owned()),
        ]
    );
    let cron = format!(
        "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\ncron = \"0 0 0 30 2 *\"\n{accounts}"
    );
    assert_eq!(problems(&cron), [(4, "defaults.cron".to_owned())]);
    let jitter = format!(
        "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\nevery = \"1h\"\njitter = \"2h\"\n{accounts}"
    );
    assert_eq!(problems(&jitter), [(5, "defaults.jitter".to_owned())]);
    // With no account at all.
    let alone = "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\nevery = \"often\"\n";
    assert_eq!(problems(alone), [(4, "defaults.every".to_owned())]);
    // A default that only an account's own value makes wrong is that account's problem.
    let own = format!(
        "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\njitter = \"2h\"\n{}every = \"1h\"\n",
        accounts.split_once("[[account]]\nname = \"b\"").unwrap().0
    );
    assert_eq!(problems(&own), [(10, "account \"a\".jitter".to_owned())]);
}

/// A word outside a closed set is reported on its line, under the entry's own key, with the
/// words allowed, and every other problem in the file with it; a value of the wrong type is
/// TOML's own error.
#[test]
fn closed_sets_name_the_words_they_allow() {
    let shown = |src: &str| -> Vec<String> {
        Config::parse(src, Path::new("t.toml"))
            .unwrap_err()
            .problems
            .iter()
            .map(|p| format!("{}: {}: {}", p.line, p.key, p.message))
            .collect()
    };
    let verify = "[account.verify]\nengine = \"mysql\"\nhost = \"db\"\n";
    for (src, expected) in [
        (
            format!("[daemon]\nlog_format = \"xml\"\n{ONE}"),
            r#"2: daemon.log_format: "xml" is neither "text" nor "json""#,
        ),
        (
            format!("[daemon]\nlog_format = 5\n{ONE}"),
            "2: daemon.log_format: invalid type: integer `5`, expected a string",
        ),
        (
            one("signature = \"v2\"\n", ""),
            r#"3: cloud.signature: "v2" is neither "v1" nor "v3""#,
        ),
        (
            stored("kind = \"mysql\"\n"),
            r#"10: store.kind: "mysql" is neither "file" nor "postgresql""#,
        ),
        (
            one("", "strategy = \"blue-green\"\n"),
            r#"8: account "a".strategy: "blue-green" is neither "single" nor "alternating""#,
        ),
        (
            one("", &verify.replace("mysql", "oracle")),
            r#"9: account "a".verify.engine: "oracle" is neither "mysql" nor "postgresql""#,
        ),
        (
            one(
                "",
                "render = [{ format = \"yaml\", path = \"/run/a.yaml\" }]\n",
            ),
            r#"8: account "a".render[0].format: "yaml" is not one of env, json, raw"#,
        ),
        (
            one("", &format!("{verify}tls = \"yes\"\n")),
            r#"11: account "a".verify.tls: "yes" is not one of "disable", "require", "verify-ca", "verify-full", true or false"#,
        ),
        (
            one("", &format!("{verify}tls = 1\n")),
            r#"11: account "a".verify.tls: 1 is not one of "disable", "require", "verify-ca", "verify-full", true or false"#,
        ),
    ] {
        assert_eq!(shown(&src), [expected], "{src}");
    }
    // Not the first wrong word only: each, with the rest of the file's problems.
    let all = one(
        "signature = \"V3\"\ntimeout = \"0s\"\n",
        "strategy = \"Alternating\"\n",
    );
    let keys: Vec<String> = problems(&all).into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        keys,
        ["cloud.signature", "cloud.timeout", "account \"a\".strategy"]
    );
    // Every word of each set loads.
    let src = format!(
        "[daemon]\nlog_format = \"json\"\n{}",
        one(
            "signature = \"v1\"\n",
            "strategy = \"single\"\nrender = [{ format = \"json\", path = \"/run/a.json\" }]\n",
        )
    );
    let c = Config::parse(&src, Path::new("t.toml")).unwrap();
    assert_eq!(c.daemon.log_format, LogFormat::Json);
    assert_eq!(c.cloud.client.signature, SignatureVersion::V1);
    assert_eq!(c.accounts[0].strategy, Strategy::Single);
    assert_eq!(c.accounts[0].render[0].format, RenderFormat::Json);
}

#[test]
fn cron_typos_are_refused() {
    for cron in ["0 3 * * *", "0 0 25 * * *", "0 0 3 * * Sundy", "every day"] {
        let src = format!(
            "[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\ncron = \"{cron}\"\n[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\n"
        );
        assert_eq!(problems(&src), [(4, "defaults.cron".to_owned())], "{cron}");
    }
}

#[test]
fn duplicates_are_refused() {
    let src = r#"
[cloud]
region_id = "cn-hangzhou"
[[account]]
name = "a"
api = "ModifyAccountPassword"
cluster_id = "pc-1"
account_name = "app"
[[account]]
name = "a"
api = "ResetAccount"
cluster_id = "pc-1"
account_name = "app"
"#;
    let keys: Vec<String> = problems(src).into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, ["account \"a\".name", "account \"a\".account_name"]);
}

#[test]
fn verify_and_alternating() {
    let src = r#"
[cloud]
region_id = "cn-hangzhou"
[[account]]
name = "a"
api = "ModifyAccountPassword"
cluster_id = "pc-1"
account_name = "app"
strategy = "alternating"
clone_account_name = "app_clone"
[account.verify]
engine = "postgresql"
host = "db.internal"
tls = true
[[account]]
name = "b"
api = "ResetAccountPassword"
instance_id = "rm-1"
account_name = "b"
[account.verify]
engine = "mysql"
host = "127.0.0.1"
port = 3307
database = "app"
tls = "disable"
timeout = "5s"
"#;
    let c = Config::parse(src, Path::new("t.toml")).unwrap();
    let (a, b) = (c.account("a").unwrap(), c.account("b").unwrap());
    let va = a.verify.as_ref().unwrap();
    assert_eq!(
        (
            va.engine,
            va.port,
            va.tls,
            va.timeout,
            va.database.as_deref()
        ),
        (
            Engine::Postgresql,
            5432,
            Tls::VerifyFull,
            Duration::from_secs(60),
            None
        )
    );
    let vb = b.verify.as_ref().unwrap();
    assert_eq!(
        (
            vb.engine,
            vb.port,
            vb.tls,
            vb.timeout,
            vb.database.as_deref()
        ),
        (
            Engine::Mysql,
            3307,
            Tls::Disable,
            Duration::from_secs(5),
            Some("app")
        )
    );
    // Alternating starts with account_name, then flips; single always rotates account_name.
    assert_eq!(a.next_username(None), "app");
    assert_eq!(a.next_username(Some("app")), "app_clone");
    assert_eq!(a.next_username(Some("app_clone")), "app");
    assert_eq!(b.strategy, Strategy::Single);
    assert_eq!(b.next_username(Some("b")), "b");

    // A clone that another entry already rotates is refused.
    let taken = format!(
        "{src}[[account]]\nname = \"c\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-1\"\naccount_name = \"app_clone\"\n"
    );
    let keys: Vec<String> = problems(&taken).into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, ["account \"c\".account_name"]);
}

#[test]
fn inline_secret_needs_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[cloud]\nregion_id = \"cn-hangzhou\"\n[cloud.credentials]\naccess_key_id = \"id\"\naccess_key_secret = \"s3cret\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("chmod 600") && !err.contains("s3cret"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).is_ok());
}

/// `ONE` with `cloud.timeout = "5s"` (a lease margin of 6 s), then `[store]` on line 9 and
/// `store` after it.
fn stored(store: &str) -> String {
    format!("{}[store]\n{store}", one("timeout = \"5s\"\n", ""))
}

#[test]
fn the_store_is_the_file_store_unless_postgresql_is_asked_for() {
    let c = Config::parse(ONE, Path::new("t.toml")).unwrap();
    assert_eq!(c.store, StoreConfig::File);
    let c = Config::parse(&stored("kind = \"file\"\n"), Path::new("t.toml")).unwrap();
    assert_eq!(c.store, StoreConfig::File);
    let c = Config::parse(&stored(""), Path::new("t.toml")).unwrap();
    assert_eq!(c.store, StoreConfig::File);

    let src = stored(
        "kind = \"postgresql\"\nurl_file = \"/etc/pwrotd/store-url\"\nkey_file = \"/etc/pwrotd/store.key\"\nlease = \"30s\"\nnode_name = \"host-a.example_1\"\n",
    );
    let c = Config::parse(&src, Path::new("t.toml")).unwrap();
    assert_eq!(
        c.store,
        StoreConfig::Postgresql(ClusterConfig {
            url_file: Some(PathBuf::from("/etc/pwrotd/store-url")),
            key_file: Some(PathBuf::from("/etc/pwrotd/store.key")),
            lease: Duration::from_secs(30),
            node_name: "host-a.example_1".to_owned(),
        })
    );
    // Defaults: no files (the systemd credentials or the environment), 15 s, the host name.
    let c = Config::parse(&stored("kind = \"postgresql\"\n"), Path::new("t.toml")).unwrap();
    let host = validate::host_name().unwrap();
    assert_eq!(
        c.store,
        StoreConfig::Postgresql(ClusterConfig {
            url_file: None,
            key_file: None,
            lease: DEFAULT_LEASE,
            node_name: host,
        })
    );
    // The bounds themselves.
    for lease in ["5s", "10m"] {
        let src = format!(
            "{}[store]\nkind = \"postgresql\"\nlease = \"{lease}\"\n",
            one("timeout = \"1s\"\n", "")
        );
        let c = Config::parse(&src, Path::new("t.toml")).unwrap();
        let StoreConfig::Postgresql(cluster) = c.store else {
            panic!("{lease}")
        };
        assert_eq!(cluster.lease, humantime::parse_duration(lease).unwrap());
    }
    let name = "a".repeat(63);
    let src = stored(&format!("kind = \"postgresql\"\nnode_name = \"{name}\"\n"));
    assert!(Config::parse(&src, Path::new("t.toml")).is_ok());
}

#[test]
fn the_lease_margin_is_the_cloud_timeout_and_a_second() {
    let c = Config::parse(ONE, Path::new("t.toml")).unwrap();
    assert_eq!(c.lease_margin(), Duration::from_secs(11));
    let verify = |timeout: &str| {
        format!("[account.verify]\nengine = \"mysql\"\nhost = \"db\"\ntimeout = \"{timeout}\"\n")
    };
    let two = format!(
        "{}{}[[account]]\nname = \"b\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"s\"\n{}",
        one("timeout = \"3s\"\n", ""),
        verify("20s"),
        verify("45s"),
    );
    let c = Config::parse(&two, Path::new("t.toml")).unwrap();
    assert_eq!(c.lease_margin(), Duration::from_secs(3 + 1));
}

/// Every `[store]` problem is reported on its line under its key, with every other problem of
/// the file.
#[test]
fn store_problems_name_their_line_and_key() {
    // Lines: [store] is 9, its keys from 10.
    let cases: Vec<(String, Vec<(usize, &str)>)> = vec![
        // Cluster keys with the file store, named or by default.
        (
            stored(
                "kind = \"file\"\nurl_file = \"/a\"\nkey_file = \"/b\"\nlease = \"30s\"\nnode_name = \"n\"\n",
            ),
            vec![
                (11, "store.url_file"),
                (12, "store.key_file"),
                (13, "store.lease"),
                (14, "store.node_name"),
            ],
        ),
        (stored("lease = \"30s\"\n"), vec![(10, "store.lease")]),
        // Each key refused on its own line, all at once.
        (
            stored(
                "kind = \"postgresql\"\nurl_file = \"store-url\"\nkey_file = \"\"\nlease = \"2s\"\nnode_name = \"host a\"\n",
            ),
            vec![
                (11, "store.url_file"),
                (12, "store.key_file"),
                (13, "store.lease"),
                (14, "store.node_name"),
            ],
        ),
        (
            stored("kind = \"postgresql\"\nlease = \"11m\"\n"),
            vec![(11, "store.lease")],
        ),
        (
            stored("kind = \"postgresql\"\nlease = \"soon\"\n"),
            vec![(11, "store.lease")],
        ),
        (
            stored("kind = \"postgresql\"\nlease = \"0s\"\n"),
            vec![(11, "store.lease")],
        ),
        (
            stored(&format!(
                "kind = \"postgresql\"\nnode_name = \"{}\"\n",
                "a".repeat(64)
            )),
            vec![(11, "store.node_name")],
        ),
        (
            stored("kind = \"postgresql\"\nnode_name = \"\"\n"),
            vec![(11, "store.node_name")],
        ),
        (
            stored("kind = \"postgresql\"\nnode_name = \"höst\"\n"),
            vec![(11, "store.node_name")],
        ),
        // An unknown kind, and the other keys still checked, without "belongs to postgresql".
        (
            stored("kind = \"mysql\"\nurl_file = \"relative\"\nlease = \"1s\"\n"),
            vec![
                (10, "store.kind"),
                (11, "store.url_file"),
                (12, "store.lease"),
            ],
        ),
        // A lease that does not outlast the margin: on its line, or on the table's.
        (
            stored("kind = \"postgresql\"\nlease = \"6s\"\n"),
            vec![(11, "store.lease")],
        ),
        (
            format!(
                "{}[store]\nkind = \"postgresql\"\n",
                one("timeout = \"20s\"\n", "")
            ),
            vec![(9, "store.lease")],
        ),
        // TOML's own: an unknown key, a wrong type.
        (
            stored("kind = \"postgresql\"\nleader = \"x\"\n"),
            vec![(11, "store.leader")],
        ),
        (
            stored("kind = \"postgresql\"\nlease = 15\n"),
            vec![(11, "store.lease")],
        ),
        // With the problems of other tables.
        (
            format!(
                "{}[store]\nkind = \"postgresql\"\nurl_file = \"x\"\n",
                one(
                    "signature = \"v2\"\ntimeout = \"5s\"\n",
                    "every = \"often\"\n"
                )
            ),
            vec![
                (3, "cloud.signature"),
                (10, "account \"a\".every"),
                (13, "store.url_file"),
            ],
        ),
    ];
    for (src, expected) in cases {
        let expected: Vec<(usize, String)> = expected
            .into_iter()
            .map(|(l, k)| (l, k.to_owned()))
            .collect();
        assert_eq!(problems(&src), expected, "{src}");
    }
}

/// The lease check names the numbers and the fix: the least lease that fits, or, when not even
/// the longest does, the timeouts to shorten.
#[test]
fn a_lease_too_short_for_the_margin_says_what_fits() {
    let shown = |src: &str| -> Vec<String> {
        Config::parse(src, Path::new("t.toml"))
            .unwrap_err()
            .problems
            .iter()
            .map(|p| format!("{}: {}: {}", p.line, p.key, p.message))
            .collect()
    };
    // The default lease, 15 s, with the default cloud.timeout, 10 s: 13.5 s is over 11 s.
    let fits = format!("{ONE}[store]\nkind = \"postgresql\"\n");
    assert!(Config::parse(&fits, Path::new("t.toml")).is_ok());
    // 12 s is not: nine tenths of it (10.8 s) are under the margin.
    let p = shown(&format!(
        "{ONE}[store]\nkind = \"postgresql\"\nlease = \"12s\"\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    for part in [
        "10: store.lease: 12s is too short",
        "less than 11s left",
        "cloud.timeout 10s + 1s",
        "set store.lease to at least 13s",
    ] {
        assert!(p[0].contains(part), "{part:?} not in {p:?}");
    }
    // Verification is no part of the margin: it changes nothing in the database.
    let verified = one("", "[account.verify]\nengine = \"mysql\"\nhost = \"db\"\n");
    let fits = format!("{verified}[store]\nkind = \"postgresql\"\nlease = \"15s\"\n");
    assert!(Config::parse(&fits, Path::new("t.toml")).is_ok());
    // No lease fits a timeout of an hour.
    let long = one("timeout = \"1h\"\n", "");
    let p = shown(&format!(
        "{long}[store]\nkind = \"postgresql\"\nlease = \"10m\"\n"
    ));
    assert!(
        p[0].contains("even the longest lease (10m) is too short"),
        "{p:?}"
    );
}

/// `region_id` per account, `cloud.network`, and the endpoint each account's calls go to.
#[test]
fn regions_networks_and_endpoints() {
    let src = "[cloud]\nregion_id = \"cn-hangzhou\"\nnetwork = \"vpc\"\n\
        [[account]]\nname = \"hz\"\napi = \"ResetAccount\"\ncluster_id = \"pc-1\"\naccount_name = \"root\"\n\
        [[account]]\nname = \"sg\"\napi = \"ResetAccountPassword\"\ninstance_id = \"rm-1\"\naccount_name = \"u\"\nregion_id = \"ap-southeast-1\"\n";
    let c = Config::parse(src, Path::new("t.toml")).unwrap();
    let (hz, sg) = (c.account("hz").unwrap(), c.account("sg").unwrap());
    assert_eq!(hz.region_id, "cn-hangzhou");
    assert_eq!(sg.region_id, "ap-southeast-1");
    assert_eq!(
        c.endpoint(hz).unwrap().as_str(),
        "https://polardb-vpc.cn-hangzhou.aliyuncs.com/"
    );
    assert_eq!(
        c.endpoint(sg).unwrap().as_str(),
        "https://rds-vpc.ap-southeast-1.aliyuncs.com/"
    );
    // An unknown region is fine with an explicit endpoint for the service it calls.
    let explicit = "[cloud]\nregion_id = \"mars-north-1\"\n[cloud.endpoints]\npolardb = \"https://polardb.example.com\"\n\
        [[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc-1\"\naccount_name = \"root\"\n";
    assert!(Config::parse(explicit, Path::new("t.toml")).is_ok());
    // ...but not for the other service.
    let rds = explicit.replace("[[account]]", "[[account]]\nregion_id = \"mars-south-2\"");
    assert!(Config::parse(&rds, Path::new("t.toml")).is_ok());
    let rds = format!(
        "{explicit}[[account]]\nname = \"b\"\napi = \"ResetAccountPassword\"\ninstance_id = \"rm-1\"\naccount_name = \"u\"\n"
    );
    assert_eq!(problems(&rds), [(2, "cloud.region_id".to_owned())]);
    // Each problem on its line and key, all at once.
    let bad = "[cloud]\nregion_id = \"Hangzhou 1\"\nnetwork = \"intranet\"\n\
        [[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc-1\"\naccount_name = \"root\"\nregion_id = \"eu-nowhere-9\"\n";
    assert_eq!(
        problems(bad),
        [
            (2, "cloud.region_id".to_owned()),
            (3, "cloud.network".to_owned()),
            (9, "account \"a\".region_id".to_owned()),
        ]
    );
}

/// A config whose `[cloud]` ends the file, so a test can append to it.
fn with_cloud(extra: &str) -> String {
    format!(
        "[[account]]\nname = \"a\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-1\"\naccount_name = \"app\"\n\n[cloud]\nregion_id = \"cn-hangzhou\"\n{extra}"
    )
}

#[test]
fn credential_sources_parse() {
    let c = Config::parse(
        &with_cloud(
            "sts_endpoint = \"http://127.0.0.1:9000\"\n[cloud.credentials]\nsource = \"ecs_ram_role\"\nrole_name = \"pwrotd-ecs\"\nmetadata_endpoint = \"http://127.0.0.1:9001\"\nimdsv1_fallback = true\nassume_role = { role_arn = \"acs:ram::2222222222222222:role/pwrotd\", session_name = \"rot\", external_id = \"abcd1234\", duration = \"2h\" }\n",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    let cr = &c.cloud.credentials;
    assert_eq!(cr.source, crate::cloud::SourceKind::EcsRamRole);
    assert_eq!(cr.role_name.as_deref(), Some("pwrotd-ecs"));
    assert!(cr.imdsv1_fallback);
    assert_eq!(
        cr.sts_endpoint.as_ref().unwrap().as_str(),
        "http://127.0.0.1:9000/"
    );
    let assume = cr.assume_role.as_ref().unwrap();
    assert_eq!(assume.duration, Duration::from_secs(7200));
    assert_eq!(assume.external_id.as_deref(), Some("abcd1234"));
    for source in [
        "source = \"oidc\"\nrole_arn = \"acs:ram::1234567890123456:role/r\"\noidc_provider_arn = \"acs:ram::1234567890123456:oidc-provider/ack\"\noidc_token_file = \"/var/run/token\"\nrole_session_name = \"pwrotd\"\n",
        "source = \"cli_profile\"\nprofile = \"prod\"\nfile = \"/etc/pwrotd/aliyun.json\"\n",
        "source = \"uri\"\nuri = \"http://127.0.0.1:9/creds?name=app\"\n",
        "source = \"static\"\naccess_key_id_file = \"/x\"\naccess_key_secret_file = \"/y\"\n",
        "source = \"chain\"\nimdsv1_fallback = false\n",
        "access_key_id_file = \"/x\"\naccess_key_secret_file = \"/y\"\n",
    ] {
        let text = with_cloud(&format!("[cloud.credentials]\n{source}"));
        assert!(
            Config::parse(&text, Path::new("t.toml")).is_ok(),
            "{source}"
        );
    }
}

#[test]
fn credential_problems_name_line_and_key() {
    // The credentials table starts on line 9 of with_cloud's text.
    let cases: &[(&str, usize, &str)] = &[
        ("source = \"kerberos\"\n", 10, "cloud.credentials.source"),
        (
            "source = \"ecs_ram_role\"\nmetadata_endpoint = \"http://10.0.0.1\"\n",
            11,
            "cloud.credentials.metadata_endpoint",
        ),
        (
            "source = \"ecs_ram_role\"\nmetadata_endpoint = \"http://100.100.100.200/x\"\n",
            11,
            "cloud.credentials.metadata_endpoint",
        ),
        (
            "source = \"uri\"\nuri = \"http://creds.example/x\"\n",
            11,
            "cloud.credentials.uri",
        ),
        (
            "source = \"oidc\"\nrole_arn = \"arn:aws:iam::1:role/x\"\n",
            11,
            "cloud.credentials.role_arn",
        ),
        (
            "source = \"oidc\"\noidc_provider_arn = \"acs:ram::1:role/x\"\n",
            11,
            "cloud.credentials.oidc_provider_arn",
        ),
        (
            "source = \"oidc\"\noidc_token_file = \"token\"\n",
            11,
            "cloud.credentials.oidc_token_file",
        ),
        (
            "source = \"oidc\"\nrole_session_name = \"a b\"\n",
            11,
            "cloud.credentials.role_session_name",
        ),
        (
            "source = \"uri\"\nrole_name = \"r\"\n",
            11,
            "cloud.credentials.role_name",
        ),
        (
            "source = \"ecs_ram_role\"\nprofile = \"p\"\n",
            11,
            "cloud.credentials.profile",
        ),
        ("source = \"static\"\n", 10, "cloud.credentials.source"),
        (
            "source = \"oidc\"\naccess_key_id = \"LTAI\"\naccess_key_secret_file = \"/y\"\n",
            10,
            "cloud.credentials.source",
        ),
        (
            "assume_role = { role_arn = \"acs:ram::2:role/x\", duration = \"10m\" }\n",
            10,
            "cloud.credentials.assume_role.duration",
        ),
        (
            "assume_role = { role_arn = \"acs:ram::2:role/x\", duration = \"13h\" }\n",
            10,
            "cloud.credentials.assume_role.duration",
        ),
        (
            "assume_role = { role_arn = \"role/x\" }\n",
            10,
            "cloud.credentials.assume_role.role_arn",
        ),
        (
            "assume_role = { session_name = \"x\" }\n",
            10,
            "cloud.credentials.assume_role.role_arn",
        ),
        (
            "assume_role = { role_arn = \"acs:ram::2:role/x\", external_id = \"a\" }\n",
            10,
            "cloud.credentials.assume_role.external_id",
        ),
        (
            "assume_role = { role_arn = \"acs:ram::2:role/x\", session_name = \"a b\" }\n",
            10,
            "cloud.credentials.assume_role.session_name",
        ),
        (
            "imdsv1_fallback = \"yes\"\n",
            10,
            "cloud.credentials.imdsv1_fallback",
        ),
    ];
    for (body, line, key) in cases {
        let text = with_cloud(&format!("[cloud.credentials]\n{body}"));
        let found = problems(&text);
        assert!(
            found.contains(&(*line, key.to_string())),
            "{body}: {found:?}"
        );
    }
    let sts = problems(&with_cloud("sts_endpoint = \"http://sts.aliyuncs.com\"\n"));
    assert_eq!(sts, vec![(9, "cloud.sts_endpoint".to_owned())]);
}

/// Two profiles on top of `[cloud]`: one in another region and cloud account through a role,
/// one that only changes the network. What a profile leaves out is `[cloud]`'s.
const PROFILES: &str = r#"[cloud]
region_id = "cn-hangzhou"
timeout = "7s"
max_attempts = 3
requests_per_second = 4
sts_endpoint = "http://127.0.0.1:9000"
[cloud.endpoints]
polardb = "http://127.0.0.1:18080"
[cloud.credentials]
source = "static"
access_key_id_file = "/etc/pwrotd/id"
access_key_secret_file = "/etc/pwrotd/secret"

[cloud.profiles.sg-prod]
region_id = "ap-southeast-1"
timeout = "20s"
[cloud.profiles.sg-prod.endpoints]
rds = "http://127.0.0.1:18081"
[cloud.profiles.sg-prod.credentials]
source = "ecs_ram_role"
assume_role = { role_arn = "acs:ram::2222222222222222:role/pwrotd" }

[cloud.profiles.hz-vpc]
network = "vpc"

[[account]]
name = "hz"
api = "ResetAccount"
cluster_id = "pc-1"
account_name = "root"

[[account]]
name = "sg"
profile = "sg-prod"
api = "ResetAccountPassword"
instance_id = "rm-1"
account_name = "u"

[[account]]
name = "sg-polardb-in-jakarta"
profile = "sg-prod"
region_id = "ap-southeast-5"
api = "ModifyAccountPassword"
cluster_id = "pc-2"
account_name = "app"

[[account]]
name = "vpc"
profile = "hz-vpc"
api = "ResetAccountPassword"
instance_id = "rm-2"
account_name = "u"
"#;

#[test]
fn profiles_take_what_they_leave_out_from_cloud() {
    let c = Config::parse(PROFILES, Path::new("t.toml")).unwrap();
    let (hz, sg, jk, vpc) = (
        c.account("hz").unwrap(),
        c.account("sg").unwrap(),
        c.account("sg-polardb-in-jakarta").unwrap(),
        c.account("vpc").unwrap(),
    );
    assert_eq!(
        (hz.profile.as_str(), hz.region_id.as_str()),
        (DEFAULT_PROFILE, "cn-hangzhou")
    );
    assert_eq!(
        (sg.profile.as_str(), sg.region_id.as_str()),
        ("sg-prod", "ap-southeast-1")
    );
    assert_eq!(
        (jk.profile.as_str(), jk.region_id.as_str()),
        ("sg-prod", "ap-southeast-5")
    );
    assert_eq!(
        (vpc.profile.as_str(), vpc.region_id.as_str()),
        ("hz-vpc", "cn-hangzhou")
    );

    let sg_prod = &c.profiles["sg-prod"];
    assert_eq!(sg_prod.client.timeout, Duration::from_secs(20));
    assert_eq!(sg_prod.client.max_attempts, 3);
    assert!((sg_prod.client.requests_per_second - 4.0).abs() < f64::EPSILON);
    // Its own credentials, whole: nothing of [cloud.credentials] in them...
    assert_eq!(
        sg_prod.credentials.source,
        crate::cloud::SourceKind::EcsRamRole
    );
    assert!(sg_prod.credentials.access_key_id_file.is_none());
    assert!(sg_prod.credentials.assume_role.is_some());
    // ...but [cloud]'s sts_endpoint, a key of [cloud].
    assert_eq!(
        sg_prod
            .credentials
            .sts_endpoint
            .as_ref()
            .map(url::Url::as_str),
        Some("http://127.0.0.1:9000/")
    );
    // Its endpoints are its own: [cloud]'s explicit PolarDB endpoint does not follow it to
    // another region; the defaults for the region do.
    assert_eq!(c.endpoint(sg).unwrap().as_str(), "http://127.0.0.1:18081/");
    assert_eq!(
        c.endpoint(jk).unwrap().as_str(),
        "https://polardb.ap-southeast-5.aliyuncs.com/"
    );
    assert_eq!(c.endpoint(hz).unwrap().as_str(), "http://127.0.0.1:18080/");
    // A profile with no credentials table signs with [cloud]'s.
    let hz_vpc = &c.profiles["hz-vpc"];
    assert_eq!(hz_vpc.credentials.source, crate::cloud::SourceKind::Static);
    assert_eq!(
        c.endpoint(vpc).unwrap().as_str(),
        "https://rds-vpc.cn-hangzhou.aliyuncs.com/"
    );
    assert_eq!(c.cloud.client.timeout, Duration::from_secs(7));
    // The lease margin covers the slowest profile's attempt.
    assert_eq!(c.lease_margin(), Duration::from_secs(21));
    let used: Vec<&str> = c.profiles_in_use().into_iter().map(|(n, _)| n).collect();
    assert_eq!(used, ["default", "hz-vpc", "sg-prod"]);
    // "default" names [cloud] too.
    let named = PROFILES.replace("name = \"hz\"\n", "name = \"hz\"\nprofile = \"default\"\n");
    let c = Config::parse(&named, Path::new("t.toml")).unwrap();
    assert_eq!(c.account("hz").unwrap().profile, DEFAULT_PROFILE);
}

#[test]
fn profile_problems_name_line_and_key() {
    // An account naming a profile the file does not have.
    let unknown = PROFILES.replace("profile = \"hz-vpc\"", "profile = \"hz-vcp\"");
    let err = Config::parse(&unknown, Path::new("t.toml")).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    let p = &err.problems[0];
    assert_eq!((p.line, p.key.as_str()), (49, "account \"vpc\".profile"));
    assert!(
        p.message.contains("no profile \"hz-vcp\"") && p.message.contains("hz-vpc, sg-prod"),
        "{}",
        p.message
    );
    let none = "[cloud]\nregion_id = \"cn-hangzhou\"\n[[account]]\nname = \"a\"\napi = \"ResetAccount\"\ncluster_id = \"pc\"\naccount_name = \"r\"\nprofile = \"x\"\n";
    let err = Config::parse(none, Path::new("t.toml")).unwrap_err();
    assert!(
        err.problems[0].message.contains("has no [cloud.profiles]"),
        "{err}"
    );
    // Each key of a profile is checked as [cloud]'s is, and named under the profile.
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "timeout = \"20s\"",
            "timeout = \"forever\"",
            16,
            "cloud.profiles.sg-prod.timeout",
        ),
        (
            "region_id = \"ap-southeast-1\"",
            "region_id = \"Singapore\"",
            15,
            "cloud.profiles.sg-prod.region_id",
        ),
        (
            "network = \"vpc\"",
            "network = \"intranet\"",
            24,
            "cloud.profiles.hz-vpc.network",
        ),
        (
            "rds = \"http://127.0.0.1:18081\"",
            "rds = \"http://10.0.0.1:80\"",
            18,
            "cloud.profiles.sg-prod.endpoints.rds",
        ),
        (
            "assume_role = { role_arn = \"acs:ram::2222222222222222:role/pwrotd\" }",
            "assume_role = { role_arn = \"acs:ram::2222222222222222:role/pwrotd\", duration = \"1m\" }",
            21,
            "cloud.profiles.sg-prod.credentials.assume_role.duration",
        ),
        (
            "source = \"ecs_ram_role\"",
            "source = \"ecs_ram_role\"\nuri = \"http://127.0.0.1:1/\"",
            21,
            "cloud.profiles.sg-prod.credentials.uri",
        ),
        (
            "[cloud.profiles.hz-vpc]",
            "[cloud.profiles.default]",
            23,
            "cloud.profiles.default",
        ),
        (
            "[cloud.profiles.hz-vpc]",
            "[cloud.profiles.\"hz vpc\"]",
            23,
            "cloud.profiles.hz vpc",
        ),
        (
            "network = \"vpc\"",
            "network = \"vpc\"\n[cloud.profiles.hz-vpc.profiles.x]",
            23,
            "cloud.profiles.hz-vpc.profiles",
        ),
        (
            "network = \"vpc\"",
            "network = \"vpc\"\nregoin_id = \"x\"",
            25,
            "cloud.profiles.hz-vpc.regoin_id",
        ),
        (
            "timeout = \"20s\"",
            "timeout = 20",
            16,
            "cloud.profiles.sg-prod.timeout",
        ),
    ];
    for (from, to, line, key) in cases {
        assert!(PROFILES.contains(from), "{from}");
        let text = PROFILES.replacen(from, to, 1);
        let found = problems(&text);
        assert!(found.contains(&(*line, key.to_string())), "{to}: {found:?}");
    }
    // A profile's region with no endpoint for a service its accounts call there: said on the
    // profile's region_id, once.
    let nowhere = PROFILES
        .replace(
            "region_id = \"ap-southeast-1\"",
            "region_id = \"mars-north-1\"",
        )
        .replace("rds = \"http://127.0.0.1:18081\"\n", "");
    assert_eq!(
        problems(&nowhere),
        [(15, "cloud.profiles.sg-prod.region_id".to_owned())]
    );
    // A profile that inherits [cloud]'s region is checked there, and reported on cloud.region_id.
    let inherited = PROFILES
        .replacen(
            "region_id = \"cn-hangzhou\"",
            "region_id = \"mars-north-1\"",
            1,
        )
        .replacen(
            "name = \"hz\"\n",
            "name = \"hz\"\nregion_id = \"cn-hangzhou\"\n",
            1,
        );
    assert_eq!(problems(&inherited), [(2, "cloud.region_id".to_owned())]);
}

#[test]
fn an_inline_secret_in_a_profile_needs_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = PROFILES.replace(
        "source = \"ecs_ram_role\"\n",
        "source = \"static\"\naccess_key_id = \"LTAI5t\"\naccess_key_secret = \"s3cr3t-value\"\n",
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("cloud.profiles.sg-prod.credentials"), "{err}");
    assert!(!err.contains("s3cr3t-value"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).is_ok());
}
