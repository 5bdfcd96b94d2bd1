//! Tier 2: a recovery is proven complete before it is blessed (issue 13), repository fallback
//! still finishes (recovery consults the repositories that answered when the restore was
//! decided), and point-in-time recovery works for real — on PostgreSQL, pgBackRest and posix
//! repositories.
//!
//! The source cluster of each test commits rows in two batches of 1,000, with WAL archived
//! between and after them, then is stopped and its PGDATA emptied (the disaster). The issue's
//! numbers: with the two newest archived segments unreachable during recovery, the server came up
//! with 1,000 of 2,000 committed rows and `verify` wrote the receipt.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use testbed::{Cluster, Host, Pgbackrest, Sandbox};

use crate::common::bin;

const BATCH: u64 = 1000;

/// What the source recorded between its two batches.
#[derive(Debug, Default)]
struct Points {
    /// The WAL segments holding batch B (the newest archived ones), in order.
    batch_b_segments: Vec<String>,
    /// `pg_current_wal_lsn()` after batch A committed and the restore point was made.
    lsn: String,
    /// `clock_timestamp()` then.
    time: String,
    /// The restore point's name.
    restore_point: String,
}

fn insert(cluster: &Cluster, batch: &str, from: u64, to: u64) {
    cluster.psql(&format!(
        "INSERT INTO batches SELECT i, '{batch}' FROM generate_series({from}, {to}) i"
    ));
}

/// Switches to a new WAL segment and waits until the one just closed is archived; returns its
/// name.
fn switch_and_archive(cluster: &Cluster) -> String {
    let segment = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    cluster.psql("SELECT pg_switch_wal()");
    testbed::wait_for(
        &format!("{segment} to be archived"),
        Duration::from_secs(60),
        || {
            cluster
                .psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
                .as_str()
                >= segment.as_str()
        },
    );
    segment
}

/// A cluster in `sandbox/pgdata` with one full backup in `repo1`: batch A (ids 1–1000) before
/// the backup when `a_in_backup`, else after it; batch B (ids 1001–2000) after, over two WAL
/// segments, all archived. Then the server is stopped and PGDATA emptied. `archive_copy` puts the
/// WAL the backup needs into the backup itself (pgBackRest `--archive-copy`).
fn disaster(sandbox: &Sandbox, a_in_backup: bool, archive_copy: bool) -> (Host<'_>, Points) {
    let pgdata = sandbox.pg_dir("pgdata");
    let mut cluster = sandbox.cluster(&pgdata);
    cluster.initdb();
    let repo = sandbox.shared_dir("repo1");
    let pgbackrest = Pgbackrest::write(sandbox, &cluster, &[repo]);
    cluster.pgbackrest_config = Some(pgbackrest.config.clone());
    cluster.start();
    pgbackrest.run(&["stanza-create"]);
    cluster.psql("CREATE TABLE batches (id bigint PRIMARY KEY, batch text NOT NULL)");
    if a_in_backup {
        insert(&cluster, "A", 1, BATCH);
    }
    let mut backup = vec!["--type=full"];
    if archive_copy {
        backup.push("--archive-copy");
    }
    backup.push("backup");
    pgbackrest.run(&backup);
    let mut points = Points {
        restore_point: "before batch B".to_owned(),
        ..Points::default()
    };
    if !a_in_backup {
        // A second between the backup's end and the targets: pgBackRest records whole seconds.
        cluster.psql("SELECT pg_sleep(1.1)");
        insert(&cluster, "A", 1, BATCH);
        cluster.psql(&format!(
            "SELECT pg_create_restore_point('{}')",
            points.restore_point
        ));
        points.lsn = cluster.psql("SELECT pg_current_wal_lsn()");
        points.time = cluster.psql("SELECT clock_timestamp()");
        cluster.psql("SELECT pg_sleep(0.05)");
    }
    insert(&cluster, "B", BATCH + 1, BATCH + BATCH / 2);
    points.batch_b_segments.push(switch_and_archive(&cluster));
    insert(&cluster, "B", BATCH + BATCH / 2 + 1, 2 * BATCH);
    points.batch_b_segments.push(switch_and_archive(&cluster));
    assert_eq!(
        rows(&cluster),
        (BATCH, BATCH),
        "the source committed both batches"
    );
    cluster.stop();
    testbed::empty_dir(&pgdata);
    let mut host = Host::from_parts(sandbox, bin(), cluster, pgbackrest);
    // Only pg-preseed's own recovery check decides; a row count would fail for other reasons.
    host.set("/verify/sql", json!([]));
    (host, points)
}

/// Rows of batch A and of batch B.
fn rows(cluster: &Cluster) -> (u64, u64) {
    let count = |batch: &str| {
        cluster
            .psql(&format!(
                "SELECT count(*) FROM batches WHERE batch = '{batch}'"
            ))
            .parse::<u64>()
            .expect("a count")
    };
    (count("A"), count("B"))
}

