//! `run`: the preseed unit's ExecStart. Take the lock, gather the facts once, decide, then act
//! on the decision.

use std::os::fd::RawFd;
use std::time::Instant;

use super::{evaluate, Exit, Prepare, Recorded, Session};
use crate::archive_watch;
use crate::cli::{Cli, RunArgs};
use crate::clock;
use crate::config::SecondPrimaryMode;
use crate::context::Context;
use crate::decision::{self, Action, Candidate, Facts};
use crate::pgdata::PgdataState;
use crate::primaries;
use crate::receipt::{Claim, ClaimKind, Receipt};
use crate::report::Report;
use crate::restore;

pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "run")?;
    let ctx = &session.ctx;
    let mut opened = match session.open(args.lock.lock_wait, Prepare::CreateDir)? {
        Ok(opened) => opened,
        Err(refusal) => return Ok(session.finish(refusal, Exit::Refused, Recorded::default())),
    };
    // The story's first phase: the facts gathered and the repositories asked (the preflight,
    // gathered while opening, takes milliseconds).
    let deciding = Instant::now();
    let (facts, decision) = evaluate(
        ctx,
        opened.preflight(ctx),
        super::Allow {
            restore: args.allow_restore,
            fresh: args.allow_fresh,
        },
    );
    let repository_check_seconds = deciding.elapsed().as_secs_f64();
    let mut report =
        Report::from_decision(session.name, &decision, &facts, session.facts_view(&facts));
    let mut recorded = Recorded::default();
    let exit = match &decision.action {
        Action::Refuse => Exit::Refused,
        Action::Skip => {
            report.summary = Some("nothing to do".to_owned());
            if args.allow_second_primary {
                allow_second_primary(ctx, &facts, &mut report)?;
            }
            Exit::Ok
        }
        Action::Adopt => adopt(ctx, &facts, &mut report)?,
        Action::Fresh => fresh(ctx, repository_check_seconds, &mut report)?,
        Action::Restore(candidates) | Action::Resume(candidates) => {
            let resume = matches!(decision.action, Action::Resume(_));
            act_restore(
                ctx,
                &facts,
                candidates,
                Acting {
                    resume,
                    repository_check_seconds,
                    allow_second_primary: args.allow_second_primary,
                    lock_fd: opened.lock_fd(),
                },
                &mut report,
                &mut recorded,
            )
        }
    };
    let exit = session.finish(report, exit, recorded);
    drop(opened);
    Ok(exit)
}

fn adopt(ctx: &Context, facts: &Facts, report: &mut Report) -> anyhow::Result<Exit> {
    let Some(system_identifier) = facts.system_identifier else {
        anyhow::bail!("cannot adopt: the system identifier is unknown");
    };
    let major = match &facts.pgdata {
        PgdataState::Initialized {
            pg_version: Some(version),
            ..
        } => crate::pgbackrest::major_of(version).unwrap_or(ctx.config.postgres.major),
        _ => ctx.config.postgres.major,
    };
    let receipt = Receipt::adopted(&ctx.config.pgdata, major, system_identifier, &ctx.host);
    ctx.files.write_receipt(&receipt, ctx.owner())?;
    tracing::info!(receipt = %ctx.files.receipt, system_identifier, "adopted the existing cluster");
    report.summary = Some(format!(
        "wrote the receipt {} for the existing cluster (system identifier {system_identifier})",
        ctx.files.receipt
    ));
    report.result = serde_json::to_value(&receipt)?;
    Ok(Exit::Ok)
}

fn fresh(
    ctx: &Context,
    repository_check_seconds: f64,
    report: &mut Report,
) -> anyhow::Result<Exit> {
    let mut claim = new_claim(ctx, ClaimKind::Fresh);
    claim.phases.repository_check_seconds = Some(repository_check_seconds);
    ctx.files.write_claim(&claim, ctx.owner())?;
    report.summary = Some(
        "initdb may create a new cluster now; `pg-preseed verify` writes the receipt once PostgreSQL is up"
            .to_owned(),
    );
    report.result = serde_json::to_value(&claim)?;
    Ok(Exit::Ok)
}

fn new_claim(ctx: &Context, kind: ClaimKind) -> Claim {
    Claim::new(kind, &ctx.config.pgdata, &ctx.host, &clock::now_rfc3339())
}

/// `run --allow-second-primary` once the restore is done (PGDATA holds it, verify has not passed
/// yet): recorded in the claim, so the next `verify` warns and releases archiving.
fn allow_second_primary(ctx: &Context, facts: &Facts, report: &mut Report) -> anyhow::Result<()> {
    let claim = facts
        .claim
        .as_ref()
        .filter(|claim| claim.kind == ClaimKind::Restore);
    let said = match claim {
        Some(claim) => archive_watch::allow(ctx, claim)?,
        None => None,
    };
    match said {
        Some(text) => report.summary = Some(text),
        None => report.warnings.push(
            "--allow-second-primary changes nothing: no restore with a guard against a second \
                 primary awaits verification"
                .to_owned(),
        ),
    }
    Ok(())
}

