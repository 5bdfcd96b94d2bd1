//! `archive-get`: PostgreSQL's restore_command after a pg-preseed restore (installed by
//! [`crate::restore::Install`]). The rules are in [`crate::recovery`]; this runs pgBackRest once
//! per repository recovery consults and tells PostgreSQL the verdict through the exit status (0
//! fetched, 1 not in any of them, 255 one could not be asked), with one line on stderr
//! (PostgreSQL's log) whenever a repository failed.
//!
//! Not a `Session` (see `commands`): it runs inside PostgreSQL's recovery, once per WAL file,
//! while `verify` may hold the lock waiting for that very recovery to end; it takes no lock and
//! records no outcome.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::{ArchiveGetArgs, Cli};
use crate::config::RepoRef;
use crate::context::Context;
use crate::fsutil;
use crate::pgbackrest;
use crate::recovery::{self, Asked, Verdict};

pub use crate::recovery::CANNOT_ASK;

/// One repository's `archive-get` may take this long. A hard NFS mount that went away blocks
/// forever; ended here, recovery stops loudly instead of hanging without a word. A 16 MiB
/// segment from a slow object store fits many times over.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Whether this process was started as `pg-preseed … archive-get …` (for the exit status of a
/// command line that does not parse).
#[must_use]
pub fn invoked() -> bool {
    std::env::args_os().skip(1).any(|arg| arg == "archive-get")
}

/// Runs the restore_command; never ends with another status than the three above, even on a
/// panic.
#[must_use]
pub fn archive_get(cli: &Cli, args: &ArchiveGetArgs) -> u8 {
    let wal = args.wal.clone();
    std::panic::catch_unwind(|| fetch(cli, args)).unwrap_or_else(|_| {
        eprintln!(
            "pg-preseed archive-get {wal}: internal error (see above); stopping recovery (exit {CANNOT_ASK})"
        );
        CANNOT_ASK
    })
}

