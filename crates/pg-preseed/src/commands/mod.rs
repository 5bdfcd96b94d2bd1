//! The subcommands, one file each. A command that reaches the system starts a `Session` (the
//! context, loaded once, and its name), gathers what it needs once, prints one report and
//! returns the exit code. What they share lives here: taking the lock or refusing
//! (`Session::open`), ending with the outcome recorded (`Session::finish`), the decision
//! policy from the config, and the mapping of escaped errors to exit codes ([`exit_code_for`]).

pub mod archive_get;
mod archive_hold;
mod check_config;
mod datasets;
mod drill;
mod initdb_guard;
mod marker;
mod plan;
mod preflight;
mod run;
mod status;
mod verify;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::Utf8Path;

use crate::cli::{Cli, Command, MarkerCommand};
use crate::clock;
use crate::config::{ConfigError, Mode};
use crate::context::Context;
use crate::decision::{self, Decision, Facts, Policy};
use crate::facts;
use crate::fsutil;
use crate::lock::{self, Lock};
use crate::outcome::LastRun;
use crate::preflight::Preflight;
use crate::report::{FactsView, Report};

pub use crate::outcome::Exit;

/// Bad usage that clap cannot see (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error that escaped a command.
#[must_use]
pub fn exit_code_for(error: &anyhow::Error) -> Exit {
    if error.downcast_ref::<ConfigError>().is_some() || error.downcast_ref::<UsageError>().is_some()
    {
        Exit::Usage
    } else if error.downcast_ref::<lock::Busy>().is_some()
        || error.downcast_ref::<lock::Untrusted>().is_some()
    {
        Exit::Refused
    } else {
        Exit::Internal
    }
}

/// Runs the chosen command.
///
/// # Errors
/// Anything the command could not handle itself; see [`exit_code_for`].
pub fn dispatch(cli: &Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::CheckConfig { file } => {
            check_config::check_config(cli, file.as_deref().unwrap_or(&cli.config))
        }
        Command::Preflight => preflight::preflight(cli),
        Command::Plan => plan::plan(cli),
        Command::Run(args) => run::run(cli, args),
        Command::Verify(args) => verify::verify(cli, args),
        Command::Status => status::status(cli),
        Command::Marker(MarkerCommand::Show) => marker::show(cli),
        Command::Marker(MarkerCommand::Clear { yes, lock }) => {
            marker::clear(cli, *yes, lock.lock_wait)
        }
        Command::Datasets(command) => datasets::datasets(cli, command),
        Command::Drill(args) => drill::drill(cli, args),
        Command::InitdbGuard => initdb_guard::initdb_guard(cli),
        // PostgreSQL's restore_command: its own exit statuses (0, 1, 255), not DESIGN.md's.
        Command::ArchiveGet(args) => {
            std::process::exit(i32::from(archive_get::archive_get(cli, args)))
        }
        // PostgreSQL's archive_command while archiving is held: always "not archived".
        Command::ArchiveHold(args) => {
            std::process::exit(i32::from(archive_hold::archive_hold(args)))
        }
    }
}

/// One run of a command: its context, loaded once, its name (in reports, the lock and the
/// record) and when it started.
struct Session<'a> {
    cli: &'a Cli,
    ctx: Context,
    name: &'static str,
    started: Instant,
}

/// What the receipt's directory needs before the lock beside it can be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepare {
    /// Create it, once the preflight checks pass (so nothing is created on a filesystem about
    /// to be refused): `run` and `verify`.
    CreateDir,
    /// Lock only when it exists: without it there is nothing to guard (`marker clear`).
    IfDirExists,
}

/// The lock, when taken (held until this is dropped), and the preflight checks gathered on the
/// way to it.
struct Opened {
    lock: Option<Lock>,
    preflight: Option<Preflight>,
}

impl Opened {
    /// The descriptor holding the lock, for pgBackRest to inherit.
    fn lock_fd(&self) -> Option<RawFd> {
        self.lock.as_ref().map(Lock::fd)
    }

    /// The preflight checks: those gathered while opening when the lock came free at once,
    /// else gathered now (after any wait, another pg-preseed may have changed things).
    fn preflight(&mut self, ctx: &Context) -> Preflight {
        self.preflight
            .take()
            .unwrap_or_else(|| facts::preflight(ctx))
    }
}

/// Extra numbers a run may record.
#[derive(Debug, Clone, Copy, Default)]
struct Recorded {
    restored_bytes: Option<u64>,
    backup_age_seconds: Option<i64>,
}

