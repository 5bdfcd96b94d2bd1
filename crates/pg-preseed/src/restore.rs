//! Acting on RESTORE/RESUME: prepare PGDATA, run `pgbackrest restore` against each candidate
//! repository in order until one succeeds, streaming pgBackRest's output into the log. Every
//! restore (the drill's too) installs pg-preseed's own restore_command ([`crate::recovery`]),
//! consulting the repositories the decision found answering, and checks it was installed.
//!
//! Nothing here deletes anything. The only change to a non-empty PGDATA is pgBackRest's own
//! `--delta`, used only when PGDATA holds an unfinished restore that the engine's claim proves
//! it started (DESIGN.md invariants 6 and 7).

use std::os::fd::RawFd;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
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
            // Through one descriptor, never through a symlink (issue 15.6).
            done.extend(fsutil::give_dir(pgdata, 0o700, ctx.owner())?);
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
    // The manifest pgBackRest had not finished writing (a regular file: classify checked it).
    let tmp_manifest = pgdata.join(pgdata::BACKUP_MANIFEST_TMP);
    if std::fs::symlink_metadata(&tmp_manifest).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&tmp_manifest)
            .with_context(|| format!("failed to remove {tmp_manifest}"))?;
    }
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

/// The mark `pg-preseed archive-get` leaves beside the queue (not in it: pgBackRest removes what
/// it does not expect there) once the archive grew behind the queue during a recovery — another
/// server still archiving — after which that recovery asks the repositories directly.
#[must_use]
pub fn queue_behind_marker(config: &crate::config::Config) -> camino::Utf8PathBuf {
    spool_mark(config, "direct")
}

/// The mark `pg-preseed archive-get` leaves beside the queue when it first asks it during a
/// recovery: from then on it asks through the queue only for segments the queue holds.
#[must_use]
pub fn queue_started_marker(config: &crate::config::Config) -> camino::Utf8PathBuf {
    spool_mark(config, "queued")
}

/// `pg-preseed-<stanza>.<kind>` in the archive-get spool: the marks a recovery leaves there.
fn spool_mark(config: &crate::config::Config, kind: &str) -> camino::Utf8PathBuf {
    config
        .pgbackrest
        .archive_get
        .spool_path
        .join(format!("pg-preseed-{}.{kind}", config.pgbackrest.stanza))
}

/// The prefetch queue itself: pgBackRest's `archive/<stanza>/in` below the spool path, where
/// its asynchronous archive-get leaves the segments it fetched ahead and `<segment>.ok` for the
/// first one it did not find in the archive.
#[must_use]
pub fn queue_dir(config: &crate::config::Config) -> camino::Utf8PathBuf {
    config
        .pgbackrest
        .archive_get
        .spool_path
        .join("archive")
        .join(&config.pgbackrest.stanza)
        .join("in")
}

