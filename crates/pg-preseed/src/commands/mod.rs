//! The subcommands. Each prints its report and returns the exit code; errors that escape are
//! mapped to exit codes by [`exit_code_for`].

mod datasets;
mod drill;
mod run;
pub(super) mod verify;

use std::time::Instant;

use anyhow::Context as _;
use camino::Utf8Path;
use serde::Serialize;

use crate::cli::{Cli, Command, MarkerCommand};
use crate::clock;
use crate::config::{Config, ConfigError, Mode};
use crate::context::{load_config, Context};
use crate::decision::{self, Decision, Facts, Policy};
use crate::facts;
use crate::fsutil;
use crate::lock::{self, Lock};
use crate::outcome::{LastRun, LastRuns};
use crate::receipt::{self, ReceiptState};
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
    } else if error.downcast_ref::<lock::Busy>().is_some() {
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
        Command::CheckConfig { file } => check_config(cli, file.as_deref().unwrap_or(&cli.config)),
        Command::Preflight => preflight(cli),
        Command::Plan => plan(cli),
        Command::Run(args) => run::run(cli, args),
        Command::Verify(args) => verify::verify(cli, args),
        Command::Status => status(cli),
        Command::Marker(MarkerCommand::Show) => marker_show(cli),
        Command::Marker(MarkerCommand::Clear { yes, lock }) => {
            marker_clear(cli, *yes, lock.lock_wait)
        }
        Command::Datasets(command) => datasets::datasets(cli, command),
        Command::Drill(args) => drill::drill(cli, args),
        Command::InitdbGuard => initdb_guard(cli),
    }
}

fn context(cli: &Cli) -> anyhow::Result<Context> {
    Context::load(&cli.config)
}

fn check_config(cli: &Cli, file: &Utf8Path) -> anyhow::Result<Exit> {
    match load_config(file) {
        Ok(config) => {
            if cli.json {
                #[derive(Serialize)]
                struct Valid<'a> {
                    valid: bool,
                    config: &'a Config,
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Valid {
                        valid: true,
                        config: &config
                    })?
                );
            } else {
                println!(
                    "config {file} is valid: pgdata {}, marker {}, stanza {} on {}",
                    config.pgdata,
                    config.receipt_path(),
                    config.pgbackrest.stanza,
                    config
                        .pgbackrest
                        .repos
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(Exit::Ok)
        }
        Err(error) => Err(error.into()),
    }
}

fn preflight(cli: &Cli) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let ctx = context(cli)?;
    let preflight = facts::preflight(&ctx);
    let report = Report::from_preflight("preflight", &preflight);
    let exit = if preflight.is_clean() {
        Exit::Ok
    } else {
        Exit::Refused
    };
    report.print(cli.json);
    record(&ctx, &report, exit, started, None);
    Ok(exit)
}

/// The decision policy from the config (and `--allow-restore`).
pub(super) fn policy(ctx: &Context, allow_restore: bool) -> Policy {
    let config = &ctx.config;
    Policy {
        pgdata: config.pgdata.to_string(),
        major: config.postgres.major,
        mode: if allow_restore {
            Mode::Restore
        } else {
            config.mode
        },
        on_no_backup: config.on_no_backup,
        set: config.pgbackrest.set.clone(),
        max_backup_age: config.pgbackrest.max_backup_age,
        now: clock::unix_now(),
        config_path: ctx.config_path.to_string(),
    }
}

/// Gathers the facts (the repositories only when needed) and decides.
fn evaluate(ctx: &Context, allow_restore: bool) -> (Facts, Decision) {
    let mut facts = facts::gather(ctx);
    if decision::needs_repos(&facts) {
        facts.repos = Some(facts::gather_repos(ctx));
    }
    let decision = decision::decide(&facts, &policy(ctx, allow_restore));
    (facts, decision)
}

fn facts_view(ctx: &Context, facts: &Facts) -> FactsView {
    FactsView::new(
        facts,
        ctx.config.pgdata.as_str(),
        ctx.files.receipt.as_str(),
    )
}

fn plan(cli: &Cli) -> anyhow::Result<Exit> {
    let ctx = context(cli)?;
    let (facts, decision) = evaluate(&ctx, false);
    let report = Report::from_decision("plan", &decision, &facts, facts_view(&ctx, &facts));
    report.print(cli.json);
    Ok(if decision.action == decision::Action::Refuse {
        Exit::Refused
    } else {
        Exit::Ok
    })
}

