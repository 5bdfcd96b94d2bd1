//! Tier 2 twins of the NixOS VM scenarios (`nixos-tests/<name>.nix`): the same story, the same
//! names (with underscores), on real PostgreSQL, pgBackRest, mounts, zfs-fuse and an S3 server,
//! driving the units' sequence through [`Host::boot`]: preflight → run (when its condition
//! holds) → nixpkgs' initdb-if-no-PG_VERSION → start PostgreSQL → verify. Each also checks what
//! the engine alone must do in its story (`run` refusing on its own, what the receipt records).

use std::fs;
use std::time::Duration;

use serde_json::json;
use testbed::{golden, zfs::Pool, Golden, Host, Sandbox};

use crate::common::bin;

/// A new machine: empty PGDATA, no receipt, backups in the repository. PostgreSQL comes up with
/// the data and the receipt records the restored cluster's system identifier.
#[test]
fn first_boot_restore() {
    let sandbox = Sandbox::new("first-boot-restore");
    let host = Host::new(&sandbox, bin(), 1);
    assert!(!host.marker.exists());

    host.boot_recovers("restore");
    let receipt = host.receipt();
    assert_eq!(receipt["action"], "restored");
    assert_eq!(
        receipt["system_identifier"],
        Golden::get().system_identifier.to_string()
    );
    assert_eq!(
        receipt["system_identifier"],
        host.cluster.system_identifier().to_string()
    );
}

/// A running server is stopped, PGDATA emptied, the receipt left where it is: the next start
/// restores (DESIGN.md invariant 2: emptying PGDATA alone is enough). The seed's runbook needed
/// "Delete marker (CRITICAL!)" here.
#[test]
fn wipe_restores() {
    let sandbox = Sandbox::new("wipe-restores");
    let mut host = Host::new(&sandbox, bin(), 1);
    // The data changes below make the golden row count wrong on purpose.
    host.set(
        "/verify/sql",
        json!(["SELECT count(*) > 0 FROM preseed_check"]),
    );
    host.boot().expect_verified();
    assert_eq!(host.rows(), golden::ROWS);
    assert_eq!(host.receipt()["action"], "restored");
    // Work done after the backup, archived (`pgbackrest check` switches WAL and waits for the
    // archive): the restore replays it.
    host.cluster
        .psql(&format!("DELETE FROM {} WHERE id > 10", golden::TABLE));
    host.pgbackrest.run(&["check"]);
    let before = host.receipt();

    host.wipe_pgdata();
    assert!(host.marker.exists(), "nobody deletes the receipt");
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore");
    assert!(!boot.initdb_ran);
    assert_eq!(
        host.cluster
            .psql(&format!("SELECT count(*) FROM {}", golden::TABLE)),
        "10"
    );
    let receipt = host.receipt();
    assert_eq!(receipt["system_identifier"], before["system_identifier"]);
    assert_ne!(receipt["verified_at"], serde_json::Value::Null);
    assert_eq!(receipt["action"], "restored");
    assert_eq!(
        receipt["system_identifier"],
        host.cluster.system_identifier().to_string(),
        "the receipt records the restored cluster's system identifier"
    );
    assert_eq!(receipt["source"]["repo"], 1);
    assert_eq!(receipt["source"]["backup_label"], Golden::get().labels[0]);
    assert!(host.claim().is_none(), "verify removes the claim");
}

/// The seed's exact layout on zfs-fuse: `…/postgres` and `…/postgresql` both mounted at PGDATA,
/// the old marker on the bottom one, PGDATA (the top one) empty. The datasets unit and preflight
/// refuse naming both datasets, PostgreSQL does not start, no initdb runs. With the stray dataset
/// destroyed, the next start restores.
#[test]
fn incident_stacked_datasets() {
    let sandbox = Sandbox::new("incident-stacked-datasets");
    let pool = Pool::create(&sandbox, "isd");
    let pgdata = sandbox.path("var/lib/postgresql/16");
    let (stray, declared) = testbed::zfs::stack_incident(&sandbox, &pool, &pgdata);
    testbed::chown_postgres(&pgdata);
    let mut host = Host::with_pgdata(&sandbox, bin(), &pgdata, 1);
    host.set(
        "/datasets",
        json!([{"name": declared, "mountpoint": pgdata}]),
    );
    host.set("/require_mount", json!({"dataset": declared}));

    let datasets = host.preseed(&["datasets", "ensure"]);
    datasets.expect_code(3);
    assert!(datasets.all_output().contains(&stray));

    let boot = host.boot();
    assert_eq!(boot.preflight.code, 3);
    assert!(
        !boot.started && !boot.initdb_ran,
        "PostgreSQL must not start"
    );
    let output = boot.preflight.all_output();
    assert!(
        output.contains(&format!("{stray} ")) || output.contains(&format!("{stray},")),
        "{output}"
    );
    assert!(output.contains(&declared), "{output}");
    assert!(!pgdata.join("PG_VERSION").exists());

    // The restore unit refuses on its own too, naming both datasets; nothing is written.
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let kinds = run.finding_kinds();
    assert!(kinds.contains(&"stacked_mount".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"shared_mountpoint".to_owned()), "{kinds:?}");
    let output = run.all_output();
    for dataset in [&stray, &declared] {
        assert!(
            output.contains(&format!("{dataset} ")) || output.contains(&format!("{dataset},")),
            "{dataset} in {output}"
        );
    }
    assert!(!pgdata.join("PG_VERSION").exists());
    assert!(testbed::tree(&pgdata).is_empty());

    // The fix the finding gives: take the stray dataset away (unmounting the top one first, since
    // the stray one is underneath it), then start again.
    pool.zfs(&["umount", &declared]);
    pool.zfs(&["umount", &stray]);
    pool.destroy_dataset(&stray);
    pool.zfs(&["mount", &declared]);
    host.preseed(&["datasets", "check"]).expect_code(0);
    host.boot_recovers("restore");
}

