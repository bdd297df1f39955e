//! The real binaries: `pwrotd genpass`, `genkey`, `check` and `demo`, and `pwrotd-sim` serving the client.

use std::process::{Command, Stdio};
use std::time::Duration;

use pwrotd::cloud::{Api, Credentials, SetPassword, SignatureVersion};
use pwrotd::cluster::StoreKey;
use pwrotd::password::{self, Class, Policy};

use crate::common::{self, KEY_ID, SECRET};

fn pwrotd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pwrotd"))
}

/// The chi-square value above which a uniform sample is rejected at p ≈ 1e-6
/// (Wilson–Hilferty approximation): a correct generator fails this about once in a million runs.
fn chi_square_limit(df: f64) -> f64 {
    let z = 4.75;
    let t = 2.0 / (9.0 * df);
    df * (1.0 - t + z * t.sqrt()).powi(3)
}

fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(o, e)| (o - e).powi(2) / e)
        .sum()
}

/// `pwrotd genkey` prints a new key each time: base64 and a newline, that the store reads.
#[test]
fn genkey_prints_a_new_key_each_time() {
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let output = pwrotd().arg("genkey").output().expect("run pwrotd genkey");
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8(output.stdout).expect("utf-8");
            assert!(
                text.ends_with('\n') && text.lines().count() == 1,
                "{text:?}"
            );
            let line = text.trim_end().to_owned();
            assert_eq!(line.len(), 44, "{line:?}");
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &line)
                .expect("standard base64");
            assert_eq!(bytes.len(), 32);
            let key = StoreKey::parse(text.as_bytes()).expect("a key the store accepts");
            assert_eq!(key.to_base64().as_str(), line);
            line
        })
        .collect();
    assert_ne!(keys[0], keys[1], "two runs printed the same key");
}

#[test]
fn genpass_4000_distinct_compliant_uniform_passwords() {
    let output = pwrotd()
        .args(["genpass", "--count", "4000"])
        .output()
        .expect("run pwrotd genpass");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let passwords: Vec<&str> = text.lines().collect();
    assert_eq!(passwords.len(), 4000);
    let distinct: std::collections::HashSet<&&str> = passwords.iter().collect();
    assert_eq!(distinct.len(), 4000, "duplicates");

    let length = 24;
    let classes = Class::ALL;
    // counts[class][member index], and by_position[position][class].
    let mut counts: Vec<Vec<f64>> = Vec::new();
    let members: Vec<Vec<char>> = classes
        .iter()
        .map(|class| {
            (' '..='~')
                .filter(|c| Class::of(*c) == Some(*class))
                .collect()
        })
        .collect();
    for m in &members {
        counts.push(vec![0.0; m.len()]);
    }
    let mut by_position = vec![[0.0f64; 4]; length];
    for p in &passwords {
        assert!(password::validate(p).is_ok(), "non-compliant password");
        assert_eq!(p.len(), length);
        for class in classes {
            assert!(
                p.chars().any(|c| Class::of(c) == Some(class)),
                "a password lacks {class:?}"
            );
        }
        for (position, c) in p.chars().enumerate() {
            let class = Class::of(c).expect("a documented character");
            let k = classes.iter().position(|x| *x == class).expect("class");
            let i = members[k].iter().position(|x| *x == c).expect("member");
            counts[k][i] += 1.0;
            by_position[position][k] += 1.0;
        }
    }

    // Within each class, every character is equally likely.
    for (k, class) in classes.iter().enumerate() {
        let total: f64 = counts[k].iter().sum();
        let expected = vec![total / counts[k].len() as f64; counts[k].len()];
        let x2 = chi_square(&counts[k], &expected);
        let limit = chi_square_limit((counts[k].len() - 1) as f64);
        assert!(
            x2 < limit,
            "{class:?} is not uniform: chi-square {x2:.1} >= {limit:.1}"
        );
    }

    // The class of a character is independent of its position: no class favours a position.
    let n = passwords.len() as f64;
    let class_totals: Vec<f64> = (0..4)
        .map(|k| by_position.iter().map(|row| row[k]).sum())
        .collect();
    let observed: Vec<f64> = by_position
        .iter()
        .flat_map(|row| row.iter().copied())
        .collect();
    let expected: Vec<f64> = (0..length)
        .flat_map(|_| {
            class_totals
                .iter()
                .map(|t| t / (length as f64))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!((observed.iter().sum::<f64>() - n * length as f64).abs() < 0.5);
    let x2 = chi_square(&observed, &expected);
    let limit = chi_square_limit(((length - 1) * 3) as f64);
    assert!(
        x2 < limit,
        "class depends on position: chi-square {x2:.1} >= {limit:.1}"
    );
}

#[test]
fn the_uniformity_check_can_fail() {
    // A generator that puts its required classes first is exactly what the position test is
    // for; make sure the statistic sees it.
    let policy = Policy::default();
    let mut by_position = vec![[0.0f64; 4]; 24];
    for _ in 0..500 {
        let p = policy.generate().expect("generate");
        let mut biased: Vec<char> = p.expose().chars().collect();
        biased.sort_by_key(|c| Class::of(*c));
        for (position, c) in biased.into_iter().enumerate() {
            let k = Class::ALL
                .iter()
                .position(|x| Some(*x) == Class::of(c))
                .expect("class");
            by_position[position][k] += 1.0;
        }
    }
    let totals: Vec<f64> = (0..4)
        .map(|k| by_position.iter().map(|r| r[k]).sum())
        .collect();
    let observed: Vec<f64> = by_position.iter().flat_map(|r| r.iter().copied()).collect();
    let expected: Vec<f64> = (0..24)
        .flat_map(|_| totals.iter().map(|t| t / 24.0).collect::<Vec<_>>())
        .collect();
    assert!(chi_square(&observed, &expected) > chi_square_limit(69.0));
}

#[test]
fn genpass_refuses_an_impossible_length() {
    let output = pwrotd()
        .args(["genpass", "--length", "7"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--length"));
    let output = pwrotd()
        .args(["genpass", "--length", "32", "--count", "3"])
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .all(|l| l.len() == 32)
    );
}

#[test]
fn check_prints_the_plan_or_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, common::config_text()).expect("write");
    let output = pwrotd()
        .arg("check")
        .arg("--config")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    for name in [
        "orders-app",
        "edge-app",
        "admin",
        "billing",
        "ModifyAccountPasswordZonal",
        "rm-test0001",
    ] {
        assert!(plan.contains(name), "{plan}");
    }

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[cloud]\nregion_id = \"cn-hangzhou\"\n[[account]]\nname = \"x\"\napi = \"Nope\"\naccount_name = \"a\"\n[account.password]\nlength = 99\n").expect("write");
    let output = pwrotd()
        .arg("check")
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:5: account \"x\".api"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:8: account \"x\".password.length"),
        "{stderr}"
    );
}

