//! Never two primaries on one repository (issue 14). Pure: what a restore records of its
//! repositories when it is decided (the claim's [`PrimaryGuard`]), what a later look at them
//! means (another server still writes there, or not), the archive_command that holds a restored
//! server's archiving until `verify` has looked, and the words of the refusal. The edges are
//! [`crate::archive_watch`] (looking, holding, releasing) and `pg-preseed archive-hold`.
//!
//! Why: nixpkgs' pgbackrest module gives every host `archive_command = pgbackrest
//! --stanza=default archive-push "%p"`. A restore on a second machine while the first still runs
//! (a rehearsal on a spare host, a staging copy built from the production configuration, a
//! network partition) makes two primaries archiving into one repository: their timelines and
//! history files interleave, and the next restore may follow the wrong one. So a restored server
//! does not archive until pg-preseed has looked: it installs [`hold_command`] as archive_command
//! (PostgreSQL keeps every WAL file it could not archive, so nothing is lost) and `verify`
//! releases it once no other writer showed up.
//!
//! What counts as another writer: a WAL segment of the restored cluster, or a backup of it, in a
//! repository that did not hold it when the restore was decided (or at `verify`'s first look) —
//! on a timeline older than the one this server went on with at promotion, so its own archiving
//! (held anyway) can never count. A segment on the timeline replay ended on that was archived
//! after the decision was written by the other server, not missed by recovery
//! ([`before_decision`]): `verify` reports the writer, not a short recovery. What cannot be seen
//! is a primary that writes nothing while it is watched: an idle server archives nothing.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::clock::unix_to_rfc3339;
use crate::config::RepoRef;
use crate::pgbackrest::Backup;
use crate::pitr::WalFacts;
use crate::receipt::{ArchiveMark, PrimaryGuard};
use crate::recovery::{conf_quoted, shell_word};
use crate::wal::{self, Segment};

/// The check's name in `verify`'s report and in the receipt.
pub const CHECK: &str = "no other server writes the repository";

/// The comment above the hold in postgresql.auto.conf.
pub const HOLD_COMMENT: &str = "# pg-preseed: archiving held until `pg-preseed verify` has made sure no other server writes the repository";

/// What one look at one repository found of the restored cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub repo: RepoRef,
    /// Unix seconds.
    pub at: i64,
    /// The newest segment `pgbackrest info` lists (on the newest timeline holding any), and the
    /// archive id holding it.
    pub newest: Option<String>,
    pub archive_id: Option<String>,
    /// The newest segment known on the timeline replay ended on when that is not the newest
    /// timeline in the repository (`info` cannot list it then; `verify` asks `archive-get`).
    pub on_timeline: Option<String>,
    pub backups: Vec<SeenBackup>,
}

/// A backup of the restored cluster, as `info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenBackup {
    pub label: String,
    /// Unix seconds.
    pub stop: i64,
    /// The segment it stopped in: its timeline says which server it was taken from.
    pub stop_segment: Option<String>,
}

/// A look at one repository from its `info` (the backups and WAL facts the decision reads too):
/// only the cluster `system_id` of major `major` counts.
#[must_use]
pub fn seen(
    repo: &RepoRef,
    backups: &[Backup],
    wal: &WalFacts,
    system_id: Option<u64>,
    major: u32,
    at: i64,
) -> Seen {
    let ours = |id: Option<u64>, pg_major: Option<u32>| {
        pg_major == Some(major) && (system_id.is_none() || id == system_id)
    };
    let newest = wal
        .archives
        .iter()
        .filter(|archive| ours(archive.system_id, archive.major))
        .filter_map(|archive| Some((segment_key(archive.max.as_deref()?)?, archive)))
        .max_by(|(a, _), (b, _)| a.cmp(b));
    Seen {
        repo: repo.clone(),
        at,
        newest: newest.as_ref().map(|(key, _)| key.clone()),
        archive_id: newest.map(|(_, archive)| archive.id.clone()),
        on_timeline: None,
        backups: backups
            .iter()
            .filter(|backup| ours(backup.system_id, backup.pg_major))
            .map(|backup| SeenBackup {
                label: backup.label.clone(),
                stop: backup.stop,
                stop_segment: wal
                    .backups
                    .iter()
                    .find(|b| b.label == backup.label)
                    .and_then(|b| b.archive_stop.as_deref())
                    .and_then(segment_key),
            })
            .collect(),
    }
}

