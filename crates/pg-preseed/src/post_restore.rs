//! The post-restore hook (config `post_restore`): what the operator wants done once after a
//! restore — re-grant roles, reset a password from a secret, re-create replication slots or
//! subscriptions, `ANALYZE`, tell someone — run by `verify` exactly once per claim:
//!
//! - only for a claim (`run` restored, resumed, or let initdb create a fresh cluster), never on
//!   a normal boot or after an adoption (no claim), and only once the checks passed;
//! - first the SQL statements (psql, one session on `verify.database` as `postgres.user`, read
//!   from stdin, `ON_ERROR_STOP`, each statement its own transaction), then the script (as the
//!   user every child runs as: the PostgreSQL user), within one timeout;
//! - each attempt is recorded in the claim before it starts, and its success the moment it
//!   exits 0, before anything else (atomically): a `verify` that finds the success skips it and
//!   writes the receipt; one that finds none runs it (again);
//! - a failure (non-zero exit, a signal, the timeout, a script that cannot start) fails `verify`
//!   (exit 4): the claim stays, no receipt is written, the next start of PostgreSQL retries it.
//!   The hook's output goes to the journal only, never into the claim, the receipt or the state.
//!
//! Its environment ([`environment`]) is the engine's (the verify unit's, with its
//! EnvironmentFile: the hook's secrets) without pgBackRest's credentials (`PGBACKREST_*`), with
//! the receipt's facts (`PG_PRESEED_*`) and what psql needs to reach the server.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use crate::clock;
use crate::config::{PostRestore, TargetType};
use crate::context::Context;
use crate::exec::{Command, ExecError};
use crate::failpoint;
use crate::postgres::Connection;
use crate::receipt::{Claim, ClaimKind, PostRestoreRun};

/// How much of the hook's stdout and stderr the journal gets, from the end.
const LOG_TAIL_BYTES: usize = 8192;

/// What `verify` did about the hook.
#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    /// `post_restore` is null.
    NotConfigured,
    /// The claim records its success: not run again.
    AlreadySucceeded { at: String },
    /// It ran now and exited 0 (recorded in the claim).
    Succeeded { seconds: f64 },
    /// It ran now and failed (recorded in the claim): why, in a few words, without its output.
    Failed { why: String },
}

/// What the hook is told, besides the engine's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFacts {
    /// `PG_PRESEED_*`, then libpq's `PGDATA`, `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`.
    pub vars: Vec<(String, String)>,
}

impl HookFacts {
    /// The facts of `claim` for the cluster `system_identifier`, running on `pgdata` and reached
    /// through `conn`. Every `PG_PRESEED_*` is set (empty when it does not apply: a fresh
    /// cluster has no repository, a default target no target).
    #[must_use]
    pub fn new(
        claim: &Claim,
        system_identifier: u64,
        pgdata: &str,
        conn: &Connection,
    ) -> HookFacts {
        let source = claim.source.as_ref();
        let target = source
            .and_then(|s| s.target.as_ref())
            .filter(|t| t.kind != TargetType::Default)
            .map(|t| match &t.value {
                Some(value) => format!("{} {value}", t.kind.as_str()),
                None => t.kind.as_str().to_owned(),
            })
            .unwrap_or_default();
        let mut vars = vec![
            (
                "PG_PRESEED_ACTION",
                match claim.kind {
                    ClaimKind::Restore => "restored",
                    ClaimKind::Fresh => "fresh",
                }
                .to_owned(),
            ),
            (
                "PG_PRESEED_REPO",
                source.map(|s| s.repo.to_string()).unwrap_or_default(),
            ),
            (
                "PG_PRESEED_REPO_NAME",
                source.and_then(|s| s.repo_name.clone()).unwrap_or_default(),
            ),
            (
                "PG_PRESEED_BACKUP",
                source
                    .and_then(|s| s.backup_label.clone())
                    .unwrap_or_default(),
            ),
            ("PG_PRESEED_SYSTEM_ID", system_identifier.to_string()),
            ("PG_PRESEED_TARGET", target),
            ("PGDATA", pgdata.to_owned()),
        ];
        if let Some(socket_dir) = &conn.socket_dir {
            vars.push(("PGHOST", socket_dir.clone()));
        }
        if let Some(port) = conn.port {
            vars.push(("PGPORT", port.to_string()));
        }
        vars.push(("PGUSER", conn.user.clone()));
        vars.push(("PGDATABASE", conn.database.clone()));
        HookFacts {
            vars: vars
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        }
    }
}