/// PGDATA's dataset did not mount: refused; nothing is written to the directory underneath (on
/// the root filesystem), where pgBackRest would otherwise have restored.
#[test]
fn dataset_not_mounted() {
    let sandbox = Sandbox::new("dataset-not-mounted");
    let pool = Pool::create(&sandbox, "dnm");
    let pgdata = sandbox.path("var/lib/postgresql/16");
    let dataset = pool.create_dataset("services/postgresql", Some(&pgdata));
    pool.zfs(&["umount", &dataset]);
    testbed::chown_postgres(&pgdata);
    let mut host = Host::with_pgdata(&sandbox, bin(), &pgdata, 1);
    host.set(
        "/datasets",
        json!([{"name": dataset, "mountpoint": pgdata}]),
    );
    host.set("/require_mount", json!({"dataset": dataset}));

    let boot = host.boot();
    assert_eq!(boot.preflight.code, 3);
    let found = boot.preflight.finding_kinds();
    assert!(
        found.contains(&"dataset_not_mounted".to_owned()),
        "{found:?}"
    );
    assert!(found.contains(&"mount_missing".to_owned()), "{found:?}");
    assert!(!boot.started);
    // The restore unit refuses on its own too (it does not rely on preflight having run).
    let run = host.preseed(&["run"]);
    run.expect_code(3);
    let kinds = run.finding_kinds();
    assert!(kinds.contains(&"mount_missing".to_owned()), "{kinds:?}");
    assert!(
        kinds.contains(&"dataset_not_mounted".to_owned()),
        "{kinds:?}"
    );
    assert!(run.all_output().contains(&dataset));
    assert!(
        testbed::tree(&pgdata).is_empty(),
        "nothing written on the root filesystem"
    );

    // An fstype requirement refuses the same way when another filesystem is mounted there (here
    // the dataset, mounted again, where tmpfs is required).
    host.set("/require_mount", json!({"fstype": "tmpfs"}));
    pool.zfs(&["mount", &dataset]);
    host.preseed(&["run"]).expect_code(3);
    assert!(!pgdata.join("PG_VERSION").exists());
}

