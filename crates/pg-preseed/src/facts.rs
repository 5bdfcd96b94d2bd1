//! The edge that gathers facts: mounts, ZFS, PGDATA, the receipt, the repositories. Everything
//! here reads; nothing here changes the system.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::Uid;

use crate::config::RepoRef;
use crate::context::Context;
use crate::decision::{Facts, RepoFacts, RepoStatus};
use crate::exec::ExecError;
use crate::fsutil;
use crate::mountinfo;
use crate::pgbackrest::{self, code, RepoLocation};
use crate::pgdata::{self, PgdataState};
use crate::pitr;
use crate::preflight::{self, DirStat, Layout, PgdataOwner, Preflight, ZfsState};
use crate::receipt::Claim;
use crate::zfs::Zfs;

/// How long one `pgbackrest info` may take before the repository counts as unreachable (a hard
/// NFS mount that went away blocks forever).
const INFO_TIMEOUT: Duration = Duration::from_secs(120);
const ZFS_TIMEOUT: Duration = Duration::from_secs(60);

fn nearest_existing(path: &Utf8Path) -> &Utf8Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Utf8Path::new("/"))
}

/// The kernel's mount id for the filesystem holding `path`, from `/proc/self/fdinfo`.
fn mount_id(path: &Utf8Path) -> Option<u64> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let fd = open(
        path.as_std_path(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    parse_fdinfo_mnt_id(&text)
}

/// `mnt_id:\t42` from an fdinfo file.
#[must_use]
pub fn parse_fdinfo_mnt_id(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|value| value.trim().parse().ok())
}

/// What `zfs list` says (the column subset every ZFS prints), or that there is no `zfs`.
#[must_use]
pub fn zfs_state() -> ZfsState {
    let Some(zfs) = Zfs::find(ZFS_TIMEOUT) else {
        return ZfsState::NotInstalled;
    };
    match zfs.list() {
        Ok(datasets) => ZfsState::Listed(datasets),
        Err(error) => ZfsState::Failed(error.to_string()),
    }
}

/// Gathers the layout the preflight checks look at.
#[must_use]
pub fn layout(ctx: &Context) -> Layout {
    let config = &ctx.config;
    let pgdata = fsutil::resolve(&config.pgdata);
    let configured = config.receipt_path();
    let configured_dir = configured.parent().unwrap_or(Utf8Path::new("/"));
    // Resolve the receipt's directory, not the receipt: a symlinked receipt is itself a finding.
    let receipt = fsutil::resolve(configured_dir).join(configured.file_name().unwrap_or(""));
    let receipt_dir = receipt.parent().unwrap_or(Utf8Path::new("/")).to_owned();

    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .context("failed to read /proc/self/mountinfo")
        .and_then(|text| mountinfo::parse(&text).map_err(anyhow::Error::from))
        .map_err(|e| format!("{e:#}"));

    let pgdata_exists = pgdata.exists();
    let pgdata_owner = std::fs::metadata(&pgdata).ok().map(|metadata| PgdataOwner {
        uid: metadata.uid(),
        expected_uid: ctx.pg_user.uid.as_raw(),
        expected_user: ctx.pg_user.name.clone(),
        empty: std::fs::read_dir(&pgdata).is_ok_and(|mut d| d.next().is_none()),
        fixable: Uid::effective().is_root(),
    });

    Layout {
        pgdata_mount: mount_id(nearest_existing(&pgdata)),
        receipt_dir_mount: mount_id(nearest_existing(&receipt_dir)),
        receipt_is_symlink: std::fs::symlink_metadata(&receipt)
            .is_ok_and(|m| m.file_type().is_symlink()),
        receipt_dir_unwritable: receipt_dir_problem(&receipt_dir),
        receipt_dirs: dir_chain(&receipt_dir),
        pg_user: (ctx.pg_user.uid.as_raw(), ctx.pg_user.name.clone()),
        pgdata,
        receipt,
        mounts,
        zfs: zfs_state(),
        pgdata_exists,
        pgdata_owner,
        require_mount: config.require_mount.clone(),
        on_layering: config.on_layering,
    }
}

