//! `verify`: once PostgreSQL is up, prove the cluster is the right one and whole
//! ([`crate::server`]) and, after a restore, that recovery ended at the end of the archive or at
//! its target ([`crate::recovery_end`]) and that no other server still writes the repository
//! ([`crate::archive_watch`]); then, for a claim (a restore or a fresh start), run the
//! post-restore hook once ([`crate::post_restore`]), release the restored server's archiving,
//! write the receipt (DESIGN.md invariant 5: never before this) and tell the story
//! ([`crate::story`]).

use std::time::{Duration, Instant};

use super::{Exit, Prepare, Recorded, Session};
use crate::archive_watch::{self, Watched};
use crate::cli::{Cli, VerifyArgs};
use crate::clock;
use crate::context::Context;
use crate::facts;
use crate::fsutil;
use crate::post_restore::{self, Hook};
use crate::postgres::Connection;
use crate::primaries;
use crate::receipt::{self, CheckResult, Claim, ClaimKind, Receipt, RecoveryEnd};
use crate::recovery_end;
use crate::report::Report;
use crate::server::{self, RecoveryFacts};
use crate::story;

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
    let mut claim = facts::own_claim(ctx, &mut report.warnings);
    let timeout = args.timeout.unwrap_or(ctx.config.verify.timeout);

    let started = Instant::now();
    let checked = server::connection(ctx, started + timeout).and_then(|conn| {
        check(
            ctx,
            &conn,
            timeout,
            claim.as_ref(),
            args.allow_second_primary,
        )
        .map(|c| (conn, c))
    });
    let exit = match checked {
        Ok((
            conn,
            Checked {
                system_identifier,
                checks,
                recovery,
                watched,
            },
        )) => {
            report.reasons = checks
                .iter()
                .map(|c| format!("{}: {}", if c.ok { "ok" } else { "FAILED" }, c.name))
                .collect();
            if let Some(watched) = &watched {
                report.warnings.extend(watched.warnings.iter().cloned());
            }
            let refused = watched.as_ref().and_then(|w| w.refused.clone());
            if let Some(next) =
                refused.filter(|_| checks.iter().all(|c| c.ok || c.name == primaries::CHECK))
            {
                // Only the second-primary check failed: a refusal, not a failure.
                "refused".clone_into(&mut report.decision);
                report.error = checks.iter().find(|c| !c.ok).and_then(|c| c.detail.clone());
                report.next = Some(next);
                Exit::Refused
            } else if checks.iter().all(|c| c.ok) {
                if let Some(recovery) = &recovery {
                    report.warnings.extend(recovery.warnings.iter().cloned());
                }
                let verify_seconds = started.elapsed().as_secs_f64();
                // What the server tells of its recovery now, kept in the claim before the hook
                // runs: a restart of PostgreSQL (the hook's retry) forgets it.
                let observed = match &mut claim {
                    Some(claim) => observe(ctx, &conn, claim),
                    None => RecoveryFacts::default(),
                };
                // The hook runs while archiving is still held: a failed hook leaves the restore
                // guarded, and the next verify watches again before it retries.
                if let Some(claim) = &mut claim {
                    match post_restore::run_once(ctx, claim, &conn, system_identifier)? {
                        Hook::Failed { why } => {
                            return Ok(hook_failed(&session, report, &why, opened));
                        }
                        Hook::Succeeded { .. } | Hook::AlreadySucceeded { .. } => {
                            report.reasons.push("ok: the post-restore hook".to_owned());
                        }
                        Hook::NotConfigured => {}
                    }
                }
                match archive_watch::release(ctx, &conn, &ctx.config.pgdata, claim.as_ref()) {
                    Err(error) => {
                        "failed".clone_into(&mut report.decision);
                        report.error = Some(format!("{error:#}; no receipt was written"));
                        Exit::Failed
                    }
                    Ok(released) => {
                        if let Some(archive_command) = released {
                            report.reasons.push(format!(
                                "archiving released (archive_command: {archive_command})"
                            ));
                        }
                        let receipt = write_receipt(
                            ctx,
                            claim.as_ref(),
                            system_identifier,
                            checks,
                            recovery,
                            (verify_seconds, &observed),
                            &mut report,
                        )?;
                        "verified".clone_into(&mut report.decision);
                        let mut summary = format!(
                            "wrote the receipt {} ({}, system identifier {system_identifier})",
                            ctx.files.receipt,
                            serde_json::to_value(receipt.action)?
                                .as_str()
                                .unwrap_or_default()
                        );
                        if claim.is_some() {
                            for line in story::receipt_lines(&receipt) {
                                summary.push_str("\n  ");
                                summary.push_str(&line);
                            }
                        }
                        report.summary = Some(summary);
                        report.result = serde_json::to_value(&receipt)?;
                        Exit::Ok
                    }
                }
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
    if exit == Exit::Failed && report.next.is_none() {
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

/// The post-restore hook failed: `verify` fails (exit 4) without a receipt, the claim (which
/// records the attempt) stays, and the next start of PostgreSQL retries it. The report and the
/// recorded outcome say why in a few words; the hook's output is in the journal only.
fn hook_failed(
    session: &Session<'_>,
    mut report: Report,
    why: &str,
    opened: super::Opened,
) -> Exit {
    "failed".clone_into(&mut report.decision);
    report
        .reasons
        .push("FAILED: the post-restore hook".to_owned());
    report.error = Some(format!(
        "the post-restore hook failed: {why}; no receipt was written (its output is in the journal)"
    ));
    report.next = Some(
        "fix what the hook's output in the journal says; the next start of PostgreSQL (or \
         `pg-preseed verify`) runs the hook again, and writes the receipt once it succeeds"
            .to_owned(),
    );
    let exit = session.finish(report, Exit::Failed, Recorded::default());
    drop(opened);
    exit
}

/// What the server tells of its recovery, merged into the claim (what an earlier `verify` saw
/// wins: the server forgets after a restart) and written with it when the hook is to run.
fn observe(ctx: &Context, conn: &Connection, claim: &mut Claim) -> RecoveryFacts {
    let now = server::recovery_facts(ctx, conn, &ctx.config.pgdata);
    let observed = RecoveryFacts {
        recovery_seconds: claim.phases.recovery_seconds.or(now.recovery_seconds),
        replayed_until: claim.replayed_until.clone().or(now.replayed_until),
    };
    claim.phases.recovery_seconds = observed.recovery_seconds;
    claim.replayed_until.clone_from(&observed.replayed_until);
    observed
}

/// What [`check`] found.
struct Checked {
    system_identifier: u64,
    checks: Vec<CheckResult>,
    /// How recovery ended (when that was checked and passed).
    recovery: Option<RecoveryEnd>,
    /// The watch for another writer (after a guarded restore).
    watched: Option<Watched>,
}

/// Waits for the server on PGDATA to accept connections and leave recovery, checks its
/// identity, runs the configured checks, and — for a cluster pg-preseed restored — that recovery
/// ended at the end of the archive or at its target, and that no other server writes the
/// repository (the watch, when the restore recorded a guard). `allow`: `--allow-second-primary`.
fn check(
    ctx: &Context,
    conn: &Connection,
    timeout: Duration,
    claim: Option<&Claim>,
    allow: bool,
) -> anyhow::Result<Checked> {
    let (system_identifier, mut checks) = server::check(
        ctx,
        conn,
        &ctx.config.pgdata,
        timeout,
        claim.and_then(|c| c.backup_system_identifier.as_deref()),
    )?;
    let mut recovery = None;
    let mut watched = None;
    if let Some(claim) = claim.filter(|c| c.kind == ClaimKind::Restore && system_identifier != 0) {
        // With a guard, WAL archived after the decision is the other writer's (the watch tells),
        // not WAL recovery missed.
        let guard = claim
            .second_primary
            .as_ref()
            .filter(|_| archive_watch::active(ctx));
        let (result, end) = recovery_end::check(
            ctx,
            conn,
            &ctx.config.pgdata,
            system_identifier,
            claim,
            QUERY_TIMEOUT,
            guard,
        );
        checks.push(result);
        recovery = end;
        watched = archive_watch::watch(ctx, conn, &ctx.config.pgdata, claim, allow);
        if let Some(watched) = &watched {
            checks.push(watched.check.clone());
        }
    }
    Ok(Checked {
        system_identifier,
        checks,
        recovery,
        watched,
    })
}

fn write_receipt(
    ctx: &Context,
    claim: Option<&Claim>,
    system_identifier: u64,
    checks: Vec<CheckResult>,
    recovery: Option<RecoveryEnd>,
    (verify_seconds, observed): (f64, &RecoveryFacts),
    report: &mut Report,
) -> anyhow::Result<Receipt> {
    let previous = ctx.files.receipt_state();
    let (mut history, warning) = receipt::history_on_verify(claim, &previous, system_identifier);
    report.warnings.extend(warning);
    if recovery.is_some() {
        history.recovery = recovery;
    }
    if claim.is_some() {
        // This verify's part of the story: the checks now, recovery as first observed.
        history.phases.verify_seconds = Some(verify_seconds);
        history.phases.recovery_seconds = history
            .phases
            .recovery_seconds
            .or(observed.recovery_seconds);
        history.replayed_until = history
            .replayed_until
            .or_else(|| observed.replayed_until.clone());
    }
    let now = clock::now_rfc3339();
    if claim.is_some() {
        history.phases.completed_at = Some(now.clone());
    }
    let receipt = Receipt::verified(
        &ctx.config.pgdata,
        ctx.config.postgres.major,
        system_identifier,
        checks,
        history,
        &ctx.host,
        &now,
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
    if claim.is_some() {
        for line in story::receipt_lines(&receipt) {
            tracing::info!(story = true, "{line}");
        }
    }
    Ok(receipt)
}
