//! `verify`'s proof that the recovery of a cluster pg-preseed restored ended where it should: at
//! the end of the archive, or at the recovery target the restore asked for. The comparisons are
//! in [`crate::recovery`]; this edge asks the server where replay ended (its timeline's history
//! file) and each configured repository whether it holds WAL on that timeline beyond the last
//! segment replayed (`pgbackrest archive-get` of the next segment, `pgbackrest info`).
//!
//! Conservative by design: a repository recovery consulted that cannot be asked makes the check
//! fail (no receipt). One recovery left out (unreachable when the restore was decided, or without
//! the stanza) fails it only when it is reachable now and holds more; still out of reach, it is a
//! warning. Replay that stopped short cannot be undone on this PGDATA — the server has promoted —
//! so the operator's way on is a new restore once the WAL is reachable (docs/operations.md).

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{RepoRef, TargetType};
use crate::context::Context;
use crate::decision::RepoStatus;
use crate::facts;
use crate::fsutil;
use crate::pgbackrest::{self, code};
use crate::pitr;
use crate::postgres::Connection;
use crate::primaries::{before_decision, segment_at_decision, Decided};
use crate::receipt::{CheckResult, Claim, PrimaryGuard, RecoveryEnd, Source};
use crate::recovery::{self, Asked, ReplayEnd, RepoAnswer};
use crate::wal::{self, Segment};

/// One `info` or `archive-get` call.
const REPO_TIMEOUT: Duration = Duration::from_secs(120);
/// History files are a line per timeline switch.
const MAX_HISTORY_BYTES: u64 = 1024 * 1024;

/// The check's result, and what the receipt records when it passed. `guard`: a guard against a
/// second primary (what each repository held when the restore was decided) — WAL on the
/// replayed timeline archived into a repository after that was pushed by another server (the
/// watch reports it), not missed by recovery.
#[must_use]
pub fn check(
    ctx: &Context,
    conn: &Connection,
    pgdata: &Utf8Path,
    system_identifier: u64,
    claim: &Claim,
    query_timeout: Duration,
    guard: Option<&PrimaryGuard>,
) -> (CheckResult, Option<RecoveryEnd>) {
    let target = claim
        .source
        .as_ref()
        .and_then(|source| source.target.clone())
        .filter(|target| target.kind != TargetType::Default);
    let name = if target.is_some() {
        "recovery reached its target"
    } else {
        "recovery reached the end of the archive"
    };
    let judged = replay_end(ctx, conn, pgdata, query_timeout).map(|(end, segment_size)| {
        if let Some(target) = &target {
            return recovery::judge_target(&end, segment_size, target);
        }
        let probe = probe_dir(ctx, ".pg-preseed-probe-").map(|dir| Probe {
            dir,
            pgdata,
            system_identifier,
        });
        let last = end.last_segment(segment_size);
        let answers: Vec<RepoAnswer> = roles(ctx, claim.source.as_ref())
            .into_iter()
            .map(|(repo, left_out)| {
                let newest = probe.as_ref().map_err(Clone::clone).and_then(|probe| {
                    if left_out.is_some() {
                        left_out_newest(ctx, &repo, probe, last, segment_size)
                    } else {
                        newest_segment(ctx, &repo, probe, last, segment_size)
                    }
                });
                let decided = guard.map_or(Decided::Unknown, |guard| {
                    segment_at_decision(guard, repo.number)
                });
                let newest = newest.map(|newest| before_decision(newest, &decided, segment_size));
                RepoAnswer {
                    repo,
                    left_out,
                    newest,
                }
            })
            .collect();
        if let Ok(probe) = &probe {
            let _ = std::fs::remove_dir_all(&probe.dir);
        }
        recovery::judge_archive_end(&end, segment_size, &answers)
    });
    match judged {
        Ok(judged) => {
            if judged.ok {
                tracing::info!(detail = %judged.detail, "{name}");
            } else {
                tracing::error!(detail = %judged.detail, "verification check failed: {name}");
            }
            for warning in &judged.end.warnings {
                tracing::warn!("{warning}");
            }
            let ok = judged.ok;
            (
                CheckResult {
                    name: name.to_owned(),
                    ok,
                    detail: Some(judged.detail),
                },
                ok.then_some(judged.end),
            )
        }
        Err(error) => {
            let detail = format!("where replay ended cannot be read: {error}");
            tracing::error!(detail = %detail, "verification check failed: {name}");
            (
                CheckResult {
                    name: name.to_owned(),
                    ok: false,
                    detail: Some(detail),
                },
                None,
            )
        }
    }
}

