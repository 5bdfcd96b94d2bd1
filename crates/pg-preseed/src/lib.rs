//! pg-preseed: brings a PostgreSQL server back from its pgBackRest backups when its data
//! directory is empty, and refuses, loudly, whenever that would not be safe.
//!
//! Pure core: [`paths`], [`lines`], [`clock`], [`wal`], [`config`], [`mountinfo`], [`pgdata`],
//! [`receipt`], [`outcome`], [`preflight`], [`datasets`], [`pitr`] (recovery targets),
//! [`decision`], [`recovery`] (the restore_command, how a recovery ended), [`primaries`] (never
//! two primaries on one repository), [`metrics`], [`report`]. Tools, each argv beside its parsers: [`exec`] (the one that runs them), [`zfs`],
//! [`pgbackrest`], [`postgres`]. Edges: [`fsutil`], [`lock`], [`files`], [`context`], [`facts`]
//! (gathering), [`server`] (checks on a running server), [`recovery_end`] (where recovery
//! ended, for `verify`), [`archive_watch`] (the archiving hold and the looks for another
//! writer), [`restore`], [`scratch`] (the drill's copy and its private server) and
//! [`commands`].
//! docs/design.md says what each owns and may import.

pub mod archive_watch;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod datasets;
pub mod decision;
pub mod exec;
pub mod facts;
pub mod failpoint;
pub mod files;
pub mod fsutil;
pub mod lines;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod mountinfo;
pub mod outcome;
pub mod paths;
pub mod pgbackrest;
pub mod pgdata;
pub mod pitr;
pub mod post_restore;
pub mod postgres;
pub mod preflight;
pub mod primaries;
pub mod receipt;
pub mod recovery;
pub mod recovery_end;
pub mod report;
pub mod restore;
pub mod scratch;
pub mod server;
pub mod story;
pub mod wal;
pub mod zfs;
