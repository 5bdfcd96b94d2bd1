//! `plan`: gathers the facts and prints the decision; changes nothing. 0, or 3 when it would
//! refuse.

use super::{evaluate, Exit, Session};
use crate::cli::Cli;
use crate::decision::Action;
use crate::facts;
use crate::report::Report;

pub fn plan(cli: &Cli) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "plan")?;
    let ctx = &session.ctx;
    let (facts, decision) = evaluate(ctx, facts::preflight(ctx), super::Allow::default());
    let report = Report::from_decision(session.name, &decision, &facts, session.facts_view(&facts));
    report.print(cli.json);
    Ok(if decision.action == Action::Refuse {
        Exit::Refused
    } else {
        Exit::Ok
    })
}
