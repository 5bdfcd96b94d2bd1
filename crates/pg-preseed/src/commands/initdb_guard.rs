//! `initdb-guard`: the last line of defence of invariant 1, run first by postgresql.service,
//! before nixpkgs' initdb. PGDATA must hold a cluster, or pg-preseed must have decided a fresh
//! start (its claim says so). Reads only PGDATA's top level and the claim: it adds nothing
//! measurable to a start. For a restore not verified yet it also makes sure archiving is held
//! ([`crate::archive_watch::ensure_hold`]): the one place every start of PostgreSQL goes through.

use super::{Exit, Session};
use crate::archive_watch;
use crate::cli::Cli;
use crate::facts;
use crate::pgdata::{self, PgdataState};
use crate::receipt::ClaimKind;
use crate::report::Report;

pub fn initdb_guard(cli: &Cli) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "initdb-guard")?;
    let ctx = &session.ctx;
    let state = pgdata::classify(&pgdata::observe(&ctx.config.pgdata));
    let mut warnings = Vec::new();
    let claim = facts::own_claim(ctx, &mut warnings);
    let fresh = claim
        .as_ref()
        .is_some_and(|claim| claim.kind == ClaimKind::Fresh);
    let held = match (&state, &claim) {
        (PgdataState::Initialized { .. }, Some(claim)) => archive_watch::ensure_hold(ctx, claim),
        _ => Ok(None),
    };
    let (allowed, reason) = match (&state, held) {
        (PgdataState::Initialized { .. }, Err(error)) => (
            false,
            format!(
                "{}, restored by pg-preseed and not verified yet, and its archiving cannot be \
                 held: {error:#}",
                state.describe(&ctx.config.pgdata)
            ),
        ),
        (PgdataState::Initialized { .. }, Ok(warning)) => {
            warnings.extend(warning);
            (true, state.describe(&ctx.config.pgdata))
        }
        (PgdataState::Missing | PgdataState::Empty, _) if fresh => (
            true,
            format!(
                "{}, and pg-preseed decided a fresh start (first deployment): initdb may run",
                state.describe(&ctx.config.pgdata)
            ),
        ),
        _ => (
            false,
            format!(
                "{}, and pg-preseed did not clear it for initdb: PostgreSQL must not start on it",
                state.describe(&ctx.config.pgdata)
            ),
        ),
    };
    let mut report = Report::new(session.name, if allowed { "allow" } else { "refuse" });
    report.reasons.push(reason);
    report.warnings = warnings;
    if !allowed {
        report.next = Some(
            "start PostgreSQL through its guard units (`systemctl restart postgresql`, which restarts postgresql-preseed.service with it) so the restore decision runs first"
                .to_owned(),
        );
    }
    report.print(cli.json);
    Ok(if allowed { Exit::Ok } else { Exit::Refused })
}
