//! The `pgbackrest info --output=json` reader and the console-log parsers never panic, nor does
//! anything done with a backup's stop time (its age, its text), whatever the JSON says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_preseed::pgbackrest;

fuzz_target!(|text: &str| {
    if let Ok(infos) = pgbackrest::parse_info(text) {
        for info in &infos {
            for repo in 1..=3 {
                if let Ok(view) = pgbackrest::repo_view(&infos, &info.name, repo) {
                    assert!(view.backups.windows(2).all(|w| w[0].stop <= w[1].stop));
                    for backup in &view.backups {
                        for now in [0, 1_795_770_112, i64::MAX, i64::MIN] {
                            if let Some(age) = pg_preseed::decision::backup_age(now, backup.stop) {
                                assert!(age >= 0);
                            }
                        }
                        let _ = pg_preseed::clock::unix_to_rfc3339(backup.stop);
                        let _ = pg_preseed::clock::unix_to_rfc3339(backup.start);
                    }
                }
            }
        }
    }
    for line in text.lines() {
        let redacted = pgbackrest::redact_recovery_options(line);
        if !line.contains("--recovery-option=") {
            assert_eq!(redacted, line);
        }
        if let Some(parsed) = pgbackrest::parse_log_line(line) {
            let _ = pgbackrest::restore_file(parsed.message);
            let _ = pgbackrest::restore_progress(parsed.message);
            let _ = pgbackrest::restored_backup_set(parsed.message);
            let _ = pgbackrest::restore_size(parsed.message).and_then(pgbackrest::parse_size);
        }
    }
    let _ = pgbackrest::parse_command_begin(text);
    let _ = pgbackrest::corrupt_files(text);
    let _ = pg_preseed::pgdata::manifest_label(text);
    let _ = pg_preseed::postgres::parse_postmaster_pid(text);
    let _ = pg_preseed::postgres::parse_controldata(text);
});