/// What a repository held when the restore was decided (`None`: its archive was not read).
#[must_use]
pub fn mark(repo: &RepoRef, seen: Option<&Seen>) -> ArchiveMark {
    let newest_backup = seen.and_then(|s| s.backups.iter().max_by_key(|b| b.stop));
    ArchiveMark {
        repo: repo.number,
        repo_name: repo.name.clone(),
        known: seen.is_some(),
        newest_segment: seen.and_then(|s| s.newest.clone()),
        newest_backup: newest_backup.map(|b| b.label.clone()),
        newest_backup_stop: newest_backup.map(|b| b.stop),
    }
}

/// The 24 hexadecimal digits of a segment name, upper case (their order is the segments'
/// order: timeline, then position); `None` for anything else.
fn segment_key(name: &str) -> Option<String> {
    let digits = name.get(..24)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| digits.to_ascii_uppercase())
}

fn timeline(segment: &str) -> Option<u32> {
    wal::timeline_of(segment)
}

/// Another server writing: what it added, where, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Writer {
    pub repo: RepoRef,
    /// The newest WAL segment it archived, and the archive id holding it (to ask its time).
    pub segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<String>,
    /// Its newest backup, when it took one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<SeenBackup>,
    /// The newest segment the repository held before: at the decision, or at the first look.
    pub before: Option<String>,
    /// RFC 3339: the decision's time, or the first look's.
    pub since: String,
    /// Whether `since` is the decision's (else `verify`'s first look).
    pub since_decision: bool,
    /// Unix seconds: the look that saw it.
    pub seen_at: i64,
}

/// What the decision recorded of something (the newest segment, the newest backup's stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided<T> {
    /// No repository's archive was read when the restore was decided (or there is no guard).
    Unknown,
    /// Read, and there was none.
    Nothing,
    Newest(T),
}

impl<T> Decided<T> {
    fn from_known(value: Option<T>) -> Decided<T> {
        value.map_or(Decided::Nothing, Decided::Newest)
    }
}

/// The newest segment of the restored cluster `repo` held when the restore was decided.
/// Unknown for a repository whose archive was not read then (no backups there, or left out of
/// the decision as unreachable: it may well have held more than the others, out of sight), so
/// only what it gains while `verify` watches counts for it.
#[must_use]
pub fn segment_at_decision(guard: &PrimaryGuard, repo: u32) -> Decided<String> {
    guard
        .marks
        .iter()
        .find(|m| m.repo == repo && m.known)
        .map_or(Decided::Unknown, |mark| {
            Decided::from_known(mark.newest_segment.as_deref().and_then(segment_key))
        })
}

fn backup_at_decision(guard: &PrimaryGuard, repo: u32) -> Decided<i64> {
    guard
        .marks
        .iter()
        .find(|m| m.repo == repo && m.known)
        .map_or(Decided::Unknown, |mark| {
            Decided::from_known(mark.newest_backup_stop)
        })
}

/// Whether `later` is a newer segment than `earlier` (`None`: none there).
fn newer(later: &str, earlier: Option<&str>) -> bool {
    earlier.is_none_or(|earlier| later > earlier)
}