/// Every configured repository, with why recovery left it out (`None`: it consulted it). The
/// claim's source says which recovery consulted; one configured since (not in the claim) was not
/// consulted either. A claim from before this was recorded: every repository was consulted.
fn roles(ctx: &Context, source: Option<&Source>) -> Vec<(RepoRef, Option<String>)> {
    let consulted = source.map_or(&[][..], |s| s.recovery_repos.as_slice());
    ctx.config
        .pgbackrest
        .repos
        .iter()
        .map(|repo| {
            if consulted.is_empty() || consulted.contains(&repo.number) {
                return (repo.clone(), None);
            }
            let reason = source
                .and_then(|s| s.left_out.iter().find(|l| l.repo == repo.number))
                .map_or_else(
                    || "configured after the restore was decided".to_owned(),
                    |left_out| left_out.reason.clone(),
                );
            (repo.clone(), Some(reason))
        })
        .collect()
}

/// A fresh directory beside the receipt for `archive-get`'s downloads, named `prefix` and this
/// process's id, owned by the user pgBackRest runs as (the receipt's directory is the engine's,
/// and never on PGDATA's filesystem).
pub(crate) fn probe_dir(ctx: &Context, prefix: &str) -> Result<Utf8PathBuf, String> {
    let parent = ctx
        .files
        .receipt
        .parent()
        .ok_or("the receipt path has no directory")?;
    let dir = parent.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fsutil::create_dirs(&dir, 0o700, ctx.owner())
        .map_err(|e| format!("failed to create {dir}: {e:#}"))?;
    Ok(dir)
}

/// Where replay ended (from the history file of the timeline the server is on now) and the WAL
/// segment size.
pub(crate) fn replay_end(
    ctx: &Context,
    conn: &Connection,
    pgdata: &Utf8Path,
    timeout: Duration,
) -> Result<(ReplayEnd, u64), String> {
    let row = conn
        .query_row(
            &ctx.tools,
            ctx.children.as_ref(),
            "SELECT pg_walfile_name(pg_current_wal_lsn()), \
             (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')",
            timeout,
        )
        .map_err(|e| format!("{e:#}"))?
        .ok_or("the server returned no row")?;
    let value = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let walfile = value(0);
    let timeline = wal::timeline_of(&walfile)
        .ok_or_else(|| format!("unexpected WAL file name {walfile:?} from the server"))?;
    let segment_size: u64 = value(1)
        .parse()
        .map_err(|_| format!("unexpected wal_segment_size {:?} from the server", value(1)))?;
    if timeline <= 1 {
        return ReplayEnd::from_history(timeline, "").map(|end| (end, segment_size));
    }
    let path = pgdata
        .join("pg_wal")
        .join(format!("{}.history", wal::timeline_name(timeline)));
    let bytes = fsutil::read_nofollow(&path, MAX_HISTORY_BYTES)
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| {
            format!("{path} does not exist: the server is on timeline {timeline} but its history file is gone")
        })?;
    let end = ReplayEnd::from_history(timeline, &String::from_utf8_lossy(&bytes))
        .map_err(|e| format!("{path}: {e}"))?;
    Ok((end, segment_size))
}

/// For a repository recovery left out: first whether it answers at all and holds the stanza
/// (the decision's own classification, without waiting) — one without the stanza holds nothing
/// beyond; one that is unreachable, or an empty directory that proves nothing, cannot be asked —
/// then the same question as for the others.
fn left_out_newest(
    ctx: &Context,
    repo: &RepoRef,
    probe: &Probe<'_>,
    last: Segment,
    segment_size: u64,
) -> Result<Option<Segment>, String> {
    match facts::repo_status(ctx, repo) {
        RepoStatus::Unreachable { reason } => Err(reason),
        RepoStatus::EmptyUnproven { reason, .. } => Err(format!(
            "it has no stanza, but that proves nothing: {reason}"
        )),
        RepoStatus::NoStanza => Ok(None),
        RepoStatus::NoBackups | RepoStatus::Backups { .. } => {
            newest_segment(ctx, repo, probe, last, segment_size)
        }
    }
}

