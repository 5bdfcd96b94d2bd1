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
    let mut answers = Vec::new();
    for repo in repos {
        let get = pgbackrest::archive_get_argv(&pgbackrest::ArchiveGet {
            stanza: &ctx.stanza,
            repo: repo.number,
            pgdata,
            wal,
            destination: &destination,
        });
        let asked = match ctx.pgbackrest(get).output_any_status(Some(TIMEOUT)) {
            Ok(output) => {
                use std::os::unix::process::ExitStatusExt as _;
                recovery::classify_archive_get(
                    output.status.code(),
                    output.status.signal(),
                    &String::from_utf8_lossy(&output.stderr),
                )
            }
            Err(error) => Asked::Failed(recovery::one_line(&error.to_string(), "")),
        };
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
