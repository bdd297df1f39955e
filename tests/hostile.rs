//! What a hostile review of the rotation, scheduler and sink code found, each kept as a test
//! of the fixed behaviour: requests lost to a reload, two tasks on one name, a pending password
//! left for a whole period, a writer outside its account's users, ClientToken collisions, a
//! password prefix in an error, render files stranded by a failed promotion, stale files
//! after renames, a render path into the state directory, and a login that checks nothing.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pwrotd::cloud::{Api, Service, SetPassword};
use pwrotd::config::{Account, Config};
use pwrotd::metrics::Metrics;
use pwrotd::password::Password;
use pwrotd::rotation::{Outcome, Report, Rotator};
use pwrotd::scheduler::{
    Clock, Command, Initial, Job, Rotate, Scheduler, pending_retry_delay, retry_delay,
};
use pwrotd::sim::{Fault, Sim, SimServer};
use pwrotd::sink::Sink;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::common::{self, KEY_ID, SECRET};
use crate::daemon::Env;

const DAY: Duration = Duration::from_secs(86_400);

// ---------------------------------------------------------------------------------------------
// A stand-in rotator for the scheduler.

/// A task the fake ran: name, job, start, and its users as `resource/user`.
type Run = (String, Job, SystemTime, Vec<String>);

struct Fake {
    clock: Clock,
    hold: Duration,
    initials: Mutex<HashMap<String, Initial>>,
    runs: Mutex<Vec<Run>>,
    /// Tasks running now per account name, and the most ever at once.
    per_name: Mutex<HashMap<String, (usize, usize)>>,
}

impl Fake {
    fn new(clock: Clock, hold: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            clock,
            hold,
            initials: Mutex::default(),
            runs: Mutex::default(),
            per_name: Mutex::default(),
        })
    }
    fn rotations(&self, name: &str) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.0 == name && r.1 == Job::Rotate)
            .count()
    }
}

impl Rotate for Fake {
    fn initial(&self, account: &Account, _renamed_from: Option<&str>) -> Initial {
        self.initials
            .lock()
            .unwrap()
            .get(&account.name)
            .copied()
            // By default: rotated just now, so next due a whole period away.
            .unwrap_or(Initial {
                last_success: Some(self.clock.now()),
                pending: false,
            })
    }

    fn run(
        self: Arc<Self>,
        account: Arc<Account>,
        job: Job,
    ) -> Pin<Box<dyn Future<Output = Report> + Send>> {
        Box::pin(async move {
            let users = account
                .users()
                .into_iter()
                .map(|u| format!("{}/{}", u.resource_id, u.username))
                .collect();
            self.runs
                .lock()
                .unwrap()
                .push((account.name.clone(), job, self.clock.now(), users));
            {
                let mut m = self.per_name.lock().unwrap();
                let e = m.entry(account.name.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
            }
            tokio::time::sleep(self.hold).await;
            self.per_name
                .lock()
                .unwrap()
                .get_mut(&account.name)
                .unwrap()
                .0 -= 1;
            Report {
                outcome: Outcome::Success,
                version: Some(1),
                last_success: Some(self.clock.now()),
                ..Report::new(&account.name, job)
            }
        })
    }
}

fn accounts(body: &str) -> Vec<Arc<Account>> {
    let src = format!("[cloud]\nregion_id = \"cn-hangzhou\"\n[defaults]\njitter = \"0s\"\n{body}");
    Config::parse(&src, Path::new("t.toml")).unwrap().accounts
}

fn account(name: &str, cluster: &str, every: &str) -> String {
    format!(
        "[[account]]\nname = \"{name}\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"{cluster}\"\naccount_name = \"u\"\nevery = \"{every}\"\n"
    )
}

fn start(
    scheduler: Scheduler,
) -> (
    mpsc::Sender<Command>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(rx, stop.clone(), Duration::from_secs(5)));
    (tx, stop, task)
}

