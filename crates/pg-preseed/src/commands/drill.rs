//! `drill`: the proof that the backups restore, without touching production. Restores a backup
//! into a scratch directory (archiving off, tablespaces inside the scratch directory), starts a
//! throwaway server on a private socket, runs the verify checks, reports, cleans up.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::{Exit, Recorded, Session, UsageError};
use crate::cli::{Cli, DrillArgs};
use crate::clock;
use crate::context::Context;
use crate::decision;
use crate::exec::Command;
use crate::facts;
use crate::fsutil;
use crate::pgbackrest;
use crate::postgres::{self, Connection};
use crate::receipt::CheckResult;
use crate::report::Report;
use crate::restore;
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
    let scratch = base.join(format!("drill-{}", std::process::id()));
    if fsutil::resolve(&scratch).starts_with(fsutil::resolve(&ctx.config.pgdata)) {
        return Err(UsageError(format!(
            "--scratch {} is inside PGDATA {}; a drill never writes there",
            args.scratch, ctx.config.pgdata
        ))
        .into());
    }

    let mut report = Report::new(session.name, "drill");
    let (exit, recorded) = match drill_once(ctx, args, &scratch, &mut report) {
        Ok(drilled) => {
            let ok = drilled.checks.iter().all(|c| c.ok);
            report.reasons.extend(drilled.checks.iter().map(|c| {
                format!(
                    "{}: {}{}",
                    if c.ok { "ok" } else { "FAILED" },
                    c.name,
                    c.detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            }));
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
    scratch: &Utf8Path,
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

    let pgdata = scratch.join("pgdata");
    let socket_dir = scratch.join("socket");
    let owner = ctx.owner();
    fsutil::create_dirs(&pgdata, 0o700, owner)?;
    fsutil::create_dirs(&socket_dir, 0o700, owner)?;
    let cleanup = Cleanup {
        ctx,
        scratch,
        pgdata: pgdata.clone(),
        keep: args.keep,
    };

    // The same restore_command as a real restore, for the scratch copy: segments that cannot be
    // fetched stop the drill's server instead of letting it promote and pass.
    let install = restore::Install::new(ctx, &pgdata, &recovery.numbers())?;
    let restore_args = pgbackrest::restore_argv(&pgbackrest::Restore {
        stanza: &ctx.stanza,
        repo: candidate.repo.number,
        pgdata: &pgdata,
        process_max: restore::process_max(ctx),
        delta: false,
        set: Some(&candidate.backup.label),
        target: &ctx.config.pgbackrest.target,
        drill: Some(scratch),
        recovery_options: &install.options,
    });
    tracing::info!(repo = %candidate.repo, backup = %candidate.backup.label, scratch = %scratch, "drill: restoring");
    let restored = restore::run_restore(ctx, &candidate, restore_args, None)?;
    install.apply(&pgdata, owner)?;

    let recovery_started = Instant::now();
    let log = scratch.join("postgresql.log");
    Command::new(
        ctx.tools.program("pg_ctl"),
        postgres::pg_ctl_start_private_argv(&pgdata, &log, PORT, &socket_dir, 3600),
    )
    .run_as(ctx.children.as_ref())
    .output(Some(Duration::from_secs(3700)))
    .with_context(|| format!("the restored copy did not start; its log is {log}"))?;
    let connection = Connection {
        socket_dir: Some(socket_dir.to_string()),
        port: Some(PORT),
        user: ctx.config.postgres.user.clone(),
        database: ctx.config.verify.database.clone(),
    };
    let expected = candidate.backup.system_id.map(|id| id.to_string());
    let timeout = args.timeout.unwrap_or(ctx.config.verify.timeout);
    let (system_identifier, checks) =
        server::check(ctx, &connection, &pgdata, timeout, expected.as_deref())?;
    let recovery = recovery_started.elapsed();
    drop(cleanup);
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
        scratch: scratch.to_owned(),
        kept: args.keep,
    })
}

/// Stops the throwaway server and removes the scratch directory (which the drill created) on
/// every way out of the drill.
struct Cleanup<'a> {
    ctx: &'a Context,
    scratch: &'a Utf8Path,
    pgdata: Utf8PathBuf,
    keep: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.pgdata.join("postmaster.pid").exists() {
            let stopped = Command::new(
                self.ctx.tools.program("pg_ctl"),
                postgres::pg_ctl_stop_immediate_argv(&self.pgdata),
            )
            .run_as(self.ctx.children.as_ref())
            .output(Some(Duration::from_secs(120)));
            if let Err(error) = stopped {
                tracing::warn!(error = %error, "could not stop the drill's server");
            }
        }
        if !self.keep {
            if let Err(error) = std::fs::remove_dir_all(self.scratch) {
                tracing::warn!(scratch = %self.scratch, error = %error, "could not remove the drill's scratch directory");
            }
        }
    }
}
