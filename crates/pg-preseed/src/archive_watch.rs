//! The edge of [`crate::primaries`]: what a restore records of its repositories when it is
//! decided, the archive_command hold in postgresql.auto.conf (installed by `run` after
//! pgBackRest restored, made sure of by `initdb-guard` at every start of PostgreSQL, released by
//! `verify`), and the looks at the repositories — once by `run` right after the restore, then by
//! `verify` from the end of recovery for `second_primary.watch`.
//!
//! Why a hold and not pgBackRest's `--archive-mode=off`: archive_command takes effect on a reload,
//! archive_mode only on a restart (time a recovering host does not have, and dropped
//! connections); and with archiving off PostgreSQL never marks the WAL it writes meanwhile for
//! archiving — the new timeline's history file and first segments would be missing from the
//! archive for good. A failing archive_command keeps every file in pg_wal until it goes out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use camino::Utf8Path;

use crate::clock;
use crate::config::{RepoRef, SecondPrimaryMode};
use crate::context::Context;
use crate::decision::{RepoFacts, RepoStatus};
use crate::facts;
use crate::fsutil;
use crate::pgbackrest;
use crate::postgres::Connection;
use crate::primaries::{self, Seen, Writer};
use crate::receipt::{ArchiveHold, CheckResult, Claim, ClaimKind, PrimaryGuard};
use crate::recovery::{self, Asked};
use crate::recovery_end;
use crate::wal::Segment;

/// One `repo-ls`, `archive-get` or query.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a reload may take to show in a new session.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// postgresql.auto.conf is a few lines.
const MAX_CONF_BYTES: u64 = 1024 * 1024;

/// Whether a restore now guards against a second primary (`second_primary.mode` is not "off").
#[must_use]
pub fn active(ctx: &Context) -> bool {
    ctx.config.second_primary.mode != SecondPrimaryMode::Off
}

/// The guard for a restore being decided, from the decision's own `info` of each repository
/// recovery consults (nothing is asked again): the cluster `system_id`'s newest archived segment
/// and newest backup there.
#[must_use]
pub fn guard_for_restore(
    ctx: &Context,
    repos: &[RepoFacts],
    consulted: &[RepoRef],
    system_id: Option<u64>,
    allowed: bool,
) -> PrimaryGuard {
    let now = clock::now_rfc3339();
    let at = clock::unix_now();
    let marks = consulted
        .iter()
        .map(|repo| {
            let seen = repos
                .iter()
                .find(|r| r.repo.number == repo.number)
                .and_then(|r| match &r.status {
                    RepoStatus::Backups { backups, wal } => Some(primaries::seen(
                        repo,
                        backups,
                        wal,
                        system_id,
                        ctx.config.postgres.major,
                        at,
                    )),
                    _ => None,
                });
            primaries::mark(repo, seen.as_ref())
        })
        .collect();
    PrimaryGuard {
        decided_at: now.clone(),
        system_identifier: system_id.map(|id| id.to_string()),
        marks,
        hold: None,
        allowed_at: allowed.then_some(now),
    }
}

/// After pgBackRest restored: installs the hold, records it in the claim, and looks at each
/// repository recovery consults once more — the restore itself was the first window. Returns
/// what another writer added since the decision, when one did (the caller refuses or warns).
///
/// # Errors
/// When the hold cannot be installed or the claim written: the restored server must not start
/// archiving unseen.
pub fn after_restore(ctx: &Context, claim: &mut Claim) -> anyhow::Result<Option<String>> {
    let Some(guard) = claim.second_primary.as_mut() else {
        return Ok(None);
    };
    let hold = install_hold(ctx, &ctx.config.pgdata, guard.hold.as_ref())?;
    tracing::info!(archive_command = %hold.command, "archiving held until `pg-preseed verify` has made sure no other server writes the repository");
    guard.hold = Some(hold);
    ctx.files.write_claim(claim, ctx.owner())?;
    let Some(guard) = claim.second_primary.as_ref() else {
        return Ok(None);
    };
    let system_id = guard
        .system_identifier
        .as_deref()
        .and_then(|id| id.parse().ok());
    let mut looks = Vec::new();
    for repo in watched_repos(ctx, guard) {
        match look(ctx, &repo, system_id, None) {
            Ok(seen) => looks.push(seen),
            Err(why) => {
                tracing::warn!(repo = %repo, error = %why, "could not look at the repository after the restore");
            }
        }
    }
    Ok(
        primaries::other_writer(Some(guard), &[], &looks, None)
            .map(|writer| describe(ctx, &writer)),
    )
}

