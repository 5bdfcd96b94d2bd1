//! pgBackRest: the argv the engine builds and pure parsers for what pgBackRest prints, one file
//! per concern — [`argv`] (every call the engine makes), [`info`] (`info --output=json`: backups
//! and WAL positions), [`location`] (the option echo of "command begin": where a repository
//! lives, the configured recovery options) and [`log`] (console log lines, restore progress,
//! what `verify` found damaged). Running the calls is the caller's business, through
//! [`crate::exec`].
//!
//! Secrets never go into argv: pgBackRest itself refuses secure options on the command line
//! (`repo1-s3-key` …), and this module never adds any. They reach pgBackRest through the
//! environment the unit's `EnvironmentFile` sets, which the child inherits.

pub mod argv;
pub mod info;
pub mod location;
pub mod log;
pub mod ls;

pub use argv::{
    archive_get_argv, info_argv, recovery_options_argv, restore_argv, verify_argv, ArchiveGet,
    Restore, Stanza,
};
pub use info::{
    code, major_of, parse_info, repo_view, ArchiveInfo, Backup, BackupDatabase, BackupInfo, DbInfo,
    Range, RepoInfo, RepoView, SizeInfo, StanzaInfo, Status, Timestamps,
};
pub use location::{parse_command_begin, recovery_options, repo_location, RepoLocation};
pub use log::{
    corrupt_files, looks_like_corruption, parse_log_line, parse_size, redact_recovery_options,
    restore_file, restore_progress, restore_size, restored_backup_set, Level, LogLine,
    RestoredFile,
};
pub use ls::{repo_ls_argv, segment_file_time};
