//! `/proc/self/mountinfo`: a pure parser and the questions the layering checks ask of it.
//!
//! Format (proc(5)): `id parent major:minor root mount_point options [optional…] - fstype source
//! super_options`. Paths escape space, tab, newline and backslash as `\ooo` octal.

use camino::Utf8Path;
use serde::Serialize;

use crate::lines::parse_all;
pub use crate::lines::ParseError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    pub mount_id: u64,
    pub parent_id: u64,
    pub major: u32,
    pub minor: u32,
    /// The path inside the source filesystem that is mounted (bind mounts show a subdirectory).
    pub root: String,
    pub mount_point: String,
    pub options: String,
    pub optional_fields: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// `source (fstype)`, the way findings name a mount.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.root == "/" {
            format!("{} ({})", self.source, self.fstype)
        } else {
            format!("{} ({}, bind of {})", self.source, self.fstype, self.root)
        }
    }
}

/// Parses the whole text. One malformed line fails the parse: a layering check that skipped a
/// line it could not read would be a check that can pass by accident.
///
/// # Errors
/// The first malformed line, with its number.
pub fn parse(text: &str) -> Result<Vec<MountEntry>, ParseError> {
    parse_all("mountinfo", text, parse_line)
}

fn parse_line(line: &str) -> Result<MountEntry, String> {
    let mut fields = line.split(' ');
    let mut next = |what: &str| {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| format!("missing {what}"))
    };
    let mount_id = next("mount id")?
        .parse()
        .map_err(|_| "mount id is not a number".to_owned())?;
    let parent_id = next("parent id")?
        .parse()
        .map_err(|_| "parent id is not a number".to_owned())?;
    let (major, minor) = next("major:minor")?
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| "major:minor is malformed".to_owned())?;
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let options = next("mount options")?.to_owned();
    let mut optional_fields = Vec::new();
    loop {
        match next("the \" - \" separator")? {
            "-" => break,
            field => optional_fields.push(field.to_owned()),
        }
    }
    let fstype = unescape(next("filesystem type")?);
    let source = unescape(next("mount source")?);
    // Super options may be absent on very old kernels; everything after is tolerated.
    let super_options = fields.next().unwrap_or_default().to_owned();
    Ok(MountEntry {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        options,
        optional_fields,
        fstype,
        source,
        super_options,
    })
}

/// Undoes the kernel's `\ooo` octal escapes. Bytes that do not form UTF-8 are replaced; such a
/// path can never equal a (UTF-8) configured path anyway.
#[must_use]
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal_triplet(&bytes[i + 1..i + 4]) {
            let value = u32::from(bytes[i + 1] - b'0') * 64
                + u32::from(bytes[i + 2] - b'0') * 8
                + u32::from(bytes[i + 3] - b'0');
            // \400 and above do not fit a byte: keep the text as written.
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_octal_triplet(bytes: &[u8]) -> bool {
    bytes.len() == 3 && bytes.iter().all(|b| (b'0'..=b'7').contains(b))
}

/// Every filesystem mounted at exactly `path`, bottom first: when there is more than one, all
/// but the last are hidden under it.
///
/// One filesystem can be listed twice at one path without being stacked: a recursive bind of an
/// ancestor onto itself (systemd does that for each `ReadWritePaths=` entry in a unit's
/// namespace) copies the mounts below it, and the originals stay listed under the bind. Such a
/// copy has the same device and root as its original; it is one filesystem, listed once here
/// (the copy, which is the one that is visible).
#[must_use]
pub fn stack_at<'a>(entries: &'a [MountEntry], path: &Utf8Path) -> Vec<&'a MountEntry> {
    let mut stack: Vec<&MountEntry> = entries
        .iter()
        .filter(|entry| entry.mount_point == path.as_str())
        .collect();
    // The kernel lists mounts in the order they were made, so the visible one is normally last.
    // Make that explicit: a mount that is the parent of another mount at the same point is under
    // it, so move every such parent before its child.
    stack.sort_by_key(|entry| {
        let depth = std::iter::successors(Some(*entry), |current| {
            entries
                .iter()
                .find(|e| e.mount_id == current.parent_id && e.mount_point == path.as_str())
        })
        // Bounded: a cycle in hostile input must not loop forever.
        .take(entries.len() + 1)
        .count();
        depth
    });
    // Keep the last (visible) entry of each filesystem, in order.
    let mut seen = std::collections::HashSet::new();
    let mut distinct: Vec<&MountEntry> = stack
        .into_iter()
        .rev()
        .filter(|entry| seen.insert((entry.major, entry.minor, entry.root.as_str())))
        .collect();
    distinct.reverse();
    distinct
}

