//! `datasets check` / `datasets ensure`: reconcile the declared ZFS datasets (the datasets unit
//! runs `ensure` as root before the pools' datasets are mounted). Every ending is recorded for
//! `status` and the metrics, in the runtime directory ([`crate::files`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::{exit_code_for, Exit, Recorded, Session};
use crate::cli::{Cli, DatasetsCommand};
use crate::datasets::{self, Change};
use crate::report::Report;
use crate::zfs::{self, Zfs};

const ZFS_TIMEOUT: Duration = Duration::from_secs(120);

pub fn datasets(cli: &Cli, command: &DatasetsCommand) -> anyhow::Result<Exit> {
    let session = Session::start(
        cli,
        match command {
            DatasetsCommand::Check => "datasets check",
            DatasetsCommand::Ensure => "datasets ensure",
        },
    )?;
    match reconcile(&session, command) {
        Ok((report, exit)) => Ok(session.finish(report, exit, Recorded::default())),
        Err(error) => {
            // Recorded as failed (with the error) before it is printed once by main.
            let exit = exit_code_for(&error);
            let mut report = Report::new(session.name, "error");
            report.error = Some(format!("{error:#}"));
            session.record(&report, exit, Recorded::default());
            Err(error)
        }
    }
}

/// Compares (and for `ensure` reconciles) the declaration with what ZFS holds: the report and
/// the exit code, or an error when ZFS cannot be asked or a change fails.
fn reconcile(session: &Session<'_>, command: &DatasetsCommand) -> anyhow::Result<(Report, Exit)> {
    let (ctx, name) = (&session.ctx, session.name);
    let declared = &ctx.config.datasets;
    let mut report = Report::new(name, "clean");
    if declared.is_empty() {
        report
            .reasons
            .push("no datasets are declared in the config".to_owned());
        return Ok((report, Exit::Ok));
    }
    let zfs =
        Zfs::find(ZFS_TIMEOUT).context("no `zfs` command found, but datasets are declared")?;
    let listed = zfs.list()?;

    // `overlay` exists in OpenZFS 2.x (zfs-fuse and old releases lack it): ask the first pool
    // (when it is not imported, the plan refuses and nothing is set).
    let pool = datasets::pool_of(&declared[0].name);
    let overlay_supported = !datasets::pool_imported(&listed, pool) || zfs.has_overlay(pool);
    let mut extra = BTreeMap::new();
    for decl in declared
        .iter()
        .filter(|d| d.mountpoint == ctx.config.pgdata)
    {
        // PGDATA is this dataset's root: with `snapdir=visible` it would list `.zfs`, and
        // pgBackRest and initdb refuse to write into a directory that lists anything.
        let enforced = extra.entry(decl.name.clone()).or_insert_with(BTreeMap::new);
        match decl.properties.get("snapdir").map(String::as_str) {
            None => {
                enforced.insert("snapdir".to_owned(), "hidden".to_owned());
            }
            Some("hidden") => {}
            Some(other) => report.warnings.push(format!(
                "{} is declared with snapdir={other}: PGDATA at its root lists `.zfs`, and no \
                 restore or initdb can write there (pg-preseed refuses instead)",
                decl.name
            )),
        }
        if overlay_supported {
            enforced.insert("overlay".to_owned(), "off".to_owned());
        } else {
            report.warnings.push(format!(
                "this ZFS has no `overlay` property; {} could not be set to refuse mounting over a busy directory",
                decl.name
            ));
        }
    }

    let existing: Vec<&str> = declared
        .iter()
        .filter(|d| listed.iter().any(|l| l.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    let mut properties: Vec<String> = declared
        .iter()
        .flat_map(|d| d.properties.keys().cloned())
        .chain(extra.values().flat_map(|p| p.keys().cloned()))
        .collect();
    properties.sort();
    properties.dedup();
    let current = if existing.is_empty() || properties.is_empty() {
        zfs::Properties::new()
    } else {
        zfs.get(&properties, &existing)?
    };

    let plan = datasets::plan(declared, &listed, &current, &extra);
    report.findings.clone_from(&plan.findings);
    report.reasons.extend(
        plan.in_order
            .iter()
            .map(|n| format!("{n} exists as declared")),
    );
    if !plan.findings.is_empty() {
        report.decision = "refuse".to_owned();
        report
            .reasons
            .extend(plan.findings.iter().map(|f| f.detail.clone()));
        report.next = Some(crate::preflight::REFUSED_NEXT.to_owned());
        return Ok((report, Exit::Refused));
    }
    if plan.changes.is_empty() {
        return Ok((report, Exit::Ok));
    }
    match command {
        DatasetsCommand::Check => {
            report.decision = "changes".to_owned();
            report
                .reasons
                .extend(plan.changes.iter().map(|c| format!("would {c}")));
            report.next = Some(
                "run `pg-preseed datasets ensure` (the datasets unit does at boot)".to_owned(),
            );
        }
        DatasetsCommand::Ensure => {
            report.decision = "changed".to_owned();
            for change in &plan.changes {
                apply(&zfs, change)?;
                tracing::info!(change = %change, "dataset reconciled");
                report.reasons.push(format!("did {change}"));
            }
        }
    }
    report.result = serde_json::to_value(&plan.changes)?;
    Ok((report, Exit::Ok))
}

fn apply(zfs: &Zfs, change: &Change) -> anyhow::Result<()> {
    match change {
        Change::Create {
            name,
            mountpoint,
            properties,
        } => zfs
            .create(name, mountpoint, properties)
            .with_context(|| format!("failed to create dataset {name}")),
        Change::Set {
            name, property, to, ..
        } => {
            if property == "mountpoint" {
                bail!("refusing to change the mountpoint of {name} automatically");
            }
            zfs.set(name, property, to)
                .with_context(|| format!("failed to set {property}={to} on {name}"))
        }
    }
}
