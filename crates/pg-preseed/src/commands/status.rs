//! `status`: PGDATA, the receipt, the claim, the last outcome of each command and the findings,
//! at a glance. Always 0.

use camino::Utf8Path;
use serde::Serialize;

use super::{Exit, Session};
use crate::cli::Cli;
use crate::facts;
use crate::outcome::LastRuns;
use crate::pgdata::PgdataState;
use crate::preflight::Finding;
use crate::receipt::{Claim, ClaimKind, ReceiptState};
use crate::story;

pub fn status(cli: &Cli) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "status")?;
    let ctx = &session.ctx;
    let facts = facts::gather(ctx, facts::preflight(ctx));
    let mut warnings = facts.preflight.warnings.clone();
    let last_runs = ctx.files.last_runs().unwrap_or_else(|error| {
        warnings.push(format!("cannot read the last outcomes: {error:#}"));
        LastRuns::new()
    });

    #[derive(Serialize)]
    struct Status<'a> {
        pgdata: &'a str,
        pgdata_state: &'a PgdataState,
        system_identifier: Option<String>,
        marker_path: &'a str,
        marker: &'a ReceiptState,
        pending: Option<&'a Claim>,
        /// What happened, in a few lines: the receipt's restore, then the claim's hook.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        story: Vec<String>,
        last_runs: &'a LastRuns,
        findings: &'a [Finding],
        warnings: &'a [String],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        notes: &'a [String],
    }
    let status = Status {
        pgdata: ctx.config.pgdata.as_str(),
        pgdata_state: &facts.pgdata,
        system_identifier: facts.system_identifier.map(|id| id.to_string()),
        marker_path: ctx.files.receipt.as_str(),
        marker: &facts.receipt,
        pending: facts.claim.as_ref(),
        story: match &facts.receipt {
            ReceiptState::Valid { receipt } => story::receipt_lines(receipt),
            _ => Vec::new(),
        }
        .into_iter()
        .chain(facts.claim.iter().flat_map(story::claim_lines))
        .collect(),
        last_runs: &last_runs,
        findings: &facts.preflight.findings,
        warnings: &warnings,
        notes: &facts.preflight.notes,
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
    if let ReceiptState::Valid { receipt } = &facts.receipt {
        for left_out in receipt.source.iter().flat_map(|s| &s.left_out) {
            println!("         recovered without {left_out}");
        }
        for warning in receipt.recovery.iter().flat_map(|r| &r.warnings) {
            println!("         {warning}");
        }
        for line in story::receipt_lines(receipt) {
            println!("story    {line}");
        }
    }
    if let Some(claim) = &facts.claim {
        println!(
            "claim    {} started {}{}",
            match claim.kind {
                ClaimKind::Restore => "restore",
                ClaimKind::Fresh => "fresh cluster",
            },
            claim.started_at,
            claim.finished_at.as_ref().map_or_else(
                || ", not finished".to_owned(),
                |at| format!(", finished {at}, awaiting `pg-preseed verify`")
            )
        );
        for line in story::claim_lines(claim) {
            println!("         {line}");
        }
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

/// One line about the receipt at `path`: none, unreadable, or how its cluster came to be.
pub(super) fn describe_receipt(state: &ReceiptState, path: &Utf8Path) -> String {
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
                "{path}: {}{source}, system identifier {}, verified {}{}",
                serde_json::to_value(receipt.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                receipt.system_identifier,
                receipt.verified_at.as_deref().unwrap_or("never"),
                receipt
                    .recovery
                    .as_ref()
                    .map(|recovery| format!("; {}", recovery.describe()))
                    .unwrap_or_default()
            )
        }
    }
}
