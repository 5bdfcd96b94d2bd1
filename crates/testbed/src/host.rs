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

    /// The `kind` of every finding in a `--json` report.
    pub fn finding_kinds(&self) -> Vec<String> {
        self.json()["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// stdout and stderr together, for "the output names X" assertions.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// What one [`Host::boot`] did.
#[derive(Debug)]
pub struct Boot {
    pub preflight: Run,
    /// `None` when systemd's condition skipped the unit (PGDATA holds a cluster).
    pub run: Option<Run>,
    /// postgresql.service's first ExecStartPre, `pg-preseed initdb-guard`.
    pub guard: Option<Run>,
    /// nixpkgs' postgresql.service ran initdb (PG_VERSION was missing when it started).
    pub initdb_ran: bool,
    pub started: bool,
    pub verify: Option<Run>,
}

impl Boot {
    /// Panics with every step's output unless PostgreSQL started and verify passed.
    pub fn expect_verified(&self) -> &Boot {
        let ok = self.started && self.verify.as_ref().is_some_and(|v| v.code == 0);
        assert!(ok, "the boot did not end verified: {self:#?}");
        self
    }

    /// The decision of the restore unit (`"skipped"` when its condition skipped it).
    pub fn decision(&self) -> String {
        self.run
            .as_ref()
            .map_or_else(|| "skipped".to_owned(), Run::decision)
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
    /// Environment pg-preseed runs with (what the unit's EnvironmentFile would set).
    pub env: Vec<(String, String)>,
}

impl<'a> Host<'a> {
    /// A host whose PGDATA (`sandbox/pgdata`, existing and empty) has not been restored yet,
    /// with `repos` copies of the golden repositories.
    pub fn new(sandbox: &'a Sandbox, bin: &Utf8Path, repos: usize) -> Host<'a> {
        let pgdata = sandbox.pg_dir("pgdata");
        Host::with_pgdata(sandbox, bin, &pgdata, repos)
    }

    /// As [`Host::new`] with PGDATA somewhere else (a mount point, say). PGDATA is not created.
    pub fn with_pgdata(
        sandbox: &'a Sandbox,
        bin: &Utf8Path,
        pgdata: &Utf8Path,
        repos: usize,
    ) -> Host<'a> {
        let repo_paths = Golden::get().copy_repos(sandbox, repos);
        let cluster = sandbox.cluster(pgdata);
        let pgbackrest = Pgbackrest::write(sandbox, &cluster, &repo_paths);
        Host::from_parts(sandbox, bin, cluster, pgbackrest)
    }

    /// A host around a cluster and repositories made elsewhere (the demo makes its own).
    pub fn from_parts(
        sandbox: &'a Sandbox,
        bin: &Utf8Path,
        mut cluster: Cluster,
        pgbackrest: Pgbackrest,
    ) -> Host<'a> {
        cluster.pgbackrest_config = Some(pgbackrest.config.clone());
        let pgdata = cluster.pgdata.clone();
        // The receipt's directory exists, owned by postgres, as the module's tmpfiles rule makes it.
        let marker = sandbox.shared_dir("state").join("receipt.json");
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
            env: Vec::new(),
        };
        host.write_config();
        host
    }

    /// Adds an S3 repository as repository `n`: its options in pgbackrest.conf, its credentials in
    /// the environment of pg-preseed, pgBackRest and the server (archive_command).
    pub fn add_s3_repo(&mut self, s3: &crate::s3::S3, n: u32) {
        self.pgbackrest.add_global(&s3.repo_options(n));
        let env = crate::s3::S3::env(n);
        self.pgbackrest.env.extend(env.iter().cloned());
        self.cluster.env.extend(env.iter().cloned());
        self.env.extend(env);
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

    /// Runs `pg-preseed --config <this host's> <args>` for its human output.
    pub fn preseed_text(&self, args: &[&str]) -> Run {
        let output = self
            .command(false, args)
            .env("PG_PRESEED_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", self.bin));
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The command [`Host::preseed`] runs, for tests that start it in the background.
    pub fn preseed_command(&self, args: &[&str]) -> Command {
        self.command(true, args)
    }

    /// Starts `pg-preseed` in the background with its output discarded.
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.preseed_command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pg-preseed")
    }

    /// Starts `pg-preseed` in the background with its output kept (`wait_with_output`).
    pub fn spawn_captured(&self, args: &[&str]) -> std::process::Child {
        self.preseed_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pg-preseed")
    }

    fn command(&self, json: bool, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--config").arg(&self.config_path);
        if json {
            command.arg("--json");
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .env("PG_PRESEED_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// One boot, as the NixOS units run it: `postgresql-preseed-preflight` (every boot); the
    /// `postgresql-preseed` unit when its condition holds (no `PG_VERSION`, no `pg_control`, or
    /// pgBackRest's manifest present); then, only if both succeeded, what `postgresql.service`
    /// does — the module's `pg-preseed initdb-guard`, nixpkgs' preStart (which runs `initdb`
    /// whenever `PG_VERSION` is missing) — and starts the server; then
    /// `postgresql-preseed-verify`. Doing nixpkgs' initdb here keeps the twins
    /// honest: an engine that wrongly let an empty PGDATA through would get an empty database.
    pub fn boot(&self) -> Boot {
        let preflight = self.preseed(&["preflight"]);
        let mut boot = Boot {
            preflight,
            run: None,
            guard: None,
            initdb_ran: false,
            started: false,
            verify: None,
        };
        if boot.preflight.code != 0 {
            return boot;
        }
        let condition = !self.pgdata.join("PG_VERSION").exists()
            || !self.pgdata.join("global/pg_control").exists()
            || self.pgdata.join("backup.manifest").exists();
        if condition {
            let run = self.preseed(&["run"]);
            let ok = run.code == 0;
            boot.run = Some(run);
            if !ok {
                return boot;
            }
        }
        // postgresql.service: the module's first ExecStartPre, then nixpkgs' preStart.
        let guard = self.preseed(&["initdb-guard"]);
        let ok = guard.code == 0;
        boot.guard = Some(guard);
        if !ok {
            return boot;
        }
        if !self.pgdata.join("PG_VERSION").exists() {
            self.cluster.initdb();
            boot.initdb_ran = true;
        }
        self.cluster.start();
        boot.started = true;
        boot.verify = Some(self.preseed(&["verify"]));
        boot
    }

    /// Boots and asserts what every recovery must end with: verified, by `decision`, with no
    /// `initdb` along the way, and every golden row there.
    pub fn boot_recovers(&self, decision: &str) -> Boot {
        let boot = self.boot();
        boot.expect_verified();
        assert_eq!(boot.decision(), decision, "{boot:#?}");
        assert!(!boot.initdb_ran, "initdb ran: {boot:#?}");
        assert_eq!(self.rows(), golden::ROWS);
        boot
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

    /// Replaces repository `n` (1-based) with an empty one on a filesystem of its own (a tmpfs
    /// mounted at its path, owned by postgres), the way a freshly mounted NFS share or disk
    /// looks: empty, but provably the repository and not the directory underneath.
    pub fn empty_repo_share(&self, n: usize) {
        let repo = &self.pgbackrest.repos[n - 1];
        std::fs::remove_dir_all(repo).expect("remove the repository");
        crate::mounts::tmpfs(repo, 64, &format!("repo{n}-share"));
        crate::chown_postgres(repo);
    }

    /// Empties PGDATA the way the incident's drill did (`rm -rf PGDATA/*`), server stopped.
    pub fn wipe_pgdata(&self) {
        if self.pgdata.join("postmaster.pid").exists() {
            self.cluster.stop();
        }
        crate::empty_dir(&self.pgdata);
    }
}
