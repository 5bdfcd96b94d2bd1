//! The `zfs list` parser never panics; what it accepts has a name and classifies cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_preseed::zfs;

fuzz_target!(|text: &str| {
    if let Ok(datasets) = zfs::parse_list(text) {
        for dataset in &datasets {
            assert!(!dataset.name.is_empty());
            if let Some(path) = dataset.automount_path() {
                assert!(!zfs::claimants(&datasets, path).is_empty());
            }
        }
    }
    let _ = zfs::parse_get(text);
});
