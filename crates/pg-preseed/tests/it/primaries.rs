//! Tier 2: never two primaries on one repository (issue 14), on real PostgreSQL and pgBackRest.
//!
//! An "old primary" (its own sandbox: PGDATA, socket, pgBackRest config) archives into a posix
//! repository; a second host (another sandbox) restores from that same repository, as a
//! rehearsal on a spare machine built from the production configuration would. The old primary
//! either keeps writing — a loop of inserts and WAL switches, each segment archived — or is
//! stopped before the restore.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use testbed::{Cluster, Host, Pgbackrest, Sandbox};

use crate::common::bin;

/// The old primary: a cluster with one full backup in `repo`, archiving there.
struct OldPrimary {
    cluster: Cluster,
    repo: Utf8PathBuf,
}

fn old_primary(sandbox: &Sandbox) -> OldPrimary {
    let pgdata = sandbox.pg_dir("old-primary");
    let mut cluster = sandbox.cluster(&pgdata);
    cluster.initdb();
    let repo = sandbox.shared_dir("repo1");
    let pgbackrest = Pgbackrest::write(sandbox, &cluster, std::slice::from_ref(&repo));
    cluster.pgbackrest_config = Some(pgbackrest.config.clone());
    cluster.start();
    pgbackrest.run(&["stanza-create"]);
    cluster.psql("CREATE TABLE writes (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())");
    cluster.psql("INSERT INTO writes DEFAULT VALUES");
    pgbackrest.run(&["--type=full", "backup"]);
    switch_and_archive(&cluster);
    OldPrimary { cluster, repo }
}

fn last_archived(cluster: &Cluster) -> String {
    cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
}

/// Writes, switches to a new segment and waits until the closed one is archived.
fn switch_and_archive(cluster: &Cluster) -> String {
    cluster.psql("INSERT INTO writes DEFAULT VALUES");
    let segment = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    cluster.psql("SELECT pg_switch_wal()");
    testbed::wait_for(
        &format!("{segment} to be archived"),
        Duration::from_secs(60),
        || last_archived(cluster).as_str() >= segment.as_str(),
    );
    segment
}