fn fetch(cli: &Cli, args: &ArchiveGetArgs) -> u8 {
    let wal = args.wal.as_str();
    let stop = |message: &str| {
        eprintln!("pg-preseed archive-get {wal}: {message}; stopping recovery (exit {CANNOT_ASK})");
        CANNOT_ASK
    };
    let ctx = match Context::load(&cli.config) {
        Ok(ctx) => ctx,
        Err(error) => return stop(&format!("cannot read the config: {error:#}")),
    };
    let pgdata = args.pgdata.as_ref().unwrap_or(&ctx.config.pgdata);
    // PostgreSQL runs restore_command in PGDATA and passes a destination relative to it. The
    // engine runs pgBackRest in "/", so it gets the destination made absolute — after the same
    // check pgBackRest makes: that this is the PGDATA the command was installed for.
    let destination = match absolute_destination(pgdata, &args.destination) {
        Ok(destination) => destination,
        Err(message) => return stop(&message),
    };
    let repos = match consulted(&ctx.config.pgbackrest.repos, args.repos.as_deref()) {
        Ok(repos) => repos,
        Err(message) => return stop(&message),
    };
    let one = |repo: &RepoRef| pgbackrest::ArchiveGet {
        stanza: &ctx.stanza,
        repo: repo.number,
        pgdata,
        wal,
        destination: &destination,
    };
    let settings = &ctx.config.pgbackrest.archive_get;
    // The fast path: the first repository's prefetch queue. Only "fetched" is believed from it;
    // anything else is asked again below, exactly as without it (see `archive_get_async_argv`).
    let behind = crate::restore::queue_behind_marker(&ctx.config);
    // The queue did not deliver (not there yet, timed out, failed) and a direct ask will tell.
    let mut queue_missed = false;
    let started = crate::restore::queue_started_marker(&ctx.config);
    let queue_on = settings.asynchronous && is_segment(wal) && !behind.exists();
    // Looked at once: whether this recovery has asked the queue before.
    let queue_started = queue_on && started.exists();
    let use_queue = queue_on
        && through_the_queue(
            crate::restore::queue_dir(&ctx.config).join(wal).exists(),
            queue_started,
        );
    if let Some(first) = repos.first().filter(|_| use_queue) {
        if !queue_started {
            // Not writable: the queue in the same directory fails too, and is asked again.
            let _ = std::fs::write(&started, format!("{wal}\n"));
        }
        let queue = pgbackrest::Queue {
            spool_path: &settings.spool_path,
            queue_max: settings.queue_max,
            process_max: queue_processes(settings.process_max),
        };
        match ask(
            &ctx,
            pgbackrest::archive_get_async_argv(&one(first), &queue),
        ) {
            Asked::Fetched => return recovery::FETCHED,
            // The end of the archive, or pgBackRest's wait for its queue timed out: asked again.
            Asked::NotThere => queue_missed = true,
            Asked::Failed(why) => {
                queue_missed = true;
                eprintln!(
                    "pg-preseed archive-get {wal}: the prefetch queue in {} did not deliver it from {first} ({why}); asking the repositories directly",
                    settings.spool_path
                );
            }
        }
    }
    let mut answers = Vec::new();
    for repo in repos {
        let asked = ask(&ctx, pgbackrest::archive_get_argv(&one(&repo)));
        if asked == Asked::Fetched {
            let failed: Vec<String> = answers
                .iter()
                .filter_map(|(repo, asked): &(RepoRef, Asked)| match asked {
                    Asked::Failed(why) => Some(format!("{repo}: {why}")),
                    _ => None,
                })
                .collect();
            if !failed.is_empty() {
                eprintln!(
                    "pg-preseed archive-get {wal}: fetched from {repo}; could not ask {}",
                    failed.join("; ")
                );
            }
            if queue_missed {
                // The queue is behind the archive: it grows while recovery reads it (a server
                // still archiving), or the queue's process fails or is slow. At the head each
                // segment would cost a round of the queue (up to its wait) before the direct
                // ask, slower than a writer, and recovery might never catch up. Directly from
                // now on, for this recovery (`run` and `drill` remove the mark).
                match std::fs::write(&behind, format!("{wal}\n")) {
                    Ok(()) => eprintln!(
                        "pg-preseed archive-get {wal}: the archive grew after the prefetch queue looked; asking the repositories directly from now on"
                    ),
                    Err(error) => eprintln!(
                        "pg-preseed archive-get {wal}: the archive grew after the prefetch queue looked, and {behind} cannot be written ({error})"
                    ),
                }
            }
            return recovery::FETCHED;
        }
        answers.push((repo, asked));
    }
    match recovery::verdict(wal, &answers) {
        Verdict::NotFound => recovery::NOT_FOUND,
        Verdict::CannotAsk(line) => {
            eprintln!("{line}");
            CANNOT_ASK
        }
    }
}

/// Whether this segment is asked through the prefetch queue: when the queue holds it already
/// (`held`), and for the first segment of a recovery (`started`: the queue has not been asked
/// yet), which starts the queue's process. A segment the queue does not hold is asked directly.
///
/// Why: pgBackRest 2.45's `archive-get --archive-async`, asked for a segment not in its queue,
/// starts its asynchronous process again (clearing its record of where the archive ended, the
/// `.ok` files) and waits for it — a new process and `process_max` helpers per round, 0.3 s
/// with 2 of them, 1 s with 8, plus its polling. Behind a server still archiving, every round
/// found the segment archived meanwhile, so the queue never answered "not there", and replay,
/// one round per segment or two, followed the writer without end (primaries::* timed out at
/// 120 s with the queue on; docs/performance.md). Asked directly, a segment not archived yet is
/// "not there" at once and recovery ends, as without the queue. Where the queue is ahead of
/// replay — the case it is for — the segment is there and nothing changes: taking it starts the
/// next round while the queue is less than half full.
fn through_the_queue(held: bool, started: bool) -> bool {
    held || !started
}

/// Runs one pgBackRest `archive-get` and says what its answer means.
fn ask(ctx: &Context, argv: Vec<String>) -> Asked {
    crate::recovery_end::archive_get(ctx, argv, TIMEOUT)
}