/// The archived files of `segment` in a posix repository.
fn archived(repo: &Utf8Path, segment: &str) -> Vec<Utf8PathBuf> {
    let root = repo.join("archive/main");
    let files: Vec<Utf8PathBuf> = testbed::tree(&root)
        .into_iter()
        .filter(|relative| {
            Utf8Path::new(relative)
                .file_name()
                .is_some_and(|name| name.starts_with(&format!("{segment}-")))
        })
        .map(|relative| root.join(relative))
        .collect();
    assert!(!files.is_empty(), "{segment} is archived in {repo}");
    files
}

/// The segment `by` after (or before) `segment` in the same 4 GiB log of the same timeline.
fn offset(segment: &str, by: i64) -> String {
    let number = i64::from_str_radix(&segment[16..], 16).expect("hex") + by;
    format!("{}{number:08X}", &segment[..16])
}

fn next(segment: &str) -> String {
    offset(segment, 1)
}

fn server_log(host: &Host<'_>) -> String {
    fs::read_to_string(&host.cluster.log).unwrap_or_default()
}

/// Turns on the prefetch queue (`pgbackrest.archive_get.async`, on by default), so the tests of
/// what it does do not depend on the default.
fn turn_on_the_prefetch_queue(host: &mut Host<'_>) {
    host.set("/pgbackrest/archive_get/async", json!(true));
}

/// The prefetch queue's spool path (`pgbackrest.archive_get.spool_path`).
fn spool(host: &Host<'_>) -> Utf8PathBuf {
    Utf8PathBuf::from(
        host.config["pgbackrest"]["archive_get"]["spool_path"]
            .as_str()
            .expect("the harness sets the spool path"),
    )
}

/// Sets pgBackRest's file log level in the harness's pgbackrest.conf (it is off by default).
fn pgbackrest_file_log(host: &Host<'_>, level: &str) -> Utf8PathBuf {
    let conf = fs::read_to_string(&host.pgbackrest.config).expect("read pgbackrest.conf");
    fs::write(
        &host.pgbackrest.config,
        conf.replace("log-level-file=off", &format!("log-level-file={level}")),
    )
    .expect("write pgbackrest.conf");
    host.pgbackrest.config.with_file_name("log")
}

fn history_files(pgdata: &Utf8Path) -> Vec<String> {
    testbed::tree(&pgdata.join("pg_wal"))
        .into_iter()
        .filter(|name| name.ends_with(".history"))
        .collect()
}