/// The old primary going on as if nothing happened: an insert and a WAL switch every 150 ms,
/// each segment archived by its own archive_command, until dropped.
struct Writing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn keep_writing(cluster: &Cluster) -> Writing {
    let stop = Arc::new(AtomicBool::new(false));
    let segments = Arc::new(AtomicU64::new(0));
    let writer = cluster.clone();
    let (thread_stop, thread_segments) = (Arc::clone(&stop), Arc::clone(&segments));
    let from = last_archived(cluster);
    let thread = std::thread::spawn(move || {
        while !thread_stop.load(Ordering::SeqCst) {
            writer.psql("INSERT INTO writes DEFAULT VALUES");
            writer.psql("SELECT pg_switch_wal()");
            thread_segments.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    // It is archiving: a few segments further.
    testbed::wait_for(
        "the old primary to archive while it writes",
        Duration::from_secs(60),
        || segments.load(Ordering::SeqCst) >= 3 && last_archived(cluster) > from,
    );
    Writing {
        stop,
        thread: Some(thread),
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The second host: a PGDATA of its own, the old primary's repository, nothing in the way of the
/// check but the guard (no SQL checks: the old primary is not the golden cluster).
fn second_host<'a>(sandbox: &'a Sandbox, repo: &Utf8Path, mode: &str, watch: &str) -> Host<'a> {
    let pgdata = sandbox.pg_dir("pgdata");
    let cluster = sandbox.cluster(&pgdata);
    let pgbackrest = Pgbackrest::write(sandbox, &cluster, &[repo.to_owned()]);
    let mut host = Host::from_parts(sandbox, bin(), cluster, pgbackrest);
    host.set("/verify/sql", json!([]));
    host.set("/second_primary", json!({"mode": mode, "watch": watch}));
    // With the prefetch queue on: as many helper processes as an 8-CPU host would run (the
    // default is one per CPU). Each round of the queue's process then costs about 1 s here,
    // which is what made recovery through the queue follow a still-writing old primary
    // without end (see the_prefetch_queue_behind_a_growing_archive_hands_over_to_direct_asks).
    host.set("/pgbackrest/archive_get/process_max", json!(8));
    host
}

/// What the repository's archive holds for `timeline`: its history file, and its segments.
fn archived(repo: &Utf8Path, timeline: u32) -> (bool, Vec<String>) {
    let prefix = format!("{timeline:08X}");
    let files: Vec<String> = testbed::tree(&repo.join("archive/main"))
        .into_iter()
        .filter_map(|path| Utf8Path::new(&path).file_name().map(str::to_owned))
        .collect();
    let history = files.contains(&format!("{prefix}.history"));
    let segments = files
        .into_iter()
        .filter(|name| name.len() > 24 && name.starts_with(&prefix) && name.as_bytes()[24] == b'-')
        .collect();
    (history, segments)
}

/// The timeline the restored server went on with at promotion.
fn own_timeline(host: &Host<'_>) -> u32 {
    let walfile = host
        .cluster
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    u32::from_str_radix(&walfile[..8], 16).expect("a timeline")
}

fn postgres_log(host: &Host<'_>) -> String {
    fs::read_to_string(&host.cluster.log).unwrap_or_default()
}

fn auto_conf(host: &Host<'_>) -> String {
    fs::read_to_string(host.pgdata.join("postgresql.auto.conf")).expect("postgresql.auto.conf")
}

/// Proves the restored server archived nothing: no history file and no segment of its own
/// timeline in the repository, its archiver never succeeded and did try (the hold said no), and
/// the files wait in pg_wal.
fn assert_nothing_archived_by(host: &Host<'_>, repo: &Utf8Path) {
    let timeline = own_timeline(host);
    assert!(timeline >= 2, "the restored server promoted");
    testbed::wait_for(
        "the restored server's archiver to try (and be held)",
        Duration::from_secs(30),
        || {
            host.cluster
                .psql("SELECT failed_count > 0 FROM pg_stat_archiver")
                == "t"
        },
    );
    let (history, segments) = archived(repo, timeline);
    assert!(
        !history && segments.is_empty(),
        "the restored server archived into the repository: history {history}, {segments:?}"
    );
    assert_eq!(
        host.cluster
            .psql("SELECT archived_count FROM pg_stat_archiver"),
        "0"
    );
    let waiting = testbed::tree(&host.pgdata.join("pg_wal/archive_status"));
    assert!(
        waiting.contains(&format!("{timeline:08X}.history.ready")),
        "its history file waits in pg_wal: {waiting:?}"
    );
    let log = postgres_log(host);
    assert!(
        log.contains("pg-preseed archive-hold: not archiving"),
        "the hold says why in PostgreSQL's log:\n{log}"
    );
}

/// Waits until the restored server's own timeline (history file and a segment) is in the
/// repository: it archives.
fn wait_archiving(host: &Host<'_>, repo: &Utf8Path) {
    let timeline = own_timeline(host);
    host.cluster.psql("SELECT pg_switch_wal()");
    testbed::wait_for(
        "the restored server's timeline in the repository",
        Duration::from_secs(60),
        || {
            let (history, segments) = archived(repo, timeline);
            if !history || segments.is_empty() {
                // A switch needs something written since the last one.
                let _ = host
                    .cluster
                    .try_psql("CREATE TABLE IF NOT EXISTS mine (i int); INSERT INTO mine VALUES (1); SELECT pg_switch_wal()");
            }
            history && !segments.is_empty()
        },
    );
}

/// The scenario: the old primary keeps writing while a second host restores from its
/// repository. `run` restores, looks again, sees the old primary's new WAL and refuses (exit 3);
/// started anyway (the restore unit is skipped once PGDATA holds a cluster), the server runs with
/// archiving held and `verify` refuses too, naming the repository, the other writer's newest
/// segment and its time — not a short recovery. Nothing of the second server reaches the
/// repository. The way on when it is to be the primary: fence the old one and restore again.
#[test]
fn old_primary_still_archiving_refused_and_nothing_archived_by_the_second() {
    let old_box = Sandbox::new("sp-old");
    let old = old_primary(&old_box);
    let new_box = Sandbox::new("sp-new");
    let host = second_host(&new_box, &old.repo, "refuse", "4s");
    let writing = keep_writing(&old.cluster);

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let output = run.all_output();
    for needle in [
        "another server is writing to repo1: it archived WAL up to segment 00000001",
        "this server's archiving is held (archive_command = pg-preseed archive-hold)",
        "--allow-second-primary",
        "fence the other",
    ] {
        assert!(output.contains(needle), "{needle} in:\n{output}");
    }
    assert!(
        auto_conf(&host).contains(" archive-hold %f'"),
        "{}",
        auto_conf(&host)
    );
    let claim = host.claim().expect("the claim stays");
    let guard = &claim["second_primary"];
    assert!(guard["marks"][0]["newest_segment"].is_string(), "{claim}");
    assert!(guard["hold"]["command"]
        .as_str()
        .is_some_and(|c| c.ends_with(" archive-hold %f")));
    assert!(!host.marker.exists(), "no receipt");

    // The next start of PostgreSQL: systemd skips the restore unit (PGDATA holds a cluster).
    host.preseed(&["initdb-guard"]).expect_code(0);
    host.cluster.start();
    host.cluster.wait_promoted();
    let verify = host.preseed(&["verify"]);
    verify.expect_code(3);
    assert_eq!(verify.decision(), "refused");
    let report = verify.json();
    let error = report["error"].as_str().unwrap_or_default().to_owned();
    for needle in [
        "another server is writing to repo1: it archived WAL up to segment 00000001",
        "the file's time in the repository",
        "after this restore was decided",
        "this server's archiving stays held",
    ] {
        assert!(error.contains(needle), "{needle} in: {error}");
    }
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains("ok: recovery reached the end of the archive")
            && reasons.contains("FAILED: no other server writes the repository"),
        "the other writer, not a short recovery: {reasons}"
    );
    assert!(!host.marker.exists(), "no receipt");
    eprintln!(
        "refusal (verify, exit 3):\n  error: {error}\n  next: {}",
        report["next"]
    );
    assert_nothing_archived_by(&host, &old.repo);
    // The old primary archives on, undisturbed.
    let archived_then = last_archived(&old.cluster);
    testbed::wait_for(
        "the old primary to archive on",
        Duration::from_secs(30),
        || last_archived(&old.cluster) > archived_then,
    );

    // Fence the old primary (everything it committed archived first), restore again.
    drop(writing);
    switch_and_archive(&old.cluster);
    let rows = old.cluster.psql("SELECT count(*) FROM writes");
    old.cluster.stop();
    host.wipe_pgdata();
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore", "{boot:#?}");
    assert_eq!(
        host.cluster.psql("SELECT count(*) FROM writes"),
        rows,
        "every row the old primary wrote"
    );
    wait_archiving(&host, &old.repo);
}

/// The old primary stopped before the restore: restored, archiving held while the server starts
/// and recovers (initdb-guard puts the hold back should `run` have stopped before writing it),
/// verify watches, finds nobody, releases — and a segment of the new timeline reaches the
/// repository.
#[test]
fn old_primary_stopped_first_restored_and_archiving_after_verify() {
    let old_box = Sandbox::new("sp-stopped-old");
    let old = old_primary(&old_box);
    switch_and_archive(&old.cluster);
    let rows = old.cluster.psql("SELECT count(*) FROM writes");
    old.cluster.stop();
    let new_box = Sandbox::new("sp-stopped-new");
    let host = second_host(&new_box, &old.repo, "refuse", "3s");

    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "restore");
    let held = auto_conf(&host);
    assert!(held.contains(" archive-hold %f'"), "{held}");

    // `run` cut off between pgBackRest's end and the hold: postgresql.auto.conf without it.
    let mut without = held
        .lines()
        .filter(|line| !line.contains("archive-hold") && !line.starts_with("# pg-preseed"))
        .collect::<Vec<_>>()
        .join("\n");
    without.push('\n');
    fs::write(host.pgdata.join("postgresql.auto.conf"), without).expect("write");
    let guard = host.preseed(&["initdb-guard"]);
    guard.expect_code(0);
    assert!(
        guard.json()["warnings"]
            .to_string()
            .contains("put the archive_command hold back"),
        "{}",
        guard.stdout
    );
    assert!(auto_conf(&host).contains(" archive-hold %f'"));

    host.cluster.start();
    host.cluster.wait_promoted();
    assert_nothing_archived_by(&host, &old.repo);

    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);
    let reasons = verify.json()["reasons"].to_string();
    for needle in [
        "ok: recovery reached the end of the archive",
        "ok: no other server writes the repository",
        "archiving released (archive_command: pgbackrest --stanza=main archive-push %p)",
    ] {
        assert!(reasons.contains(needle), "{needle} in {reasons}");
    }
    let receipt = host.receipt();
    let check = receipt["checks"]
        .as_array()
        .and_then(|checks| {
            checks
                .iter()
                .find(|c| c["name"] == "no other server writes the repository")
        })
        .cloned()
        .expect("the check in the receipt");
    assert_eq!(check["ok"], true, "{receipt}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no WAL or backup from another server")),
        "{check}"
    );
    assert!(!auto_conf(&host).contains("archive-hold"));
    assert_eq!(host.cluster.psql("SELECT count(*) FROM writes"), rows);
    wait_archiving(&host, &old.repo);
    eprintln!("watched: {}", check["detail"]);
}

