//! What the receipt and the claim hold (the decision reads both), how they are built, and what
//! `verify` records when it runs again. Pure: reading and writing them is [`crate::files`].
//!
//! The receipt is the file at the config's `marker` path: proof that this host's PGDATA held a
//! verified cluster, with its system identifier (DESIGN.md's "marker"). The claim beside it is
//! written by `run` before pgBackRest touches PGDATA.

use std::fmt::{self, Write as _};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::wal::Lsn;

/// The version these files carry: `tool_version` in receipts and claims.
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the receipt format. Readers accept this version and older.
pub const FORMAT: u32 = 1;

/// How the cluster in PGDATA came to be: the receipt's `action` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Found initialized in PGDATA without a receipt (or with another cluster's).
    Adopted,
    /// Restored by pg-preseed from a repository.
    Restored,
    /// Created by initdb after pg-preseed decided a fresh start.
    Fresh,
}

/// Where a restored cluster came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub repo: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_name: Option<String>,
    pub stanza: String,
    #[serde(default)]
    pub backup_label: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub backup_stop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The repositories recovery consults (`pg-preseed archive-get --repos`, in this order):
    /// those that answered when the restore was decided and hold the stanza. Empty in claims
    /// written before this was recorded: then every configured repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_repos: Vec<u32>,
    /// The configured repositories recovery does not consult, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// A configured repository left out of recovery: it did not answer when the restore was decided,
/// or held nothing of the stanza.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub repo: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_name: Option<String>,
    /// "unreachable when the restore was decided", …
    pub reason: String,
}

impl fmt::Display for LeftOut {
    /// `repo1 (nfs): unreachable when the restore was decided`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "repo{}", self.repo)?;
        if let Some(name) = &self.repo_name {
            write!(f, " ({name})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The receipt: proof that this host's PGDATA held (and holds) a verified cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub format: u32,
    pub tool_version: String,
    pub host: String,
    pub pgdata: Utf8PathBuf,
    pub postgres_major: u32,
    /// A string: the u64 does not survive JSON consumers that use doubles (jq).
    #[serde(with = "sysid")]
    pub system_identifier: u64,
    /// How the cluster came to be.
    pub action: Origin,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub restored_at: Option<String>,
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Seconds pgBackRest took to restore (restores only).
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub restored_bytes: Option<u64>,
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// How recovery ended (restores verified since recovery is checked): where replay stopped,
    /// and the archive end or target it reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryEnd>,
    /// How long each phase took, from the decision to the receipt (restores and fresh starts
    /// verified since this was recorded).
    #[serde(default, skip_serializing_if = "Phases::is_empty")]
    pub phases: Phases,
    /// RFC 3339: when the last transaction replayed during recovery committed
    /// (`pg_last_xact_replay_timestamp()`), when PostgreSQL told it: the restored data ends there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_until: Option<String>,
    /// The post-restore hook's run, when one was configured and succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_restore: Option<PostRestoreRun>,
}

/// How long each phase of a restore (or a fresh start) took, measured where it happened: `run`
/// (the decision, pgBackRest), `verify` (recovery, the checks, the post-restore hook). The claim
/// collects them, the receipt keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// RFC 3339: when `run` decided (the claim's `started_at`): where the story begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// Gathering the facts and asking the repositories (`run`, before it acted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_check_seconds: Option<f64>,
    /// pgBackRest's restore (the last attempt's, for a resumed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    /// WAL replay: from the server's (last) start to its promotion (the new timeline's history
    /// file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    /// `verify`'s checks, the end of recovery's proof included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_seconds: Option<f64>,
    /// The post-restore hook's successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_restore_seconds: Option<f64>,
    /// RFC 3339: when `verify` wrote the receipt for the claim — where the story ends (a later
    /// `verify` updates `verified_at`, not this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl Phases {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Phases::default()
    }

    /// Each value of `self`, else `other`'s: what was measured first wins over what a later
    /// `verify` could not measure any more.
    #[must_use]
    pub fn or(self, other: &Phases) -> Phases {
        Phases {
            decided_at: self.decided_at.or_else(|| other.decided_at.clone()),
            repository_check_seconds: self
                .repository_check_seconds
                .or(other.repository_check_seconds),
            restore_seconds: self.restore_seconds.or(other.restore_seconds),
            recovery_seconds: self.recovery_seconds.or(other.recovery_seconds),
            verify_seconds: self.verify_seconds.or(other.verify_seconds),
            post_restore_seconds: self.post_restore_seconds.or(other.post_restore_seconds),
            completed_at: self.completed_at.or_else(|| other.completed_at.clone()),
        }
    }
}