/// `dir` (when it exists) and every existing directory above it, innermost first.
fn dir_chain(dir: &Utf8Path) -> Vec<DirStat> {
    dir.ancestors()
        .filter_map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some(DirStat {
                path: path.to_owned(),
                uid: metadata.uid(),
                user: fsutil::user_name(metadata.uid()),
                mode: metadata.mode() & 0o7777,
            })
        })
        .collect()
}

/// Why the engine (as the user it runs as) could not write the receipt's directory. Root can;
/// a missing directory is created by `run` when its nearest existing ancestor is writable.
fn receipt_dir_problem(dir: &Utf8Path) -> Option<String> {
    use nix::unistd::{access, AccessFlags};
    if Uid::effective().is_root() {
        return None;
    }
    let existing = nearest_existing(dir);
    match access(
        existing.as_std_path(),
        AccessFlags::W_OK | AccessFlags::X_OK,
    ) {
        Ok(()) => None,
        Err(errno) if existing == dir => Some(format!("{}", std::io::Error::from(errno))),
        Err(errno) => Some(format!(
            "it does not exist and {existing} is not writable ({})",
            std::io::Error::from(errno)
        )),
    }
}

/// Runs the preflight checks. Their notes (what changes nothing) go to the debug log.
#[must_use]
pub fn preflight(ctx: &Context) -> Preflight {
    let checked = preflight::check(&layout(ctx));
    for note in &checked.notes {
        tracing::debug!("{note}");
    }
    checked
}

/// Gathers everything but the repositories, around the preflight checks the command ran (once).
#[must_use]
pub fn gather(ctx: &Context, preflight: Preflight) -> Facts {
    let pgdata_state = pgdata::classify(&pgdata::observe(&ctx.config.pgdata));
    let (system_identifier, system_identifier_error) =
        if matches!(pgdata_state, PgdataState::Initialized { .. }) {
            match ctx
                .tools
                .system_identifier(&ctx.config.pgdata, ctx.children.as_ref())
            {
                Ok(id) => (Some(id), None),
                Err(error) => (None, Some(format!("{error:#}"))),
            }
        } else {
            (None, None)
        };
    let mut warnings = Vec::new();
    let claim = own_claim(ctx, &mut warnings);
    let mut facts = Facts {
        pgdata: pgdata_state,
        system_identifier,
        system_identifier_error,
        receipt: ctx.files.receipt_state(),
        claim,
        preflight,
        repos: None,
    };
    facts.preflight.warnings.extend(warnings);
    facts
}

/// The engine's claim, if it is for this PGDATA and readable.
pub fn own_claim(ctx: &Context, warnings: &mut Vec<String>) -> Option<Claim> {
    match ctx.files.claim() {
        Ok(Some(claim)) if claim.pgdata == ctx.config.pgdata => Some(claim),
        Ok(Some(claim)) => {
            warnings.push(format!(
                "ignoring the claim {}: it is for {}, not {}",
                ctx.files.claim, claim.pgdata, ctx.config.pgdata
            ));
            None
        }
        Ok(None) => None,
        Err(error) => {
            warnings.push(format!("ignoring the claim: {error:#}"));
            None
        }
    }
}

