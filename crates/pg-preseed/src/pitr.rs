//! Point-in-time recovery, decided before anything is restored. Pure: the facts are what
//! `pgbackrest info --output=json` says about each backup's WAL positions and the archive's range
//! (read with [`crate::pgbackrest::info`]'s types); the answers are the backups that can reach a
//! target, or a sentence saying why none can.
//!
//! What can be checked before restoring: a time target against the backups' stop times and the
//! clock (a target in the future is beyond any archive), an LSN target against the backups' stop
//! LSNs and the newest archived segment. A restore point name or a transaction id cannot be looked
//! up in a repository; PostgreSQL (13 and later) refuses to promote when such a target is not
//! reached, and `verify` then fails.

use serde::Serialize;

use crate::clock::parse_timestamptz;
use crate::config::{Target, TargetType};
use crate::pgbackrest::{major_of, Backup, BackupDatabase, StanzaInfo};
use crate::wal::{self, Lsn, Segment};

/// One archive id (`15-1`): the WAL of one cluster (system identifier and major version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Archive {
    pub id: String,
    #[serde(serialize_with = "crate::pgbackrest::info::serialize_opt_u64_as_string")]
    pub system_id: Option<u64>,
    pub major: Option<u32>,
    /// Oldest and newest segment names; `None` when it holds no WAL.
    pub min: Option<String>,
    pub max: Option<String>,
}

/// Where one backup's WAL starts and stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupWal {
    pub label: String,
    pub lsn_start: Option<Lsn>,
    /// Recovery from this backup is consistent from here on; no target before it is reachable.
    pub lsn_stop: Option<Lsn>,
    /// The segment holding `lsn_stop`.
    pub archive_stop: Option<String>,
}

/// What one repository's `info` says about WAL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalFacts {
    pub archives: Vec<Archive>,
    pub backups: Vec<BackupWal>,
}

impl WalFacts {
    /// Nothing known (left out of `--json` output then).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.archives.is_empty() && self.backups.is_empty()
    }

    /// The WAL segment size, as far as the backups tell it: the power of two (1 MiB to 1 GiB)
    /// for which every backup's stop LSN falls in its stop segment. PostgreSQL's default when
    /// nothing tells otherwise.
    #[must_use]
    pub fn segment_size(&self) -> u64 {
        let pairs: Vec<(Lsn, Segment)> = self
            .backups
            .iter()
            .filter_map(|b| {
                let lsn = b.lsn_stop?;
                // Parse with the default size only to read the timeline and raw fields back.
                let name = b.archive_stop.as_deref()?;
                Some((lsn, Segment::parse(name, 1 << 20)?))
            })
            .collect();
        let fits = |size: u64| {
            pairs.iter().all(|(lsn, raw)| {
                // `raw` was read with 1 MiB segments: 4096 per log.
                let (log, seg) = (raw.number / 4096, raw.number % 4096);
                let per_log = 0x1_0000_0000 / size;
                seg < per_log && lsn.0 / size == log * per_log + seg
            })
        };
        if fits(wal::DEFAULT_SEGMENT_SIZE) {
            return wal::DEFAULT_SEGMENT_SIZE;
        }
        (20..=30)
            .map(|bits| 1u64 << bits)
            .find(|&size| fits(size))
            .unwrap_or(wal::DEFAULT_SEGMENT_SIZE)
    }

    fn backup(&self, label: &str) -> Option<&BackupWal> {
        self.backups.iter().find(|b| b.label == label)
    }
}

