//! `initdb-guard`: the last line of defence of invariant 1, run first by postgresql.service,
//! before nixpkgs' initdb. PGDATA must hold a cluster, or pg-preseed must have decided a fresh
//! start (its claim says so). Reads only PGDATA's top level and the claim: it adds nothing
//! measurable to a start.

use super::{Exit, Session};
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
    let fresh =
        facts::own_claim(ctx, &mut warnings).is_some_and(|claim| claim.kind == ClaimKind::Fresh);
    let (allowed, reason) = match &state {
        PgdataState::Initialized { .. } => (true, state.describe(&ctx.config.pgdata)),
        PgdataState::Missing | PgdataState::Empty if fresh => (
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
