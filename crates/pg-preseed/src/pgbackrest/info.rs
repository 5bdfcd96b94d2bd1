//! `pgbackrest info --output=json`: what each repository holds for a stanza, as the decision
//! sees it (the backups), and the WAL positions point-in-time recovery checks (each backup's
//! start and stop, each archive id's oldest and newest segment; read by [`crate::pitr`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
pub struct StanzaInfo {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub archive: Vec<ArchiveInfo>,
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
    /// The WAL locations the backup starts and stops at (`0/2000028`).
    #[serde(default)]
    pub lsn: Option<Range>,
    /// The WAL segments holding them.
    #[serde(default)]
    pub archive: Option<Range>,
}

/// A `start`/`stop` pair of text positions (LSNs or segment names).
#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub stop: Option<String>,
}

/// One archive id (`15-1`): the WAL archived for one cluster (`database`), and its range.
#[derive(Debug, Clone, Deserialize)]
pub struct ArchiveInfo {
    pub id: String,
    pub database: BackupDatabase,
    /// Oldest and newest segment names; absent when it holds no WAL.
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Timestamps {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackupDatabase {
    pub id: u64,
    #[serde(rename = "repo-key", default = "default_repo_key")]
    pub repo_key: u32,
}

/// Output from before pgBackRest had several repositories names none: it is repo1.
fn default_repo_key() -> u32 {
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
    #[serde(rename = "repo-key", default = "default_repo_key")]
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

/// A system identifier as a string (JSON numbers lose u64 precision); for `serialize_with`.
#[allow(clippy::ref_option)] // serde's serialize_with signature
pub(crate) fn serialize_opt_u64_as_string<S: serde::Serializer>(
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

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_REPOS: &str = include_str!("../../tests/fixtures/pgbackrest-info-two-repos.json");
    const MISSING: &str = include_str!("../../tests/fixtures/pgbackrest-info-missing-stanza.json");
    const DENIED: &str =
        include_str!("../../tests/fixtures/pgbackrest-info-permission-denied.json");

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
    fn majors() {
        assert_eq!(major_of("16"), Some(16));
        assert_eq!(major_of("9.6"), Some(9));
        assert_eq!(major_of("x"), None);
    }
}
