//! What pgBackRest echoes of its effective options in its "command begin" line: where a
//! repository lives (what tells an empty repository from one whose path is gone), and the
//! recovery options its configuration sets (which a restore must pass on).

use std::collections::BTreeMap;

use serde::Serialize;

/// Where pgBackRest says repository `n` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "location")]
pub enum RepoLocation {
    /// A local path: its existence is checkable (an unmounted NFS share makes it vanish).
    Posix { path: String },
    /// A repository host (TLS/SSH): pgBackRest already talked to it.
    Remote { host: String },
    /// An object store (s3, gcs, azure) or sftp: a status from pgBackRest means it answered.
    Service { kind: String },
}

/// The options pgBackRest echoes in its "command begin" line (at debug level for `info`).
/// Returns `None` when no such line is present.
#[must_use]
pub fn parse_command_begin(log: &str) -> Option<BTreeMap<String, String>> {
    let line = log.lines().find(|line| line.contains(" command begin "))?;
    let (_, options) = line
        .split_once(": --")
        .map(|(a, b)| (a, format!("--{b}")))?;
    let mut parsed = BTreeMap::new();
    for token in split_quoted(&options) {
        if let Some(option) = token.strip_prefix("--") {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            parsed.insert(key.to_owned(), value.to_owned());
        }
    }
    Some(parsed)
}

/// Splits on spaces outside double quotes and drops the quotes (pgBackRest quotes values that
/// contain spaces).
fn split_quoted(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Repository `n`'s location from echoed options, applying pgBackRest's defaults (type posix,
/// path `/var/lib/pgbackrest`).
#[must_use]
pub fn repo_location(options: &BTreeMap<String, String>, n: u32) -> RepoLocation {
    if let Some(host) = options.get(&format!("repo{n}-host")) {
        return RepoLocation::Remote { host: host.clone() };
    }
    match options.get(&format!("repo{n}-type")).map(String::as_str) {
        None | Some("posix") => RepoLocation::Posix {
            path: options
                .get(&format!("repo{n}-path"))
                .cloned()
                .unwrap_or_else(|| "/var/lib/pgbackrest".to_owned()),
        },
        Some(kind) => RepoLocation::Service {
            kind: kind.to_owned(),
        },
    }
}

/// The `recovery-option` values pgBackRest's configuration sets (pgbackrest.conf, its
/// environment), as `key=value`, from the "command begin" line
/// [`super::argv::recovery_options_argv`] makes pgBackRest print. Read token by token rather than
/// into a map: the option repeats, and a quoted value may hold quotes and ", ".
///
/// # Errors
/// When pgBackRest printed no "command begin" line (then what a restore would drop is unknown).
pub fn recovery_options(output: &str) -> Result<Vec<String>, String> {
    const OPTION: &str = " --recovery-option=";
    let line = output
        .lines()
        .find(|line| line.contains(" command begin "))
        .ok_or("pgBackRest did not print its options (no \"command begin\" line)")?;
    let mut options = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(OPTION) {
        rest = &rest[at + OPTION.len()..];
        let (value, after) = if let Some(quoted) = rest.strip_prefix('"') {
            // Closed by the quote that ends the token (followed by a space or the line's end).
            let close = quoted
                .match_indices('"')
                .map(|(i, _)| i)
                .find(|&i| quoted[i + 1..].is_empty() || quoted[i + 1..].starts_with(' '))
                .ok_or("an unterminated quoted recovery-option in pgBackRest's options")?;
            (&quoted[..close], &quoted[close + 1..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        options.push(value.to_owned());
        rest = after;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = include_str!("../../tests/fixtures/pgbackrest-info-debug-stderr.txt");

    #[test]
    fn command_begin_options_with_quotes() {
        let options = parse_command_begin(BEGIN).unwrap();
        assert_eq!(options["repo1-path"], "/tmp/a b");
        assert_eq!(options["stanza"], "main");
        assert_eq!(
            repo_location(&options, 1),
            RepoLocation::Posix {
                path: "/tmp/a b".to_owned()
            }
        );
        assert_eq!(
            repo_location(&options, 3),
            RepoLocation::Posix {
                path: "/var/lib/pgbackrest".to_owned()
            }
        );
    }

    #[test]
    fn repo_location_types() {
        let mut options = BTreeMap::new();
        options.insert("repo2-type".to_owned(), "s3".to_owned());
        options.insert("repo3-host".to_owned(), "backup.lan".to_owned());
        assert_eq!(
            repo_location(&options, 2),
            RepoLocation::Service {
                kind: "s3".to_owned()
            }
        );
        assert_eq!(
            repo_location(&options, 3),
            RepoLocation::Remote {
                host: "backup.lan".to_owned()
            }
        );
        assert_eq!(parse_command_begin("nothing here"), None);
    }

    #[test]
    fn recovery_options_from_pgbackrest_help() {
        // `pgbackrest --log-level-console=info help restore recovery-option` (2.45) with two
        // recovery-option lines in pgbackrest.conf, one holding ", " and spaces.
        let output = "2026-11-27 18:45:18.390 P00   INFO: restore command begin 2.45: [recovery-option] --config=/tmp/x/pgbackrest2.conf --exec-id=7992-f303a20e --log-level-console=debug --pg1-path=/tmp/x/pgdata --recovery-option=recovery_target_timeline=current --recovery-option=\"primary_conninfo=host=example.org port=5432 application_name=a, sslmode=require\" --repo1-path=/tmp/x/repo1 --stanza=main\n\
                      pgBackRest 2.45 - 'restore' command - 'recovery-option' option help\n\n\
                      current: recovery_target_timeline=current, primary_conninfo=host=example.org port=5432 application_name=a, sslmode=require\n";
        assert_eq!(
            recovery_options(output).unwrap(),
            [
                "recovery_target_timeline=current",
                "primary_conninfo=host=example.org port=5432 application_name=a, sslmode=require"
            ]
        );
        let none = "P00   INFO: restore command begin 2.45: [recovery-option] --stanza=main\n";
        assert!(recovery_options(none).unwrap().is_empty());
        assert!(recovery_options("pgBackRest 2.45 - help\n").is_err());
    }
}
