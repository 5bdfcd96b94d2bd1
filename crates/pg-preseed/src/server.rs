//! A running PostgreSQL server and the checks `verify` (on PGDATA) and `drill` (on its scratch
//! copy) run against it: wait for the end of recovery, watching the signs it leaves on disk (and
//! noticing a server that stopped before it ended);
//! make sure the server is the one on the expected directory with the expected cluster; run the
//! configured SQL checks.

use std::time::{Duration, Instant};

use anyhow::bail;
use camino::Utf8Path;

use crate::context::Context;
use crate::fsutil;
use crate::postgres::{self, Connection};
use crate::receipt::CheckResult;

/// How long to wait for `postmaster.pid` to appear when PostgreSQL is not running at all.
const POSTMASTER_APPEAR: Duration = Duration::from_secs(15);
/// One query's own limit.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// How often PGDATA is looked at for signs that recovery is still going on.
const SIGN_POLL: Duration = Duration::from_millis(20);

/// Where to connect: configured values first, then what the running server wrote in
/// `postmaster.pid` (so verify reaches the server running on *this* PGDATA).
///
/// # Errors
/// When no server has started on PGDATA by `deadline` (or within a few seconds).
pub fn connection(ctx: &Context, deadline: Instant) -> anyhow::Result<Connection> {
    let pgdata = &ctx.config.pgdata;
    let appear_by = deadline.min(Instant::now() + POSTMASTER_APPEAR);
    let pid = loop {
        match postgres::read_postmaster_pid(pgdata)? {
            Some(pid) => break pid,
            None if Instant::now() >= appear_by => {
                bail!("PostgreSQL is not running on {pgdata} (no postmaster.pid); start it first")
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    Ok(Connection {
        socket_dir: ctx
            .config
            .postgres
            .socket_dir
            .as_ref()
            .map(ToString::to_string)
            .or(pid.socket_dir),
        port: ctx.config.postgres.port.or(pid.port),
        user: ctx.config.postgres.user.clone(),
        database: ctx.config.verify.database.clone(),
    })
}

/// The checks, against the server at `conn` that must run on `pgdata` (PGDATA for `verify`,
/// the scratch copy for `drill`): recovery has ended, the server runs on `pgdata`, it holds the
/// `expected` cluster, and every `verify.sql` check passes. Returns the system identifier (0
/// when the server runs elsewhere) and every check's result; waits up to `timeout` for the
/// end of recovery.
///
/// # Errors
/// When recovery does not end in time or the server does not say who it is.
pub fn check(
    ctx: &Context,
    conn: &Connection,
    pgdata: &Utf8Path,
    timeout: Duration,
    expected: Option<&str>,
) -> anyhow::Result<(u64, Vec<CheckResult>)> {
    let deadline = Instant::now() + timeout;
    let query = |sql: &str| conn.query_first(&ctx.tools, ctx.children.as_ref(), sql, QUERY_TIMEOUT);
    let query_row =
        |sql: &str| conn.query_row(&ctx.tools, ctx.children.as_ref(), sql, QUERY_TIMEOUT);

    // Recovery shows on disk before any connection: `recovery.signal`/`standby.signal` stay in
    // PGDATA until it has ended, and `postmaster.pid` says `starting` (or `standby`, without hot
    // standby) until connections are accepted. Those are files, cheap to watch often; while they
    // say "not yet" the server itself is asked only once a second. Once they are gone it is
    // asked in one round trip (has recovery ended, and who is it), pausing 25 ms and growing to
    // half a second between tries.
    let mut last_error: String;
    let mut last_log = Instant::now();
    // A server that stopped during recovery (a FATAL such as "could not restore file … from
    // archive" when a repository could not be asked) removes postmaster.pid; a restart by
    // systemd brings it back within moments.
    let mut gone_since: Option<Instant> = None;
    let mut last_query: Option<Instant> = None;
    let mut pause = Duration::from_millis(25);
    let (data_directory, system_identifier) = loop {
        let sign = recovery_sign(pgdata);
        let wait = if sign.is_some()
            && last_query.is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            last_error = sign.unwrap_or_default();
            SIGN_POLL
        } else {
            last_query = Some(Instant::now());
            match query_row(
                "SELECT pg_is_in_recovery(), current_setting('data_directory'), \
                 (SELECT system_identifier FROM pg_control_system())",
            ) {
                Ok(Some(row)) if row.first().is_some_and(|v| v.as_deref() == Some("f")) => {
                    let value = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                    break (value(1), value(2));
                }
                Ok(row) => {
                    last_error = format!(
                        "still in recovery (pg_is_in_recovery = {:?})",
                        row.and_then(|r| r.into_iter().next().flatten())
                    );
                }
                Err(error) => last_error = format!("{error:#}"),
            }
            if sign.is_some() {
                SIGN_POLL
            } else {
                let wait = pause;
                pause = (pause * 2).min(Duration::from_millis(500));
                wait
            }
        };
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL did not accept connections and finish recovery within {}s: {last_error}",
                timeout.as_secs()
            );
        }
        if pgdata.join("postmaster.pid").exists() {
            gone_since = None;
        } else if gone_since.get_or_insert_with(Instant::now).elapsed() >= POSTMASTER_APPEAR {
            bail!(
                "PostgreSQL stopped before recovery ended (no postmaster.pid in {pgdata} for {}s; \
                 last seen: {last_error}): its log says why — \"could not restore file … from \
                 archive\" after a pg-preseed archive-get line means a repository could not be \
                 asked; bring it back and start PostgreSQL again",
                POSTMASTER_APPEAR.as_secs()
            );
        }
        if last_log.elapsed() >= Duration::from_secs(30) {
            tracing::info!(waiting_for = %last_error, "waiting for PostgreSQL to finish recovery");
            last_log = Instant::now();
        }
        std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
    };
    let mut checks = vec![CheckResult {
        name: "recovery has ended".to_owned(),
        ok: true,
        detail: None,
    }];

    let same = fsutil::resolve(data_directory.as_str().into()) == fsutil::resolve(pgdata);
    checks.push(CheckResult {
        name: "the server runs on PGDATA".to_owned(),
        ok: same,
        detail: (!same).then(|| {
            format!("connected to a server whose data_directory is {data_directory}, not {pgdata}; set postgres.port/socket_dir")
        }),
    });
    if !same {
        return Ok((0, checks));
    }
    let system_identifier: u64 = system_identifier
        .parse()
        .map_err(|_| anyhow::anyhow!("the server did not report its system identifier"))?;
    if let Some(expected) = expected {
        let ok = expected == system_identifier.to_string();
        checks.push(CheckResult {
            name: "the cluster is the one restored".to_owned(),
            ok,
            detail: (!ok).then(|| {
                format!("the server's system identifier is {system_identifier}, the restored backup's {expected}")
            }),
        });
    }

    for sql_check in &ctx.config.verify.sql {
        let (ok, detail) = match query(&sql_check.sql) {
            Ok(value) => {
                let ok = postgres::check_passes(value.as_deref(), sql_check.expect.as_deref());
                let detail = (!ok).then(|| match &sql_check.expect {
                    Some(expected) => format!("returned {value:?}, expected {expected:?}"),
                    None => format!("returned {value:?}"),
                });
                (ok, detail)
            }
            Err(error) => (false, Some(format!("{error:#}"))),
        };
        if !ok {
            tracing::error!(check = %sql_check.name, detail = detail.as_deref().unwrap_or_default(), "verification check failed");
        }
        checks.push(CheckResult {
            name: sql_check.name.clone(),
            ok,
            detail,
        });
    }
    Ok((system_identifier, checks))
}

