//! Proving that a recovery reached the end of the archive (or its target), and the
//! `restore_command` that keeps a restored server from ending recovery early. Pure: quoting,
//! postgresql.auto.conf, what `pgbackrest archive-get`'s exit status means, and the comparisons
//! (the argv are in [`crate::pgbackrest::argv`]). The edges are [`crate::restore`] (installs the
//! restore_command), `pg-preseed archive-get` (the restore_command itself) and
//! [`crate::recovery_end`] (what `verify` asks the server and the repositories).
//!
//! Why: PostgreSQL ends archive recovery at the first WAL file `restore_command` does not
//! deliver, and promotes. With pgBackRest's own restore_command a repository that cannot be read
//! (NFS gone, S3 timing out, a file it may not open) looks exactly like the end of the archive:
//! pgBackRest exits with its error code (below 126), which PostgreSQL takes for "not there".
//! The server then comes up with the newest transactions silently missing. PostgreSQL treats an
//! exit status above 125 as fatal instead, so `pg-preseed archive-get` answers "not there" only
//! when every repository it consults said so, and [`CANNOT_ASK`] otherwise. It consults the
//! repositories that answered when the restore was decided
//! ([`crate::decision::recovery_repos`]): one that was unreachable then is left out, or a restore
//! from the next repository could never finish while the first stays down.

use std::fmt::Write as _;

use crate::clock::parse_timestamptz;
use crate::config::{RepoRef, Target, TargetType};
use crate::receipt::{ArchiveEnd, RecoveryEnd};
use crate::wal::{self, Lsn, Segment};

/// `archive-get` fetched the file.
pub const FETCHED: u8 = 0;
/// Every repository answered that it does not hold the file: the end of the archive.
pub const NOT_FOUND: u8 = 1;
/// A repository could not be asked. Above 125, so PostgreSQL stops recovery (FATAL) instead of
/// promoting; started again once the repository is back, it continues where it stopped.
pub const CANNOT_ASK: u8 = 255;

// ---------------------------------------------------------------------------------------------
// restore_command

