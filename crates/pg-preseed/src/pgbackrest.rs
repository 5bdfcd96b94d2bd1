//! pgBackRest: the argv the engine builds and pure parsers for what pgBackRest prints
//! (`info --output=json`, console log lines, the option echo of "command begin").
//!
//! Secrets never go into argv: pgBackRest itself refuses secure options on the command line
//! (`repo1-s3-key` …), and this module never adds any. They reach pgBackRest through the
//! environment the unit's `EnvironmentFile` sets, which the child inherits.

use std::collections::BTreeMap;
use std::fmt;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::config::{Target, TargetType};

// ---------------------------------------------------------------------------------------------
// argv

/// Options shared by every pgBackRest call the engine makes.
#[derive(Debug, Clone)]
pub struct Common<'a> {
    pub stanza: &'a str,
    pub config: Option<&'a Utf8Path>,
}

impl Common<'_> {
    fn push(&self, argv: &mut Vec<String>) {
        if let Some(config) = self.config {
            argv.push(format!("--config={config}"));
        }
        argv.push(format!("--stanza={}", self.stanza));
    }
}

/// `info --output=json` for one repository. `echo_options` raises stderr logging to debug so the
/// "command begin" line (every effective option, secrets redacted by pgBackRest) can be read.
#[must_use]
pub fn info_argv(common: &Common<'_>, repo: u32, echo_options: bool) -> Vec<String> {
    let mut argv = Vec::new();
    common.push(&mut argv);
    argv.push(format!("--repo={repo}"));
    argv.push("--log-level-console=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.push(format!(
        "--log-level-stderr={}",
        if echo_options { "debug" } else { "warn" }
    ));
    argv.push("--output=json".to_owned());
    argv.push("info".to_owned());
    argv
}

#[derive(Debug, Clone)]
pub struct Restore<'a> {
    pub common: Common<'a>,
    pub repo: u32,
    pub pgdata: &'a Utf8Path,
    pub process_max: u32,
    /// Only for resuming a restore the engine started (DESIGN.md invariant 6).
    pub delta: bool,
    pub set: Option<&'a str>,
    pub target: &'a Target,
    /// For drills: the scratch directory. The restored cluster must not archive into the
    /// production repository, and tablespaces must land in the scratch directory, not over the
    /// production ones.
    pub drill: Option<&'a Utf8Path>,
}

/// `restore` with the console at `detail` (one line per file, with the running percentage, for
/// progress) and nothing on stderr (so each message arrives once, in order, on one stream).
#[must_use]
pub fn restore_argv(restore: &Restore<'_>) -> Vec<String> {
    let mut argv = Vec::new();
    restore.common.push(&mut argv);
    argv.push(format!("--repo={}", restore.repo));
    // Always the configured PGDATA, whatever pg1-path pgbackrest.conf names.
    argv.push(format!("--pg1-path={}", restore.pgdata));
    argv.push(format!("--process-max={}", restore.process_max));
    if restore.delta {
        argv.push("--delta".to_owned());
    }
    if let Some(set) = restore.set {
        argv.push(format!("--set={set}"));
    }
    if restore.target.kind != TargetType::Default {
        argv.push(format!("--type={}", restore.target.kind.as_str()));
        if let Some(value) = &restore.target.value {
            argv.push(format!("--target={value}"));
        }
        // PostgreSQL's default action at a target is to pause, which would leave the server in
        // recovery forever and `verify` waiting.
        argv.push("--target-action=promote".to_owned());
    }
    if let Some(scratch) = restore.drill {
        argv.push("--archive-mode=off".to_owned());
        argv.push(format!("--tablespace-map-all={scratch}/tablespaces"));
    }
    argv.push("--log-level-console=detail".to_owned());
    argv.push("--log-level-stderr=off".to_owned());
    argv.push("restore".to_owned());
    argv
}

