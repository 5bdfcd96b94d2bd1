//! What happened, for a person: a restore (or a fresh start) told in a few lines from what the
//! receipt records — which repository and backup, how old it was, how much data, how long each
//! phase took, and how much may be lost at most — for `status` and the journal (`verify` logs
//! them when it writes the receipt). Also what a claim says about the post-restore hook while it
//! waits for `verify`. Pure.
//!
//! "Lost at most" is measured against when the restore began (the decision, `phases.decided_at`):
//! the old server was gone by then, so writes it had after the newest data restored are at most
//! that long. The newest data restored is, in order of what is known: the last transaction
//! replayed (`replayed_until`, PostgreSQL's `pg_last_xact_replay_timestamp()`), a time recovery
//! target, the end of the backup.

use std::fmt::Write as _;

use crate::clock;
use crate::config::TargetType;
use crate::receipt::{Claim, Origin, PostRestoreRun, Receipt};

/// Bytes in the "MB" pgBackRest prints (and pg-preseed with it).
const MB: f64 = 1024.0 * 1024.0;

/// Where the restored data ends: the instant (unix seconds), what tells it, and how long before
/// the restore began that was — an upper bound on the writes lost.
#[derive(Debug, Clone, PartialEq)]
pub struct DataEnd {
    pub at: i64,
    pub known_from: KnownFrom,
    /// Seconds from `at` to the start of the restore; `None` when that start is unknown.
    pub before_restore: Option<i64>,
}

/// What tells where the restored data ends, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownFrom {
    /// `pg_last_xact_replay_timestamp()`: the last transaction replayed.
    Replay,
    /// A time recovery target.
    Target,
    /// The backup's end (nothing better known: at least this much is there).
    Backup,
}

impl KnownFrom {
    /// For the metrics' `source` label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            KnownFrom::Replay => "replay",
            KnownFrom::Target => "target",
            KnownFrom::Backup => "backup",
        }
    }

    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            KnownFrom::Replay => "the last transaction replayed",
            KnownFrom::Target => "the recovery target",
            KnownFrom::Backup => "the end of the backup",
        }
    }
}

/// Where the restored data ends (see the module), for a restored receipt.
#[must_use]
pub fn data_end(receipt: &Receipt) -> Option<DataEnd> {
    if receipt.action != Origin::Restored {
        return None;
    }
    let source = receipt.source.as_ref();
    let target_time = source
        .and_then(|s| s.target.as_ref())
        .filter(|t| t.kind == TargetType::Time)
        .and_then(|t| t.value.as_deref())
        .and_then(|v| clock::parse_timestamptz(v).ok())
        .map(|micros| micros.div_euclid(1_000_000));
    let (at, known_from) = if let Some(at) = receipt.replayed_until.as_deref().and_then(unix) {
        (at, KnownFrom::Replay)
    } else if let Some(at) = target_time {
        (at, KnownFrom::Target)
    } else {
        let stop = source
            .and_then(|s| s.backup_stop.as_deref())
            .and_then(unix)?;
        (stop, KnownFrom::Backup)
    };
    let began = receipt.phases.decided_at.as_deref().and_then(unix);
    Some(DataEnd {
        at,
        known_from,
        before_restore: began.map(|began| (began - at).max(0)),
    })
}

/// The story of the cluster a receipt records, a few lines (none for an adopted cluster, or for
/// a receipt written before the story was recorded).
#[must_use]
pub fn receipt_lines(receipt: &Receipt) -> Vec<String> {
    let phases = &receipt.phases;
    if receipt.action == Origin::Adopted || phases.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let began = phases.decided_at.as_deref().and_then(unix);
    match (receipt.action, &receipt.source) {
        (Origin::Restored, Some(source)) => {
            let mut line = format!(
                "restored repo{}{} backup {}",
                source.repo,
                source
                    .repo_name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                source.backup_label.as_deref().unwrap_or("?")
            );
            if let Some(stop) = source.backup_stop.as_deref() {
                let _ = write!(line, ", which ended {stop}");
                if let (Some(stop), Some(began)) = (unix(stop), began) {
                    let _ = write!(
                        line,
                        " ({} old when the restore began)",
                        human_seconds((began - stop).max(0))
                    );
                }
            }
            lines.push(line);
        }
        (Origin::Restored, None) => lines.push("restored (source not recorded)".to_owned()),
        _ => lines.push(
            "fresh cluster: initdb ran because the repositories held no backup (on_no_backup = initdb)"
                .to_owned(),
        ),
    }
    let mut took = Vec::new();
    if let Some(bytes) = receipt.restored_bytes {
        #[allow(clippy::cast_precision_loss)] // sizes, for people
        let mb = bytes as f64 / MB;
        let mut size = format!("{mb:.1} MB restored");
        if let Some(seconds) = phases.restore_seconds.filter(|s| *s > 0.0) {
            let _ = write!(size, " at {:.1} MB/s", mb / seconds);
        }
        took.push(size);
    }
    let named = [
        ("repository check", phases.repository_check_seconds),
        ("restore", phases.restore_seconds),
        ("recovery", phases.recovery_seconds),
        ("verify", phases.verify_seconds),
        ("post-restore hook", phases.post_restore_seconds),
    ];
    let timings: Vec<String> = named
        .iter()
        .filter_map(|(name, seconds)| seconds.map(|s| format!("{name} {}", human_f64(s))))
        .collect();
    if !timings.is_empty() {
        took.push(timings.join(", "));
    }
    if let (Some(began), Some(completed)) = (began, phases.completed_at.as_deref().and_then(unix)) {
        took.push(format!(
            "{} from the decision to the receipt",
            human_seconds((completed - began).max(0))
        ));
    }
    if !took.is_empty() {
        lines.push(took.join("; "));
    }
    if let Some(end) = data_end(receipt) {
        let target = receipt
            .source
            .as_ref()
            .and_then(|s| s.target.as_ref())
            .filter(|t| t.kind != TargetType::Default);
        let mut line = format!(
            "data up to {} ({})",
            clock::unix_to_rfc3339(end.at),
            end.known_from.describe()
        );
        if let Some(target) = target {
            let _ = write!(
                line,
                "; recovery stopped at its target {}",
                target.describe()
            );
        }
        match (end.before_restore, target) {
            (Some(gap), Some(_)) => {
                let _ = write!(
                    line,
                    ": writes after it are not here by design ({} before the restore began)",
                    human_seconds(gap)
                );
            }
            (Some(gap), None) => {
                let _ = write!(
                    line,
                    ": at most {} of writes before the restore began are missing",
                    human_seconds(gap)
                );
            }
            (None, _) => {}
        }
        lines.push(line);
    }
    if let Some(run) = &receipt.post_restore {
        lines.push(hook_line(run));
    }
    lines
}