/// A `pwrotd rotate --account b` queued behind `max_concurrent` survives a reload that changes
/// b's schedule: it runs when a slot frees, and the CLI gets its answer.
#[tokio::test(start_paused = true)]
async fn a_requested_rotation_survives_a_reload_that_reschedules_it() {
    let clock = Clock::tokio_at(humantime::parse_rfc3339("2026-11-23T00:00:00Z").unwrap());
    let fake = Fake::new(clock, Duration::from_secs(3600));
    fake.initials.lock().unwrap().insert(
        "busy".into(),
        Initial {
            last_success: None,
            pending: true,
        },
    );
    let v1 = accounts(&format!(
        "{}{}",
        account("busy", "pc-1", "30d"),
        account("b", "pc-2", "30d")
    ));
    let scheduler = Scheduler::new(v1, fake.clone(), clock, 1);
    let (tx, stop, task) = start(scheduler);
    tokio::time::sleep(Duration::from_secs(1)).await; // "busy" holds the only slot for 1 h

    let (reply, mut answer) = oneshot::channel();
    tx.send(Command::RotateNow {
        accounts: Some(vec!["b".into()]),
        reply: Some(reply),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A reload that only changes b's schedule (30d -> 29d).
    let v2 = accounts(&format!(
        "{}{}",
        account("busy", "pc-1", "30d"),
        account("b", "pc-2", "29d")
    ));
    tx.send(Command::Reload {
        accounts: v2,
        rotate: fake.clone(),
    })
    .await
    .unwrap();

    // Once "busy" frees the only slot (an hour), b rotates and the CLI gets its answer.
    tokio::time::sleep(2 * 3600 * Duration::from_secs(1)).await;
    assert_eq!(fake.rotations("b"), 1, "the requested rotation never ran");
    assert_eq!(
        answer.try_recv().map(|r| r.len()),
        Ok(1),
        "the CLI got no answer"
    );
    stop.cancel();
    task.await.unwrap();
}

/// `rotate --all` against a daemon with no accounts, or a request naming no account, is
/// answered at once.
#[tokio::test(start_paused = true)]
async fn a_request_for_no_account_is_answered_at_once() {
    let clock = Clock::tokio_at(humantime::parse_rfc3339("2026-11-23T00:00:00Z").unwrap());
    let fake = Fake::new(clock, Duration::ZERO);
    let scheduler = Scheduler::new(Vec::new(), fake.clone(), clock, 4);
    let (tx, stop, task) = start(scheduler);
    let (reply, mut all) = oneshot::channel();
    tx.send(Command::RotateNow {
        accounts: None,
        reply: Some(reply),
    })
    .await
    .unwrap();
    let (reply, mut none) = oneshot::channel();
    tx.send(Command::RotateNow {
        accounts: Some(vec![]),
        reply: Some(reply),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(all.try_recv().map(|r| r.len()), Ok(0));
    assert_eq!(none.try_recv().map(|r| r.len()), Ok(0));
    stop.cancel();
    task.await.unwrap();
}

/// Reload 1 removes x while its rotation runs; reload 2 re-adds the name x for another
/// cluster. The new x waits for the old task: never two tasks on secrets/x.json.
#[tokio::test(start_paused = true)]
async fn a_name_removed_and_added_again_waits_for_its_old_task() {
    let clock = Clock::tokio_at(humantime::parse_rfc3339("2026-11-23T00:00:00Z").unwrap());
    let fake = Fake::new(clock, Duration::from_secs(600));
    fake.initials.lock().unwrap().insert(
        "x".into(),
        Initial {
            last_success: None,
            pending: false,
        },
    );
    let scheduler = Scheduler::new(
        accounts(&account("x", "pc-old", "30d")),
        fake.clone(),
        clock,
        4,
    );
    let (tx, stop, task) = start(scheduler);
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(Command::Reload {
        accounts: Vec::new(),
        rotate: fake.clone(),
    })
    .await
    .unwrap();
    tx.send(Command::Reload {
        accounts: accounts(&account("x", "pc-new", "30d")),
        rotate: fake.clone(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(1200)).await;
    let most = fake.per_name.lock().unwrap()["x"].1;
    assert_eq!(most, 1, "two tasks wrote secrets/x.json at the same time");
    let runs = fake.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[1].3,
        ["pc-new/u"],
        "the new x ran after the old one: {runs:?}"
    );
    stop.cancel();
    task.await.unwrap();
}

/// A pending password that may be live is retried with doubling up to an hour, not up to
/// `every` as a definite failure is.
#[test]
fn a_pending_password_is_retried_at_least_hourly() {
    let a = &accounts(
        "[[account]]\nname = \"a\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc\"\naccount_name = \"u\"\nevery = \"30d\"\nretry_after_failure = \"5m\"\n",
    )[0];
    let now = SystemTime::now();
    let waits: Vec<u64> = (1..=15)
        .map(|n| pending_retry_delay(a, n, now).as_secs() / 60)
        .collect();
    assert_eq!(&waits[..6], &[5, 10, 20, 40, 60, 60], "minutes");
    assert_eq!(waits[14], 60);
    // A definite failure still backs off to the period.
    assert_eq!(retry_delay(a, 15, now), 30 * DAY);
}

// ---------------------------------------------------------------------------------------------
// Against the simulator.

fn state_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    dir
}

fn rotator(server: &SimServer, state: &Path, config: &Config) -> Rotator {
    Rotator::new(
        Arc::new(pwrotd::cloud::Clients::default().with(
            pwrotd::config::DEFAULT_PROFILE,
            common::client(server, pwrotd::cloud::SignatureVersion::V1),
        )),
        Arc::new(Sink::open(state).unwrap()),
        Metrics::new(),
        &config.accounts,
    )
}

fn parse(body: &str) -> Config {
    Config::parse(
        &format!("[cloud]\nregion_id = \"cn-hangzhou\"\n{body}"),
        Path::new("r.toml"),
    )
    .unwrap()
}

/// alternating -> single while a pending password for the clone is in the sink, and the clone
/// given its own account: the old account's file is refused (its pending password belongs to
/// a user it no longer rotates), so the clone has one writer.
#[tokio::test]
async fn a_pending_password_of_a_user_no_longer_rotated_is_refused() {
    let alt = parse(
        "[[account]]\nname = \"a\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-r1\"\naccount_name = \"app\"\nstrategy = \"alternating\"\nclone_account_name = \"app_clone\"\nkeep_versions = 2\n",
    );
    let sim = Sim::new(KEY_ID, SECRET);
    sim.register_config(&alt);
    let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let state = state_dir();
    let r1 = rotator(&server, state.path(), &alt);
    assert_eq!(r1.rotate(&alt.accounts[0]).await.outcome, Outcome::Success);
    server.sim.script_faults([Fault::DropAfterApply]);
    let report = r1.rotate(&alt.accounts[0]).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:?}");
    let p2 = r1
        .sink
        .load(&alt.accounts[0])
        .unwrap()
        .unwrap()
        .pending
        .unwrap();
    assert_eq!(p2.username, "app_clone");

    // The operator goes to one user per account, and gives the clone its own entry.
    let single = parse(
        "[[account]]\nname = \"a\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-r1\"\naccount_name = \"app\"\n\
         [[account]]\nname = \"c\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-r1\"\naccount_name = \"app_clone\"\n",
    );
    let (a, c) = (&single.accounts[0], &single.accounts[1]);
    println!(
        "a.users() = {:?}; c.users() = {:?}",
        a.users().iter().map(|u| &u.username).collect::<Vec<_>>(),
        c.users().iter().map(|u| &u.username).collect::<Vec<_>>()
    );
    let r2 = rotator(&server, state.path(), &single);
    let (ra, rc) = tokio::join!(r2.rotate(a), r2.rotate(c));
    // `a` holds a pending password for app_clone, which it no longer rotates: refused, no call.
    assert_eq!(
        (ra.outcome, ra.error_code.as_deref()),
        (Outcome::Failure, Some("SinkMismatch")),
        "{ra:?}"
    );
    assert!(ra.message.contains("no longer rotates"), "{ra:?}");
    let fc = r2.sink.load(c).unwrap().unwrap();
    let live = server
        .sim
        .account(Service::PolarDb, "pc-r1", "app_clone")
        .unwrap()
        .password
        .unwrap();
    assert_eq!(rc.outcome, Outcome::Success, "{rc:?}");
    assert_eq!(fc.current.unwrap().password.expose(), live.expose());
}

/// Two pwrotd deployments (say, two regions) on one cloud account, each with an account named
/// "app1", rotate version 1 in the same second: their ClientTokens differ (random), so both
/// succeed.
#[tokio::test]
async fn client_tokens_never_collide_across_deployments() {
    let zonal = |cluster: &str| {
        parse(&format!(
            "[[account]]\nname = \"app1\"\napi = \"ModifyAccountPasswordZonal\"\ncluster_id = \"{cluster}\"\naccount_name = \"app\"\n"
        ))
    };
    let (east, west) = (zonal("pc-east"), zonal("pc-west"));
    for _ in 0..5 {
        let sim = Sim::new(KEY_ID, SECRET);
        sim.register_config(&east);
        sim.register_config(&west);
        let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let (s1, s2) = (state_dir(), state_dir());
        let (r1, r2) = (
            rotator(&server, s1.path(), &east),
            rotator(&server, s2.path(), &west),
        );
        let first = r1.rotate(&east.accounts[0]).await;
        let second = r2.rotate(&west.accounts[0]).await;
        let t1 = r1.sink.load(&east.accounts[0]).unwrap().unwrap();
        let t2 = r2.sink.load(&west.accounts[0]).unwrap().unwrap();
        if t1.current.as_ref().map(|c| &c.created_time)
            != t2.current.as_ref().map(|p| &p.created_time)
        {
            continue; // crossed a second boundary; try again
        }
        assert_eq!(first.outcome, Outcome::Success, "{first:?}");
        assert_eq!(second.outcome, Outcome::Success, "{second:?}");
        return;
    }
    panic!("never hit the same second");
}

/// A reply that is not JSON and quotes the request, with the password straddling the point
/// where the error text is cut: the body is scrubbed whole before it is cut, so not even a
/// prefix of the password reaches the error text (logs, the CLI, the control socket).
#[tokio::test]
async fn a_cut_reply_never_shows_a_password_prefix() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(h) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if got.len() >= h + 4 + len {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        let value = text
            .split('&')
            .find_map(|kv| kv.strip_prefix("NewAccountPassword="))
            .unwrap()
            .to_owned();
        // A gateway error page quoting the parameter it choked on.
        let mut page =
            "<html><body>Request blocked by WAF. Offending parameter: NewAccountPassword="
                .to_owned();
        while page.len() < 104 {
            page.insert(6, ' ');
        }
        page.push_str(&value);
        page.push_str("</body></html>");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
    });
    let url = reqwest::Url::parse(&format!("http://{addr}")).unwrap();
    let client = common::client_with(
        common::client_config(url, pwrotd::cloud::SignatureVersion::V1),
        pwrotd::cloud::Credentials::new(KEY_ID, SECRET),
    );
    let password = Password::new("AAAAbbbbCCCCdddd1111!!!!".into());
    let op = SetPassword::new(
        Api::ModifyAccountPassword,
        "pc-1",
        "app",
        password.clone(),
        "",
        None,
    );
    let error = client.call(&op).await.unwrap_err();
    let text = error.to_string();
    assert!(
        !text.contains(password.expose()),
        "the whole password is scrubbed"
    );
    assert!(
        !text.contains("AAAAbbbb"),
        "a prefix of the password: {text}"
    );
    assert!(
        text.contains("NewAccountPassword="),
        "the cut is where it was: {text}"
    );
}

fn add_render(env: &Env, account_name_line: &str, render: &Path) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text.replace(
        account_name_line,
        &format!(
            "{account_name_line}\nrender = [{{ format = \"raw\", path = \"{}\" }}]",
            render.display()
        ),
    );
    std::fs::write(&env.config, text).unwrap();
}

