//! Lexical path helpers shared by config validation and the layering checks.
//!
//! Everything here is pure: no path is resolved against the filesystem. Symlinks in ancestors are
//! handled at the edges (`facts`), which canonicalise the longest existing prefix first.

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

/// Normalises an absolute path lexically: drops `.` components and trailing slashes.
///
/// Returns `None` for relative paths and for paths with `..` (whose meaning depends on symlinks,
/// so a safety tool should not guess it).
#[must_use]
pub fn normalize_absolute(path: &Utf8Path) -> Option<Utf8PathBuf> {
    let mut out = Utf8PathBuf::from("/");
    let mut components = path.components();
    if components.next() != Some(Utf8Component::RootDir) {
        return None;
    }
    for component in components {
        match component {
            Utf8Component::Normal(part) => out.push(part),
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir | Utf8Component::RootDir | Utf8Component::Prefix(_) => {
                return None;
            }
        }
    }
    Some(out)
}

/// True when `inner` is `outer` or lies below it (lexically, both normalised).
#[must_use]
pub fn is_within(inner: &Utf8Path, outer: &Utf8Path) -> bool {
    inner.starts_with(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dots_and_trailing_slashes() {
        assert_eq!(
            normalize_absolute(Utf8Path::new("/var/lib/./postgresql/16/")).as_deref(),
            Some(Utf8Path::new("/var/lib/postgresql/16"))
        );
        assert_eq!(
            normalize_absolute(Utf8Path::new("/")).as_deref(),
            Some(Utf8Path::new("/"))
        );
    }

    #[test]
    fn rejects_relative_and_parent_components() {
        assert_eq!(normalize_absolute(Utf8Path::new("var/lib")), None);
        assert_eq!(normalize_absolute(Utf8Path::new("")), None);
        assert_eq!(normalize_absolute(Utf8Path::new("/var/../etc")), None);
    }

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Utf8Path::new("/a/b/c"), Utf8Path::new("/a/b")));
        assert!(is_within(Utf8Path::new("/a/b"), Utf8Path::new("/a/b")));
        assert!(!is_within(Utf8Path::new("/a/bc"), Utf8Path::new("/a/b")));
    }
}
