//! `check-config FILE`: validates a config (the NixOS module runs it at build time).

use camino::Utf8Path;
use serde::Serialize;

use super::Exit;
use crate::cli::Cli;
use crate::config::Config;
use crate::context::load_config;

pub fn check_config(cli: &Cli, file: &Utf8Path) -> anyhow::Result<Exit> {
    let config = load_config(file)?;
    if cli.json {
        #[derive(Serialize)]
        struct Valid<'a> {
            valid: bool,
            config: &'a Config,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Valid {
                valid: true,
                config: &config
            })?
        );
    } else {
        println!(
            "config {file} is valid: pgdata {}, marker {}, stanza {} on {}",
            config.pgdata,
            config.receipt_path(),
            config.pgbackrest.stanza,
            config
                .pgbackrest
                .repos
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Exit::Ok)
}
