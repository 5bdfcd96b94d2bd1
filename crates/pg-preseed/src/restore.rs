//! Acting on RESTORE/RESUME: prepare PGDATA, run `pgbackrest restore` against each candidate
//! repository in order until one succeeds, streaming pgBackRest's output into the log. Every
//! restore (the drill's too) installs pg-preseed's own restore_command ([`crate::recovery`]),
//! consulting the repositories the decision found answering, and checks it was installed.
//!
//! Nothing here deletes anything. The only change to a non-empty PGDATA is pgBackRest's own
//! `--delta`, used only when PGDATA holds an unfinished restore that the engine's claim proves
//! it started (DESIGN.md invariants 6 and 7).

use std::os::fd::RawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};

use crate::clock::{now_rfc3339, unix_to_rfc3339};
use crate::config::RepoRef;
use crate::context::Context;
use crate::decision::{Candidate, RecoveryRepos};
use crate::fsutil;
use crate::pgbackrest::{self, Level};
use crate::pgdata::{self, PgdataState};
use crate::pitr;
use crate::receipt::{Attempt, Claim, Source};
use crate::recovery;

/// How often restore progress is logged while pgBackRest copies files.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// `pgbackrest verify` of one backup set re-reads it whole; bound it.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(1800);
/// `pgbackrest help` reads its configuration and prints.
const HELP_TIMEOUT: Duration = Duration::from_secs(60);

/// A successful restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub repo: RepoRef,
    pub label: Option<String>,
    pub duration: Duration,
    pub bytes: Option<u64>,
}

/// Every repository failed; one message per attempt.
#[derive(Debug)]
pub struct Failed {
    pub attempts: Vec<(RepoRef, String)>,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the restore failed from every repository tried")?;
        for (repo, error) in &self.attempts {
            write!(f, "\n  {repo}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failed {}

/// Parallel restore processes: configured, else one per CPU (pgBackRest's own default is 1).
#[must_use]
pub fn process_max(ctx: &Context) -> u32 {
    ctx.config.pgbackrest.process_max.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
            .min(64)
    })
}

/// Makes PGDATA ready for a first restore: creates it when missing (it is then ours), and gives
/// an empty one to the PostgreSQL user when we are root. Returns what it did, for the log.
///
/// # Errors
/// When PGDATA is not missing or empty any more, or cannot be prepared.
pub fn prepare_pgdata(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let pgdata = &ctx.config.pgdata;
    let mut done = Vec::new();
    match pgdata::classify(&pgdata::observe(pgdata)) {
        PgdataState::Missing => {
            for dir in fsutil::create_dirs(pgdata, 0o700, ctx.owner())? {
                done.push(format!("created {dir}"));
            }
        }
        PgdataState::Empty => {
            let metadata =
                std::fs::metadata(pgdata).with_context(|| format!("failed to examine {pgdata}"))?;
            if let Some((uid, gid)) = ctx.owner() {
                if metadata.uid() != uid.as_raw() || metadata.gid() != gid.as_raw() {
                    nix::unistd::chown(pgdata.as_std_path(), Some(uid), Some(gid)).with_context(
                        || format!("failed to give {pgdata} to {}", ctx.pg_user.name),
                    )?;
                    done.push(format!("gave the empty {pgdata} to {}", ctx.pg_user.name));
                }
            }
            if metadata.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("failed to set mode 0700 on {pgdata}"))?;
                done.push(format!("set mode 0700 on the empty {pgdata}"));
            }
        }
        PgdataState::RestoreInProgress { .. } => {}
        // Only when the decision saw pg-preseed's own claim for it (decision::decide).
        PgdataState::Partial {
            only_directories: true,
            ..
        } => {
            let removed = remove_empty_directories(pgdata)?;
            done.push(format!(
                "removed the {removed} empty directories the interrupted restore had created in {pgdata}"
            ));
        }
        other => bail!(
            "PGDATA changed while deciding: {}; nothing was restored",
            other.describe(pgdata)
        ),
    }
    Ok(done)
}