/// Disk full at promotion (single user): the API confirmed the new password, the database
/// has it, and the render file gets it at once, though the sink keeps it pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_promotion_still_renders_the_confirmed_password() {
    let env = Env::new("v1").await;
    let render = env.dir.path().join("billing.pw");
    add_render(&env, "account_name = \"billing\"", &render);
    assert!(
        env.pwrotd(&["rotate", "--account", "billing"])
            .await
            .status
            .success()
    );
    let old = std::fs::read_to_string(&render).unwrap();
    let output = env
        .command(&["rotate", "--account", "billing"])
        .env("PWROTD_FAILPOINT", "write:2=enospc")
        .output()
        .await
        .unwrap();
    let live = env.live(Service::Rds, "rm-test0001", "billing").unwrap();
    let sink = env.sink("billing").unwrap();
    let rendered = std::fs::read_to_string(&render).unwrap();
    assert_eq!(
        sink["pending"]["password"].as_str(),
        Some(live.as_str()),
        "{output:?}"
    );
    assert_ne!(rendered, old, "{output:?}");
    assert_eq!(
        rendered, live,
        "applications hold a password the database no longer takes"
    );
}

/// `pwrotd rotate` in-process takes over a renamed account's file, so no stale file stays
/// behind; if the rename is reverted, the daemon takes the file back, with the live password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_and_its_revert_keep_the_live_password() {
    let env = Env::new("v1").await;
    let render = env.dir.path().join("billing.pw");
    add_render(&env, "account_name = \"billing\"", &render);
    let original = std::fs::read_to_string(&env.config).unwrap();
    assert!(
        env.pwrotd(&["rotate", "--account", "billing"])
            .await
            .status
            .success()
    );
    let p1 = std::fs::read_to_string(&render).unwrap();

    // Rename billing -> billing2 and rotate it with no daemon running.
    let renamed = original.replace("\nname = \"billing\"", "\nname = \"billing2\"");
    std::fs::write(&env.config, &renamed).unwrap();
    let out = env.pwrotd(&["rotate", "--account", "billing2"]).await;
    assert!(out.status.success(), "{out:?}");
    let live = env.live(Service::Rds, "rm-test0001", "billing").unwrap();
    assert_eq!(std::fs::read_to_string(&render).unwrap(), live);
    assert!(env.sink("billing").is_none(), "the old file stayed behind");
    assert_eq!(
        env.version("billing2"),
        Some(2),
        "billing2 continued billing's versions"
    );

    // The rename is reverted; the daemon starts.
    std::fs::write(
        &env.config,
        original.replace("every = \"1h\"", "every = \"30d\""),
    )
    .unwrap();
    let mut daemon = env.start_daemon();
    env.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rendered = std::fs::read_to_string(&render).unwrap();
    crate::daemon::signal(&daemon, "TERM");
    let _ = daemon.wait().await;
    assert_ne!(
        rendered, p1,
        "the daemon re-rendered the stale password at start"
    );
    assert_eq!(rendered, live);
    let sink = env.sink("billing").expect("billing took its file back");
    assert_eq!(sink["current"]["password"].as_str(), Some(live.as_str()));
    assert!(env.sink("billing2").is_none());
}