impl<'a> Session<'a> {
    fn start(cli: &'a Cli, name: &'static str) -> anyhow::Result<Session<'a>> {
        let started = Instant::now();
        Ok(Session {
            cli,
            ctx: Context::load(&cli.config)?,
            name,
            started,
        })
    }

    /// Takes the lock beside the receipt, waiting up to `wait` for another pg-preseed, or
    /// returns the refusal to report instead: when the receipt's directory is missing and may not
    /// be created, or the lock file cannot be opened and the preflight checks say why.
    fn open(&self, wait: Duration, prepare: Prepare) -> anyhow::Result<Result<Opened, Report>> {
        let ctx = &self.ctx;
        let dir = ctx
            .files
            .receipt
            .parent()
            .context("the marker path has no directory")?;
        let mut preflight = None;
        if !dir.exists() {
            if prepare == Prepare::IfDirExists {
                return Ok(Ok(Opened {
                    lock: None,
                    preflight,
                }));
            }
            let checked = facts::preflight(ctx);
            if !checked.is_clean() {
                return Ok(Err(Report::from_preflight(self.name, &checked)));
            }
            for created in fsutil::create_dirs(dir, 0o755, ctx.owner())? {
                tracing::info!(directory = %created, "created the receipt's directory");
            }
            preflight = Some(checked);
        }
        match Lock::acquire(&ctx.files.lock, wait, self.name, ctx.owner()) {
            Ok(lock) => Ok(Ok(Opened {
                preflight: preflight.filter(|_| !lock.waited()),
                lock: Some(lock),
            })),
            Err(error)
                if error.downcast_ref::<lock::Busy>().is_some()
                    || error.downcast_ref::<lock::Untrusted>().is_some() =>
            {
                Err(error)
            }
            Err(error) if prepare == Prepare::IfDirExists => Err(error),
            Err(error) => {
                // The lock file cannot even be opened: the preflight checks say why (an
                // unwritable or symlinked receipt directory) better than the open error does.
                let checked = preflight.unwrap_or_else(|| facts::preflight(ctx));
                if checked.is_clean() {
                    Err(error)
                } else {
                    Ok(Err(Report::from_preflight(self.name, &checked)))
                }
            }
        }
    }

    /// The facts behind a decision, for `--json`.
    fn facts_view(&self, facts: &Facts) -> FactsView {
        FactsView::new(
            facts,
            self.ctx.config.pgdata.as_str(),
            self.ctx.files.receipt.as_str(),
        )
    }

    /// Ends a command that records its outcome (`preflight`, and `run`, `verify`, `drill`, which
    /// act): the report gets the outcome of `exit` (acting commands only), the log a line, stdout
    /// the report; then the outcome is recorded for `status` and the metrics.
    fn finish(&self, mut report: Report, exit: Exit, extra: Recorded) -> Exit {
        if self.cli.command.acts() {
            report.outcome = Some(exit.outcome().to_owned());
            tracing::info!(
                decision = %report.decision,
                outcome = exit.outcome(),
                duration_seconds = self.started.elapsed().as_secs_f64(),
                "{} finished",
                self.name
            );
        }
        report.print(self.cli.json);
        self.record(&report, exit, extra);
        exit
    }

    /// Records the outcome for `status` and writes metrics when configured. Best effort: a
    /// failure is logged, never changes the exit code.
    fn record(&self, report: &Report, exit: Exit, extra: Recorded) {
        let ctx = &self.ctx;
        let dir_exists = ctx.files.receipt.parent().is_some_and(Utf8Path::exists);
        let result = (|| -> anyhow::Result<()> {
            let mut runs = ctx.files.last_runs().unwrap_or_default();
            runs.insert(
                report.command.clone(),
                LastRun {
                    command: report.command.clone(),
                    decision: report.decision.clone(),
                    outcome: exit.outcome().to_owned(),
                    exit_code: i32::from(exit.code()),
                    at: clock::now_rfc3339(),
                    duration_seconds: self.started.elapsed().as_secs_f64(),
                    reasons: report.reasons.clone(),
                    findings: report.findings.len(),
                    error: report.error.clone(),
                    restored_bytes: extra.restored_bytes,
                    backup_age_seconds: extra.backup_age_seconds,
                },
            );
            if dir_exists {
                ctx.files.write_last_runs(&runs, ctx.owner())?;
            }
            if let Some(textfile) = ctx
                .config
                .metrics
                .as_ref()
                .and_then(|m| m.textfile.as_ref())
            {
                let text =
                    crate::metrics::render(&runs, &ctx.files.receipt_state(), clock::unix_now());
                fsutil::atomic_write(textfile, text.as_bytes(), 0o644, None)
                    .with_context(|| format!("failed to write metrics to {textfile}"))?;
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(error = %format!("{error:#}"), "could not record the outcome");
        }
    }
}

/// What the operator allowed on the command line (`run --allow-restore`, `--allow-fresh`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Allow {
    pub restore: bool,
    pub fresh: bool,
}

/// The decision policy from the config and what the command line allows.
fn policy(ctx: &Context, allow: Allow) -> Policy {
    let config = &ctx.config;
    Policy {
        pgdata: config.pgdata.to_string(),
        major: config.postgres.major,
        mode: if allow.restore {
            Mode::Restore
        } else {
            config.mode
        },
        on_no_backup: config.on_no_backup,
        set: config.pgbackrest.set.clone(),
        max_backup_age: config.pgbackrest.max_backup_age,
        target: config.pgbackrest.target.clone(),
        now: clock::unix_now(),
        config_path: ctx.config_path.to_string(),
        allow_fresh: allow.fresh,
    }
}

/// Gathers the rest of the facts around `preflight` (the repositories only when needed) and
/// decides.
fn evaluate(ctx: &Context, preflight: Preflight, allow: Allow) -> (Facts, Decision) {
    let mut facts = facts::gather(ctx, preflight);
    if decision::needs_repos(&facts) {
        facts.repos = Some(facts::gather_repos(ctx));
    }
    let decision = decision::decide(&facts, &policy(ctx, allow));
    (facts, decision)
}
