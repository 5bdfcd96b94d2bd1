//! Tier 2: the engine against real PostgreSQL, pgBackRest and mounts, as root: the cases that
//! are not one of the VM scenarios (those are in [`crate::scenarios`]).

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use testbed::{golden, mounts, Golden, Host, Sandbox};

use crate::common::{bin, provisioned};

/// Two tmpfs stacked on PGDATA: refused with exit 3, both mounts named, nothing written.
#[test]
fn stacked_tmpfs_on_pgdata_refuses_and_writes_nothing() {
    let sandbox = Sandbox::new("stacked");
    let pgdata = sandbox.path("pgdata");
    mounts::tmpfs(&pgdata, 64, "bottom-fs");
    fs::write(pgdata.join("old-marker"), b"hidden").expect("write on the bottom");
    mounts::tmpfs(&pgdata, 64, "top-fs");
    testbed::chown_postgres(&pgdata);
    let host = Host::with_pgdata(&sandbox, bin(), &pgdata, 1);
    let before = testbed::tree(&pgdata);

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert_eq!(run.decision(), "refuse");
    assert!(run.finding_kinds().contains(&"stacked_mount".to_owned()));
    let output = run.all_output();
    assert!(
        output.contains("bottom-fs") && output.contains("top-fs"),
        "{output}"
    );
    assert_eq!(testbed::tree(&pgdata), before, "PGDATA untouched");
    assert!(!host.marker.exists());
    assert!(host.claim().is_none());
    // preflight says the same, with the same exit code.
    host.preseed(&["preflight"]).expect_code(3);
}

/// An initialized PGDATA without a receipt is adopted: the receipt records its identifier.
#[test]
fn initialized_pgdata_without_marker_is_adopted() {
    let sandbox = Sandbox::new("adopt");
    let host = Host::new(&sandbox, bin(), 1);
    host.cluster.initdb();

    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "adopt");
    let receipt = host.receipt();
    assert_eq!(receipt["action"], "adopted");
    assert_eq!(
        receipt["system_identifier"],
        host.cluster.system_identifier().to_string()
    );
    // The next run finds the receipt matching and does nothing.
    let again = host.preseed(&["run"]);
    again.expect_code(0);
    assert_eq!(again.decision(), "skip");
}

/// A host with a receipt, PGDATA wiped, and its repository gone (the NFS share did not mount):
/// refused; no PG_VERSION appears, so the stock initdb never gets its chance.
#[test]
fn unreachable_repo_with_marker_never_creates_pg_version() {
    let sandbox = Sandbox::new("unreachable");
    let host = provisioned(&sandbox, 1);
    host.wipe_pgdata();
    let repo = &host.pgbackrest.repos[0];
    let away = sandbox.path("repo1-unmounted");
    fs::rename(repo, &away).expect("take the repository away");

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let output = run.all_output();
    assert!(output.contains("unreachable"), "{output}");
    assert!(
        output.contains(repo.as_str()),
        "names the missing path: {output}"
    );
    assert!(!host.pgdata.join("PG_VERSION").exists());
    assert!(testbed::tree(&host.pgdata).is_empty());

    // Even with on_no_backup = "initdb": unreachable is not empty.
    let mut host = host;
    host.set("/on_no_backup", json!("initdb"));
    host.preseed(&["run"]).expect_code(3);
    assert!(host.claim().is_none() || host.claim().expect("claim")["kind"] != "fresh");
}

/// pgBackRest killed mid-restore: the next run resumes with --delta and completes.
#[test]
fn interrupted_restore_is_resumed_with_delta() {
    let sandbox = Sandbox::new("resume");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    let mut first = host.spawn_quiet(&["run"]);
    let manifest = host.pgdata.join("backup.manifest");
    testbed::wait_for(
        "pgBackRest to start restoring",
        Duration::from_secs(60),
        || manifest.exists(),
    );
    testbed::kill9(&testbed::pids_with_arg(&format!(
        "--pg1-path={}",
        host.pgdata
    )));
    let status = first.wait().expect("wait for the first run");
    assert_eq!(
        status.code(),
        Some(4),
        "a killed restore is a failed restore"
    );
    assert!(manifest.exists(), "the restore was cut short");
    assert!(
        !host.marker.exists(),
        "no receipt for an unfinished restore"
    );

    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "resume");
    let claim = host.claim().expect("the claim stays until verify");
    let attempts = claim["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.first().expect("first")["delta"], false);
    assert_eq!(attempts.last().expect("last")["delta"], true);
    host.cluster.start();
    host.preseed(&["verify"]).expect_code(0);
    assert_eq!(host.rows(), golden::ROWS);
}

