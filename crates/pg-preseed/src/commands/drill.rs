//! `drill`: the proof that the backups restore, without touching production. Restores a backup
//! into a scratch directory (archiving off, tablespaces inside the scratch directory), starts a
//! throwaway server on a private socket, runs the verify checks, reports, cleans up.

use std::time::Instant;

use anyhow::bail;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::{Exit, Recorded, Session, UsageError};
use crate::cli::{Cli, DrillArgs};
use crate::clock;
use crate::context::Context;
use crate::decision;
use crate::facts;
use crate::fsutil;
use crate::pgbackrest;
use crate::postgres::Connection;
use crate::receipt::CheckResult;
use crate::report::Report;
use crate::restore;
use crate::scratch::Scratch;
use crate::server;

/// The drilled server's port: it listens only on a socket in its own directory, so any number
/// works and none can collide.
const PORT: u16 = 54329;

#[derive(Debug, Serialize)]
struct Drilled {
    repo: u32,
    repo_name: Option<String>,
    backup_label: String,
    backup_stop: String,
    restore_seconds: f64,
    recovery_and_checks_seconds: f64,
    total_seconds: f64,
    restored_bytes: Option<u64>,
    system_identifier: Option<String>,
    checks: Vec<CheckResult>,
    scratch: Utf8PathBuf,
    kept: bool,
}

pub fn drill(cli: &Cli, args: &DrillArgs) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "drill")?;
    let ctx = &session.ctx;
    let Some(base) = crate::paths::normalize_absolute(&args.scratch) else {
        return Err(UsageError(format!(
            "--scratch {} must be an absolute path without \"..\"",
            args.scratch
        ))
        .into());
    };
    if fsutil::resolve(&base).starts_with(fsutil::resolve(&ctx.config.pgdata)) {
        return Err(UsageError(format!(
            "--scratch {} is inside PGDATA {}; a drill never writes there",
            args.scratch, ctx.config.pgdata
        ))
        .into());
    }

    let mut report = Report::new(session.name, "drill");
    let drilled = drill_once(ctx, args, &base, &mut report);
    if crate::exec::interrupted() {
        // SIGINT or SIGTERM: the handler stops what the drill started, removes the copy and
        // ends the process as the signal would have (crate::scratch).
        loop {
            std::thread::park();
        }
    }
    let (exit, recorded) = match drilled {
        Ok(drilled) => {
            let ok = drilled.checks.iter().all(|c| c.ok);
            // A failed check by name only: the reasons are recorded (last-run), and what the
            // check returned may be data. It is in this run's output (`result`) and log.
            report.reasons.extend(
                drilled
                    .checks
                    .iter()
                    .map(|c| format!("{}: {}", if c.ok { "ok" } else { "FAILED" }, c.name)),
            );
            report.summary = Some(format!(
                "{} backup {} of {}: restored in {:.1}s, recovered and checked in {:.1}s, {:.1}s in all; {}",
                if ok { "drilled" } else { "drill FAILED on" },
                drilled.backup_label,
                drilled.backup_stop,
                drilled.restore_seconds,
                drilled.recovery_and_checks_seconds,
                drilled.total_seconds,
                if drilled.kept {
                    format!("kept in {}", drilled.scratch)
                } else {
                    "scratch copy removed".to_owned()
                }
            ));
            report.result = serde_json::to_value(&drilled)?;
            let recorded = Recorded {
                restored_bytes: drilled.restored_bytes,
                backup_age_seconds: None,
            };
            (if ok { Exit::Ok } else { Exit::Failed }, recorded)
        }
        Err(error) => {
            report.error = Some(format!("{error:#}"));
            report.next = Some(
                "this backup could not be restored and verified: fix it now (run `pgbackrest verify`, take a new full backup), not on the day you need it"
                    .to_owned(),
            );
            (Exit::Failed, Recorded::default())
        }
    };
    report.decision = if exit == Exit::Ok {
        "verified"
    } else {
        "failed"
    }
    .to_owned();
    Ok(session.finish(report, exit, recorded))
}

