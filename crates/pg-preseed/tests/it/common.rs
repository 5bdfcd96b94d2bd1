//! What the test modules share.

use camino::Utf8Path;

/// The pg-preseed binary under test.
pub fn bin() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_BIN_EXE_pg-preseed"))
}

/// A host that has been restored, verified and holds a receipt: the state before a disaster.
#[cfg(feature = "real-system")]
pub fn provisioned(sandbox: &testbed::Sandbox, repos: usize) -> testbed::Host<'_> {
    let host = testbed::Host::new(sandbox, bin(), repos);
    host.boot().expect_verified();
    assert_eq!(host.rows(), testbed::golden::ROWS);
    assert_eq!(host.receipt()["action"], "restored");
    host
}