/// Two renames (billing -> B under the CLI, B -> billing3 under the daemon): billing3 takes
/// over B's file, which holds the live password, whatever the order of the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renames_end_with_the_live_password() {
    for second in ["billing2", "b2", "new-billing", "zeta", "acct7", "a"] {
        let env = Env::new("v1").await;
        let render = env.dir.path().join("billing.pw");
        add_render(&env, "account_name = \"billing\"", &render);
        let original = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("every = \"1h\"", "every = \"30d\"");
        std::fs::write(&env.config, &original).unwrap();
        assert!(
            env.pwrotd(&["rotate", "--account", "billing"])
                .await
                .status
                .success()
        );
        let p1 = std::fs::read_to_string(&render).unwrap();
        let renamed =
            |to: &str| original.replace("\nname = \"billing\"", &format!("\nname = \"{to}\""));
        std::fs::write(&env.config, renamed(second)).unwrap();
        assert!(
            env.pwrotd(&["rotate", "--account", second])
                .await
                .status
                .success()
        );
        let live = env.live(Service::Rds, "rm-test0001", "billing").unwrap();
        let order: Vec<_> = std::fs::read_dir(env.state_dir().join("secrets"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        std::fs::write(&env.config, renamed("billing3")).unwrap();
        let daemon = env.start_daemon();
        env.wait_ready().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        crate::daemon::signal(&daemon, "TERM");
        let out = daemon.wait_with_output().await.unwrap();
        let took = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.contains("took over"))
            .map(|l| {
                l.rsplit("from=")
                    .next()
                    .unwrap()
                    .trim_matches('"')
                    .to_owned()
            });
        let rendered = std::fs::read_to_string(&render).unwrap();
        assert_eq!(
            (took.as_deref(), rendered == live, rendered == p1),
            (Some(second), true, false),
            "first rename to {second}: read_dir {order:?}"
        );
    }
}