/// Records in the claim that the operator allows a second primary (`run
/// --allow-second-primary` once the restore is done): the next `verify` warns instead of
/// refusing. Returns what to tell the operator, or `None` when there is no guard to allow.
///
/// # Errors
/// When the claim cannot be written.
pub fn allow(ctx: &Context, claim: &Claim) -> anyhow::Result<Option<String>> {
    let mut claim = claim.clone();
    let Some(guard) = claim.second_primary.as_mut() else {
        return Ok(None);
    };
    let at = guard
        .allowed_at
        .get_or_insert_with(clock::now_rfc3339)
        .clone();
    ctx.files.write_claim(&claim, ctx.owner())?;
    tracing::warn!(allowed_at = %at, "a second primary is allowed for this restore: verify warns instead of refusing, and releases archiving");
    Ok(Some(format!(
        "recorded in the claim {}: a second primary is allowed for this restore (since {at}); \
         `pg-preseed verify` (systemctl restart postgresql-preseed-verify) now reports another \
         writer as a warning and releases archiving",
        ctx.files.claim
    )))
}

/// The repositories to look at: those the decision recorded, named as configured now.
fn watched_repos(ctx: &Context, guard: &PrimaryGuard) -> Vec<RepoRef> {
    let configured = &ctx.config.pgbackrest.repos;
    if guard.marks.is_empty() {
        return configured.clone();
    }
    guard
        .marks
        .iter()
        .map(|mark| {
            configured
                .iter()
                .find(|repo| repo.number == mark.repo)
                .cloned()
                .unwrap_or(RepoRef {
                    number: mark.repo,
                    name: mark.repo_name.clone(),
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// the hold

/// Appends the hold to `pgdata`'s postgresql.auto.conf (unless it already ends with it) and
/// returns its record. `recorded`: what an earlier install recorded (its `previous` is kept).
///
/// # Errors
/// When postgresql.auto.conf cannot be read or written, or this executable's path cannot go
/// into archive_command.
pub fn install_hold(
    ctx: &Context,
    pgdata: &Utf8Path,
    recorded: Option<&ArchiveHold>,
) -> anyhow::Result<ArchiveHold> {
    let exe = crate::restore::own_executable()?;
    let command = primaries::hold_command(exe.as_str()).map_err(|m| anyhow::anyhow!(m))?;
    let path = pgdata.join("postgresql.auto.conf");
    let text = read_conf(&path)?;
    let current = recovery::setting(&text, "archive_command");
    let previous = match recorded {
        Some(hold) => hold.previous.clone(),
        None => current.clone().filter(|c| !primaries::is_hold(c)),
    };
    if current.as_deref() != Some(command.as_str()) {
        write_conf(&path, &primaries::conf_with_hold(&text, &command), ctx)?;
    }
    Ok(ArchiveHold {
        command,
        previous,
        installed_at: recorded.map_or_else(clock::now_rfc3339, |h| h.installed_at.clone()),
    })
}

/// `initdb-guard`'s part, at every start of PostgreSQL: a cluster restored by pg-preseed and not
/// verified yet (its claim) starts with archiving held — also when `run` was cut off between
/// pgBackRest's end and installing the hold (the restore unit is skipped once PGDATA holds a
/// cluster). Writes only postgresql.auto.conf: postgresql.service may not write the receipt's
/// directory. Returns a warning when it had to put the hold back.
///
/// # Errors
/// When postgresql.auto.conf cannot be read or written.
pub fn ensure_hold(ctx: &Context, claim: &Claim) -> anyhow::Result<Option<String>> {
    if !active(ctx) || claim.kind != ClaimKind::Restore {
        return Ok(None);
    }
    let Some(guard) = &claim.second_primary else {
        return Ok(None);
    };
    let path = ctx.config.pgdata.join("postgresql.auto.conf");
    let current = recovery::setting(&read_conf(&path)?, "archive_command");
    if current.as_deref().is_some_and(primaries::is_hold) {
        return Ok(None);
    }
    let hold = install_hold(ctx, &ctx.config.pgdata, guard.hold.as_ref())?;
    let warning = format!(
        "put the archive_command hold back into {path} ({}): this restore has not been verified \
         yet, so it must not archive before `pg-preseed verify` has made sure no other server \
         writes the repository",
        hold.command
    );
    tracing::warn!("{warning}");
    Ok(Some(warning))
}

fn read_conf(path: &Utf8Path) -> anyhow::Result<String> {
    let bytes = fsutil::read_nofollow(path, MAX_CONF_BYTES)?.unwrap_or_default();
    String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))
}

/// Replaces postgresql.auto.conf atomically, keeping its mode (0600, or 0640 with group access).
fn write_conf(path: &Utf8Path, text: &str, ctx: &Context) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::symlink_metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
    fsutil::atomic_write(path, text.as_bytes(), mode, ctx.owner())
        .with_context(|| format!("failed to hold archiving in {path}"))
}

/// Releases the hold on the running server: archive_command back to what postgresql.auto.conf
/// set before (else postgresql.conf's), a reload, and a new session that shows it. Returns what
/// archive_command is now, or `None` when nothing was held.
///
/// # Errors
/// When the statement fails (the verify user must be allowed ALTER SYSTEM) or the reload does
/// not show.
pub fn release(
    ctx: &Context,
    conn: &Connection,
    pgdata: &Utf8Path,
    claim: Option<&Claim>,
) -> anyhow::Result<Option<String>> {
    let path = pgdata.join("postgresql.auto.conf");
    let text = read_conf(&path)?;
    if !recovery::setting(&text, "archive_command")
        .as_deref()
        .is_some_and(primaries::is_hold)
    {
        return Ok(None);
    }
    // What was there before: recorded when the hold was installed; else what the file still
    // says under the hold (a hold put back by initdb-guard, which cannot write the claim).
    let recorded = claim
        .and_then(|c| c.second_primary.as_ref())
        .and_then(|g| g.hold.as_ref());
    let previous = match recorded {
        Some(hold) => hold.previous.clone(),
        None => previous_setting(&text),
    };
    let query = |sql: &str| conn.query_first(&ctx.tools, ctx.children.as_ref(), sql, CALL_TIMEOUT);
    query(&primaries::release_sql(previous.as_deref()))
        .context("failed to release archiving (ALTER SYSTEM archive_command; the verify user must be allowed ALTER SYSTEM)")?;
    query("SELECT pg_reload_conf()").context("failed to reload the configuration")?;
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let now = query("SHOW archive_command")?.unwrap_or_default();
        if !primaries::is_hold(&now) {
            tracing::info!(archive_command = %now, "archiving released");
            return Ok(Some(now));
        }
        if Instant::now() >= deadline {
            bail!(
                "archive_command is still the hold {}s after the reload",
                RELOAD_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The archive_command postgresql.auto.conf sets without pg-preseed's hold lines.
fn previous_setting(text: &str) -> Option<String> {
    let mut without = String::new();
    for line in text.lines().filter(|line| {
        line.trim() != primaries::HOLD_COMMENT
            && !recovery::setting(line, "archive_command")
                .as_deref()
                .is_some_and(primaries::is_hold)
    }) {
        without.push_str(line);
        without.push('\n');
    }
    recovery::setting(&without, "archive_command")
}

// ---------------------------------------------------------------------------------------------
// looking

/// Where replay ended, for the looks in `verify`: the timeline it ended on, the last segment it
/// replayed, the PGDATA whose pg_control `archive-get` reads, and where it may download to.
struct Replay<'a> {
    timeline: u32,
    last: Segment,
    segment_size: u64,
    pgdata: &'a Utf8Path,
    probe_dir: &'a Utf8Path,
}

/// One look at one repository: `pgbackrest info` (the decision's own classification, no
/// waiting) and — in `verify`, when the timeline replay ended on is not the newest one the
/// repository holds, so `info` cannot list its head — `archive-get` of the segment after the
/// newest known on it (`known_on_timeline`, from earlier looks, else the last one replayed).
fn look(
    ctx: &Context,
    repo: &RepoRef,
    system_id: Option<u64>,
    replay: Option<(&Replay<'_>, Option<Segment>)>,
) -> Result<Seen, String> {
    let at = clock::unix_now();
    let mut seen = match facts::repo_status(ctx, repo) {
        RepoStatus::Backups { backups, wal } => primaries::seen(
            repo,
            &backups,
            &wal,
            system_id,
            ctx.config.postgres.major,
            at,
        ),
        RepoStatus::NoBackups => primaries::seen(
            repo,
            &[],
            &crate::pitr::WalFacts::default(),
            system_id,
            ctx.config.postgres.major,
            at,
        ),
        RepoStatus::Unreachable { reason } | RepoStatus::EmptyUnproven { reason, .. } => {
            return Err(reason)
        }
        RepoStatus::NoStanza => return Err("the stanza is not there".to_owned()),
    };
    let Some((replay, known)) = replay else {
        return Ok(seen);
    };
    let newest_timeline = seen.newest.as_deref().and_then(crate::wal::timeline_of);
    if newest_timeline == Some(replay.timeline) {
        return Ok(seen);
    }
    // `known` is on replay's timeline: earlier looks record only segments they asked for on it.
    let known = known.unwrap_or(replay.last).max(replay.last);
    let (next, asked) = recovery_end::ask_next_segment(
        ctx,
        repo,
        replay.pgdata,
        replay.probe_dir,
        known,
        replay.segment_size,
    );
    match asked {
        Asked::Fetched => seen.on_timeline = Some(next.name(replay.segment_size)),
        Asked::NotThere => {
            seen.on_timeline = (known > replay.last).then(|| known.name(replay.segment_size));
        }
        Asked::Failed(why) => return Err(why),
    }
    Ok(seen)
}

/// The other writer in words, with the time the repository stored its newest segment when
/// `repo-ls` can tell.
fn describe(ctx: &Context, writer: &Writer) -> String {
    let file_time = match (&writer.segment, &writer.archive_id) {
        (Some(segment), Some(archive_id)) => ctx
            .pgbackrest(pgbackrest::repo_ls_argv(
                &ctx.stanza,
                writer.repo.number,
                archive_id,
                segment,
            ))
            .output(Some(CALL_TIMEOUT))
            .ok()
            .and_then(|output| {
                pgbackrest::segment_file_time(&String::from_utf8_lossy(&output.stdout), segment)
            }),
        _ => None,
    };
    writer.describe(file_time)
}

/// What `verify`'s watch found: the check for the receipt, the way on when it refused, warnings.
#[derive(Debug, Clone)]
pub struct Watched {
    pub check: CheckResult,
    /// The way on, when another writer makes it refuse.
    pub refused: Option<String>,
    pub warnings: Vec<String>,
}

/// `verify`'s watch, for a restore that recorded a guard: looks at each repository recovery
/// consults from the end of recovery for `second_primary.watch` (every few seconds), comparing
/// with what the decision recorded and with the first look, and stops early when another writer
/// shows. `allow`: `verify --allow-second-primary`. `None` when there is nothing to watch
/// (`second_primary.mode = "off"`, or a restore from before the guard).
#[must_use]
pub fn watch(
    ctx: &Context,
    conn: &Connection,
    pgdata: &Utf8Path,
    claim: &Claim,
    allow: bool,
) -> Option<Watched> {
    let guard = claim.second_primary.as_ref()?;
    let mode = ctx.config.second_primary.mode;
    if mode == SecondPrimaryMode::Off {
        return None;
    }
    let tolerated = if allow {
        Some("`verify --allow-second-primary`".to_owned())
    } else if let Some(at) = &guard.allowed_at {
        Some(format!("`run --allow-second-primary` at {at}"))
    } else {
        (mode == SecondPrimaryMode::Warn).then(|| "second_primary.mode = \"warn\"".to_owned())
    };
    let mut warnings = Vec::new();
    let query = |sql: &str| conn.query_first(&ctx.tools, ctx.children.as_ref(), sql, CALL_TIMEOUT);
    match query("SHOW archive_command") {
        Ok(Some(command)) if primaries::is_hold(&command) => {}
        Ok(command) => warnings.push(format!(
            "archiving was not held (archive_command is {:?}): this server may have archived \
             already — on its own timeline, which the watch does not count",
            command.unwrap_or_default()
        )),
        Err(error) => warnings.push(format!("archive_command could not be read: {error:#}")),
    }
    let system_id = guard
        .system_identifier
        .as_deref()
        .and_then(|id| id.parse().ok());
    let ended = recovery_end::replay_end(ctx, conn, pgdata, CALL_TIMEOUT);
    let own_timeline = match &ended {
        Ok((end, _)) => Some(end.new_timeline),
        Err(_) => query("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .ok()
            .flatten()
            .and_then(|name| crate::wal::timeline_of(&name)),
    };
    let probe_dir = recovery_end::probe_dir(ctx, ".pg-preseed-watch-");
    let replay = match (&ended, &probe_dir) {
        (Ok((end, segment_size)), Ok(dir)) => Some(Replay {
            timeline: end.timeline,
            last: end.last_segment(*segment_size),
            segment_size: *segment_size,
            pgdata,
            probe_dir: dir,
        }),
        _ => None,
    };
    let repos = watched_repos(ctx, guard);
    let window = ctx.config.second_primary.watch;
    let interval = primaries::look_interval(window);
    let started = Instant::now();
    let mut first: Vec<Seen> = Vec::new();
    let mut last: Vec<Seen> = Vec::new();
    let mut known: BTreeMap<u32, Segment> = BTreeMap::new();
    let mut failures: BTreeMap<u32, String> = BTreeMap::new();
    let mut answered: BTreeMap<u32, usize> = BTreeMap::new();
    let mut looks = 0;
    let writer = loop {
        looks += 1;
        let mut now = Vec::new();
        for repo in &repos {
            let replay = replay
                .as_ref()
                .map(|replay| (replay, known.get(&repo.number).copied()));
            match look(ctx, repo, system_id, replay) {
                Ok(seen) => {
                    if let (Some(replay), Some(on)) = (&replay, &seen.on_timeline) {
                        if let Some(segment) = Segment::parse(on, replay.0.segment_size) {
                            known.insert(repo.number, segment);
                        }
                    }
                    *answered.entry(repo.number).or_default() += 1;
                    now.push(seen);
                }
                Err(why) => {
                    tracing::warn!(repo = %repo, error = %why, "could not look at the repository");
                    failures.insert(repo.number, why);
                }
            }
        }
        let found = primaries::other_writer(Some(guard), &first, &now, own_timeline);
        for seen in &now {
            if !first.iter().any(|f| f.repo.number == seen.repo.number) {
                first.push(seen.clone());
            }
        }
        if !now.is_empty() {
            last = now;
        }
        let elapsed = started.elapsed();
        if found.is_some() || elapsed >= window {
            break found;
        }
        std::thread::sleep(interval.min(window.saturating_sub(elapsed)));
    };
    if let Ok(dir) = &probe_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    let watched_for = started.elapsed().as_secs_f64();
    for repo in &repos {
        if !answered.contains_key(&repo.number) {
            warnings.push(format!(
                "{repo} could not be asked while watching for another writer ({})",
                failures
                    .get(&repo.number)
                    .map_or("no answer", String::as_str)
            ));
        }
    }
    let name = primaries::CHECK.to_owned();
    if let Some(writer) = writer {
        let text = describe(ctx, &writer);
        tracing::warn!(repo = %writer.repo, segment = writer.segment.as_deref().unwrap_or_default(), "{text}");
        return Some(match tolerated {
            None => Watched {
                check: CheckResult {
                    name,
                    ok: false,
                    detail: Some(format!(
                        "{text}; this server's archiving stays held (archive_command = \
                         pg-preseed archive-hold), so nothing of it reached the repository"
                    )),
                },
                refused: Some(primaries::way_on(
                    ctx.config_path.as_str(),
                    ctx.config.pgdata.as_str(),
                )),
                warnings,
            },
            Some(why) => {
                let warning = format!(
                    "{text}; archiving is released all the same ({why}): two primaries now \
                     archive into one repository"
                );
                warnings.push(warning.clone());
                Watched {
                    check: CheckResult {
                        name,
                        ok: true,
                        detail: Some(format!("WARNING: {warning}")),
                    },
                    refused: None,
                    warnings,
                }
            }
        });
    }
    if answered.is_empty() {
        return Some(Watched {
            check: CheckResult {
                name,
                ok: false,
                detail: Some(format!(
                    "no repository could be asked while watching for another writer ({}): not \
                     verified; archiving stays held",
                    failures
                        .iter()
                        .map(|(repo, why)| format!("repo{repo}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            },
            refused: None,
            warnings,
        });
    }
    let newest: Vec<String> = last
        .iter()
        .map(|seen| {
            format!(
                "{} newest {}",
                seen.repo,
                seen.newest.as_deref().unwrap_or("none")
            )
        })
        .collect();
    Some(Watched {
        check: CheckResult {
            name,
            ok: true,
            detail: Some(format!(
                "no WAL or backup from another server since the restore was decided at {} \
                 ({looks} look(s) over {watched_for:.1}s after recovery ended; {})",
                guard.decided_at,
                newest.join(", ")
            )),
        },
        refused: None,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_there_before_the_hold() {
        let hold = primaries::hold_command("/bin/pg-preseed").unwrap();
        let text = primaries::conf_with_hold(
            "# Do not edit this file manually!\narchive_command = 'cp %p /a/%f'\nrestore_command = 'x'\n",
            &hold,
        );
        assert_eq!(previous_setting(&text).as_deref(), Some("cp %p /a/%f"));
        let text = primaries::conf_with_hold("restore_command = 'x'\n", &hold);
        assert_eq!(previous_setting(&text), None);
        // After an ALTER SYSTEM by someone else, the file keeps one line per setting.
        let rewritten = format!("archive_command = '{hold}'\n");
        assert_eq!(previous_setting(&rewritten), None);
    }
}