/// repo1's backup is corrupt: pgBackRest fails on it, the engine falls back to repo2, and the
/// receipt says where the data came from.
#[test]
fn broken_repo1_falls_back_to_repo2() {
    let sandbox = Sandbox::new("fallback");
    let host = Host::new(&sandbox, bin(), 2);
    testbed::corrupt_largest_backup_file(&host.pgbackrest.repos[0]);

    let boot = host.boot();
    boot.expect_verified();
    let claim_attempts =
        boot.run.as_ref().expect("the unit ran").json()["result"]["attempts"].clone();
    assert_eq!(claim_attempts[0]["repo"], 1);
    assert!(claim_attempts[0]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert_eq!(claim_attempts[1]["repo"], 2);
    assert_eq!(host.rows(), golden::ROWS);
    let receipt = host.receipt();
    assert_eq!(receipt["source"]["repo"], 2);
    assert_eq!(receipt["source"]["backup_label"], Golden::get().labels[1]);
    // The error of the failed attempt names the damaged file (found by pgbackrest verify).
    let error = claim_attempts[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("damaged in repo1 (pgbackrest verify)") && error.contains("pg_data/"),
        "{error}"
    );
}

/// The newest backup is of another major version (the server was upgraded in the config):
/// refused with the upgrade path explained; PGDATA untouched.
#[test]
fn backup_of_another_major_is_refused() {
    let sandbox = Sandbox::new("major");
    let mut host = Host::new(&sandbox, bin(), 1);
    let server_major = testbed::pg_major() + 1;
    host.set("/postgres/major", json!(server_major));

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let output = run.all_output();
    assert!(
        output.contains(&format!("PostgreSQL {}", testbed::pg_major())),
        "{output}"
    );
    assert!(output.contains("pg_upgrade"), "{output}");
    assert!(testbed::tree(&host.pgdata).is_empty());
}

/// Guard mode never restores; it says what to run, and that command restores.
#[test]
fn guard_mode_refuses_and_prints_the_command() {
    let sandbox = Sandbox::new("guard");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/mode", json!("guard"));
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let next = run.json()["next"].as_str().unwrap_or_default().to_owned();
    assert!(next.contains("--allow-restore"), "{next}");
    assert!(testbed::tree(&host.pgdata).is_empty());
    let run = host.preseed(&["run", "--allow-restore"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "restore");
}

/// A failing verification check: exit 4 and no receipt; the claim stays for the next try.
#[test]
fn failing_verify_check_writes_no_receipt() {
    let sandbox = Sandbox::new("verifyfail");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set(
        "/verify/sql",
        json!([{"name": "impossible", "sql": "SELECT count(*) FROM preseed_check", "expect": "1"}]),
    );
    host.preseed(&["run"]).expect_code(0);
    host.cluster.start();
    let verify = host.preseed(&["verify"]);
    verify.expect_code(4);
    assert!(verify.all_output().contains("impossible"));
    assert!(!host.marker.exists());
    assert!(host.claim().is_some());
}

/// A server still recovering (here held in standby mode): `verify` waits for it, gives up at its
/// timeout without a receipt, and passes once recovery has ended.
#[test]
fn verify_waits_for_recovery_to_end() {
    let sandbox = Sandbox::new("verifywait");
    let host = Host::new(&sandbox, bin(), 1);
    host.preseed(&["run"]).expect_code(0);
    // standby.signal beside pgBackRest's recovery.signal: the server recovers and never ends it.
    fs::write(host.pgdata.join("standby.signal"), b"").expect("write");
    testbed::chown_postgres(&host.pgdata.join("standby.signal"));
    host.cluster.start();

    let verify = host.preseed(&["verify", "--timeout", "3s"]);
    verify.expect_code(4);
    let output = verify.all_output();
    assert!(output.contains("finish recovery within 3s"), "{output}");
    assert!(!host.marker.exists());

    let waiting = host.spawn_captured(&["verify", "--timeout", "120s"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    testbed::run_ok(
        testbed::as_postgres(testbed::pg_bin_dir().join("pg_ctl")).args([
            "-D",
            host.pgdata.as_str(),
            "-w",
            "promote",
        ]),
    );
    let output = waiting.wait_with_output().expect("verify");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(host.receipt()["action"], "restored");
    assert_eq!(host.rows(), golden::ROWS);
}

/// PGDATA holding something that is neither empty, a cluster nor our restore: refused, untouched.
#[test]
fn partial_pgdata_is_refused_and_untouched() {
    let sandbox = Sandbox::new("partial");
    let host = Host::new(&sandbox, bin(), 1);
    fs::write(host.pgdata.join("notes.txt"), b"someone's files").expect("write");
    fs::create_dir(host.pgdata.join("base")).expect("mkdir");
    let before = testbed::tree(&host.pgdata);
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert!(run.all_output().contains("notes.txt"));
    assert_eq!(testbed::tree(&host.pgdata), before);
}

/// A restore somebody started by hand and that died: not provably ours, so left alone.
#[test]
fn foreign_unfinished_restore_is_left_alone() {
    let sandbox = Sandbox::new("foreign");
    let host = Host::new(&sandbox, bin(), 1);
    let mut restore = testbed::as_postgres("pgbackrest");
    restore
        .arg(format!("--config={}", host.pgbackrest.config))
        .args(["--stanza=main", "--process-max=1", "restore"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = restore.spawn().expect("start pgbackrest");
    let manifest = host.pgdata.join("backup.manifest");
    testbed::wait_for(
        "the manual restore to start",
        Duration::from_secs(60),
        || manifest.exists(),
    );
    testbed::kill9(&testbed::pids_with_arg(&format!(
        "--config={}",
        host.pgbackrest.config
    )));
    let _ = child.wait();
    let before = testbed::tree(&host.pgdata);

    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert!(
        run.all_output().contains("not provably"),
        "{}",
        run.all_output()
    );
    assert_eq!(testbed::tree(&host.pgdata), before);
}

/// A symlink at the marker path: refused, and the link's target is never written.
#[test]
fn symlinked_marker_is_refused() {
    let sandbox = Sandbox::new("symlink");
    let host = Host::new(&sandbox, bin(), 1);
    host.cluster.initdb();
    let target = sandbox.path("elsewhere.json");
    fs::write(&target, b"precious").expect("write");
    fs::create_dir_all(host.marker.parent().expect("dir")).expect("mkdir");
    std::os::unix::fs::symlink(&target, &host.marker).expect("symlink");
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert!(run.finding_kinds().contains(&"marker_symlink".to_owned()));
    assert_eq!(fs::read(&target).expect("read"), b"precious");
}

/// Two runs at once: exactly one restores; the other refuses clearly, naming the holder.
#[test]
fn two_runs_at_once_only_one_restores() {
    let sandbox = Sandbox::new("twice");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    let first = host
        .preseed_command(&["run"])
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let manifest = host.pgdata.join("backup.manifest");
    testbed::wait_for("the first run to restore", Duration::from_secs(60), || {
        manifest.exists()
    });
    let second = host.preseed(&["run"]);
    second.expect_code(3);
    assert!(
        second.all_output().contains("another pg-preseed holds"),
        "{}",
        second.all_output()
    );
    let first = first.wait_with_output().expect("first run");
    assert_eq!(first.status.code(), Some(0));
    let claim = host.claim().expect("claim");
    assert_eq!(
        claim["attempts"].as_array().expect("attempts").len(),
        1,
        "one restore only"
    );
}

/// What systemd does for a hardened unit (ProtectSystem=strict + ReadWritePaths=): a private
/// mount namespace where PGDATA and the marker's directory are bind-mounted onto themselves.
/// Those binds are not layering, and a plain-directory PGDATA stays usable.
#[test]
fn systemd_style_namespace_binds_are_not_findings() {
    let sandbox = Sandbox::new("namespace");
    let host = Host::new(&sandbox, bin(), 1);
    let state = host.marker.parent().expect("dir").to_owned();
    fs::create_dir_all(&state).expect("mkdir");
    let script = format!(
        "mount --make-rprivate / && mount --bind {pgdata} {pgdata} && mount --bind {state} {state} && exec {bin} --config {config} --json preflight",
        pgdata = host.pgdata,
        state = state,
        bin = bin(),
        config = host.config_path,
    );
    let output = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["decision"], "clean");
    assert!(
        report["findings"].as_array().expect("findings").is_empty(),
        "{report}"
    );
}

/// Issue 10.6: the restore unit's namespace as systemd builds it for ReadWritePaths= on PGDATA's
/// parent (a recursive bind of the parent onto itself) lists PGDATA's own filesystem twice in
/// /proc/self/mountinfo. That is one filesystem, not stacking: preflight is clean, and the mount
/// identity check still sees PGDATA's filesystem. Real stacking seen through the same bind is
/// still refused, naming both.
#[test]
fn a_bind_of_pgdatas_parent_is_not_stacking_but_stacking_under_it_is() {
    let sandbox = Sandbox::new("rbind");
    let pgdata = sandbox.path("pgdata");
    mounts::tmpfs(&pgdata, 64, "pgdata-fs");
    testbed::chown_postgres(&pgdata);
    let mut host = Host::with_pgdata(&sandbox, bin(), &pgdata, 1);
    host.set("/require_mount", json!({"fstype": "tmpfs"}));
    let parent = pgdata.parent().expect("PGDATA has a parent").to_owned();
    fs::create_dir_all(host.marker.parent().expect("dir")).expect("mkdir");

    let in_namespace = |setup: &str| {
        let script = format!(
            "mount --make-rprivate / && {setup}mount --rbind {parent} {parent} && \
             grep -c ' {pgdata} ' /proc/self/mountinfo >&2 && \
             exec {bin} --config {config} --json preflight",
            pgdata = host.pgdata,
            bin = bin(),
            config = host.config_path,
        );
        let output = std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .output()
            .expect("unshare");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        (output.status.code(), report, stderr)
    };

    let (code, report, stderr) = in_namespace("");
    // The namespace really shows PGDATA's filesystem twice.
    assert!(
        stderr.starts_with('2'),
        "mountinfo entries at PGDATA: {stderr}"
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["decision"], "clean", "{report}");

    let (code, report, _) = in_namespace(&format!(
        "mount -t tmpfs -o size=16m stray-fs {pgdata} && ",
        pgdata = host.pgdata
    ));
    assert_eq!(code, Some(3), "{report}");
    let text = report.to_string();
    assert!(text.contains("stacked_mount"), "{text}");
    assert!(
        text.contains("pgdata-fs") && text.contains("stray-fs"),
        "{text}"
    );
}

/// Issue 10.13: the repository's share did not mount, so its path is an empty directory on the
/// root filesystem (nixpkgs' pgbackrest module even creates it at activation). With no receipt
/// and on_no_backup = "initdb" that must not look like a first deployment: refused, no
/// PG_VERSION. Mounted (an empty share of its own), it is one. A local repository that already
/// holds pgBackRest's files proves itself; one that does not can be confirmed by hand with
/// `run --allow-fresh`.
#[test]
fn an_unmounted_share_is_not_an_empty_repository() {
    let sandbox = Sandbox::new("unmounted-share");
    let mut host = Host::new(&sandbox, bin(), 1);
    let repo = host.pgbackrest.repos[0].clone();
    host.set("/on_no_backup", json!("initdb"));

    // The share is not mounted: its path is an empty directory on the root filesystem.
    fs::remove_dir_all(&repo).expect("empty the repository");
    let _ = sandbox.shared_dir("repo1");
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    assert_eq!(run.decision(), "refuse");
    let output = run.all_output();
    assert!(
        output.contains(&format!("{repo}")) && output.contains("root filesystem"),
        "{output}"
    );
    assert!(output.contains("--allow-fresh"), "{output}");
    assert!(!host.pgdata.join("PG_VERSION").exists());
    assert!(host.claim().is_none(), "nothing cleared initdb");
    host.preseed(&["initdb-guard"]).expect_code(3);

    // Another stanza's files there: pgBackRest's own layout, so this really is the repository.
    fs::create_dir_all(repo.join("backup/other")).expect("mkdir");
    fs::create_dir_all(repo.join("archive/other")).expect("mkdir");
    testbed::chown_postgres(&repo.join("backup"));
    testbed::chown_postgres(&repo.join("archive"));
    assert_eq!(host.preseed(&["plan"]).decision(), "fresh");
    fs::remove_dir_all(repo.join("backup")).expect("rm");
    fs::remove_dir_all(repo.join("archive")).expect("rm");

    // Confirmed by hand: a first deployment with a local repository.
    let run = host.preseed(&["run", "--allow-fresh"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "fresh");
    host.preseed(&["initdb-guard"]).expect_code(0);
    fs::remove_file(format!("{}.pending", host.marker)).expect("forget the fresh claim");

    // The share mounted: empty, but a filesystem of its own.
    host.empty_repo_share(1);
    assert_eq!(host.preseed(&["plan"]).decision(), "fresh");
}

/// postgresql.service's first ExecStartPre: an empty PGDATA that pg-preseed did not clear for
/// a fresh start (a restart after a wipe, say) never reaches nixpkgs' initdb.
#[test]
fn initdb_guard_blocks_an_initdb_nobody_decided() {
    let sandbox = Sandbox::new("initdbguard");
    let mut host = Host::new(&sandbox, bin(), 1);
    let guard = host.preseed(&["initdb-guard"]);
    guard.expect_code(3);
    assert_eq!(guard.decision(), "refuse");

    // A first deployment that pg-preseed decided: allowed.
    // A new, empty repository on a share of its own (an empty directory on the root
    // filesystem would prove nothing: see an_unmounted_share_is_not_an_empty_repository).
    host.empty_repo_share(1);
    host.set("/on_no_backup", json!("initdb"));
    host.preseed(&["run"]).expect_code(0);
    host.preseed(&["initdb-guard"]).expect_code(0);

    // A cluster: allowed. An unfinished restore: refused.
    host.cluster.initdb();
    host.preseed(&["initdb-guard"]).expect_code(0);
    fs::write(host.pgdata.join("backup.manifest"), b"[backup]\n").expect("write");
    host.preseed(&["initdb-guard"]).expect_code(3);
}