/// `second_primary.mode = "warn"`: the same detection, but the restore is verified, archiving is
/// released and the other writer is a warning (in the report and the receipt's check).
#[test]
fn warn_mode_restores_releases_and_warns() {
    let old_box = Sandbox::new("sp-warn-old");
    let old = old_primary(&old_box);
    let new_box = Sandbox::new("sp-warn-new");
    let host = second_host(&new_box, &old.repo, "warn", "10s");
    let _writing = keep_writing(&old.cluster);

    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert!(
        run.json()["warnings"]
            .to_string()
            .contains("another server is writing to repo1"),
        "{}",
        run.stdout
    );
    host.preseed(&["initdb-guard"]).expect_code(0);
    host.cluster.start();
    host.cluster.wait_promoted();
    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);
    let warnings = verify.json()["warnings"].to_string();
    for needle in [
        "another server is writing to repo1: it archived WAL up to segment 00000001",
        "archiving is released all the same (second_primary.mode = \\\"warn\\\")",
    ] {
        assert!(warnings.contains(needle), "{needle} in {warnings}");
    }
    assert!(host.receipt()["checks"]
        .to_string()
        .contains("WARNING: another server is writing to repo1"));
    assert!(!auto_conf(&host).contains("archive-hold"));
    wait_archiving(&host, &old.repo);
}

