//! Tier 2: what happens after a restore (issue 13) — the post-restore hook runs exactly once per
//! verified restore or fresh start, is retried after a failure and never run again once it
//! succeeded, keeps pgBackRest's credentials away from the hook and every secret out of argv,
//! logs and files; the story of the restore in `status`, the journal and the metrics; and
//! recovery options configured for pgBackRest that never reach a command line.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde_json::{json, Value};
use testbed::{golden, Host, Sandbox};

use crate::common::{bin, provisioned};

/// The hook a test installs: SQL that counts its runs in a table, and a script that counts its
/// runs in a file, dumps its environment, reaches the server with psql through the environment
/// alone, and fails, hangs or dawdles when the test says so (`mode`).
struct Hook {
    dir: Utf8PathBuf,
    script: Utf8PathBuf,
}

/// The argument of the hanging script's child: unique, so the test can look for the process.
const HANG_ARG: &str = "2718.2818";

impl Hook {
    fn install(sandbox: &Sandbox, host: &mut Host<'_>, extra_sql: &[&str]) -> Hook {
        let dir = sandbox.shared_dir("hook");
        let script = sandbox.path("hook.sh");
        let psql = testbed::pg_bin_dir().join("psql");
        fs::write(
            &script,
            format!(
                r#"#!/bin/sh
set -eu
out={dir}
n=$(( $(cat "$out/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$out/count"
env -0 > "$out/env.$n"
mode=$(cat "$out/mode" 2>/dev/null || echo ok)
case "$mode" in
  fail) echo "hook failing on purpose: HOOK-STDERR-MARK" >&2; exit 3 ;;
  hang) sleep {HANG_ARG} & wait ;;
  slow) sleep 1.5 ;;
esac
{psql} -XAt -c "SELECT current_user || '@' || current_database()" > "$out/psql.$n"
echo "hook stdout: run $n done"
"#
            ),
        )
        .expect("write the hook");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut sql = vec![
            "CREATE TABLE IF NOT EXISTS hook_sql_runs (n serial, at timestamptz DEFAULT clock_timestamp())",
            "INSERT INTO hook_sql_runs DEFAULT VALUES",
        ];
        sql.extend_from_slice(extra_sql);
        host.set(
            "/post_restore",
            json!({"script": script, "sql": sql, "timeout": "2min"}),
        );
        Hook { dir, script }
    }

    fn mode(&self, mode: &str) {
        fs::write(self.dir.join("mode"), mode).expect("write the mode");
    }

    /// How many times the script started.
    fn runs(&self) -> u32 {
        fs::read_to_string(self.dir.join("count"))
            .map_or(0, |text| text.trim().parse().expect("a count"))
    }

