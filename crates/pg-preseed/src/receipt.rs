//! The receipt (the "marker") and the two small state files that live beside it.
//!
//! - `<marker>`: the receipt, written only for a verified cluster (DESIGN.md invariant 5).
//! - `<marker>.pending`: the claim `run` writes before it lets pgBackRest touch PGDATA, proving
//!   later that an unfinished restore there is the engine's own (invariant 7), and telling
//!   `verify` what to record once PostgreSQL is up.
//! - `<marker>.last-run`: the outcome of the last run of each command, for `status` and metrics.
//! - `<marker>.lock`: the lock file.
//!
//! All live outside PGDATA (config validation and preflight enforce it) and are written with
//! [`crate::fsutil::atomic_write`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::fsutil::{self, Owner};

/// Version of the receipt format. Readers accept this version and older.
pub const FORMAT: u32 = 1;
/// Receipts are small; anything bigger at the marker path is not ours.
const MAX_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Adopted,
    Restored,
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
    pub action: Action,
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

/// The claim `run` writes before acting (see the module docs).
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
}

/// What a command concluded the last time it ran, for `status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    pub command: String,
    pub decision: String,
    pub outcome: String,
    pub exit_code: i32,
    pub at: String,
    pub duration_seconds: f64,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub findings: usize,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub restored_bytes: Option<u64>,
    /// Age of the backup a restore used, in seconds, when it restored.
    #[serde(default)]
    pub backup_age_seconds: Option<i64>,
}

/// The last run of each command, by command name.
pub type LastRuns = std::collections::BTreeMap<String, LastRun>;

/// What is at the marker path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MarkerState {
    Absent,
    Valid { receipt: Box<Receipt> },
    Unreadable { error: String },
}

impl MarkerState {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            MarkerState::Absent => "absent",
            MarkerState::Valid { .. } => "valid",
            MarkerState::Unreadable { .. } => "unreadable",
        }
    }

    #[must_use]
    pub fn is_present(&self) -> bool {
        !matches!(self, MarkerState::Absent)
    }
}

/// The file names derived from the marker path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub receipt: Utf8PathBuf,
    pub claim: Utf8PathBuf,
    pub last_run: Utf8PathBuf,
    pub lock: Utf8PathBuf,
}

impl Files {
    #[must_use]
    pub fn new(marker: &Utf8Path) -> Files {
        let with = |suffix: &str| Utf8PathBuf::from(format!("{marker}.{suffix}"));
        Files {
            receipt: marker.to_owned(),
            claim: with("pending"),
            last_run: with("last-run"),
            lock: with("lock"),
        }
    }

    /// Reads the receipt; pure classification of whatever is there.
    #[must_use]
    pub fn marker_state(&self) -> MarkerState {
        match fsutil::read_nofollow(&self.receipt, MAX_BYTES) {
            Ok(None) => MarkerState::Absent,
            Ok(Some(bytes)) => match parse_receipt(&bytes) {
                Ok(receipt) => MarkerState::Valid {
                    receipt: Box::new(receipt),
                },
                Err(error) => MarkerState::Unreadable { error },
            },
            Err(error) => MarkerState::Unreadable {
                error: format!("{error:#}"),
            },
        }
    }

    /// Reads the claim. A claim that cannot be read is reported as an error: callers treat it as
    /// "no proof".
    ///
    /// # Errors
    /// When the claim exists but cannot be read or parsed.
    pub fn claim(&self) -> anyhow::Result<Option<Claim>> {
        read_json(&self.claim)
    }

    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn last_runs(&self) -> anyhow::Result<LastRuns> {
        Ok(read_json(&self.last_run)?.unwrap_or_default())
    }

    /// # Errors
    /// When the atomic write fails.
    pub fn write_receipt(&self, receipt: &Receipt, owner: Owner) -> anyhow::Result<()> {
        write_json(&self.receipt, receipt, owner)
    }

    /// # Errors
    /// When the atomic write fails.
    pub fn write_claim(&self, claim: &Claim, owner: Owner) -> anyhow::Result<()> {
        write_json(&self.claim, claim, owner)
    }

    /// # Errors
    /// When the atomic write fails.
    pub fn write_last_runs(&self, last: &LastRuns, owner: Owner) -> anyhow::Result<()> {
        write_json(&self.last_run, last, owner)
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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Utf8Path) -> anyhow::Result<Option<T>> {
    let Some(bytes) = fsutil::read_nofollow(path, MAX_BYTES)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("failed to parse {path}"))
}

fn write_json<T: Serialize>(path: &Utf8Path, value: &T, owner: Owner) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    fsutil::atomic_write(path, &bytes, 0o644, owner)
}

/// Now, as RFC 3339 UTC with seconds.
#[must_use]
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// pgBackRest's unix timestamps as RFC 3339.
#[must_use]
pub fn unix_to_rfc3339(seconds: i64) -> String {
    let time = u64::try_from(seconds).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s));
    rfc3339(time)
}

/// Seconds since the epoch, now.
#[must_use]
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The host name for receipts.
#[must_use]
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
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
            action: Action::Restored,
            source: Some(Source {
                repo: 2,
                repo_name: Some("s3".to_owned()),
                stanza: "main".to_owned(),
                backup_label: Some("20261127-090147F".to_owned()),
                backup_stop: Some("2026-11-27T09:01:52Z".to_owned()),
                target: None,
            }),
            restored_at: Some("2026-11-27T10:00:00Z".to_owned()),
            verified_at: Some("2026-11-27T10:01:00Z".to_owned()),
            duration_seconds: Some(12.5),
            restored_bytes: Some(1024),
            checks: vec![],
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

    #[test]
    fn marker_states_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Utf8PathBuf::from_path_buf(dir.path().join("receipt.json")).unwrap();
        let files = Files::new(&marker);
        assert_eq!(files.marker_state(), MarkerState::Absent);
        files.write_receipt(&receipt(), None).unwrap();
        assert!(matches!(files.marker_state(), MarkerState::Valid { .. }));
        // The incident's marker: an empty file touched by a shell script.
        std::fs::write(&marker, b"").unwrap();
        assert!(matches!(
            files.marker_state(),
            MarkerState::Unreadable { .. }
        ));
        std::fs::remove_file(&marker).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &marker).unwrap();
        let MarkerState::Unreadable { error } = files.marker_state() else {
            panic!("a symlinked marker must not be read");
        };
        assert!(error.contains("symlink"), "{error}");
    }

    #[test]
    fn derived_file_names() {
        let files = Files::new(Utf8Path::new("/var/lib/pp/16.json"));
        assert_eq!(files.claim, "/var/lib/pp/16.json.pending");
        assert_eq!(files.lock, "/var/lib/pp/16.json.lock");
        assert_eq!(files.last_run, "/var/lib/pp/16.json.last-run");
    }

    #[test]
    fn timestamps() {
        assert_eq!(unix_to_rfc3339(1_795_770_112), "2026-11-27T09:01:52Z");
        assert_eq!(unix_to_rfc3339(-5), "1970-01-01T00:00:00Z");
    }
}