/// `verify` of one backup set: pgBackRest re-reads it and names every file that does not match
/// its checksum (used after a restore failed in a way that smells of corruption).
#[must_use]
pub fn verify_argv(common: &Common<'_>, repo: u32, set: &str) -> Vec<String> {
    let mut argv = Vec::new();
    common.push(&mut argv);
    argv.push(format!("--repo={repo}"));
    argv.push(format!("--set={set}"));
    argv.push("--log-level-console=info".to_owned());
    argv.push("--log-level-stderr=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.push("verify".to_owned());
    argv
}

/// Whether a failed restore's output suggests a damaged repository file (as opposed to an
/// unreachable repository or a full disk).
#[must_use]
pub fn looks_like_corruption(output: &str) -> bool {
    [
        "checksum",
        "FormatError",
        "lz4 error",
        "zlib error",
        "zst error",
        "bz2 error",
        "unexpected eof",
        "[029]",
        "[039]",
    ]
    .iter()
    .any(|needle| output.contains(needle))
}

/// The repository files `verify` found damaged or missing (`invalid checksum '…'`, …).
#[must_use]
pub fn corrupt_files(verify_output: &str) -> Vec<String> {
    verify_output
        .lines()
        .filter_map(parse_log_line)
        .filter(|line| line.message.starts_with("invalid ") || line.message.contains("missing"))
        .filter_map(|line| {
            let end = line.message.rfind('\'')?;
            let start = line.message[..end].rfind('\'')?;
            Some(line.message[start + 1..end].to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// info --output=json

#[derive(Debug, Clone, Deserialize)]
pub struct StanzaInfo {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub backup: Vec<BackupInfo>,
    #[serde(default)]
    pub db: Vec<DbInfo>,
    #[serde(default)]
    pub repo: Vec<RepoInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackupInfo {
    pub label: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub timestamp: Timestamps,
    pub database: BackupDatabase,
    #[serde(default)]
    pub error: Option<bool>,
    #[serde(default)]
    pub info: Option<SizeInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Timestamps {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackupDatabase {
    pub id: u64,
    #[serde(rename = "repo-key", default = "one")]
    pub repo_key: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
pub struct SizeInfo {
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DbInfo {
    pub id: u64,
    #[serde(rename = "repo-key", default = "one")]
    pub repo_key: u32,
    #[serde(rename = "system-id")]
    pub system_id: u64,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    pub key: u32,
    pub status: Status,
}

/// Parses `pgbackrest info --output=json`.
///
/// # Errors
/// When the text is not the JSON array pgBackRest prints.
pub fn parse_info(text: &str) -> Result<Vec<StanzaInfo>, serde_json::Error> {
    serde_json::from_str(text)
}

/// One backup set as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub start: i64,
    pub stop: i64,
    /// PostgreSQL major version of the cluster it was taken from.
    pub pg_major: Option<u32>,
    /// The system identifier of that cluster, as a string (JSON numbers lose u64 precision).
    #[serde(serialize_with = "serialize_opt_u64_as_string")]
    pub system_id: Option<u64>,
    pub size: Option<u64>,
    /// pgBackRest found checksum errors in the cluster while backing it up.
    pub error: bool,
}

#[allow(clippy::ref_option)] // serde's serialize_with signature
fn serialize_opt_u64_as_string<S: serde::Serializer>(
    value: &Option<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.serialize_str(&value.to_string()),
        None => serializer.serialize_none(),
    }
}

/// pgBackRest's per-repository status codes (`info` command).
pub mod code {
    pub const OK: i64 = 0;
    pub const MISSING_STANZA_PATH: i64 = 1;
    pub const NO_BACKUP: i64 = 2;
}

/// What one repository says about one stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoView {
    pub code: i64,
    pub message: String,
    /// Oldest first, as pgBackRest lists them.
    pub backups: Vec<Backup>,
}

/// Picks the stanza and repository out of `info` output.
///
/// # Errors
/// When the output does not mention the stanza or the repository.
pub fn repo_view(infos: &[StanzaInfo], stanza: &str, repo: u32) -> Result<RepoView, String> {
    let info = infos
        .iter()
        .find(|info| info.name == stanza)
        .ok_or_else(|| format!("pgbackrest info did not report stanza {stanza}"))?;
    let status = info
        .repo
        .iter()
        .find(|r| r.key == repo)
        .map_or(&info.status, |r| &r.status);
    let mut backups: Vec<Backup> = info
        .backup
        .iter()
        .filter(|backup| backup.database.repo_key == repo)
        .map(|backup| {
            let db = info
                .db
                .iter()
                .find(|db| db.id == backup.database.id && db.repo_key == repo);
            Backup {
                label: backup.label.clone(),
                kind: backup.kind.clone(),
                start: backup.timestamp.start,
                stop: backup.timestamp.stop,
                pg_major: db.and_then(|db| major_of(&db.version)),
                system_id: db.map(|db| db.system_id),
                size: backup.info.as_ref().and_then(|info| info.size),
                error: backup.error.unwrap_or(false),
            }
        })
        .collect();
    backups.sort_by_key(|backup| backup.stop);
    Ok(RepoView {
        code: status.code,
        message: status.message.clone(),
        backups,
    })
}

/// "16" → 16, "9.6" → 9 (pre-10 majors were two-part; the first part is what we compare).
#[must_use]
pub fn major_of(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// where a repository lives

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

// ---------------------------------------------------------------------------------------------
// console log lines

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Detail,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine<'a> {
    pub level: Level,
    pub message: &'a str,
}

/// `2024-01-01 00:00:00.000 P00   INFO: message` (the timestamp is optional). Continuation lines
/// (HINTs, indented) return `None`; callers keep them with the previous message.
#[must_use]
pub fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let rest = match line.split_once(" P") {
        Some((prefix, rest)) if looks_like_timestamp(prefix) => rest,
        _ => line.strip_prefix('P')?,
    };
    let (process, rest) = rest.split_at_checked(2)?;
    if !process.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (level, message) = rest.trim_start().split_once(": ")?;
    let level = match level {
        "TRACE" => Level::Trace,
        "DEBUG" => Level::Debug,
        "DETAIL" => Level::Detail,
        "INFO" => Level::Info,
        "WARN" => Level::Warn,
        "ERROR" => Level::Error,
        _ => return None,
    };
    Some(LogLine { level, message })
}

fn looks_like_timestamp(prefix: &str) -> bool {
    // "2024-01-01 00:00:00.000"
    prefix.len() == 23 && prefix.as_bytes()[4] == b'-' && prefix.as_bytes()[10] == b' '
}

/// The running percentage in `restore file /path (8KB, 45.31%) …`.
#[must_use]
pub fn restore_progress(message: &str) -> Option<f64> {
    let rest = message.strip_prefix("restore file ")?;
    // The path may itself contain " (": anchor on the last "%)".
    let end = rest.rfind("%)")?;
    let start = rest[..end].rfind(" (")?;
    let (_, percent) = rest[start + 2..end].rsplit_once(", ")?;
    percent.parse().ok()
}

/// `repo1: restore backup set 20240101-000000F, recovery will start at …` → the label.
#[must_use]
pub fn restored_backup_set(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("restore backup set ")?;
    let label = rest.split([',', ' ']).next()?;
    (!label.is_empty()).then_some(label)
}

/// `restore size = 96.9MB, file total = 977` → the size text as pgBackRest prints it.
#[must_use]
pub fn restore_size(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("restore size = ")?;
    rest.split(',').next()
}

/// Converts pgBackRest's size text ("96.9MB", "1.2GB", "512KB", "0B") to bytes.
#[must_use]
pub fn parse_size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "PB" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // sizes are small, positive
    Some((number * scale).round() as u64)
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Detail => "DETAIL",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_REPOS: &str = include_str!("../tests/fixtures/pgbackrest-info-two-repos.json");
    const MISSING: &str = include_str!("../tests/fixtures/pgbackrest-info-missing-stanza.json");
    const DENIED: &str = include_str!("../tests/fixtures/pgbackrest-info-permission-denied.json");
    const BEGIN: &str = include_str!("../tests/fixtures/pgbackrest-info-debug-stderr.txt");

    #[test]
    fn two_repos_each_see_their_own_backups() {
        let infos = parse_info(TWO_REPOS).unwrap();
        let repo1 = repo_view(&infos, "main", 1).unwrap();
        let repo2 = repo_view(&infos, "main", 2).unwrap();
        assert_eq!(repo1.code, code::OK);
        assert_eq!(repo1.backups.len(), 1);
        assert_eq!(repo2.backups.len(), 1);
        assert_ne!(repo1.backups[0].label, repo2.backups[0].label);
        assert_eq!(repo1.backups[0].pg_major, Some(15));
        assert_eq!(repo1.backups[0].system_id, Some(7_712_773_868_972_210_231));
        assert!(repo1.backups[0].stop > repo1.backups[0].start);
        assert_eq!(repo1.backups[0].kind, "full");
    }

    #[test]
    fn missing_stanza_and_errors_keep_code_and_message() {
        let view = repo_view(&parse_info(MISSING).unwrap(), "nosuch", 1).unwrap();
        assert_eq!(view.code, code::MISSING_STANZA_PATH);
        assert!(view.backups.is_empty());
        let view = repo_view(&parse_info(DENIED).unwrap(), "main", 1).unwrap();
        assert_eq!(view.code, 99);
        assert!(
            view.message.contains("Permission denied"),
            "{}",
            view.message
        );
    }

    #[test]
    fn unknown_stanza_is_an_error() {
        assert!(repo_view(&parse_info(TWO_REPOS).unwrap(), "other", 1).is_err());
    }

    #[test]
    fn info_json_that_is_not_pgbackrest_fails() {
        assert!(parse_info("{}").is_err());
        assert!(parse_info("[{\"name\": 1}]").is_err());
        assert!(parse_info("").is_err());
    }

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
    fn restore_argv_has_no_delta_unless_resuming() {
        let target = Target::default();
        let mut restore = Restore {
            common: Common {
                stanza: "main",
                config: Some(Utf8Path::new("/etc/pgbackrest/pgbackrest.conf")),
            },
            repo: 2,
            pgdata: Utf8Path::new("/var/lib/postgresql/16"),
            process_max: 4,
            delta: false,
            set: None,
            target: &target,
            drill: None,
        };
        let argv = restore_argv(&restore);
        assert_eq!(
            argv,
            [
                "--config=/etc/pgbackrest/pgbackrest.conf",
                "--stanza=main",
                "--repo=2",
                "--pg1-path=/var/lib/postgresql/16",
                "--process-max=4",
                "--log-level-console=detail",
                "--log-level-stderr=off",
                "restore"
            ]
        );
        restore.delta = true;
        assert!(restore_argv(&restore).contains(&"--delta".to_owned()));
    }

    #[test]
    fn restore_argv_targets_promote() {
        let target = Target {
            kind: TargetType::Time,
            value: Some("2024-01-02 03:04:05+00".to_owned()),
        };
        let restore = Restore {
            common: Common {
                stanza: "main",
                config: None,
            },
            repo: 1,
            pgdata: Utf8Path::new("/pg"),
            process_max: 1,
            delta: false,
            set: Some("20240101-000000F"),
            target: &target,
            drill: Some(Utf8Path::new("/var/tmp/drill")),
        };
        let argv = restore_argv(&restore);
        for expected in [
            "--set=20240101-000000F",
            "--type=time",
            "--target=2024-01-02 03:04:05+00",
            "--target-action=promote",
            "--archive-mode=off",
            "--tablespace-map-all=/var/tmp/drill/tablespaces",
        ] {
            assert!(
                argv.contains(&expected.to_owned()),
                "{expected} in {argv:?}"
            );
        }
        assert!(!argv.iter().any(|a| a.starts_with("--config")));
    }

    #[test]
    fn log_lines() {
        let line = "2026-11-27 09:08:07.459 P00   INFO: repo1: restore backup set 20261127-090147F, recovery will start at 2026-11-27 09:01:47";
        let parsed = parse_log_line(line).unwrap();
        assert_eq!(parsed.level, Level::Info);
        assert_eq!(
            restored_backup_set(parsed.message),
            Some("20261127-090147F")
        );
        let detail = "2026-11-27 09:08:07.580 P02 DETAIL: restore file /tmp/play/r3/base/5/16404 (10.7MB, 11.08%) checksum 4ec599bb";
        let parsed = parse_log_line(detail).unwrap();
        assert_eq!(parsed.level, Level::Detail);
        assert_eq!(restore_progress(parsed.message), Some(11.08));
        assert_eq!(
            parse_log_line("P00  ERROR: [040]: unable to restore")
                .unwrap()
                .level,
            Level::Error
        );
        assert_eq!(parse_log_line("       HINT: try using --delta"), None);
        assert_eq!(parse_log_line(""), None);
        assert_eq!(parse_log_line("P0"), None);
        assert_eq!(parse_log_line("Pxx INFO: x"), None);
    }

    #[test]
    fn progress_of_a_path_with_parentheses() {
        let message = "restore file /pg/odd (name, 5%)/f (0B, 100.00%)";
        assert_eq!(restore_progress(message), Some(100.0));
        assert_eq!(
            restore_progress("restore file /pg/f (8KB, 45.31%) checksum x"),
            Some(45.31)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(
            restore_size("restore size = 96.9MB, file total = 977"),
            Some("96.9MB")
        );
        assert_eq!(parse_size("96.9MB"), Some(101_607_014));
        assert_eq!(parse_size("0B"), Some(0));
        assert_eq!(parse_size("12XB"), None);
        assert_eq!(parse_size("MB"), None);
    }

    #[test]
    fn verify_names_the_corrupt_file() {
        let output = include_str!("../tests/fixtures/pgbackrest-verify-corrupt.txt");
        assert_eq!(
            corrupt_files(output),
            ["20261127-090147F/pg_data/base/5/16396.gz"]
        );
        assert!(corrupt_files("P00   INFO: verify command end: completed successfully").is_empty());
        assert!(looks_like_corruption("ERROR: [029]: raised from local-1 protocol: lz4 error: [-18] ERROR_contentChecksum_invalid"));
        assert!(!looks_like_corruption(
            "ERROR: [047]: unable to create path '/x': [28] No space left on device"
        ));
    }

    #[test]
    fn majors() {
        assert_eq!(major_of("16"), Some(16));
        assert_eq!(major_of("9.6"), Some(9));
        assert_eq!(major_of("x"), None);
    }
}