/// What a promoted server tells about the recovery it just ended, for the story
/// ([`crate::story`]): how long replay took and when the last transaction it replayed committed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryFacts {
    /// From the server's start (`pg_postmaster_start_time()`) to its promotion (when it wrote the
    /// new timeline's history file). `None` when it was started again since, or never recovered.
    pub recovery_seconds: Option<f64>,
    /// RFC 3339: `pg_last_xact_replay_timestamp()`; `None` when nothing was replayed, or after a
    /// restart (PostgreSQL forgets it).
    pub replayed_until: Option<String>,
}

/// Asks the server at `conn` (on `pgdata`) for [`RecoveryFacts`]. Best effort: what cannot be
/// read is `None` (logged at debug), never an error — the story is not a check.
#[must_use]
pub fn recovery_facts(ctx: &Context, conn: &Connection, pgdata: &Utf8Path) -> RecoveryFacts {
    let row = match conn.query_row(
        &ctx.tools,
        ctx.children.as_ref(),
        "SELECT extract(epoch FROM pg_postmaster_start_time()), \
         extract(epoch FROM pg_last_xact_replay_timestamp()), \
         pg_walfile_name(pg_current_wal_lsn())",
        QUERY_TIMEOUT,
    ) {
        Ok(Some(row)) => row,
        Ok(None) => return RecoveryFacts::default(),
        Err(error) => {
            tracing::debug!(error = %format!("{error:#}"), "cannot ask the server how its recovery went");
            return RecoveryFacts::default();
        }
    };
    let value = |i: usize| row.get(i).cloned().flatten();
    let seconds = |i: usize| value(i).and_then(|v| v.parse::<f64>().ok());
    let started = seconds(0);
    #[allow(clippy::cast_possible_truncation)] // unix seconds
    let replayed_until = seconds(1)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| crate::clock::unix_to_rfc3339(s.floor() as i64));
    let promoted = value(2)
        .and_then(|walfile| crate::wal::timeline_of(&walfile))
        .filter(|timeline| *timeline > 1)
        .and_then(|timeline| {
            let history = pgdata
                .join("pg_wal")
                .join(format!("{}.history", crate::wal::timeline_name(timeline)));
            std::fs::symlink_metadata(&history).ok()?.modified().ok()
        })
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    let recovery_seconds = match (started, promoted) {
        (Some(started), Some(promoted)) if promoted >= started => Some(promoted - started),
        _ => None,
    };
    RecoveryFacts {
        recovery_seconds,
        replayed_until,
    }
}