/// `rotate --all` against a daemon with no accounts is answered at once, and a caller that
/// gives up frees its connection: after 16 such calls and a reload, the socket still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_never_wedges() {
    let env = Env::new("v1").await;
    let full = std::fs::read_to_string(&env.config).unwrap();
    let empty = full.split("\n[[account]]").next().unwrap().to_owned();
    std::fs::write(&env.config, &empty).unwrap();
    let daemon = env.start_daemon();
    env.wait_ready().await;
    let mut codes = Vec::new();
    for _ in 0..16 {
        let out = env.pwrotd(&["rotate", "--all", "--wait", "1s"]).await;
        codes.push(out.status.code());
    }
    std::fs::write(&env.config, &full).unwrap();
    crate::daemon::signal(&daemon, "HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        codes,
        vec![Some(0); 16],
        "an empty request is answered at once"
    );
    let out = env
        .pwrotd(&["rotate", "--account", "billing", "--wait", "20s"])
        .await;
    crate::daemon::signal(&daemon, "TERM");
    let _ = daemon.wait_with_output().await;
    assert!(out.status.success(), "{out:?}");
}

/// A render path through a symbolic link into `secrets/` is refused by `check` (which
/// resolves the links that exist) and by the write itself, so it never overwrites another
/// account's secret file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_path_through_a_link_never_reaches_the_state_directory() {
    let env = Env::new("v1").await;
    assert!(env.pwrotd(&["rotate", "--all"]).await.status.success());
    let alias = env.dir.path().join("app-conf");
    std::os::unix::fs::symlink(env.state_dir().join("secrets"), &alias).unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "account_name = \"billing\"",
        &format!(
            "account_name = \"billing\"\nrender = [{{ format = \"json\", path = \"{}/orders-app.json\" }}]",
            alias.display()
        ),
    );
    std::fs::write(&env.config, text).unwrap();
    let check = env.pwrotd(&["check"]).await;
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("render[0].path"),
        "{check:?}"
    );
    // Even if the link appears after check: the write refuses the state directory.
    let live = env.live(Service::PolarDb, "pc-test0001", "app").unwrap();
    let before = std::fs::read(env.state_dir().join("secrets/orders-app.json")).unwrap();
    let rotate = env.pwrotd(&["rotate", "--account", "billing"]).await;
    assert_eq!(rotate.status.code(), Some(2), "{rotate:?}");
    let after = std::fs::read(env.state_dir().join("secrets/orders-app.json")).unwrap();
    assert_eq!(before, after);
    assert!(String::from_utf8_lossy(&after).contains(&live));
}