/// The post-restore hook's runs for one claim: recorded (atomically, in the claim) when each
/// starts and the moment one exits 0, so that it is retried after a failure and never run again
/// once it succeeded. Never its output: that goes to the journal only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostRestoreRun {
    /// How many times it was started.
    pub attempts: u32,
    /// RFC 3339: when the last attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started_at: Option<String>,
    /// Why the last attempt failed, in a few words ("the script exited with status 3"); `None`
    /// once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// RFC 3339: when it exited 0. Set: it never runs again for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

impl PostRestoreRun {
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.succeeded_at.is_some()
    }
}

/// The newest archived WAL segment on a timeline, and the repository holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEnd {
    pub repo: u32,
    pub segment: String,
}

/// What the receipt records about how recovery ended (verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryEnd {
    /// The timeline replay ran on when it ended, and where.
    pub timeline: u32,
    pub end_lsn: Lsn,
    /// The segment holding the last byte replayed.
    pub end_segment: String,
    /// The timeline the server went on with.
    pub new_timeline: u32,
    /// PostgreSQL's reason, from the new timeline's history file.
    pub reason: String,
    /// The recovery target the restore asked for, if any; then `target_reached` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_reached: Option<bool>,
    /// Without a target: the segment after the last one replayed, which no repository asked
    /// holds (each was asked for it, as recovery would have asked next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_segment: Option<String>,
    /// Without a target: the newest segment the repositories were known to hold on `timeline`
    /// (from `pgbackrest info`; unknown once a newer timeline is archived), which replay reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_end: Option<ArchiveEnd>,
    /// What could not be proven and did not fail the check: a repository left out of recovery
    /// that could not be asked at verification either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RecoveryEnd {
    /// One line for `status` and logs.
    #[must_use]
    pub fn describe(&self) -> String {
        let position = format!("timeline {} at {}", self.timeline, self.end_lsn);
        match (&self.target, self.target_reached) {
            (Some(target), Some(true)) => format!(
                "recovery reached its target {} ({}; {position})",
                target.describe(),
                self.reason
            ),
            (Some(target), _) => format!(
                "recovery target {} NOT confirmed ({}; {position})",
                target.describe(),
                self.reason
            ),
            (None, _) => {
                let mut text = format!("replay reached the end of the archive ({position}");
                if let Some(end) = &self.archive_end {
                    let _ = write!(
                        text,
                        "; newest archived segment {} in repo{}",
                        end.segment, end.repo
                    );
                }
                if let Some(next) = &self.next_segment {
                    let _ = write!(text, "; {next} in no repository");
                }
                text.push(')');
                text
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimKind {
    Restore,
    Fresh,
}

/// One try of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub repo: u32,
    pub started_at: String,
    pub delta: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// The claim `run` writes before acting (`<marker>.pending`, see [`crate::files`]): the proof
/// that an unfinished restore is the engine's own, and what `verify` is to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub format: u32,
    pub kind: ClaimKind,
    pub pgdata: Utf8PathBuf,
    pub host: String,
    pub tool_version: String,
    pub started_at: String,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Filled in when pgBackRest reports success.
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub restored_bytes: Option<u64>,
    /// The system identifier pgBackRest recorded for the restored backup: `verify` checks the
    /// running server has it.
    #[serde(default)]
    pub backup_system_identifier: Option<String>,
    /// The phases measured so far (`run`'s; `verify` adds the rest when it runs the hook).
    #[serde(default, skip_serializing_if = "Phases::is_empty")]
    pub phases: Phases,
    /// See [`Receipt::replayed_until`]: recorded by the first `verify` that read it (a restart
    /// of PostgreSQL forgets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_until: Option<String>,
    /// The post-restore hook's attempts and, once it exited 0, its success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_restore: Option<PostRestoreRun>,
    /// What the repositories' archives held when the restore was decided, and the archive_command
    /// that holds the restored server's archiving until `verify` has made sure no other server
    /// still writes them ([`crate::primaries`]). `None`: `second_primary.mode = "off"` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_primary: Option<PrimaryGuard>,
}

/// A restore's guard against a second primary (in its claim): what each repository recovery
/// consults held of the restored cluster when the restore was decided, the archive_command hold,
/// and whether the operator allowed a second primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryGuard {
    /// RFC 3339, UTC: when the repositories were asked for the decision.
    pub decided_at: String,
    /// The restored cluster's system identifier (a string, as in the receipt): only its archive
    /// counts.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// One per repository recovery consults, in order.
    #[serde(default)]
    pub marks: Vec<ArchiveMark>,
    /// Installed in postgresql.auto.conf once pgBackRest has restored; `None` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<ArchiveHold>,
    /// RFC 3339: when the operator allowed a second primary (`run --allow-second-primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_at: Option<String>,
}

/// What one repository's archive held of the restored cluster when the restore was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveMark {
    pub repo: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_name: Option<String>,
    /// Whether its archive was read (a repository without backups is not): otherwise the newest
    /// of the others stands for it.
    pub known: bool,
    /// The newest WAL segment archived (`pgbackrest info`'s archive max: on the newest timeline
    /// holding any), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_segment: Option<String>,
    /// The newest backup's label and stop time (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup_stop: Option<i64>,
}

