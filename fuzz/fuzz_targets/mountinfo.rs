//! The mountinfo parser and the stacking analysis never panic, and every parsed entry's mount
//! point can be asked about.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_preseed::mountinfo;

fuzz_target!(|text: &str| {
    if let Ok(entries) = mountinfo::parse(text) {
        for entry in &entries {
            let stack = mountinfo::stack_at(&entries, camino::Utf8Path::new(&entry.mount_point));
            assert!(!stack.is_empty());
            let _ = entry.describe();
        }
    }
    let _ = mountinfo::unescape(text);
});