/// Whether the engine's variable `name` stays out of the hook's environment: pgBackRest's
/// options and credentials (`PGBACKREST_*`); pg-preseed's own namespace (`PG_PRESEED_*`: only
/// the facts); what the facts set (`PGDATA`, `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`) and
/// `PGHOSTADDR`, which would send libpq elsewhere than `PGHOST`; `JOURNAL_STREAM` (the hook's
/// output goes to pg-preseed, which logs it, not to the journal directly).
fn withheld(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.starts_with("PGBACKREST_")
        || name.starts_with("PG_PRESEED_")
        || matches!(
            name,
            "PGDATA"
                | "PGHOST"
                | "PGHOSTADDR"
                | "PGPORT"
                | "PGUSER"
                | "PGDATABASE"
                | "JOURNAL_STREAM"
        )
}

/// The hook's whole environment: the engine's `inherited` one (the verify unit's, with its
/// EnvironmentFile) minus what [`withheld`] keeps back, plus `facts`. Pure.
#[must_use]
pub fn environment<I>(inherited: I, facts: &HookFacts) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    inherited
        .into_iter()
        .filter(|(name, _)| !withheld(name))
        .chain(
            facts
                .vars
                .iter()
                .map(|(key, value)| (OsString::from(key), OsString::from(value))),
        )
        .collect()
}

/// The SQL statements as psql reads them from stdin, each ended on a line of its own (a
/// statement ending in a comment, or a psql meta-command such as `\getenv`, stays intact), and
/// the first and last line of each.
#[must_use]
pub fn sql_input(statements: &[String]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut line = 1;
    for statement in statements {
        let statement = statement.trim_end();
        let first = line;
        line += statement.lines().count().max(1);
        text.push_str(statement);
        text.push_str("\n;\n");
        lines.push((first, line));
        line += 1;
    }
    (text, lines)
}

/// Which statement psql stopped at: its `psql:<stdin>:N: ERROR:` line against the statements'
/// lines. 0-based.
#[must_use]
pub fn failed_statement(stderr: &str, lines: &[(usize, usize)]) -> Option<usize> {
    let line: usize = stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("psql:<stdin>:")?;
        rest.split(':').next()?.parse().ok()
    })?;
    lines
        .iter()
        .position(|(first, last)| (*first..=*last).contains(&line))
}

/// Runs the hook for `claim` unless it already succeeded, recording each attempt and its
/// success in the claim (see the module). The server must have passed `verify`'s checks.
///
/// # Errors
/// When the claim cannot be written: then the hook did not run, or its success is not recorded
/// and the next `verify` runs it again.
pub fn run_once(
    ctx: &Context,
    claim: &mut Claim,
    conn: &Connection,
    system_identifier: u64,
) -> anyhow::Result<Hook> {
    let Some(hook) = &ctx.config.post_restore else {
        return Ok(Hook::NotConfigured);
    };
    if let Some(at) = claim
        .post_restore
        .as_ref()
        .and_then(|run| run.succeeded_at.clone())
    {
        tracing::info!(succeeded_at = %at, "the post-restore hook already succeeded for this claim; not running it again");
        return Ok(Hook::AlreadySucceeded { at });
    }
    let run = claim
        .post_restore
        .get_or_insert_with(PostRestoreRun::default);
    run.attempts += 1;
    run.last_started_at = Some(clock::now_rfc3339());
    run.last_error = None;
    let attempt = run.attempts;
    ctx.files.write_claim(claim, ctx.owner())?;

    let facts = HookFacts::new(claim, system_identifier, ctx.config.pgdata.as_str(), conn);
    let env = environment(std::env::vars_os(), &facts);
    tracing::info!(
        attempt,
        statements = hook.sql.len(),
        script = hook.script.as_ref().map_or("", |s| s.as_str()),
        timeout_seconds = hook.timeout.as_secs(),
        "running the post-restore hook"
    );
    let started = Instant::now();
    let result = execute(ctx, hook, conn, env, started);
    let seconds = started.elapsed().as_secs_f64();
    let run = claim
        .post_restore
        .get_or_insert_with(PostRestoreRun::default);
    match result {
        Ok(()) => {
            run.succeeded_at = Some(clock::now_rfc3339());
            run.duration_seconds = Some(seconds);
            claim.phases.post_restore_seconds = Some(seconds);
            // The first thing after it exited 0: from here on it never runs again.
            ctx.files.write_claim(claim, ctx.owner())?;
            failpoint::hit(failpoint::POST_RESTORE_RECORDED);
            tracing::info!(
                attempt,
                duration_seconds = seconds,
                "the post-restore hook succeeded"
            );
            Ok(Hook::Succeeded { seconds })
        }
        Err(why) => {
            run.last_error = Some(why.clone());
            ctx.files.write_claim(claim, ctx.owner())?;
            tracing::error!(attempt, error = %why, "the post-restore hook failed; the next start of PostgreSQL (or `pg-preseed verify`) runs it again");
            Ok(Hook::Failed { why })
        }
    }
}