    /// The environment the script's `n`th run had.
    fn env(&self, n: u32) -> BTreeMap<String, String> {
        let bytes = fs::read(self.dir.join(format!("env.{n}"))).expect("the env dump");
        bytes
            .split(|&b| b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (key, value) = entry.split_once('=')?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect()
    }
}

/// Rows of the table the hook's SQL inserts into (the server must run).
fn sql_runs(host: &Host<'_>) -> String {
    host.cluster
        .try_psql("SELECT count(*) FROM hook_sql_runs")
        .unwrap_or_else(|| "none".to_owned())
}

/// PostgreSQL stopped and started again, then the verify unit: what systemd does at the next
/// start of postgresql.service (the verify unit requires it).
fn restart_and_verify(host: &Host<'_>) -> testbed::Run {
    host.cluster.stop();
    host.cluster.start();
    host.preseed(&["verify"])
}

fn status_text(host: &Host<'_>) -> String {
    host.preseed_text(&["status"]).stdout
}

/// After a restore the hook runs once — SQL, then the script with the receipt's facts and
/// libpq's variables in its environment — before the receipt, which records it; a normal boot
/// (no claim) and verify run by hand do not run it again. The hook runs while the restored
/// server's archiving is still held (issue 14), which verify releases after it.
#[test]
fn post_restore_hook_runs_once_after_a_restore_not_on_a_normal_boot() {
    let sandbox = Sandbox::new("hook-once");
    let mut host = Host::new(&sandbox, bin(), 1);
    let hook = Hook::install(
        &sandbox,
        &mut host,
        &["CREATE TABLE hook_saw AS SELECT current_setting('archive_command') AS archive_command"],
    );
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore");
    assert_eq!(hook.runs(), 1);
    assert_eq!(sql_runs(&host), "1", "the SQL ran once, before the script");
    let during = host
        .cluster
        .try_psql("SELECT archive_command FROM hook_saw")
        .expect("the hook's table");
    assert!(
        during.contains("archive-hold"),
        "the hook ran with archiving held: {during}"
    );
    let after = host
        .cluster
        .try_psql("SHOW archive_command")
        .expect("SHOW archive_command");
    assert!(
        !after.contains("archive-hold") && after.contains("archive-push"),
        "verify released archiving after the hook: {after}"
    );

    let golden = testbed::Golden::get();
    let env = hook.env(1);
    for (key, expected) in [
        ("PG_PRESEED_ACTION", "restored"),
        ("PG_PRESEED_REPO", "1"),
        ("PG_PRESEED_REPO_NAME", ""),
        ("PG_PRESEED_BACKUP", golden.labels[0].as_str()),
        (
            "PG_PRESEED_SYSTEM_ID",
            &golden.system_identifier.to_string(),
        ),
        ("PG_PRESEED_TARGET", ""),
        ("PGDATA", host.pgdata.as_str()),
        ("PGHOST", host.cluster.socket_dir.as_str()),
        ("PGPORT", "5432"),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "postgres"),
    ] {
        assert_eq!(env.get(key).map(String::as_str), Some(expected), "{key}");
    }
    assert_eq!(
        fs::read_to_string(hook.dir.join("psql.1"))
            .expect("psql ran")
            .trim(),
        "postgres@postgres",
        "psql in the script reached the server through the environment alone"
    );
    let verify = boot.verify.as_ref().expect("verify ran");
    assert!(
        verify.stderr.contains("hook stdout: run 1 done"),
        "the hook's output is in the journal: {}",
        verify.stderr
    );
    let receipt = host.receipt();
    assert_eq!(receipt["post_restore"]["attempts"], 1);
    assert!(receipt["post_restore"]["succeeded_at"].is_string());
    assert!(receipt["phases"]["post_restore_seconds"].as_f64().is_some());
    assert!(host.claim().is_none());
    assert!(
        status_text(&host).contains("post-restore hook succeeded at"),
        "{}",
        status_text(&host)
    );

    // A normal boot: PostgreSQL restarted, the restore unit skipped, verify runs: no hook.
    host.cluster.stop();
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "skipped");
    host.preseed(&["verify"]).expect_code(0);
    assert_eq!(
        hook.runs(),
        1,
        "not on a normal boot, not by a verify by hand"
    );
    assert_eq!(sql_runs(&host), "1");
    assert_eq!(
        host.receipt()["post_restore"]["attempts"],
        1,
        "the receipt keeps it"
    );
    assert_eq!(host.rows(), golden::ROWS);
}

/// A first deployment (on_no_backup = initdb): the hook runs once after the fresh cluster is
/// verified, told so (`PG_PRESEED_ACTION=fresh`, no repository or backup).
#[test]
fn post_restore_hook_runs_once_after_a_fresh_start() {
    let sandbox = Sandbox::new("hook-fresh");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.empty_repo_share(1);
    host.set("/on_no_backup", json!("initdb"));
    host.set("/verify/sql", json!([]));
    let hook = Hook::install(&sandbox, &mut host, &[]);
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "fresh");
    assert!(boot.initdb_ran);
    assert_eq!(hook.runs(), 1);
    let env = hook.env(1);
    for (key, expected) in [
        ("PG_PRESEED_ACTION", "fresh"),
        ("PG_PRESEED_REPO", ""),
        ("PG_PRESEED_BACKUP", ""),
        ("PG_PRESEED_TARGET", ""),
    ] {
        assert_eq!(env.get(key).map(String::as_str), Some(expected), "{key}");
    }
    assert_eq!(
        env.get("PG_PRESEED_SYSTEM_ID"),
        Some(&host.cluster.system_identifier().to_string())
    );
    assert_eq!(host.receipt()["action"], "fresh");
    assert_eq!(host.receipt()["post_restore"]["attempts"], 1);
    let status = status_text(&host);
    assert!(status.contains("story    fresh cluster"), "{status}");
    host.cluster.stop();
    host.boot().expect_verified();
    assert_eq!(hook.runs(), 1, "not on the next boot");
}

