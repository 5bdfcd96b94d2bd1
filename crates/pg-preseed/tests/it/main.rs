//! The integration tests: one binary, one module per subject, sharing [`common`].
//!
//! `check_config` needs no root and runs everywhere, the Nix build sandbox included (tier 1).
//! The others are tier 2 — the engine on real PostgreSQL, pgBackRest, mounts, zfs-fuse and an
//! S3 server, as root — and are compiled only with `--features real-system`: the Nix build leaves
//! them out explicitly, and when built every one of them runs, failing without root rather than
//! skipping.

mod check_config;
mod common;

#[cfg(feature = "real-system")]
mod after_restore;
#[cfg(feature = "real-system")]
mod datasets;
#[cfg(feature = "real-system")]
mod engine;
#[cfg(feature = "real-system")]
mod faults;
#[cfg(feature = "real-system")]
mod hardening;
#[cfg(feature = "real-system")]
mod operator;
#[cfg(feature = "real-system")]
mod primaries;
#[cfg(feature = "real-system")]
mod recovery;
#[cfg(feature = "real-system")]
mod scenarios;
