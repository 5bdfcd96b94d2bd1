//! Prometheus textfile-collector metrics, rendered from the last run of each command and the
//! receipt (its phases and where its data ends, through [`crate::story`]). Rendering is pure;
//! the file is written atomically by the caller.

use std::fmt::Write as _;

use crate::outcome::LastRuns;
use crate::receipt::ReceiptState;

/// Renders the metrics text.
#[must_use]
pub fn render(last_runs: &LastRuns, marker: &ReceiptState, now: i64) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_command = |value: &dyn Fn(&crate::outcome::LastRun) -> Option<String>| {
        last_runs
            .iter()
            .filter_map(|(command, run)| {
                value(run).map(|v| (format!("{{command=\"{}\"}}", escape(command)), v))
            })
            .collect::<Vec<_>>()
    };

    family(
        "pg_preseed_last_run_timestamp_seconds",
        "gauge",
        "When each pg-preseed command last ran (unix seconds).",
        per_command(&|run| {
            humantime::parse_rfc3339(&run.at).ok().map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string()
            })
        }),
    );
    family(
        "pg_preseed_last_decision",
        "gauge",
        "The decision of each command's last run (1 for the decision taken).",
        last_runs
            .iter()
            .map(|(command, run)| {
                (
                    format!(
                        "{{command=\"{}\",decision=\"{}\"}}",
                        escape(command),
                        escape(&run.decision)
                    ),
                    "1".to_owned(),
                )
            })
            .collect(),
    );
    family(
        "pg_preseed_last_outcome",
        "gauge",
        "The outcome of each command's last run: ok, refused or failed (1 for the outcome).",
        last_runs
            .iter()
            .map(|(command, run)| {
                (
                    format!(
                        "{{command=\"{}\",outcome=\"{}\"}}",
                        escape(command),
                        escape(&run.outcome)
                    ),
                    "1".to_owned(),
                )
            })
            .collect(),
    );
    family(
        "pg_preseed_last_exit_code",
        "gauge",
        "Exit code of each command's last run (0 ok, 3 refused, 4 failed).",
        per_command(&|run| Some(run.exit_code.to_string())),
    );
    family(
        "pg_preseed_duration_seconds",
        "gauge",
        "How long each command's last run took.",
        per_command(&|run| Some(format!("{:.3}", run.duration_seconds))),
    );
    family(
        "pg_preseed_findings",
        "gauge",
        "Layering, mount, marker and ownership findings in each command's last run.",
        per_command(&|run| Some(run.findings.to_string())),
    );
    family(
        "pg_preseed_restored_bytes",
        "gauge",
        "Bytes restored by the last restore.",
        per_command(&|run| run.restored_bytes.map(|b| b.to_string())),
    );
    family(
        "pg_preseed_backup_age_seconds",
        "gauge",
        "Age of the backup the last restore used, when it started.",
        per_command(&|run| run.backup_age_seconds.map(|a| a.to_string())),
    );
    let receipt_samples = match marker {
        ReceiptState::Valid { receipt } => {
            let verified = receipt
                .verified_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            vec![
                ("present", "1".to_owned()),
                (
                    "verified_timestamp_seconds",
                    verified.map_or_else(|| "0".to_owned(), |v| v.to_string()),
                ),
            ]
        }
        ReceiptState::Absent => vec![("present", "0".to_owned())],
        ReceiptState::Unreadable { .. } => vec![("present", "-1".to_owned())],
    };
    for (suffix, value) in receipt_samples {
        family(
            &format!("pg_preseed_receipt_{suffix}"),
            "gauge",
            if suffix == "present" {
                "1 when a valid receipt exists, 0 when none, -1 when unreadable."
            } else {
                "When the receipt was last verified (unix seconds, 0 if never)."
            },
            vec![(String::new(), value)],
        );
    }
    if let Some(recovery) = match marker {
        ReceiptState::Valid { receipt } => receipt.recovery.as_ref(),
        _ => None,
    } {
        match &recovery.target {
            Some(target) => family(
                "pg_preseed_receipt_recovery_target_reached",
                "gauge",
                "1 when the restored cluster's recovery stopped at its recovery target.",
                vec![(
                    format!(
                        "{{type=\"{}\",target=\"{}\"}}",
                        escape(target.kind.as_str()),
                        escape(target.value.as_deref().unwrap_or_default())
                    ),
                    u8::from(recovery.target_reached == Some(true)).to_string(),
                )],
            ),
            None => family(
                "pg_preseed_receipt_recovery_reached_archive_end",
                "gauge",
                "1 when the restored cluster's replay reached the newest archived WAL.",
                vec![(String::new(), "1".to_owned())],
            ),
        }
        family(
            "pg_preseed_receipt_recovery_warnings",
            "gauge",
            "Repositories left out of recovery that verify could not ask either.",
            vec![(String::new(), recovery.warnings.len().to_string())],
        );
    }
    if let ReceiptState::Valid { receipt } = marker {
        let phases = &receipt.phases;
        family(
            "pg_preseed_receipt_phase_seconds",
            "gauge",
            "How long each phase of the restore (or fresh start) the receipt records took: repository_check, restore, recovery, verify, post_restore.",
            [
                ("repository_check", phases.repository_check_seconds),
                ("restore", phases.restore_seconds),
                ("recovery", phases.recovery_seconds),
                ("verify", phases.verify_seconds),
                ("post_restore", phases.post_restore_seconds),
            ]
            .into_iter()
            .filter_map(|(phase, seconds)| {
                seconds.map(|s| (format!("{{phase=\"{phase}\"}}"), format!("{s:.3}")))
            })
            .collect(),
        );
        if let Some(end) = crate::story::data_end(receipt) {
            family(
                "pg_preseed_receipt_data_end_timestamp_seconds",
                "gauge",
                "Where the restored data ends (unix seconds): the last transaction replayed, else the time recovery target, else the end of the backup (label `source`).",
                vec![(
                    format!("{{source=\"{}\"}}", end.known_from.label()),
                    end.at.to_string(),
                )],
            );
            if let Some(gap) = end.before_restore {
                family(
                    "pg_preseed_receipt_max_data_loss_seconds",
                    "gauge",
                    "How long before the restore began the restored data ends: at most this much of writes is missing (by design, with a recovery target).",
                    vec![(String::new(), gap.to_string())],
                );
            }
        }
    }
    family(
        "pg_preseed_metrics_timestamp_seconds",
        "gauge",
        "When this file was written.",
        vec![(String::new(), now.to_string())],
    );
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::LastRun;

    #[test]
    fn renders_each_command_and_the_receipt() {
        let mut runs = LastRuns::new();
        runs.insert(
            "run".to_owned(),
            LastRun {
                command: "run".to_owned(),
                decision: "restore".to_owned(),
                outcome: "ok".to_owned(),
                exit_code: 0,
                at: "2026-11-27T09:00:00Z".to_owned(),
                duration_seconds: 12.5,
                reasons: vec![],
                findings: 0,
                error: None,
                restored_bytes: Some(1024),
                backup_age_seconds: Some(3600),
            },
        );
        let text = render(&runs, &ReceiptState::Absent, 1_800_000_000);
        assert!(text.contains("pg_preseed_last_decision{command=\"run\",decision=\"restore\"} 1\n"));
        assert!(
            text.contains("pg_preseed_last_run_timestamp_seconds{command=\"run\"} 1795770000\n")
        );
        assert!(text.contains("pg_preseed_restored_bytes{command=\"run\"} 1024\n"));
        assert!(text.contains("pg_preseed_duration_seconds{command=\"run\"} 12.500\n"));
        assert!(text.contains("pg_preseed_receipt_present 0\n"));
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{line}");
        }
    }

    #[test]
    fn recovery_target_from_the_receipt() {
        let history = "1\t0/50449B8\tat restore point \"before b\"\n";
        let end = crate::recovery::ReplayEnd::from_history(2, history).unwrap();
        let target = crate::config::Target {
            kind: crate::config::TargetType::Name,
            value: Some("before b".to_owned()),
        };
        let judged = crate::recovery::judge_target(&end, 16 << 20, &target);
        let mut receipt = crate::receipt::Receipt::adopted(
            camino::Utf8Path::new("/var/lib/postgresql/16"),
            16,
            1,
            "db",
        );
        receipt.action = crate::receipt::Origin::Restored;
        receipt.recovery = Some(judged.end);
        let marker = ReceiptState::Valid {
            receipt: Box::new(receipt),
        };
        let text = render(&LastRuns::new(), &marker, 1_800_000_000);
        assert!(
            text.contains(
                "pg_preseed_receipt_recovery_target_reached{type=\"name\",target=\"before b\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pg_preseed_receipt_recovery_warnings 0\n"),
            "{text}"
        );
    }

    /// Issue 13: the phases of the restore the receipt records, and where its data ends.
    #[test]
    fn phases_and_data_end_from_the_receipt() {
        let mut receipt = crate::receipt::Receipt::adopted(
            camino::Utf8Path::new("/var/lib/postgresql/16"),
            16,
            1,
            "db",
        );
        receipt.action = crate::receipt::Origin::Restored;
        receipt.source = Some(crate::receipt::Source {
            repo: 1,
            repo_name: None,
            stanza: "main".to_owned(),
            backup_label: Some("20261127-090147F".to_owned()),
            backup_stop: Some("2026-11-27T09:00:00Z".to_owned()),
            target: None,
            recovery_repos: vec![1],
            left_out: vec![],
        });
        receipt.phases = crate::receipt::Phases {
            decided_at: Some("2026-11-27T12:00:00Z".to_owned()),
            repository_check_seconds: Some(0.5),
            restore_seconds: Some(20.25),
            recovery_seconds: Some(3.0),
            verify_seconds: Some(0.75),
            post_restore_seconds: Some(1.5),
            completed_at: None,
        };
        receipt.replayed_until = Some("2026-11-27T11:59:00Z".to_owned());
        let marker = ReceiptState::Valid {
            receipt: Box::new(receipt),
        };
        let text = render(&LastRuns::new(), &marker, 1_800_000_000);
        for expected in [
            "pg_preseed_receipt_phase_seconds{phase=\"repository_check\"} 0.500\n",
            "pg_preseed_receipt_phase_seconds{phase=\"restore\"} 20.250\n",
            "pg_preseed_receipt_phase_seconds{phase=\"recovery\"} 3.000\n",
            "pg_preseed_receipt_phase_seconds{phase=\"verify\"} 0.750\n",
            "pg_preseed_receipt_phase_seconds{phase=\"post_restore\"} 1.500\n",
            "pg_preseed_receipt_data_end_timestamp_seconds{source=\"replay\"} 1795780740\n",
            "pg_preseed_receipt_max_data_loss_seconds 60\n",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
        // Only the measured phases: an adopted receipt has none.
        let adopted = ReceiptState::Valid {
            receipt: Box::new(crate::receipt::Receipt::adopted(
                camino::Utf8Path::new("/pg"),
                16,
                1,
                "db",
            )),
        };
        let text = render(&LastRuns::new(), &adopted, 1_800_000_000);
        assert!(
            !text.contains("phase_seconds") && !text.contains("data_loss"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