/// A cluster pg-preseed adopts (PGDATA initialized, no receipt) is not one it restored: no hook,
/// whether the verify unit adopts it or `run` does.
#[test]
fn post_restore_hook_does_not_run_after_adopt() {
    let sandbox = Sandbox::new("hook-adopt");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/verify/sql", json!([]));
    let hook = Hook::install(&sandbox, &mut host, &[]);
    host.cluster.initdb();
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(
        boot.decision(),
        "skipped",
        "the restore unit's condition skips it"
    );
    assert_eq!(host.receipt()["action"], "adopted");
    host.cluster.stop();
    fs::remove_file(&host.marker).expect("remove the receipt");
    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "adopt");
    host.cluster.start();
    host.preseed(&["verify"]).expect_code(0);
    assert_eq!(hook.runs(), 0, "never after adopt");
    assert_eq!(sql_runs(&host), "none", "the SQL never ran either");
    assert!(host.receipt().get("post_restore").is_none());
}

/// A hook that times out (its child with it), then one that exits 3: each time verify fails
/// (exit 4), writes no receipt and keeps the claim recording the attempt — why in a few words,
/// never the hook's output, which is in the journal — and `status` says it will run again. The
/// next start of PostgreSQL retries it; once it succeeds the receipt is written, and it never
/// runs again.
#[test]
fn a_failing_post_restore_hook_is_retried_then_succeeds_once() {
    let sandbox = Sandbox::new("hook-retry");
    let mut host = Host::new(&sandbox, bin(), 1);
    let hook = Hook::install(&sandbox, &mut host, &[]);
    host.set("/post_restore/timeout", json!("2s"));

    hook.mode("hang");
    let boot = host.boot();
    let verify = boot.verify.as_ref().expect("verify ran");
    verify.expect_code(4);
    let error = verify.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("post-restore hook failed") && error.contains("timeout (2s)"),
        "{error}"
    );
    assert!(
        testbed::pids_with_arg(HANG_ARG).is_empty(),
        "the script's own child was killed with it"
    );
    assert!(!host.marker.exists(), "no receipt");
    let claim = host.claim().expect("the claim stays");
    assert_eq!(claim["post_restore"]["attempts"], 1);
    assert!(claim["post_restore"]["succeeded_at"].is_null());
    assert!(
        claim["phases"]["recovery_seconds"].as_f64().is_some(),
        "{claim}"
    );
    let status = status_text(&host);
    assert!(
        status.contains("post-restore hook failed (tried once") && status.contains("runs it again"),
        "{status}"
    );

    hook.mode("fail");
    let verify = restart_and_verify(&host);
    verify.expect_code(4);
    assert!(
        verify.stderr.contains("HOOK-STDERR-MARK"),
        "the hook's stderr is in the journal: {}",
        verify.stderr
    );
    assert!(!host.marker.exists());
    let claim = host.claim().expect("the claim stays");
    assert_eq!(claim["post_restore"]["attempts"], 2);
    assert_eq!(
        claim["post_restore"]["last_error"],
        "the script exited with status 3"
    );
    let state_dir = host.marker.parent().expect("dir");
    for file in testbed::tree(state_dir) {
        let text = fs::read_to_string(state_dir.join(&file)).unwrap_or_default();
        assert!(
            !text.contains("HOOK-STDERR-MARK"),
            "the hook's output in {file}:\n{text}"
        );
    }
    assert!(status_text(&host).contains("tried 2 times"));

    hook.mode("ok");
    let verify = restart_and_verify(&host);
    verify.expect_code(0);
    assert_eq!(hook.runs(), 3);
    assert_eq!(
        sql_runs(&host),
        "3",
        "the statements run again with every attempt"
    );
    let receipt = host.receipt();
    assert_eq!(receipt["action"], "restored");
    assert_eq!(receipt["post_restore"]["attempts"], 3);
    assert!(receipt["post_restore"].get("last_error").is_none());
    assert!(
        receipt["phases"]["recovery_seconds"].as_f64().is_some(),
        "recovery's duration, observed by the first verify, survived the restarts: {receipt}"
    );
    assert!(host.claim().is_none());

    let verify = restart_and_verify(&host);
    verify.expect_code(0);
    assert_eq!(hook.runs(), 3, "never again once it succeeded");
    assert_eq!(host.rows(), golden::ROWS);
}