/// The way on when this server is to archive next to the other writer: after the refusal,
/// `run --allow-second-primary` records the allowance in the claim; the next `verify` warns and
/// releases archiving.
#[test]
fn allowed_second_primary_after_a_refusal() {
    let old_box = Sandbox::new("sp-allow-old");
    let old = old_primary(&old_box);
    let new_box = Sandbox::new("sp-allow-new");
    let host = second_host(&new_box, &old.repo, "refuse", "10s");
    let _writing = keep_writing(&old.cluster);
    host.preseed(&["run"]).expect_code(3);
    host.preseed(&["initdb-guard"]).expect_code(0);
    host.cluster.start();
    host.cluster.wait_promoted();
    host.preseed(&["verify"]).expect_code(3);

    let allow = host.preseed(&["run", "--allow-second-primary"]);
    allow.expect_code(0);
    assert_eq!(allow.decision(), "skip");
    assert!(host.claim().expect("the claim")["second_primary"]["allowed_at"].is_string());
    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);
    assert!(
        verify.json()["warnings"]
            .to_string()
            .contains("archiving is released all the same (`run --allow-second-primary` at"),
        "{}",
        verify.stdout
    );
    assert!(host.marker.exists());
    wait_archiving(&host, &old.repo);
}

/// `second_primary.mode = "off"`: today's behaviour. No hold: the restored server archives its
/// new timeline from its first start, next to the old primary — and `verify`, which cannot tell
/// another writer from a short recovery without the decision's record, calls the old primary's
/// newer WAL a recovery that stopped short.
#[test]
fn off_mode_is_todays_behaviour() {
    let old_box = Sandbox::new("sp-off-old");
    let old = old_primary(&old_box);
    let new_box = Sandbox::new("sp-off-new");
    let host = second_host(&new_box, &old.repo, "off", "10s");
    let _writing = keep_writing(&old.cluster);

    host.preseed(&["run"]).expect_code(0);
    assert!(!auto_conf(&host).contains("archive-hold"));
    assert!(host.claim().expect("the claim")["second_primary"].is_null());
    host.preseed(&["initdb-guard"]).expect_code(0);
    host.cluster.start();
    host.cluster.wait_promoted();
    let timeline = own_timeline(&host);
    testbed::wait_for(
        "the restored server to archive its history file",
        Duration::from_secs(60),
        || archived(&old.repo, timeline).0,
    );
    // The old primary two segments further than when the second one promoted.
    let then = last_archived(&old.cluster);
    testbed::wait_for("two more segments", Duration::from_secs(60), || {
        let now = last_archived(&old.cluster);
        u64::from_str_radix(&now[16..], 16).unwrap_or(0)
            >= u64::from_str_radix(&then[16..], 16).unwrap_or(0) + 2
    });
    let verify = host.preseed(&["verify"]);
    verify.expect_code(4);
    let output = verify.all_output();
    assert!(
        output.contains("recovery stopped before the end of the archive"),
        "{output}"
    );
    assert!(!output.contains("another server is writing"), "{output}");
}

/// The segment `by` after `segment` in the same 4 GiB log of the same timeline.
fn segment_after(segment: &str, by: i64) -> String {
    let number = i64::from_str_radix(&segment[16..], 16).expect("hex") + by;
    format!("{}{number:08X}", &segment[..16])
}

