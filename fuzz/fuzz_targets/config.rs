//! The config parser never panics; a rejection always names at least one issue, and an accepted
//! config prints back (--json) as a config that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_preseed::config::Config;

fuzz_target!(|text: &str| {
    match Config::parse(text, "fuzz") {
        Ok(config) => {
            let again = serde_json::to_string(&config).expect("a parsed config serialises");
            let reparsed = Config::parse(&again, "fuzz-again").expect("what we print parses");
            assert_eq!(reparsed.pgdata, config.pgdata);
            assert_eq!(reparsed.receipt_path(), config.receipt_path());
            assert_eq!(reparsed.verify.timeout, config.verify.timeout);
            assert!(config.verify.timeout <= pg_preseed::config::MAX_DURATION);
            assert!(pg_preseed::paths::misreadable(config.pgdata.as_str()).is_none());
            assert_eq!(reparsed.pgbackrest.repos, config.pgbackrest.repos);
        }
        Err(error) => assert!(!error.issues.is_empty()),
    }
});