/// The archive_command pg-preseed put into postgresql.auto.conf after the restore
/// (`pg-preseed archive-hold`, which fails, so PostgreSQL keeps the WAL), and what
/// postgresql.auto.conf set before (restored with the backup), which releasing it puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHold {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub installed_at: String,
}

impl Receipt {
    /// A receipt for the cluster found initialized in PGDATA (ADOPT): nothing is known of how it
    /// came to be, and it has not been verified.
    #[must_use]
    pub fn adopted(
        pgdata: &Utf8Path,
        postgres_major: u32,
        system_identifier: u64,
        host: &str,
    ) -> Receipt {
        Receipt {
            format: FORMAT,
            tool_version: TOOL_VERSION.to_owned(),
            host: host.to_owned(),
            pgdata: pgdata.to_owned(),
            postgres_major,
            system_identifier,
            action: Origin::Adopted,
            source: None,
            restored_at: None,
            verified_at: None,
            duration_seconds: None,
            restored_bytes: None,
            checks: Vec::new(),
            recovery: None,
            phases: Phases::default(),
            replayed_until: None,
            post_restore: None,
        }
    }

    /// A receipt for the cluster that passed `verify`'s `checks` at `now`, recording `history`
    /// (see [`history_on_verify`]).
    #[must_use]
    pub fn verified(
        pgdata: &Utf8Path,
        postgres_major: u32,
        system_identifier: u64,
        checks: Vec<CheckResult>,
        history: History,
        host: &str,
        now: &str,
    ) -> Receipt {
        Receipt {
            action: history.action,
            source: history.source,
            restored_at: history.restored_at,
            duration_seconds: history.duration_seconds,
            restored_bytes: history.restored_bytes,
            recovery: history.recovery,
            phases: history.phases,
            replayed_until: history.replayed_until,
            post_restore: history.post_restore,
            verified_at: Some(now.to_owned()),
            checks,
            ..Receipt::adopted(pgdata, postgres_major, system_identifier, host)
        }
    }
}

/// How the cluster came to be, as a receipt records it.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub action: Origin,
    pub source: Option<Source>,
    pub restored_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub restored_bytes: Option<u64>,
    /// How recovery ended: what `verify` proved now, else what it proved before.
    pub recovery: Option<RecoveryEnd>,
    pub phases: Phases,
    pub replayed_until: Option<String>,
    pub post_restore: Option<PostRestoreRun>,
}

impl History {
    /// Nothing known: the cluster is recorded as adopted.
    #[must_use]
    pub fn adopted() -> History {
        History {
            action: Origin::Adopted,
            source: None,
            restored_at: None,
            duration_seconds: None,
            restored_bytes: None,
            recovery: None,
            phases: Phases::default(),
            replayed_until: None,
            post_restore: None,
        }
    }
}