/// Settling by login believes a login only where the database checks passwords: against a
/// role that PostgreSQL trusts (any password logs in), a pending password that was never
/// applied is not "proven" by its login, but set again. The real PostgreSQL of the tests has
/// such a role, `pwrotd_trusted` (`.ci/databases`).
#[tokio::test]
async fn a_login_that_checks_no_password_proves_nothing() {
    let Some(admin) = std::env::var("PWROTD_TEST_POSTGRES_ADMIN").ok() else {
        assert!(
            std::env::var_os("PWROTD_REQUIRE_DATABASES").is_none(),
            "PWROTD_TEST_POSTGRES_ADMIN is required"
        );
        eprintln!("SKIPPED: no PWROTD_TEST_POSTGRES_ADMIN");
        return;
    };
    let url = url::Url::parse(&admin).unwrap();
    let cfg = parse(&format!(
        "[[account]]\nname = \"acct\"\napi = \"ResetAccountPassword\"\ninstance_id = \"rm-trust\"\naccount_name = \"pwrotd_trusted\"\nkeep_versions = 0\n\
         [account.verify]\nengine = \"postgresql\"\nhost = \"{}\"\nport = {}\ntls = \"disable\"\ntimeout = \"2s\"\n",
        url.host_str().unwrap(),
        url.port().unwrap(),
    ));
    let mut sim = Sim::new(KEY_ID, SECRET);
    sim.add_database_backend(
        pwrotd::sim::Database::from_url(pwrotd::verify::Engine::Postgresql, &admin).unwrap(),
    );
    sim.register_config(&cfg);
    sim.prepare_databases().await.unwrap();
    let server = SimServer::start(sim, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let state = state_dir();
    let r = rotator(&server, state.path(), &cfg);
    let a = &cfg.accounts[0];
    assert_eq!(r.rotate(a).await.outcome, Outcome::Success);
    // The next change never reaches the API, and its reply is lost.
    server.sim.script_faults([Fault::DropBeforeApply]);
    let second = r.rotate(a).await;
    let live = server
        .sim
        .account(Service::Rds, "rm-trust", "pwrotd_trusted")
        .unwrap()
        .password
        .unwrap();
    let file = r.sink.load(a).unwrap().unwrap();
    let current = file.current.as_ref().unwrap();
    assert!(
        !second.message.contains("settled by login"),
        "a login that checks nothing settled it: {second:?}"
    );
    assert_eq!(second.outcome, Outcome::Success, "{second:?}");
    assert_eq!(current.version, 2);
    assert_eq!(current.password.expose(), live.expose(), "{second:?}");
}

/// A render directory replaced by a link into `secrets/` after the config was checked: the
/// write refuses it, and the secret file it would have replaced is untouched.
#[tokio::test]
async fn a_render_directory_that_becomes_a_link_into_the_state_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("render");
    std::fs::create_dir(&dir).unwrap();
    let cfg = parse(&format!(
        "[[account]]\nname = \"orders-app\"\napi = \"ModifyAccountPassword\"\ncluster_id = \"pc-test0001\"\naccount_name = \"app\"\n\
         [[account]]\nname = \"billing\"\napi = \"ResetAccountPassword\"\ninstance_id = \"rm-test0001\"\naccount_name = \"billing\"\n\
         render = [{{ format = \"json\", path = \"{}/orders-app.json\" }}]\n",
        dir.display()
    ));
    let server = common::start_sim().await;
    let state = state_dir();
    let r = rotator(&server, state.path(), &cfg);
    for a in &cfg.accounts {
        let report = r.rotate(a).await;
        assert!(
            report.outcome == Outcome::Success && !report.render_failed,
            "{report:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(state.path().join("secrets"), &dir).unwrap();
    let secret = state.path().join("secrets/orders-app.json");
    let before = std::fs::read(&secret).unwrap();
    let report = r.rotate(&cfg.accounts[1]).await;
    assert!(report.render_failed, "{report:?}");
    assert!(report.message.contains("state directory"), "{report:?}");
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        before,
        "a secret file was replaced"
    );
}
