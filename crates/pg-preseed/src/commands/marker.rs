//! `marker show` / `marker clear`: read or remove the receipt (the CLI keeps DESIGN.md's name for
//! it). Clearing asks for `--yes`.

use std::time::Duration;

use serde::Serialize;

use super::status::describe_receipt;
use super::{Exit, Prepare, Session, UsageError};
use crate::cli::Cli;
use crate::fsutil;
use crate::receipt::ReceiptState;

pub fn show(cli: &Cli) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "marker show")?;
    let ctx = &session.ctx;
    let state = ctx.files.receipt_state();
    if cli.json {
        #[derive(Serialize)]
        struct Show<'a> {
            path: &'a str,
            #[serde(flatten)]
            marker: &'a ReceiptState,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Show {
                path: ctx.files.receipt.as_str(),
                marker: &state,
            })?
        );
    } else {
        println!("{}", describe_receipt(&state, &ctx.files.receipt));
        if let ReceiptState::Valid { receipt } = &state {
            println!("{}", serde_json::to_string_pretty(receipt)?);
        }
    }
    Ok(Exit::Ok)
}

pub fn clear(cli: &Cli, yes: bool, wait: Duration) -> anyhow::Result<Exit> {
    let session = Session::start(cli, "marker clear")?;
    let ctx = &session.ctx;
    if !yes {
        return Err(UsageError(format!(
            "refusing to remove the receipt {} without --yes: without it, an empty PGDATA whose \
             repositories hold nothing may be initialised as a new, empty cluster (with \
             on_no_backup = \"initdb\"); a restore never needs the receipt removed",
            ctx.files.receipt
        ))
        .into());
    }
    // Without the receipt's directory there is nothing to remove and nothing to lock.
    let _opened = match session.open(wait, Prepare::IfDirExists)? {
        Ok(opened) => opened,
        Err(refusal) => {
            refusal.print(cli.json);
            return Ok(Exit::Refused);
        }
    };
    let removed = fsutil::remove_file(&ctx.files.receipt)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "path": ctx.files.receipt, "removed": removed })
        );
    } else if removed {
        println!("removed the receipt {}", ctx.files.receipt);
    } else {
        println!("no receipt at {}; nothing removed", ctx.files.receipt);
    }
    Ok(Exit::Ok)
}