/// The newest segment `repo` is known to hold on the timeline replay ended on: the segment
/// after the last one replayed when it holds it (fetched into the probe directory the way
/// recovery would have fetched it next, then removed), else `info`'s newest segment when that is
/// on this timeline (beyond the last one replayed only with a gap in the archive). `Ok(None)`:
/// nothing known; `Err`: the repository cannot be asked.
///
/// Not `pgbackrest repo-ls`: in 2.45 it lists a posix path that does not exist as empty (exit
/// 0), so a repository that went away would look like one without WAL; and `info` alone cannot
/// tell the newest segment of an older timeline once a newer one is archived.
fn newest_segment(
    ctx: &Context,
    repo: &RepoRef,
    probe: &Probe<'_>,
    last: Segment,
    segment_size: u64,
) -> Result<Option<Segment>, String> {
    let stanza = ctx.config.pgbackrest.stanza.as_str();
    let info = ctx
        .pgbackrest(pgbackrest::info_argv(&ctx.stanza, repo.number, false))
        .output(Some(REPO_TIMEOUT))
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .map_err(|error| recovery::one_line(&error.to_string(), ""))?;
    let infos = pgbackrest::parse_info(&info)
        .map_err(|e| format!("unexpected `pgbackrest info` output: {e}"))?;
    let view = pgbackrest::repo_view(&infos, stanza, repo.number)?;
    if view.code != code::OK && view.code != code::NO_BACKUP {
        return Err(format!(
            "pgBackRest reports status {}: {}",
            view.code, view.message
        ));
    }
    let facts = pitr::wal_facts(&infos, stanza, repo.number)?;
    let mut newest: Option<Segment> = None;
    let mut consider = |segment: Segment| {
        if segment.timeline == last.timeline && newest.is_none_or(|n| segment.number > n.number) {
            newest = Some(segment);
        }
    };
    for archive in facts.archives.iter().filter(|archive| {
        archive.system_id == Some(probe.system_identifier)
            && archive.major == Some(ctx.config.postgres.major)
    }) {
        if let Some(max) = archive
            .max
            .as_deref()
            .and_then(|max| Segment::parse(max, segment_size))
        {
            consider(max);
        }
    }
    let (next, asked) = ask_next_segment(ctx, repo, probe.pgdata, &probe.dir, last, segment_size);
    match asked {
        Asked::Fetched => consider(next),
        Asked::NotThere => {}
        Asked::Failed(why) => return Err(why),
    }
    Ok(newest)
}

/// Asks `repo` (`pgbackrest archive-get`, the way recovery would fetch it next) for the segment
/// after `after` on its timeline, downloading it into `dir` for `pgdata`'s cluster and removing
/// the download again: that segment and what the answer means.
pub(crate) fn ask_next_segment(
    ctx: &Context,
    repo: &RepoRef,
    pgdata: &Utf8Path,
    dir: &Utf8Path,
    after: Segment,
    segment_size: u64,
) -> (Segment, Asked) {
    let next = Segment {
        timeline: after.timeline,
        number: after.number + 1,
    };
    let name = next.name(segment_size);
    let destination = dir.join(format!("{name}.repo{}", repo.number));
    let argv = pgbackrest::archive_get_argv(&pgbackrest::ArchiveGet {
        stanza: &ctx.stanza,
        repo: repo.number,
        pgdata,
        wal: &name,
        destination: &destination,
    });
    let asked = archive_get(ctx, argv, REPO_TIMEOUT);
    let _ = std::fs::remove_file(&destination);
    (next, asked)
}

/// Runs one `pgbackrest archive-get` (`argv`), ended after `timeout`, and says what its answer
/// means. Also the restore_command's (`pg-preseed archive-get`) way of asking.
pub(crate) fn archive_get(ctx: &Context, argv: Vec<String>, timeout: Duration) -> Asked {
    match ctx.pgbackrest(argv).output_any_status(Some(timeout)) {
        Ok(output) => {
            use std::os::unix::process::ExitStatusExt as _;
            recovery::classify_archive_get(
                output.status.code(),
                output.status.signal(),
                &String::from_utf8_lossy(&output.stderr),
            )
        }
        Err(error) => Asked::Failed(recovery::one_line(&error.to_string(), "")),
    }
}

/// Where the probe fetches to, and for which cluster.
struct Probe<'a> {
    dir: Utf8PathBuf,
    pgdata: &'a Utf8Path,
    system_identifier: u64,
}