/// Whether the looks show another server writing, against what the decision recorded
/// (`guard`) and against `verify`'s first look of each repository (`first`; empty for the
/// first look itself). `own_timeline` is the timeline this server went on with at promotion:
/// it and later ones are what it archives itself once released, never evidence (`None` before
/// it ever ran: every timeline counts). The first repository, in order, with evidence.
#[must_use]
pub fn other_writer(
    guard: Option<&PrimaryGuard>,
    first: &[Seen],
    now: &[Seen],
    own_timeline: Option<u32>,
) -> Option<Writer> {
    let not_own = |segment: &&String| {
        own_timeline.is_none_or(|own| timeline(segment).is_some_and(|t| t < own))
    };
    let newest_of = |seen: &Seen| -> Option<String> {
        [seen.newest.as_ref(), seen.on_timeline.as_ref()]
            .into_iter()
            .flatten()
            .filter(not_own)
            .max()
            .cloned()
    };
    let backup_counts = |backup: &&SeenBackup| match &backup.stop_segment {
        Some(segment) => not_own(&segment),
        None => true,
    };
    for seen in now {
        let newest = newest_of(seen);
        let earlier = first.iter().find(|f| f.repo.number == seen.repo.number);
        let mut writer = Writer {
            repo: seen.repo.clone(),
            segment: None,
            archive_id: seen.archive_id.clone(),
            backup: None,
            before: None,
            since: String::new(),
            since_decision: false,
            seen_at: seen.at,
        };
        // Against the decision, then against the first look.
        if let (Some(segment), Some(guard)) = (&newest, guard) {
            let before = match segment_at_decision(guard, seen.repo.number) {
                Decided::Unknown => None,
                Decided::Nothing => Some(None),
                Decided::Newest(before) => Some(Some(before)),
            };
            if let Some(before) = before.filter(|before| newer(segment, before.as_deref())) {
                writer.segment = Some(segment.clone());
                writer.before = before;
                writer.since.clone_from(&guard.decided_at);
                writer.since_decision = true;
            }
        }
        if writer.segment.is_none() {
            if let Some(earlier) = earlier {
                // Each way of knowing against itself: `info`'s newest, and the head of the
                // replayed timeline when `info` cannot list it.
                let grown = [
                    (seen.newest.as_ref(), earlier.newest.as_ref()),
                    (seen.on_timeline.as_ref(), earlier.on_timeline.as_ref()),
                ]
                .into_iter()
                .filter_map(|(now, before)| {
                    let now = now.filter(not_own)?;
                    let before = before.filter(not_own);
                    newer(now, before.map(String::as_str)).then(|| (now.clone(), before.cloned()))
                })
                .max();
                if let Some((segment, before)) = grown {
                    writer.segment = Some(segment);
                    writer.before = before;
                    writer.since = unix_to_rfc3339(earlier.at);
                }
            }
        }
        let backup_before = guard.map_or(Decided::Unknown, |g| {
            backup_at_decision(g, seen.repo.number)
        });
        writer.backup = seen
            .backups
            .iter()
            .filter(backup_counts)
            .filter(|backup| match (&backup_before, earlier) {
                (Decided::Newest(stop), _) => backup.stop > *stop,
                (Decided::Nothing, _) => true,
                (Decided::Unknown, Some(earlier)) => {
                    !earlier.backups.iter().any(|b| b.label == backup.label)
                }
                (Decided::Unknown, None) => false,
            })
            .max_by_key(|backup| backup.stop)
            .cloned();
        if writer.backup.is_some() && writer.since.is_empty() {
            match (guard, earlier) {
                (Some(guard), _) if backup_before != Decided::Unknown => {
                    writer.since.clone_from(&guard.decided_at);
                    writer.since_decision = true;
                }
                (_, Some(earlier)) => writer.since = unix_to_rfc3339(earlier.at),
                _ => {}
            }
        }
        if writer.segment.is_some() || writer.backup.is_some() {
            return Some(writer);
        }
    }
    None
}

