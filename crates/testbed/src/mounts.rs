//! Real mounts for the layering tests: tmpfs, stacked or not.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::run_ok;

/// Mounts a tmpfs at `dir` (created if needed), optionally owned by postgres with mode 0700.
pub fn tmpfs(dir: &Utf8Path, size_mb: u32, source: &str) {
    std::fs::create_dir_all(dir).expect("create mount point");
    run_ok(Command::new("mount").args([
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size_mb}m,mode=0755"),
        source,
        dir.as_str(),
    ]));
}

/// Every mount point at or below `dir`, deepest and newest first (the order to unmount them).
#[must_use]
pub fn mounts_below(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<Utf8PathBuf> = pg_preseed::mountinfo::parse(&text)
        .unwrap_or_default()
        .into_iter()
        .map(|entry| Utf8PathBuf::from(entry.mount_point))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// Unmounts everything at or below `dir` (lazily if busy): teardown must not leave mounts behind.
pub fn unmount_below(dir: &Utf8Path) {
    for point in mounts_below(dir) {
        let ok = Command::new("umount")
            .arg(point.as_str())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").args(["-l", point.as_str()]).status();
        }
    }
}
