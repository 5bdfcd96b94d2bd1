//! Logs go to stderr, or straight to journald (with structured fields such as `DECISION`, `REPO`
//! and `DURATION_SECONDS`) when systemd connected stderr to the journal.

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Sets up logging. `acting` commands (run, verify) log at info by default; the others only warn,
/// so their stdout report stays the whole story.
pub fn init(verbose: u8, acting: bool) {
    let default = match verbose {
        0 if acting => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("PG_PRESEED_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(
                    journald
                        .with_syslog_identifier("pg-preseed".to_owned())
                        // DECISION=restore, REPO=repo1, … rather than F_DECISION.
                        .with_field_prefix(None),
                )
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .init();
}
