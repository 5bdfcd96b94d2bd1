//! WAL positions and names as PostgreSQL writes them: LSNs (`0/4000000`), segment file names
//! (`000000010000000000000003`: timeline, then the segment number in two halves) and timeline
//! history files (`00000002.history`). Pure.

use std::fmt;

use serde::{Deserialize, Serialize};

/// PostgreSQL's default WAL segment size (`initdb --wal-segsize` can change it).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A WAL location. Written `X/Y`: the high and low 32 bits, in hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` (one to eight hexadecimal digits on each side, either case).
    ///
    /// # Errors
    /// A sentence naming the text when it is not an LSN.
    pub fn parse(text: &str) -> Result<Lsn, String> {
        let invalid = || {
            format!(
                "\"{text}\" is not a WAL location (write it as PostgreSQL does, e.g. 0/4000000)"
            )
        };
        let (high, low) = text.trim().split_once('/').ok_or_else(invalid)?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u64::from_str_radix(part, 16).map_err(|_| invalid())
        };
        Ok(Lsn((half(high)? << 32) | half(low)?))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(deserializer)?;
        Lsn::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A WAL segment: which timeline, and its number counted from LSN 0 in segment-size steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// The segment holding `lsn` on `timeline`.
    #[must_use]
    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.0 / segment_size,
        }
    }

    /// Parses the 24 hexadecimal digits a segment file name starts with (pgBackRest appends
    /// `-<sha1>` and a compression extension in its archive; those are ignored).
    #[must_use]
    pub fn parse(name: &str, segment_size: u64) -> Option<Segment> {
        let digits = name.get(..24)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        // "0000000100000000000000A1.partial", "….00000028.backup": not whole segments.
        if name.len() > 24 && !name[24..].starts_with('-') {
            return None;
        }
        let field = |range: std::ops::Range<usize>| u64::from_str_radix(&digits[range], 16).ok();
        let timeline = u32::try_from(field(0..8)?).ok()?;
        let (log, seg) = (field(8..16)?, field(16..24)?);
        let per_log = segments_per_log(segment_size);
        (seg < per_log).then_some(Segment {
            timeline,
            number: log * per_log + seg,
        })
    }

    /// The file name PostgreSQL gives this segment.
    #[must_use]
    pub fn name(&self, segment_size: u64) -> String {
        let per_log = segments_per_log(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_log,
            self.number % per_log
        )
    }

    /// The first location in this segment.
    #[must_use]
    pub fn start(&self, segment_size: u64) -> Lsn {
        Lsn(self.number * segment_size)
    }
}

/// Segments per 4 GiB "log" (the middle eight digits of a segment name count those).
fn segments_per_log(segment_size: u64) -> u64 {
    (0x1_0000_0000 / segment_size.max(1)).max(1)
}

/// A timeline as PostgreSQL names it in file names (`00000002`).
#[must_use]
pub fn timeline_name(timeline: u32) -> String {
    format!("{timeline:08X}")
}

/// The timeline in a WAL file name (`pg_walfile_name()`'s first eight digits).
#[must_use]
pub fn timeline_of(walfile: &str) -> Option<u32> {
    let digits = walfile.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// One line of a timeline history file: the timeline this one branched from, where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: u32,
    /// The first location of the new timeline: where replay of `parent` ended.
    pub switchpoint: Lsn,
    /// PostgreSQL's words: "no recovery target specified", `at restore point "x"`,
    /// "after LSN 0/5044950", "before 2026-01-02 03:04:05+00", "reached consistency", …
    pub reason: String,
}

