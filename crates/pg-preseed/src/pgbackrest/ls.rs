//! `repo-ls --output=json` of one archive directory: when the repository stored a WAL file (its
//! modification time), for messages. Only ever a detail: pgBackRest 2.45 lists a posix path that
//! does not exist as empty (exit 0), so nothing is decided on what it does not list.

use super::argv::Stanza;

/// `repo-ls --output=json archive/<stanza>/<archive id>/<timeline and log>` in one repository.
#[must_use]
pub fn repo_ls_argv(stanza: &Stanza, repo: u32, archive_id: &str, segment: &str) -> Vec<String> {
    let mut argv = Vec::new();
    if let Some(config) = &stanza.config {
        argv.push(format!("--config={config}"));
    }
    argv.push(format!("--stanza={}", stanza.name));
    argv.push(format!("--repo={repo}"));
    argv.push("--log-level-console=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.push("--log-level-stderr=warn".to_owned());
    argv.push("--output=json".to_owned());
    argv.push("repo-ls".to_owned());
    argv.push(format!(
        "archive/{}/{archive_id}/{}",
        stanza.name,
        segment.get(..16).unwrap_or(segment)
    ));
    argv
}

/// The modification time (unix seconds) of the file for `segment` (`<segment>-<sha1>[.ext]`) in
/// `repo-ls --output=json` output; `None` when it is not listed.
#[must_use]
pub fn segment_file_time(json: &str, segment: &str) -> Option<i64> {
    let listing: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    listing
        .iter()
        .filter(|(name, entry)| {
            name.get(..24)
                .is_some_and(|n| n.eq_ignore_ascii_case(segment))
                && name.as_bytes().get(24) == Some(&b'-')
                && entry["type"] == "file"
        })
        .filter_map(|(_, entry)| entry["time"].as_i64())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pgBackRest 2.45's output for a posix repository, as captured.
    const LISTING: &str = r#"{".":{"type":"path"},"000000010000000000000001-abdb08c62956997c935db063886811d82e69744f.lz4":{"type":"file","size":2040703,"time":1795812455},"000000010000000000000002-5cbd3c1f1e10d07901096a8b7ac8fb9f2b613cbe.lz4":{"type":"file","size":69282,"time":1795812459}}"#;

    #[test]
    fn finds_the_time_of_one_segment() {
        assert_eq!(
            segment_file_time(LISTING, "000000010000000000000002"),
            Some(1_795_812_459)
        );
        assert_eq!(segment_file_time(LISTING, "000000010000000000000003"), None);
        assert_eq!(segment_file_time(r#"{".":{"type":"path"}}"#, "x"), None);
        assert_eq!(segment_file_time("not json", "x"), None);
    }

    #[test]
    fn lists_the_directory_of_the_segment() {
        let stanza = Stanza {
            name: "main".to_owned(),
            config: Some("/etc/pgbackrest/pgbackrest.conf".into()),
        };
        let argv = repo_ls_argv(&stanza, 2, "15-1", "00000001000000000000000C");
        assert_eq!(argv[0], "--config=/etc/pgbackrest/pgbackrest.conf");
        assert!(argv.contains(&"--repo=2".to_owned()));
        assert_eq!(argv.last().unwrap(), "archive/main/15-1/0000000100000000");
    }
}