/// How `run` came to restore: resuming its own restore or not, after how long a look at the
/// repositories (the story's first phase), with `--allow-second-primary` or not.
#[derive(Debug, Clone, Copy)]
struct Acting {
    resume: bool,
    repository_check_seconds: f64,
    allow_second_primary: bool,
    lock_fd: Option<RawFd>,
}

fn act_restore(
    ctx: &Context,
    facts: &Facts,
    candidates: &[Candidate],
    acting: Acting,
    report: &mut Report,
    recorded: &mut Recorded,
) -> Exit {
    let Acting {
        resume,
        repository_check_seconds,
        allow_second_primary,
        lock_fd,
    } = acting;
    let result = (|| -> anyhow::Result<(restore::Restored, Option<String>, bool)> {
        for done in restore::prepare_pgdata(ctx)? {
            tracing::info!("{done}");
        }
        let mut claim = match (&facts.claim, resume) {
            (Some(claim), true) => claim.clone(),
            _ => new_claim(ctx, ClaimKind::Restore),
        };
        claim.phases.repository_check_seconds = Some(repository_check_seconds);
        // The claim is on disk before pgBackRest touches PGDATA: it is the proof that a
        // manifest found there later is ours.
        ctx.files.write_claim(&claim, ctx.owner())?;
        let recovery = decision::recovery_repos(facts.repos.as_deref().unwrap_or_default());
        for left_out in &recovery.left_out {
            tracing::warn!(repo = left_out.repo, reason = %left_out.reason, "recovery will not consult this repository");
            report.warnings.push(format!(
                "recovery will not consult {left_out}; `pg-preseed verify` asks it again"
            ));
        }
        // Never two primaries on one repository: what the repositories hold now, before anything
        // is restored (a resumed restore keeps its first decision's).
        if archive_watch::active(ctx) {
            let guard = claim.second_primary.get_or_insert_with(|| {
                archive_watch::guard_for_restore(
                    ctx,
                    facts.repos.as_deref().unwrap_or_default(),
                    &recovery.consulted,
                    candidates.first().and_then(|c| c.backup.system_id),
                    false,
                )
            });
            if allow_second_primary {
                guard.allowed_at.get_or_insert_with(clock::now_rfc3339);
            }
        }
        let restored = restore::restore(ctx, candidates, &recovery, &mut claim, lock_fd)?;
        let other_writer = archive_watch::after_restore(ctx, &mut claim)?;
        let tolerated = ctx.config.second_primary.mode == SecondPrimaryMode::Warn
            || claim
                .second_primary
                .as_ref()
                .is_some_and(|guard| guard.allowed_at.is_some());
        report.result = serde_json::to_value(&claim)?;
        Ok((restored, other_writer, tolerated))
    })();
    match result {
        Ok((restored, Some(other_writer), false)) => {
            // Restored, with archiving held: this boot does not start PostgreSQL; `verify`
            // looks again whenever it does.
            recorded.restored_bytes = restored.bytes;
            report.summary = Some(format!(
                "restored from {} backup {}, but another server still writes the repository",
                restored.repo,
                restored.label.as_deref().unwrap_or("?")
            ));
            report.error = Some(format!(
                "{other_writer}; this server's archiving is held (archive_command = pg-preseed \
                 archive-hold)"
            ));
            report.next = Some(primaries::way_on(
                ctx.config_path.as_str(),
                ctx.config.pgdata.as_str(),
            ));
            Exit::Refused
        }
        Ok((restored, other_writer, _)) => {
            if let Some(other_writer) = other_writer {
                report.warnings.push(format!(
                    "{other_writer}; archiving stays held until `pg-preseed verify`, which will \
                 release it all the same"
                ));
            }
            let backup = candidates
                .iter()
                .find(|c| c.repo == restored.repo)
                .map(|c| &c.backup);
            recorded.restored_bytes = restored.bytes;
            recorded.backup_age_seconds =
                backup.and_then(|b| crate::decision::backup_age(clock::unix_now(), b.stop));
            report.summary = Some(format!(
                "{} from {} backup {} in {:.1}s; start PostgreSQL, then `pg-preseed verify` checks it and writes the receipt",
                if resume { "resumed and finished the restore" } else { "restored" },
                restored.repo,
                restored.label.as_deref().unwrap_or("?"),
                restored.duration.as_secs_f64()
            ));
            Exit::Ok
        }
        Err(error) => {
            report.error = Some(format!("{error:#}"));
            report.next = Some(format!(
                "nothing was lost and no receipt was written; fix the cause above and run again: \
                 pg-preseed resumes its own unfinished restore with --delta (claim {})",
                ctx.files.claim
            ));
            Exit::Failed
        }
    }
}
