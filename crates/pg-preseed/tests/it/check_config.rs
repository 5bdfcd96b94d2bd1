//! Tier 1: bad configs, through the binary. Nothing here needs root or a PostgreSQL: a config
//! that cannot be used ends every command with exit 2 before anything is looked at.

use std::fs;
use std::process::Command;

use camino::Utf8PathBuf;

use crate::common::bin;

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("a UTF-8 path");
    (dir, path)
}

/// `check-config` exits 2 and names the key for each kind of bad input.
#[test]
fn check_config_names_the_key() {
    let (_guard, dir) = tempdir();
    let cases = [
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}, "bogus": 1}"#,
            "bogus",
        ),
        (
            r#"{"pgdata": "/x", "postgres": {"major": "16"}, "pgbackrest": {"stanza": "main"}}"#,
            "postgres.major",
        ),
        (
            r#"{"pgdata": "x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}}"#,
            "pgdata",
        ),
        (
            r#"{"pgdata": "/x", "marker": "/x/m", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}}"#,
            "marker",
        ),
        // Issue 15.5: passed check-config, then panicked in verify (exit 101).
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}, "verify": {"timeout": 18446744073709551615}}"#,
            "verify.timeout",
        ),
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main", "repo_wait": "600000000years"}}"#,
            "pgbackrest.repo_wait",
        ),
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main", "max_backup_age": 9223372036854775807}}"#,
            "pgbackrest.max_backup_age",
        ),
        // Issue 15.3: paths that a shell (pgBackRest's restore_command) or PostgreSQL would
        // misread.
        (
            r#"{"pgdata": "/srv/pg$(touch /tmp/pwned)", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}}"#,
            "pgdata",
        ),
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main", "config": "/etc/pgbackrest/`id`.conf"}}"#,
            "pgbackrest.config",
        ),
        (
            "{\"pgdata\": \"/x\", \"marker\": \"/var/lib/pp/r\\nx.json\", \"postgres\": {\"major\": 16}, \"pgbackrest\": {\"stanza\": \"main\"}}",
            "marker",
        ),
        (
            r#"{"pgdata": "/x", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main", "bin": "/opt/my tools/pgbackrest"}}"#,
            "pgbackrest.bin",
        ),
    ];
    for (index, (text, key)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{index}.json"));
        fs::write(&path, text).expect("write");
        let output = Command::new(bin())
            .args(["check-config", path.as_str()])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key} named in {stderr}");
    }
}

/// Bad configs: garbage, truncated, empty, not UTF-8, huge, wrong types, relative paths,
/// unknown keys. Always exit 2 with a message, never a crash.
#[test]
fn bad_configs_exit_2_without_crashing() {
    let (_guard, dir) = tempdir();
    let good = r#"{"pgdata": "/var/lib/postgresql/16", "postgres": {"major": 16}, "pgbackrest": {"stanza": "main"}}"#;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01garbage\xff".to_vec()),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not utf-8", b"{\"pgdata\": \"/\xff\"}".to_vec()),
        ("array", b"[1, 2, 3]".to_vec()),
        (
            "wrong type",
            good.replace("16}", "\"sixteen\"}").into_bytes(),
        ),
        (
            "relative path",
            good.replace("\"/var/lib/postgresql/16\"", "\"pgdata\"")
                .into_bytes(),
        ),
        (
            "unknown key",
            good.replace("\"pgdata\"", "\"surprise\": true, \"pgdata\"")
                .into_bytes(),
        ),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ];
    let mut huge = b"{\"pgdata\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    huge.extend(b"\"}");
    cases.push(("huge", huge));
    for (name, bytes) in cases {
        let path = dir.join(format!("{}.json", name.replace(' ', "-")));
        fs::write(&path, &bytes).expect("write");
        for command in [
            vec!["check-config", path.as_str()],
            vec!["--config", path.as_str(), "plan"],
        ] {
            let output = Command::new(bin()).args(&command).output().expect("run");
            assert_eq!(
                output.status.code(),
                Some(2),
                "{name}: {command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!output.stderr.is_empty(), "{name}: an error message");
        }
    }
}

/// Issue 15.7: `check-config` on a FIFO waited forever for a writer. Only regular files are
/// read: exit 2, at once.
#[test]
fn a_config_that_is_not_a_regular_file_is_refused_without_waiting() {
    let (_guard, dir) = tempdir();
    let fifo = dir.join("config.json");
    nix::unistd::mkfifo(
        fifo.as_std_path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    for command in [
        vec!["check-config", fifo.as_str()],
        vec!["--config", fifo.as_str(), "plan"],
    ] {
        let mut child = Command::new(bin())
            .args(&command)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        // A guard against hanging the suite, not a timing assertion: the answer comes at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let status = status.unwrap_or_else(|| panic!("{command:?} hangs on a FIFO"));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("read");
        assert_eq!(status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}
