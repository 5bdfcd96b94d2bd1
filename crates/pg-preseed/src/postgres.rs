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

/// `pg_ctl start` of a private server on `pgdata` (the drill's copy): it listens only on a
/// socket in `socket_dir`, never archives into the production repository, logs to `log`, and
/// `pg_ctl` waits up to `wait_seconds` for it.
#[must_use]
pub fn pg_ctl_start_private_argv(
    pgdata: &Utf8Path,
    log: &Utf8Path,
    port: u16,
    socket_dir: &Utf8Path,
    wait_seconds: u32,
) -> Vec<String> {
    vec![
        "-D".into(),
        pgdata.to_string(),
        "-l".into(),
        log.to_string(),
        "-w".into(),
        "-t".into(),
        wait_seconds.to_string(),
        "-o".into(),
        format!("-p {port} -k {socket_dir} -c listen_addresses='' -c archive_mode=off"),
        "start".into(),
    ]
}

/// `pg_ctl stop -m immediate` of the server on `pgdata`, waiting for it.
#[must_use]
pub fn pg_ctl_stop_immediate_argv(pgdata: &Utf8Path) -> Vec<String> {
    vec![
        "-D".into(),
        pgdata.to_string(),
        "-m".into(),
        "immediate".into(),
        "-w".into(),
        "stop".into(),
    ]
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
    fn pg_ctl_of_a_private_server() {
        let argv = pg_ctl_start_private_argv(
            Utf8Path::new("/scratch/pgdata"),
            Utf8Path::new("/scratch/postgresql.log"),
            54329,
            Utf8Path::new("/scratch/socket"),
            3600,
        );
        assert_eq!(
            argv,
            [
                "-D",
                "/scratch/pgdata",
                "-l",
                "/scratch/postgresql.log",
                "-w",
                "-t",
                "3600",
                "-o",
                "-p 54329 -k /scratch/socket -c listen_addresses='' -c archive_mode=off",
                "start"
            ]
        );
        assert_eq!(
            pg_ctl_stop_immediate_argv(Utf8Path::new("/scratch/pgdata")),
            ["-D", "/scratch/pgdata", "-m", "immediate", "-w", "stop"]
        );
    }
}
