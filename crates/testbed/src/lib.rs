//! Throwaway PostgreSQL clusters, pgBackRest repositories, mounts and zfs-fuse pools for the
//! real-system tests (tier 2), benchmarks and the demo.
//!
//! Everything lives under one [`Sandbox`] directory that is torn down (servers stopped, mounts
//! unmounted, files removed) when it is dropped. The harness needs root, as the tests it serves
//! do: [`require_root`] fails loudly instead of letting a test skip.

// Harness calls run for their effect far more often than for their value.
#![allow(clippy::must_use_candidate)]

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

pub mod golden;
pub mod host;
pub mod mounts;
pub mod s3;
pub mod zfs;

pub use golden::Golden;
pub use host::{Boot, Host, Run};

/// Where sandboxes live. Not `/tmp` itself: PostgreSQL needs every ancestor traversable by the
/// `postgres` user, and a private directory keeps the tests' debris in one place.
pub const ROOT: &str = "/tmp/pg-preseed-testbed";

/// The PostgreSQL user every cluster runs as.
pub const PG_USER: &str = "postgres";

/// Fails the test (never skips it) when not running as root.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this real-system test needs root (mounts, zfs, running PostgreSQL as {PG_USER}); \
         run the suite as root, as .ci/run does — it is never skipped"
    );
}

/// PostgreSQL's binaries: `$PG_BIN_DIR`, else the newest `/usr/lib/postgresql/*/bin`.
#[must_use]
pub fn pg_bin_dir() -> Utf8PathBuf {
    static DIR: OnceLock<Utf8PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(dir) = std::env::var("PG_BIN_DIR") {
            return Utf8PathBuf::from(dir);
        }
        let mut versions: Vec<u32> = fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed under /usr/lib/postgresql (or set PG_BIN_DIR)")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        versions.sort_unstable();
        let newest = versions.last().expect("a PostgreSQL version directory");
        Utf8PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
    })
    .clone()
}

/// The major version of [`pg_bin_dir`]'s PostgreSQL.
#[must_use]
pub fn pg_major() -> u32 {
    let output = run_ok(Command::new(pg_bin_dir().join("postgres")).arg("--version"));
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the major version from {text:?}"))
}

/// Runs a command, panicking with its output when it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A command run as the PostgreSQL user (through `runuser`, as root).
#[must_use]
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", PG_USER, "--"])
        .arg(program)
        .current_dir("/");
    command
}

/// uid and gid of the PostgreSQL user.
#[must_use]
pub fn postgres_ids() -> (nix::unistd::Uid, nix::unistd::Gid) {
    let user = nix::unistd::User::from_name(PG_USER)
        .expect("user lookup")
        .expect("the postgres user exists (install PostgreSQL)");
    (user.uid, user.gid)
}