/// The statements, then the script, within the hook's timeout from `started`. `Err`: why it
/// failed, in a few words (its output is logged, never returned).
fn execute(
    ctx: &Context,
    hook: &PostRestore,
    conn: &Connection,
    env: Vec<(OsString, OsString)>,
    started: Instant,
) -> Result<(), String> {
    let remaining = || hook.timeout.saturating_sub(started.elapsed());
    let timed_out = || {
        format!(
            "it did not finish within its timeout ({})",
            humantime::format_duration(hook.timeout)
        )
    };
    if !hook.sql.is_empty() {
        let (input, lines) = sql_input(&hook.sql);
        let mut args = vec![
            "-X".to_owned(),
            "-q".to_owned(),
            "-v".to_owned(),
            "ON_ERROR_STOP=1".to_owned(),
        ];
        if let Some(socket_dir) = &conn.socket_dir {
            args.extend(["-h".to_owned(), socket_dir.clone()]);
        }
        if let Some(port) = conn.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args.extend([
            "-U".to_owned(),
            conn.user.clone(),
            "-d".to_owned(),
            conn.database.clone(),
            "-f".to_owned(),
            "-".to_owned(),
        ]);
        let psql = Command::new(ctx.tools.program("psql"), args)
            .run_as(ctx.children.as_ref())
            .exact_environment(env.clone())
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin_bytes(input.into_bytes())
            .own_process_group();
        let output = psql
            .output_any_status(Some(remaining()))
            .map_err(|error| describe_exec_error("psql", &error, &timed_out))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        log_output(
            "sql",
            &output.stdout,
            &output.stderr,
            output.status.success(),
        );
        if !output.status.success() {
            let status = describe_status("psql", output.status);
            return Err(match failed_statement(&stderr, &lines) {
                Some(index) => format!(
                    "SQL statement {} of {} failed ({status})",
                    index + 1,
                    hook.sql.len()
                ),
                None if output.status.code() == Some(2) => {
                    format!("psql could not run the SQL statements ({status}: no connection?)")
                }
                None => format!("the SQL statements failed ({status})"),
            });
        }
    }
    if let Some(script) = &hook.script {
        let command = Command::new(script.as_str(), Vec::new())
            .run_as(ctx.children.as_ref())
            .exact_environment(env)
            .own_process_group();
        let output = command
            .output_any_status(Some(remaining()))
            .map_err(|error| describe_exec_error("the script", &error, &timed_out))?;
        log_output(
            "script",
            &output.stdout,
            &output.stderr,
            output.status.success(),
        );
        if !output.status.success() {
            return Err(describe_status("the script", output.status));
        }
    }
    Ok(())
}

/// "the script exited with status 3", "psql was killed by signal 9".
fn describe_status(what: &str, status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("{what} exited with status {code}"),
        (None, Some(signal)) => format!("{what} was killed by signal {signal}"),
        (None, None) => format!("{what} ended abnormally"),
    }
}