/// The engine dies (SIGKILL, at a failpoint compiled only into test builds) right after the
/// hook's success was recorded in the claim and before the receipt: the next verify writes the
/// receipt without running the hook again. No outside observer could hit that moment — it lies
/// between two renames — hence the failpoint.
#[test]
fn a_crash_after_the_hook_succeeded_does_not_run_it_again() {
    let sandbox = Sandbox::new("hook-crash");
    let mut host = Host::new(&sandbox, bin(), 1);
    let hook = Hook::install(&sandbox, &mut host, &[]);
    host.preseed(&["run"]).expect_code(0);
    host.cluster.start();
    let crashed = host
        .preseed_command(&["verify"])
        .env("PG_PRESEED_FAILPOINT", "post-restore-recorded")
        .output()
        .expect("run verify");
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "verify died at the failpoint: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert_eq!(hook.runs(), 1);
    assert!(!host.marker.exists(), "killed before the receipt");
    let claim = host.claim().expect("the claim");
    assert!(claim["post_restore"]["succeeded_at"].is_string(), "{claim}");
    assert!(status_text(&host).contains("without running it again"));

    let verify = restart_and_verify(&host);
    verify.expect_code(0);
    assert_eq!(hook.runs(), 1, "not run again");
    assert_eq!(sql_runs(&host), "1");
    assert!(
        verify.stderr.contains("already succeeded"),
        "{}",
        verify.stderr
    );
    let receipt = host.receipt();
    assert_eq!(
        receipt["post_restore"]["succeeded_at"],
        claim["post_restore"]["succeeded_at"]
    );
    assert!(host.claim().is_none());
}

/// The hook's secret (the verify unit's EnvironmentFile) reaches it — the script's environment
/// and psql's `\getenv` — while pgBackRest's credentials (`PGBACKREST_*`, an S3 repository's
/// key) do not; neither secret is in any process's argv while the hook runs (sampled from /proc),
/// in pg-preseed's output, the claim (kept by a crash after the hook), the receipt, the state
/// file or the metrics.
#[test]
fn hook_secrets_and_repository_credentials_stay_where_they_belong() {
    const HOOK_SECRET: &str = "hook-secret-do-not-log-7731";
    let sandbox = Sandbox::new("hook-secrets");
    let s3 = testbed::s3::S3::start(&sandbox);
    let mut host = Host::new(&sandbox, bin(), 1);
    // repo2 on S3, its credentials in the environment; the restore comes from repo1.
    host.add_s3_repo(&s3, 2);
    host.env
        .push(("HOOK_SECRET".to_owned(), HOOK_SECRET.to_owned()));
    fs::create_dir_all(sandbox.path("metrics")).expect("mkdir");
    host.set(
        "/metrics",
        json!({"textfile": sandbox.path("metrics/pg-preseed.prom")}),
    );
    let hook = Hook::install(
        &sandbox,
        &mut host,
        &[
            r"DO $$BEGIN CREATE ROLE hook_user LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$",
            r"\getenv pw HOOK_SECRET",
            r"ALTER ROLE hook_user PASSWORD :'pw'",
            r"CREATE TABLE IF NOT EXISTS hook_secret_seen AS SELECT md5(:'pw') AS digest",
        ],
    );
    hook.mode("slow");
    let run = host.preseed(&["run"]);
    run.expect_code(0);
    host.cluster.start();

    let secrets = [
        HOOK_SECRET,
        testbed::s3::SECRET_KEY,
        testbed::s3::ACCESS_KEY,
    ];
    let child = host
        .preseed_command(&["verify"])
        .env("PG_PRESEED_FAILPOINT", "post-restore-recorded")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start verify");
    let engine = i32::try_from(child.id()).expect("pid");
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let (mut samples, mut hook_seen) = (0, 0);
    while !waiter.is_finished() {
        for pid in testbed::process_tree(engine) {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            for secret in secrets {
                assert!(
                    !cmdline.contains(secret),
                    "a secret in the argv of pid {pid}: {cmdline}"
                );
            }
            if cmdline.contains(hook.script.as_str()) {
                hook_seen += 1;
            }
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let crashed = waiter.join().expect("join").expect("wait");
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "verify stopped at the failpoint"
    );
    assert!(
        hook_seen > 0,
        "the sampling saw the hook running ({samples} samples)"
    );
    let claim = fs::read_to_string(format!("{}.pending", host.marker)).expect("the claim");
    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);

    let env = hook.env(1);
    assert_eq!(
        env.get("HOOK_SECRET").map(String::as_str),
        Some(HOOK_SECRET)
    );
    let pgbackrest: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("PGBACKREST_"))
        .collect();
    assert!(
        pgbackrest.is_empty(),
        "pgBackRest's variables reached the hook: {pgbackrest:?}"
    );
    let digest = host.cluster.psql("SELECT digest FROM hook_secret_seen");
    let expected = host.cluster.psql(&format!("SELECT md5('{HOOK_SECRET}')"));
    assert_eq!(digest, expected, "the secret reached psql through \\getenv");
    assert_eq!(
        host.cluster
            .psql("SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'hook_user'"),
        "t"
    );

    let mut haystacks = vec![
        run.all_output(),
        String::from_utf8_lossy(&crashed.stdout).into_owned(),
        String::from_utf8_lossy(&crashed.stderr).into_owned(),
        verify.all_output(),
        claim,
        fs::read_to_string(sandbox.path("metrics/pg-preseed.prom")).expect("metrics"),
    ];
    let state_dir = host.marker.parent().expect("dir");
    for file in testbed::tree(state_dir) {
        haystacks.push(fs::read_to_string(state_dir.join(&file)).unwrap_or_default());
    }
    assert!(
        haystacks.len() >= 8,
        "output, claim, metrics, receipt and state were read"
    );
    for haystack in &haystacks {
        for secret in secrets {
            assert!(!haystack.contains(secret), "a secret leaked:\n{haystack}");
        }
    }
}