/// `pg-preseed archive-get` as PostgreSQL runs it: as postgres, in PGDATA, with a destination
/// relative to it. Its exit status and stderr.
fn restore_command(host: &Host<'_>, wal: &str) -> (i32, String) {
    let output = testbed::as_postgres(bin())
        .current_dir(&host.pgdata)
        .args(["--config", host.config_path.as_str(), "archive-get"])
        .args(["--pgdata", host.pgdata.as_str(), wal, "pg_wal/RECOVERYXLOG"])
        .output()
        .expect("run archive-get");
    let _ = fs::remove_file(host.pgdata.join("pg_wal/RECOVERYXLOG"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Why primaries::warn_mode… and old_primary_still_archiving… timed out with the prefetch queue
/// on (commit 87bd1e9): pgBackRest 2.45's `archive-get --archive-async`, asked for a segment
/// its queue does not hold, starts its asynchronous process again and waits for it; at the head
/// of an archive another server keeps growing, each such round found the segment archived
/// meanwhile, so the queue never said "not there" and replay followed the writer, a process per
/// round, without end. Step by step, with the old primary archiving one segment when told: a
/// segment the queue does not hold is asked directly — found if archived, "not there" at once if
/// not — and starts no process.
#[test]
fn the_prefetch_queue_behind_a_growing_archive_hands_over_to_direct_asks() {
    let old_box = Sandbox::new("sp-queue-old");
    let old = old_primary(&old_box);
    let new_box = Sandbox::new("sp-queue-new");
    let mut host = second_host(&new_box, &old.repo, "off", "10s");
    host.set("/pgbackrest/archive_get/async", json!(true));
    let conf = fs::read_to_string(&host.pgbackrest.config).expect("read pgbackrest.conf");
    fs::write(
        &host.pgbackrest.config,
        conf.replace("log-level-file=off", "log-level-file=detail"),
    )
    .expect("write pgbackrest.conf");
    let async_log = host
        .pgbackrest
        .config
        .with_file_name("log")
        .join("main-archive-get-async.log");
    // The rounds of the queue's process (pgBackRest's `archive-get:async`) so far.
    let rounds = || {
        fs::read_to_string(&async_log)
            .unwrap_or_default()
            .matches("archive-get:async command begin")
            .count()
    };
    switch_and_archive(&old.cluster);
    host.preseed(&["run"]).expect_code(0);
    let spool = Utf8PathBuf::from(
        host.config["pgbackrest"]["archive_get"]["spool_path"]
            .as_str()
            .expect("the harness sets the spool path"),
    );
    let lock = spool.join("lock/main-archive.lock");
    let round_ended = || {
        testbed::wait_for(
            "the queue's process to end",
            Duration::from_secs(30),
            || {
                // As postgres: flock creates the file when it is missing, and pgBackRest must
                // still be able to open it.
                testbed::as_postgres("flock")
                    .args(["-n", lock.as_str(), "true"])
                    .status()
                    .is_ok_and(|status| status.success())
            },
        );
    };

    let end = last_archived(&old.cluster);
    let beyond = segment_after(&end, 1);
    // The first segment of the recovery goes through the queue and starts its process, which
    // fetches the rest of the archive ahead.
    assert_eq!(
        restore_command(&host, &segment_after(&end, -1)),
        (0, String::new())
    );
    testbed::wait_for(
        "the queue to hold the archive's last segment",
        Duration::from_secs(30),
        || spool.join("archive/main/in").join(&end).exists(),
    );
    round_ended();
    // Held: taken from the queue, which starts its next round (it is less than half full). The
    // foreground forks that round and returns without waiting for it: wait for its first line
    // (checking the lock at once can come before the round has taken it; CI saw 1 round here).
    assert_eq!(restore_command(&host, &end), (0, String::new()));
    testbed::wait_for(
        "the queue's next round to begin",
        Duration::from_secs(30),
        || rounds() == 2,
    );
    round_ended();
    assert_eq!(
        rounds(),
        2,
        "{}",
        fs::read_to_string(&async_log).unwrap_or_default()
    );

    assert_eq!(switch_and_archive(&old.cluster), beyond, "the archive grew");
    assert_eq!(restore_command(&host, &beyond), (0, String::new()));
    // Where the archive ends now: "not there", so recovery ends.
    assert_eq!(
        restore_command(&host, &segment_after(&end, 2)),
        (1, String::new())
    );
    assert_eq!(
        rounds(),
        2,
        "asked directly, neither started the queue's process:\n{}",
        fs::read_to_string(&async_log).unwrap_or_default()
    );
}