/// The reproduction: the two newest archived segments (batch B) cannot be read during
/// recovery. pgBackRest's restore_command exits 42 for them, which PostgreSQL takes for the end
/// of the archive: it promoted with 1,000 of 2,000 rows and verify blessed it. Now recovery stops
/// (FATAL), verify exits 4 without a receipt, and once the files are readable again the next
/// start completes recovery with every row, and verify writes the receipt.
#[test]
fn unreadable_segments_mid_recovery_stop_recovery_instead_of_losing_rows() {
    let sandbox = Sandbox::new("rec-unreadable");
    let (mut host, points) = disaster(&sandbox, true, false);
    turn_on_the_prefetch_queue(&mut host);
    host.preseed(&["run"]).expect_code(0);

    let repo = host.pgbackrest.repos[0].clone();
    let hidden: Vec<Utf8PathBuf> = points
        .batch_b_segments
        .iter()
        .flat_map(|segment| archived(&repo, segment))
        .collect();
    for file in &hidden {
        fs::set_permissions(file, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    }
    let promoted = host.cluster.start_settled();
    let log = server_log(&host);
    let first = &points.batch_b_segments[0];
    assert!(
        !promoted,
        "the server promoted with {:?} rows (A, B) of ({BATCH}, {BATCH}):\n{log}",
        rows(&host.cluster)
    );
    assert!(
        log.contains(&format!("pg-preseed archive-get {first}: repo1 could not be asked (pgBackRest exited with status 42")),
        "{log}"
    );
    assert!(
        log.contains(&format!("FATAL:  could not restore file \"{first}\" from archive: child process exited with exit code 255")),
        "{log}"
    );
    // The prefetch queue (turned on above) was not taken for the end: it cannot hold this
    // segment, so the segment was asked directly (archive_get.rs, `through_the_queue`) and that
    // ask stopped recovery, above. The queue's own failure is followed by the same direct ask:
    // archive_get_tells_not_there_from_cannot_ask.
    assert!(history_files(&host.pgdata).is_empty(), "no new timeline");

    let verify = host.preseed(&["verify", "--timeout", "5s"]);
    verify.expect_code(4);
    assert!(
        verify.all_output().contains("PostgreSQL is not running")
            || verify
                .all_output()
                .contains("stopped before recovery ended"),
        "{}",
        verify.all_output()
    );
    assert!(!host.marker.exists(), "no receipt");

    // The repository is readable again: the next start completes recovery.
    for file in &hidden {
        fs::set_permissions(file, fs::Permissions::from_mode(0o640)).expect("chmod back");
    }
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    host.preseed(&["verify"]).expect_code(0);
    let receipt = host.receipt();
    let recovery = &receipt["recovery"];
    assert_eq!(recovery["timeline"], 1, "{receipt}");
    assert_eq!(
        recovery["end_segment"],
        points.batch_b_segments[1].as_str(),
        "{receipt}"
    );
    assert_eq!(
        recovery["next_segment"],
        next(&points.batch_b_segments[1]),
        "{receipt}"
    );
    eprintln!(
        "two newest segments ({}) unreadable: recovery stopped (FATAL) instead of promoting; \
         after they were readable again: {} rows of {}; receipt: {}",
        points.batch_b_segments.join(", "),
        2 * BATCH,
        2 * BATCH,
        recovery
    );
}

/// "The repository gone after the base backup is restored": the backup carries the WAL it needs
/// (`--archive-copy`), so PostgreSQL can reach consistency from pg_wal alone; the repository then
/// disappears (an NFS share dropped). pgBackRest's restore_command exits 103, read as "not there",
/// and the server promoted with the backup's rows only. Now recovery stops at once; with the
/// repository back it completes.
#[test]
fn repository_gone_after_the_base_backup_is_restored() {
    let sandbox = Sandbox::new("rec-gone");
    let (host, points) = disaster(&sandbox, true, true);
    host.preseed(&["run"]).expect_code(0);

    let repo = host.pgbackrest.repos[0].clone();
    let away = sandbox.path("repo1-unmounted");
    fs::rename(&repo, &away).expect("the share goes away");
    let promoted = host.cluster.start_settled();
    let log = server_log(&host);
    assert!(
        !promoted,
        "the server promoted with {:?} rows (A, B) of ({BATCH}, {BATCH}):\n{log}",
        rows(&host.cluster)
    );
    assert!(
        log.contains("repo1 could not be asked (pgBackRest exited with status 103"),
        "{log}"
    );
    host.preseed(&["verify", "--timeout", "5s"]).expect_code(4);
    assert!(!host.marker.exists(), "no receipt");

    fs::rename(&away, &repo).expect("the share is back");
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    host.preseed(&["verify"]).expect_code(0);
    let receipt = host.receipt();
    assert_eq!(
        receipt["recovery"]["end_segment"],
        points.batch_b_segments[1].as_str(),
        "{receipt}"
    );
    assert_eq!(
        receipt["recovery"]["next_segment"],
        next(&points.batch_b_segments[1]),
        "{receipt}"
    );
}

/// A repository that answers "not there" for segments it holds (an object store's listing lag;
/// here the files are renamed away during recovery and put back before verify). No restore
/// command can tell: the server promotes early. verify compares where replay ended with the
/// newest segment the repository holds on that timeline, exits 4 naming both, and writes no
/// receipt. The operator's way on (docs/operations.md): empty PGDATA and restore again, following
/// the backup's timeline (the early promotion archived a new one).
#[test]
fn repository_listing_lag_is_caught_by_verify() {
    let sandbox = Sandbox::new("rec-lag");
    let (host, points) = disaster(&sandbox, true, false);
    host.preseed(&["run"]).expect_code(0);

    let repo = host.pgbackrest.repos[0].clone();
    let aside = sandbox.path("not-listed-yet");
    fs::create_dir_all(&aside).expect("mkdir");
    let moved: Vec<(Utf8PathBuf, Utf8PathBuf)> = points
        .batch_b_segments
        .iter()
        .flat_map(|segment| archived(&repo, segment))
        .map(|file| {
            let to = aside.join(file.file_name().expect("a name"));
            fs::rename(&file, &to).expect("rename away");
            (file, to)
        })
        .collect();
    assert!(
        host.cluster.start_settled(),
        "with every repository answering, recovery ends and promotes"
    );
    let restored = rows(&host.cluster);
    assert_eq!(restored, (BATCH, 0), "the early promotion lost batch B");
    for (file, to) in &moved {
        fs::rename(to, file).expect("the listing catches up");
    }

    let verify = host.preseed(&["verify"]);
    verify.expect_code(4);
    let output = verify.all_output();
    let last = points.batch_b_segments[1].as_str();
    let before = offset(&points.batch_b_segments[0], -1);
    for needle in [
        "replay ended on timeline 1 at ".to_owned(),
        format!("(in segment {before})"),
        format!("repo1 holds WAL on timeline 1 up to segment {last} (2 segment(s) more)"),
    ] {
        assert!(output.contains(&needle), "{needle} in:\n{output}");
    }
    assert!(!host.marker.exists(), "no receipt for a short recovery");
    eprintln!(
        "listing lag: the server promoted with {} of {} rows; verify exit 4: {}",
        restored.0 + restored.1,
        2 * BATCH,
        output
            .lines()
            .find(|l| l.contains("replay ended"))
            .unwrap_or_default()
            .trim()
    );

    // The way on: restore again along the backup's timeline (pg-preseed passes pgbackrest.conf's
    // recovery-option on), which now holds every segment.
    host.wipe_pgdata();
    host.pgbackrest
        .add_global("recovery-option=recovery_target_timeline=current\n");
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore", "{boot:#?}");
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    let receipt = host.receipt();
    assert_eq!(receipt["recovery"]["end_segment"], last, "{receipt}");
    assert_eq!(receipt["recovery"]["next_segment"], next(last), "{receipt}");
}

/// `pg-preseed archive-get`'s contract with PostgreSQL, against pgBackRest's own answers: 0
/// fetched, 1 only when every repository answered "not there", 255 (above 125: PostgreSQL stops)
/// when one could not be asked — including the case where `pgbackrest archive-get` itself, asked
/// about both repositories at once, says "not found" (exit 1).
#[test]
fn archive_get_tells_not_there_from_cannot_ask() {
    let sandbox = Sandbox::new("rec-archive-get");
    let (mut host, points) = disaster(&sandbox, true, false);
    turn_on_the_prefetch_queue(&mut host);
    host.preseed(&["run"]).expect_code(0);
    let repo1 = host.pgbackrest.repos[0].clone();
    let repo2 = sandbox.path("repo2");
    testbed::run_ok(std::process::Command::new("cp").args(["-a", repo1.as_str(), repo2.as_str()]));
    host.pgbackrest.add_global(&format!("repo2-path={repo2}\n"));
    host.set("/pgbackrest/repos", json!([1, 2]));
    let present = points.batch_b_segments[1].clone();
    let absent = next(&present);
    let destination = host.pgdata.join("pg_wal/RECOVERYXLOG");
    // As PostgreSQL runs it: as postgres, in PGDATA, with a destination relative to it; asking
    // the repositories of `--repos` (none: every configured one).
    let archive_get_from = |repos: Option<&str>, wal: &str, cwd: &Utf8Path, dest: &str| {
        let mut command = testbed::as_postgres(bin());
        command
            .current_dir(cwd)
            .args(["--config", host.config_path.as_str(), "archive-get"])
            .args(["--pgdata", host.pgdata.as_str()]);
        if let Some(repos) = repos {
            command.args(["--repos", repos]);
        }
        let output = command.args([wal, dest]).output().expect("run archive-get");
        let _ = fs::remove_file(&destination);
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let archive_get =
        |wal: &str, cwd: &Utf8Path, dest: &str| archive_get_from(None, wal, cwd, dest);
    let pgbackrest_itself = |wal: &str| {
        testbed::as_postgres("pgbackrest")
            .args([
                &format!("--config={}", host.pgbackrest.config),
                "--stanza=main",
                &format!("--pg1-path={}", host.pgdata),
                "archive-get",
                wal,
                destination.as_str(),
            ])
            .output()
            .expect("run pgbackrest")
            .status
            .code()
    };
    let relative = "pg_wal/RECOVERYXLOG";
    let (code, stderr) = archive_get(&present, &host.pgdata, relative);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let (code, stderr) = archive_get(&absent, &host.pgdata, relative);
    assert_eq!(
        (code, stderr.as_str()),
        (1, ""),
        "every repository answered"
    );
    assert_eq!(archive_get("00000009.history", &host.pgdata, relative).0, 1);

    // repo1's archive cannot be read.
    let dir = repo1.join(format!(
        "archive/main/{}-1/{}",
        testbed::pg_major(),
        &present[..16]
    ));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    assert_eq!(
        pgbackrest_itself(&absent),
        Some(1),
        "pgBackRest 2.45 says \"not found\""
    );
    // As at the start of a recovery (`run` removes the mark), the queue is asked first even for
    // a segment it does not hold.
    let queued = spool(&host).join("pg-preseed-main.queued");
    assert!(queued.exists(), "the queue was asked in this \"recovery\"");
    fs::remove_file(&queued).expect("remove the mark");
    let (code, stderr) = archive_get(&absent, &host.pgdata, relative);
    assert_eq!(code, 255, "{stderr}");
    // The prefetch queue (turned on above) failed first and said so; then repo1, asked directly.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "pg-preseed archive-get {absent}: the prefetch queue in {} did not deliver it from repo1 (pgBackRest exited with status 103",
            spool(&host)
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("pg-preseed archive-get {absent}: repo1 could not be asked (pgBackRest exited with status 103")),
        "{stderr}"
    );
    assert!(
        stderr.contains("; not in repo2. Stopping recovery (exit 255)"),
        "{stderr}"
    );
    fs::remove_file(&queued).expect("remove the mark");
    let (code, stderr) = archive_get(&present, &host.pgdata, relative);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.lines().nth(1).is_some_and(|line| line.starts_with(&format!("pg-preseed archive-get {present}: fetched from repo2; could not ask repo1: pgBackRest exited with status 103"))),
        "{stderr}"
    );
    // Recovery that consults repo2 only (repo1 was unreachable when the restore was decided)
    // does not ask repo1 at all: repo2's answers alone decide.
    let (code, stderr) = archive_get_from(Some("2"), &absent, &host.pgdata, relative);
    assert_eq!((code, stderr.as_str()), (1, ""), "repo2 alone answered");
    let (code, stderr) = archive_get_from(Some("2"), &present, &host.pgdata, relative);
    assert_eq!((code, stderr.as_str()), (0, ""), "repo1 was not asked");
    // … while one it consults that cannot be asked still stops recovery.
    let (code, stderr) = archive_get_from(Some("1,2"), &absent, &host.pgdata, relative);
    assert_eq!(code, 255, "{stderr}");
    // A repository no longer in pgbackrest.repos is not asked; none left is no answer.
    let (code, stderr) = archive_get_from(Some("3"), &present, &host.pgdata, relative);
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("none of the repositories this recovery consults (repo3) is in pgbackrest.repos any more"),
        "{stderr}"
    );
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).expect("chmod back");

    // What must never read as "not there": the wrong directory, an unreadable config, a command
    // line that does not parse.
    let (code, stderr) = archive_get(&present, Utf8Path::new("/"), relative);
    assert_eq!(code, 255, "{stderr}");
    assert!(
        stderr.contains("run in /, but installed for PGDATA"),
        "{stderr}"
    );
    let broken = sandbox.path("broken.json");
    fs::write(&broken, b"{").expect("write");
    let output = testbed::as_postgres(bin())
        .args([
            "--config",
            broken.as_str(),
            "archive-get",
            &present,
            destination.as_str(),
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(255));
    let output = testbed::as_postgres(bin())
        .args([
            "--config",
            host.config_path.as_str(),
            "archive-get",
            "--no-such-flag",
            &present,
        ])
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A copy of repo1 as repo2 (another posix repository, "disk"), configured after the NFS-like
/// repo1: `[repo1 (nfs), repo2 (disk)]`. Returns repo2's path.
fn add_copy_as_repo2(sandbox: &Sandbox, host: &mut Host<'_>) -> Utf8PathBuf {
    let repo1 = host.pgbackrest.repos[0].clone();
    let repo2 = sandbox.path("repo2");
    testbed::run_ok(std::process::Command::new("cp").args(["-a", repo1.as_str(), repo2.as_str()]));
    host.pgbackrest.add_global(&format!("repo2-path={repo2}\n"));
    host.set(
        "/pgbackrest/repos",
        json!([{"number": 1, "name": "nfs"}, {"number": 2, "name": "disk"}]),
    );
    repo2
}

const REPO1_LEFT_OUT: &str = "repo1 (nfs): unreachable when the restore was decided";

/// Repository fallback with recovery (DESIGN.md's table, nixos-tests/repo-fallback.py): repo1,
/// the NFS share, is unreachable when the restore is decided, so the restore comes from repo2 and
/// recovery consults repo2 only. It replays every segment repo2 holds and ends although repo1 is
/// still down; `verify` passes with a warning that repo1 could not be asked, and the claim, the
/// receipt and `status` say recovery went without it. (When archive-get asked every configured
/// repository, this recovery could never end while repo1 was down.)
#[test]
fn repo1_down_from_the_start_recovery_completes_from_repo2() {
    let sandbox = Sandbox::new("rec-fallback");
    let (mut host, points) = disaster(&sandbox, true, false);
    add_copy_as_repo2(&sandbox, &mut host);
    let repo1 = host.pgbackrest.repos[0].clone();
    fs::rename(&repo1, sandbox.path("repo1-share-not-mounted")).expect("the share does not mount");

    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "restore");
    let output = run.all_output();
    for needle in [
        "repo1 (nfs) is unreachable".to_owned(),
        format!("recovery will not consult {REPO1_LEFT_OUT}"),
    ] {
        assert!(output.contains(&needle), "{needle} in:\n{output}");
    }
    let claim = host.claim().expect("the claim");
    assert_eq!(claim["source"]["repo"], 2, "{claim}");
    assert_eq!(claim["source"]["recovery_repos"], json!([2]), "{claim}");
    assert_eq!(
        claim["source"]["left_out"],
        json!([{"repo": 1, "repo_name": "nfs", "reason": "unreachable when the restore was decided"}]),
        "{claim}"
    );
    let auto = fs::read_to_string(host.pgdata.join("postgresql.auto.conf")).expect("auto.conf");
    assert!(
        auto.contains(&format!(
            "archive-get --pgdata {} --repos 2 %f \"%p\"",
            host.pgdata
        )),
        "{auto}"
    );

    let promoted = host.cluster.start_settled();
    let log = server_log(&host);
    assert!(promoted, "recovery must end while repo1 is down:\n{log}");
    assert_eq!(
        rows(&host.cluster),
        (BATCH, BATCH),
        "every archived segment was replayed from repo2"
    );
    assert!(!log.contains("could not be asked"), "{log}");

    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);
    let warning =
        "repo1 (nfs) was left out of recovery (unreachable when the restore was decided) \
                   and cannot be asked now either";
    assert!(
        verify.json()["warnings"].to_string().contains(warning),
        "{}",
        verify.all_output()
    );
    let receipt = host.receipt();
    assert_eq!(receipt["source"]["repo"], 2, "{receipt}");
    assert_eq!(receipt["source"]["left_out"][0]["repo"], 1, "{receipt}");
    assert!(
        receipt["recovery"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.starts_with(warning)),
        "{receipt}"
    );
    assert_eq!(
        receipt["recovery"]["next_segment"],
        next(&points.batch_b_segments[1]),
        "{receipt}"
    );
    let status = host.preseed_text(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("recovered without {REPO1_LEFT_OUT}")),
        "{}",
        status.stdout
    );
}