fn drill_once(
    ctx: &Context,
    args: &DrillArgs,
    base: &Utf8Path,
    report: &mut Report,
) -> anyhow::Result<Drilled> {
    let started = Instant::now();
    // Which backup: the same rules as a real restore (right major, fresh enough), in order.
    let mut policy = super::policy(
        ctx,
        super::Allow {
            restore: true,
            fresh: false,
        },
    );
    if let Some(set) = &args.set {
        policy.set = Some(set.clone());
    }
    let repos: Vec<_> = facts::gather_repos(ctx)
        .into_iter()
        .filter(|r| args.repo.is_none_or(|n| r.repo.number == n))
        .collect();
    if repos.is_empty() {
        bail!(
            "repository {} is not in pgbackrest.repos",
            args.repo.unwrap_or_default()
        );
    }
    let recovery = decision::recovery_repos(&repos);
    report.warnings.extend(
        recovery
            .left_out
            .iter()
            .map(|left_out| format!("the drill's recovery does not consult {left_out}")),
    );
    let (candidates, reasons) = decision::candidates(repos, &policy);
    report.reasons.extend(reasons);
    let Some(candidate) = candidates.into_iter().next() else {
        bail!("no repository holds a backup that could be restored");
    };

    // Removed (with the server stopped first) on every way out, SIGINT and SIGTERM included.
    let scratch = Scratch::create(base, ctx.owner(), args.keep)?;

    // The same restore_command as a real restore, for the scratch copy: segments that cannot be
    // fetched stop the drill's server instead of letting it promote and pass.
    let install = restore::Install::new(ctx, &scratch.pgdata, &recovery.numbers())?;
    let restore_args = pgbackrest::restore_argv(&pgbackrest::Restore {
        stanza: &ctx.stanza,
        repo: candidate.repo.number,
        pgdata: &scratch.pgdata,
        process_max: restore::process_max(ctx),
        delta: false,
        set: Some(&candidate.backup.label),
        target: &ctx.config.pgbackrest.target,
        drill: Some(&scratch.dir),
        recovery_options: &install.options,
    });
    tracing::info!(repo = %candidate.repo, backup = %candidate.backup.label, scratch = %scratch.dir, "drill: restoring");
    let restored = restore::run_restore(ctx, &candidate, restore_args, None)?;
    install.apply(&scratch.pgdata, ctx.owner())?;

    let recovery_started = Instant::now();
    let timeout = args.timeout.unwrap_or(ctx.config.verify.timeout);
    let server = scratch.start_server(ctx, PORT)?;
    server.wait_ready(timeout)?;
    let connection = Connection {
        socket_dir: Some(scratch.socket_dir.to_string()),
        port: Some(PORT),
        user: ctx.config.postgres.user.clone(),
        database: ctx.config.verify.database.clone(),
    };
    let expected = candidate.backup.system_id.map(|id| id.to_string());
    let (system_identifier, checks) = server::check(
        ctx,
        &connection,
        &scratch.pgdata,
        timeout,
        expected.as_deref(),
    )?;
    let recovery = recovery_started.elapsed();
    drop(server);
    let scratch_dir = scratch.dir.clone();
    drop(scratch);
    Ok(Drilled {
        repo: candidate.repo.number,
        repo_name: candidate.repo.name.clone(),
        backup_label: restored.label.unwrap_or(candidate.backup.label),
        backup_stop: clock::unix_to_rfc3339(candidate.backup.stop),
        restore_seconds: restored.duration.as_secs_f64(),
        recovery_and_checks_seconds: recovery.as_secs_f64(),
        total_seconds: started.elapsed().as_secs_f64(),
        restored_bytes: restored.bytes,
        system_identifier: (system_identifier != 0).then(|| system_identifier.to_string()),
        checks,
        scratch: scratch_dir,
        kept: args.keep,
    })
}