/// A sign on disk that the server on `pgdata` is still starting or recovering, if there is one.
#[must_use]
pub fn recovery_sign(pgdata: &Utf8Path) -> Option<String> {
    for signal in ["recovery.signal", "standby.signal"] {
        if pgdata.join(signal).exists() {
            return Some(format!("recovery is still going on ({signal} is there)"));
        }
    }
    let status = postgres::read_postmaster_pid(pgdata)
        .ok()
        .flatten()
        .and_then(|pid| pid.status)?;
    matches!(status.as_str(), "starting" | "standby")
        .then(|| format!("the server is still `{status}` (postmaster.pid)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_signs_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = Utf8Path::from_path(dir.path()).unwrap();
        assert_eq!(recovery_sign(pgdata), None, "nothing there: ask the server");
        let pid = |status: &str| {
            std::fs::write(
                pgdata.join("postmaster.pid"),
                format!("12345\n{pgdata}\n1700000000\n5432\n/run/postgresql\n\n  1234567         6\n{status}\n"),
            )
            .unwrap();
        };
        pid("ready   ");
        assert_eq!(recovery_sign(pgdata), None);
        for status in ["starting", "standby"] {
            pid(status);
            assert!(recovery_sign(pgdata).is_some_and(|s| s.contains(status)));
        }
        pid("ready");
        for signal in ["recovery.signal", "standby.signal"] {
            std::fs::write(pgdata.join(signal), b"").unwrap();
            assert!(recovery_sign(pgdata).is_some_and(|s| s.contains(signal)));
            std::fs::remove_file(pgdata.join(signal)).unwrap();
        }
    }
}
