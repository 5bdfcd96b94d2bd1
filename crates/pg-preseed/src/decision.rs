//! The decision: a pure function from gathered facts to what to do, with its reasons
//! (DESIGN.md, "The decision"). A refusal is a value here, never an error.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Mode, OnNoBackup, RepoRef, Target};
use crate::pgbackrest::Backup;
use crate::pgdata::PgdataState;
use crate::pitr::{self, WalFacts};
use crate::preflight::{self, Preflight};
use crate::receipt::{Claim, ClaimKind, LeftOut, Origin, ReceiptState};

/// What one repository answered (gathered only when a restore is possible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoFacts {
    pub repo: RepoRef,
    #[serde(flatten)]
    pub status: RepoStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RepoStatus {
    /// Not reachable (after waiting), or in a state that proves nothing (corrupt, wrong cipher).
    Unreachable { reason: String },
    /// Reachable, and the stanza does not exist there.
    NoStanza,
    /// pgBackRest finds no stanza, but nothing proves that the path it looked in is the
    /// repository: an empty directory on the root filesystem (or PGDATA's) with no pgBackRest
    /// files is exactly what a share that did not mount leaves behind. Never grounds for initdb.
    EmptyUnproven { path: String, reason: String },
    /// The stanza exists and holds no backup.
    NoBackups,
    /// Oldest first. `wal`: the backups' WAL positions and the archive's range, for checking a
    /// recovery target before restoring.
    Backups {
        backups: Vec<Backup>,
        #[serde(skip_serializing_if = "WalFacts::is_empty")]
        wal: WalFacts,
    },
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub pgdata: PgdataState,
    /// System identifier of the cluster in PGDATA, when it is initialized and readable.
    pub system_identifier: Option<u64>,
    /// Why the system identifier could not be read, when it could not.
    pub system_identifier_error: Option<String>,
    pub receipt: ReceiptState,
    /// The engine's own claim beside the marker (for this PGDATA), if any.
    pub claim: Option<Claim>,
    pub preflight: Preflight,
    /// `None`: not gathered (no restore was possible).
    pub repos: Option<Vec<RepoFacts>>,
}

/// The configured policies the decision applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub pgdata: String,
    pub major: u32,
    pub mode: Mode,
    pub on_no_backup: OnNoBackup,
    pub set: Option<String>,
    pub max_backup_age: Option<Duration>,
    /// The recovery target (pgbackrest.target): only backups that can reach it are usable.
    pub target: Target,
    /// Unix seconds, now.
    pub now: i64,
    /// For the command printed in guard mode.
    pub config_path: String,
    /// `run --allow-fresh`: the operator says an empty repository that could not be proven to
    /// be the real one is (a first deployment with a repository on the root filesystem).
    pub allow_fresh: bool,
}

/// A repository and the backup the engine would restore from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub repo: RepoRef,
    pub backup: Backup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "decision", content = "candidates")]
pub enum Action {
    Refuse,
    Skip,
    Adopt,
    /// Candidates in the order to try them.
    Restore(Vec<Candidate>),
    Resume(Vec<Candidate>),
    Fresh,
}

impl Action {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Action::Refuse => "refuse",
            Action::Skip => "skip",
            Action::Adopt => "adopt",
            Action::Restore(_) => "restore",
            Action::Resume(_) => "resume",
            Action::Fresh => "fresh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub action: Action,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// What the operator should do next, when there is something to do.
    pub next: Option<String>,
}

/// Whether the decision needs to know what the repositories hold: only when PGDATA could be
/// restored into, and nothing has refused already.
#[must_use]
pub fn needs_repos(facts: &Facts) -> bool {
    if !facts.preflight.is_clean() {
        return false;
    }
    match &facts.pgdata {
        PgdataState::Missing | PgdataState::Empty => true,
        PgdataState::RestoreInProgress { .. }
        | PgdataState::Partial {
            only_directories: true,
            ..
        } => own_restore_claim(facts).is_some(),
        _ => false,
    }
}

fn own_restore_claim(facts: &Facts) -> Option<&Claim> {
    facts
        .claim
        .as_ref()
        .filter(|claim| claim.kind == ClaimKind::Restore)
}

/// A decision being made: the reasons and warnings so far, until [`Draft::finish`] names what
/// to do.
struct Draft {
    reasons: Vec<String>,
    warnings: Vec<String>,
}

impl Draft {
    fn finish(self, action: Action, next: Option<String>) -> Decision {
        Decision {
            action,
            reasons: self.reasons,
            warnings: self.warnings,
            next,
        }
    }
}

/// Decides. Pure: same facts and policy, same decision.
#[must_use]
pub fn decide(facts: &Facts, policy: &Policy) -> Decision {
    let mut draft = Draft {
        reasons: Vec::new(),
        warnings: facts.preflight.warnings.clone(),
    };
    for finding in facts.preflight.findings.iter().filter(|f| !f.blocking) {
        draft
            .warnings
            .push(format!("{} (on_layering = \"warn\")", finding.detail));
    }

    // Row 1: any layering or mount finding refuses, before anything else is considered.
    let blocking: Vec<_> = facts.preflight.blocking().collect();
    if !blocking.is_empty() {
        draft
            .reasons
            .extend(blocking.iter().map(|f| f.detail.clone()));
        return draft.finish(Action::Refuse, Some(preflight::REFUSED_NEXT.to_owned()));
    }

    let pgdata_text = facts.pgdata.describe(policy.pgdata.as_ref());
    draft.reasons.push(pgdata_text);
    match &facts.pgdata {
        // pgBackRest stopped after creating the cluster's directories and before writing its
        // manifest, in a restore pg-preseed's claim shows it started: nothing was written.
        PgdataState::Partial {
            only_directories: true,
            ..
        } if own_restore_claim(facts).is_some() => {
            draft.reasons.push(
                "those are the empty directories pgBackRest creates before its manifest: the \
                 restore pg-preseed started (its claim) was stopped before it wrote any file; \
                 they are removed and the restore starts again"
                    .to_owned(),
            );
            empty(facts, policy, draft)
        }
        PgdataState::EmptyZfsSnapdirVisible => draft.finish(
            Action::Refuse,
            Some(format!(
                "hide the .zfs directory of the dataset mounted at {0}: `zfs set snapdir=hidden \
                 $(findmnt -no SOURCE {0})` (postgresql-preseed-datasets does it for a declared \
                 dataset), then start again; the snapshots stay reachable at {0}/.zfs",
                policy.pgdata
            )),
        ),
        PgdataState::Partial { .. }
        | PgdataState::NotADirectory
        | PgdataState::Unreadable { .. } => draft.finish(
            Action::Refuse,
            Some(format!(
                "find out what is in {}: move it aside and empty the directory to restore, or \
                     restore/repair the cluster by hand; pg-preseed touches nothing it cannot \
                     identify",
                policy.pgdata
            )),
        ),
        PgdataState::Initialized { pg_version, .. } => {
            initialized(facts, policy, draft, pg_version.as_deref())
        }
        PgdataState::RestoreInProgress { .. } => in_progress(facts, policy, draft),
        PgdataState::Missing | PgdataState::Empty => empty(facts, policy, draft),
    }
}