/// Issue 13.3: a recovery option configured in pgbackrest.conf (a primary_conninfo with a
/// password) used to be passed on pgBackRest's command line beside pg-preseed's restore_command:
/// in argv and in the logged command line. Now pgBackRest writes it from its own configuration
/// and pg-preseed replaces only restore_command: the password is in no argv during the restore
/// (sampled from /proc), not in the output of `run`, `verify` or `drill` (pgBackRest's console
/// "command begin" line is redacted), not in the claim, receipt or state — and it still reaches
/// postgresql.auto.conf, beside pg-preseed's restore_command, which recovery then runs.
#[test]
fn configured_recovery_options_stay_off_the_command_line() {
    const CONNINFO: &str = "host=replica.invalid user=rep password=conninfo-secret-5521";
    let sandbox = Sandbox::new("recovery-options");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    host.pgbackrest
        .add_global(&format!("recovery-option=primary_conninfo={CONNINFO}\n"));
    let secret = "conninfo-secret-5521";

    let child = host.spawn_captured(&["run"]);
    let engine = i32::try_from(child.id()).expect("pid");
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let (mut samples, mut restoring) = (0, 0);
    while !waiter.is_finished() {
        for pid in testbed::process_tree(engine) {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(secret),
                "the password in the argv of pid {pid}: {cmdline}"
            );
            if cmdline.contains("pgbackrest") && cmdline.contains("restore") {
                restoring += 1;
            }
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = waiter.join().expect("join").expect("wait");
    let run_output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{run_output}");
    assert!(
        restoring > 0,
        "the sampling saw pgBackRest restoring ({samples} samples)"
    );
    assert!(
        run_output.contains("--recovery-option=primary_conninfo=<redacted>"),
        "pgBackRest's command begin line was logged, redacted: {run_output}"
    );

    let auto_conf =
        fs::read_to_string(host.pgdata.join("postgresql.auto.conf")).expect("postgresql.auto.conf");
    assert!(
        auto_conf.contains(&format!("primary_conninfo = '{CONNINFO}'")),
        "{auto_conf}"
    );
    let restore_command: Vec<&str> = auto_conf
        .lines()
        .filter(|l| l.starts_with("restore_command"))
        .collect();
    assert_eq!(restore_command.len(), 1, "{auto_conf}");
    assert!(
        restore_command[0].contains(bin().as_str()) && restore_command[0].contains(" archive-get "),
        "pg-preseed's restore_command: {auto_conf}"
    );
    let mode = fs::metadata(host.pgdata.join("postgresql.auto.conf"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Recovery runs that restore_command (verify's proof that it reached the archive's end
    // asks the repositories as it does).
    host.cluster.start();
    let verify = host.preseed(&["verify"]);
    verify.expect_code(0);
    assert_eq!(host.rows(), golden::ROWS);

    let drill = host.preseed(&["drill", "--scratch", sandbox.path("scratch").as_str()]);
    drill.expect_code(0);

    let mut haystacks = vec![run_output, verify.all_output(), drill.all_output()];
    let state_dir = host.marker.parent().expect("dir");
    for file in testbed::tree(state_dir) {
        haystacks.push(fs::read_to_string(state_dir.join(&file)).unwrap_or_default());
    }
    for haystack in &haystacks {
        assert!(
            !haystack.contains(secret),
            "the password leaked:\n{haystack}"
        );
    }
}

/// Issue 13's closing note: after a restore that replayed WAL, `status`, the journal and the
/// metrics tell the story — repository and backup, its age, the data restored and its
/// throughput, each phase's duration, and where the data ends (the last transaction replayed)
/// with the most that can be missing.
#[test]
fn after_a_restore_status_and_metrics_tell_the_story() {
    let sandbox = Sandbox::new("story");
    let mut host = provisioned(&sandbox, 1);
    // Writes after the backup, archived: the next restore replays them.
    host.cluster
        .psql("CREATE TABLE after_backup (id int); INSERT INTO after_backup VALUES (1)");
    let committed = host
        .cluster
        .psql("SELECT extract(epoch FROM clock_timestamp())::bigint");
    let segment = host
        .cluster
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    host.cluster.psql("SELECT pg_switch_wal()");
    testbed::wait_for("the WAL to be archived", Duration::from_secs(60), || {
        host.cluster
            .psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            >= segment
    });
    fs::create_dir_all(sandbox.path("metrics")).expect("mkdir");
    host.set(
        "/metrics",
        json!({"textfile": sandbox.path("metrics/pg-preseed.prom")}),
    );
    host.wipe_pgdata();
    let boot = host.boot_recovers("restore");
    assert_eq!(host.cluster.psql("SELECT count(*) FROM after_backup"), "1");

    let receipt = host.receipt();
    for phase in [
        "repository_check_seconds",
        "restore_seconds",
        "recovery_seconds",
        "verify_seconds",
    ] {
        assert!(
            receipt["phases"][phase].as_f64().is_some(),
            "{phase}: {receipt}"
        );
    }
    let replayed_until = receipt["replayed_until"].as_str().expect("replayed_until");
    let replayed = humantime::parse_rfc3339(replayed_until)
        .expect("RFC 3339")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let committed: u64 = committed.parse().expect("epoch");
    assert!(
        replayed + 2 >= committed && replayed <= committed + 2,
        "the last transaction replayed is the one committed after the backup: {replayed_until} vs {committed}"
    );

    let status = status_text(&host);
    let label = &testbed::Golden::get().labels[0];
    for expected in [
        format!("story    restored repo1 backup {label}, which ended "),
        "old when the restore began)".to_owned(),
        "MB restored at ".to_owned(),
        "repository check ".to_owned(),
        ", restore ".to_owned(),
        ", recovery ".to_owned(),
        ", verify ".to_owned(),
        "from the decision to the receipt".to_owned(),
        format!("data up to {replayed_until} (the last transaction replayed): at most "),
        "of writes before the restore began are missing".to_owned(),
    ] {
        assert!(status.contains(&expected), "{expected:?} in:\n{status}");
    }
    let verify = boot.verify.as_ref().expect("verify");
    assert!(
        verify.stderr.contains("(the last transaction replayed)"),
        "the journal tells it too: {}",
        verify.stderr
    );
    let json: Value = host.preseed(&["status"]).json();
    assert!(
        json["story"].as_array().is_some_and(|s| s.len() >= 3),
        "{json}"
    );

    let metrics = fs::read_to_string(sandbox.path("metrics/pg-preseed.prom")).expect("metrics");
    for phase in ["repository_check", "restore", "recovery", "verify"] {
        assert!(
            metrics.contains(&format!(
                "pg_preseed_receipt_phase_seconds{{phase=\"{phase}\"}} "
            )),
            "{phase} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("pg_preseed_receipt_data_end_timestamp_seconds{source=\"replay\"} "));
    assert!(metrics.contains("pg_preseed_receipt_max_data_loss_seconds "));
}