/// The entry with this mount id (from `/proc/self/fdinfo`'s `mnt_id`).
#[must_use]
pub fn by_id(entries: &[MountEntry], mount_id: u64) -> Option<&MountEntry> {
    entries.iter().find(|entry| entry.mount_id == mount_id)
}

/// Fallback when no mount id is known: the last mount whose device matches and whose mount point
/// is the longest prefix of `path`.
#[must_use]
pub fn by_device_and_path<'a>(
    entries: &'a [MountEntry],
    major: u32,
    minor: u32,
    path: &Utf8Path,
) -> Option<&'a MountEntry> {
    entries
        .iter()
        .filter(|entry| {
            entry.major == major
                && entry.minor == minor
                && path.starts_with(Utf8Path::new(&entry.mount_point))
        })
        .max_by_key(|entry| entry.mount_point.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCIDENT: &str = include_str!("../tests/fixtures/mountinfo-incident-zfs-fuse.txt");

    /// Inside a unit with ReadWritePaths=/var/lib/postgresql, systemd binds that directory onto
    /// itself with MS_REC: the dataset at PGDATA is listed twice (the original under the bind,
    /// and its copy), which is one filesystem, not two stacked (issue 10.6).
    #[test]
    fn a_filesystem_seen_twice_through_a_bind_of_an_ancestor_is_not_stacked() {
        let text = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
63 27 0:50 / /var/lib/postgresql/17 rw - zfs tank/services/postgresql rw
64 27 254:0 /var/lib/postgresql /var/lib/postgresql rw - ext4 /dev/vda rw
65 64 0:50 / /var/lib/postgresql/17 rw - zfs tank/services/postgresql rw
";
        let entries = parse(text).unwrap();
        let stack = stack_at(&entries, Utf8Path::new("/var/lib/postgresql/17"));
        assert_eq!(stack.iter().map(|e| e.mount_id).collect::<Vec<_>>(), [65]);
    }

    /// The incident's two datasets in the same namespace: still two filesystems, stacked.
    #[test]
    fn stacking_seen_through_a_bind_of_an_ancestor_is_still_stacking() {
        let text = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
63 27 0:50 / /var/lib/postgresql/17 rw - zfs tank/services/postgres rw
66 63 0:51 / /var/lib/postgresql/17 rw - zfs tank/services/postgresql rw
64 27 254:0 /var/lib/postgresql /var/lib/postgresql rw - ext4 /dev/vda rw
65 64 0:50 / /var/lib/postgresql/17 rw - zfs tank/services/postgres rw
67 65 0:51 / /var/lib/postgresql/17 rw - zfs tank/services/postgresql rw
";
        let entries = parse(text).unwrap();
        let stack = stack_at(&entries, Utf8Path::new("/var/lib/postgresql/17"));
        let sources: Vec<_> = stack.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(
            sources,
            ["tank/services/postgres", "tank/services/postgresql"]
        );
        assert_eq!(stack.last().unwrap().mount_id, 67);
    }

    #[test]
    fn parses_a_real_capture() {
        let entries = parse(INCIDENT).unwrap();
        assert!(entries.len() > 20);
        let root = entries.iter().find(|e| e.mount_point == "/").unwrap();
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.source, "/dev/vda");
        assert_eq!((root.major, root.minor), (254, 0));
    }

    #[test]
    fn incident_capture_shows_two_datasets_stacked_on_pgdata() {
        let entries = parse(INCIDENT).unwrap();
        let stack = stack_at(&entries, Utf8Path::new("/var/lib/postgresql/16"));
        let sources: Vec<_> = stack.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(
            sources,
            ["tank/services/postgres", "tank/services/postgresql"]
        );
        assert!(stack.iter().all(|e| e.fstype == "fuse.zfs"));
    }

    #[test]
    fn stacking_order_follows_parent_links_not_line_order() {
        let text = "\
50 27 0:60 / /data rw - tmpfs top rw
27 1 8:1 / / rw - ext4 /dev/sda1 rw
40 27 0:59 / /data rw - tmpfs bottom rw
";
        // Line order says "top" first; its parent is the root, not /data, so nothing proves it is
        // on top. Fix the links so that 50 is mounted over 40:
        let text = text.replace("50 27", "50 40");
        let entries = parse(&text).unwrap();
        let stack = stack_at(&entries, Utf8Path::new("/data"));
        assert_eq!(stack[0].source, "bottom");
        assert_eq!(stack[1].source, "top");
    }

    #[test]
    fn octal_escapes_in_paths() {
        let text = r"36 27 0:50 / /srv/my\040data\012x rw shared:1 - tmpfs we\134ird rw";
        let entries = parse(text).unwrap();
        assert_eq!(entries[0].mount_point, "/srv/my data\nx");
        assert_eq!(entries[0].source, r"we\ird");
        assert_eq!(entries[0].optional_fields, ["shared:1"]);
    }

    #[test]
    fn unescape_leaves_incomplete_or_out_of_range_escapes() {
        assert_eq!(unescape(r"a\04"), r"a\04");
        assert_eq!(unescape(r"a\777b"), r"a\777b");
        assert_eq!(unescape(r"\\040"), r"\ ");
        assert_eq!(unescape(r"\"), r"\");
    }

    #[test]
    fn several_optional_fields_and_bind_mounts() {
        let text = "100 27 254:0 /var/lib/pg /mnt/bind rw,relatime shared:1 master:2 propagate_from:3 - ext4 /dev/vda rw";
        let entry = &parse(text).unwrap()[0];
        assert_eq!(entry.optional_fields.len(), 3);
        assert_eq!(entry.describe(), "/dev/vda (ext4, bind of /var/lib/pg)");
    }

    #[test]
    fn overlayfs_line() {
        let text =
            "200 27 0:70 / /merged rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w";
        let entry = &parse(text).unwrap()[0];
        assert_eq!(entry.fstype, "overlay");
        assert!(entry.super_options.contains("upperdir=/u"));
    }

    #[test]
    fn malformed_lines_fail_with_their_number() {
        for bad in [
            "x 1 0:1 / / rw - ext4 /dev/a rw",
            "1 1 01 / / rw - ext4 /dev/a rw",
            "1 1 0:1 / / rw shared:1 ext4 /dev/a rw",
            "1 1 0:1 / /",
            "1 1 0:1 / / rw -",
        ] {
            let text = format!("27 1 8:1 / / rw - ext4 /dev/sda1 rw\n{bad}\n");
            let error = parse(&text).unwrap_err();
            assert_eq!(error.line, 2, "{bad}");
        }
    }

    #[test]
    fn finds_mount_by_device_and_longest_prefix() {
        let entries = parse(INCIDENT).unwrap();
        let root = by_device_and_path(&entries, 254, 0, Utf8Path::new("/var/lib/x")).unwrap();
        assert_eq!(root.mount_point, "/");
        assert!(by_id(&entries, 44).is_some_and(|e| e.source == "tank/services/postgresql"));
    }
}