fn initialized(
    facts: &Facts,
    policy: &Policy,
    mut draft: Draft,
    pg_version: Option<&str>,
) -> Decision {
    if let Some(version) = pg_version {
        if version != policy.major.to_string() {
            draft.warnings.push(format!(
                "the cluster in PGDATA is PostgreSQL {version}, but postgres.major is {}: \
                 PostgreSQL {} will not start on it",
                policy.major, policy.major
            ));
        }
    }
    if let Some(claim) = &facts.claim {
        draft.reasons.push(match claim.kind {
            ClaimKind::Restore => format!(
                "pg-preseed restored it (started {}); the receipt is written by `pg-preseed verify` once PostgreSQL is up",
                claim.started_at
            ),
            ClaimKind::Fresh => "pg-preseed let initdb create it; the receipt is written by `pg-preseed verify` once PostgreSQL is up".to_owned(),
        });
        return draft.finish(Action::Skip, None);
    }
    let Some(system_identifier) = facts.system_identifier else {
        draft.reasons.push(format!(
            "its system identifier cannot be read: {}",
            facts
                .system_identifier_error
                .as_deref()
                .unwrap_or("unknown error")
        ));
        return draft.finish(
            Action::Refuse,
            Some("check `pg_controldata` on PGDATA and postgres.bin_dir".to_owned()),
        );
    };
    match &facts.receipt {
        ReceiptState::Absent => {
            draft.reasons.push(format!(
                "no receipt yet: adopting the existing cluster (system identifier {system_identifier})"
            ));
            draft.finish(Action::Adopt, None)
        }
        ReceiptState::Valid { receipt } if receipt.system_identifier == system_identifier => {
            draft.reasons.push(format!(
                "the receipt matches it (system identifier {system_identifier}, {} {})",
                origin_word(receipt.action),
                receipt
                    .verified_at
                    .as_deref()
                    .or(receipt.restored_at.as_deref())
                    .unwrap_or("at an unknown time")
            ));
            draft.finish(Action::Skip, None)
        }
        ReceiptState::Valid { receipt } => {
            draft.reasons.push(format!(
                "the receipt names system identifier {}, but PGDATA holds {system_identifier}: \
                 adopting the cluster that is there",
                receipt.system_identifier
            ));
            draft.warnings.push(format!(
                "PGDATA holds another cluster than the receipt recorded (receipt {}, PGDATA \
                 {system_identifier}); someone restored or re-created it by hand",
                receipt.system_identifier
            ));
            draft.finish(Action::Adopt, None)
        }
        ReceiptState::Unreadable { error } => {
            draft.reasons.push(format!(
                "the receipt cannot be read ({error}): replacing it with one for the cluster in PGDATA"
            ));
            draft
                .warnings
                .push(format!("unreadable receipt replaced: {error}"));
            draft.finish(Action::Adopt, None)
        }
    }
}

fn origin_word(origin: Origin) -> &'static str {
    match origin {
        Origin::Adopted => "adopted",
        Origin::Restored => "restored and verified",
        Origin::Fresh => "created fresh",
    }
}

fn in_progress(facts: &Facts, policy: &Policy, mut draft: Draft) -> Decision {
    let Some(claim) = own_restore_claim(facts) else {
        draft.reasons.push(
            "no pg-preseed claim records starting it, so it is not provably this tool's restore"
                .to_owned(),
        );
        return draft.finish(
            Action::Refuse,
            Some(format!(
                "if you started this restore by hand, finish it by hand (`pgbackrest --stanza=<stanza> --pg1-path={} --delta restore`), or empty {} to let pg-preseed restore",
                policy.pgdata, policy.pgdata
            )),
        );
    };
    draft.reasons.push(format!(
        "pg-preseed started this restore at {} ({} attempt(s))",
        claim.started_at,
        claim.attempts.len()
    ));
    let candidates = match usable_candidates(facts, policy, &mut draft) {
        Ok(candidates) => candidates,
        Err(next) => return draft.finish(Action::Refuse, Some(next)),
    };
    if candidates.is_empty() {
        return draft.finish(
            Action::Refuse,
            Some("make a repository with a usable backup reachable, then run again".to_owned()),
        );
    }
    if policy.mode == Mode::Guard {
        draft
            .reasons
            .push("mode is \"guard\": nothing is restored automatically".to_owned());
        return draft.finish(Action::Refuse, Some(guard_next(policy)));
    }
    draft.finish(Action::Resume(candidates), None)
}