/// Removes a mark an earlier recovery left in the spool (`what` it did), saying so; one that
/// cannot be removed is a warning with its `consequence` for this recovery.
fn forget_mark(mark: &camino::Utf8Path, what: &str, consequence: &str) {
    match std::fs::remove_file(mark) {
        Ok(()) => {
            tracing::info!(path = %mark, "removed the mark of an earlier recovery that {what}");
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!("failed to remove {mark}: {error}; {consequence}"),
    }
}

/// Empties the prefetch queue of `pg-preseed archive-get` (`pgbackrest.archive_get`'s spool,
/// `archive/<stanza>/in`) before a restore. pgBackRest's asynchronous archive-get hands over a
/// segment it finds there by name alone; one left by an earlier recovery is the same file as
/// long as the archive only grew, but not after the stanza was re-created or the archive
/// rewritten. A queue that cannot be emptied is a warning, not a failed restore: recovery does
/// not depend on it (PostgreSQL asks again for anything it cannot use).
pub fn clear_queue(ctx: &Context) {
    let settings = &ctx.config.pgbackrest.archive_get;
    if !settings.asynchronous {
        return;
    }
    forget_mark(
        &queue_behind_marker(&ctx.config),
        "outran the archive-get queue",
        "this recovery will not use the archive-get queue",
    );
    forget_mark(
        &queue_started_marker(&ctx.config),
        "used the archive-get queue",
        "this recovery will use the archive-get queue only for segments it already holds",
    );
    let queue = queue_dir(&ctx.config);
    let entries = match std::fs::read_dir(&queue) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(queue = %queue, "failed to read the archive-get queue {queue}: {error}; a segment left there by an earlier recovery may be used");
            return;
        }
    };
    let mut removed = 0_usize;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(
                "failed to remove {} from the archive-get queue: {error}; it may be used by this recovery",
                path.display()
            ),
        }
    }
    if removed > 0 {
        tracing::info!(queue = %queue, removed, "emptied the archive-get queue left by an earlier recovery");
    }
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
    clear_queue(ctx);
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
                if let Some(full) = full_filesystem(&ctx.config.pgdata) {
                    message.push('\n');
                    message.push_str(&full);
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

/// When PGDATA's filesystem is (nearly) full after a failed attempt, a sentence that says so:
/// pgBackRest does not always name ENOSPC (a write retried after a short pause can fail with
/// only "[FileWriteError] on retry …"), and the operator's fix is room, not the repository.
fn full_filesystem(pgdata: &camino::Utf8Path) -> Option<String> {
    let stats = nix::sys::statvfs::statvfs(pgdata.as_std_path()).ok()?;
    let block = stats.fragment_size();
    let total = stats.blocks().saturating_mul(block);
    let available = stats.blocks_available().saturating_mul(block);
    // Full: under 1 MiB, or under 0.5 % of the filesystem, left for pgBackRest's writes.
    let nearly_full = available < 1 << 20 || available.saturating_mul(200) < total;
    nearly_full.then(|| {
        format!(
            "PGDATA's filesystem is full: {} MiB free of {} MiB at {pgdata}; make room (or a larger \
             dataset), then start again: the restore resumes where it stopped",
            available >> 20,
            total >> 20
        )
    })
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
    install.apply(&ctx.config.pgdata, ctx.owner())?;
    Ok(restored)
}

/// pg-preseed's restore_command for a restore into one PGDATA, and how it gets there without
/// a recovery option of pgbackrest.conf on a command line (DESIGN.md invariant 7: a
/// `primary_conninfo` may hold a password, and argv is world-readable and logged).
///
/// pgBackRest 2.45 drops every recovery option pgbackrest.conf sets once one is given on its
/// command line. So: when pgbackrest.conf sets none (besides restore_command), pg-preseed's
/// restore_command is the one `--recovery-option` (it holds no secret) and pgBackRest writes it;
/// when it sets others, the restore gets none, pgBackRest writes them all with its own
/// restore_command, and [`Install::apply`] then replaces that one line of postgresql.auto.conf,
/// atomically, before PostgreSQL can start. Either way [`Install::check`] reads it back.
#[derive(Debug, Clone)]
pub struct Install {
    pub restore_command: String,
    /// The `--recovery-option` values for the restore: pg-preseed's restore_command, or none.
    pub options: Vec<String>,
    /// The recovery options pgbackrest.conf sets, by name only (their values never leave
    /// pgBackRest): pgBackRest writes them, and restore_command is replaced afterwards.
    pub configured: Vec<String>,
}

impl Install {
    /// The restore_command a restore into `pgdata` installs — this executable, the config it was
    /// started with (made absolute: PostgreSQL runs the command in PGDATA), `repos` — and how
    /// (see [`Install`]). A restore_command configured for pgBackRest is replaced, with a
    /// warning.
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
        // Names only: the values stay in pgBackRest's hands.
        let configured: Vec<String> =
            pgbackrest::recovery_options(&String::from_utf8_lossy(&output.stdout))
                .map_err(|message| {
                    anyhow::anyhow!("failed to read pgBackRest's recovery options: {message}")
                })?
                .iter()
                .map(|option| option.split('=').next().unwrap_or_default().to_owned())
                .collect();
        if configured
            .iter()
            .any(|key| key.eq_ignore_ascii_case("restore_command"))
        {
            tracing::warn!(
                "pgBackRest's configuration sets restore_command; pg-preseed installs its own (it tells \"not there\" from \"cannot ask\")"
            );
        }
        let configured: Vec<String> = configured
            .into_iter()
            .filter(|key| !key.eq_ignore_ascii_case("restore_command"))
            .collect();
        let options = if configured.is_empty() {
            vec![format!(
                "restore_command={}",
                recovery::conf_quoted(&restore_command)
            )]
        } else {
            tracing::info!(
                configured = %configured.join(", "),
                "pgBackRest writes the recovery options its configuration sets; pg-preseed then installs its restore_command in postgresql.auto.conf"
            );
            Vec::new()
        };
        Ok(Install {
            restore_command,
            options,
            configured,
        })
    }

    /// After pgBackRest restored into `pgdata`: installs the restore_command when pgBackRest
    /// wrote its own (see [`Install`]) — postgresql.auto.conf rewritten atomically, only that
    /// line changed, owned by `owner` with mode 0600 as pgBackRest leaves it — then
    /// [`Install::check`]s it.
    ///
    /// # Errors
    /// When postgresql.auto.conf cannot be read or written, or does not run the restore_command
    /// afterwards.
    pub fn apply(&self, pgdata: &Utf8Path, owner: fsutil::Owner) -> anyhow::Result<()> {
        if self.options.is_empty() {
            let path = pgdata.join("postgresql.auto.conf");
            let bytes = fsutil::read_nofollow(&path, AUTO_CONF_MAX_BYTES)?
                .with_context(|| format!("pgBackRest wrote no {path}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{path} is not UTF-8 text"))?;
            let installed = recovery::with_setting(
                &text,
                "restore_command",
                &recovery::conf_quoted(&self.restore_command),
            );
            fsutil::atomic_write(&path, installed.as_bytes(), 0o600, owner)
                .with_context(|| format!("failed to install the restore_command in {path}"))?;
            tracing::info!(path = %path, "installed pg-preseed's restore_command in place of pgBackRest's");
        }
        self.check(pgdata)
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

/// postgresql.auto.conf holds a few settings; a file near this is not one.
const AUTO_CONF_MAX_BYTES: u64 = 16 * 1024 * 1024;

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
/// and a progress line at a steady interval (every few seconds, whatever pgBackRest prints:
/// one large file can take minutes) with the percentage, the data restored so far and the
/// throughput ([`Progress`]).
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
    let progress = Mutex::new(Progress::default());
    let mut on_line = |line: &str| {
        let line = &*pgbackrest::redact_recovery_options(line);
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
                if let Some(file) = pgbackrest::restore_file(parsed.message) {
                    progress
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .add(file);
                }
            }
        }
    };
    let mut command = ctx.pgbackrest(argv);
    if let Some(fd) = lock_fd {
        command = command.inherit_fd(fd);
    }
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let progress = &progress;
        let repo = &candidate.repo;
        scope.spawn(move || {
            let mut last = (Instant::now(), 0);
            // Until the restore ends (the sender is dropped): a line every `every`.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let now = *progress.lock().unwrap_or_else(PoisonError::into_inner);
                let line = now.line(last.1, last.0.elapsed(), started.elapsed());
                tracing::info!(
                    repo = %repo,
                    percent = now.percent,
                    bytes = now.bytes,
                    mb_per_second = line.rate,
                    elapsed_seconds = started.elapsed().as_secs(),
                    "{}",
                    line.text
                );
                last = (Instant::now(), now.bytes);
            }
        });
        let result = command.stream(&mut on_line);
        drop(stop);
        // The error keeps the output's last lines: the same redaction as the log.
        result.map_err(|error| {
            error.map_output(|output| {
                output
                    .lines()
                    .map(|line| pgbackrest::redact_recovery_options(line).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        })
    })?;
    let duration = started.elapsed();
    let total = bytes.unwrap_or(
        progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes,
    );
    #[allow(clippy::cast_precision_loss)] // sizes, for people
    let mb = total as f64 / MB;
    let rate = mb / duration.as_secs_f64().max(0.001);
    tracing::info!(
        repo = %candidate.repo,
        backup = label.as_deref().unwrap_or(&candidate.backup.label),
        duration_seconds = duration.as_secs_f64(),
        bytes = total,
        mb_per_second = rate,
        "restore finished: {mb:.1} MB in {:.1}s ({rate:.1} MB/s)",
        duration.as_secs_f64()
    );
    Ok(Restored {
        repo: candidate.repo.clone(),
        label: label.or_else(|| Some(candidate.backup.label.clone())),
        duration,
        bytes,
    })
}

