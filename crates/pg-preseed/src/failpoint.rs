//! Crash points for the tier-2 tests: with `PG_PRESEED_FAILPOINT=<name>` in its environment, the
//! engine kills itself with SIGKILL when it reaches the point of that name — a power cut at an
//! exact moment, which no outside observer could time (the moments are microseconds apart).
//!
//! Compiled only with the `failpoints` feature (which the tier-2 tests' `real-system` turns on);
//! in every other build [`hit`] is empty and the variable means nothing.

/// The post-restore hook's success is in the claim; the receipt is not written yet.
pub const POST_RESTORE_RECORDED: &str = "post-restore-recorded";

/// Dies here when the tests asked for it (`failpoints` builds only).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if std::env::var("PG_PRESEED_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        tracing::warn!(
            failpoint = name,
            "failpoint reached: killing myself (SIGKILL)"
        );
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Dies here when the tests asked for it (`failpoints` builds only).
#[cfg(not(feature = "failpoints"))]
#[inline]
pub fn hit(_name: &str) {}