/// The protection the rule keeps: repo2 served the restore (repo1 was down), and its disk goes
/// away after the base backup is restored (`--archive-copy`: consistency from pg_wal alone).
/// Recovery consults repo2, cannot ask it, and stops instead of promoting — without asking
/// repo1, which it left out. With repo2 back, the next start completes recovery.
#[test]
fn repo2_that_served_the_restore_gone_mid_recovery_stops_it() {
    let sandbox = Sandbox::new("rec-fallback-gone");
    let (mut host, points) = disaster(&sandbox, true, true);
    let repo2 = add_copy_as_repo2(&sandbox, &mut host);
    let repo1 = host.pgbackrest.repos[0].clone();
    fs::rename(&repo1, sandbox.path("repo1-share-not-mounted")).expect("the share does not mount");
    host.preseed(&["run"]).expect_code(0);
    assert_eq!(host.claim().expect("the claim")["source"]["repo"], 2);

    let away = sandbox.path("repo2-disk-gone");
    fs::rename(&repo2, &away).expect("repo2 goes away");
    let promoted = host.cluster.start_settled();
    let log = server_log(&host);
    assert!(
        !promoted,
        "the server promoted with {:?} rows (A, B) of ({BATCH}, {BATCH}):\n{log}",
        rows(&host.cluster)
    );
    assert!(
        log.contains("repo2 (disk) could not be asked (pgBackRest exited with status 103"),
        "{log}"
    );
    assert!(
        log.contains("from archive: child process exited with exit code 255"),
        "{log}"
    );
    assert!(
        !log.contains("repo1 (nfs)"),
        "repo1 is not consulted:\n{log}"
    );
    host.preseed(&["verify", "--timeout", "5s"]).expect_code(4);
    assert!(!host.marker.exists(), "no receipt");

    fs::rename(&away, &repo2).expect("repo2 is back");
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    host.preseed(&["verify"]).expect_code(0);
    let receipt = host.receipt();
    assert_eq!(
        receipt["recovery"]["next_segment"],
        next(&points.batch_b_segments[1]),
        "{receipt}"
    );
    assert_eq!(receipt["source"]["left_out"][0]["repo"], 1, "{receipt}");
}

