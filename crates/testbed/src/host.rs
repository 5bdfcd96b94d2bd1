//! A host under test: PGDATA, a receipt path, pgBackRest repositories copied from the golden
//! fixture, a pg-preseed config, and the pg-preseed binary to drive — the same sequence the
//! NixOS units drive (preflight → run → start PostgreSQL → verify).

use std::fs;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;

use crate::{golden, preseed_config, Cluster, Golden, Pgbackrest, Sandbox};

/// The outcome of one pg-preseed invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON (for `--json` runs).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The `decision` field of a `--json` run.
    pub fn decision(&self) -> String {
        self.json()["decision"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// stdout and stderr together, for "the output names X" assertions.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub struct Host<'a> {
    pub sandbox: &'a Sandbox,
    pub bin: Utf8PathBuf,
    pub pgdata: Utf8PathBuf,
    pub marker: Utf8PathBuf,
    pub config_path: Utf8PathBuf,
    pub config: Value,
    pub cluster: Cluster,
    pub pgbackrest: Pgbackrest,
}

impl<'a> Host<'a> {
    /// A host whose PGDATA (`sandbox/pgdata`, existing and empty) has not been restored yet,
    /// with `repos` copies of the golden repositories.
    pub fn new(sandbox: &'a Sandbox, bin: &Utf8Path, repos: usize) -> Host<'a> {
        let pgdata = sandbox.pg_dir("pgdata");
        Host::with_pgdata(sandbox, bin, pgdata, repos)
    }

    /// As [`Host::new`] with PGDATA somewhere else (a mount point, say). PGDATA is not created.
    pub fn with_pgdata(
        sandbox: &'a Sandbox,
        bin: &Utf8Path,
        pgdata: Utf8PathBuf,
        repos: usize,
    ) -> Host<'a> {
        let repo_paths = Golden::get().copy_repos(sandbox, repos);
        let mut cluster = sandbox.cluster(&pgdata);
        let pgbackrest = Pgbackrest::write(sandbox, &cluster, &repo_paths);
        cluster.pgbackrest_config = Some(pgbackrest.config.clone());
        let marker = sandbox.path("state/receipt.json");
        let config = preseed_config(&pgdata, &marker, &pgbackrest);
        let config_path = sandbox.path("pg-preseed.json");
        let host = Host {
            sandbox,
            bin: bin.to_owned(),
            pgdata,
            marker,
            config_path,
            config,
            cluster,
            pgbackrest,
        };
        host.write_config();
        host
    }

    /// Sets a config value by JSON pointer ("/pgbackrest/process_max") and rewrites the file.
    pub fn set(&mut self, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let target = if parent.is_empty() {
            &mut self.config
        } else {
            self.config
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("no {parent} in config"))
        };
        target[key] = value;
        self.write_config();
    }

    fn write_config(&self) {
        fs::write(
            &self.config_path,
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }

    /// Runs `pg-preseed --config <this host's> --json <args>`.
    pub fn preseed(&self, args: &[&str]) -> Run {
        self.preseed_command(args).output().map_or_else(
            |e| panic!("failed to run {}: {e}", self.bin),
            |output| Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
        )
    }

    /// The command [`Host::preseed`] runs, for tests that start it in the background.
    pub fn preseed_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&self.config_path)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .env("PG_PRESEED_LOG", "info");
        command
    }

    /// What the preseed unit, PostgreSQL and the verify unit do at boot: run; if that succeeds
    /// and PGDATA holds a cluster, start PostgreSQL and verify. Returns run's result.
    pub fn boot(&self) -> Run {
        let run = self.preseed(&["run"]);
        if run.code == 0 && self.pgdata.join("PG_VERSION").exists() {
            self.cluster.start();
            self.preseed(&["verify"]).expect_code(0);
        }
        run
    }

    /// Rows in the golden table (the server must be running).
    pub fn rows(&self) -> u64 {
        self.cluster
            .psql(&format!("SELECT count(*) FROM {}", golden::TABLE))
            .parse()
            .expect("a count")
    }

    /// The receipt as JSON.
    pub fn receipt(&self) -> Value {
        serde_json::from_slice(&fs::read(&self.marker).expect("the receipt exists"))
            .expect("receipt JSON")
    }

    /// The claim (`<marker>.pending`) as JSON, if present.
    pub fn claim(&self) -> Option<Value> {
        fs::read(format!("{}.pending", self.marker))
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).expect("claim JSON"))
    }

    /// Empties PGDATA the way the incident's drill did (`rm -rf PGDATA/*`), server stopped.
    pub fn wipe_pgdata(&self) {
        if self.pgdata.join("postmaster.pid").exists() {
            self.cluster.stop();
        }
        for entry in fs::read_dir(&self.pgdata).expect("read PGDATA") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                fs::remove_dir_all(&path).expect("remove");
            } else {
                fs::remove_file(&path).expect("remove");
            }
        }
    }
}
