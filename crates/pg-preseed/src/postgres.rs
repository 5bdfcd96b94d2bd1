//! PostgreSQL's own tools: `pg_controldata` (the system identifier), `postmaster.pid` (where the
//! running server listens) and `psql` (the verification queries). Parsers are pure.

use std::time::Duration;

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};

use crate::exec::{Command, Identity};

/// What psql prints for NULL, so it is not mistaken for an empty string.
const NULL_MARK: &str = "\u{1}NULL\u{1}";

/// Finds PostgreSQL's programs: in `postgres.bin_dir` when configured, else in PATH.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bin_dir: Option<Utf8PathBuf>,
}

impl Tools {
    /// `bin_dir` when configured; otherwise PATH if it has `pg_controldata`; otherwise the
    /// per-major directories Debian (`/usr/lib/postgresql/<major>/bin`) and the PGDG RPMs
    /// (`/usr/pgsql-<major>/bin`) install to, which are not in PATH.
    #[must_use]
    pub fn locate(bin_dir: Option<&Utf8Path>, major: u32) -> Tools {
        if let Some(dir) = bin_dir {
            return Tools {
                bin_dir: Some(dir.to_owned()),
            };
        }
        let in_path = std::env::var("PATH").is_ok_and(|path| {
            path.split(':')
                .any(|dir| Utf8Path::new(dir).join("pg_controldata").is_file())
        });
        let bin_dir = if in_path {
            None
        } else {
            [
                format!("/usr/lib/postgresql/{major}/bin"),
                format!("/usr/pgsql-{major}/bin"),
            ]
            .into_iter()
            .map(Utf8PathBuf::from)
            .find(|dir| dir.join("pg_controldata").is_file())
        };
        Tools { bin_dir }
    }

    #[must_use]
    pub fn program(&self, name: &str) -> String {
        match &self.bin_dir {
            Some(dir) => dir.join(name).into_string(),
            None => name.to_owned(),
        }
    }

    /// The cluster's system identifier, from `pg_controldata` (run with `LC_ALL=C` so its labels
    /// are English).
    ///
    /// # Errors
    /// When `pg_controldata` fails or prints no identifier.
    pub fn system_identifier(
        &self,
        pgdata: &Utf8Path,
        run_as: Option<&Identity>,
    ) -> anyhow::Result<u64> {
        let output = Command::new(
            self.program("pg_controldata"),
            vec!["-D".to_owned(), pgdata.to_string()],
        )
        .env("LC_ALL", "C")
        .run_as(run_as)
        .output(Some(Duration::from_secs(60)))?;
        parse_controldata(&String::from_utf8_lossy(&output.stdout))
            .with_context(|| format!("failed to read the system identifier of {pgdata}"))
    }
}

/// `Database system identifier:           7301234567890123456`.
///
/// # Errors
/// When the line is missing or not a number.
pub fn parse_controldata(text: &str) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Database system identifier:"))
        .context("pg_controldata printed no \"Database system identifier\" line")?;
    line.trim()
        .parse()
        .with_context(|| format!("system identifier {:?} is not a number", line.trim()))
}

/// The first lines of `postmaster.pid`, which a running server keeps up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmasterPid {
    pub pid: u32,
    pub data_dir: String,
    pub port: Option<u16>,
    /// The first `unix_socket_directories` entry, when the server listens on a socket.
    pub socket_dir: Option<String>,
    /// `starting`, `ready`, `stopping` or `standby` (PostgreSQL 10+).
    pub status: Option<String>,
}

/// Parses `postmaster.pid`; `None` when it is not one.
#[must_use]
pub fn parse_postmaster_pid(text: &str) -> Option<PostmasterPid> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let data_dir = (*lines.get(1)?).to_owned();
    let field = |index: usize| lines.get(index).map(|s| s.trim()).filter(|s| !s.is_empty());
    Some(PostmasterPid {
        pid,
        data_dir,
        port: field(3).and_then(|p| p.parse().ok()),
        socket_dir: field(4).map(str::to_owned),
        status: field(7).map(str::to_owned),
    })
}

/// How `psql` reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub socket_dir: Option<String>,
    pub port: Option<u16>,
    pub user: String,
    pub database: String,
}

