//! pgBackRest's console output: log lines, restore progress and sizes, and what `verify` found
//! damaged.

use std::fmt;

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

/// One `restore file /path (8KB, 45.31%) …` line: the file's size and the running percentage
/// (by size, of the whole restore).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestoredFile {
    pub bytes: u64,
    pub percent: f64,
}

/// Reads a `restore file …` message (also `… - exists and matches backup (8KB, 45.31%)` when
/// resuming with `--delta`).
#[must_use]
pub fn restore_file(message: &str) -> Option<RestoredFile> {
    let rest = message.strip_prefix("restore file ")?;
    // The path may itself contain " (": anchor on the last "%)".
    let end = rest.rfind("%)")?;
    let start = rest[..end].rfind(" (")?;
    let (size, percent) = rest[start + 2..end].rsplit_once(", ")?;
    let size = size.rsplit(", ").next()?;
    Some(RestoredFile {
        bytes: parse_size(size)?,
        percent: percent.parse().ok()?,
    })
}

/// The running percentage in `restore file /path (8KB, 45.31%) …`.
#[must_use]
pub fn restore_progress(message: &str) -> Option<f64> {
    restore_file(message).map(|file| file.percent)
}

/// `line` with the value of every `--recovery-option=` replaced by `<redacted>`, the setting's
/// name kept. pgBackRest's "command begin" line (which a restore prints on the console at info)
/// lists the recovery options pgbackrest.conf sets, and unlike its credentials it does not redact
/// them: a `primary_conninfo` may hold a password. Every line of a restore's output goes through
/// this before it is logged or kept in an error.
#[must_use]
pub fn redact_recovery_options(line: &str) -> std::borrow::Cow<'_, str> {
    const OPTION: &str = "--recovery-option=";
    if !line.contains(OPTION) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(OPTION) {
        out.push_str(&rest[..at + OPTION.len()]);
        rest = &rest[at + OPTION.len()..];
        let (quoted, value_and_after) = match rest.strip_prefix('"') {
            Some(inner) => (true, inner),
            None => (false, rest),
        };
        // A quoted value ends at the quote before a space or the end; a bare one at a space.
        let end = if quoted {
            value_and_after
                .match_indices('"')
                .map(|(i, _)| i)
                .find(|&i| {
                    value_and_after[i + 1..].is_empty() || value_and_after[i + 1..].starts_with(' ')
                })
                .map_or(value_and_after.len(), |i| i + 1)
        } else {
            value_and_after.find(' ').unwrap_or(value_and_after.len())
        };
        let value = &value_and_after[..end];
        let name = value
            .split('=')
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        out.push_str(name);
        out.push_str("=<redacted>");
        rest = &value_and_after[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Issue 13.3: the console's "command begin" line lists the recovery options pgbackrest.conf
    /// sets, a password in primary_conninfo with them.
    #[test]
    fn recovery_option_values_are_redacted() {
        let line = r#"2026-11-27 20:53:19.962 P00   INFO: restore command begin 2.45: --config=/etc/pgbackrest.conf --pg1-path=/pg --recovery-option="primary_conninfo=host=db1 user=rep password=s3cr3t" --recovery-option=recovery_end_command=true --recovery-option="restore_command=/bin/pg-preseed archive-get %f "%p"" --repo1-s3-key=<redacted> --stanza=main"#;
        let redacted = redact_recovery_options(line);
        assert_eq!(
            redacted,
            r"2026-11-27 20:53:19.962 P00   INFO: restore command begin 2.45: --config=/etc/pgbackrest.conf --pg1-path=/pg --recovery-option=primary_conninfo=<redacted> --recovery-option=recovery_end_command=<redacted> --recovery-option=restore_command=<redacted> --repo1-s3-key=<redacted> --stanza=main"
        );
        assert!(!redacted.contains("s3cr3t"));
        let plain = "P01 DETAIL: restore file /pg/base/1/1 (8KB, 1.00%)";
        assert!(matches!(
            redact_recovery_options(plain),
            std::borrow::Cow::Borrowed(_)
        ));
        // Cut off inside a quoted value: everything after the name goes.
        assert_eq!(
            redact_recovery_options(r#"x --recovery-option="primary_conninfo=password=s3cr"#),
            "x --recovery-option=primary_conninfo=<redacted>"
        );
    }

    #[test]
    fn restored_files_with_their_sizes() {
        let line = "restore file /var/lib/postgresql/15/base/5/16396 (64MB, 65.43%) checksum 5c55cfe257d18df34b77ebc38fcdcb89aaa84896";
        assert_eq!(
            restore_file(line),
            Some(RestoredFile {
                bytes: 64 * 1024 * 1024,
                percent: 65.43
            })
        );
        let matched = "restore file /pg/base/5/16404 - exists and matches backup (10.7MB, 76.39%) checksum 4ec599bb";
        assert_eq!(restore_file(matched).map(|f| f.percent), Some(76.39));
        assert_eq!(
            restore_file("restore file /pg/global/pg_control (0B, 100.00%)"),
            Some(RestoredFile {
                bytes: 0,
                percent: 100.0
            })
        );
        assert_eq!(
            restore_file("restore size = 96.9MB, file total = 977"),
            None
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
        let output = include_str!("../../tests/fixtures/pgbackrest-verify-corrupt.txt");
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
}