/// Power loss mid-restore (kill -9 of the engine and pgBackRest): the next boot resumes and
/// completes; no receipt exists before the verify step.
#[test]
fn crash_mid_restore() {
    let sandbox = Sandbox::new("crash-mid-restore");
    let mut host = Host::new(&sandbox, bin(), 1);
    host.set("/pgbackrest/process_max", json!(1));
    let engine = host.spawn_quiet(&["run"]);
    let manifest = host.pgdata.join("backup.manifest");
    testbed::wait_for("the restore to start", Duration::from_secs(60), || {
        manifest.exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut victims = testbed::pids_with_arg(&format!("--pg1-path={}", host.pgdata));
    victims.push(i32::try_from(engine.id()).expect("pid"));
    testbed::kill9(&victims);
    let _ = engine.wait_with_output();
    testbed::wait_for("pgBackRest to be gone", Duration::from_secs(30), || {
        testbed::pids_with_arg(&format!("--pg1-path={}", host.pgdata)).is_empty()
    });
    assert!(manifest.exists(), "the restore was cut short");
    assert!(!host.marker.exists(), "no receipt after a crash");

    // The next boot: preflight, run (the unit's condition holds: backup.manifest), …
    let preflight = host.preseed(&["preflight"]);
    preflight.expect_code(0);
    let run = host.preseed(&["run"]);
    run.expect_code(0);
    assert_eq!(run.decision(), "resume");
    assert!(!host.marker.exists(), "no receipt before the verify step");
    host.cluster.start();
    host.preseed(&["verify"]).expect_code(0);
    assert_eq!(host.rows(), golden::ROWS);
    assert_eq!(host.receipt()["action"], "restored");
}

/// A first deployment: an empty repository without a stanza, no receipt, onNoBackup = "initdb".
/// PostgreSQL initialises a new cluster; then stanza-create and a first backup succeed, and that
/// backup restores (the loop closes).
#[test]
fn first_deploy() {
    let sandbox = Sandbox::new("first-deploy");
    let mut host = Host::new(&sandbox, bin(), 1);
    // A new, empty repository on a share of its own (an empty directory on the root
    // filesystem would prove nothing: see an_unmounted_share_is_not_an_empty_repository).
    host.empty_repo_share(1);
    // An empty repository alone is no licence to start empty: on_no_backup must say so.
    let refused = host.preseed(&["run"]);
    refused.expect_code(3);
    assert!(refused.all_output().contains("on_no_backup"));

    host.set("/on_no_backup", json!("initdb"));
    host.set("/verify/sql", json!(["SELECT true"]));
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "fresh");
    // Host::boot runs nixpkgs' initdb only when PG_VERSION is missing after `run`: pg-preseed
    // itself never runs initdb.
    assert!(
        boot.initdb_ran,
        "this is the one case where initdb is right"
    );
    assert_eq!(host.receipt()["action"], "fresh");

    host.pgbackrest.run(&["stanza-create"]);
    host.cluster.psql(
        "CREATE TABLE deployed (id int); INSERT INTO deployed SELECT generate_series(1, 42);",
    );
    host.pgbackrest.run(&["--type=full", "backup"]);
    let info: serde_json::Value =
        serde_json::from_slice(&host.pgbackrest.run(&["--output=json", "info"]).stdout)
            .expect("json");
    assert_eq!(info[0]["backup"].as_array().map(Vec::len), Some(1));

    host.wipe_pgdata();
    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore");
    assert_eq!(host.cluster.psql("SELECT count(*) FROM deployed"), "42");
}

/// repo1 (posix, the NFS-like one) is unreachable: the restore comes from repo2, an S3 object
/// store (s3s-fs behind TLS: real S3 traffic), recovery replays what repo2 holds and ends with
/// the share still down (it consults the repositories that answered when the restore was
/// decided), verify passes warning that repo1 could not be asked, and the receipt says so.
/// (At the first boot repo2 has no stanza yet: recovery leaves it out too.)
#[test]
fn repo_fallback() {
    let sandbox = Sandbox::new("repo-fallback");
    let s3 = testbed::s3::S3::start(&sandbox);
    let mut host = Host::new(&sandbox, bin(), 1);
    host.add_s3_repo(&s3, 2);
    host.set(
        "/pgbackrest/repos",
        json!([{"number": 1, "name": "nfs"}, {"number": 2, "name": "s3"}]),
    );
    host.set(
        "/verify/sql",
        json!(["SELECT count(*) > 0 FROM preseed_check"]),
    );

    // A server with data (from repo1), then a backup of it in the S3 repository too.
    host.boot().expect_verified();
    let first = host.receipt();
    assert_eq!(
        first["source"]["left_out"],
        json!([{"repo": 2, "repo_name": "s3", "reason": "it held no stanza when the restore was decided"}]),
        "{first}"
    );
    host.pgbackrest.run(&["stanza-create"]);
    host.pgbackrest.run(&["--repo=2", "--type=full", "backup"]);
    let s3_label = {
        let info: serde_json::Value = serde_json::from_slice(
            &host
                .pgbackrest
                .run(&["--repo=2", "--output=json", "info"])
                .stdout,
        )
        .expect("json");
        info[0]["backup"][0]["label"]
            .as_str()
            .expect("a backup in repo2")
            .to_owned()
    };

    // The NFS share does not mount: repo1's path is gone.
    host.wipe_pgdata();
    let repo1 = host.pgbackrest.repos[0].clone();
    fs::rename(&repo1, sandbox.path("repo1-share-not-mounted")).expect("take repo1 away");

    let boot = host.boot();
    boot.expect_verified();
    assert_eq!(boot.decision(), "restore");
    let run = boot.run.as_ref().expect("the unit ran").all_output();
    assert!(run.contains("repo1 (nfs) is unreachable"), "{run}");
    assert_eq!(host.rows(), golden::ROWS);
    let receipt = host.receipt();
    assert_eq!(receipt["source"]["repo"], 2);
    assert_eq!(receipt["source"]["repo_name"], "s3");
    assert_eq!(receipt["source"]["backup_label"], s3_label);
    // Recovery consulted the S3 repository only: repo1 was unreachable when the restore was
    // decided (asking it at every segment, recovery could never end while the share is down).
    assert_eq!(receipt["source"]["recovery_repos"], json!([2]), "{receipt}");
    assert_eq!(
        receipt["source"]["left_out"],
        json!([{"repo": 1, "repo_name": "nfs", "reason": "unreachable when the restore was decided"}]),
        "{receipt}"
    );
    assert!(
        receipt["recovery"]["next_segment"].is_string(),
        "verify proved the end of the archive in repo2: {receipt}"
    );
    let verify = boot.verify.as_ref().expect("verify ran").all_output();
    assert!(
        verify.contains("repo1 (nfs) was left out of recovery (unreachable when the restore was decided) and cannot be asked now either"),
        "{verify}"
    );
    let log = fs::read_to_string(&host.cluster.log).unwrap_or_default();
    assert!(!log.contains("could not be asked"), "{log}");
    assert!(
        !run.contains(testbed::s3::SECRET_KEY)
            && !verify.contains(testbed::s3::SECRET_KEY)
            && !log.contains(testbed::s3::SECRET_KEY),
        "the secret never shows in the output or PostgreSQL's log (its restore_command asked S3)"
    );
}
