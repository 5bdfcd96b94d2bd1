//! `verify`: once PostgreSQL is up, prove the cluster is the right one and whole, then write the
//! receipt (DESIGN.md invariant 5: never before this).

use std::time::{Duration, Instant};

use anyhow::bail;

use super::{context, prepare_and_lock, record, Exit};
use crate::cli::{Cli, VerifyArgs};
use crate::clock;
use crate::context::Context;
use crate::facts;
use crate::fsutil;
use crate::postgres::{self, Connection};
use crate::receipt::{self, CheckResult, Claim, Receipt};
use crate::report::Report;

/// How long to wait for `postmaster.pid` to appear when PostgreSQL is not running at all.
const POSTMASTER_APPEAR: Duration = Duration::from_secs(15);
/// One query's own limit.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// How often PGDATA is looked at for signs that recovery is still going on.
const SIGN_POLL: Duration = Duration::from_millis(20);

pub fn verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let ctx = context(cli)?;
    let lock = match prepare_and_lock(&ctx, "verify", args.lock.lock_wait)? {
        Ok(lock) => lock,
        Err(report) => {
            report.print(cli.json);
            record(&ctx, &report, Exit::Refused, started, None);
            return Ok(Exit::Refused);
        }
    };
    let preflight = facts::preflight(&ctx);
    if !preflight.is_clean() {
        let mut report = Report::from_preflight("verify", &preflight);
        report.outcome = Some("refused".to_owned());
        report.print(cli.json);
        record(&ctx, &report, Exit::Refused, started, None);
        return Ok(Exit::Refused);
    }
    let mut report = Report::new("verify", "verify");
    report.warnings.clone_from(&preflight.warnings);
    let claim = facts::own_claim(&ctx, &mut report.warnings);
    let timeout = args.timeout.unwrap_or(ctx.config.verify.timeout);

    let exit = match check(&ctx, timeout, claim.as_ref()) {
        Ok((system_identifier, checks)) => {
            report.reasons = checks
                .iter()
                .map(|c| format!("{}: {}", if c.ok { "ok" } else { "FAILED" }, c.name))
                .collect();
            if checks.iter().all(|c| c.ok) {
                let receipt =
                    write_receipt(&ctx, claim.as_ref(), system_identifier, checks, &mut report)?;
                "verified".clone_into(&mut report.decision);
                report.summary = Some(format!(
                    "wrote the receipt {} ({}, system identifier {system_identifier})",
                    ctx.files.receipt,
                    serde_json::to_value(receipt.action)?
                        .as_str()
                        .unwrap_or_default()
                ));
                report.result = serde_json::to_value(&receipt)?;
                Exit::Ok
            } else {
                "failed".clone_into(&mut report.decision);
                report.error =
                    Some("a verification check failed; no receipt was written".to_owned());
                Exit::Failed
            }
        }
        Err(error) => {
            "failed".clone_into(&mut report.decision);
            report.error = Some(format!("{error:#}"));
            Exit::Failed
        }
    };
    if exit == Exit::Failed {
        report.next = Some(
            "the receipt is only written for a cluster that passes; look at PostgreSQL's log, fix \
             the cause, and run `pg-preseed verify` again"
                .to_owned(),
        );
    }
    report.outcome = Some(if exit == Exit::Ok { "ok" } else { "failed" }.to_owned());
    tracing::info!(
        decision = %report.decision,
        duration_seconds = started.elapsed().as_secs_f64(),
        "verify finished"
    );
    report.print(cli.json);
    record(&ctx, &report, exit, started, None);
    drop(lock);
    Ok(exit)
}

/// Where to connect: configured values first, then what the running server wrote in
/// `postmaster.pid` (so verify reaches the server running on *this* PGDATA).
fn connection(ctx: &Context, deadline: Instant) -> anyhow::Result<Connection> {
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

/// Waits for the server to accept connections and leave recovery, checks its identity, runs the
/// configured checks. Returns the system identifier and every check's result.
fn check(
    ctx: &Context,
    timeout: Duration,
    claim: Option<&Claim>,
) -> anyhow::Result<(u64, Vec<CheckResult>)> {
    let deadline = Instant::now() + timeout;
    let conn = connection(ctx, deadline)?;
    check_server(
        ctx,
        &conn,
        &ctx.config.pgdata,
        timeout,
        claim.and_then(|c| c.backup_system_identifier.as_deref()),
    )
}

/// The checks themselves, against the server at `conn` that must run on `pgdata` (the drill
/// uses them on its scratch server): recovery has ended, the server runs on `pgdata`, it holds
/// the `expected` cluster, and every `verify.sql` check passes.
pub(super) fn check_server(
    ctx: &Context,
    conn: &Connection,
    pgdata: &camino::Utf8Path,
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

    let same = facts::resolve(data_directory.as_str().into()) == facts::resolve(pgdata);
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

/// A sign on disk that the server on `pgdata` is still starting or recovering, if there is one.
fn recovery_sign(pgdata: &camino::Utf8Path) -> Option<String> {
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

fn write_receipt(
    ctx: &Context,
    claim: Option<&Claim>,
    system_identifier: u64,
    checks: Vec<CheckResult>,
    report: &mut Report,
) -> anyhow::Result<Receipt> {
    let previous = ctx.files.receipt_state();
    let (history, warning) = receipt::history_on_verify(claim, &previous, system_identifier);
    report.warnings.extend(warning);
    let receipt = Receipt::verified(
        &ctx.config.pgdata,
        ctx.config.postgres.major,
        system_identifier,
        checks,
        history,
        &ctx.host,
        &clock::now_rfc3339(),
    );
    ctx.files.write_receipt(&receipt, ctx.owner())?;
    if claim.is_some() {
        fsutil::remove_file(&ctx.files.claim)?;
    }
    tracing::info!(
        receipt = %ctx.files.receipt,
        system_identifier,
        action = ?receipt.action,
        "receipt written"
    );
    Ok(receipt)
}