impl Writer {
    /// The refusal's (or warning's) first sentence: the repository, the other writer's newest
    /// WAL and its time — `file_time` when the repository could say when it stored the file,
    /// else when pg-preseed saw it.
    #[must_use]
    pub fn describe(&self, file_time: Option<i64>) -> String {
        let when = if self.since_decision {
            format!("after this restore was decided ({})", self.since)
        } else {
            format!("while pg-preseed watched it (since {})", self.since)
        };
        let mut text = format!("another server is writing to {}: ", self.repo);
        match &self.segment {
            Some(segment) => {
                let time = match file_time {
                    Some(time) => format!(
                        "stored at {}, the file's time in the repository",
                        unix_to_rfc3339(time)
                    ),
                    None => format!("seen at {}", unix_to_rfc3339(self.seen_at)),
                };
                let before = match &self.before {
                    Some(before) => format!("the newest then was {before}"),
                    None => "it held no WAL of this cluster then".to_owned(),
                };
                let _ = write!(
                    text,
                    "it archived WAL up to segment {segment} ({time}) {when}; {before}"
                );
                if let Some(backup) = &self.backup {
                    let _ = write!(
                        text,
                        ", and it took backup {} (ended {})",
                        backup.label,
                        unix_to_rfc3339(backup.stop)
                    );
                }
            }
            None => {
                if let Some(backup) = &self.backup {
                    let _ = write!(
                        text,
                        "it took backup {} (ended {}) {when}",
                        backup.label,
                        unix_to_rfc3339(backup.stop)
                    );
                }
            }
        }
        text
    }
}

/// What the operator can do after a refusal, in order of how often it is the right thing.
#[must_use]
pub fn way_on(config_path: &str, pgdata: &str) -> String {
    format!(
        "this server keeps running with its archiving held (its WAL waits in pg_wal; nothing is \
         lost) and no receipt. If the other server is the primary (this was a rehearsal or a \
         copy), stop this one and keep it away from that repository. If this one is to be the \
         primary: fence the other (stop PostgreSQL there, or power the host off), then empty \
         {pgdata} and start PostgreSQL again, so the restore replays everything the other wrote; \
         or keep this restore and let it archive next to the other writer: pg-preseed run \
         --config {config_path} --allow-second-primary, then run verify again (systemctl restart \
         postgresql-preseed-verify)"
    )
}

// ---------------------------------------------------------------------------------------------
// the hold

/// The archive_command that holds archiving: `<exe> archive-hold %f`, which exits 1 with a line
/// in PostgreSQL's log. PostgreSQL keeps a WAL file until archive_command succeeded for it, so
/// the files wait in pg_wal (`archive_status/*.ready`) and go out once the hold is released.
/// Exit 1, not above 125: PostgreSQL would restart its archiver for that, and log louder.
///
/// # Errors
/// An executable path that is not absolute or holds a control character.
pub fn hold_command(exe: &str) -> Result<String, String> {
    if !exe.starts_with('/') || exe.chars().any(char::is_control) {
        return Err(format!(
            "pg-preseed's executable {exe:?} cannot go into archive_command (not an absolute path, or a control character in it)"
        ));
    }
    Ok(format!(
        "{} archive-hold %f",
        shell_word(exe).replace('%', "%%")
    ))
}

/// Whether an archive_command is a pg-preseed hold (this one's or another version's).
#[must_use]
pub fn is_hold(command: &str) -> bool {
    command.contains(" archive-hold ")
}

/// postgresql.auto.conf with the hold appended (the last setting wins, as in PostgreSQL).
#[must_use]
pub fn conf_with_hold(conf: &str, command: &str) -> String {
    let mut text = conf.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(text, "{HOLD_COMMENT}");
    let _ = writeln!(text, "archive_command = '{}'", conf_quoted(command));
    text
}

