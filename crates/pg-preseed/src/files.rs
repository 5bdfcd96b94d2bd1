//! The files beside the receipt, and reading and writing them. Their path is `marker` in the
//! config (DESIGN.md's name for it); the others take suffixes:
//!
//! - `<marker>`: the receipt, written only for a verified cluster (DESIGN.md invariant 5).
//! - `<marker>.pending`: the claim `run` writes before it lets pgBackRest touch PGDATA, proving
//!   later that an unfinished restore there is the engine's own (invariant 7), and telling
//!   `verify` what to record once PostgreSQL is up.
//! - `<marker>.last-run`: the outcome of the last run of each command, for `status` and metrics.
//! - `<marker>.lock`: the lock file ([`crate::lock`]).
//!
//! All live outside PGDATA (config validation and preflight enforce it), are written with
//! [`crate::fsutil::atomic_write`] and are never read through a symlink. What they hold is typed
//! in [`crate::receipt`] and [`crate::outcome`].

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, Owner};
use crate::outcome::LastRuns;
use crate::receipt::{parse_receipt, Claim, Receipt, ReceiptState};

/// Receipts are small; anything bigger at the marker path is not ours.
const MAX_BYTES: u64 = 256 * 1024;

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

    /// Reads the receipt and classifies whatever is there.
    #[must_use]
    pub fn receipt_state(&self) -> ReceiptState {
        match fsutil::read_nofollow(&self.receipt, MAX_BYTES) {
            Ok(None) => ReceiptState::Absent,
            Ok(Some(bytes)) => match parse_receipt(&bytes) {
                Ok(receipt) => ReceiptState::Valid {
                    receipt: Box::new(receipt),
                },
                Err(error) => ReceiptState::Unreadable { error },
            },
            Err(error) => ReceiptState::Unreadable {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::Origin;

    fn receipt() -> Receipt {
        Receipt::adopted(
            Utf8Path::new("/var/lib/postgresql/16"),
            16,
            7_712_773_868_972_210_231,
            "db1",
        )
    }

    #[test]
    fn receipt_states_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Utf8PathBuf::from_path_buf(dir.path().join("receipt.json")).unwrap();
        let files = Files::new(&marker);
        assert_eq!(files.receipt_state(), ReceiptState::Absent);
        files.write_receipt(&receipt(), None).unwrap();
        assert!(
            matches!(files.receipt_state(), ReceiptState::Valid { receipt } if receipt.action == Origin::Adopted)
        );
        // The incident's marker: an empty file touched by a shell script.
        std::fs::write(&marker, b"").unwrap();
        assert!(matches!(
            files.receipt_state(),
            ReceiptState::Unreadable { .. }
        ));
        std::fs::remove_file(&marker).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &marker).unwrap();
        let ReceiptState::Unreadable { error } = files.receipt_state() else {
            panic!("a symlinked receipt must not be read");
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
}
