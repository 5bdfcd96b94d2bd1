//! `archive-hold`: PostgreSQL's archive_command after a restore, until `verify` has made sure no
//! other server still writes the repository ([`crate::primaries`]). It archives nothing and says
//! why in PostgreSQL's log; PostgreSQL keeps the file in pg_wal (`archive_status/<file>.ready`)
//! and tries again about once a minute, and once `verify` has released the hold the real
//! archive_command takes every waiting file.
//!
//! Not a `Session`: it reads no config and touches nothing, so it cannot fail in any other way.

use crate::cli::ArchiveHoldArgs;

/// The exit status: a failure PostgreSQL retries. Not above 125, which would make PostgreSQL
/// restart its archiver process each time.
pub const HELD: u8 = 1;

#[must_use]
pub fn archive_hold(args: &ArchiveHoldArgs) -> u8 {
    eprintln!(
        "pg-preseed archive-hold: not archiving {} yet: this server was restored by pg-preseed, \
         and it archives only once `pg-preseed verify` has made sure no other server still \
         writes the repository (second_primary); the file waits in pg_wal, nothing is lost",
        args.wal.as_deref().unwrap_or("this WAL file")
    );
    HELD
}