/// What `verify` records about how the server's cluster (`system_identifier`) came to be, and a
/// warning when it replaces what the previous receipt said:
///
/// - the claim's account, when there is one (a restore or a fresh start awaits its receipt);
/// - else the previous receipt's, when it names this cluster (verify runs again: the receipt
///   keeps how the cluster came to be);
/// - else adopted: with a warning when the previous receipt named another cluster or could not
///   be read.
#[must_use]
pub fn history_on_verify(
    claim: Option<&Claim>,
    previous: &ReceiptState,
    system_identifier: u64,
) -> (History, Option<String>) {
    match (claim, previous) {
        (Some(claim), _) => (
            History {
                action: match claim.kind {
                    ClaimKind::Restore => Origin::Restored,
                    ClaimKind::Fresh => Origin::Fresh,
                },
                source: claim.source.clone(),
                restored_at: claim.finished_at.clone().or(Some(claim.started_at.clone())),
                duration_seconds: claim.duration_seconds,
                restored_bytes: claim.restored_bytes,
                recovery: None,
                phases: Phases {
                    decided_at: Some(claim.started_at.clone()),
                    restore_seconds: claim.duration_seconds,
                    ..Phases::default()
                }
                .or(&claim.phases),
                replayed_until: claim.replayed_until.clone(),
                post_restore: claim
                    .post_restore
                    .clone()
                    .filter(PostRestoreRun::succeeded),
            },
            None,
        ),
        (None, ReceiptState::Valid { receipt: old }) if old.system_identifier == system_identifier => (
            History {
                action: old.action,
                source: old.source.clone(),
                restored_at: old.restored_at.clone(),
                duration_seconds: old.duration_seconds,
                restored_bytes: old.restored_bytes,
                recovery: old.recovery.clone(),
                phases: old.phases.clone(),
                replayed_until: old.replayed_until.clone(),
                post_restore: old.post_restore.clone(),
            },
            None,
        ),
        (None, ReceiptState::Valid { receipt: old }) => (
            History::adopted(),
            Some(format!(
                "the receipt named system identifier {}, the server runs {system_identifier}: recording it as adopted",
                old.system_identifier
            )),
        ),
        (None, ReceiptState::Unreadable { error }) => (
            History::adopted(),
            Some(format!("replacing an unreadable receipt: {error}")),
        ),
        (None, ReceiptState::Absent) => (History::adopted(), None),
    }
}

impl Claim {
    /// A new claim for `pgdata`, started `now`.
    #[must_use]
    pub fn new(kind: ClaimKind, pgdata: &Utf8Path, host: &str, now: &str) -> Claim {
        Claim {
            format: FORMAT,
            kind,
            pgdata: pgdata.to_owned(),
            host: host.to_owned(),
            tool_version: TOOL_VERSION.to_owned(),
            started_at: now.to_owned(),
            attempts: Vec::new(),
            source: None,
            finished_at: None,
            duration_seconds: None,
            restored_bytes: None,
            backup_system_identifier: None,
            phases: Phases::default(),
            replayed_until: None,
            post_restore: None,
            second_primary: None,
        }
    }
}

/// What is at the marker path: nothing, a receipt, or something that is not one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ReceiptState {
    Absent,
    Valid { receipt: Box<Receipt> },
    Unreadable { error: String },
}

impl ReceiptState {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            ReceiptState::Absent => "absent",
            ReceiptState::Valid { .. } => "valid",
            ReceiptState::Unreadable { .. } => "unreadable",
        }
    }

    #[must_use]
    pub fn is_present(&self) -> bool {
        !matches!(self, ReceiptState::Absent)
    }
}

/// Parses a receipt; pure.
///
/// # Errors
/// A sentence saying why it is not a receipt this tool can use.
pub fn parse_receipt(bytes: &[u8]) -> Result<Receipt, String> {
    let receipt: Receipt =
        serde_json::from_slice(bytes).map_err(|e| format!("not a pg-preseed receipt: {e}"))?;
    if receipt.format == 0 || receipt.format > FORMAT {
        return Err(format!(
            "receipt format {} is not one this version ({}) reads",
            receipt.format, FORMAT
        ));
    }
    Ok(receipt)
}