/// What a claim says about the post-restore hook, when anything: for `status` while the claim
/// waits for `verify`.
#[must_use]
pub fn claim_lines(claim: &Claim) -> Vec<String> {
    let Some(run) = &claim.post_restore else {
        return Vec::new();
    };
    if run.succeeded() {
        return vec![format!(
            "{}; `pg-preseed verify` writes the receipt without running it again",
            hook_line(run)
        )];
    }
    let tries = match run.attempts {
        1 => "once".to_owned(),
        n => format!("{n} times"),
    };
    let last = run.last_started_at.as_deref().unwrap_or("?");
    vec![match &run.last_error {
        Some(error) => format!(
            "post-restore hook failed (tried {tries}, last at {last}: {error}); the next start of PostgreSQL — or `pg-preseed verify` — runs it again; its output is in the journal"
        ),
        None => format!(
            "post-restore hook started at {last} (tried {tries}) and did not finish: interrupted; the next `pg-preseed verify` runs it again"
        ),
    }]
}

fn hook_line(run: &PostRestoreRun) -> String {
    format!(
        "post-restore hook succeeded at {}{}{}",
        run.succeeded_at.as_deref().unwrap_or("?"),
        run.duration_seconds
            .map(|s| format!(" in {}", human_f64(s)))
            .unwrap_or_default(),
        match run.attempts {
            0 | 1 => String::new(),
            n => format!(", on attempt {n}"),
        }
    )
}

/// RFC 3339 → unix seconds.
fn unix(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let seconds = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(seconds).ok()
}

/// A span for people: `0.4s`, `12.3s`, `42s`, `12m 05s`, `3h 12m`, `2d 4h`.
#[must_use]
pub fn human_f64(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1}s")
    } else {
        #[allow(clippy::cast_possible_truncation)] // spans, for people
        human_seconds(seconds.round() as i64)
    }
}