impl Connection {
    /// Runs one query; returns the first column of the first row (`None` for no row or NULL).
    ///
    /// # Errors
    /// When psql cannot connect or the query fails (stderr is kept in the error).
    pub fn query_first(
        &self,
        tools: &Tools,
        run_as: Option<&Identity>,
        sql: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<String>> {
        Ok(self
            .query_row(tools, run_as, sql, timeout)?
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// Runs one query; returns every column of its first row (`None` for no row; NULLs as
    /// `None`). One round trip where several values are needed at once.
    ///
    /// # Errors
    /// When psql cannot connect or the query fails (stderr is kept in the error).
    pub fn query_row(
        &self,
        tools: &Tools,
        run_as: Option<&Identity>,
        sql: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<Vec<Option<String>>>> {
        let mut args = vec![
            "-X".to_owned(),
            "-A".to_owned(),
            "-t".to_owned(),
            "-q".to_owned(),
            "-v".to_owned(),
            "ON_ERROR_STOP=1".to_owned(),
            "-P".to_owned(),
            format!("null={NULL_MARK}"),
            "-F".to_owned(),
            "\u{1f}".to_owned(),
        ];
        if let Some(socket_dir) = &self.socket_dir {
            args.extend(["-h".to_owned(), socket_dir.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args.extend([
            "-U".to_owned(),
            self.user.clone(),
            "-d".to_owned(),
            self.database.clone(),
            "-c".to_owned(),
            sql.to_owned(),
        ]);
        let output = Command::new(tools.program("psql"), args)
            .env("PGCONNECT_TIMEOUT", "10")
            .run_as(run_as)
            .output(Some(timeout))?;
        Ok(first_row(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// The first row of `psql -At` output with our field separator and NULL mark, column by column.
#[must_use]
pub fn first_row(output: &str) -> Option<Vec<Option<String>>> {
    let first_line = output.lines().next()?;
    Some(
        first_line
            .split('\u{1f}')
            .map(|value| (value != NULL_MARK).then(|| value.to_owned()))
            .collect(),
    )
}

/// Whether a check's first value counts as a pass (no `expect`: anything but false/NULL/no row).
#[must_use]
pub fn check_passes(value: Option<&str>, expect: Option<&str>) -> bool {
    match (value, expect) {
        (value, Some(expected)) => value == Some(expected),
        (None, None) => false,
        (Some(value), None) => !matches!(value, "f" | "false" | "FALSE" | "False"),
    }
}

/// The drill's private server: where its copy, socket and pid file are.
#[derive(Debug, Clone)]
pub struct PrivateServer<'a> {
    pub pgdata: &'a Utf8Path,
    pub socket_dir: &'a Utf8Path,
    pub port: u16,
    /// Instead of the `external_pid_file` production may name.
    pub pid_file: &'a Utf8Path,
    /// The server's major version (some settings exist only from one on).
    pub major: u32,
}

/// The settings that cut the drill's server off from everything outside its copy, each with
/// why. Given on the command line, they outrank `postgresql.conf` and `postgresql.auto.conf`,
/// which come from production with the backup (issue 15.1: a restored subscription's apply
/// worker took production's replication slot and consumed what the real subscriber had not
/// received).
#[must_use]
pub fn private_settings(server: &PrivateServer<'_>) -> Vec<(&'static str, String, &'static str)> {
    let mut settings = vec![
        ("data_directory", server.pgdata.to_string(), "a postgresql.conf in the copy cannot point the server at production's PGDATA"),
        ("port", server.port.to_string(), "the socket's name; nothing listens on a network"),
        ("listen_addresses", String::new(), "no TCP/IP"),
        // PostgreSQL's list syntax: a double-quoted entry keeps a comma in the path one entry.
        ("unix_socket_directories", format!("\"{}\"", server.socket_dir), "a private socket in a directory only the drill can reach"),
        ("unix_socket_permissions", "0700".to_owned(), "the socket for its owner only"),
        ("external_pid_file", server.pid_file.to_string(), "never production's pid file"),
        ("ssl", "off".to_owned(), "no TCP, so no TLS (and no ssl_passphrase_command to run)"),
        ("hot_standby", "off".to_owned(), "no connection before recovery ends, so the small limits below need not match the primary's"),
        ("archive_mode", "off".to_owned(), "never archive into the production repository"),
        ("primary_conninfo", String::new(), "no replication from a primary"),
        ("primary_slot_name", String::new(), "no slot taken on a primary"),
        ("max_wal_senders", "0".to_owned(), "no replication to anyone"),
        ("max_logical_replication_workers", "0".to_owned(), "no subscription's apply worker: it would consume production's slot on the publisher"),
        ("synchronous_standby_names", String::new(), "no commit waits for a standby that is not there"),
        ("recovery_end_command", String::new(), "production's recovery commands do not run on the copy"),
        ("archive_cleanup_command", String::new(), "production's recovery commands do not run on the copy"),
        ("shared_preload_libraries", String::new(), "no preloaded job scheduler (pg_cron) or other background worker"),
        ("session_preload_libraries", String::new(), "no library loaded into the checks' sessions"),
        ("local_preload_libraries", String::new(), "no library loaded into the checks' sessions"),
        ("autovacuum", "off".to_owned(), "no maintenance work on a copy about to be removed"),
        ("logging_collector", "off".to_owned(), "the log goes to the drill's own file, not production's log_directory"),
        ("log_destination", "stderr".to_owned(), "the log goes to the drill's own file, not syslog"),
        ("huge_pages", "off".to_owned(), "production's huge pages stay production's"),
        ("shared_buffers", "128MB".to_owned(), "bounded memory on a shared host"),
        ("work_mem", "4MB".to_owned(), "bounded memory on a shared host"),
        ("maintenance_work_mem", "64MB".to_owned(), "bounded memory on a shared host"),
        ("max_connections", "10".to_owned(), "bounded memory on a shared host"),
        ("superuser_reserved_connections", "1".to_owned(), "must stay below max_connections"),
        ("max_worker_processes", "4".to_owned(), "bounded memory on a shared host"),
        ("cluster_name", "pg-preseed-drill".to_owned(), "its processes are named as the drill's in ps"),
    ];
    if server.major >= 16 {
        settings.push((
            "reserved_connections",
            "0".to_owned(),
            "must stay below max_connections",
        ));
    }
    settings
}

/// `postgres` on the copy with [`private_settings`]: run directly, without `pg_ctl` and its
/// `/bin/sh -c` (issue 15.3: a path with `$(…)` ran a command there, one with a space broke the
/// start), so no path or value is ever seen by a shell.
#[must_use]
pub fn private_server_argv(server: &PrivateServer<'_>) -> Vec<String> {
    let mut argv = vec!["-D".to_owned(), server.pgdata.to_string()];
    for (name, value, _) in private_settings(server) {
        argv.push("-c".to_owned());
        argv.push(format!("{name}={value}"));
    }
    argv
}

/// Reads `postmaster.pid` in PGDATA.
///
/// # Errors
/// When it exists but cannot be read or parsed.
pub fn read_postmaster_pid(pgdata: &Utf8Path) -> anyhow::Result<Option<PostmasterPid>> {
    let path = pgdata.join(crate::pgdata::POSTMASTER_PID);
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse_postmaster_pid(&text) {
            Some(pid) => Ok(Some(pid)),
            None => bail!("{path} is not a postmaster.pid file"),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("failed to read {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata() {
        let text = "pg_control version number:            1300\nCatalog version number:               202209061\nDatabase system identifier:           7712773868972210231\nDatabase cluster state:               shut down\n";
        assert_eq!(parse_controldata(text).unwrap(), 7_712_773_868_972_210_231);
        assert!(parse_controldata("nothing").is_err());
        assert!(parse_controldata("Database system identifier: abc").is_err());
    }

    #[test]
    fn postmaster_pid() {
        let text = "12345\n/var/lib/postgresql/16\n1700000000\n5432\n/run/postgresql\n\n  1234567         6\nready   \n";
        let parsed = parse_postmaster_pid(text).unwrap();
        assert_eq!(parsed.pid, 12345);
        assert_eq!(parsed.port, Some(5432));
        assert_eq!(parsed.socket_dir.as_deref(), Some("/run/postgresql"));
        assert_eq!(parsed.status.as_deref(), Some("ready"));
        let minimal = parse_postmaster_pid("1\n/x\n").unwrap();
        assert_eq!(minimal.port, None);
        assert_eq!(parse_postmaster_pid("x\n/x\n"), None);
        assert_eq!(parse_postmaster_pid(""), None);
    }

    #[test]
    fn psql_values() {
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(first_row("t\n"), Some(vec![some("t")]));
        assert_eq!(
            first_row("3\u{1f}x\n4\u{1f}y\n"),
            Some(vec![some("3"), some("x")])
        );
        assert_eq!(
            first_row(&format!("f\u{1f}{NULL_MARK}\u{1f}7\n")),
            Some(vec![some("f"), None, some("7")])
        );
        assert_eq!(first_row(&format!("{NULL_MARK}\n")), Some(vec![None]));
        assert_eq!(first_row(""), None);
        assert_eq!(first_row("\n"), Some(vec![some("")]));
    }

    #[test]
    fn checks() {
        assert!(check_passes(Some("t"), None));
        assert!(check_passes(Some("1000"), None));
        assert!(!check_passes(Some("f"), None));
        assert!(!check_passes(None, None));
        assert!(check_passes(Some("3"), Some("3")));
        assert!(!check_passes(Some("4"), Some("3")));
        assert!(!check_passes(None, Some("3")));
    }

    #[test]
    fn private_server_argv_has_no_shell_and_every_cut() {
        let server = PrivateServer {
            pgdata: Utf8Path::new("/scratch dir/drill-1/pgdata"),
            socket_dir: Utf8Path::new("/tmp/pg-preseed-drill-1,x"),
            port: 54329,
            pid_file: Utf8Path::new("/scratch dir/drill-1/postmaster.external.pid"),
            major: 15,
        };
        let argv = private_server_argv(&server);
        assert_eq!(argv[..2], ["-D", "/scratch dir/drill-1/pgdata"]);
        for expected in [
            "data_directory=/scratch dir/drill-1/pgdata",
            "unix_socket_directories=\"/tmp/pg-preseed-drill-1,x\"",
            "listen_addresses=",
            "archive_mode=off",
            "max_logical_replication_workers=0",
            "shared_preload_libraries=",
            "primary_conninfo=",
            "hot_standby=off",
            "logging_collector=off",
        ] {
            let at = argv.iter().position(|a| a == expected);
            assert!(
                at.is_some_and(|i| argv[i - 1] == "-c"),
                "{expected} in {argv:?}"
            );
        }
        assert!(!argv.iter().any(|a| a.starts_with("reserved_connections")));
        let server = PrivateServer {
            major: 16,
            ..server
        };
        assert!(private_server_argv(&server).contains(&"reserved_connections=0".to_owned()));
    }
}
