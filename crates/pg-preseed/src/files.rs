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
//!
//! They are written mode 0640, group the PostgreSQL user's (others have no business reading
//! them), and believed only when they are regular files with one name owned by root or the
//! PostgreSQL user: a receipt or claim someone else wrote could otherwise change what the
//! engine decides (issue 15.2). Preflight refuses a receipt directory others can write.

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, Owner};
use crate::outcome::LastRuns;
use crate::receipt::{parse_receipt, Claim, Receipt, ReceiptState};

/// Receipts are small; anything bigger at the marker path is not ours.
const MAX_BYTES: u64 = 256 * 1024;

/// The mode of the receipt, the claim and the last-run record.
pub const MODE: u32 = 0o640;

/// The file names derived from the marker path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub receipt: Utf8PathBuf,
    pub claim: Utf8PathBuf,
    pub last_run: Utf8PathBuf,
    pub lock: Utf8PathBuf,
    /// Besides root, who may own the files for them to be believed (the PostgreSQL user, and
    /// the user the engine runs as).
    trusted: Vec<u32>,
}

impl Files {
    /// The files beside `marker`, believed when owned by root or the engine's own user.
    #[must_use]
    pub fn new(marker: &Utf8Path) -> Files {
        let with = |suffix: &str| Utf8PathBuf::from(format!("{marker}.{suffix}"));
        Files {
            receipt: marker.to_owned(),
            claim: with("pending"),
            last_run: with("last-run"),
            lock: with("lock"),
            trusted: vec![nix::unistd::Uid::effective().as_raw()],
        }
    }

    /// Also believes files owned by `uid` (the PostgreSQL user).
    #[must_use]
    pub fn trusting(mut self, uid: u32) -> Files {
        self.trusted.push(uid);
        self
    }

    /// Reads one of the files: `None` when absent; an error when it is not a regular file, too
    /// big, unreadable, or not to be believed.
    fn read(&self, path: &Utf8Path) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((bytes, metadata)) = fsutil::read_regular(path, MAX_BYTES)? else {
            return Ok(None);
        };
        if let Some(why) = fsutil::untrusted(&metadata, &self.trusted) {
            anyhow::bail!("{path}: {why}");
        }
        Ok(Some(bytes))
    }

    /// Reads the receipt and classifies whatever is there.
    #[must_use]
    pub fn receipt_state(&self) -> ReceiptState {
        match self.read(&self.receipt) {
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
        self.read_json(&self.claim)
    }

    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn last_runs(&self) -> anyhow::Result<LastRuns> {
        Ok(self.read_json(&self.last_run)?.unwrap_or_default())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Utf8Path,
    ) -> anyhow::Result<Option<T>> {
        let Some(bytes) = self.read(path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("failed to parse {path}"))
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

fn write_json<T: Serialize>(path: &Utf8Path, value: &T, owner: Owner) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    fsutil::atomic_write(path, &bytes, MODE, owner)
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

        // A hard link to a receipt is not the receipt (issue 15.2).
        std::fs::remove_file(&marker).unwrap();
        files.write_receipt(&receipt(), None).unwrap();
        std::fs::hard_link(&marker, dir.path().join("elsewhere.json")).unwrap();
        let ReceiptState::Unreadable { error } = files.receipt_state() else {
            panic!("a hard-linked receipt must not be believed");
        };
        assert!(error.contains("not trusted"), "{error}");
    }

    #[test]
    fn written_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let marker = Utf8PathBuf::from_path_buf(dir.path().join("receipt.json")).unwrap();
        let files = Files::new(&marker);
        files.write_receipt(&receipt(), None).unwrap();
        files.write_last_runs(&LastRuns::new(), None).unwrap();
        for path in [&files.receipt, &files.last_run] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{path}");
        }
    }

    #[test]
    fn derived_file_names() {
        let files = Files::new(Utf8Path::new("/var/lib/pp/16.json"));
        assert_eq!(files.claim, "/var/lib/pp/16.json.pending");
        assert_eq!(files.lock, "/var/lib/pp/16.json.lock");
        assert_eq!(files.last_run, "/var/lib/pp/16.json.last-run");
    }
}