/// Bytes in the "MB" pgBackRest prints (and pg-preseed with it).
const MB: f64 = 1024.0 * 1024.0;

/// How far a restore is: pgBackRest's running percentage (by size) and the sizes of the files it
/// reported restored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub percent: f64,
    pub bytes: u64,
}

/// One progress line: its text and the throughput over the last interval (MB/s).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub text: String,
    pub rate: f64,
}

impl Progress {
    fn add(&mut self, file: pgbackrest::RestoredFile) {
        self.percent = self.percent.max(file.percent);
        self.bytes += file.bytes;
    }

    /// `restore progress 45.3%: 43.9 of ~96.9 MB, 12.1 MB/s over the last 5s (8.8 MB/s on
    /// average), 5s in` — `before` bytes were done `interval` ago, `elapsed` since the restore
    /// started. Pure.
    #[must_use]
    pub fn line(&self, before: u64, interval: Duration, elapsed: Duration) -> ProgressLine {
        #[allow(clippy::cast_precision_loss)] // sizes, for people
        let (done, new) = (
            self.bytes as f64 / MB,
            self.bytes.saturating_sub(before) as f64 / MB,
        );
        let rate = new / interval.as_secs_f64().max(0.001);
        let average = done / elapsed.as_secs_f64().max(0.001);
        let of = if self.percent > 0.0 {
            format!(" of ~{:.1}", done * 100.0 / self.percent)
        } else {
            String::new()
        };
        ProgressLine {
            text: format!(
                "restore progress {:.1}%: {done:.1}{of} MB, {rate:.1} MB/s over the last {}s ({average:.1} MB/s on average), {}s in",
                self.percent,
                trim_seconds(interval),
                trim_seconds(elapsed),
            ),
            rate,
        }
    }
}