#[test]
fn demo_once_rotates_every_api_through_the_daemon() {
    // No MariaDB answers on port 1: the demo says so and runs its simulated accounts.
    let output = pwrotd()
        .args(["demo", "--once"])
        .env("PWROTD_DEMO_MYSQL_ADMIN", "mysql://nobody@127.0.0.1:1")
        .output()
        .expect("run pwrotd demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("login verification: not shown, no MariaDB answered"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(" success ").count(), 4, "{stdout}");
    assert_eq!(
        stdout
            .matches("the database's password is the sink's current: yes")
            .count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("2 grants applied"), "{stdout}");
    assert!(stdout.contains("/metrics"), "{stdout}");
    for api in Api::ALL {
        assert!(stdout.contains(api.as_str()), "{stdout}");
    }
}

#[tokio::test]
async fn the_sim_binary_serves_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sim.toml");
    std::fs::write(&config, common::config_text()).expect("write");
    let (mut reaper, url) = common::spawn_sim_binary(&config, &[]);

    for signature in [SignatureVersion::V1, SignatureVersion::V3] {
        let client = common::client_with(
            common::client_config(url.clone(), signature),
            Credentials::new(KEY_ID, SECRET),
        );
        let password = Policy::default().generate().expect("generate");
        client
            .call(&SetPassword::new(
                Api::ModifyAccountPassword,
                "pc-test0001",
                "app",
                password.clone(),
                "t",
                None,
            ))
            .await
            .unwrap_or_else(|e| panic!("{signature:?}: {e}"));
        let state: serde_json::Value = serde_json::from_slice(
            &reqwest::get(url.join("/_sim/accounts").expect("url"))
                .await
                .expect("GET")
                .bytes()
                .await
                .expect("body"),
        )
        .expect("JSON");
        let app = state
            .as_array()
            .expect("a list")
            .iter()
            .find(|a| a["resource_id"] == "pc-test0001" && a["account_name"] == "app")
            .expect("app is registered");
        assert_eq!(
            app["account"]["password_sha256"].as_str(),
            Some(pwrotd::cloud::sign::sha256_hex(password.expose().as_bytes()).as_str())
        );
        assert!(
            !state.to_string().contains(password.expose()),
            "the state leaks the password"
        );
    }

    let status = Command::new("kill")
        .args(["-TERM", &reaper.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = reaper.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "SIGTERM stops pwrotd-sim cleanly"
    );
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    // Enough accounts that `check` writes far more than a pipe holds (64 KiB).
    let accounts: String = (0..3000)
        .map(|i| format!("[[account]]\nname = \"a{i}\"\napi = \"ResetAccount\"\ncluster_id = \"pc-{i}\"\naccount_name = \"root\"\n"))
        .collect();
    std::fs::write(&config, format!("{}{accounts}", common::config_text())).expect("write");
    for args in [
        vec!["genpass", "--count", "200000"],
        vec!["check", "--config", config.to_str().expect("utf-8")],
    ] {
        let mut child = pwrotd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        // Read a little, then close the pipe, as `| head -1` does.
        let mut first = [0u8; 8];
        let _ = child.stdout.take().expect("stdout").read(&mut first);
        let output = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(
            !stderr.contains("panic") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}
