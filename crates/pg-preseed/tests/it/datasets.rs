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