/// `5`, `0.2`: seconds as a person would write them.
fn trim_seconds(duration: Duration) -> String {
    let text = format!("{:.1}", duration.as_secs_f64());
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

/// How often progress is logged: every few seconds, or `PG_PRESEED_PROGRESS_SECONDS` (at least
/// 0.05).
fn progress_interval() -> Duration {
    std::env::var("PG_PRESEED_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map_or(PROGRESS_EVERY, |s| Duration::from_secs_f64(s.max(0.05)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_tell_percent_size_and_throughput() {
        let mut progress = Progress::default();
        let line = progress.line(0, Duration::from_secs(5), Duration::from_secs(5));
        assert_eq!(
            line.text,
            "restore progress 0.0%: 0.0 MB, 0.0 MB/s over the last 5s (0.0 MB/s on average), 5s in"
        );
        progress.add(pgbackrest::RestoredFile {
            bytes: 64 << 20,
            percent: 65.43,
        });
        progress.add(pgbackrest::RestoredFile {
            bytes: 16 << 20,
            percent: 80.0,
        });
        let line = progress.line(30 << 20, Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(
            line.text,
            "restore progress 80.0%: 80.0 of ~100.0 MB, 10.0 MB/s over the last 5s (8.0 MB/s on average), 10s in"
        );
        assert!((line.rate - 10.0).abs() < 1e-9);
        // Nothing new since the last line: a steady line still comes, at 0 MB/s.
        let stalled = progress.line(
            80 << 20,
            Duration::from_millis(200),
            Duration::from_secs(11),
        );
        assert!(
            stalled.text.contains("80.0%") && stalled.text.contains(" 0.0 MB/s over the last 0.2s"),
            "{}",
            stalled.text
        );
    }
}