/// Removes every directory below `pgdata` (not `pgdata` itself), deepest first, with rmdir:
/// a directory that is not empty is never removed (the call fails, and the restore with it),
/// so nothing but empty directories can go. Returns how many were removed.
fn remove_empty_directories(pgdata: &camino::Utf8Path) -> anyhow::Result<usize> {
    let mut directories = Vec::new();
    let mut pending = vec![pgdata.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("failed to list {dir}"))? {
            let entry = entry.with_context(|| format!("failed to list {dir}"))?;
            let path = camino::Utf8PathBuf::from_path_buf(entry.path())
                .map_err(|p| anyhow::anyhow!("{} is not UTF-8", p.display()))?;
            pending.push(path.clone());
            directories.push(path);
        }
    }
    // Children were pushed after their parents: remove in reverse.
    for dir in directories.iter().rev() {
        std::fs::remove_dir(dir)
            .with_context(|| format!("failed to remove the empty directory {dir}"))?;
    }
    Ok(directories.len())
}

/// Tries each candidate in order, installing the restore_command that consults `recovery`'s
/// repositories. The claim is updated (and written) before and after every attempt, so a crash
/// at any point leaves a true record; on success its source records the repositories recovery
/// consults and those left out.
///
/// # Errors
/// [`Failed`] with every attempt's error; other errors when the claim cannot be written or the
/// restore_command cannot be installed (then nothing further is attempted).
pub fn restore(
    ctx: &Context,
    candidates: &[Candidate],
    recovery: &RecoveryRepos,
    claim: &mut Claim,
    lock_fd: Option<RawFd>,
) -> anyhow::Result<Restored> {
    let install = Install::new(ctx, &ctx.config.pgdata, &recovery.numbers())?;
    let mut failures = Vec::new();
    for candidate in candidates {
        // Re-read PGDATA every time: a failed attempt may have left pgBackRest's manifest.
        let delta = match pgdata::classify(&pgdata::observe(&ctx.config.pgdata)) {
            PgdataState::Missing | PgdataState::Empty => false,
            PgdataState::RestoreInProgress { .. } => true,
            // An attempt of this run stopped after creating directories, before its manifest.
            PgdataState::Partial {
                only_directories: true,
                ..
            } => {
                remove_empty_directories(&ctx.config.pgdata)?;
                false
            }
            other => bail!(
                "not trying {}: {}; the engine only restores into an empty PGDATA or resumes its own restore",
                candidate.repo,
                other.describe(&ctx.config.pgdata)
            ),
        };
        claim.attempts.push(Attempt {
            repo: candidate.repo.number,
            started_at: now_rfc3339(),
            delta,
            error: None,
        });
        ctx.files.write_claim(claim, ctx.owner())?;
        match attempt(ctx, candidate, &install, delta, lock_fd) {
            Ok(restored) => {
                claim.source = Some(Source {
                    repo: candidate.repo.number,
                    repo_name: candidate.repo.name.clone(),
                    stanza: ctx.config.pgbackrest.stanza.clone(),
                    backup_label: restored.label.clone(),
                    backup_stop: (restored.label.as_deref()
                        == Some(candidate.backup.label.as_str()))
                    .then(|| unix_to_rfc3339(candidate.backup.stop)),
                    target: (ctx.config.pgbackrest.target.kind
                        != crate::config::TargetType::Default)
                        .then(|| ctx.config.pgbackrest.target.clone()),
                    recovery_repos: recovery.numbers(),
                    left_out: recovery.left_out.clone(),
                });
                claim.finished_at = Some(now_rfc3339());
                claim.duration_seconds = Some(restored.duration.as_secs_f64());
                claim.restored_bytes = restored.bytes;
                claim.backup_system_identifier =
                    candidate.backup.system_id.map(|id| id.to_string());
                ctx.files.write_claim(claim, ctx.owner())?;
                return Ok(restored);
            }
            Err(error) => {
                let mut message = format!("{error:#}");
                if pgbackrest::looks_like_corruption(&message) {
                    message.push_str(&name_corrupt_files(ctx, candidate));
                }
                tracing::error!(repo = %candidate.repo, error = %message, "restore from this repository failed");
                if let Some(last) = claim.attempts.last_mut() {
                    last.error = Some(message.clone());
                }
                ctx.files.write_claim(claim, ctx.owner())?;
                failures.push((candidate.repo.clone(), message));
            }
        }
    }
    Err(Failed { attempts: failures }.into())
}

