//! What commands print: one JSON object with `--json` (DESIGN.md: at least `decision`, `reasons`
//! and `findings`), otherwise a short text with the decision and its reasons first.

use std::fmt::Write as _;

use serde::Serialize;

use crate::decision::{Candidate, Decision, Facts, RepoFacts};
use crate::pgdata::PgdataState;
use crate::preflight::{self, Finding, Preflight};
use crate::receipt::{Claim, ReceiptState};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub decision: String,
    pub reasons: Vec<String>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    /// What changes nothing (see [`Preflight::notes`]): in `--json` only, never in the text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// For commands that act: `ok`, `refused` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<FactsView>,
    /// What was done (the receipt written, the restore's source), when something was.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub result: serde_json::Value,
    /// One line for humans about what was done.
    #[serde(skip)]
    pub summary: Option<String>,
}

/// The facts behind a decision, for `--json` consumers.
#[derive(Debug, Clone, Serialize)]
pub struct FactsView {
    pub pgdata: String,
    pub pgdata_state: PgdataState,
    #[serde(rename = "marker_path")]
    pub receipt_path: String,
    #[serde(rename = "marker")]
    pub receipt: ReceiptState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repos: Option<Vec<RepoFacts>>,
}

impl FactsView {
    #[must_use]
    pub fn new(facts: &Facts, pgdata: &str, receipt_path: &str) -> FactsView {
        FactsView {
            pgdata: pgdata.to_owned(),
            pgdata_state: facts.pgdata.clone(),
            receipt_path: receipt_path.to_owned(),
            receipt: facts.receipt.clone(),
            claim: facts.claim.clone(),
            system_identifier: facts.system_identifier.map(|id| id.to_string()),
            repos: facts.repos.clone(),
        }
    }
}

impl Report {
    #[must_use]
    pub fn new(command: &str, decision: &str) -> Report {
        Report {
            command: command.to_owned(),
            decision: decision.to_owned(),
            reasons: Vec::new(),
            findings: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            next: None,
            outcome: None,
            error: None,
            candidates: Vec::new(),
            facts: None,
            result: serde_json::Value::Null,
            summary: None,
        }
    }

    /// A report of a decision and the facts it came from.
    #[must_use]
    pub fn from_decision(
        command: &str,
        decision: &Decision,
        facts: &Facts,
        view: FactsView,
    ) -> Report {
        let mut report = Report::new(command, decision.action.name());
        report.reasons.clone_from(&decision.reasons);
        report.warnings.clone_from(&decision.warnings);
        report.findings.clone_from(&facts.preflight.findings);
        report.notes.clone_from(&facts.preflight.notes);
        report.next.clone_from(&decision.next);
        if let crate::decision::Action::Restore(candidates)
        | crate::decision::Action::Resume(candidates) = &decision.action
        {
            report.candidates.clone_from(candidates);
        }
        report.facts = Some(view);
        report
    }

    /// A preflight report: `clean` or `refuse`.
    #[must_use]
    pub fn from_preflight(command: &str, preflight: &Preflight) -> Report {
        let mut report = Report::new(
            command,
            if preflight.is_clean() {
                "clean"
            } else {
                "refuse"
            },
        );
        report.findings.clone_from(&preflight.findings);
        report.warnings.clone_from(&preflight.warnings);
        report.notes.clone_from(&preflight.notes);
        report.reasons = if preflight.findings.is_empty() {
            vec!["no layering, mount, marker or ownership problem found".to_owned()]
        } else {
            preflight
                .findings
                .iter()
                .map(|f| f.detail.clone())
                .collect()
        };
        if !preflight.is_clean() {
            report.next = Some(preflight::REFUSED_NEXT.to_owned());
        }
        report
    }

    /// Prints to stdout, as JSON or text.
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(self).unwrap_or_else(|e| format!(
                    "{{\"decision\": \"error\", \"error\": \"cannot serialise the report: {e}\"}}"
                ))
            );
        } else {
            print!("{}", self.text());
        }
    }

    /// The human form.
    #[must_use]
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "decision: {}", self.decision);
        for reason in &self.reasons {
            let _ = writeln!(out, "  - {reason}");
        }
        if let Some(summary) = &self.summary {
            let _ = writeln!(out, "{summary}");
        }
        if let Some(error) = &self.error {
            let _ = writeln!(out, "error: {error}");
        }
        for finding in &self.findings {
            let level = if finding.blocking {
                "finding"
            } else {
                "warning"
            };
            let kind = serde_json::to_value(finding.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "{level} [{kind}] {}", finding.path);
            let _ = writeln!(out, "  fix: {}", finding.fix);
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        if let Some(next) = &self.next {
            let _ = writeln!(out, "next: {next}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Kind;

    #[test]
    fn text_puts_decision_and_reasons_first() {
        let mut report = Report::new("plan", "refuse");
        report
            .reasons
            .push("2 filesystems are mounted at /pg".to_owned());
        report.findings.push(Finding {
            kind: Kind::StackedMount,
            path: "/pg".to_owned(),
            detail: "2 filesystems are mounted at /pg".to_owned(),
            fix: "zfs set mountpoint=none tank/a".to_owned(),
            blocking: true,
        });
        report.next = Some("fix it".to_owned());
        let text = report.text();
        assert!(text.starts_with("decision: refuse\n  - 2 filesystems"));
        assert!(text.contains("finding [stacked_mount] /pg\n  fix: zfs set"));
        assert!(text.ends_with("next: fix it\n"));
    }

    #[test]
    fn json_has_contract_fields() {
        let report = Report::new("preflight", "clean");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["decision"], "clean");
        assert!(json["reasons"].as_array().unwrap().is_empty());
        assert!(json["findings"].as_array().unwrap().is_empty());
    }

    /// A host with zfs installed but not running, and no ZFS mount involved: the failed
    /// `zfs list` is in `--json`, and the text says nothing about it.
    #[test]
    fn notes_are_in_json_only() {
        let preflight = Preflight {
            notes: vec!["`zfs list` failed (ignored: no ZFS mount is involved): connect: No such file or directory".to_owned()],
            ..Preflight::default()
        };
        let report = Report::from_preflight("preflight", &preflight);
        assert_eq!(report.decision, "clean");
        assert!(!report.text().contains("zfs"), "{}", report.text());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["notes"][0]
            .as_str()
            .unwrap()
            .contains("`zfs list` failed"));
        // Without notes the key is not there at all, as before.
        let json = serde_json::to_value(Report::new("plan", "skip")).unwrap();
        assert!(json.get("notes").is_none());
    }
}