/// A WAL segment's name (timeline, log, segment: 24 hexadecimal digits). pgBackRest queues only
/// these; history files, `.partial` and `.backup` files are fetched directly.
fn is_segment(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The processes that fill the queue: the configured number, else one per CPU (as for the
/// restore: they decompress, which is CPU work).
fn queue_processes(configured: Option<u32>) -> u32 {
    configured.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
            .min(64)
    })
}

/// The repositories to ask, in order: those of `--repos` (what the restore decided recovery
/// consults) that the config still lists — removing a repository from `pgbackrest.repos` is the
/// operator's way to give up one that is gone for good — or, without `--repos`, every configured
/// one. Names come from the config.
///
/// # Errors
/// When none is left to ask: ending recovery then would be a guess.
fn consulted(configured: &[RepoRef], wanted: Option<&[u32]>) -> Result<Vec<RepoRef>, String> {
    let Some(wanted) = wanted else {
        return Ok(configured.to_vec());
    };
    let repos: Vec<RepoRef> = wanted
        .iter()
        .filter_map(|number| configured.iter().find(|repo| repo.number == *number))
        .cloned()
        .collect();
    if repos.is_empty() {
        let listed: Vec<String> = wanted.iter().map(|n| format!("repo{n}")).collect();
        return Err(format!(
            "none of the repositories this recovery consults ({}) is in pgbackrest.repos any more",
            listed.join(", ")
        ));
    }
    Ok(repos)
}

fn absolute_destination(pgdata: &Utf8Path, destination: &str) -> Result<Utf8PathBuf, String> {
    let destination = Utf8Path::new(destination);
    if destination.is_absolute() {
        return Ok(destination.to_owned());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| format!("failed to read the current directory: {e}"))
        .and_then(|cwd| {
            Utf8PathBuf::from_path_buf(cwd)
                .map_err(|p| format!("the current directory {} is not UTF-8", p.display()))
        })?;
    if fsutil::resolve(&cwd) != fsutil::resolve(pgdata) {
        return Err(format!(
            "run in {cwd}, but installed for PGDATA {pgdata}: the relative destination {destination} would not land in the cluster being recovered"
        ));
    }
    Ok(pgdata.join(destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(number: u32, name: Option<&str>) -> RepoRef {
        RepoRef {
            number,
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn only_wal_segments_go_through_the_queue() {
        assert!(is_segment("000000010000000A000000FF"));
        assert!(!is_segment("00000002.history"));
        assert!(!is_segment("000000010000000A000000FF.partial"));
        assert!(!is_segment("000000010000000A000000FF.00000028.backup"));
        assert!(!is_segment("000000010000000a000000ff"));
        assert!(!is_segment("RECOVERYHISTORY"));
    }

    #[test]
    fn after_the_first_segment_only_what_the_queue_holds_goes_through_it() {
        assert!(
            through_the_queue(false, false),
            "the first: starts the queue"
        );
        assert!(through_the_queue(true, true), "held: taken from the queue");
        assert!(!through_the_queue(false, true), "not held: asked directly");
    }

    #[test]
    fn asks_the_repositories_the_restore_decided_on_that_are_still_configured() {
        let configured = [repo(1, Some("nfs")), repo(2, Some("s3")), repo(3, None)];
        // Without --repos (a restore_command written by hand): every configured one.
        assert_eq!(consulted(&configured, None).unwrap(), configured);
        assert_eq!(
            consulted(&configured, Some(&[3, 2])).unwrap(),
            [repo(3, None), repo(2, Some("s3"))]
        );
        // repo2 removed from the config: given up by the operator.
        assert_eq!(
            consulted(&[repo(1, Some("nfs"))], Some(&[1, 2])).unwrap(),
            [repo(1, Some("nfs"))]
        );
        let error = consulted(&[repo(1, None)], Some(&[2])).unwrap_err();
        assert_eq!(
            error,
            "none of the repositories this recovery consults (repo2) is in pgbackrest.repos any more"
        );
    }
}