/// What the rule gives up, caught: repo2 lacks the newest WAL (batch B reached only repo1), and
/// repo1 was unreachable when the restore was decided. Recovery consults repo2, which answers
/// "not there", and promotes without batch B. repo1 comes back before `verify`: reachable and
/// holding the next segment, it fails the check (exit 4, no receipt), named as left out.
#[test]
fn a_left_out_repository_holding_more_wal_fails_verify() {
    let sandbox = Sandbox::new("rec-fallback-short");
    let (mut host, points) = disaster(&sandbox, true, false);
    let repo2 = add_copy_as_repo2(&sandbox, &mut host);
    for segment in &points.batch_b_segments {
        for file in archived(&repo2, segment) {
            fs::remove_file(&file).expect("batch B never reached repo2");
        }
    }
    let repo1 = host.pgbackrest.repos[0].clone();
    let away = sandbox.path("repo1-share-not-mounted");
    fs::rename(&repo1, &away).expect("the share does not mount");
    host.preseed(&["run"]).expect_code(0);
    assert!(
        host.cluster.start_settled(),
        "every repository recovery consults answered: it ends and promotes"
    );
    assert_eq!(rows(&host.cluster), (BATCH, 0), "batch B is only in repo1");

    fs::rename(&away, &repo1).expect("the share mounts again");
    let verify = host.preseed(&["verify"]);
    verify.expect_code(4);
    let output = verify.all_output();
    let before = offset(&points.batch_b_segments[0], -1);
    for needle in [
        format!("(in segment {before})"),
        "but repo1 (nfs), left out of recovery (unreachable when the restore was decided), is \
         reachable now and holds WAL on timeline 1 up to segment"
            .to_owned(),
        "WAL exists that was not replayed".to_owned(),
    ] {
        assert!(output.contains(&needle), "{needle} in:\n{output}");
    }
    assert!(!host.marker.exists(), "no receipt for a short recovery");
}

