//! `preflight`: layering, mount identity, receipt placement and ownership (every boot, before
//! PostgreSQL). 0 clean, 3 findings.

use super::{Exit, Recorded, Session};
use crate::cli::Cli;
use crate::facts;
use crate::report::Report;

pub fn preflight(cli: &Cli) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "preflight")?;
    let preflight = facts::preflight(&session.ctx);
    let exit = if preflight.is_clean() {
        Exit::Ok
    } else {
        Exit::Refused
    };
    let report = Report::from_preflight(session.name, &preflight);
    Ok(session.finish(report, exit, Recorded::default()))
}