/// The statement that releases the hold: back to what postgresql.auto.conf set before it
/// (restored with the backup), else to postgresql.conf's archive_command.
#[must_use]
pub fn release_sql(previous: Option<&str>) -> String {
    match previous {
        None => "ALTER SYSTEM RESET archive_command".to_owned(),
        Some(value) => {
            let mut tag = "$pgpreseed$".to_owned();
            let mut n = 0;
            while value.contains(&tag) {
                n += 1;
                tag = format!("$pgpreseed{n}$");
            }
            format!("ALTER SYSTEM SET archive_command = {tag}{value}{tag}")
        }
    }
}

/// How often `verify` looks at the repositories during a watch of `watch`: a few times per
/// watch, at most every 5 s (each look is one `pgbackrest info` per repository).
#[must_use]
pub fn look_interval(watch: Duration) -> Duration {
    (watch / 6).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

// ---------------------------------------------------------------------------------------------
// verify's archive-end check

/// The newest segment a repository holds on the timeline replay ended on, as far as it had been
/// archived there when the restore was decided (`decided`, from [`segment_at_decision`]): one
/// archived later was pushed by another server while this one restored, not missed by recovery. A
/// timeline that appeared after the decision was all written since (and so was everything when
/// the decision saw no WAL of the cluster); one older than the decision's newest cannot be told
/// apart, and stays as it is — as does everything when the decision is unknown.
#[must_use]
pub fn before_decision(
    newest: Option<Segment>,
    decided: &Decided<String>,
    segment_size: u64,
) -> Option<Segment> {
    let newest = newest?;
    let decided = match decided {
        Decided::Unknown => return Some(newest),
        Decided::Nothing => return None,
        Decided::Newest(decided) => decided,
    };
    let Some(decided) = Segment::parse(decided, segment_size) else {
        return Some(newest);
    };
    match decided.timeline.cmp(&newest.timeline) {
        std::cmp::Ordering::Equal => Some(newest.min(decided)),
        std::cmp::Ordering::Less => None,
        std::cmp::Ordering::Greater => Some(newest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitr::{Archive, BackupWal};

    const SIZE: u64 = wal::DEFAULT_SEGMENT_SIZE;

    fn repo(number: u32) -> RepoRef {
        RepoRef { number, name: None }
    }

    fn seg(timeline: u32, number: u64) -> String {
        Segment { timeline, number }.name(SIZE)
    }

    fn look(number: u32, at: i64, newest: Option<String>, backups: &[(&str, i64, u32)]) -> Seen {
        Seen {
            repo: repo(number),
            at,
            newest,
            archive_id: Some("15-1".to_owned()),
            on_timeline: None,
            backups: backups
                .iter()
                .map(|(label, stop, tl)| SeenBackup {
                    label: (*label).to_owned(),
                    stop: *stop,
                    stop_segment: Some(seg(*tl, 2)),
                })
                .collect(),
        }
    }

    fn guard(marks: Vec<ArchiveMark>) -> PrimaryGuard {
        PrimaryGuard {
            decided_at: "2026-11-27T10:00:00Z".to_owned(),
            system_identifier: Some("7".to_owned()),
            marks,
            hold: None,
            allowed_at: None,
        }
    }

    fn marked(number: u32, newest: Option<String>, backup_stop: Option<i64>) -> ArchiveMark {
        ArchiveMark {
            repo: number,
            repo_name: None,
            known: true,
            newest_segment: newest,
            newest_backup: backup_stop.map(|_| "20261127-100000F".to_owned()),
            newest_backup_stop: backup_stop,
        }
    }

    #[test]
    fn seen_keeps_only_the_restored_cluster() {
        let backups = vec![
            Backup {
                label: "20261127-090000F".to_owned(),
                kind: "full".to_owned(),
                start: 10,
                stop: 20,
                pg_major: Some(15),
                system_id: Some(7),
                size: None,
                error: false,
            },
            Backup {
                label: "20250101-000000F".to_owned(),
                kind: "full".to_owned(),
                start: 1,
                stop: 2,
                pg_major: Some(14),
                system_id: Some(6),
                size: None,
                error: false,
            },
        ];
        let wal = WalFacts {
            archives: vec![
                Archive {
                    id: "14-1".to_owned(),
                    system_id: Some(6),
                    major: Some(14),
                    min: Some(seg(1, 1)),
                    max: Some(seg(9, 9)),
                },
                Archive {
                    id: "15-2".to_owned(),
                    system_id: Some(7),
                    major: Some(15),
                    min: Some(seg(1, 1)),
                    max: Some(format!("{}-abc", seg(1, 5).to_lowercase())),
                },
            ],
            backups: vec![BackupWal {
                label: "20261127-090000F".to_owned(),
                lsn_start: None,
                lsn_stop: None,
                archive_stop: Some(seg(1, 3)),
            }],
        };
        let seen = seen(&repo(1), &backups, &wal, Some(7), 15, 100);
        assert_eq!(seen.newest, Some(seg(1, 5)));
        assert_eq!(seen.archive_id.as_deref(), Some("15-2"));
        assert_eq!(seen.backups.len(), 1);
        assert_eq!(seen.backups[0].stop_segment, Some(seg(1, 3)));
        let mark = mark(&repo(1), Some(&seen));
        assert!(mark.known);
        assert_eq!(mark.newest_segment, Some(seg(1, 5)));
        assert_eq!(mark.newest_backup_stop, Some(20));
        assert!(!super::mark(&repo(2), None).known);
    }

    /// The scenario as a table: (what the decision recorded, the looks, this server's
    /// timeline) → another writer or not.
    #[test]
    fn other_writers_against_the_decision_and_the_first_look() {
        let decided = guard(vec![marked(1, Some(seg(1, 5)), Some(50))]);
        // Nothing new: the same newest segment and backup.
        let same = [look(
            1,
            200,
            Some(seg(1, 5)),
            &[("20261127-100000F", 50, 1)],
        )];
        assert_eq!(other_writer(Some(&decided), &[], &same, Some(2)), None);

        // The old primary archived two more segments on the restored timeline.
        let more = [look(1, 200, Some(seg(1, 7)), &[])];
        let writer = other_writer(Some(&decided), &[], &more, Some(2)).expect("a writer");
        assert_eq!(writer.segment, Some(seg(1, 7)));
        assert_eq!(writer.before, Some(seg(1, 5)));
        assert!(writer.since_decision);
        // Before the restored server ran (run's look), the same.
        assert!(other_writer(Some(&decided), &[], &more, None).is_some());

        // This server's own timeline (released, or not held) is never evidence.
        let own = [look(1, 200, Some(seg(2, 6)), &[])];
        assert_eq!(other_writer(Some(&decided), &[], &own, Some(2)), None);
        // A third server's new timeline below ours is.
        let third = [look(1, 200, Some(seg(2, 6)), &[])];
        assert!(other_writer(Some(&decided), &[], &third, Some(3)).is_some());

        // A backup taken since the decision on an older timeline: another writer, even without
        // new WAL listed; one on this server's timeline is not.
        let backup = [look(
            1,
            200,
            Some(seg(1, 5)),
            &[("20261127-100000F", 50, 1), ("20261127-110000F", 90, 1)],
        )];
        let writer = other_writer(Some(&decided), &[], &backup, Some(2)).expect("a writer");
        assert_eq!(writer.segment, None);
        assert_eq!(writer.backup.as_ref().map(|b| b.stop), Some(90));
        let ours = [look(
            1,
            200,
            Some(seg(1, 5)),
            &[("20261127-110000F", 90, 2)],
        )];
        assert_eq!(other_writer(Some(&decided), &[], &ours, Some(2)), None);

        // Older segments catching up (a repository that lagged at the decision) are not newer.
        let older = [look(1, 200, Some(seg(1, 4)), &[])];
        assert_eq!(other_writer(Some(&decided), &[], &older, Some(2)), None);
    }

    #[test]
    fn without_a_mark_only_growth_between_looks_counts() {
        let first = [look(1, 100, Some(seg(1, 5)), &[("a", 50, 1)])];
        let same = [look(1, 200, Some(seg(1, 5)), &[("a", 50, 1)])];
        assert_eq!(other_writer(None, &first, &same, Some(2)), None);
        let grown = [look(1, 200, Some(seg(1, 6)), &[("a", 50, 1)])];
        let writer = other_writer(None, &first, &grown, Some(2)).expect("a writer");
        assert!(!writer.since_decision);
        assert_eq!(writer.before, Some(seg(1, 5)));
        let backup = [look(1, 200, Some(seg(1, 5)), &[("a", 50, 1), ("b", 60, 1)])];
        assert!(other_writer(None, &first, &backup, Some(2)).is_some());
        // The first look alone proves nothing without a mark.
        assert_eq!(other_writer(None, &[], &grown, Some(2)), None);
    }

    /// A repository whose archive the decision did not read (it held no backup) may have held
    /// more than the others all along: only what it gains while watched counts.
    #[test]
    fn a_repository_not_read_at_the_decision_counts_only_what_it_gains() {
        let mut unknown = marked(2, None, None);
        unknown.known = false;
        let decided = guard(vec![marked(1, Some(seg(1, 5)), Some(50)), unknown]);
        let first = [
            look(1, 100, Some(seg(1, 5)), &[]),
            look(2, 100, Some(seg(1, 7)), &[]),
        ];
        assert_eq!(other_writer(Some(&decided), &[], &first, Some(2)), None);
        let later = [
            look(1, 200, Some(seg(1, 5)), &[]),
            look(2, 200, Some(seg(1, 8)), &[]),
        ];
        let writer = other_writer(Some(&decided), &first, &later, Some(2)).expect("a writer");
        assert_eq!(writer.repo.number, 2);
        assert!(!writer.since_decision);
        assert_eq!(segment_at_decision(&decided, 2), Decided::Unknown);
        assert_eq!(segment_at_decision(&decided, 3), Decided::Unknown);
        assert_eq!(segment_at_decision(&decided, 1), Decided::Newest(seg(1, 5)));
    }

    #[test]
    fn the_timeline_head_asked_with_archive_get_counts_too() {
        // The repository's newest timeline is 2 (an earlier short recovery archived it); the old
        // primary goes on writing timeline 1, which `info` cannot list.
        let decided = guard(vec![marked(1, Some(seg(2, 9)), None)]);
        let first = [look(1, 100, Some(seg(2, 9)), &[])];
        let mut later = look(1, 200, Some(seg(2, 9)), &[]);
        later.on_timeline = Some(seg(1, 8));
        let mut earlier = first[0].clone();
        earlier.on_timeline = Some(seg(1, 7));
        assert_eq!(
            other_writer(
                Some(&decided),
                &[earlier.clone()],
                &[earlier.clone()],
                Some(3)
            ),
            None
        );
        let writer = other_writer(Some(&decided), &[earlier], &[later], Some(3)).expect("a writer");
        assert_eq!(writer.segment, Some(seg(1, 8)));
        assert!(!writer.since_decision);
    }

    #[test]
    fn the_refusal_names_the_repository_the_segment_and_its_time() {
        let writer = Writer {
            repo: RepoRef {
                number: 1,
                name: Some("nas".to_owned()),
            },
            segment: Some(seg(1, 12)),
            archive_id: Some("15-1".to_owned()),
            backup: None,
            before: Some(seg(1, 5)),
            since: "2026-11-27T10:00:00Z".to_owned(),
            since_decision: true,
            seen_at: 1_795_812_000,
        };
        assert_eq!(
            writer.describe(Some(1_795_811_999)),
            "another server is writing to repo1 (nas): it archived WAL up to segment \
             00000001000000000000000C (stored at 2026-11-27T20:39:59Z, the file's time in the \
             repository) after this restore was decided (2026-11-27T10:00:00Z); the newest then \
             was 000000010000000000000005"
        );
        assert!(writer
            .describe(None)
            .contains("(seen at 2026-11-27T20:40:00Z)"));
        let next = way_on("/etc/pg-preseed/config.json", "/var/lib/postgresql/16");
        assert!(next.contains("fence the other"), "{next}");
        assert!(
            next.contains(
                "pg-preseed run --config /etc/pg-preseed/config.json --allow-second-primary"
            ),
            "{next}"
        );
    }

    #[test]
    fn the_hold_goes_into_postgresql_auto_conf_and_reads_back() {
        let command = hold_command("/etc/pg-preseed/bin/pg-preseed").unwrap();
        assert_eq!(command, "/etc/pg-preseed/bin/pg-preseed archive-hold %f");
        assert!(is_hold(&command));
        assert!(!is_hold("pgbackrest --stanza=default archive-push \"%p\""));
        let odd = hold_command("/opt/it's 100%/pg-preseed").unwrap();
        assert_eq!(odd, "'/opt/it'\\''s 100%%/pg-preseed' archive-hold %f");
        assert!(hold_command("pg-preseed").is_err());

        let restored = "# Do not edit this file manually!\n\
                        archive_command = 'cp %p /archive/%f'\n\
                        # Recovery settings generated by pgBackRest restore on 2026-11-27\n\
                        restore_command = '/bin/pg-preseed archive-get %f \"%p\"'";
        let held = conf_with_hold(restored, &odd);
        assert!(held.starts_with(restored));
        assert_eq!(
            crate::recovery::setting(&held, "archive_command").as_deref(),
            Some(odd.as_str())
        );
        assert_eq!(
            crate::recovery::setting(&held, "restore_command").as_deref(),
            Some("/bin/pg-preseed archive-get %f \"%p\"")
        );
    }

    #[test]
    fn release_puts_back_what_was_there() {
        assert_eq!(release_sql(None), "ALTER SYSTEM RESET archive_command");
        assert_eq!(
            release_sql(Some("cp %p '/a b/%f'")),
            "ALTER SYSTEM SET archive_command = $pgpreseed$cp %p '/a b/%f'$pgpreseed$"
        );
        assert_eq!(
            release_sql(Some("x $pgpreseed$ y")),
            "ALTER SYSTEM SET archive_command = $pgpreseed1$x $pgpreseed$ y$pgpreseed1$"
        );
    }

    #[test]
    fn wal_archived_after_the_decision_is_not_missed_by_recovery() {
        let at = |t, n| {
            Some(Segment {
                timeline: t,
                number: n,
            })
        };
        let decided = Decided::Newest(seg(1, 5));
        // On the decision's timeline: capped at what it held then.
        assert_eq!(before_decision(at(1, 9), &decided, SIZE), at(1, 5));
        assert_eq!(before_decision(at(1, 4), &decided, SIZE), at(1, 4));
        // A timeline that appeared since: all of it came later.
        assert_eq!(before_decision(at(2, 9), &decided, SIZE), None);
        // An older timeline than the decision's newest: cannot be told, unchanged.
        let later = Decided::Newest(seg(2, 3));
        assert_eq!(before_decision(at(1, 9), &later, SIZE), at(1, 9));
        // Nothing archived at the decision: all of it came later. Unknown: unchanged.
        assert_eq!(before_decision(at(1, 9), &Decided::Nothing, SIZE), None);
        assert_eq!(before_decision(at(1, 9), &Decided::Unknown, SIZE), at(1, 9));
        assert_eq!(before_decision(None, &decided, SIZE), None);
    }

    #[test]
    fn looks_are_a_few_per_watch() {
        assert_eq!(
            look_interval(Duration::from_secs(90)),
            Duration::from_secs(5)
        );
        assert_eq!(
            look_interval(Duration::from_secs(6)),
            Duration::from_secs(1)
        );
        assert_eq!(look_interval(Duration::ZERO), Duration::from_millis(500));
    }
}