/// The drill restores with the same restore_command: unreadable segments stop its scratch
/// server instead of letting it promote and pass.
#[test]
fn drill_stops_instead_of_passing_when_segments_are_unreadable() {
    let sandbox = Sandbox::new("rec-drill");
    let (host, points) = disaster(&sandbox, true, false);
    let repo = host.pgbackrest.repos[0].clone();
    for segment in &points.batch_b_segments {
        for file in archived(&repo, segment) {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).expect("chmod 000");
        }
    }
    let drill = host.preseed(&[
        "drill",
        "--scratch",
        sandbox.shared_dir("scratch").as_str(),
        "--timeout",
        "120s",
    ]);
    drill.expect_code(4);
    // The scratch server stopped (FATAL from the restore_command) instead of promoting.
    let output = drill.all_output();
    assert!(output.contains("before recovery ended"), "{output}");
    assert!(output.contains("repo1 could not be asked"), "{output}");
}

/// Point-in-time recovery to each kind of target between batch A and batch B (both after the
/// backup, in archived WAL): batch A is there, batch B is not; the receipt, `status` and the
/// metrics say the target was reached.
fn pitr(kind: &str, value: impl Fn(&Points) -> String, reason: &str) {
    let sandbox = Sandbox::new(&format!("pitr-{kind}"));
    let (mut host, points) = disaster(&sandbox, false, false);
    let value = value(&points);
    host.set("/pgbackrest/target", json!({"type": kind, "value": value}));
    let metrics = sandbox.shared_dir("metrics").join("pg-preseed.prom");
    host.set("/metrics", json!({"textfile": metrics}));

    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore", "{boot:#?}");
    assert_eq!(
        rows(&host.cluster),
        (BATCH, 0),
        "batch A present, batch B absent"
    );

    let receipt = host.receipt();
    assert_eq!(receipt["source"]["target"]["type"], kind, "{receipt}");
    assert_eq!(receipt["source"]["target"]["value"], value.as_str());
    let recovery = &receipt["recovery"];
    assert_eq!(recovery["target_reached"], true, "{receipt}");
    assert!(
        recovery["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with(reason),
        "{receipt}"
    );
    let status = host.preseed_text(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("recovery reached its target {kind} \"{value}\"")),
        "{}",
        status.stdout
    );
    let text = fs::read_to_string(&metrics).expect("the metrics textfile");
    assert!(
        text.contains(&format!(
            "pg_preseed_receipt_recovery_target_reached{{type=\"{kind}\",target=\"{value}\"}} 1"
        )),
        "{text}"
    );
    eprintln!(
        "PITR to {kind} {value}: {BATCH} rows of batch A, 0 of batch B; {}",
        status
            .stdout
            .lines()
            .find(|l| l.starts_with("receipt"))
            .unwrap_or_default()
    );
}

#[test]
fn pitr_to_a_time() {
    pitr("time", |p| p.time.clone(), "before ");
}

#[test]
fn pitr_to_a_restore_point() {
    pitr(
        "name",
        |p| p.restore_point.clone(),
        "at restore point \"before batch B\"",
    );
}

#[test]
fn pitr_to_an_lsn() {
    pitr("lsn", |p| p.lsn.clone(), "after LSN ");
}

/// A target no backup can reach, or beyond the archive: refused at decision time with the
/// reason, before anything is written to PGDATA (no claim, PGDATA still empty).
#[test]
fn unreachable_targets_are_refused_before_anything_is_written() {
    let sandbox = Sandbox::new("pitr-refused");
    let (mut host, _points) = disaster(&sandbox, false, false);
    let info: serde_json::Value =
        serde_json::from_slice(&host.pgbackrest.run(&["--output=json", "info"]).stdout)
            .expect("info JSON");
    let stop = info[0]["backup"][0]["timestamp"]["stop"]
        .as_i64()
        .expect("a stop time");
    // PostgreSQL's form: "2026-11-27 18:00:11+00".
    let pg_time = |time: std::time::SystemTime| {
        humantime::format_rfc3339_seconds(time)
            .to_string()
            .replace('T', " ")
            .replace('Z', "+00")
    };
    let before = pg_time(
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(stop - 3600).expect("positive")),
    );
    let future = pg_time(std::time::SystemTime::now() + Duration::from_secs(86_400));
    let cases = [
        (
            "time",
            before.as_str(),
            "is before the end of the oldest backup here",
        ),
        ("time", future.as_str(), "is in the future"),
        ("lsn", "0/1", "is before the end of the oldest backup here"),
        ("lsn", "FF/0", "is beyond the end of the archive"),
    ];
    for (kind, value, needle) in cases {
        host.set("/pgbackrest/target", json!({"type": kind, "value": value}));
        let run = host.preseed(&["run"]);
        run.expect_code(3);
        assert_eq!(run.decision(), "refuse");
        assert!(
            run.json()["reasons"].to_string().contains(needle),
            "{kind} {value}: {needle} in {}",
            run.stdout
        );
        assert!(
            testbed::tree(&host.pgdata).is_empty(),
            "{kind} {value}: PGDATA untouched"
        );
        assert!(host.claim().is_none(), "{kind} {value}: no claim");
        eprintln!(
            "{kind} {value}: refused: {}",
            run.json()["reasons"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r.to_string().contains(needle)))
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
}

/// The fast path (issue 13, replay speed): with `pgbackrest.archive_get.async` on (the
/// default) the segments come from pgBackRest's asynchronous queue, and recovery still reaches the
/// end of the archive — the first segment past it is "not there" only after a direct ask.
#[test]
fn the_prefetch_queue_delivers_and_recovery_reaches_the_end_of_the_archive() {
    let sandbox = Sandbox::new("rec-queue");
    let (mut host, points) = disaster(&sandbox, true, false);
    turn_on_the_prefetch_queue(&mut host);
    let log_dir = pgbackrest_file_log(&host, "detail");
    host.preseed(&["run"]).expect_code(0);
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    host.preseed(&["verify"]).expect_code(0);
    let receipt = host.receipt();
    assert_eq!(
        receipt["recovery"]["end_segment"],
        points.batch_b_segments[1].as_str(),
        "{receipt}"
    );
    // The queue's process (pgBackRest's `archive-get:async`) fetched them.
    let queued = fs::read_to_string(log_dir.join("main-archive-get-async.log"))
        .unwrap_or_else(|e| format!("{e}: {:?}", testbed::tree(&log_dir)));
    for segment in &points.batch_b_segments {
        assert!(
            queued.contains(&format!("found {segment} in the repo1")),
            "{segment} did not come from the queue:\n{queued}"
        );
    }
    let log = server_log(&host);
    assert!(!log.contains("did not deliver"), "{log}");
    assert!(
        spool(&host).join("archive/main/in").is_dir(),
        "the queue lives in the configured spool path"
    );
}

/// A spool the PostgreSQL user cannot write (or that cannot be created): the queue never
/// delivers, each segment is asked for directly (one line each in PostgreSQL's log), and recovery
/// still reaches the end of the archive — the queue is an accelerator, never the judge of "not
/// there". A repository that then cannot be asked still stops recovery.
#[test]
fn an_unwritable_spool_falls_back_to_asking_directly() {
    let sandbox = Sandbox::new("rec-spool");
    let (mut host, points) = disaster(&sandbox, true, false);
    turn_on_the_prefetch_queue(&mut host);
    let spool_dir = sandbox.path("root-spool");
    fs::create_dir_all(&spool_dir).expect("mkdir");
    fs::set_permissions(&spool_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    // Owned by root, 0755: the PostgreSQL user cannot create the queue in it.
    host.set("/pgbackrest/archive_get/spool_path", json!(spool_dir));
    host.preseed(&["run"]).expect_code(0);

    // First a repository that cannot be asked: recovery stops.
    let repo = host.pgbackrest.repos[0].clone();
    let hidden: Vec<Utf8PathBuf> = archived(&repo, &points.batch_b_segments[1]);
    for file in &hidden {
        fs::set_permissions(file, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    }
    let promoted = host.cluster.start_settled();
    let log = server_log(&host);
    assert!(
        !promoted,
        "promoted with {:?} rows:\n{log}",
        rows(&host.cluster)
    );
    let second = &points.batch_b_segments[1];
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{second}\" from archive: child process exited with exit code 255"
        )),
        "{log}"
    );
    for file in &hidden {
        fs::set_permissions(file, fs::Permissions::from_mode(0o640)).expect("chmod back");
    }
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    let log = server_log(&host);
    assert!(
        log.contains(&format!(
            "pg-preseed archive-get {}: the prefetch queue in {spool_dir} did not deliver it from repo1",
            points.batch_b_segments[0]
        )),
        "{log}"
    );
    host.preseed(&["verify"]).expect_code(0);
    assert_eq!(host.receipt()["recovery"]["end_segment"], second.as_str());
    assert!(
        !spool_dir.join("archive").exists(),
        "nothing was written into the unwritable spool"
    );
}

/// A segment left in the queue by an earlier recovery is handed over by pgBackRest by name
/// alone. One that is not the archive's file (the stanza re-created, the archive rewritten)
/// would end recovery early with rows missing; `run` empties the queue before it restores.
#[test]
fn a_segment_left_in_the_queue_by_an_earlier_recovery_is_not_used() {
    let sandbox = Sandbox::new("rec-stale");
    let (mut host, points) = disaster(&sandbox, true, false);
    turn_on_the_prefetch_queue(&mut host);
    let queue = spool(&host).join("archive/main/in");
    fs::create_dir_all(&queue).expect("mkdir queue");
    for dir in ["archive", "archive/main", "archive/main/in"] {
        testbed::chown_postgres(&spool(&host).join(dir));
    }
    let stale = queue.join(&points.batch_b_segments[0]);
    fs::write(&stale, vec![0x5a_u8; 16 << 20]).expect("write a stale segment");
    testbed::chown_postgres(&stale);
    host.preseed(&["run"]).expect_code(0);
    assert!(!stale.exists(), "run emptied the queue");
    host.cluster.start();
    host.cluster.wait_promoted();
    assert_eq!(rows(&host.cluster), (BATCH, BATCH));
    host.preseed(&["verify"]).expect_code(0);
}