/// Whole seconds for people: `42s`, `12m 05s`, `3h 12m`, `2d 4h`.
#[must_use]
pub fn human_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;
    use crate::receipt::{Phases, Source};
    use camino::Utf8Path;

    fn restored() -> Receipt {
        let mut receipt = Receipt::adopted(Utf8Path::new("/var/lib/postgresql/16"), 16, 42, "db1");
        receipt.action = Origin::Restored;
        receipt.source = Some(Source {
            repo: 1,
            repo_name: Some("nas".to_owned()),
            stanza: "main".to_owned(),
            backup_label: Some("20261127-090147F".to_owned()),
            backup_stop: Some("2026-11-27T09:00:00Z".to_owned()),
            target: None,
            recovery_repos: vec![1],
            left_out: vec![],
        });
        receipt.restored_bytes = Some(100 * 1024 * 1024);
        // Verified again a week later, at a normal boot: the story still ends at the receipt.
        receipt.verified_at = Some("2026-12-04T08:00:00Z".to_owned());
        receipt.phases = Phases {
            decided_at: Some("2026-11-27T12:00:00Z".to_owned()),
            repository_check_seconds: Some(0.42),
            restore_seconds: Some(20.0),
            recovery_seconds: Some(3.0),
            verify_seconds: Some(0.8),
            post_restore_seconds: None,
            completed_at: Some("2026-11-27T12:01:00Z".to_owned()),
        };
        receipt
    }

    #[test]
    fn a_restore_in_a_few_lines() {
        let mut receipt = restored();
        receipt.replayed_until = Some("2026-11-27T11:58:30Z".to_owned());
        receipt.post_restore = Some(PostRestoreRun {
            attempts: 2,
            last_started_at: Some("2026-11-27T12:00:40Z".to_owned()),
            last_error: None,
            succeeded_at: Some("2026-11-27T12:00:55Z".to_owned()),
            duration_seconds: Some(1.25),
        });
        receipt.phases.post_restore_seconds = Some(1.25);
        assert_eq!(
            receipt_lines(&receipt),
            [
                "restored repo1 (nas) backup 20261127-090147F, which ended 2026-11-27T09:00:00Z (3h 00m old when the restore began)",
                "100.0 MB restored at 5.0 MB/s; repository check 0.4s, restore 20s, recovery 3.0s, verify 0.8s, post-restore hook 1.2s; 1m 00s from the decision to the receipt",
                "data up to 2026-11-27T11:58:30Z (the last transaction replayed): at most 1m 30s of writes before the restore began are missing",
                "post-restore hook succeeded at 2026-11-27T12:00:55Z in 1.2s, on attempt 2",
            ]
        );
    }

    #[test]
    fn without_replay_time_the_backup_bounds_the_loss_and_a_target_is_by_design() {
        let receipt = restored();
        let end = data_end(&receipt).unwrap();
        assert_eq!(
            (end.known_from, end.before_restore),
            (KnownFrom::Backup, Some(3 * 3600))
        );
        assert!(receipt_lines(&receipt)[2]
            .ends_with("at most 3h 00m of writes before the restore began are missing"));

        let mut receipt = restored();
        receipt.source.as_mut().unwrap().target = Some(Target {
            kind: TargetType::Time,
            value: Some("2026-11-27 10:00:00+00".to_owned()),
        });
        let end = data_end(&receipt).unwrap();
        assert_eq!(
            (end.known_from, end.before_restore),
            (KnownFrom::Target, Some(2 * 3600))
        );
        assert_eq!(
            receipt_lines(&receipt)[2],
            "data up to 2026-11-27T10:00:00Z (the recovery target); recovery stopped at its target time \"2026-11-27 10:00:00+00\": writes after it are not here by design (2h 00m before the restore began)"
        );
    }

    #[test]
    fn fresh_adopted_and_old_receipts() {
        let mut fresh = restored();
        fresh.action = Origin::Fresh;
        fresh.source = None;
        fresh.restored_bytes = None;
        fresh.phases.restore_seconds = None;
        fresh.phases.recovery_seconds = None;
        let lines = receipt_lines(&fresh);
        assert!(lines[0].starts_with("fresh cluster"), "{lines:?}");
        assert_eq!(
            lines[1],
            "repository check 0.4s, verify 0.8s; 1m 00s from the decision to the receipt"
        );
        assert_eq!(lines.len(), 2, "no data end for a fresh cluster: {lines:?}");

        let mut adopted = restored();
        adopted.action = Origin::Adopted;
        assert!(receipt_lines(&adopted).is_empty());
        let mut old = restored();
        old.phases = Phases::default();
        assert!(
            receipt_lines(&old).is_empty(),
            "written before the story was recorded"
        );
    }

    #[test]
    fn a_pending_hook() {
        let mut claim = Claim::new(
            crate::receipt::ClaimKind::Restore,
            Utf8Path::new("/pg"),
            "db1",
            "2026-11-27T12:00:00Z",
        );
        assert!(claim_lines(&claim).is_empty());
        claim.post_restore = Some(PostRestoreRun {
            attempts: 2,
            last_started_at: Some("2026-11-27T12:05:00Z".to_owned()),
            last_error: Some("the script exited with status 3".to_owned()),
            succeeded_at: None,
            duration_seconds: None,
        });
        let line = &claim_lines(&claim)[0];
        assert!(line.contains("failed (tried 2 times, last at 2026-11-27T12:05:00Z: the script exited with status 3)"), "{line}");
        assert!(line.contains("runs it again"), "{line}");
        let run = claim.post_restore.as_mut().unwrap();
        run.last_error = None;
        assert!(claim_lines(&claim)[0].contains("did not finish"));
        let run = claim.post_restore.as_mut().unwrap();
        run.succeeded_at = Some("2026-11-27T12:06:00Z".to_owned());
        run.duration_seconds = Some(0.5);
        assert!(claim_lines(&claim)[0].contains("succeeded at 2026-11-27T12:06:00Z in 0.5s, on attempt 2; `pg-preseed verify` writes the receipt without running it again"));
    }

    #[test]
    fn spans_for_people() {
        assert_eq!(human_f64(0.42), "0.4s");
        assert_eq!(human_f64(12.34), "12s");
        assert_eq!(human_seconds(59), "59s");
        assert_eq!(human_seconds(725), "12m 05s");
        assert_eq!(human_seconds(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(human_seconds(2 * 86400 + 4 * 3600), "2d 4h");
        assert_eq!(human_seconds(-5), "0s");
    }
}