fn empty(facts: &Facts, policy: &Policy, mut draft: Draft) -> Decision {
    let had_data = match &facts.receipt {
        ReceiptState::Absent => false,
        ReceiptState::Valid { receipt } => {
            draft.reasons.push(format!(
                "the receipt says this host had a cluster (system identifier {}, {} {})",
                receipt.system_identifier,
                origin_word(receipt.action),
                receipt
                    .verified_at
                    .as_deref()
                    .or(receipt.restored_at.as_deref())
                    .unwrap_or("at an unknown time")
            ));
            true
        }
        ReceiptState::Unreadable { error } => {
            draft.reasons.push(format!(
                "a receipt exists but cannot be read ({error}): this host had a cluster"
            ));
            true
        }
    } || own_restore_claim(facts).is_some();

    let candidates = match usable_candidates(facts, policy, &mut draft) {
        Ok(candidates) => candidates,
        Err(next) => return draft.finish(Action::Refuse, Some(next)),
    };
    if !candidates.is_empty() {
        if policy.mode == Mode::Guard {
            draft
                .reasons
                .push("mode is \"guard\": nothing is restored automatically".to_owned());
            return draft.finish(Action::Refuse, Some(guard_next(policy)));
        }
        return draft.finish(Action::Restore(candidates), None);
    }

    // No usable backup anywhere; every repository answered (unreachable ones refused above).
    let repos = facts.repos.as_deref().unwrap_or_default();
    let any_backups = repos
        .iter()
        .any(|r| matches!(r.status, RepoStatus::Backups { .. }));
    if any_backups {
        return draft.finish(
            Action::Refuse,
            Some("no backup can be restored automatically (see the reasons); restore one by hand or relax the policy".to_owned()),
        );
    }
    if had_data {
        draft.reasons.push(
            "no repository holds a backup, and running initdb on a host that had data would hide that loss behind an empty database".to_owned(),
        );
        return draft.finish(
            Action::Refuse,
            Some("check that the repositories in the config are the right ones (stanza, path, bucket); if this host really must start empty, clear the receipt with `pg-preseed marker clear --yes` first".to_owned()),
        );
    }
    let unproven: Vec<(&RepoRef, &str)> = repos
        .iter()
        .filter_map(|r| match &r.status {
            RepoStatus::EmptyUnproven { path, .. } => Some((&r.repo, path.as_str())),
            _ => None,
        })
        .collect();
    match policy.on_no_backup {
        OnNoBackup::Initdb if !unproven.is_empty() && !policy.allow_fresh => {
            draft.reasons.push(
                "no receipt and no backup, but an empty repository is not proven to be the \
                 repository: initdb now could put an empty database where the backups are only \
                 out of sight"
                    .to_owned(),
            );
            let paths: Vec<String> = unproven
                .iter()
                .map(|(repo, path)| format!("{repo} at {path}"))
                .collect();
            draft.finish(
                Action::Refuse,
                Some(format!(
                    "mount the filesystem the repository lives on ({}), then start again; if \
                     this really is a first deployment with the repository on this machine's own \
                     filesystem, start the new cluster once by hand: pg-preseed run --config {} \
                     --allow-fresh",
                    paths.join(", "),
                    policy.config_path
                )),
            )
        }
        OnNoBackup::Initdb => {
            draft.reasons.push(
                "no receipt and every repository is reachable and empty: a first deployment; \
                 initdb may create a new cluster (on_no_backup = \"initdb\")"
                    .to_owned(),
            );
            draft.finish(
                Action::Fresh,
                Some(
                    "after PostgreSQL is up, create the stanza and take a first backup".to_owned(),
                ),
            )
        }
        OnNoBackup::Fail => {
            draft
                .reasons
                .push("no receipt and no backup anywhere, and on_no_backup = \"fail\"".to_owned());
            draft.finish(
                Action::Refuse,
                Some("if this is a new server, set on_no_backup = \"initdb\" (services.postgresql-preseed.onNoBackup) for its first start".to_owned()),
            )
        }
    }
}

fn guard_next(policy: &Policy) -> String {
    format!(
        "to restore, run: pg-preseed run --config {} --allow-restore",
        policy.config_path
    )
}

/// What `drill` may restore: the usable backups of the given repositories in order, and a
/// sentence per repository.
#[must_use]
pub fn candidates(repos: Vec<RepoFacts>, policy: &Policy) -> (Vec<Candidate>, Vec<String>) {
    let facts = Facts {
        pgdata: PgdataState::Missing,
        system_identifier: None,
        system_identifier_error: None,
        receipt: ReceiptState::Absent,
        claim: None,
        preflight: Preflight::default(),
        repos: Some(repos),
    };
    let mut draft = Draft {
        reasons: Vec::new(),
        warnings: Vec::new(),
    };
    let candidates = usable_candidates(&facts, policy, &mut draft).unwrap_or_default();
    (candidates, draft.reasons)
}

/// The repositories recovery consults after a restore decided on `repos`, and those it leaves
/// out. Consulted: every repository that answered with the stanza present (backups or none), in
/// configured order — any of them may hold WAL newer than the backup, so one of them that cannot
/// be asked during recovery stops it rather than ending it early. Left out: those unreachable when
/// the restore was decided (or recovery could never end while one stays down, and falling back
/// to the next repository would be useless) and those without the stanza (they hold nothing of
/// it). `verify` asks the left-out ones again.
#[must_use]
pub fn recovery_repos(repos: &[RepoFacts]) -> RecoveryRepos {
    let mut set = RecoveryRepos::default();
    for repo in repos {
        let reason = match &repo.status {
            RepoStatus::Backups { .. } | RepoStatus::NoBackups => {
                set.consulted.push(repo.repo.clone());
                continue;
            }
            RepoStatus::Unreachable { .. } => "unreachable when the restore was decided",
            RepoStatus::NoStanza => "it held no stanza when the restore was decided",
            RepoStatus::EmptyUnproven { .. } => {
                "it held no stanza when the restore was decided (an empty directory, not proven \
                 to be the repository)"
            }
        };
        set.left_out.push(LeftOut {
            repo: repo.repo.number,
            repo_name: repo.repo.name.clone(),
            reason: reason.to_owned(),
        });
    }
    set
}

/// See [`recovery_repos`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryRepos {
    pub consulted: Vec<RepoRef>,
    pub left_out: Vec<LeftOut>,
}

impl RecoveryRepos {
    /// The numbers `pg-preseed archive-get --repos` takes.
    #[must_use]
    pub fn numbers(&self) -> Vec<u32> {
        self.consulted.iter().map(|repo| repo.number).collect()
    }
}

