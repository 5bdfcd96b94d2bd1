use std::process::ExitCode;

use clap::Parser as _;
use pg_preseed::cli::Cli;
use pg_preseed::commands::{archive_get, dispatch, exit_code_for};
use pg_preseed::config::ConfigError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // As PostgreSQL's restore_command, exit 2 would read as "not in the archive" and end
        // recovery early: a command line that does not parse (a newer pg-preseed than the one
        // that wrote it) must stop recovery instead.
        Err(error) if error.use_stderr() && archive_get::invoked() => {
            eprintln!(
                "pg-preseed archive-get: {}",
                error.render().to_string().trim()
            );
            return ExitCode::from(archive_get::CANNOT_ASK);
        }
        Err(error) => error.exit(),
    };
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
