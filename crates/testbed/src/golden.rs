//! The golden fixture: a cluster with known contents, backed up to two pgBackRest repositories,
//! built once per machine and copied into each test's sandbox (building it takes seconds; copying
//! takes milliseconds).

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::{pg_bin_dir, pg_major, run_ok, Pgbackrest, Sandbox, ROOT};

/// The table whose row count proves a restore brought the data back.
pub const TABLE: &str = "preseed_check";
pub const ROWS: u64 = 10_000;
/// pgbench scale: about 75 MiB of data, so a restore takes long enough to interrupt.
pub const PGBENCH_SCALE: u32 = 5;
/// Bump when the fixture's recipe changes.
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Golden {
    pub dir: Utf8PathBuf,
    /// repo1 and repo2, each with one full backup of the same cluster.
    pub repos: Vec<Utf8PathBuf>,
    pub labels: Vec<String>,
    pub system_identifier: u64,
    pub major: u32,
}

impl Golden {
    /// The fixture, built on first use (other test processes wait on a lock meanwhile).
    #[must_use]
    pub fn get() -> &'static Golden {
        static GOLDEN: OnceLock<Golden> = OnceLock::new();
        GOLDEN.get_or_init(load_or_build)
    }

    /// Copies the first `count` repositories into `sandbox/repo1…`, owned by postgres.
    #[must_use]
    pub fn copy_repos(&self, sandbox: &Sandbox, count: usize) -> Vec<Utf8PathBuf> {
        self.repos
            .iter()
            .take(count)
            .enumerate()
            .map(|(index, source)| {
                let target = sandbox.path(&format!("repo{}", index + 1));
                run_ok(Command::new("cp").args(["-a", source.as_str(), target.as_str()]));
                target
            })
            .collect()
    }
}

fn load_or_build() -> Golden {
    crate::require_root();
    let major = pg_major();
    let base = Utf8Path::new(ROOT);
    fs::create_dir_all(base).expect("create the testbed root");
    let dir = base.join(format!("golden-v{VERSION}-pg{major}"));
    let ready = dir.join("ready.json");
    let lock = fs::File::create(base.join(format!("golden-v{VERSION}.lock"))).expect("create lock");
    // Other test processes wait here while one builds; the kernel releases it if that one dies.
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the golden fixture");
    if let Ok(text) = fs::read_to_string(&ready) {
        if let Ok(golden) = serde_json::from_str(&text) {
            return golden;
        }
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove a half-built fixture");
    }
    let golden = build(&dir, major);
    fs::write(
        &ready,
        serde_json::to_vec_pretty(&golden).expect("serialise"),
    )
    .expect("write ready.json");
    golden
}

fn build(dir: &Utf8Path, major: u32) -> Golden {
    let sandbox = Sandbox::new("golden-build");
    let cluster = {
        let mut cluster = sandbox.cluster(&sandbox.pg_dir("pgdata"));
        cluster.initdb();
        let repos = vec![sandbox.shared_dir("repo1"), sandbox.shared_dir("repo2")];
        let pgbackrest = Pgbackrest::write(&sandbox, &cluster, &repos);
        cluster.pgbackrest_config = Some(pgbackrest.config.clone());
        cluster.start();
        pgbackrest.run(&["stanza-create"]);
        run_ok(crate::as_postgres(pg_bin_dir().join("pgbench")).args([
            "-q",
            "-i",
            "-s",
            &PGBENCH_SCALE.to_string(),
            "-h",
            cluster.socket_dir.as_str(),
            "-p",
            &crate::PORT.to_string(),
            "-U",
            crate::PG_USER,
            "postgres",
        ]));
        cluster.psql(&format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, payload text NOT NULL);
             INSERT INTO {TABLE} SELECT i, md5(i::text) FROM generate_series(1, {ROWS}) i;"
        ));
        pgbackrest.run(&["--repo=1", "--type=full", "backup"]);
        pgbackrest.run(&["--repo=2", "--type=full", "backup"]);
        cluster.stop();
        (cluster, pgbackrest)
    };
    let (cluster, pgbackrest) = cluster;
    let info: serde_json::Value =
        serde_json::from_slice(&pgbackrest.run(&["--output=json", "info"]).stdout)
            .expect("pgbackrest info is JSON");
    let labels: Vec<String> = info[0]["backup"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["label"].as_str().expect("label").to_owned())
        .collect();
    assert_eq!(labels.len(), 2, "one backup per repository: {info}");
    fs::create_dir_all(dir).expect("create the fixture directory");
    let repos: Vec<Utf8PathBuf> = ["repo1", "repo2"]
        .iter()
        .map(|name| {
            let target = dir.join(name);
            run_ok(Command::new("cp").args(["-a", sandbox.path(name).as_str(), target.as_str()]));
            target
        })
        .collect();
    Golden {
        dir: dir.to_owned(),
        repos,
        labels,
        system_identifier: cluster.system_identifier(),
        major,
    }
}