/// After a restore failed on what looks like a damaged file, asks `pgbackrest verify` which
/// files of the backup set are damaged, so the error names them. Returns text to append.
fn name_corrupt_files(ctx: &Context, candidate: &Candidate) -> String {
    let argv = pgbackrest::verify_argv(&ctx.stanza, candidate.repo.number, &candidate.backup.label);
    tracing::info!(repo = %candidate.repo, backup = %candidate.backup.label, "checking the backup set for damaged files (pgbackrest verify)");
    match ctx.pgbackrest(argv).output_any_status(Some(VERIFY_TIMEOUT)) {
        Ok(output) => {
            let files = pgbackrest::corrupt_files(&String::from_utf8_lossy(&output.stdout));
            if files.is_empty() {
                String::new()
            } else {
                format!(
                    "\ndamaged in {} (pgbackrest verify): {}",
                    candidate.repo,
                    files.join(", ")
                )
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, "pgbackrest verify could not run");
            String::new()
        }
    }
}

fn attempt(
    ctx: &Context,
    candidate: &Candidate,
    install: &Install,
    delta: bool,
    lock_fd: Option<RawFd>,
) -> anyhow::Result<Restored> {
    let config = &ctx.config.pgbackrest;
    let process_max = process_max(ctx);
    let argv = pgbackrest::restore_argv(&pgbackrest::Restore {
        stanza: &ctx.stanza,
        repo: candidate.repo.number,
        pgdata: &ctx.config.pgdata,
        process_max,
        delta,
        // For a time or LSN target the decision chose the backup that ends before it.
        set: config.set.as_deref().or_else(|| {
            pitr::chooses_backup(config.target.kind).then_some(candidate.backup.label.as_str())
        }),
        target: &config.target,
        drill: None,
        recovery_options: &install.options,
    });
    tracing::info!(
        repo = %candidate.repo,
        backup = %candidate.backup.label,
        delta,
        process_max,
        "restoring"
    );
    let restored = run_restore(ctx, candidate, argv, lock_fd)?;
    // pgBackRest exited 0; confirm what it promises: a cluster, no manifest left.
    match pgdata::classify(&pgdata::observe(&ctx.config.pgdata)) {
        PgdataState::Initialized { .. } => {}
        other => bail!(
            "pgBackRest reported success but {}",
            other.describe(&ctx.config.pgdata)
        ),
    }
    install.check(&ctx.config.pgdata)?;
    Ok(restored)
}

/// pg-preseed's restore_command for a restore into one PGDATA, and the `--recovery-option`
/// values that install it.
#[derive(Debug, Clone)]
pub struct Install {
    pub restore_command: String,
    pub options: Vec<String>,
}

impl Install {
    /// The restore_command a restore into `pgdata` installs — this executable, the config it was
    /// started with (made absolute: PostgreSQL runs the command in PGDATA), `repos` — and the
    /// recovery options pgBackRest's own configuration sets (a `--recovery-option` on the command
    /// line would drop them), quoted for postgresql.auto.conf. A restore_command configured for
    /// pgBackRest is replaced, with a warning.
    ///
    /// # Errors
    /// When a path cannot go into restore_command, or pgBackRest cannot say which recovery
    /// options it is configured with.
    pub fn new(ctx: &Context, pgdata: &Utf8Path, repos: &[u32]) -> anyhow::Result<Install> {
        let exe = own_executable()?;
        let config = if ctx.config_path.is_absolute() {
            ctx.config_path.clone()
        } else {
            current_dir()?.join(&ctx.config_path)
        };
        let restore_command =
            recovery::restore_command(exe.as_str(), config.as_str(), pgdata.as_str(), repos)
                .map_err(|message| {
                    anyhow::anyhow!("cannot install pg-preseed's restore_command: {message}")
                })?;
        let output = ctx
            .pgbackrest(pgbackrest::recovery_options_argv(&ctx.stanza))
            .output(Some(HELP_TIMEOUT))
            .context("failed to ask pgBackRest for its recovery options")?;
        let configured = pgbackrest::recovery_options(&String::from_utf8_lossy(&output.stdout))
            .map_err(|message| {
                anyhow::anyhow!("failed to read pgBackRest's recovery options: {message}")
            })?;
        let mut options = Vec::new();
        for option in configured {
            let key = option.split('=').next().unwrap_or_default();
            if key.eq_ignore_ascii_case("restore_command") {
                tracing::warn!(
                    option = %option,
                    "pgBackRest's configuration sets restore_command; pg-preseed installs its own (it tells \"not there\" from \"cannot ask\")"
                );
            } else {
                options.push(option);
            }
        }
        options.push(format!(
            "restore_command={}",
            recovery::conf_quoted(&restore_command)
        ));
        Ok(Install {
            restore_command,
            options,
        })
    }

