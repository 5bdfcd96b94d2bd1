//! The command line (DESIGN.md, "The CLI").

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// Brings PostgreSQL back from pgBackRest when its data directory is empty, and refuses when it
/// is not safe to.
///
/// Exit codes: 0 ok; 1 internal error; 2 bad usage or config; 3 refused by a safety check;
/// 4 restore or verification failed.
#[derive(Debug, Parser)]
#[command(name = "pg-preseed", version, max_term_width = 100)]
pub struct Cli {
    /// The JSON config (written by the NixOS module).
    #[arg(long, global = true, env = "PG_PRESEED_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: Utf8PathBuf,

    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (repeat for more). PG_PRESEED_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file (run at build time by the NixOS module).
    CheckConfig {
        /// The file to check (defaults to --config).
        file: Option<Utf8PathBuf>,
    },
    /// Check layering, mount identity, marker placement and ownership (every boot).
    Preflight,
    /// Gather the facts and print the decision; change nothing.
    Plan,
    /// Preflight, plan, then act: the preseed unit's ExecStart.
    Run(RunArgs),
    /// Once PostgreSQL is up: check it, then write the receipt.
    Verify(VerifyArgs),
    /// PGDATA state, receipt, last outcome and findings at a glance.
    Status,
    /// Read or remove the receipt.
    #[command(subcommand)]
    Marker(MarkerCommand),
    /// Exit 3 unless PGDATA holds a cluster or pg-preseed decided a fresh start: run first in
    /// postgresql.service, so no start (a restart, Restart=always) can reach initdb over an
    /// empty PGDATA that pg-preseed did not clear.
    InitdbGuard,
    /// Restore a backup into a scratch directory, start it privately, run the verify checks,
    /// clean up: proof that the backups restore (0 / 4).
    Drill(DrillArgs),
    /// Compare (check) or reconcile (ensure) the declared ZFS datasets; refuse conflicts.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// PostgreSQL's restore_command, installed by `run` and `drill`: fetch one WAL file, asking
    /// the repositories recovery consults in order. Exit 0 fetched; 1 none holds it (the end of
    /// the archive); 255 one could not be asked (PostgreSQL then stops recovery instead of
    /// ending it early).
    ArchiveGet(ArchiveGetArgs),
    /// PostgreSQL's archive_command after a restore, until `verify` has made sure no other server
    /// writes the repository (installed by `run`, released by `verify`): archives nothing and
    /// exits 1, so PostgreSQL keeps the WAL file and tries again later.
    ArchiveHold(ArchiveHoldArgs),
}

impl Command {
    /// The commands that act on the system (`run`, `verify`, `drill`): they log at info by
    /// default and report an outcome.
    #[must_use]
    pub fn acts(&self) -> bool {
        matches!(
            self,
            Command::Run(_) | Command::Verify(_) | Command::Drill(_)
        )
    }
}

#[derive(Debug, Args)]
pub struct ArchiveGetArgs {
    /// The PGDATA being recovered (default: pgdata from the config); the drill's scratch copy
    /// passes its own.
    #[arg(long)]
    pub pgdata: Option<Utf8PathBuf>,
    /// The repositories to ask, in order (e.g. "2" or "1,2"): those that answered with the
    /// stanza when the restore was decided. Default: every one in pgbackrest.repos. One no
    /// longer in pgbackrest.repos is not asked.
    #[arg(long, value_delimiter = ',')]
    pub repos: Option<Vec<u32>>,
    /// The WAL file PostgreSQL asks for (`%f`).
    pub wal: String,
    /// Where to put it (`%p`, relative to PGDATA).
    pub destination: String,
}

#[derive(Debug, Args)]
pub struct ArchiveHoldArgs {
    /// The WAL file PostgreSQL wants archived (`%f`), for the log line.
    pub wal: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Report what differs from the declaration, change nothing (0 / 3 on conflicts).
    Check,
    /// Create missing datasets (unmounted) and set declared properties; refuse conflicts.
    Ensure,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Wait this long for another pg-preseed holding the lock (e.g. "10min"); default: do not
    /// wait.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub lock_wait: Duration,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Restore even in mode "guard" (what guard mode tells the operator to run).
    #[arg(long)]
    pub allow_restore: bool,
    /// Let initdb start a new cluster although an empty repository could not be proven to be
    /// the repository (it is an empty directory on this machine's root filesystem): a first
    /// deployment with a local repository, confirmed by hand. Needs on_no_backup = "initdb".
    #[arg(long)]
    pub allow_fresh: bool,
    /// Let this restore archive although another server still writes its repository: recorded in
    /// the claim (also after the restore, while it awaits verification), so `verify` reports the
    /// other writer as a warning and releases archiving instead of refusing.
    #[arg(long)]
    pub allow_second_primary: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// How long to wait for PostgreSQL to accept connections and finish recovery (default:
    /// verify.timeout from the config).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Release archiving although another server still writes the repository (the other writer
    /// is reported as a warning): the way on after a refusal when this server is to archive
    /// next to it.
    #[arg(long)]
    pub allow_second_primary: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Restore from this repository number only (default: the first usable one, in order).
    #[arg(long)]
    pub repo: Option<u32>,
    /// Restore this backup set (default: pgbackrest.set, else the newest).
    #[arg(long)]
    pub set: Option<String>,
    /// Where to restore; it needs room for the whole cluster. A directory named after this
    /// drill is created inside it and removed afterwards.
    #[arg(long, default_value = "/var/tmp/pg-preseed-drill", value_parser = parse_path)]
    pub scratch: Utf8PathBuf,
    /// Keep the restored copy (and stop its server) for inspection.
    #[arg(long)]
    pub keep: bool,
    /// How long to wait for the restored server to finish recovery (default: verify.timeout).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum MarkerCommand {
    /// Print the receipt.
    Show,
    /// Remove the receipt. Without it, an empty PGDATA with empty repositories may be
    /// initialised afresh (with on_no_backup = "initdb"): asks for --yes.
    Clear {
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
}

/// Seconds or text, at most [`crate::config::MAX_DURATION`] (like every duration in the config).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{e} (write e.g. 30, \"30s\", \"10min\")"))?,
    };
    crate::config::bounded(duration)
}

/// A path that reaches other programs (the drill's scratch copy goes into restore_command):
/// what [`crate::paths::misreadable`] refuses is refused here, before anything runs.
fn parse_path(text: &str) -> Result<Utf8PathBuf, String> {
    match crate::paths::misreadable(text) {
        Some(why) => Err(why),
        None => Ok(Utf8PathBuf::from(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15.5: a duration on the command line is bounded like one in the config (a huge
    /// `--timeout` overflowed the deadline arithmetic: a panic).
    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10min"), Ok(Duration::from_secs(600)));
        for huge in ["18446744073709551615", "600000000years", "400days"] {
            let error = parse_duration(huge).unwrap_err();
            assert!(error.contains("at most"), "{huge}: {error}");
        }
    }
}
