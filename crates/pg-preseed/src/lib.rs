//! pg-preseed: brings a PostgreSQL server back from its pgBackRest backups when its data
//! directory is empty, and refuses, loudly, whenever that would not be safe.
//!
//! Pure core: [`config`], [`mountinfo`], [`zfs`], [`pgdata`], [`pgbackrest`] (parsers),
//! [`preflight`] and [`decision`]. Edges: [`facts`] (gathering), [`exec`] (subprocesses),
//! [`fsutil`], [`lock`], [`receipt`], [`restore`] and [`commands`].

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod datasets;
pub mod decision;
pub mod exec;
pub mod facts;
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
pub mod postgres;
pub mod preflight;
pub mod receipt;
pub mod report;
pub mod restore;
pub mod server;
pub mod zfs;
