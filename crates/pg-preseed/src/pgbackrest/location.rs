//! Where a repository lives, from the options pgBackRest echoes in its "command begin" line: what
//! tells an empty repository from one whose path is gone.

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
}