/// Asks every configured repository, in order, waiting up to `repo_wait` for unreachable ones.
#[must_use]
pub fn gather_repos(ctx: &Context) -> Vec<RepoFacts> {
    let repos = &ctx.config.pgbackrest.repos;
    let wait = ctx.config.pgbackrest.repo_wait;
    let started = Instant::now();
    let mut statuses: Vec<Option<RepoStatus>> = vec![None; repos.len()];
    let mut pause = Duration::from_secs(1);
    loop {
        let mut last_unreachable = Vec::new();
        for (index, repo) in repos.iter().enumerate() {
            if matches!(statuses[index], Some(ref s) if !matches!(s, RepoStatus::Unreachable { .. }))
            {
                continue;
            }
            let status = repo_status(ctx, repo);
            if let RepoStatus::Unreachable { reason } = &status {
                last_unreachable.push(format!("{repo}: {reason}"));
            }
            statuses[index] = Some(status);
        }
        let elapsed = started.elapsed();
        if last_unreachable.is_empty() || elapsed >= wait {
            break;
        }
        let left = wait.saturating_sub(elapsed);
        tracing::warn!(
            waiting_for = %last_unreachable.join("; "),
            seconds_left = left.as_secs(),
            "repository not reachable yet; waiting (pgbackrest.repo_wait)"
        );
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    repos
        .iter()
        .zip(statuses)
        .map(|(repo, status)| RepoFacts {
            repo: repo.clone(),
            status: status.unwrap_or(RepoStatus::Unreachable {
                reason: "not examined".to_owned(),
            }),
        })
        .collect()
}

/// One `pgbackrest info` for one repository, classified (no waiting: [`gather_repos`] waits).
#[must_use]
pub fn repo_status(ctx: &Context, repo: &RepoRef) -> RepoStatus {
    let unreachable = |reason: String| RepoStatus::Unreachable { reason };
    let info = |echo| {
        ctx.pgbackrest(pgbackrest::info_argv(&ctx.stanza, repo.number, echo))
            .output(Some(INFO_TIMEOUT))
    };
    let output = match info(false) {
        Ok(output) => output,
        Err(error) => return unreachable(exec_reason(&error)),
    };
    let stanza = &ctx.config.pgbackrest.stanza;
    let view = pgbackrest::parse_info(&String::from_utf8_lossy(&output.stdout))
        .map_err(|e| format!("unexpected `pgbackrest info` output: {e}"))
        .and_then(|infos| {
            // The same output, read for the backups' WAL positions (recovery targets).
            let wal = pitr::wal_facts(&infos, stanza, repo.number)?;
            Ok((pgbackrest::repo_view(&infos, stanza, repo.number)?, wal))
        });
    let (view, wal) = match view {
        Ok(view) => view,
        Err(reason) => return unreachable(reason),
    };
    match view.code {
        code::OK if view.backups.is_empty() => RepoStatus::NoBackups,
        code::OK => RepoStatus::Backups {
            backups: view.backups,
            wal,
        },
        code::NO_BACKUP => RepoStatus::NoBackups,
        code::MISSING_STANZA_PATH => {
            // pgBackRest says the same for "no stanza here" and "the repository path is gone"
            // (an NFS share that did not mount). Only the first is an empty repository.
            let location = info(true).ok().and_then(|output| {
                pgbackrest::parse_command_begin(&String::from_utf8_lossy(&output.stderr))
                    .map(|options| pgbackrest::repo_location(&options, repo.number))
            });
            match location {
                Some(RepoLocation::Posix { path }) => {
                    if let Some(found) = stanza_files_present(Utf8Path::new(&path), stanza) {
                        // Asked before a share finished mounting (seen on a real boot: the
                        // first answer came from the empty mountpoint, the look from the
                        // mounted share), or a repository missing part of its stanza. Neither
                        // is an empty repository: ask again (repo_wait), never initdb on it.
                        unreachable(format!(
                            "pgBackRest reports no stanza {stanza} in {path}, but {found} is there \
                             (a share mounted while it was being asked, or a damaged repository)"
                        ))
                    } else if Utf8Path::new(&path).is_dir() {
                        match unproven_empty_repo(ctx, Utf8Path::new(&path)) {
                            None => RepoStatus::NoStanza,
                            Some(reason) => RepoStatus::EmptyUnproven { path, reason },
                        }
                    } else {
                        unreachable(format!(
                            "repository path {path} does not exist (an unmounted NFS share or disk looks like this)"
                        ))
                    }
                }
                Some(RepoLocation::Remote { .. } | RepoLocation::Service { .. }) => {
                    RepoStatus::NoStanza
                }
                None => unreachable(
                    "pgBackRest reports \"missing stanza path\" and its options could not be read to tell an empty repository from a missing one".to_owned(),
                ),
            }
        }
        other => unreachable(format!(
            "pgBackRest reports status {other}: {}",
            view.message
        )),
    }
}

/// The first of the stanza's own directories (`archive/<stanza>`, `backup/<stanza>`) present
/// under a posix repository path.
fn stanza_files_present(path: &Utf8Path, stanza: &str) -> Option<Utf8PathBuf> {
    ["archive", "backup"]
        .iter()
        .map(|d| path.join(d).join(stanza))
        .find(|p| p.symlink_metadata().is_ok())
}

/// Why an existing posix repository path without the stanza is not proof of an empty
/// repository, or `None` when it is. Proof is pgBackRest's own layout there (another stanza's
/// `archive`/`backup` directories), or the path being on a filesystem of its own — mounted,
/// and neither the root filesystem nor PGDATA's. An empty directory on the root filesystem is
/// what an NFS share or disk that did not mount leaves behind (nixpkgs' pgbackrest module even
/// creates `repos.localhost.path` at activation, mounted or not).
fn unproven_empty_repo(ctx: &Context, path: &Utf8Path) -> Option<String> {
    if ["archive", "backup"].iter().any(|d| path.join(d).is_dir()) {
        return None;
    }
    // The filesystem by device: a bind mount of a directory of the root filesystem is still
    // the root filesystem.
    let device = |p: &Utf8Path| std::fs::metadata(p).ok().map(|m| m.dev());
    let repo_device = device(path)?;
    let on = if Some(repo_device) == device(Utf8Path::new("/")) {
        "the root filesystem"
    } else if Some(repo_device) == device(nearest_existing(&ctx.config.pgdata)) {
        "PGDATA's filesystem"
    } else {
        return None;
    };
    Some(format!(
        "its path {path} is a directory on {on} without any pgBackRest files (an NFS share or \
         disk that did not mount leaves exactly that)"
    ))
}

fn exec_reason(error: &ExecError) -> String {
    let (ExecError::Exited { output, .. } | ExecError::Signaled { output, .. }) = error else {
        return error.to_string();
    };
    // The first line of the error ("pgbackrest exited with status 55:", its output following
    // on the next lines), without the colon that introduced the output: one is added below.
    let head = error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_owned();
    let meaningful = || {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("DEBUG:"))
    };
    // pgBackRest's first ERROR line says what went wrong; HINT lines follow it.
    match meaningful()
        .find(|l| l.contains("ERROR"))
        .or_else(|| meaningful().next_back())
    {
        Some(line) => format!("{head}: {line}"),
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16.7: an unreachable repository's reason read "status 55:: ERROR" (the colon that
    /// introduces the output in the error's text, then ours).
    #[test]
    fn unreachable_reason_has_one_colon_before_pgbackrest_error() {
        let error = ExecError::Exited {
            program: "pgbackrest".to_owned(),
            code: 55,
            output: "DEBUG: something\nERROR: [055]: unable to load info file '/repo/backup/main/backup.info'\nHINT: is the stanza created?\n".to_owned(),
        };
        assert_eq!(
            exec_reason(&error),
            "pgbackrest exited with status 55: ERROR: [055]: unable to load info file '/repo/backup/main/backup.info'"
        );
        let silent = ExecError::Exited {
            program: "pgbackrest".to_owned(),
            code: 55,
            output: String::new(),
        };
        assert_eq!(exec_reason(&silent), "pgbackrest exited with status 55");
    }

    #[test]
    fn fdinfo() {
        let text = "pos:\t0\nflags:\t012100000\nmnt_id:\t44\nino:\t2\n";
        assert_eq!(parse_fdinfo_mnt_id(text), Some(44));
        assert_eq!(parse_fdinfo_mnt_id("pos:\t0\n"), None);
    }

    #[test]
    fn mount_id_of_root_is_in_mountinfo() {
        let id = mount_id(Utf8Path::new("/")).expect("fdinfo has mnt_id on Linux >= 3.15");
        let mounts =
            mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).unwrap();
        assert_eq!(mountinfo::by_id(&mounts, id).unwrap().mount_point, "/");
    }
}