    /// Checks that postgresql.auto.conf in `pgdata` runs this restore_command (pgBackRest wrote
    /// it as expected, nothing else overrides it).
    ///
    /// # Errors
    /// When it does not: the restore must not be taken for finished.
    pub fn check(&self, pgdata: &Utf8Path) -> anyhow::Result<()> {
        let path = pgdata.join("postgresql.auto.conf");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
        match recovery::setting(&text, "restore_command") {
            Some(installed) if installed == self.restore_command => Ok(()),
            Some(installed) => bail!(
                "{path} runs restore_command {installed:?}, not pg-preseed's {:?}: recovery would not tell a repository that cannot be asked from the end of the archive",
                self.restore_command
            ),
            None => bail!("{path} sets no restore_command: recovery could not fetch any WAL"),
        }
    }
}

/// This executable, by the path it was started with when that is absolute and names this same
/// file: the units start `/etc/pg-preseed/bin/pg-preseed`, a link that still works after an
/// update of pg-preseed, while the kernel's answer is the store path it points to today (which a
/// later garbage collection may remove while PostgreSQL still needs its restore_command).
pub(crate) fn own_executable() -> anyhow::Result<Utf8PathBuf> {
    let exe = std::env::current_exe().context("failed to find pg-preseed's own executable")?;
    let started_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .filter(|path| path.is_absolute())
        .filter(|path| {
            matches!(
                (std::fs::canonicalize(path), std::fs::canonicalize(&exe)),
                (Ok(started), Ok(running)) if started == running
            )
        });
    Utf8PathBuf::from_path_buf(started_as.unwrap_or(exe))
        .map_err(|p| anyhow::anyhow!("pg-preseed's executable path {} is not UTF-8", p.display()))
}

fn current_dir() -> anyhow::Result<Utf8PathBuf> {
    let cwd = std::env::current_dir().context("failed to read the current directory")?;
    Utf8PathBuf::from_path_buf(cwd)
        .map_err(|p| anyhow::anyhow!("the current directory {} is not UTF-8", p.display()))
}

/// Runs a `pgbackrest restore` argv, streaming its console into the log: messages as they come,
/// file-by-file progress condensed to a line every few seconds.
pub fn run_restore(
    ctx: &Context,
    candidate: &Candidate,
    argv: Vec<String>,
    lock_fd: Option<RawFd>,
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let every = progress_interval();
    let mut label = None;
    let mut bytes = None;
    let mut last_progress = Instant::now();
    let mut on_line = |line: &str| {
        let Some(parsed) = pgbackrest::parse_log_line(line) else {
            if !line.trim().is_empty() {
                tracing::info!(target: "pgbackrest", "{}", line.trim());
            }
            return;
        };
        if let Some(set) = pgbackrest::restored_backup_set(parsed.message) {
            label = Some(set.to_owned());
        }
        if let Some(size) = pgbackrest::restore_size(parsed.message) {
            bytes = pgbackrest::parse_size(size);
        }
        match parsed.level {
            Level::Error => tracing::error!(target: "pgbackrest", "{}", parsed.message),
            Level::Warn => tracing::warn!(target: "pgbackrest", "{}", parsed.message),
            Level::Info => tracing::info!(target: "pgbackrest", "{}", parsed.message),
            Level::Detail | Level::Debug | Level::Trace => {
                if let Some(percent) = pgbackrest::restore_progress(parsed.message) {
                    if last_progress.elapsed() >= every {
                        last_progress = Instant::now();
                        tracing::info!(
                            repo = %candidate.repo,
                            percent,
                            elapsed_seconds = started.elapsed().as_secs(),
                            "restore progress {percent:.1}%"
                        );
                    }
                }
            }
        }
    };
    let mut command = ctx.pgbackrest(argv);
    if let Some(fd) = lock_fd {
        command = command.inherit_fd(fd);
    }
    command.stream(&mut on_line)?;
    let duration = started.elapsed();
    tracing::info!(
        repo = %candidate.repo,
        backup = label.as_deref().unwrap_or(&candidate.backup.label),
        duration_seconds = duration.as_secs_f64(),
        "restore finished"
    );
    Ok(Restored {
        repo: candidate.repo.clone(),
        label: label.or_else(|| Some(candidate.backup.label.clone())),
        duration,
        bytes,
    })
}

/// How often progress is logged: every few seconds, or `PG_PRESEED_PROGRESS_SECONDS`.
fn progress_interval() -> Duration {
    std::env::var("PG_PRESEED_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PROGRESS_EVERY, Duration::from_secs_f64)
}
