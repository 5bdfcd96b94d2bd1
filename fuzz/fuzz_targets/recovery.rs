//! The readers of what a recovery leaves behind — timeline history files, postgresql.auto.conf,
//! pgBackRest's option echo and `info` JSON, time targets — never panic, and the writers round
//! trip through them: an LSN prints back as itself, a segment name as itself, a value quoted for
//! postgresql.auto.conf reads back unchanged, also once installed into any postgresql.auto.conf.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_preseed::{clock, pgbackrest, pitr, recovery, wal};

fuzz_target!(|text: &str| {
    if let Ok(entries) = wal::parse_history(text) {
        assert!(entries.windows(2).all(|w| w[0].parent < w[1].parent));
        if let Ok(end) = recovery::ReplayEnd::from_history(u32::MAX, text) {
            let _ = end.last_segment(wal::DEFAULT_SEGMENT_SIZE);
        }
    }
    for word in text.split_whitespace() {
        if let Ok(lsn) = wal::Lsn::parse(word) {
            assert_eq!(wal::Lsn::parse(&lsn.to_string()), Ok(lsn));
        }
        if let Some(segment) = wal::Segment::parse(word, wal::DEFAULT_SEGMENT_SIZE) {
            let name = segment.name(wal::DEFAULT_SEGMENT_SIZE);
            assert_eq!(name, word[..24].to_uppercase());
        }
    }
    let _ = recovery::setting(text, "restore_command");
    if !text.chars().any(char::is_control) {
        let conf = format!("restore_command = '{}'\n", recovery::conf_quoted(text));
        assert_eq!(recovery::setting(&conf, "restore_command").as_deref(), Some(text));
    }
    // Whatever postgresql.auto.conf held, pg-preseed's restore_command installed into it is the
    // one PostgreSQL reads (issue 13.3).
    let ours = "/etc/pg-preseed/bin/pg-preseed --config '/it''s' archive-get %f \"%p\"";
    let installed = recovery::with_setting(text, "restore_command", &recovery::conf_quoted(ours));
    assert_eq!(
        recovery::setting(&installed, "restore_command").as_deref(),
        Some(ours)
    );
    let _ = pgbackrest::recovery_options(text);
    let _ = clock::parse_timestamptz(text);
    if let Ok(infos) = pgbackrest::parse_info(text) {
        if let Ok(facts) = pitr::wal_facts(&infos, "main", 1) {
            let _ = facts.segment_size();
        }
    }
});
