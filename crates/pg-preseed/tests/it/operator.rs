//! Tier 2: what the operator sees — the drill, metrics, restore progress, status — on real
//! PostgreSQL and pgBackRest.

use std::fs;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use serde_json::json;
use testbed::{golden, Host, Sandbox};

use crate::common::bin;

/// The drill restores the newest backup into a scratch directory, starts it privately, runs the
/// verify checks, and removes it; production (PGDATA, the repository's archive) is untouched.
#[test]
fn drill_restores_a_backup_privately_and_cleans_up() {
    let sandbox = Sandbox::new("drill");
    let host = Host::new(&sandbox, bin(), 1);
    let archive = host.pgbackrest.repos[0].join("archive");
    let archive_before = testbed::tree(&archive);
    let scratch = sandbox.path("scratch");

    let run = host.preseed(&["drill", "--scratch", scratch.as_str()]);
    run.expect_code(0);
    let result = &run.json()["result"];
    assert_eq!(result["repo"], 1);
    assert_eq!(result["backup_label"], testbed::Golden::get().labels[0]);
    assert_eq!(
        result["system_identifier"],
        testbed::Golden::get().system_identifier.to_string()
    );
    let checks = result["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "rows restored" && c["ok"] == true),
        "{checks:?}"
    );
    assert!(result["restore_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert!(
        testbed::tree(&scratch).is_empty(),
        "the scratch copy is removed"
    );
    assert!(testbed::tree(&host.pgdata).is_empty(), "PGDATA untouched");
    assert_eq!(
        testbed::tree(&archive),
        archive_before,
        "the drilled copy archived nothing"
    );
    assert!(!host.marker.exists(), "a drill writes no receipt");

    // Kept for inspection: the copy promoted (a new timeline's history file in its pg_wal) and
    // never archived it — pgBackRest's `--archive-mode=off`, not a hold verify would release.
    let kept = host.preseed(&["drill", "--scratch", scratch.as_str(), "--keep"]);
    kept.expect_code(0);
    let copy = camino::Utf8PathBuf::from(
        kept.json()["result"]["scratch"]
            .as_str()
            .expect("the kept copy"),
    )
    .join("pgdata");
    let auto = fs::read_to_string(copy.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(auto.contains("archive_mode = 'off'"), "{auto}");
    assert!(!auto.contains("archive-hold"), "{auto}");
    let wal = testbed::tree(&copy.join("pg_wal"));
    assert!(
        wal.iter().any(|f| f.ends_with(".history")),
        "the copy promoted: {wal:?}"
    );
    assert!(
        !wal.iter()
            .any(|f| camino::Utf8Path::new(f).extension() == Some("ready")),
        "nothing waits to be archived: {wal:?}"
    );
    assert_eq!(
        testbed::tree(&archive),
        archive_before,
        "the kept copy archived nothing either"
    );
}

/// A backup that cannot be restored fails the drill (exit 4), and the scratch copy is gone.
#[test]
fn drill_of_a_damaged_backup_fails() {
    let sandbox = Sandbox::new("drillbad");
    let host = Host::new(&sandbox, bin(), 1);
    let backup = host.pgbackrest.repos[0].join("backup/main");
    let victim = testbed::tree(&backup)
        .into_iter()
        .filter(|r| r.contains("/pg_data/base/") && backup.join(r).is_file())
        .max_by_key(|r| fs::metadata(backup.join(r)).map_or(0, |m| m.len()))
        .expect("a data file");
    fs::write(backup.join(&victim), b"not what it was").expect("damage it");
    let scratch = sandbox.path("scratch");
    let run = host.preseed(&["drill", "--scratch", scratch.as_str()]);
    run.expect_code(4);
    assert!(run.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(testbed::tree(&scratch).is_empty());
}

/// With metrics.textfile set, run and verify leave a textfile-collector file describing the
/// restore; it is replaced atomically (no temporary file left beside it).
#[test]
fn metrics_describe_the_last_restore() {
    let sandbox = Sandbox::new("metrics");
    let mut host = Host::new(&sandbox, bin(), 1);
    let dir = sandbox.path("node-exporter");
    fs::create_dir_all(&dir).expect("mkdir");
    let textfile = dir.join("pg-preseed.prom");
    host.set("/metrics", json!({"textfile": textfile}));
    host.boot().expect_verified();

    let text = fs::read_to_string(&textfile).expect("metrics written");
    for expected in [
        "pg_preseed_last_decision{command=\"run\",decision=\"restore\"} 1",
        "pg_preseed_last_outcome{command=\"run\",outcome=\"ok\"} 1",
        "pg_preseed_last_outcome{command=\"verify\",outcome=\"ok\"} 1",
        "pg_preseed_last_decision{command=\"preflight\",decision=\"clean\"} 1",
        "pg_preseed_findings{command=\"preflight\"} 0",
        "pg_preseed_receipt_present 1",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    let restored_bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("pg_preseed_restored_bytes{command=\"run\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("restored bytes");
    assert!(restored_bytes > 50 * 1024 * 1024, "{restored_bytes}");
    assert!(text.contains("pg_preseed_backup_age_seconds{command=\"run\"} "));
    for phase in ["repository_check", "restore", "recovery", "verify"] {
        assert!(
            text.contains(&format!(
                "pg_preseed_receipt_phase_seconds{{phase=\"{phase}\"}} "
            )),
            "{phase} in\n{text}"
        );
    }
    assert!(text.contains("pg_preseed_receipt_data_end_timestamp_seconds{source=\"backup\"} "));
    assert!(text.contains("pg_preseed_receipt_max_data_loss_seconds "));
    assert_eq!(testbed::tree(&dir), ["pg-preseed.prom"]);
}

/// During a restore the journal gets a progress line at a steady interval (here every 0.2s) —
/// percentage, data restored, throughput — whatever pgBackRest prints: with pgBackRest stopped
/// (SIGSTOP) for two seconds, silent, the lines keep coming, at 0.0 MB/s. The restore's last
/// line gives the total and the average throughput.
#[test]
fn restore_progress_is_logged_regularly() {
    let sandbox = Sandbox::new("progress");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    host.env
        .push(("PG_PRESEED_PROGRESS_SECONDS".to_owned(), "0.2".to_owned()));
    let child = host.spawn_captured(&["run"]);
    let restoring = format!("--pg1-path={}", host.pgdata);
    testbed::wait_for(
        "pgBackRest to start restoring",
        Duration::from_secs(60),
        || {
            !testbed::pids_with_arg(&restoring).is_empty()
                && host.pgdata.join("backup.manifest").exists()
        },
    );
    let stopped = testbed::pids_with_arg(&restoring);
    signal(&stopped, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(2));
    signal(&stopped, Signal::SIGCONT);
    let output = child.wait_with_output().expect("wait for run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    // (percent, MB/s over the last interval) of each progress line.
    let lines: Vec<(f64, f64)> = stderr
        .lines()
        .filter_map(|l| l.split("restore progress ").nth(1))
        .filter_map(|rest| {
            let percent = rest.split('%').next()?.parse().ok()?;
            let rate = rest
                .split(" MB/s over the last")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            Some((percent, rate))
        })
        .collect();
    assert!(lines.len() >= 3, "progress lines: {lines:?}\n{stderr}");
    assert!(
        lines.windows(2).all(|w| w[0].0 <= w[1].0),
        "the percentage never goes back: {lines:?}"
    );
    let longest_silence = lines
        .split(|(_, rate)| *rate > 0.0)
        .map(<[_]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_silence >= 3,
        "while pgBackRest was stopped the lines kept coming at 0.0 MB/s: {lines:?}\n{stderr}"
    );
    let finished = stderr
        .lines()
        .find_map(|l| l.split("restore finished: ").nth(1))
        .expect("a last line with the totals");
    let (mb, rest) = finished.split_once(" MB in ").expect("MB in");
    let rate: f64 = rest
        .split('(')
        .nth(1)
        .and_then(|r| r.split(" MB/s").next())
        .and_then(|r| r.parse().ok())
        .expect("the average throughput");
    assert!(mb.parse::<f64>().expect("MB") > 50.0, "{finished}");
    assert!(rate > 0.0, "{finished}");
}

fn signal(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// `status` at a glance: PGDATA, the receipt, the last outcome of each command, findings.
#[test]
fn status_at_a_glance() {
    let sandbox = Sandbox::new("status");
    let host = Host::new(&sandbox, bin(), 1);
    host.boot().expect_verified();
    let output = Command::new(bin())
        .args(["--config", host.config_path.as_str(), "status"])
        .output()
        .expect("status");
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("holds a PostgreSQL"), "{text}");
    assert!(text.contains("restored from repo1"), "{text}");
    assert!(text.contains("run → restore (ok)"), "{text}");
    assert!(text.contains("verify → verified (ok)"), "{text}");
    assert!(text.contains("findings none"), "{text}");
    // The story (issue 13): which backup, how much, how long each phase took.
    assert!(text.contains("story    restored repo1 backup "), "{text}");
    assert!(text.contains("MB restored at "), "{text}");
    assert!(text.contains("repository check "), "{text}");
    assert!(
        text.contains("(the end of the backup): at most "),
        "no transaction was replayed after the golden backup: {text}"
    );
    let json = host.preseed(&["status"]);
    json.expect_code(0);
    let status = json.json();
    assert_eq!(status["pgdata_state"]["state"], "initialized");
    assert_eq!(status["marker"]["receipt"]["action"], "restored");
    assert_eq!(status["last_runs"]["run"]["decision"], "restore");
    assert_eq!(host.rows(), golden::ROWS);
}