/// Usable candidates in configured order, adding a reason per repository. `Err(next)` when the
/// repositories cannot be trusted to answer (one is unreachable and none is usable).
fn usable_candidates(
    facts: &Facts,
    policy: &Policy,
    draft: &mut Draft,
) -> Result<Vec<Candidate>, String> {
    let Some(repos) = &facts.repos else {
        draft
            .reasons
            .push("the repositories were not examined".to_owned());
        return Err("run `pg-preseed plan` to see what the repositories hold".to_owned());
    };
    let mut candidates = Vec::new();
    let mut unreachable = Vec::new();
    for repo in repos {
        match &repo.status {
            RepoStatus::Unreachable { reason } => {
                draft
                    .reasons
                    .push(format!("{} is unreachable: {reason}", repo.repo));
                unreachable.push(repo.repo.to_string());
            }
            RepoStatus::NoStanza => draft
                .reasons
                .push(format!("{} is reachable and has no such stanza", repo.repo)),
            RepoStatus::EmptyUnproven { reason, .. } => draft.reasons.push(format!(
                "{} has no such stanza, but that proves nothing: {reason}",
                repo.repo
            )),
            RepoStatus::NoBackups => draft
                .reasons
                .push(format!("{} has the stanza but no backup", repo.repo)),
            RepoStatus::Backups { backups, wal } => {
                match pitr::eligible(backups, Some(wal), &policy.target, policy.set.as_deref())
                    .and_then(|usable| pick(&usable, policy).cloned())
                    .and_then(|backup| {
                        pitr::reaches(&policy.target, &backup, Some(wal), policy.now)
                            .map(|()| backup)
                    }) {
                    Ok(backup) => {
                        draft.reasons.push(format!(
                            "{} has backup {} (PostgreSQL {}, {})",
                            repo.repo,
                            backup.label,
                            backup
                                .pg_major
                                .map_or_else(|| "?".to_owned(), |m| m.to_string()),
                            finished(policy.now, backup.stop)
                        ));
                        if backup.error {
                            draft.warnings.push(format!(
                                "backup {} in {} recorded page checksum errors when it was taken",
                                backup.label, repo.repo
                            ));
                        }
                        if let Some(reason) = pitr::describe(&policy.target, &backup) {
                            draft.reasons.push(format!("{}: {reason}", repo.repo));
                        }
                        candidates.push(Candidate {
                            repo: repo.repo.clone(),
                            backup,
                        });
                    }
                    Err(why) => draft.reasons.push(format!("{}: {why}", repo.repo)),
                }
            }
        }
    }
    if candidates.is_empty() && !unreachable.is_empty() {
        draft.reasons.push(
            "an unreachable repository is not an empty one: it may hold the backups".to_owned(),
        );
        return Err(format!(
            "bring {} back (network, NFS mount, credentials in the EnvironmentFile), then start \
             again; or raise pgbackrest.repo_wait if it comes up late at boot",
            unreachable.join(", ")
        ));
    }
    Ok(candidates)
}

/// The backup the policy allows from one repository, or why none.
fn pick<'a>(backups: &'a [Backup], policy: &Policy) -> Result<&'a Backup, String> {
    let backup = match &policy.set {
        Some(set) => backups.iter().find(|b| &b.label == set).ok_or_else(|| {
            format!("backup set {set} (pgbackrest.set) is not in this repository")
        })?,
        None => backups
            .iter()
            .max_by_key(|b| b.stop)
            .ok_or_else(|| "no backup".to_owned())?,
    };
    match backup.pg_major {
        Some(major) if major == policy.major => {}
        Some(major) => {
            return Err(format!(
                "{} backup {} is PostgreSQL {major}, but this server is PostgreSQL {}; a backup \
                 of another major version is never restored: restore it with PostgreSQL {major} \
                 and upgrade with pg_upgrade (then `pgbackrest stanza-upgrade`), or take a new \
                 backup of a PostgreSQL {} cluster",
                if policy.set.is_some() {
                    "the chosen"
                } else {
                    "the newest"
                },
                backup.label,
                policy.major,
                policy.major
            ))
        }
        None => {
            return Err(format!(
                "the PostgreSQL version of backup {} is unknown",
                backup.label
            ))
        }
    }
    if let Some(max_age) = policy.max_backup_age {
        let Some(age) = backup_age(policy.now, backup.stop) else {
            return Err(format!(
                "backup {}: {}, so its age cannot be checked against max_backup_age; restore it \
                 by hand if it really is the best there is",
                backup.label,
                finished(policy.now, backup.stop)
            ));
        };
        if age > i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX) {
            return Err(format!(
                "backup {} is {} old, older than max_backup_age ({}); restore it by hand if it \
                 really is the best there is",
                backup.label,
                age_text(age),
                humantime::format_duration(max_age)
            ));
        }
    }
    Ok(backup)
}

/// How far a stop time may lie ahead of this host's clock and still be believed (clocks of the
/// backup host and this one differ).
const CLOCK_SKEW: i64 = 86400;

/// A backup's age at `now` in seconds, when its stop time (from pgBackRest's JSON) is a time: not
/// before 1970, not more than a day ahead of `now`. Checked arithmetic: `now - i64::MIN` once
/// overflowed (a panic, or in a release build a negative age that passed any maximum).
#[must_use]
pub fn backup_age(now: i64, stop: i64) -> Option<i64> {
    if stop < 0 || stop > now.saturating_add(CLOCK_SKEW) {
        return None;
    }
    now.checked_sub(stop).map(|age| age.max(0))
}

/// "finished <time>, <age> old", or that the stop time is not one.
fn finished(now: i64, stop: i64) -> String {
    match backup_age(now, stop) {
        Some(age) => format!(
            "finished {}, {} old",
            crate::clock::unix_to_rfc3339(stop),
            age_text(age)
        ),
        None => format!("its stop time ({stop}) is not a valid time"),
    }
}