/// Creates the receipt's directory when the preflight checks pass (so nothing is created on a
/// filesystem that is about to be refused), then takes the lock beside the receipt.
fn prepare_and_lock(
    ctx: &Context,
    command: &str,
    wait: std::time::Duration,
) -> anyhow::Result<Result<Lock, Report>> {
    let dir = ctx
        .files
        .receipt
        .parent()
        .context("the marker path has no directory")?;
    if !dir.exists() {
        let preflight = facts::preflight(ctx);
        if !preflight.is_clean() {
            return Ok(Err(Report::from_preflight(command, &preflight)));
        }
        for created in fsutil::create_dirs(dir, 0o755, ctx.owner())? {
            tracing::info!(directory = %created, "created the receipt's directory");
        }
    }
    match Lock::acquire(&ctx.files.lock, wait, command, ctx.owner()) {
        Ok(lock) => Ok(Ok(lock)),
        Err(error) if error.downcast_ref::<lock::Busy>().is_none() => {
            // The lock file cannot even be opened: the preflight checks say why (an unwritable
            // or symlinked marker directory) better than the open error does.
            let preflight = facts::preflight(ctx);
            if preflight.is_clean() {
                Err(error)
            } else {
                Ok(Err(Report::from_preflight(command, &preflight)))
            }
        }
        Err(error) => Err(error),
    }
}

/// Extra numbers a run may record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    pub restored_bytes: Option<u64>,
    pub backup_age_seconds: Option<i64>,
}