/// Gives a path to the PostgreSQL user.
pub fn chown_postgres(path: &Utf8Path) {
    let (uid, gid) = postgres_ids();
    nix::unistd::chown(path.as_std_path(), Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {path}: {e}"));
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory for one test, removed with everything in it when dropped.
pub struct Sandbox {
    pub root: Utf8PathBuf,
    clusters: std::cell::RefCell<Vec<Utf8PathBuf>>,
    pools: std::cell::RefCell<Vec<String>>,
}

impl Sandbox {
    /// Creates `/tmp/pg-preseed-testbed/<name>-<pid>`, traversable by the PostgreSQL user.
    #[must_use]
    pub fn new(name: &str) -> Sandbox {
        require_root();
        let base = Utf8Path::new(ROOT);
        fs::create_dir_all(base).expect("create the testbed root");
        fs::set_permissions(base, fs::Permissions::from_mode(0o755)).expect("chmod testbed root");
        let root = base.join(format!("{name}-{}", std::process::id()));
        if root.exists() {
            mounts::unmount_below(&root);
            fs::remove_dir_all(&root).expect("remove an old sandbox");
        }
        fs::create_dir_all(&root).expect("create the sandbox");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod sandbox");
        Sandbox {
            root,
            clusters: std::cell::RefCell::new(Vec::new()),
            pools: std::cell::RefCell::new(Vec::new()),
        }
    }

    #[must_use]
    pub fn path(&self, relative: &str) -> Utf8PathBuf {
        self.root.join(relative)
    }

    /// A directory owned by the PostgreSQL user (mode 0700, as PGDATA must be).
    #[must_use]
    pub fn pg_dir(&self, relative: &str) -> Utf8PathBuf {
        let dir = self.path(relative);
        fs::create_dir_all(&dir).expect("create a directory");
        chown_postgres(&dir);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
        dir
    }

    /// A directory owned by the PostgreSQL user (mode 0755).
    #[must_use]
    pub fn shared_dir(&self, relative: &str) -> Utf8PathBuf {
        let dir = self.path(relative);
        fs::create_dir_all(&dir).expect("create a directory");
        chown_postgres(&dir);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        dir
    }

    /// Records a zfs-fuse pool to destroy on drop (after the servers on it are stopped).
    pub fn register_pool(&self, name: &str) {
        self.pools.borrow_mut().push(name.to_owned());
    }

    /// A cluster handle for PGDATA at `pgdata`, listening only on a socket in this sandbox.
    /// Servers started through it are stopped when the sandbox is dropped.
    #[must_use]
    pub fn cluster(&self, pgdata: &Utf8Path) -> Cluster {
        self.clusters.borrow_mut().push(pgdata.to_owned());
        Cluster {
            pgdata: pgdata.to_owned(),
            socket_dir: self.shared_dir("sockets"),
            log: self.shared_dir("logs").join(format!(
                "{}.log",
                pgdata
                    .strip_prefix(&self.root)
                    .unwrap_or(pgdata)
                    .as_str()
                    .trim_start_matches('/')
                    .replace('/', "_")
            )),
            pgbackrest_config: None,
            env: Vec::new(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pgdata in self.clusters.borrow().iter() {
            if pgdata.join("postmaster.pid").exists() {
                let _ = as_postgres(pg_bin_dir().join("pg_ctl"))
                    .args(["-D", pgdata.as_str(), "-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for pool in self.pools.borrow().iter() {
            zfs::destroy_pool(pool);
        }
        mounts::unmount_below(&self.root);
        if std::env::var_os("TESTBED_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// A PostgreSQL cluster in a sandbox.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub pgdata: Utf8PathBuf,
    pub socket_dir: Utf8PathBuf,
    pub log: Utf8PathBuf,
    /// Passed to the server as `PGBACKREST_CONFIG`, so `archive_command`/`restore_command` use
    /// this sandbox's repositories.
    pub pgbackrest_config: Option<Utf8PathBuf>,
    /// More environment for the server (repository credentials for archive_command).
    pub env: Vec<(String, String)>,
}

/// The port every test cluster uses: each listens only on a socket in its own sandbox.
pub const PORT: u16 = 5432;

impl Cluster {
    /// `initdb` as the PostgreSQL user, with archiving through pgBackRest.
    pub fn initdb(&self) {
        run_ok(
            as_postgres(pg_bin_dir().join("initdb"))
                .args([
                    "-D",
                    self.pgdata.as_str(),
                    "-A",
                    "trust",
                    "-U",
                    PG_USER,
                    "--no-sync",
                ])
                .env("LC_ALL", "C"),
        );
        let mut conf = String::new();
        let _ = writeln!(conf, "listen_addresses = ''");
        let _ = writeln!(conf, "archive_mode = on");
        let _ = writeln!(
            conf,
            "archive_command = 'pgbackrest --stanza=main archive-push %p'"
        );
        let _ = writeln!(conf, "fsync = off");
        let _ = writeln!(conf, "shared_buffers = 32MB");
        let path = self.pgdata.join("postgresql.conf");
        let mut existing = fs::read_to_string(&path).expect("read postgresql.conf");
        existing.push_str(&conf);
        fs::write(&path, existing).expect("write postgresql.conf");
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let output = self.start_command().output().expect("run pg_ctl");
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Starts the server and waits until it either left recovery or stopped (a FATAL during
    /// recovery); true when it promoted. pg_ctl's own answer does not tell: with hot standby it
    /// returns once read-only connections are accepted, and recovery may fail after that.
    pub fn start_settled(&self) -> bool {
        let _ = self.start_command().output().expect("run pg_ctl");
        let pid = self.pgdata.join("postmaster.pid");
        let mut promoted = false;
        wait_for(
            "the server to promote or stop",
            Duration::from_secs(120),
            || {
                promoted = self.try_psql("SELECT pg_is_in_recovery()").as_deref() == Some("f");
                promoted || !pid.exists()
            },
        );
        promoted
    }

    /// The `pg_ctl start` command, for tests that expect it to fail.
    #[must_use]
    pub fn start_command(&self) -> Command {
        let mut command = as_postgres(pg_bin_dir().join("pg_ctl"));
        command.args([
            "-D",
            self.pgdata.as_str(),
            "-l",
            self.log.as_str(),
            "-w",
            "-t",
            "120",
            "-o",
            &format!(
                "-p {PORT} -k {} -c listen_addresses='' -c fsync=off",
                self.socket_dir
            ),
            "start",
        ]);
        if let Some(config) = &self.pgbackrest_config {
            command.env("PGBACKREST_CONFIG", config);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::null());
        command
    }

    pub fn stop(&self) {
        run_ok(as_postgres(pg_bin_dir().join("pg_ctl")).args([
            "-D",
            self.pgdata.as_str(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]));
    }

    /// Runs SQL and returns the output (`psql -At`), panicking when psql fails.
    pub fn psql(&self, sql: &str) -> String {
        let output = run_ok(&mut self.psql_command(sql));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs SQL; `None` while the server does not answer (starting, in recovery, stopped).
    pub fn try_psql(&self, sql: &str) -> Option<String> {
        let output = self.psql_command(sql).stderr(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn psql_command(&self, sql: &str) -> Command {
        let mut command = as_postgres(pg_bin_dir().join("psql"));
        command.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.socket_dir.as_str(),
            "-p",
            &PORT.to_string(),
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-c",
            sql,
        ]);
        command
    }

    /// Waits until the server has left recovery (after a restore).
    pub fn wait_promoted(&self) {
        wait_for(
            "the server to leave recovery",
            Duration::from_secs(120),
            || self.psql("SELECT pg_is_in_recovery()") == "f",
        );
    }

    /// The system identifier, from `pg_controldata`.
    #[must_use]
    pub fn system_identifier(&self) -> u64 {
        let output = run_ok(
            Command::new(pg_bin_dir().join("pg_controldata"))
                .args(["-D", self.pgdata.as_str()])
                .env("LC_ALL", "C"),
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Database system identifier:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("pg_controldata prints the system identifier")
    }
}

/// A pgBackRest configuration for one stanza (`main`) in a sandbox.
#[derive(Debug, Clone)]
pub struct Pgbackrest {
    pub config: Utf8PathBuf,
    pub repos: Vec<Utf8PathBuf>,
    /// Environment every pgBackRest command gets (repository credentials).
    pub env: Vec<(String, String)>,
}

impl Pgbackrest {
    /// Writes `pgbackrest.conf` in `dir` for `cluster`, with the given posix repositories
    /// (repo1, repo2, …) and every pgBackRest working path inside the sandbox.
    #[must_use]
    pub fn write(sandbox: &Sandbox, cluster: &Cluster, repos: &[Utf8PathBuf]) -> Pgbackrest {
        let work = sandbox.shared_dir("pgbackrest");
        let mut text = String::from("[global]\n");
        for (index, repo) in repos.iter().enumerate() {
            let _ = writeln!(text, "repo{}-path={repo}", index + 1);
        }
        for (key, sub) in [
            ("lock-path", "lock"),
            ("log-path", "log"),
            ("spool-path", "spool"),
        ] {
            let dir = sandbox.shared_dir(&format!("pgbackrest/{sub}"));
            let _ = writeln!(text, "{key}={dir}");
        }
        let _ = writeln!(text, "log-level-file=off");
        let _ = writeln!(text, "start-fast=y");
        let _ = writeln!(text, "compress-type=lz4");
        let _ = writeln!(text, "\n[main]");
        let _ = writeln!(text, "pg1-path={}", cluster.pgdata);
        let _ = writeln!(text, "pg1-socket-path={}", cluster.socket_dir);
        let _ = writeln!(text, "pg1-port={PORT}");
        let config = work.join("pgbackrest.conf");
        fs::write(&config, text).expect("write pgbackrest.conf");
        chown_postgres(&config);
        Pgbackrest {
            config,
            repos: repos.to_vec(),
            env: Vec::new(),
        }
    }

    /// Adds lines to the `[global]` section (another repository, say).
    pub fn add_global(&self, lines: &str) {
        let text = fs::read_to_string(&self.config).expect("read pgbackrest.conf");
        let text = text.replacen("[global]\n", &format!("[global]\n{lines}"), 1);
        fs::write(&self.config, text).expect("write pgbackrest.conf");
    }

    /// Runs a pgBackRest command as the PostgreSQL user.
    pub fn run(&self, args: &[&str]) -> Output {
        run_ok(
            // runuser keeps the environment: credentials travel there, never in argv.
            as_postgres("pgbackrest")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .arg(format!("--config={}", self.config))
                .arg("--stanza=main")
                .args(args),
        )
    }
}

/// The pg-preseed config for a sandbox, as JSON, ready to be adjusted by a test. Archiving after a
/// restore is held and released as by default, with a watch of one look
/// (`second_primary.watch = 0s`).
#[must_use]
pub fn preseed_config(
    pgdata: &Utf8Path,
    marker: &Utf8Path,
    pgbackrest: &Pgbackrest,
) -> serde_json::Value {
    serde_json::json!({
        "pgdata": pgdata,
        "marker": marker,
        "postgres": {"bin_dir": pg_bin_dir(), "major": pg_major(), "user": PG_USER},
        "pgbackrest": {
            "stanza": "main",
            "config": pgbackrest.config,
            "repos": (1..=pgbackrest.repos.len()).collect::<Vec<_>>(),
        },
        "verify": {"sql": [{"name": "rows restored", "sql": format!("SELECT count(*) FROM {}", golden::TABLE), "expect": golden::ROWS.to_string()}]},
        // Nothing else writes a test's repositories: one look after recovery instead of the
        // default watch (tests of the watch itself set their own).
        "second_primary": {"watch": "0s"}
    })
}

/// Writes a config to the sandbox and returns its path.
#[must_use]
pub fn write_config(sandbox: &Sandbox, name: &str, config: &serde_json::Value) -> Utf8PathBuf {
    let path = sandbox.path(name);
    fs::write(
        &path,
        serde_json::to_vec_pretty(config).expect("serialise config"),
    )
    .expect("write config");
    path
}

/// Removes everything inside `dir`, keeping `dir` itself (`rm -rf dir/*`).
pub fn empty_dir(dir: &Utf8Path) {
    for entry in fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            fs::remove_dir_all(&path).expect("remove");
        } else {
            fs::remove_file(&path).expect("remove");
        }
    }
}

/// Every file and directory below `dir` (relative paths, sorted): to prove nothing was written.
#[must_use]
pub fn tree(dir: &Utf8Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = Utf8PathBuf::from_path_buf(entry.path()).expect("utf-8 path");
            out.push(path.strip_prefix(dir).expect("below dir").to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Processes whose command line has an argument containing `needle` (e.g. `--pg1-path=/x`).
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(needle))
        {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL, the way a power cut ends a process.
pub fn kill9(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `pid` and every process below it (children, grandchildren, …).
pub fn process_tree(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "pid (comm) state ppid …": comm may contain spaces; ppid follows the last ')'.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent = after.split(' ').nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let current = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == current)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    tree
}

/// Flips 64 bytes in the middle of the largest data file of a repository's backups; returns its
/// path relative to `backup/<stanza>` (as `pgbackrest verify` names it).
pub fn corrupt_largest_backup_file(repo: &Utf8Path) -> String {
    let root = repo.join("backup/main");
    let (_, relative) = tree(&root)
        .into_iter()
        .filter(|r| r.contains("/pg_data/") && root.join(r).is_file())
        .map(|r| (fs::metadata(root.join(&r)).expect("stat").len(), r))
        .max()
        .expect("a backup file");
    let path = root.join(&relative);
    let mut bytes = fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0xff;
    }
    fs::write(&path, bytes).expect("write");
    relative
}