fn age_text(seconds: i64) -> String {
    let seconds = u64::try_from(seconds).unwrap_or(0);
    let rounded = if seconds >= 86400 {
        seconds / 3600 * 3600
    } else if seconds >= 3600 {
        seconds / 60 * 60
    } else {
        seconds
    };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

#[cfg(test)]
mod tests {
    //! One test per row of DESIGN.md's decision table, then the policies.

    use super::*;
    use crate::preflight::{Finding, Kind};
    use crate::receipt::Receipt;

    const NOW: i64 = 1_800_000_000;
    const SYSID: u64 = 7_000_000_000_000_000_001;

    fn policy() -> Policy {
        Policy {
            pgdata: "/var/lib/postgresql/16".to_owned(),
            major: 16,
            mode: Mode::Restore,
            on_no_backup: OnNoBackup::Fail,
            set: None,
            max_backup_age: None,
            target: Target::default(),
            now: NOW,
            config_path: "/etc/pg-preseed/config.json".to_owned(),
            allow_fresh: false,
        }
    }

    fn backup(label: &str, major: u32, age: i64) -> Backup {
        Backup {
            label: label.to_owned(),
            kind: "full".to_owned(),
            start: NOW - age - 60,
            stop: NOW - age,
            pg_major: Some(major),
            system_id: Some(SYSID),
            size: Some(1 << 20),
            error: false,
        }
    }

    fn repo(number: u32, status: RepoStatus) -> RepoFacts {
        RepoFacts {
            repo: RepoRef { number, name: None },
            status,
        }
    }

    fn with_backup(number: u32) -> RepoFacts {
        repo(
            number,
            RepoStatus::Backups {
                backups: vec![
                    backup("OLD", 16, 7200),
                    backup(&format!("NEW{number}"), 16, 3600),
                ],
                wal: WalFacts::default(),
            },
        )
    }

    fn unreachable(number: u32) -> RepoFacts {
        repo(
            number,
            RepoStatus::Unreachable {
                reason: "repository path /mnt/nas/pgbackrest does not exist".to_owned(),
            },
        )
    }

    fn receipt(system_identifier: u64) -> ReceiptState {
        ReceiptState::Valid {
            receipt: Box::new(Receipt {
                format: 1,
                tool_version: "0.1.0".to_owned(),
                host: "db".to_owned(),
                pgdata: "/var/lib/postgresql/16".into(),
                postgres_major: 16,
                system_identifier,
                action: Origin::Restored,
                source: None,
                restored_at: Some("2026-01-01T00:00:00Z".to_owned()),
                verified_at: Some("2026-01-01T00:05:00Z".to_owned()),
                duration_seconds: None,
                restored_bytes: None,
                checks: vec![],
                recovery: None,
                phases: crate::receipt::Phases::default(),
                replayed_until: None,
                post_restore: None,
            }),
        }
    }

    fn claim(kind: ClaimKind) -> Claim {
        Claim {
            format: 1,
            kind,
            pgdata: "/var/lib/postgresql/16".into(),
            host: "db".to_owned(),
            tool_version: "0.1.0".to_owned(),
            started_at: "2026-01-01T00:00:00Z".to_owned(),
            attempts: vec![],
            source: None,
            finished_at: None,
            duration_seconds: None,
            restored_bytes: None,
            backup_system_identifier: None,
            phases: crate::receipt::Phases::default(),
            replayed_until: None,
            post_restore: None,
            second_primary: None,
        }
    }

    fn facts(pgdata: PgdataState, marker: ReceiptState, repos: Option<Vec<RepoFacts>>) -> Facts {
        let initialized = matches!(pgdata, PgdataState::Initialized { .. });
        Facts {
            pgdata,
            system_identifier: initialized.then_some(SYSID),
            system_identifier_error: None,
            receipt: marker,
            claim: None,
            preflight: Preflight::default(),
            repos,
        }
    }

    fn initialized() -> PgdataState {
        PgdataState::Initialized {
            pg_version: Some("16".to_owned()),
            postmaster_pid: false,
        }
    }

    fn in_progress() -> PgdataState {
        PgdataState::RestoreInProgress {
            backup_label: Some("NEW1".to_owned()),
        }
    }

    fn stacked() -> Preflight {
        Preflight {
            findings: vec![Finding {
                kind: Kind::StackedMount,
                path: "/var/lib/postgresql/16".to_owned(),
                detail: "2 filesystems are mounted at /var/lib/postgresql/16".to_owned(),
                fix: "zfs set mountpoint=none tank/services/postgres".to_owned(),
                blocking: true,
            }],
            warnings: vec![],
            notes: vec![],
        }
    }

    fn decide_default(facts: &Facts) -> Decision {
        decide(facts, &policy())
    }

    fn repo_numbers(action: &Action) -> Vec<u32> {
        match action {
            Action::Restore(c) | Action::Resume(c) => c.iter().map(|c| c.repo.number).collect(),
            _ => vec![],
        }
    }

    // any | any | any, with a layering or mount finding | REFUSE
    #[test]
    fn row_finding_refuses_whatever_else_is_true() {
        for pgdata in [
            PgdataState::Empty,
            initialized(),
            in_progress(),
            PgdataState::Missing,
        ] {
            let mut f = facts(pgdata, receipt(SYSID), Some(vec![with_backup(1)]));
            f.preflight = stacked();
            assert!(!needs_repos(&f), "repositories are not even asked");
            let d = decide_default(&f);
            assert_eq!(d.action, Action::Refuse);
            assert_eq!(
                d.reasons,
                ["2 filesystems are mounted at /var/lib/postgresql/16"]
            );
            assert!(d.next.unwrap().contains("nothing was changed"));
        }
    }

    // initialized | absent | — | ADOPT
    #[test]
    fn row_initialized_without_marker_adopts() {
        let f = facts(initialized(), ReceiptState::Absent, None);
        assert!(!needs_repos(&f));
        assert_eq!(decide_default(&f).action, Action::Adopt);
    }

    // initialized | valid, same system id | — | SKIP
    #[test]
    fn row_initialized_with_matching_marker_skips() {
        let d = decide_default(&facts(initialized(), receipt(SYSID), None));
        assert_eq!(d.action, Action::Skip);
        assert!(d.warnings.is_empty());
    }

    // initialized | valid, other system id | — | ADOPT with a warning
    #[test]
    fn row_initialized_with_other_marker_adopts_with_warning() {
        let d = decide_default(&facts(initialized(), receipt(42), None));
        assert_eq!(d.action, Action::Adopt);
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].contains("by hand"));
    }

    // missing/empty | any | a usable backup | RESTORE
    #[test]
    fn row_empty_with_usable_backup_restores_for_any_marker() {
        for pgdata in [PgdataState::Missing, PgdataState::Empty] {
            for marker in [
                ReceiptState::Absent,
                receipt(SYSID),
                ReceiptState::Unreadable {
                    error: "x".to_owned(),
                },
            ] {
                let f = facts(pgdata.clone(), marker, Some(vec![with_backup(1)]));
                assert!(needs_repos(&f));
                let d = decide_default(&f);
                let Action::Restore(candidates) = &d.action else {
                    panic!("expected restore, got {d:?}");
                };
                assert_eq!(candidates[0].backup.label, "NEW1", "the newest backup");
            }
        }
    }

    // missing/empty | absent | reachable, no stanza or no backup | FRESH if initdb, else REFUSE
    #[test]
    fn row_empty_without_marker_and_empty_repos_is_fresh_only_with_initdb() {
        for status in [RepoStatus::NoStanza, RepoStatus::NoBackups] {
            let f = facts(
                PgdataState::Empty,
                ReceiptState::Absent,
                Some(vec![repo(1, status.clone()), repo(2, RepoStatus::NoStanza)]),
            );
            let d = decide_default(&f);
            assert_eq!(d.action, Action::Refuse);
            assert!(d.next.unwrap().contains("on_no_backup"));
            let mut p = policy();
            p.on_no_backup = OnNoBackup::Initdb;
            assert_eq!(decide(&f, &p).action, Action::Fresh);
        }
    }

    /// Issue 10.13: an empty directory where a repository should be (a share that did not
    /// mount) is not an empty repository: never a first deployment, unless the operator says so
    /// by hand; a backup in another repository is still restored.
    #[test]
    fn row_empty_without_marker_and_an_unproven_empty_repo_is_not_fresh() {
        let unproven = || {
            repo(
                1,
                RepoStatus::EmptyUnproven {
                    path: "/mnt/nas/pgbackrest".to_owned(),
                    reason: "its path is a directory on the root filesystem".to_owned(),
                },
            )
        };
        let f = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![unproven(), repo(2, RepoStatus::NoStanza)]),
        );
        let mut p = policy();
        p.on_no_backup = OnNoBackup::Initdb;
        let d = decide(&f, &p);
        assert_eq!(d.action, Action::Refuse);
        let next = d.next.unwrap();
        assert!(next.contains("repo1 at /mnt/nas/pgbackrest"), "{next}");
        assert!(next.contains("--allow-fresh"), "{next}");
        assert!(
            d.reasons.iter().any(|r| r.contains("proves nothing")),
            "{:?}",
            d.reasons
        );
        p.allow_fresh = true;
        assert_eq!(decide(&f, &p).action, Action::Fresh);

        let with_backup = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![unproven(), with_backup(2)]),
        );
        assert!(matches!(
            decide(&with_backup, &policy()).action,
            Action::Restore(_)
        ));
    }

    // missing/empty | present | no usable backup, or unreachable | REFUSE
    #[test]
    fn row_empty_with_marker_and_no_backup_never_initdbs() {
        let mut p = policy();
        p.on_no_backup = OnNoBackup::Initdb;
        for repos in [
            vec![repo(1, RepoStatus::NoStanza)],
            vec![repo(1, RepoStatus::NoBackups)],
            vec![unreachable(1)],
            vec![repo(
                1,
                RepoStatus::Backups {
                    backups: vec![backup("B", 15, 60)],
                    wal: WalFacts::default(),
                },
            )],
        ] {
            for marker in [
                receipt(SYSID),
                ReceiptState::Unreadable {
                    error: "garbage".to_owned(),
                },
            ] {
                let d = decide(&facts(PgdataState::Empty, marker, Some(repos.clone())), &p);
                assert_eq!(d.action, Action::Refuse, "{repos:?}");
            }
        }
    }

    // missing/empty | absent | unreachable (after the configured wait) | REFUSE
    #[test]
    fn row_empty_without_marker_and_unreachable_repo_refuses() {
        let mut p = policy();
        p.on_no_backup = OnNoBackup::Initdb;
        let f = facts(
            PgdataState::Missing,
            ReceiptState::Absent,
            Some(vec![unreachable(1), repo(2, RepoStatus::NoStanza)]),
        );
        let d = decide(&f, &p);
        assert_eq!(d.action, Action::Refuse);
        assert!(d.reasons.iter().any(|r| r.contains("not an empty one")));
        assert!(d.next.unwrap().contains("repo1"));
    }

    // restore in progress | any | reachable | RESUME with --delta
    #[test]
    fn row_restore_in_progress_resumes_when_the_claim_is_ours() {
        let mut f = facts(in_progress(), receipt(SYSID), Some(vec![with_backup(1)]));
        f.claim = Some(claim(ClaimKind::Restore));
        assert!(needs_repos(&f));
        let d = decide_default(&f);
        assert_eq!(d.action.name(), "resume");
        // …and refuses when the only repository cannot be reached.
        f.repos = Some(vec![unreachable(1)]);
        assert_eq!(decide_default(&f).action, Action::Refuse);
    }

    #[test]
    fn restore_in_progress_without_our_claim_is_left_alone() {
        let f = facts(
            in_progress(),
            ReceiptState::Absent,
            Some(vec![with_backup(1)]),
        );
        assert!(!needs_repos(&f));
        let d = decide_default(&f);
        assert_eq!(d.action, Action::Refuse);
        assert!(d.next.unwrap().contains("--delta restore"));
    }

    // partial | any | any | REFUSE
    /// The kill -9 window: pgBackRest created the cluster's directories and was stopped before
    /// it wrote its manifest. With pg-preseed's claim: restored again (the directories are
    /// removed first); without it: refused like any other unknown contents.
    #[test]
    fn only_empty_directories_restore_again_only_with_our_claim() {
        let skeleton = PgdataState::Partial {
            entries: vec!["base".to_owned(), "global".to_owned()],
            total: 2,
            only_directories: true,
        };
        let mut f = facts(
            skeleton.clone(),
            ReceiptState::Absent,
            Some(vec![with_backup(1)]),
        );
        assert!(!needs_repos(&f));
        assert_eq!(decide_default(&f).action, Action::Refuse);
        f.claim = Some(claim(ClaimKind::Restore));
        assert!(needs_repos(&f));
        let d = decide_default(&f);
        assert!(matches!(d.action, Action::Restore(_)), "{d:?}");
        assert!(d
            .reasons
            .iter()
            .any(|r| r.contains("empty directories pgBackRest creates")));
        // A file among them: unknown contents, refused even with the claim.
        f.pgdata = PgdataState::Partial {
            entries: vec!["base".to_owned()],
            total: 1,
            only_directories: false,
        };
        assert_eq!(decide_default(&f).action, Action::Refuse);
    }

    /// Issue 10.16: PGDATA at the root of a dataset with `snapdir=visible` lists ZFS's `.zfs`.
    /// No data, but pgBackRest (error 040) and initdb refuse such a directory: refused with the
    /// fix, with or without a receipt, before any repository is asked.
    #[test]
    fn pgdata_listing_only_zfs_control_dir_refuses_with_the_fix() {
        for marker in [ReceiptState::Absent, receipt(SYSID)] {
            let f = facts(
                PgdataState::EmptyZfsSnapdirVisible,
                marker,
                Some(vec![with_backup(1)]),
            );
            assert!(!needs_repos(&f));
            let d = decide_default(&f);
            assert_eq!(d.action, Action::Refuse);
            let next = d.next.unwrap_or_default();
            assert!(next.contains("zfs set snapdir=hidden"), "{next}");
            assert!(
                d.reasons.iter().any(|r| r.contains("snapdir=visible")),
                "{:?}",
                d.reasons
            );
        }
    }

    #[test]
    fn row_partial_refuses() {
        let partial = PgdataState::Partial {
            entries: vec!["base".to_owned(), "postmaster.pid".to_owned()],
            total: 2,
            only_directories: false,
        };
        for marker in [ReceiptState::Absent, receipt(SYSID)] {
            let f = facts(partial.clone(), marker, Some(vec![with_backup(1)]));
            assert!(!needs_repos(&f));
            assert_eq!(decide_default(&f).action, Action::Refuse);
        }
    }

    #[test]
    fn policy_guard_never_restores_and_prints_the_command() {
        let mut p = policy();
        p.mode = Mode::Guard;
        let d = decide(
            &facts(
                PgdataState::Empty,
                receipt(SYSID),
                Some(vec![with_backup(1)]),
            ),
            &p,
        );
        assert_eq!(d.action, Action::Refuse);
        assert!(d
            .next
            .unwrap()
            .contains("pg-preseed run --config /etc/pg-preseed/config.json --allow-restore"));
        // Adoption is not a restore: guard allows it.
        assert_eq!(
            decide(&facts(initialized(), ReceiptState::Absent, None), &p).action,
            Action::Adopt
        );
    }

    /// Issue 15.5: the stop time comes from pgBackRest's JSON (a backup.info someone edited, a
    /// bug): i64::MIN made `now - stop` overflow (a panic; in a release build a wrapped,
    /// negative age that passed max_backup_age), i64::MAX made the time text panic. Neither
    /// panics now, the reasons say the time is not one, and a maximum age cannot be proven for
    /// such a backup, so it is not restored automatically.
    #[test]
    fn malformed_backup_stop_times_are_reported_not_trusted() {
        let infos = crate::pgbackrest::parse_info(include_str!(
            "../tests/fixtures/pgbackrest-info-malformed-stop.json"
        ))
        .unwrap();
        let repos: Vec<RepoFacts> = [1, 2]
            .into_iter()
            .map(|n| {
                let view = crate::pgbackrest::repo_view(&infos, "main", n).unwrap();
                repo(
                    n,
                    RepoStatus::Backups {
                        backups: view.backups,
                        wal: WalFacts::default(),
                    },
                )
            })
            .collect();
        let mut p = policy();
        p.major = 15;
        p.max_backup_age = Some(Duration::from_secs(7 * 86400));
        let f = facts(PgdataState::Empty, ReceiptState::Absent, Some(repos));
        let d = decide(&f, &p);
        assert_eq!(d.action, Action::Refuse, "{d:?}");
        assert_eq!(
            d.reasons
                .iter()
                .filter(|r| r.contains("not a valid time"))
                .count(),
            2,
            "{d:?}"
        );
        p.max_backup_age = None;
        let d = decide(&f, &p);
        assert_eq!(d.action.name(), "restore", "{d:?}");
        assert!(
            d.reasons.iter().any(|r| r.contains("not a valid time")),
            "{d:?}"
        );
    }

    #[test]
    fn policy_max_backup_age() {
        let mut p = policy();
        p.max_backup_age = Some(Duration::from_secs(1800));
        let d = decide(
            &facts(
                PgdataState::Empty,
                ReceiptState::Absent,
                Some(vec![with_backup(1)]),
            ),
            &p,
        );
        assert_eq!(d.action, Action::Refuse);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("older than max_backup_age")),
            "{d:?}"
        );
        p.max_backup_age = Some(Duration::from_secs(7200));
        assert_eq!(
            decide(
                &facts(
                    PgdataState::Empty,
                    ReceiptState::Absent,
                    Some(vec![with_backup(1)])
                ),
                &p
            )
            .action
            .name(),
            "restore"
        );
    }

    #[test]
    fn policy_major_mismatch_explains_the_upgrade_path() {
        let f = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![repo(
                1,
                RepoStatus::Backups {
                    backups: vec![backup("B15", 15, 60)],
                    wal: WalFacts::default(),
                },
            )]),
        );
        let d = decide_default(&f);
        assert_eq!(d.action, Action::Refuse);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("PostgreSQL 15") && r.contains("pg_upgrade")),
            "{d:?}"
        );
    }

    #[test]
    fn policy_newest_backup_of_another_major_is_not_skipped_for_an_older_one() {
        // After an upgrade the newest data is in the new major's backups; restoring the older
        // major's last backup would silently lose it.
        let f = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![repo(
                1,
                RepoStatus::Backups {
                    backups: vec![backup("B16", 16, 7200), backup("B17", 17, 60)],
                    wal: WalFacts::default(),
                },
            )]),
        );
        assert_eq!(decide_default(&f).action, Action::Refuse);
    }

    /// Recovery targets, decided before anything is written: one row per case. Backups OLD and
    /// NEW{n} end 2 h and 1 h before NOW; no WAL facts (only the time checks apply).
    #[test]
    fn policy_recovery_target_table() {
        let at = |seconds_before_now: i64| {
            crate::clock::unix_to_rfc3339(NOW - seconds_before_now)
                .replace('T', " ")
                .replace('Z', "+00")
        };
        let time = |value: String| Target {
            kind: crate::config::TargetType::Time,
            value: Some(value),
        };
        let rows: [(Target, Result<&str, &str>); 5] = [
            // Between the two backups: the older one, the newest that ends before the target.
            (time(at(5400)), Ok("OLD")),
            (time(at(60)), Ok("NEW1")),
            (
                time(at(3 * 3600)),
                Err("is before the end of the oldest backup here (OLD, which ends at"),
            ),
            (time(at(-600)), Err("is in the future")),
            (
                Target {
                    kind: crate::config::TargetType::Name,
                    value: Some("before-upgrade".to_owned()),
                },
                Ok("NEW1"),
            ),
        ];
        for (target, expected) in rows {
            let mut p = policy();
            p.target = target.clone();
            let d = decide(
                &facts(
                    PgdataState::Empty,
                    receipt(SYSID),
                    Some(vec![with_backup(1)]),
                ),
                &p,
            );
            match (&d.action, expected) {
                (Action::Restore(candidates), Ok(label)) => {
                    assert_eq!(candidates[0].backup.label, label, "{target:?}");
                }
                (Action::Refuse, Err(needle)) => assert!(
                    d.reasons
                        .iter()
                        .any(|r| r.starts_with("repo1: the target") && r.contains(needle)),
                    "{target:?}: {d:?}"
                ),
                (action, expected) => panic!("{target:?}: {action:?}, expected {expected:?}"),
            }
        }
    }

    /// Which repositories recovery consults after the restore: one row per repository status.
    /// Those that answered with the stanza are consulted in configured order; the others are
    /// left out with the reason the receipt records (repository fallback must be able to finish
    /// while repo1 is down: scenarios::repo_fallback).
    #[test]
    fn recovery_consults_the_repositories_that_answered_with_the_stanza() {
        let unproven = RepoStatus::EmptyUnproven {
            path: "/mnt/nas/pgbackrest".to_owned(),
            reason: "an empty directory on the root filesystem".to_owned(),
        };
        let rows: [(RepoFacts, Option<&str>); 5] = [
            (
                unreachable(1),
                Some("unreachable when the restore was decided"),
            ),
            (with_backup(2), None),
            (repo(3, RepoStatus::NoBackups), None),
            (
                repo(4, RepoStatus::NoStanza),
                Some("it held no stanza when the restore was decided"),
            ),
            (
                repo(5, unproven),
                Some("it held no stanza when the restore was decided (an empty directory"),
            ),
        ];
        let repos: Vec<RepoFacts> = rows.iter().map(|(repo, _)| repo.clone()).collect();
        let set = recovery_repos(&repos);
        assert_eq!(set.numbers(), [2, 3]);
        for (repo, left_out) in &rows {
            let found = set.left_out.iter().find(|l| l.repo == repo.repo.number);
            match (left_out, found) {
                (None, None) => {}
                (Some(reason), Some(found)) => {
                    assert!(found.reason.starts_with(reason), "{found:?}");
                }
                (expected, found) => panic!("{:?}: {found:?}, expected {expected:?}", repo.repo),
            }
        }
        // The decision that comes with it: restore from repo2, with repo1 down.
        let d = decide_default(&facts(
            PgdataState::Empty,
            receipt(SYSID),
            Some(vec![unreachable(1), with_backup(2)]),
        ));
        assert_eq!(repo_numbers(&d.action), [2]);
        assert_eq!(
            recovery_repos(&[unreachable(1), with_backup(2)])
                .left_out
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["repo1: unreachable when the restore was decided"]
        );
    }

    #[test]
    fn policy_set_picks_the_label_and_misses_cleanly() {
        let mut p = policy();
        p.set = Some("OLD".to_owned());
        let d = decide(
            &facts(
                PgdataState::Empty,
                ReceiptState::Absent,
                Some(vec![with_backup(1)]),
            ),
            &p,
        );
        let Action::Restore(candidates) = d.action else {
            panic!()
        };
        assert_eq!(candidates[0].backup.label, "OLD");
        p.set = Some("NOPE".to_owned());
        let d = decide(
            &facts(
                PgdataState::Empty,
                ReceiptState::Absent,
                Some(vec![with_backup(1)]),
            ),
            &p,
        );
        assert_eq!(d.action, Action::Refuse);
    }

    #[test]
    fn policy_on_layering_warn_lets_the_table_decide_and_warns() {
        let mut f = facts(initialized(), receipt(SYSID), None);
        f.preflight = stacked();
        f.preflight.findings[0].blocking = false;
        let d = decide_default(&f);
        assert_eq!(d.action, Action::Skip);
        assert!(d.warnings[0].contains("on_layering"));
    }

    #[test]
    fn repos_are_candidates_in_configured_order_and_unreachable_ones_are_skipped() {
        let f = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![unreachable(1), with_backup(2), with_backup(3)]),
        );
        let d = decide_default(&f);
        assert_eq!(repo_numbers(&d.action), [2, 3]);
        assert!(d.reasons.iter().any(|r| r.contains("repo1 is unreachable")));
    }

    #[test]
    fn finished_restore_awaiting_verification_is_skipped() {
        let mut f = facts(initialized(), receipt(SYSID), None);
        f.claim = Some(claim(ClaimKind::Restore));
        let d = decide_default(&f);
        assert_eq!(d.action, Action::Skip);
        assert!(d.reasons.iter().any(|r| r.contains("pg-preseed verify")));
    }

    #[test]
    fn unreadable_system_identifier_refuses_adoption() {
        let mut f = facts(initialized(), ReceiptState::Absent, None);
        f.system_identifier = None;
        f.system_identifier_error = Some("pg_controldata failed".to_owned());
        assert_eq!(decide_default(&f).action, Action::Refuse);
    }

    #[test]
    fn restore_claim_counts_as_having_had_data() {
        let mut p = policy();
        p.on_no_backup = OnNoBackup::Initdb;
        let mut f = facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![repo(1, RepoStatus::NoStanza)]),
        );
        f.claim = Some(claim(ClaimKind::Restore));
        assert_eq!(decide(&f, &p).action, Action::Refuse);
    }

    #[test]
    fn decision_json_has_the_contract_fields() {
        let d = decide_default(&facts(
            PgdataState::Empty,
            ReceiptState::Absent,
            Some(vec![with_backup(1)]),
        ));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["decision"], "restore");
        assert!(json["reasons"].is_array());
        assert_eq!(json["candidates"][0]["repo"]["number"], 1);
    }
}
