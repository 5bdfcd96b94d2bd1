use std::process::ExitCode;

use clap::Parser;
use pg_preseed::cli::Cli;
use pg_preseed::commands::{dispatch, exit_code_for};
use pg_preseed::config::ConfigError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    pg_preseed::logging::init(cli.verbose, cli.command.acts());
    match dispatch(&cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let exit = exit_code_for(&error);
            if cli.json {
                let issues = error.downcast_ref::<ConfigError>().map(|e| &e.issues);
                let object = serde_json::json!({
                    "decision": "error",
                    "error": format!("{error:#}"),
                    "issues": issues,
                    "exit_code": exit.code(),
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&object).unwrap_or_default()
                );
            }
            eprintln!("pg-preseed: {error:#}");
            ExitCode::from(exit.code())
        }
    }
}