/// The shell command PostgreSQL runs for each WAL file it needs:
/// `<exe> --config <config> archive-get --pgdata <pgdata> --repos <n,…> %f "%p"`. `repos` are the
/// repositories recovery consults, in order (none: every configured one).
///
/// Every word that is not made only of characters a shell never interprets is single-quoted,
/// and `%` is doubled (PostgreSQL replaces `%f`, `%p`, `%r` and `%%` before the shell sees it).
///
/// # Errors
/// A path that is not absolute or holds a control character (it could not survive
/// postgresql.auto.conf and the shell intact).
pub fn restore_command(
    exe: &str,
    config: &str,
    pgdata: &str,
    repos: &[u32],
) -> Result<String, String> {
    for (what, path) in [
        ("pg-preseed's executable", exe),
        ("the config file", config),
        ("PGDATA", pgdata),
    ] {
        if !path.starts_with('/') {
            return Err(format!(
                "{what} {path:?} is not an absolute path: PostgreSQL runs restore_command in PGDATA"
            ));
        }
        if path.chars().any(char::is_control) {
            return Err(format!(
                "{what} {path:?} contains a control character: it cannot be written into restore_command"
            ));
        }
    }
    let mut words = vec![
        exe.to_owned(),
        "--config".to_owned(),
        config.to_owned(),
        "archive-get".to_owned(),
        "--pgdata".to_owned(),
        pgdata.to_owned(),
    ];
    if !repos.is_empty() {
        words.push("--repos".to_owned());
        words.push(
            repos
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let mut command = words
        .iter()
        .map(|word| shell_word(word).replace('%', "%%"))
        .collect::<Vec<_>>()
        .join(" ");
    command.push_str(" %f \"%p\"");
    Ok(command)
}

/// One shell word: as it is when only made of characters no shell interprets, else in single
/// quotes (a single quote inside becomes `'\''`).
#[must_use]
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The text to hand pgBackRest in `--recovery-option=restore_command=…` so that PostgreSQL reads
/// `value` back. pgBackRest 2.45 writes the value verbatim between single quotes into
/// postgresql.auto.conf, where PostgreSQL reads `''` as `'` and `\\` as `\`. Whether it did is
/// checked afterwards with [`setting`] (a pgBackRest that escaped by itself would fail that
/// check rather than install a mangled command).
#[must_use]
pub fn conf_quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

/// The value of the last assignment of `name` in a postgresql.conf-style file (the last one wins,
/// as in PostgreSQL), unquoted as PostgreSQL unquotes it. `None` when `name` is not set.
#[must_use]
pub fn setting(conf: &str, name: &str) -> Option<String> {
    conf.lines()
        .rev()
        .filter_map(parse_conf_line)
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// `conf` with `name` set to `quoted` (a value already quoted for postgresql.conf, see
/// [`conf_quoted`]): the last line assigning `name` — the one PostgreSQL reads — is replaced by
/// `name = '<quoted>'`, or the line is appended when none does. Every other line stays as it
/// was, byte for byte. How pg-preseed installs its restore_command after pgBackRest wrote the
/// recovery settings its configuration sets ([`crate::restore::Install`]).
#[must_use]
pub fn with_setting(conf: &str, name: &str, quoted: &str) -> String {
    let assignment = format!("{name} = '{quoted}'\n");
    let lines: Vec<&str> = conf.split_inclusive('\n').collect();
    let last = lines.iter().rposition(|line| {
        parse_conf_line(line).is_some_and(|(key, _)| key.eq_ignore_ascii_case(name))
    });
    let mut out = String::with_capacity(conf.len() + assignment.len());
    if let Some(index) = last {
        for (i, line) in lines.iter().enumerate() {
            out.push_str(if i == index { &assignment } else { line });
        }
    } else {
        out.push_str(conf);
        if !conf.is_empty() && !conf.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&assignment);
    }
    out
}

/// `name [=] value [# comment]`, value quoted (`'…'` with `''` and backslash escapes) or bare.
fn parse_conf_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_start();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return None;
    }
    let (name, rest) = line.split_at(name_end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('\'') {
        unquote(quoted)?
    } else {
        rest.split(|c: char| c.is_whitespace() || c == '#')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    Some((name.to_owned(), value))
}

/// The inside of a single-quoted postgresql.conf value, up to its closing quote.
fn unquote(text: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                value.push('\'');
            }
            '\'' => return Some(value),
            '\\' => match chars.next()? {
                'b' => value.push('\u{8}'),
                'f' => value.push('\u{c}'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                digit @ '0'..='7' => {
                    let mut code = digit.to_digit(8)?;
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(next) => {
                                code = code * 8 + next;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    value.push(char::from_u32(code)?);
                }
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// archive-get

/// What one repository answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Fetched,
    NotThere,
    /// It could not be asked, or failed to deliver the file: why.
    Failed(String),
}

/// Classifies one `pgbackrest --repo=N archive-get` by how it ended. pgBackRest 2.45 exits 0
/// when it fetched the file, 1 (silently) when the repository answered that it does not hold
/// it, and its error code otherwise: 103 when the repository cannot be read (path gone,
/// permission denied on archive.info), 42 when the file is there but cannot be read or
/// decompressed. An exit status of 1 with an ERROR line is not a clean "not there".
#[must_use]
pub fn classify_archive_get(code: Option<i32>, signal: Option<i32>, stderr: &str) -> Asked {
    match (code, signal) {
        (Some(0), _) => Asked::Fetched,
        (Some(1), _) if !stderr.contains("ERROR:") => Asked::NotThere,
        (Some(code), _) => Asked::Failed(one_line(
            &format!("pgBackRest exited with status {code}"),
            stderr,
        )),
        (None, Some(signal)) => Asked::Failed(one_line(
            &format!("pgBackRest was killed by signal {signal}"),
            stderr,
        )),
        (None, None) => Asked::Failed(one_line("pgBackRest ended without a status", stderr)),
    }
}

/// `head: <output>` on one line (whitespace runs, newlines included, become one space), cut to a
/// length a log line can carry.
#[must_use]
pub fn one_line(head: &str, output: &str) -> String {
    let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (head, joined) = (flat(head), flat(output));
    let mut text = if joined.is_empty() {
        head
    } else {
        format!("{head}: {joined}")
    };
    if text.len() > 800 {
        let mut cut = 800;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// What `archive-get` tells PostgreSQL once every repository was asked (none delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every repository answered that it does not hold the file.
    NotFound,
    /// At least one could not be asked: the line to log.
    CannotAsk(String),
}

/// Combines the answers of every repository for `wal` (none of which delivered it).
#[must_use]
pub fn verdict(wal: &str, answers: &[(RepoRef, Asked)]) -> Verdict {
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|(repo, asked)| match asked {
            Asked::Failed(why) => Some(format!("{repo} could not be asked ({why})")),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return Verdict::NotFound;
    }
    let not_there: Vec<String> = answers
        .iter()
        .filter(|(_, asked)| *asked == Asked::NotThere)
        .map(|(repo, _)| repo.to_string())
        .collect();
    let mut line = format!("pg-preseed archive-get {wal}: {}", failed.join("; "));
    if !not_there.is_empty() {
        let _ = write!(line, "; not in {}", not_there.join(", "));
    }
    let _ = write!(
        line,
        ". Stopping recovery (exit {CANNOT_ASK}) rather than ending it here: a repository that \
         could not be asked may hold this file. Bring it back and start PostgreSQL again (it \
         continues where it stopped); if it is gone for good, remove it from pgbackrest.repos first"
    );
    Verdict::CannotAsk(line)
}

// ---------------------------------------------------------------------------------------------
// where replay ended

/// Where archive recovery ended, from the history file of the timeline it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEnd {
    /// The timeline replay ran on when it ended.
    pub timeline: u32,
    /// The first location of the new timeline: the end of the last record replayed.
    pub lsn: Lsn,
    /// The timeline the server went on with.
    pub new_timeline: u32,
    /// PostgreSQL's reason for ending there.
    pub reason: String,
}

impl ReplayEnd {
    /// From the server's current timeline and that timeline's history file.
    ///
    /// # Errors
    /// When the server is still on timeline 1 (recovery did not end by promotion, so there is no
    /// record of where it ended), or the history file is not one.
    pub fn from_history(new_timeline: u32, history: &str) -> Result<ReplayEnd, String> {
        if new_timeline <= 1 {
            return Err(
                "the server is on timeline 1: archive recovery always starts a new timeline, so \
                 this recovery did not end the way a restore does, and where replay ended is not \
                 recorded"
                    .to_owned(),
            );
        }
        let entries = wal::parse_history(history)?;
        let last = entries.last().ok_or_else(|| {
            format!(
                "the history file of timeline {new_timeline} is empty: where replay ended is not recorded"
            )
        })?;
        Ok(ReplayEnd {
            timeline: last.parent,
            lsn: last.switchpoint,
            new_timeline,
            reason: last.reason.clone(),
        })
    }

    /// The segment holding the last byte replayed (recovery ending right after a segment switch
    /// stops at the next segment's first byte, which it never read).
    #[must_use]
    pub fn last_segment(&self, segment_size: u64) -> Segment {
        Segment::containing(
            self.timeline,
            Lsn(self.lsn.0.saturating_sub(1)),
            segment_size,
        )
    }
}

/// The outcome of one comparison, ready to become a check in the receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub ok: bool,
    pub detail: String,
    pub end: RecoveryEnd,
}

fn recovery_end(end: &ReplayEnd, segment_size: u64) -> RecoveryEnd {
    RecoveryEnd {
        timeline: end.timeline,
        end_lsn: end.lsn,
        end_segment: end.last_segment(segment_size).name(segment_size),
        new_timeline: end.new_timeline,
        reason: end.reason.clone(),
        target: None,
        target_reached: None,
        next_segment: None,
        archive_end: None,
        warnings: Vec::new(),
    }
}

/// What `verify` learnt of one repository about the timeline replay ended on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoAnswer {
    pub repo: RepoRef,
    /// Why recovery did not consult it ([`crate::receipt::LeftOut`]'s reason); `None`: it did.
    pub left_out: Option<String>,
    /// The newest segment it is known to hold on that timeline (`None`: none beyond what replay
    /// read), or why it could not be asked.
    pub newest: Result<Option<Segment>, String>,
}

/// Without a recovery target: replay must have reached the newest segment any repository holds
/// on the timeline it ended on. [`crate::recovery_end`] learns what each holds by fetching the
/// segment after the last one replayed (exactly what recovery would have asked for next) and from
/// `info`'s newest segment.
///
/// - Any repository holding more fails the check, naming both positions — also one recovery left
///   out (unreachable when the restore was decided, reachable now): WAL exists that was not
///   replayed.
/// - A repository recovery consulted that cannot be asked now fails it (unknown is not
///   "complete").
/// - A left-out repository that cannot be asked now either is a warning: it was out of reach
///   when the restore was decided and still is; what it may hold is reported, not waited for.
#[must_use]
pub fn judge_archive_end(end: &ReplayEnd, segment_size: u64, answers: &[RepoAnswer]) -> Judged {
    let last = end.last_segment(segment_size);
    let mut result = recovery_end(end, segment_size);
    let position = format!(
        "replay ended on timeline {} at {} (in segment {})",
        end.timeline, end.lsn, result.end_segment
    );
    let newest = answers
        .iter()
        .filter_map(|answer| match answer.newest {
            Ok(Some(segment)) => Some((answer, segment)),
            _ => None,
        })
        // On a tie, a repository recovery consulted names the position.
        .max_by_key(|(answer, segment)| (segment.number, answer.left_out.is_none()));
    if let Some((answer, segment)) = newest.filter(|(_, segment)| segment.number > last.number) {
        let held = format!(
            "WAL on timeline {} up to segment {} ({} segment(s) more)",
            end.timeline,
            segment.name(segment_size),
            segment.number - last.number
        );
        let detail = match &answer.left_out {
            None => format!(
                "{position}, but {} holds {held}: recovery stopped before the end of the \
                 archive, so transactions committed in those segments are missing from this server",
                answer.repo
            ),
            Some(reason) => format!(
                "{position}, but {}, left out of recovery ({reason}), is reachable now and holds \
                 {held}: WAL exists that was not replayed, so transactions committed in those \
                 segments are missing from this server",
                answer.repo
            ),
        };
        return Judged {
            ok: false,
            detail,
            end: result,
        };
    }
    let unasked: Vec<String> = answers
        .iter()
        .filter(|answer| answer.left_out.is_none())
        .filter_map(|answer| {
            answer
                .newest
                .as_ref()
                .err()
                .map(|why| format!("{}: {why}", answer.repo))
        })
        .collect();
    if !unasked.is_empty() {
        return Judged {
            ok: false,
            detail: format!(
                "{position}; whether the repositories hold more WAL on that timeline is unknown, \
                 because {} could not be asked: not verified",
                unasked.join("; ")
            ),
            end: result,
        };
    }
    result.warnings = answers
        .iter()
        .filter_map(|answer| match (&answer.left_out, &answer.newest) {
            (Some(reason), Err(why)) => Some(format!(
                "{} was left out of recovery ({reason}) and cannot be asked now either ({why}): \
                 whether it holds WAL beyond the end of replay is unknown",
                answer.repo
            )),
            _ => None,
        })
        .collect();
    let next = Segment {
        timeline: last.timeline,
        number: last.number + 1,
    }
    .name(segment_size);
    result.next_segment = Some(next.clone());
    result.archive_end = newest.map(|(answer, segment)| ArchiveEnd {
        repo: answer.repo.number,
        segment: segment.name(segment_size),
    });
    let nowhere = if result.warnings.is_empty() {
        "is in no repository"
    } else {
        "is in no repository that could be asked"
    };
    let mut detail = match &result.archive_end {
        Some(archive) => format!(
            "{position}; the newest archived segment on that timeline is {} (repo{}) and the \
             next one, {next}, {nowhere}: replay reached the end of the archive",
            archive.segment, archive.repo
        ),
        None => format!(
            "{position}; the next segment, {next}, {nowhere}: replay reached the end of the \
             archive"
        ),
    };
    for warning in &result.warnings {
        let _ = write!(detail, "; warning: {warning}");
    }
    Judged {
        ok: true,
        detail,
        end: result,
    }
}

/// With a recovery target: PostgreSQL (13 and later) promotes only once the target is reached,
/// and records where it stopped as the reason in the new timeline's history file. The reason must
/// be a stop at this target (for a time target, at the first commit after it).
#[must_use]
pub fn judge_target(end: &ReplayEnd, segment_size: u64, target: &Target) -> Judged {
    let mut result = recovery_end(end, segment_size);
    result.target = Some(target.clone());
    let value = target.value.as_deref().unwrap_or_default();
    let reason = end.reason.as_str();
    let stop_at = |prefixes: &[&str]| {
        prefixes
            .iter()
            .find_map(|prefix| reason.strip_prefix(prefix))
            .map(str::trim)
    };
    let reached = match target.kind {
        TargetType::Immediate => reason == "reached consistency",
        TargetType::Name => reason == format!("at restore point \"{value}\""),
        TargetType::Lsn => stop_at(&["after LSN ", "before LSN "])
            .is_some_and(|lsn| Lsn::parse(lsn).ok() == Lsn::parse(value).ok()),
        TargetType::Xid => stop_at(&["after transaction ", "before transaction "])
            .is_some_and(|xid| xid == value.trim()),
        TargetType::Time => {
            match stop_at(&["before ", "after "]) {
                Some(at) if !at.starts_with("transaction ") && !at.starts_with("LSN ") => {
                    // PostgreSQL stops at the first commit after the target; when its timestamp
                    // (written in the server's log_timezone and DateStyle) can be read, it must
                    // not be before the target.
                    match (parse_timestamptz(at), parse_timestamptz(value)) {
                        (Ok(stopped), Ok(wanted)) => stopped >= wanted,
                        _ => true,
                    }
                }
                _ => false,
            }
        }
        TargetType::Default => reason == "no recovery target specified",
    };
    result.target_reached = Some(reached);
    let detail = if reached {
        format!(
            "recovery stopped at its target {} on timeline {} at {}: {reason}",
            target.describe(),
            end.timeline,
            end.lsn
        )
    } else {
        format!(
            "recovery ended on timeline {} at {} with \"{reason}\", not at the target {}",
            end.timeline,
            end.lsn,
            target.describe()
        )
    };
    Judged {
        ok: reached,
        detail,
        end: result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = wal::DEFAULT_SEGMENT_SIZE;

    fn repo(number: u32) -> RepoRef {
        RepoRef { number, name: None }
    }

    /// A repository recovery consulted, and what verify learnt of it.
    fn used(number: u32, newest: Result<Option<Segment>, String>) -> RepoAnswer {
        RepoAnswer {
            repo: repo(number),
            left_out: None,
            newest,
        }
    }

    /// A repository recovery left out because it was unreachable at the decision.
    fn left_out(number: u32, newest: Result<Option<Segment>, String>) -> RepoAnswer {
        RepoAnswer {
            left_out: Some("unreachable when the restore was decided".to_owned()),
            ..used(number, newest)
        }
    }

    /// Issue 13.3: pgBackRest writes the recovery settings pgbackrest.conf sets (a primary_conninfo
    /// with a password among them); pg-preseed replaces only restore_command, and PostgreSQL
    /// reads its own back.
    #[test]
    fn restore_command_replaced_in_what_pgbackrest_wrote() {
        let written = "# Do not edit this file manually!\n\
            # It will be overwritten by the ALTER SYSTEM command.\n\
            # Removed by pgBackRest restore on 2026-11-27 20:42:41 # restore_command = 'old'\n\
            \n\
            # Recovery settings generated by pgBackRest restore on 2026-11-27 20:42:41\n\
            primary_conninfo = 'host=db1 user=rep password=s3cr3t'\n\
            recovery_end_command = 'echo done'\n\
            restore_command = 'pgbackrest --config=/etc/pgbackrest.conf --stanza=main archive-get %f \"%p\"'\n";
        let ours = "/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json archive-get --pgdata '/srv/it''s' --repos 1 %f \"%p\"";
        let installed = with_setting(written, "restore_command", &conf_quoted(ours));
        assert_eq!(
            setting(&installed, "restore_command").as_deref(),
            Some(ours)
        );
        assert_eq!(
            setting(&installed, "primary_conninfo").as_deref(),
            Some("host=db1 user=rep password=s3cr3t")
        );
        let kept: Vec<&str> = written
            .lines()
            .filter(|l| !l.starts_with("restore_command"))
            .collect();
        let now: Vec<&str> = installed
            .lines()
            .filter(|l| !l.starts_with("restore_command"))
            .collect();
        assert_eq!(kept, now, "every other line as it was");
        assert_eq!(
            installed.matches("restore_command = ").count(),
            1 + 1,
            "the commented-out one and ours"
        );
        // Set twice: the last assignment is the one replaced (PostgreSQL reads the last).
        let twice = "restore_command = 'a'\nrestore_command = 'b'\n";
        assert_eq!(
            with_setting(twice, "restore_command", "c"),
            "restore_command = 'a'\nrestore_command = 'c'\n"
        );
        // Not set: appended, on a line of its own.
        assert_eq!(
            with_setting("work_mem = '4MB'", "restore_command", "c"),
            "work_mem = '4MB'\nrestore_command = 'c'\n"
        );
        assert_eq!(
            with_setting("", "restore_command", "c"),
            "restore_command = 'c'\n"
        );
    }

    #[test]
    fn restore_command_plain_paths_stay_readable() {
        let command = restore_command(
            "/nix/store/abc-pg-preseed-0.1.0/bin/pg-preseed",
            "/etc/pg-preseed/config.json",
            "/var/lib/postgresql/16",
            &[],
        )
        .unwrap();
        assert_eq!(
            command,
            "/nix/store/abc-pg-preseed-0.1.0/bin/pg-preseed --config /etc/pg-preseed/config.json \
             archive-get --pgdata /var/lib/postgresql/16 %f \"%p\""
        );
        // The repositories recovery consults, in order.
        let command = restore_command(
            "/etc/pg-preseed/bin/pg-preseed",
            "/etc/pg-preseed/config.json",
            "/var/lib/postgresql/16",
            &[2, 3],
        )
        .unwrap();
        assert_eq!(
            command,
            "/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json archive-get \
             --pgdata /var/lib/postgresql/16 --repos 2,3 %f \"%p\""
        );
    }

    #[test]
    fn restore_command_quotes_what_a_shell_would_interpret() {
        let command = restore_command(
            "/opt/my tools/pg-preseed",
            "/etc/it's $HOME/`id`;\\c.json",
            "/srv/pg 100%/data",
            &[],
        )
        .unwrap();
        assert_eq!(
            command,
            "'/opt/my tools/pg-preseed' --config '/etc/it'\\''s $HOME/`id`;\\c.json' archive-get \
             --pgdata '/srv/pg 100%%/data' %f \"%p\""
        );
        // Through a real shell (after PostgreSQL's %-substitution), each path is one word, intact.
        let substituted = command
            .replace("%f", "000000010000000000000003")
            .replace("%p", "pg_wal/RECOVERYXLOG")
            .replace("%%", "%");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", &substituted))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "/opt/my tools/pg-preseed\n--config\n/etc/it's $HOME/`id`;\\c.json\narchive-get\n\
             --pgdata\n/srv/pg 100%/data\n000000010000000000000003\npg_wal/RECOVERYXLOG\n"
        );
        assert!(restore_command("pg-preseed", "/c", "/d", &[]).is_err());
        assert!(restore_command("/bin/x", "/c\n", "/d", &[1]).is_err());
    }

    #[test]
    fn conf_quoting_round_trips_through_the_conf_parser() {
        let command = "'/a b/it'\\''s' --config /c archive-get %f \"%p\"";
        // pgBackRest 2.45 writes the value verbatim between single quotes.
        let written = format!(
            "# Recovery settings generated by pgBackRest restore\nrestore_command = '{}'\n",
            conf_quoted(command)
        );
        assert_eq!(
            setting(&written, "restore_command").as_deref(),
            Some(command)
        );
    }

    #[test]
    fn conf_settings_last_one_wins() {
        let conf = "# Do not edit this file manually!\n\
                    restore_command = 'pgbackrest --stanza=main archive-get %f \"%p\"'\n\
                    recovery_target_timeline = 'current'\n\
                    archive_mode = off # a comment\n\
                    Restore_Command = 'it''s \\101\\tx' \n";
        assert_eq!(
            setting(conf, "restore_command").as_deref(),
            Some("it's A\tx")
        );
        assert_eq!(setting(conf, "archive_mode").as_deref(), Some("off"));
        assert_eq!(setting(conf, "recovery_target_name"), None);
        assert_eq!(
            setting("restore_command = 'unterminated", "restore_command"),
            None
        );
    }

    #[test]
    fn archive_get_statuses_as_pgbackrest_2_45_returns_them() {
        assert_eq!(classify_archive_get(Some(0), None, ""), Asked::Fetched);
        assert_eq!(classify_archive_get(Some(1), None, ""), Asked::NotThere);
        // A configuration warning does not make "not there" doubtful; an ERROR line does.
        assert_eq!(
            classify_archive_get(
                Some(1),
                None,
                "WARN: configuration file contains invalid option 'x'"
            ),
            Asked::NotThere
        );
        assert!(matches!(
            classify_archive_get(Some(1), None, "ERROR: [099]: x"),
            Asked::Failed(_)
        ));
        // Captured from pgBackRest 2.45: the repository path gone.
        let gone = "WARN: repo1: [FileMissingError] unable to load info file '/r/archive/main/archive.info' or '/r/archive/main/archive.info.copy':\n      FileMissingError: unable to open missing file '/r/archive/main/archive.info' for read\nERROR: [103]: unable to find a valid repository\n";
        let Asked::Failed(why) = classify_archive_get(Some(103), None, gone) else {
            panic!("103 is a failure");
        };
        assert!(
            why.starts_with("pgBackRest exited with status 103: WARN: repo1: [FileMissingError]"),
            "{why}"
        );
        assert!(!why.contains('\n'));
        assert!(matches!(
            classify_archive_get(Some(42), None, ""),
            Asked::Failed(_)
        ));
        assert!(
            matches!(classify_archive_get(None, Some(9), ""), Asked::Failed(w) if w.contains("signal 9"))
        );
        let long = "x ".repeat(2000);
        let Asked::Failed(why) = classify_archive_get(Some(42), None, &long) else {
            panic!();
        };
        assert!(why.len() < 900);
    }

    #[test]
    fn verdicts() {
        let wal = "000000010000000000000005";
        assert_eq!(verdict(wal, &[]), Verdict::NotFound);
        assert_eq!(
            verdict(
                wal,
                &[(repo(1), Asked::NotThere), (repo(2), Asked::NotThere)]
            ),
            Verdict::NotFound
        );
        // pgBackRest's own multi-repository answer here would be "not found" (exit 1).
        let Verdict::CannotAsk(line) = verdict(
            wal,
            &[
                (
                    repo(1),
                    Asked::Failed("pgBackRest exited with status 103".to_owned()),
                ),
                (repo(2), Asked::NotThere),
            ],
        ) else {
            panic!("one repository could not be asked");
        };
        assert!(line.starts_with("pg-preseed archive-get 000000010000000000000005: repo1 could not be asked (pgBackRest exited with status 103); not in repo2. Stopping recovery (exit 255)"), "{line}");
        assert!(!line.contains('\n'));
    }

    fn end(timeline: u32, lsn: &str, reason: &str) -> ReplayEnd {
        ReplayEnd {
            timeline,
            lsn: Lsn::parse(lsn).unwrap(),
            new_timeline: timeline + 1,
            reason: reason.to_owned(),
        }
    }

    fn seg(name: &str) -> Option<Segment> {
        Segment::parse(name, MIB16)
    }

    #[test]
    fn replay_end_from_the_history_file() {
        let history = "1\t0/4000000\tno recovery target specified\n";
        let end = ReplayEnd::from_history(2, history).unwrap();
        assert_eq!(end.timeline, 1);
        assert_eq!(end.lsn, Lsn(0x400_0000));
        // Ended right after a segment switch: segment 3 was the last one read.
        assert_eq!(
            end.last_segment(MIB16).name(MIB16),
            "000000010000000000000003"
        );
        assert_eq!(
            ReplayEnd::from_history(3, "1\t0/4000000\tx\n2\t0/50449B8\tafter LSN 0/5044950\n\n")
                .unwrap()
                .last_segment(MIB16)
                .name(MIB16),
            "000000020000000000000005"
        );
        assert!(ReplayEnd::from_history(1, history).is_err());
        assert!(ReplayEnd::from_history(2, "").is_err());
    }

    #[test]
    fn replay_that_stopped_short_fails_naming_both_positions() {
        let end = end(1, "0/4000000", "no recovery target specified");
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                used(1, Ok(seg("000000010000000000000005"))),
                used(2, Ok(seg("000000010000000000000003"))),
            ],
        );
        assert!(!judged.ok);
        assert_eq!(
            judged.detail,
            "replay ended on timeline 1 at 0/4000000 (in segment 000000010000000000000003), but \
             repo1 holds WAL on timeline 1 up to segment 000000010000000000000005 (2 segment(s) \
             more): recovery stopped before the end of the archive, so transactions committed in \
             those segments are missing from this server"
        );
    }

    #[test]
    fn replay_that_reached_the_archive_end_passes() {
        let end = end(1, "0/4000000", "no recovery target specified");
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                used(1, Ok(seg("000000010000000000000003"))),
                used(2, Ok(None)),
            ],
        );
        assert!(judged.ok, "{}", judged.detail);
        assert_eq!(
            judged.end.archive_end,
            Some(ArchiveEnd {
                repo: 1,
                segment: "000000010000000000000003".to_owned()
            })
        );
        // Ended mid-segment, in the newest archived segment: reached.
        let mid = judge_archive_end(
            &self::end(2, "0/5044A00", "no recovery target specified"),
            MIB16,
            &[used(1, Ok(seg("000000020000000000000005")))],
        );
        assert!(mid.ok, "{}", mid.detail);
        assert_eq!(
            judged.end.next_segment.as_deref(),
            Some("000000010000000000000004")
        );
        // Nothing known on that timeline but the probe's answer.
        let unknown = judge_archive_end(&end, MIB16, &[used(1, Ok(None))]);
        assert!(unknown.ok);
        assert!(
            unknown
                .detail
                .ends_with("the next segment, 000000010000000000000004, is in no repository: replay reached the end of the archive"),
            "{}",
            unknown.detail
        );
    }

    #[test]
    fn a_repository_that_cannot_be_asked_is_not_verified() {
        let end = end(1, "0/4000000", "no recovery target specified");
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                used(1, Ok(seg("000000010000000000000003"))),
                used(2, Err("pgBackRest exited with status 103".to_owned())),
            ],
        );
        assert!(!judged.ok);
        assert!(
            judged
                .detail
                .contains("repo2: pgBackRest exited with status 103"),
            "{}",
            judged.detail
        );
        // … but a repository proving the replay short is reported as that.
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                used(1, Err("unreachable".to_owned())),
                used(2, Ok(seg("000000010000000000000004"))),
            ],
        );
        assert!(
            judged
                .detail
                .contains("repo2 holds WAL on timeline 1 up to segment 000000010000000000000004"),
            "{}",
            judged.detail
        );
    }

    /// repo1 was unreachable when the restore was decided, so recovery consulted repo2 only.
    #[test]
    fn a_left_out_repository_that_is_still_unreachable_is_a_warning() {
        let end = end(1, "0/4000000", "no recovery target specified");
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                left_out(1, Err("repository path /mnt/nfs does not exist".to_owned())),
                used(2, Ok(seg("000000010000000000000003"))),
            ],
        );
        assert!(judged.ok, "{}", judged.detail);
        assert_eq!(
            judged.end.warnings,
            [
                "repo1 was left out of recovery (unreachable when the restore was decided) and \
              cannot be asked now either (repository path /mnt/nfs does not exist): whether it \
              holds WAL beyond the end of replay is unknown"
            ]
        );
        assert!(
            judged.detail.contains(
                "the next one, 000000010000000000000004, is in no repository that could be asked"
            ) && judged
                .detail
                .contains("; warning: repo1 was left out of recovery"),
            "{}",
            judged.detail
        );
        assert_eq!(
            judged.end.next_segment.as_deref(),
            Some("000000010000000000000004")
        );
        // Reachable again and holding nothing beyond: no warning.
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                left_out(1, Ok(seg("000000010000000000000002"))),
                used(2, Ok(seg("000000010000000000000003"))),
            ],
        );
        assert!(judged.ok && judged.end.warnings.is_empty(), "{judged:?}");
    }

    #[test]
    fn a_left_out_repository_holding_more_fails_naming_it() {
        let end = end(1, "0/4000000", "no recovery target specified");
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                left_out(1, Ok(seg("000000010000000000000005"))),
                used(2, Ok(seg("000000010000000000000003"))),
            ],
        );
        assert!(!judged.ok);
        assert_eq!(
            judged.detail,
            "replay ended on timeline 1 at 0/4000000 (in segment 000000010000000000000003), but \
             repo1, left out of recovery (unreachable when the restore was decided), is reachable \
             now and holds WAL on timeline 1 up to segment 000000010000000000000005 (2 segment(s) \
             more): WAL exists that was not replayed, so transactions committed in those segments \
             are missing from this server"
        );
        // A consulted repository that cannot be asked still fails, whatever the left-out say.
        let judged = judge_archive_end(
            &end,
            MIB16,
            &[
                left_out(1, Ok(None)),
                used(2, Err("pgBackRest exited with status 103".to_owned())),
            ],
        );
        assert!(!judged.ok);
        assert!(
            judged
                .detail
                .contains("because repo2: pgBackRest exited with status 103 could not be asked"),
            "{}",
            judged.detail
        );
    }

    fn target(kind: TargetType, value: Option<&str>) -> Target {
        Target {
            kind,
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn targets_reached_by_postgresql_15_reasons() {
        let cases = [
            (
                target(TargetType::Name, Some("before b")),
                "at restore point \"before b\"",
                true,
            ),
            (
                target(TargetType::Name, Some("other")),
                "at restore point \"before b\"",
                false,
            ),
            (
                target(TargetType::Lsn, Some("0/5044950")),
                "after LSN 0/5044950",
                true,
            ),
            (
                target(TargetType::Lsn, Some("0/5044951")),
                "after LSN 0/5044950",
                false,
            ),
            (
                target(TargetType::Xid, Some("742")),
                "before transaction 742",
                true,
            ),
            (
                target(TargetType::Xid, Some("742")),
                "after transaction 743",
                false,
            ),
            (
                target(TargetType::Immediate, None),
                "reached consistency",
                true,
            ),
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21.296396+00")),
                "before 2026-11-27 18:34:21.312000+00",
                true,
            ),
            // The stop must not be before the target.
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21.296396+00")),
                "before 2026-11-27 18:30:00+00",
                false,
            ),
            // Another time zone for the same instant.
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21+00")),
                "before 2026-11-27 19:34:22.5+01",
                true,
            ),
            // A stop time PostgreSQL wrote in another DateStyle: the reason's kind decides.
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21+00")),
                "before Fri Nov 27 18:34:22.5 2026 UTC",
                true,
            ),
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21+00")),
                "no recovery target specified",
                false,
            ),
            (
                target(TargetType::Time, Some("2026-11-27 18:34:21+00")),
                "before transaction 5",
                false,
            ),
        ];
        for (target, reason, reached) in cases {
            let judged = judge_target(&end(1, "0/50449B8", reason), MIB16, &target);
            assert_eq!(
                judged.ok, reached,
                "{target:?} / {reason}: {}",
                judged.detail
            );
            assert_eq!(judged.end.target_reached, Some(reached));
            assert_eq!(judged.end.target.as_ref(), Some(&target));
        }
    }

    #[test]
    fn describe_for_status() {
        let judged = judge_archive_end(
            &end(1, "0/4000000", "no recovery target specified"),
            MIB16,
            &[used(1, Ok(seg("000000010000000000000003")))],
        );
        assert_eq!(
            judged.end.describe(),
            "replay reached the end of the archive (timeline 1 at 0/4000000; newest archived \
             segment 000000010000000000000003 in repo1; 000000010000000000000004 in no repository)"
        );
        let judged = judge_target(
            &end(1, "0/50449B8", "at restore point \"before b\""),
            MIB16,
            &target(TargetType::Name, Some("before b")),
        );
        assert_eq!(
            judged.end.describe(),
            "recovery reached its target name \"before b\" (at restore point \"before b\"; timeline 1 at 0/50449B8)"
        );
        let json = serde_json::to_value(&judged.end).unwrap();
        assert_eq!(json["end_lsn"], "0/50449B8");
        assert_eq!(json["target_reached"], true);
        assert_eq!(json["target"]["type"], "name");
    }
}
