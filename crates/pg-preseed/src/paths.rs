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

/// What a path may hold besides ASCII letters and digits: the NixOS module's set (`._/@+:,=~-`,
/// modules/lib.nix `safePathPattern`) and the space.
pub const PATH_PUNCTUATION: &str = "._/@+:,=~- ";

/// Why `path` could be misread on its way to a program, or `None` when it cannot be.
///
/// Paths reach more than `open`: pgBackRest writes PGDATA, the drill's scratch copy and its own
/// config file into `restore_command`, which PostgreSQL runs with `/bin/sh -c` (pgBackRest
/// double-quotes a value with a space, inside which `$`, `` ` ``, `"` and `\` still act) after
/// replacing its `%` placeholders, from `postgresql.auto.conf`, where a `'` ends the value.
/// Control characters (a newline) end lines in every file a path is written to. So a path holds
/// ASCII letters, digits and [`PATH_PUNCTUATION`] only.
#[must_use]
pub fn misreadable(path: &str) -> Option<String> {
    let bad = path
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !PATH_PUNCTUATION.contains(*c))?;
    let what = if bad.is_control() {
        "a control character"
    } else if bad.is_ascii() {
        "a character a shell or PostgreSQL could misread"
    } else {
        "a character outside ASCII"
    };
    Some(format!(
        "holds {bad:?}, {what}; a path may hold ASCII letters, digits, spaces and ._/@+:,=~- only"
    ))
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

    /// Issue 15.3: what a shell or PostgreSQL could misread is named; what the NixOS module
    /// allows, and a space, is not.
    #[test]
    fn misreadable_paths() {
        for fine in [
            "/var/lib/postgresql/16",
            "/srv/pg-data_1/a.b@c+d:e,f=g~h",
            "/var/tmp/scratch with a space",
        ] {
            assert_eq!(misreadable(fine), None, "{fine}");
        }
        for (bad, shown) in [
            ("/srv/pg$(touch /tmp/x)", "'$'"),
            ("/srv/`id`", "'`'"),
            ("/srv/a\nb", "'\\n'"),
            ("/srv/it's", "'\\''"),
            ("/srv/100%", "'%'"),
            ("/srv/a;b", "';'"),
            ("/srv/a\"b", "'\"'"),
            ("/srv/a\\b", "'\\\\'"),
            ("/srv/données", "'é'"),
            ("/srv/a\tb", "'\\t'"),
        ] {
            let why = misreadable(bad).unwrap_or_else(|| panic!("{bad:?} is accepted"));
            assert!(why.contains(shown), "{bad:?}: {why}");
        }
    }

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Utf8Path::new("/a/b/c"), Utf8Path::new("/a/b")));
        assert!(is_within(Utf8Path::new("/a/b"), Utf8Path::new("/a/b")));
        assert!(!is_within(Utf8Path::new("/a/bc"), Utf8Path::new("/a/b")));
    }
}