/// The WAL facts for `stanza` in repository `repo`, from the parsed `pgbackrest info
/// --output=json` (the same parse the decision's backups come from).
///
/// # Errors
/// When the output does not mention the stanza.
pub fn wal_facts(infos: &[StanzaInfo], stanza: &str, repo: u32) -> Result<WalFacts, String> {
    let info = infos
        .iter()
        .find(|info| info.name == stanza)
        .ok_or_else(|| format!("pgbackrest info did not report stanza {stanza}"))?;
    let db = |database: &BackupDatabase| {
        info.db
            .iter()
            .find(|db| db.id == database.id && db.repo_key == repo)
    };
    let lsn = |text: Option<&String>| text.and_then(|t| Lsn::parse(t).ok());
    Ok(WalFacts {
        archives: info
            .archive
            .iter()
            .filter(|archive| archive.database.repo_key == repo)
            .map(|archive| Archive {
                id: archive.id.clone(),
                system_id: db(&archive.database).map(|db| db.system_id),
                major: db(&archive.database).and_then(|db| major_of(&db.version)),
                min: archive.min.clone(),
                max: archive.max.clone(),
            })
            .collect(),
        backups: info
            .backup
            .iter()
            .filter(|backup| backup.database.repo_key == repo)
            .map(|backup| BackupWal {
                label: backup.label.clone(),
                lsn_start: lsn(backup.lsn.as_ref().and_then(|p| p.start.as_ref())),
                lsn_stop: lsn(backup.lsn.as_ref().and_then(|p| p.stop.as_ref())),
                archive_stop: backup.archive.as_ref().and_then(|p| p.stop.clone()),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// targets

/// Whether the engine chooses the backup for this target itself (and passes `--set`):
/// pgBackRest 2.45 picks one for a time target but not for an LSN target, and the receipt must
/// name the backup that was restored.
#[must_use]
pub fn chooses_backup(kind: TargetType) -> bool {
    matches!(kind, TargetType::Time | TargetType::Lsn)
}

fn rfc3339(seconds: i64) -> String {
    crate::clock::unix_to_rfc3339(seconds)
}

/// The backups of one repository (oldest first) that can be recovered to `target`: for a time
/// target those that ended before it, for an LSN target those whose stop LSN is not after it;
/// all of them for targets that cannot be checked before restoring. With `set` (the configured
/// backup set) only that backup is considered, and it must end before the target.
///
/// # Errors
/// Why no backup here can reach the target: it is before the end of the oldest one.
pub fn eligible(
    backups: &[Backup],
    wal: Option<&WalFacts>,
    target: &Target,
    set: Option<&str>,
) -> Result<Vec<Backup>, String> {
    let value = target.value.as_deref().unwrap_or_default();
    let ends_before = |backup: &Backup| -> Option<bool> {
        match target.kind {
            TargetType::Time => {
                let at = parse_timestamptz(value).ok()?;
                Some(backup.stop.saturating_mul(1_000_000) < at)
            }
            TargetType::Lsn => {
                let at = Lsn::parse(value).ok()?;
                let stop = wal?.backup(&backup.label)?.lsn_stop?;
                Some(stop <= at)
            }
            _ => None,
        }
    };
    let end_of = |backup: &Backup| match target.kind {
        TargetType::Lsn => wal
            .and_then(|wal| wal.backup(&backup.label))
            .and_then(|b| b.lsn_stop)
            .map_or_else(|| "?".to_owned(), |lsn| format!("at LSN {lsn}")),
        _ => format!("at {}", rfc3339(backup.stop)),
    };
    let target_text = target.describe();
    if let Some(set) = set {
        return match backups.iter().find(|b| b.label == set) {
            Some(backup) if ends_before(backup) == Some(false) => Err(format!(
                "backup set {set} (pgbackrest.set) ends {}, not before the target {target_text}: \
                 recovery from it cannot stop there; choose an older set or a later target",
                end_of(backup)
            )),
            _ => Ok(backups.to_vec()),
        };
    }
    let usable: Vec<Backup> = backups
        .iter()
        .filter(|backup| ends_before(backup) != Some(false))
        .cloned()
        .collect();
    match backups.iter().min_by_key(|b| b.stop) {
        Some(oldest) if usable.is_empty() => Err(format!(
            "the target {target_text} is before the end of the oldest backup here ({}, which \
             ends {}): no backup can be recovered to it; choose a later target, or a repository \
             that keeps older backups",
            oldest.label,
            end_of(oldest)
        )),
        _ => Ok(usable),
    }
}

/// Whether the archive reaches `target` from `backup`: a time in the future is beyond any
/// archive; an LSN past the newest segment archived for the backup's cluster is too.
///
/// # Errors
/// Why the target is beyond the archive's end.
pub fn reaches(
    target: &Target,
    backup: &Backup,
    wal: Option<&WalFacts>,
    now: i64,
) -> Result<(), String> {
    let value = target.value.as_deref().unwrap_or_default();
    let target_text = target.describe();
    match target.kind {
        TargetType::Time => {
            if let Ok(at) = parse_timestamptz(value) {
                // `now` is whole seconds: a target within the current second is not future yet.
                if at >= now.saturating_add(1).saturating_mul(1_000_000) {
                    return Err(format!(
                        "the target {target_text} is in the future (now is {}): beyond the end of \
                         the archive, so recovery could never reach it",
                        rfc3339(now)
                    ));
                }
            }
        }
        TargetType::Lsn => {
            let (Ok(at), Some(wal)) = (Lsn::parse(value), wal) else {
                return Ok(());
            };
            let size = wal.segment_size();
            let newest = wal
                .archives
                .iter()
                .filter(|archive| {
                    archive.system_id.is_some()
                        && archive.system_id == backup.system_id
                        && archive.major == backup.pg_major
                })
                .filter_map(|archive| Segment::parse(archive.max.as_deref()?, size))
                .max_by_key(|segment| segment.number);
            // A segment number at the very top of the LSN space has no end to compare with.
            let end = newest.and_then(|newest| {
                let end = newest.number.checked_add(1)?.checked_mul(size)?;
                Some((newest, Lsn(end)))
            });
            if let Some((newest, end)) = end {
                if at >= end {
                    return Err(format!(
                        "the target {target_text} is beyond the end of the archive: the newest \
                         archived segment, {}, ends at {end}; choose an earlier target, or wait \
                         until the WAL holding it is archived",
                        newest.name(size)
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A sentence for the decision's reasons when a target is set.
#[must_use]
pub fn describe(target: &Target, backup: &Backup) -> Option<String> {
    match target.kind {
        TargetType::Default => None,
        TargetType::Time | TargetType::Lsn => Some(format!(
            "recovery target {}: backup {} ends before it; recovery stops there and promotes",
            target.describe(),
            backup.label
        )),
        _ => Some(format!(
            "recovery target {}: cannot be looked up before restoring; PostgreSQL refuses to \
             promote unless it reaches it, and `verify` checks that it did",
            target.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from pgBackRest 2.45 (one full backup, WAL archived after it).
    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000005","min":"000000010000000000000001"}],"backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000002"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":22992592,"repository":{"delta":4522359,"size":4522359},"size":22992592},"label":"20261127-182904F","lsn":{"start":"0/2000028","stop":"0/2000100"},"prior":null,"reference":null,"timestamp":{"start":1795804144,"stop":1795804146},"type":"full"}],"cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7712920060145975292,"version":"15"}],"name":"main","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    fn facts(text: &str, stanza: &str, repo: u32) -> Result<WalFacts, String> {
        let infos = crate::pgbackrest::parse_info(text).map_err(|e| e.to_string())?;
        wal_facts(&infos, stanza, repo)
    }

    #[test]
    fn wal_facts_from_info() {
        let wal = facts(INFO, "main", 1).unwrap();
        assert_eq!(wal.archives.len(), 1);
        assert_eq!(wal.archives[0].id, "15-1");
        assert_eq!(wal.archives[0].system_id, Some(7_712_920_060_145_975_292));
        assert_eq!(wal.archives[0].major, Some(15));
        assert_eq!(
            wal.archives[0].max.as_deref(),
            Some("000000010000000000000005")
        );
        assert_eq!(wal.backups[0].lsn_stop, Some(Lsn(0x200_0100)));
        assert_eq!(wal.segment_size(), wal::DEFAULT_SEGMENT_SIZE);
        assert!(facts(INFO, "main", 2).unwrap().archives.is_empty());
        assert!(facts(INFO, "other", 1).is_err());
        assert!(facts("{}", "main", 1).is_err());
    }

    #[test]
    fn segment_size_from_the_backups() {
        let facts = |stop: &str, segment: &str| WalFacts {
            archives: vec![],
            backups: vec![BackupWal {
                label: "x".to_owned(),
                lsn_start: None,
                lsn_stop: Some(Lsn::parse(stop).unwrap()),
                archive_stop: Some(segment.to_owned()),
            }],
        };
        assert_eq!(
            facts("0/8000100", "000000010000000000000002").segment_size(),
            64 << 20
        );
        assert_eq!(
            facts("0/2000100", "000000010000000000000002").segment_size(),
            16 << 20
        );
        assert_eq!(WalFacts::default().segment_size(), 16 << 20);
    }

    fn backup(label: &str, stop: i64) -> Backup {
        Backup {
            label: label.to_owned(),
            kind: "full".to_owned(),
            start: stop - 10,
            stop,
            pg_major: Some(15),
            system_id: Some(7_712_920_060_145_975_292),
            size: None,
            error: false,
        }
    }

    fn target(kind: TargetType, value: &str) -> Target {
        Target {
            kind,
            value: Some(value.to_owned()),
        }
    }

    /// One row per case: the backups' end, the target, what the decision gets.
    #[test]
    fn target_table() {
        let wal = facts(INFO, "main", 1).unwrap();
        let stop = 1_795_804_146; // 2026-11-27T18:29:06Z, LSN 0/2000100
        let now = stop + 3600;
        let backups = [backup("20261127-182904F", stop)];
        let rows: [(Target, Result<(), &str>); 9] = [
            (target(TargetType::Time, "2026-11-27 18:30:00+00"), Ok(())),
            (
                target(TargetType::Time, "2026-11-27 18:00:00+00"),
                Err("is before the end of the oldest backup here (20261127-182904F, which ends at 2026-11-27T18:29:06Z)"),
            ),
            (
                target(TargetType::Time, "2026-11-27 20:00:00+00"),
                Err("is in the future (now is 2026-11-27T19:29:06Z)"),
            ),
            (target(TargetType::Lsn, "0/3000000"), Ok(())),
            (target(TargetType::Lsn, "0/2000100"), Ok(())),
            (
                target(TargetType::Lsn, "0/1000000"),
                Err("before the end of the oldest backup here (20261127-182904F, which ends at LSN 0/2000100)"),
            ),
            (
                target(TargetType::Lsn, "0/6000000"),
                Err("beyond the end of the archive: the newest archived segment, 000000010000000000000005, ends at 0/6000000"),
            ),
            (target(TargetType::Name, "before b"), Ok(())),
            (
                Target {
                    kind: TargetType::Immediate,
                    value: None,
                },
                Ok(()),
            ),
        ];
        for (target, expected) in rows {
            let got = eligible(&backups, Some(&wal), &target, None).and_then(|usable| {
                let chosen = usable.last().expect("a backup");
                reaches(&target, chosen, Some(&wal), now)
            });
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(needle)) => {
                    assert!(error.contains(needle), "{target:?}: {error}");
                }
                (got, expected) => panic!("{target:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_newest_backup_before_the_target_is_kept() {
        let backups = [
            backup("OLD", 1000),
            backup("MID", 2000),
            backup("NEW", 3000),
        ];
        let usable = eligible(
            &backups,
            None,
            &target(TargetType::Time, "1970-01-01 00:41:40+00"), // 2500 s
            None,
        )
        .unwrap();
        assert_eq!(
            usable.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
            ["OLD", "MID"]
        );
        // A configured set that ends after the target is refused, naming it.
        let error = eligible(
            &backups,
            None,
            &target(TargetType::Time, "1970-01-01 00:41:40+00"),
            Some("NEW"),
        )
        .unwrap_err();
        assert!(
            error.contains("backup set NEW (pgbackrest.set) ends at 1970-01-01T00:50:00Z"),
            "{error}"
        );
        // Without LSN facts an LSN target cannot be checked: every backup stays.
        assert_eq!(
            eligible(&backups, None, &target(TargetType::Lsn, "0/1"), None)
                .unwrap()
                .len(),
            3
        );
        assert!(chooses_backup(TargetType::Lsn) && !chooses_backup(TargetType::Name));
    }
}
