//! `verify`: once PostgreSQL is up, prove the cluster is the right one and whole
//! ([`crate::server`]) and, after a restore, that recovery ended at the end of the archive or at
//! its target ([`crate::recovery_end`]), then write the receipt (DESIGN.md invariant 5: never
//! before this).

use std::time::{Duration, Instant};

use super::{Exit, Prepare, Recorded, Session};
use crate::cli::{Cli, VerifyArgs};
use crate::clock;
use crate::context::Context;
use crate::facts;
use crate::fsutil;
use crate::receipt::{self, CheckResult, Claim, ClaimKind, Receipt, RecoveryEnd};
use crate::recovery_end;
use crate::report::Report;
use crate::server;

/// One query's own limit, for the recovery check.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

pub fn verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "verify")?;
    let ctx = &session.ctx;
    let mut opened = match session.open(args.lock.lock_wait, Prepare::CreateDir)? {
        Ok(opened) => opened,
        Err(refusal) => return Ok(session.finish(refusal, Exit::Refused, Recorded::default())),
    };
    let preflight = opened.preflight(ctx);
    if !preflight.is_clean() {
        let refusal = Report::from_preflight(session.name, &preflight);
        return Ok(session.finish(refusal, Exit::Refused, Recorded::default()));
    }
    let mut report = Report::new(session.name, "verify");
    report.warnings.clone_from(&preflight.warnings);
    report.notes.clone_from(&preflight.notes);
    let claim = facts::own_claim(ctx, &mut report.warnings);
    let timeout = args.timeout.unwrap_or(ctx.config.verify.timeout);

    let exit = match check(ctx, timeout, claim.as_ref()) {
        Ok((system_identifier, checks, recovery)) => {
            report.reasons = checks
                .iter()
                .map(|c| format!("{}: {}", if c.ok { "ok" } else { "FAILED" }, c.name))
                .collect();
            if checks.iter().all(|c| c.ok) {
                if let Some(recovery) = &recovery {
                    report.warnings.extend(recovery.warnings.iter().cloned());
                }
                let receipt = write_receipt(
                    ctx,
                    claim.as_ref(),
                    system_identifier,
                    checks,
                    recovery,
                    &mut report,
                )?;
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
    let exit = session.finish(report, exit, Recorded::default());
    drop(opened);
    Ok(exit)
}

/// Waits for the server on PGDATA to accept connections and leave recovery, checks its
/// identity, runs the configured checks, and — for a cluster pg-preseed restored — that recovery
/// ended at the end of the archive or at its target. Returns the system identifier, every
/// check's result, and how recovery ended (when that was checked and passed).
fn check(
    ctx: &Context,
    timeout: Duration,
    claim: Option<&Claim>,
) -> anyhow::Result<(u64, Vec<CheckResult>, Option<RecoveryEnd>)> {
    let deadline = Instant::now() + timeout;
    let conn = server::connection(ctx, deadline)?;
    let (system_identifier, mut checks) = server::check(
        ctx,
        &conn,
        &ctx.config.pgdata,
        timeout,
        claim.and_then(|c| c.backup_system_identifier.as_deref()),
    )?;
    let mut recovery = None;
    if let Some(claim) = claim.filter(|c| c.kind == ClaimKind::Restore && system_identifier != 0) {
        let (result, end) = recovery_end::check(
            ctx,
            &conn,
            &ctx.config.pgdata,
            system_identifier,
            claim,
            QUERY_TIMEOUT,
        );
        checks.push(result);
        recovery = end;
    }
    Ok((system_identifier, checks, recovery))
}

fn write_receipt(
    ctx: &Context,
    claim: Option<&Claim>,
    system_identifier: u64,
    checks: Vec<CheckResult>,
    recovery: Option<RecoveryEnd>,
    report: &mut Report,
) -> anyhow::Result<Receipt> {
    let previous = ctx.files.receipt_state();
    let (mut history, warning) = receipt::history_on_verify(claim, &previous, system_identifier);
    report.warnings.extend(warning);
    if recovery.is_some() {
        history.recovery = recovery;
    }
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