/// A failure to run at all, without any output of the child.
fn describe_exec_error(what: &str, error: &ExecError, timed_out: &dyn Fn() -> String) -> String {
    match error {
        ExecError::TimedOut { .. } => format!("{what} was killed: {}", timed_out()),
        ExecError::Spawn { error, .. } => format!("{what} could not be started: {error}"),
        ExecError::Io { error, .. } => format!("failed to talk to {what}: {error}"),
        ExecError::Exited { code, .. } => format!("{what} exited with status {code}"),
        ExecError::Signaled { signal, .. } => format!("{what} was killed by signal {signal}"),
    }
}

/// The hook's output, to the journal only: stdout at info; stderr at warn, or at error when it
/// failed. The last few kilobytes of each.
fn log_output(part: &str, stdout: &[u8], stderr: &[u8], ok: bool) {
    for line in tail(&String::from_utf8_lossy(stdout)).lines() {
        tracing::info!(target: "post_restore", hook = part, "{line}");
    }
    for line in tail(&String::from_utf8_lossy(stderr)).lines() {
        if ok {
            tracing::warn!(target: "post_restore", hook = part, "{line}");
        } else {
            tracing::error!(target: "post_restore", hook = part, "{line}");
        }
    }
}

/// The end of `text`, at most [`LOG_TAIL_BYTES`], from a line boundary.
fn tail(text: &str) -> &str {
    if text.len() <= LOG_TAIL_BYTES {
        return text;
    }
    let mut start = text.len() - LOG_TAIL_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    cut.find('\n').map_or(cut, |n| &cut[n + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::receipt::Source;
    use camino::Utf8Path;

    fn conn() -> Connection {
        Connection {
            socket_dir: Some("/run/postgresql".to_owned()),
            port: Some(5432),
            user: "postgres".to_owned(),
            database: "app".to_owned(),
        }
    }

    fn restore_claim(target: Target) -> Claim {
        let mut claim = Claim::new(
            ClaimKind::Restore,
            Utf8Path::new("/var/lib/postgresql/16"),
            "db1",
            "2026-11-27T09:59:00Z",
        );
        claim.source = Some(Source {
            repo: 2,
            repo_name: Some("s3".to_owned()),
            stanza: "main".to_owned(),
            backup_label: Some("20261127-090147F".to_owned()),
            backup_stop: Some("2026-11-27T09:01:52Z".to_owned()),
            target: Some(target),
            recovery_repos: vec![2],
            left_out: vec![],
        });
        claim
    }

    fn value<'a>(facts: &'a HookFacts, key: &str) -> Option<&'a str> {
        facts
            .vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn facts_of_a_restore_and_of_a_fresh_start() {
        let target = Target {
            kind: TargetType::Time,
            value: Some("2026-11-27 09:30:00+00".to_owned()),
        };
        let facts = HookFacts::new(
            &restore_claim(target),
            42,
            "/var/lib/postgresql/16",
            &conn(),
        );
        for (key, expected) in [
            ("PG_PRESEED_ACTION", "restored"),
            ("PG_PRESEED_REPO", "2"),
            ("PG_PRESEED_REPO_NAME", "s3"),
            ("PG_PRESEED_BACKUP", "20261127-090147F"),
            ("PG_PRESEED_SYSTEM_ID", "42"),
            ("PG_PRESEED_TARGET", "time 2026-11-27 09:30:00+00"),
            ("PGDATA", "/var/lib/postgresql/16"),
            ("PGHOST", "/run/postgresql"),
            ("PGPORT", "5432"),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "app"),
        ] {
            assert_eq!(value(&facts, key), Some(expected), "{key}");
        }
        let facts = HookFacts::new(&restore_claim(Target::default()), 42, "/pg", &conn());
        assert_eq!(value(&facts, "PG_PRESEED_TARGET"), Some(""));
        let immediate = Target {
            kind: TargetType::Immediate,
            value: None,
        };
        let facts = HookFacts::new(&restore_claim(immediate), 42, "/pg", &conn());
        assert_eq!(value(&facts, "PG_PRESEED_TARGET"), Some("immediate"));

        let fresh = Claim::new(ClaimKind::Fresh, Utf8Path::new("/pg"), "db1", "now");
        let facts = HookFacts::new(&fresh, 7, "/pg", &conn());
        assert_eq!(value(&facts, "PG_PRESEED_ACTION"), Some("fresh"));
        for key in [
            "PG_PRESEED_REPO",
            "PG_PRESEED_REPO_NAME",
            "PG_PRESEED_BACKUP",
        ] {
            assert_eq!(value(&facts, key), Some(""), "{key}: set, and empty");
        }
    }

    /// pgBackRest's credentials stay out; the hook's own secrets (the unit's EnvironmentFile)
    /// and everything else stay in; pg-preseed's own variables are replaced by the facts.
    #[test]
    fn environment_is_the_units_without_pgbackrest_plus_the_facts() {
        let inherited = [
            ("PATH", "/run/current-system/sw/bin"),
            ("PGBACKREST_REPO2_S3_KEY_SECRET", "s3-secret"),
            ("PGBACKREST_REPO2_CIPHER_PASS", "cipher"),
            ("APP_PASSWORD", "hook-secret"),
            ("PGPASSFILE", "/run/secrets/pgpass"),
            ("PG_PRESEED_CONFIG", "/etc/pg-preseed/config.json"),
            ("PG_PRESEED_ACTION", "forged"),
            ("PGHOST", "db.example.org"),
            ("PGHOSTADDR", "192.0.2.1"),
            ("JOURNAL_STREAM", "8:1234"),
            ("AWS_REGION", "eu-west-1"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let facts = HookFacts::new(&restore_claim(Target::default()), 42, "/pg", &conn());
        let env = environment(inherited, &facts);
        let get = |key: &str| -> Vec<String> {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect()
        };
        assert!(env
            .iter()
            .all(|(k, _)| !k.to_string_lossy().starts_with("PGBACKREST_")));
        assert_eq!(get("APP_PASSWORD"), ["hook-secret"]);
        assert_eq!(get("PATH"), ["/run/current-system/sw/bin"]);
        assert_eq!(get("PGPASSFILE"), ["/run/secrets/pgpass"]);
        assert_eq!(get("AWS_REGION"), ["eu-west-1"]);
        assert_eq!(get("PG_PRESEED_ACTION"), ["restored"]);
        assert!(get("PG_PRESEED_CONFIG").is_empty());
        assert_eq!(get("PGHOST"), ["/run/postgresql"]);
        assert!(get("PGHOSTADDR").is_empty());
        assert!(get("JOURNAL_STREAM").is_empty());
    }

    #[test]
    fn statements_one_by_one_and_which_one_failed() {
        let statements = [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader".to_owned(),
            "\\getenv pw APP_PASSWORD".to_owned(),
            "ALTER ROLE app PASSWORD :'pw';".to_owned(),
            "CREATE TABLE IF NOT EXISTS t (x int)\n  -- two lines and a comment".to_owned(),
            "ANALYZE".to_owned(),
        ];
        let (text, lines) = sql_input(&statements);
        assert_eq!(
            text,
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader\n;\n\\getenv pw APP_PASSWORD\n;\nALTER ROLE app PASSWORD :'pw';\n;\nCREATE TABLE IF NOT EXISTS t (x int)\n  -- two lines and a comment\n;\nANALYZE\n;\n"
        );
        assert_eq!(lines, [(1, 2), (3, 4), (5, 6), (7, 9), (10, 11)]);
        let stderr = "psql:<stdin>:9: ERROR:  permission denied for schema public\n";
        assert_eq!(failed_statement(stderr, &lines), Some(3));
        assert_eq!(
            failed_statement(
                "psql:<stdin>:2: ERROR:  role \"reader\" does not exist",
                &lines
            ),
            Some(0)
        );
        assert_eq!(
            failed_statement("psql: error: connection to server failed", &lines),
            None
        );
    }

    #[test]
    fn log_tail_is_cut_at_a_line() {
        let long = "x".repeat(100) + "\n";
        let text = long.repeat(200);
        let cut = tail(&text);
        assert!(cut.len() <= LOG_TAIL_BYTES && cut.starts_with('x') && cut.ends_with('\n'));
        assert_eq!(tail("short\n"), "short\n");
    }
}