mod sysid {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` signature
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    /// Accepts the string form and, for hand-written receipts, a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Text(String),
            Number(u64),
        }
        match Any::deserialize(deserializer)? {
            Any::Number(n) => Ok(n),
            Any::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            format: FORMAT,
            tool_version: "0.1.0".to_owned(),
            host: "db1".to_owned(),
            pgdata: "/var/lib/postgresql/16".into(),
            postgres_major: 16,
            system_identifier: 7_712_773_868_972_210_231,
            action: Origin::Restored,
            source: Some(Source {
                repo: 2,
                repo_name: Some("s3".to_owned()),
                stanza: "main".to_owned(),
                backup_label: Some("20261127-090147F".to_owned()),
                backup_stop: Some("2026-11-27T09:01:52Z".to_owned()),
                target: None,
                recovery_repos: vec![2],
                left_out: vec![LeftOut {
                    repo: 1,
                    repo_name: Some("nfs".to_owned()),
                    reason: "unreachable when the restore was decided".to_owned(),
                }],
            }),
            restored_at: Some("2026-11-27T10:00:00Z".to_owned()),
            verified_at: Some("2026-11-27T10:01:00Z".to_owned()),
            duration_seconds: Some(12.5),
            restored_bytes: Some(1024),
            checks: vec![],
            recovery: None,
            phases: Phases::default(),
            replayed_until: None,
            post_restore: None,
        }
    }

    #[test]
    fn system_identifier_is_a_string_in_json_and_round_trips() {
        let json = serde_json::to_value(receipt()).unwrap();
        assert_eq!(json["system_identifier"], "7712773868972210231");
        assert_eq!(json["action"], "restored");
        let back = parse_receipt(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(back, receipt());
    }

    #[test]
    fn future_formats_and_garbage_are_unreadable() {
        let mut json = serde_json::to_value(receipt()).unwrap();
        json["format"] = 99.into();
        assert!(parse_receipt(&serde_json::to_vec(&json).unwrap())
            .unwrap_err()
            .contains("format 99"));
        assert!(parse_receipt(b"").is_err());
        assert!(parse_receipt(b"touch").is_err());
    }

    fn claim(kind: ClaimKind) -> Claim {
        let mut claim = Claim::new(
            kind,
            Utf8Path::new("/var/lib/postgresql/16"),
            "db1",
            "2026-11-27T09:59:00Z",
        );
        claim.source = receipt().source;
        claim.finished_at = Some("2026-11-27T10:00:00Z".to_owned());
        claim.duration_seconds = Some(12.5);
        claim.restored_bytes = Some(1024);
        claim
    }

    #[test]
    fn verify_records_what_the_claim_says() {
        for (kind, origin) in [
            (ClaimKind::Restore, Origin::Restored),
            (ClaimKind::Fresh, Origin::Fresh),
        ] {
            // Whatever the previous receipt said: the claim is newer.
            for previous in [
                ReceiptState::Absent,
                ReceiptState::Valid {
                    receipt: Box::new(receipt()),
                },
            ] {
                let (history, warning) = history_on_verify(Some(&claim(kind)), &previous, 42);
                assert_eq!(history.action, origin);
                assert_eq!(history.source, receipt().source);
                assert_eq!(history.restored_at.as_deref(), Some("2026-11-27T10:00:00Z"));
                assert_eq!(history.duration_seconds, Some(12.5));
                assert_eq!(history.restored_bytes, Some(1024));
                assert_eq!(warning, None);
            }
        }
        // An unfinished claim records when it started.
        let mut unfinished = claim(ClaimKind::Fresh);
        unfinished.finished_at = None;
        let (history, _) = history_on_verify(Some(&unfinished), &ReceiptState::Absent, 42);
        assert_eq!(history.restored_at.as_deref(), Some("2026-11-27T09:59:00Z"));
    }

    /// Issue 13: what the claim collected of the story goes into the receipt; a hook that did
    /// not succeed is not recorded there (its attempts stay with the claim).
    #[test]
    fn the_claims_phases_and_hook_go_into_the_receipt() {
        let mut claim = claim(ClaimKind::Restore);
        claim.phases.repository_check_seconds = Some(0.5);
        claim.phases.recovery_seconds = Some(3.0);
        claim.replayed_until = Some("2026-11-27T09:58:00Z".to_owned());
        claim.post_restore = Some(PostRestoreRun {
            attempts: 1,
            last_started_at: Some("2026-11-27T10:00:30Z".to_owned()),
            last_error: Some("the script exited with status 1".to_owned()),
            succeeded_at: None,
            duration_seconds: None,
        });
        let (history, _) = history_on_verify(Some(&claim), &ReceiptState::Absent, 42);
        assert_eq!(
            history.phases,
            Phases {
                decided_at: Some("2026-11-27T09:59:00Z".to_owned()),
                repository_check_seconds: Some(0.5),
                restore_seconds: Some(12.5),
                recovery_seconds: Some(3.0),
                verify_seconds: None,
                post_restore_seconds: None,
                completed_at: None,
            }
        );
        assert_eq!(
            history.replayed_until.as_deref(),
            Some("2026-11-27T09:58:00Z")
        );
        assert_eq!(history.post_restore, None, "a hook that did not succeed");
        let run = claim.post_restore.as_mut().unwrap();
        run.succeeded_at = Some("2026-11-27T10:01:00Z".to_owned());
        run.last_error = None;
        let (history, _) = history_on_verify(Some(&claim), &ReceiptState::Absent, 42);
        assert!(history.post_restore.is_some_and(|run| run.succeeded()));
        // Read back as written; a claim from before these fields reads as one without them.
        let json = serde_json::to_value(&claim).unwrap();
        assert_eq!(json["post_restore"]["attempts"], 1);
        let back: Claim = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, claim);
        let mut old = json;
        for key in ["phases", "replayed_until", "post_restore"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let back: Claim = serde_json::from_value(old).unwrap();
        assert!(back.phases.is_empty() && back.post_restore.is_none());
    }

    #[test]
    fn verify_again_keeps_how_the_cluster_came_to_be() {
        let previous = ReceiptState::Valid {
            receipt: Box::new(receipt()),
        };
        let (history, warning) = history_on_verify(None, &previous, receipt().system_identifier);
        assert_eq!(history.action, Origin::Restored);
        assert_eq!(history.source, receipt().source);
        assert_eq!(history.restored_at, receipt().restored_at);
        assert_eq!(history.duration_seconds, receipt().duration_seconds);
        assert_eq!(history.restored_bytes, receipt().restored_bytes);
        assert_eq!(history.recovery, receipt().recovery);
        assert_eq!(warning, None);
    }

    #[test]
    fn left_out_repositories_are_recorded_and_read_back() {
        let json = serde_json::to_value(receipt()).unwrap();
        assert_eq!(json["source"]["recovery_repos"], serde_json::json!([2]));
        assert_eq!(json["source"]["left_out"][0]["repo"], 1);
        assert_eq!(
            json["source"]["left_out"][0]["reason"],
            "unreachable when the restore was decided"
        );
        assert_eq!(
            receipt().source.unwrap().left_out[0].to_string(),
            "repo1 (nfs): unreachable when the restore was decided"
        );
        // A receipt written before recovery was checked reads as one without these.
        let mut old = json.clone();
        old["source"]
            .as_object_mut()
            .unwrap()
            .remove("recovery_repos");
        old["source"].as_object_mut().unwrap().remove("left_out");
        let back = parse_receipt(&serde_json::to_vec(&old).unwrap()).unwrap();
        let source = back.source.unwrap();
        assert!(source.recovery_repos.is_empty() && source.left_out.is_empty());
        assert_eq!(back.recovery, None);
    }

    #[test]
    fn verify_without_an_account_records_adopted() {
        let (history, warning) = history_on_verify(None, &ReceiptState::Absent, 42);
        assert_eq!(history, History::adopted());
        assert_eq!(warning, None);
        // Another cluster's receipt: replaced, and said so.
        let previous = ReceiptState::Valid {
            receipt: Box::new(receipt()),
        };
        let (history, warning) = history_on_verify(None, &previous, 42);
        assert_eq!(history, History::adopted());
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("7712773868972210231") && warning.contains("runs 42"),
            "{warning}"
        );
        let unreadable = ReceiptState::Unreadable {
            error: "not a pg-preseed receipt".to_owned(),
        };
        let (history, warning) = history_on_verify(None, &unreadable, 42);
        assert_eq!(history, History::adopted());
        assert!(warning
            .expect("a warning")
            .contains("unreadable receipt: not a pg-preseed receipt"));
    }

    #[test]
    fn verified_receipt_carries_the_history_and_the_checks() {
        let check = CheckResult {
            name: "rows".to_owned(),
            ok: true,
            detail: None,
        };
        let (history, _) =
            history_on_verify(Some(&claim(ClaimKind::Restore)), &ReceiptState::Absent, 42);
        let receipt = Receipt::verified(
            Utf8Path::new("/pg"),
            16,
            42,
            vec![check.clone()],
            history,
            "db2",
            "2026-11-27T11:00:00Z",
        );
        assert_eq!(receipt.action, Origin::Restored);
        assert_eq!(receipt.verified_at.as_deref(), Some("2026-11-27T11:00:00Z"));
        assert_eq!(receipt.checks, [check]);
        assert_eq!(
            (
                receipt.host.as_str(),
                receipt.system_identifier,
                receipt.format
            ),
            ("db2", 42, FORMAT)
        );
        let adopted = Receipt::adopted(Utf8Path::new("/pg"), 15, 42, "db2");
        assert_eq!(
            (adopted.action, adopted.postgres_major, adopted.verified_at),
            (Origin::Adopted, 15, None)
        );
    }
}
