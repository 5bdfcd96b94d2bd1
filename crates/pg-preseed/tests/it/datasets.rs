//! Tier 2: `datasets check` / `datasets ensure` with real `zfs` commands (zfs-fuse), as root.

use std::process::Command;

use camino::Utf8Path;
use serde_json::{json, Value};
use testbed::{run_ok, zfs::Pool, Sandbox};

struct Outcome {
    code: i32,
    json: Value,
}

fn datasets(config: &Utf8Path, command: &str) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_pg-preseed"))
        .args(["--config", config.as_str(), "--json", "datasets", command])
        .output()
        .expect("run pg-preseed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        code: output.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
    }
}

fn config(sandbox: &Sandbox, pgdata: &Utf8Path, declared: &Value) -> camino::Utf8PathBuf {
    testbed::write_config(
        sandbox,
        "datasets.json",
        &json!({
            "pgdata": pgdata,
            "marker": sandbox.path("state/receipt.json"),
            "postgres": {"major": 16},
            "pgbackrest": {"stanza": "main"},
            "datasets": declared,
            "runtime_dir": sandbox.path("run"),
        }),
    )
}

fn zfs_get(dataset: &str, property: &str) -> String {
    let output = Command::new("zfs")
        .args(["get", "-H", "-o", "value", property, dataset])
        .output()
        .expect("zfs get");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn zfs_datasets_ensure_creates_declared_datasets_with_properties() {
    let sandbox = Sandbox::new("dsensure");
    let pool = Pool::create(&sandbox, "dse");
    let pgdata = sandbox.path("var/lib/postgresql/16");
    let name = pool.dataset("services/postgresql");
    let config = config(
        &sandbox,
        &pgdata,
        &json!([{"name": name, "mountpoint": pgdata, "properties": {"compression": "on", "recordsize": "8K"}}]),
    );

    let check = datasets(&config, "check");
    assert_eq!(check.code, 0);
    assert_eq!(check.json["decision"], "changes");
    assert!(zfs_get(&name, "name").is_empty(), "check creates nothing");

    let ensure = datasets(&config, "ensure");
    assert_eq!(ensure.code, 0, "{}", ensure.json);
    assert_eq!(ensure.json["decision"], "changed");
    assert_eq!(zfs_get(&name, "mountpoint"), pgdata.as_str());
    assert_eq!(zfs_get(&name, "compression"), "on");
    assert_eq!(zfs_get(&name, "recordsize"), "8K");
    assert_eq!(zfs_get(&name, "canmount"), "on");
    // zfs-fuse has no `overlay` property: a clear warning, not a failure.
    let warnings = ensure.json["warnings"].to_string();
    assert!(warnings.contains("overlay"), "{warnings}");

    let again = datasets(&config, "check");
    assert_eq!(again.code, 0);
    assert_eq!(again.json["decision"], "clean");
}

/// The incident's leftover dataset claims the declared mountpoint: refuse, name it, change nothing.
#[test]
fn zfs_datasets_ensure_refuses_an_undeclared_dataset_on_a_declared_mountpoint() {
    let sandbox = Sandbox::new("dsconflict");
    let pool = Pool::create(&sandbox, "dsc");
    let pgdata = sandbox.path("var/lib/postgresql/16");
    let stray = pool.create_dataset("services/postgres", Some(&pgdata));
    let declared = pool.dataset("services/postgresql");
    let config = config(
        &sandbox,
        &pgdata,
        &json!([{"name": declared, "mountpoint": pgdata}]),
    );

    for command in ["check", "ensure"] {
        let outcome = datasets(&config, command);
        assert_eq!(outcome.code, 3, "{command}: {}", outcome.json);
        assert_eq!(outcome.json["decision"], "refuse");
        let text = outcome.json["findings"].to_string();
        assert!(text.contains(&stray) && text.contains(&declared), "{text}");
    }
    assert!(zfs_get(&declared, "name").is_empty(), "nothing was created");
}

/// A declared dataset whose pool is not imported (a first boot before the pool exists, a disk
/// that is not attached): refused with the pool named, exit 3, not an internal error from
/// `zfs create`.
#[test]
fn zfs_datasets_ensure_refuses_a_dataset_whose_pool_is_not_imported() {
    let sandbox = Sandbox::new("dsnopool");
    // A real pool exists (zfs-fuse answers), but not the declared dataset's.
    let _pool = Pool::create(&sandbox, "dsn");
    let pgdata = sandbox.path("pgdata");
    let config = config(
        &sandbox,
        &pgdata,
        &json!([{"name": "pgpreseednopool/services/postgresql", "mountpoint": pgdata}]),
    );
    for command in ["check", "ensure"] {
        let outcome = datasets(&config, command);
        assert_eq!(outcome.code, 3, "{command}: {}", outcome.json);
        assert_eq!(outcome.json["decision"], "refuse");
        assert_eq!(outcome.json["findings"][0]["kind"], "pool_missing");
        let text = outcome.json.to_string();
        assert!(
            text.contains("pool pgpreseednopool of dataset pgpreseednopool/services/postgresql is not imported")
                && text.contains("zpool import pgpreseednopool"),
            "{text}"
        );
        // No misleading word about the overlay property of a pool that is not there.
        assert!(!text.contains("no `overlay` property"), "{text}");
    }
}

#[test]
fn zfs_datasets_ensure_sets_drifted_properties() {
    let sandbox = Sandbox::new("dsdrift");
    let pool = Pool::create(&sandbox, "dsd");
    let pgdata = sandbox.path("pgdata");
    let name = pool.create_dataset("pg", Some(&pgdata));
    let config = config(
        &sandbox,
        &pgdata,
        &json!([{"name": name, "mountpoint": pgdata, "properties": {"atime": "off"}}]),
    );
    // Issue 10.16: PGDATA is this dataset's root; with snapdir=visible it would list `.zfs`.
    run_ok(Command::new("zfs").args(["set", "snapdir=visible", name.as_str()]));
    assert_eq!(zfs_get(&name, "atime"), "on");
    let check = datasets(&config, "check");
    assert_eq!(check.code, 0);
    let reasons = check.json["reasons"].to_string();
    assert!(reasons.contains("would set atime=off"), "{reasons}");
    assert!(reasons.contains("would set snapdir=hidden"), "{reasons}");
    assert_eq!(zfs_get(&name, "atime"), "on");
    assert_eq!(datasets(&config, "ensure").code, 0);
    assert_eq!(zfs_get(&name, "atime"), "off");
    assert_eq!(zfs_get(&name, "snapdir"), "hidden");
}

fn pg_preseed(config: &Utf8Path, args: &[&str]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_pg-preseed"))
        .args(["--config", config.as_str(), "--json"])
        .args(args)
        .output()
        .expect("run pg-preseed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    Outcome {
        code: output.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
    }
}

/// Issue 16.4: the datasets unit's outcome — a change, then the incident's refusal — reaches
/// `status` and the metrics like every acting command's, recorded in the runtime directory: at
/// boot it runs before the filesystems are mounted, so nothing is written beside the receipt
/// (whose directory does not exist here, as before the mounts).
#[test]
fn zfs_datasets_ensure_records_its_outcome_for_status_and_metrics() {
    let sandbox = Sandbox::new("dsrecord");
    let pool = Pool::create(&sandbox, "dsr");
    let pgdata = sandbox.path("var/lib/postgresql/16");
    let name = pool.dataset("services/postgresql");
    let runtime = sandbox.path("run/pg-preseed");
    let textfile = sandbox.path("metrics/pg-preseed.prom");
    std::fs::create_dir_all(textfile.parent().expect("a directory")).expect("metrics dir");
    let receipt_dir = sandbox.path("state");
    let config = testbed::write_config(
        &sandbox,
        "datasets.json",
        &json!({
            "pgdata": pgdata,
            "marker": receipt_dir.join("receipt.json"),
            "postgres": {"major": 16},
            "pgbackrest": {"stanza": "main"},
            "datasets": [{"name": name, "mountpoint": pgdata}],
            "metrics": {"textfile": textfile},
            "runtime_dir": runtime,
        }),
    );
    let metrics = || std::fs::read_to_string(&textfile).expect("the metrics file was written");

    let ensure = datasets(&config, "ensure");
    assert_eq!(ensure.code, 0, "{}", ensure.json);
    assert_eq!(ensure.json["decision"], "changed");
    assert_eq!(
        ensure.json["outcome"], "ok",
        "an acting command reports its outcome"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(runtime.join("datasets.last-run")).expect("the record"),
    )
    .expect("JSON");
    assert_eq!(record["datasets ensure"]["decision"], "changed");
    assert!(
        !receipt_dir.exists(),
        "nothing is written beside the receipt before the mounts"
    );
    let text = metrics();
    for line in [
        "pg_preseed_last_decision{command=\"datasets ensure\",decision=\"changed\"} 1",
        "pg_preseed_last_outcome{command=\"datasets ensure\",outcome=\"ok\"} 1",
        "pg_preseed_last_exit_code{command=\"datasets ensure\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let status = pg_preseed(&config, &["status"]);
    assert_eq!(status.code, 0, "{}", status.json);
    assert_eq!(
        status.json["last_runs"]["datasets ensure"]["decision"], "changed",
        "{}",
        status.json
    );

    // The incident's leftover dataset on the declared mountpoint: refused, and recorded so.
    let stray = pool.create_dataset("services/postgres", Some(&pgdata));
    let refused = datasets(&config, "ensure");
    assert_eq!(refused.code, 3, "{}", refused.json);
    let text = metrics();
    for line in [
        "pg_preseed_last_outcome{command=\"datasets ensure\",outcome=\"refused\"} 1",
        "pg_preseed_last_exit_code{command=\"datasets ensure\"} 3",
        "pg_preseed_findings{command=\"datasets ensure\"} ",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(
        !text.contains("outcome=\"ok\"} 1"),
        "the old outcome is replaced:\n{text}"
    );
    let status = pg_preseed(&config, &["status"]);
    let last = &status.json["last_runs"]["datasets ensure"];
    assert_eq!(last["outcome"], "refused", "{}", status.json);
    assert!(
        last["reasons"].to_string().contains(&stray),
        "the record names the stray dataset: {last}"
    );
    assert!(!receipt_dir.exists());
}