/// Records the outcome for `status` and writes metrics when configured. Best effort: a failure
/// is logged, never changes the exit code.
fn record(ctx: &Context, report: &Report, exit: Exit, started: Instant, extra: Option<Recorded>) {
    let dir_exists = ctx.files.receipt.parent().is_some_and(Utf8Path::exists);
    let result = (|| -> anyhow::Result<()> {
        let extra = extra.unwrap_or_default();
        let mut runs = ctx.files.last_runs().unwrap_or_default();
        runs.insert(
            report.command.clone(),
            LastRun {
                command: report.command.clone(),
                decision: report.decision.clone(),
                outcome: exit.outcome().to_owned(),
                exit_code: i32::from(exit.code()),
                at: clock::now_rfc3339(),
                duration_seconds: started.elapsed().as_secs_f64(),
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
            let text = crate::metrics::render(&runs, &ctx.files.receipt_state(), clock::unix_now());
            fsutil::atomic_write(textfile, text.as_bytes(), 0o644, None)
                .with_context(|| format!("failed to write metrics to {textfile}"))?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(error = %format!("{error:#}"), "could not record the outcome");
    }
}

fn status(cli: &Cli) -> anyhow::Result<Exit> {
    let ctx = context(cli)?;
    let mut warnings = Vec::new();
    let facts = facts::gather(&ctx);
    let claim = facts::own_claim(&ctx, &mut warnings);
    let last_runs = ctx.files.last_runs().unwrap_or_else(|error| {
        warnings.push(format!("cannot read the last outcomes: {error:#}"));
        LastRuns::new()
    });
    warnings.extend(facts.preflight.warnings.iter().cloned());

    #[derive(Serialize)]
    struct Status<'a> {
        pgdata: &'a str,
        pgdata_state: &'a crate::pgdata::PgdataState,
        system_identifier: Option<String>,
        marker_path: &'a str,
        marker: &'a ReceiptState,
        pending: Option<&'a receipt::Claim>,
        last_runs: &'a LastRuns,
        findings: &'a [crate::preflight::Finding],
        warnings: &'a [String],
    }
    let status = Status {
        pgdata: ctx.config.pgdata.as_str(),
        pgdata_state: &facts.pgdata,
        system_identifier: facts.system_identifier.map(|id| id.to_string()),
        marker_path: ctx.files.receipt.as_str(),
        marker: &facts.receipt,
        pending: claim.as_ref(),
        last_runs: &last_runs,
        findings: &facts.preflight.findings,
        warnings: &warnings,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Exit::Ok);
    }
    let pgdata = &ctx.config.pgdata;
    println!(
        "PGDATA   {pgdata} {}{}",
        facts.pgdata.summary(),
        facts
            .system_identifier
            .map(|id| format!(", system identifier {id}"))
            .unwrap_or_default()
    );
    println!(
        "receipt  {}",
        describe_receipt(&facts.receipt, &ctx.files.receipt)
    );
    if let Some(claim) = &claim {
        println!(
            "pending  {} started {}{}",
            match claim.kind {
                receipt::ClaimKind::Restore => "restore",
                receipt::ClaimKind::Fresh => "fresh cluster",
            },
            claim.started_at,
            claim.finished_at.as_ref().map_or_else(
                || ", not finished".to_owned(),
                |at| format!(", finished {at}, awaiting `pg-preseed verify`")
            )
        );
    }
    for run in last_runs.values() {
        println!(
            "last     {} → {} ({}) at {}, {:.1}s{}",
            run.command,
            run.decision,
            run.outcome,
            run.at,
            run.duration_seconds,
            run.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if facts.preflight.findings.is_empty() {
        println!("findings none");
    }
    for finding in &facts.preflight.findings {
        println!("finding  {}", finding.detail);
        println!("         fix: {}", finding.fix);
    }
    for warning in &warnings {
        println!("warning  {warning}");
    }
    Ok(Exit::Ok)
}

fn describe_receipt(state: &ReceiptState, path: &Utf8Path) -> String {
    match state {
        ReceiptState::Absent => format!("none at {path}"),
        ReceiptState::Unreadable { error } => format!("{path} is unreadable: {error}"),
        ReceiptState::Valid { receipt } => {
            let source = receipt.source.as_ref().map_or_else(String::new, |s| {
                format!(
                    " from repo{}{} backup {}",
                    s.repo,
                    s.repo_name
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    s.backup_label.as_deref().unwrap_or("?")
                )
            });
            format!(
                "{path}: {}{source}, system identifier {}, verified {}",
                serde_json::to_value(receipt.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                receipt.system_identifier,
                receipt.verified_at.as_deref().unwrap_or("never")
            )
        }
    }
}

/// The last line of defence of invariant 1, run by postgresql.service before nixpkgs' initdb:
/// PGDATA must hold a cluster, or pg-preseed must have decided a fresh start (its claim). Reads
/// only PGDATA's top level and the claim: it adds nothing measurable to a start.
fn initdb_guard(cli: &Cli) -> anyhow::Result<Exit> {
    let ctx = context(cli)?;
    let state = crate::pgdata::classify(&crate::pgdata::observe(&ctx.config.pgdata));
    let mut warnings = Vec::new();
    let fresh = facts::own_claim(&ctx, &mut warnings)
        .is_some_and(|claim| claim.kind == receipt::ClaimKind::Fresh);
    let (allowed, reason) = match &state {
        crate::pgdata::PgdataState::Initialized { .. } => {
            (true, state.describe(&ctx.config.pgdata))
        }
        crate::pgdata::PgdataState::Missing | crate::pgdata::PgdataState::Empty if fresh => (
            true,
            format!(
                "{}, and pg-preseed decided a fresh start (first deployment): initdb may run",
                state.describe(&ctx.config.pgdata)
            ),
        ),
        _ => (
            false,
            format!(
                "{}, and pg-preseed did not clear it for initdb: PostgreSQL must not start on it",
                state.describe(&ctx.config.pgdata)
            ),
        ),
    };
    let mut report = Report::new("initdb-guard", if allowed { "allow" } else { "refuse" });
    report.reasons.push(reason);
    report.warnings = warnings;
    if !allowed {
        report.next = Some(
            "start PostgreSQL through its guard units (`systemctl restart postgresql`, which restarts postgresql-preseed.service with it) so the restore decision runs first"
                .to_owned(),
        );
    }
    report.print(cli.json);
    Ok(if allowed { Exit::Ok } else { Exit::Refused })
}

fn marker_show(cli: &Cli) -> anyhow::Result<Exit> {
    let ctx = context(cli)?;
    let state = ctx.files.receipt_state();
    if cli.json {
        #[derive(Serialize)]
        struct Show<'a> {
            path: &'a str,
            #[serde(flatten)]
            marker: &'a ReceiptState,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Show {
                path: ctx.files.receipt.as_str(),
                marker: &state,
            })?
        );
    } else {
        println!("{}", describe_receipt(&state, &ctx.files.receipt));
        if let ReceiptState::Valid { receipt } = &state {
            println!("{}", serde_json::to_string_pretty(receipt)?);
        }
    }
    Ok(Exit::Ok)
}

fn marker_clear(cli: &Cli, yes: bool, wait: std::time::Duration) -> anyhow::Result<Exit> {
    let ctx = context(cli)?;
    if !yes {
        return Err(UsageError(format!(
            "refusing to remove the receipt {} without --yes: without it, an empty PGDATA whose \
             repositories hold nothing may be initialised as a new, empty cluster (with \
             on_no_backup = \"initdb\"); a restore never needs the receipt removed",
            ctx.files.receipt
        ))
        .into());
    }
    let _lock = if ctx.files.lock.parent().is_some_and(Utf8Path::exists) {
        Some(Lock::acquire(
            &ctx.files.lock,
            wait,
            "marker clear",
            ctx.owner(),
        )?)
    } else {
        None
    };
    let removed = fsutil::remove_file(&ctx.files.receipt)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "path": ctx.files.receipt, "removed": removed })
        );
    } else if removed {
        println!("removed the receipt {}", ctx.files.receipt);
    } else {
        println!("no receipt at {}; nothing removed", ctx.files.receipt);
    }
    Ok(Exit::Ok)
}