/// Parses a timeline history file (`<timeline>.history` in `pg_wal`), oldest branch first.
/// Blank lines and `#` comments are skipped, as PostgreSQL does (a time or LSN reason ends with
/// its own newline, so PostgreSQL writes a blank line after it).
///
/// # Errors
/// A sentence naming the line that is not `<timeline> <X/Y> <reason>`.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, String> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("unexpected line in a timeline history file: {line:?}");
        let (parent, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let rest = rest.trim_start();
        let (switchpoint, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let entry = HistoryEntry {
            parent: parent.parse().map_err(|_| bad())?,
            switchpoint: Lsn::parse(switchpoint).map_err(|_| bad())?,
            reason: reason.trim().to_owned(),
        };
        if entries
            .last()
            .is_some_and(|previous: &HistoryEntry| previous.parent >= entry.parent)
        {
            return Err(format!(
                "timeline history file lists timeline {} after {}: not in increasing order",
                entry.parent,
                entries.last().map_or(0, |e: &HistoryEntry| e.parent)
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = DEFAULT_SEGMENT_SIZE;

    #[test]
    fn lsn_round_trips() {
        let lsn = Lsn::parse("0/4000000").unwrap();
        assert_eq!(lsn, Lsn(0x400_0000));
        assert_eq!(lsn.to_string(), "0/4000000");
        assert_eq!(Lsn::parse("1A/ff").unwrap(), Lsn((0x1A << 32) | 0xFF));
        assert_eq!(Lsn::parse("1A/ff").unwrap().to_string(), "1A/FF");
        for bad in [
            "",
            "0",
            "0/",
            "/1",
            "x/1",
            "123456789/0",
            "0/4000000/1",
            "-1/0",
        ] {
            assert!(Lsn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_names() {
        let segment = Segment::parse("000000010000000000000003", MIB16).unwrap();
        assert_eq!(
            segment,
            Segment {
                timeline: 1,
                number: 3
            }
        );
        assert_eq!(segment.start(MIB16), Lsn(0x300_0000));
        // pgBackRest's archive names: checksum and compression extension.
        let archived = Segment::parse(
            "00000002000000010000000A-2f8946f206660c6088a5e9d7f64006991fef8d5e.lz4",
            MIB16,
        )
        .unwrap();
        assert_eq!(archived.timeline, 2);
        assert_eq!(archived.number, 256 + 10);
        assert_eq!(archived.name(MIB16), "00000002000000010000000A");
        assert_eq!(
            Segment::parse("000000010000000000000002.00000028.backup", MIB16),
            None
        );
        assert_eq!(
            Segment::parse("000000010000000000000002.partial", MIB16),
            None
        );
        assert_eq!(Segment::parse("00000002.history", MIB16), None);
        // Segment 0x100 does not exist with 16 MiB segments (256 per log).
        assert_eq!(Segment::parse("000000010000000000000100", MIB16), None);
        // 64 MiB segments: 64 per log.
        let big = Segment::parse("000000010000000200000003", 64 * 1024 * 1024).unwrap();
        assert_eq!(big.number, 2 * 64 + 3);
        assert_eq!(
            Segment::containing(1, Lsn::parse("0/4000000").unwrap(), MIB16).name(MIB16),
            "000000010000000000000004"
        );
    }

    #[test]
    fn timelines() {
        assert_eq!(timeline_of("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of("xyz"), None);
        assert_eq!(timeline_name(10), "0000000A");
    }

    #[test]
    fn history_as_postgresql_15_writes_it() {
        // Lines as PostgreSQL 15 wrote them here (docs/reliability.md), chained over three
        // recoveries.
        let text = "1\t0/4000000\tno recovery target specified\n\n\
                    2\t0/50449B8\tafter LSN 0/5044950\n\n\
                    3\t0/6000100\tat restore point \"before b\"\n";
        let entries = parse_history(text).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].parent, 1);
        assert_eq!(entries[0].switchpoint, Lsn(0x400_0000));
        assert_eq!(entries[0].reason, "no recovery target specified");
        assert_eq!(entries[1].reason, "after LSN 0/5044950");
        assert_eq!(entries[2].reason, "at restore point \"before b\"");
        assert_eq!(
            parse_history("# comment\n1\t0/2000100\treached consistency\n").unwrap()[0].reason,
            "reached consistency"
        );
        assert!(parse_history("").unwrap().is_empty());
        assert!(parse_history("x\t0/1\treason").is_err());
        assert!(parse_history("1\tnope\treason").is_err());
        assert!(parse_history("2\t0/1\ta\n1\t0/2\tb\n").is_err());
    }
}
