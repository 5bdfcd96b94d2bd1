//! `zfs list -H -o name,mountpoint,canmount,mounted -t filesystem`: a pure parser.
//!
//! This column subset is what OpenZFS and its ancestor zfs-fuse both print (zfs-fuse has no
//! `-p`). `mountpoint` is the effective one: inherited values are already resolved by `zfs`.

use serde::Serialize;

use crate::lines::parse_all;
pub use crate::lines::ParseError;

/// The exact argv (after `zfs`) whose output [`parse_list`] reads.
pub const LIST_ARGS: [&str; 6] = [
    "list",
    "-H",
    "-o",
    "name,mountpoint,canmount,mounted",
    "-t",
    "filesystem",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    pub name: String,
    pub mountpoint: Mountpoint,
    pub canmount: CanMount,
    pub mounted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum Mountpoint {
    Path(String),
    None,
    /// Mounted through fstab/`fileSystems`, not by ZFS: mountinfo covers it.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CanMount {
    On,
    Off,
    Noauto,
}

impl Dataset {
    /// The path this dataset mounts itself on at import (`canmount=on` with a real mountpoint).
    #[must_use]
    pub fn automount_path(&self) -> Option<&str> {
        match (&self.mountpoint, self.canmount) {
            (Mountpoint::Path(path), CanMount::On) => Some(path),
            _ => None,
        }
    }

    /// The mountpoint path, whatever `canmount` says.
    #[must_use]
    pub fn mountpoint_path(&self) -> Option<&str> {
        match &self.mountpoint {
            Mountpoint::Path(path) => Some(path),
            Mountpoint::None | Mountpoint::Legacy => None,
        }
    }
}

/// Parses the output of [`LIST_ARGS`].
///
/// # Errors
/// The first line that does not have the four expected tab-separated columns with known values.
pub fn parse_list(text: &str) -> Result<Vec<Dataset>, ParseError> {
    parse_all("zfs list", text, parse_line)
}

fn parse_line(line: &str) -> Result<Dataset, String> {
    let columns: Vec<&str> = line.split('\t').collect();
    let [name, mountpoint, canmount, mounted] = columns[..] else {
        return Err(format!(
            "expected 4 tab-separated columns (name, mountpoint, canmount, mounted), found {}",
            columns.len()
        ));
    };
    if name.is_empty() {
        return Err("empty dataset name".to_owned());
    }
    let mountpoint = match mountpoint {
        "none" | "-" => Mountpoint::None,
        "legacy" => Mountpoint::Legacy,
        path if path.starts_with('/') => Mountpoint::Path(path.to_owned()),
        other => return Err(format!("unknown mountpoint value {other:?}")),
    };
    let canmount = match canmount {
        "on" => CanMount::On,
        // Snapshots and volumes print "-"; -t filesystem excludes them, but a dataset that
        // cannot mount is what "-" means.
        "off" | "-" => CanMount::Off,
        "noauto" => CanMount::Noauto,
        other => return Err(format!("unknown canmount value {other:?}")),
    };
    let mounted = match mounted {
        "yes" => true,
        "no" | "-" => false,
        other => return Err(format!("unknown mounted value {other:?}")),
    };
    Ok(Dataset {
        name: name.to_owned(),
        mountpoint,
        canmount,
        mounted,
    })
}

/// Datasets that mount themselves at `path` at import time.
#[must_use]
pub fn claimants<'a>(datasets: &'a [Dataset], path: &str) -> Vec<&'a Dataset> {
    datasets
        .iter()
        .filter(|dataset| dataset.automount_path() == Some(path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCIDENT: &str = include_str!("../tests/fixtures/zfs-list-incident-zfs-fuse.txt");

    #[test]
    fn incident_capture_has_two_claimants_for_pgdata() {
        let datasets = parse_list(INCIDENT).unwrap();
        assert_eq!(datasets.len(), 4);
        let names: Vec<_> = claimants(&datasets, "/var/lib/postgresql/16")
            .into_iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["tank/services/postgres", "tank/services/postgresql"]
        );
        assert_eq!(datasets[0].mountpoint, Mountpoint::None);
    }

    #[test]
    fn noauto_and_legacy_do_not_claim() {
        let text = "tank/a\t/x\tnoauto\tno\ntank/b\tlegacy\ton\tyes\ntank/c\t/x\ton\tno\ntank/d\t/x\toff\tno\n";
        let datasets = parse_list(text).unwrap();
        let names: Vec<_> = claimants(&datasets, "/x")
            .into_iter()
            .map(|d| &d.name)
            .collect();
        assert_eq!(names, ["tank/c"]);
        assert_eq!(datasets[1].mountpoint, Mountpoint::Legacy);
    }

    #[test]
    fn names_with_spaces_and_colons() {
        let text = "tank/my data:v1.2\t/srv/my data\ton\tyes\n";
        let datasets = parse_list(text).unwrap();
        assert_eq!(datasets[0].name, "tank/my data:v1.2");
        assert_eq!(datasets[0].mountpoint_path(), Some("/srv/my data"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "tank /x on yes",
            "tank\t/x\ton",
            "tank\t/x\tmaybe\tyes",
            "tank\trelative\ton\tyes",
            "tank\t/x\ton\tperhaps",
            "\t/x\ton\tyes",
        ] {
            let error = parse_list(&format!("ok\tnone\ton\tno\n{bad}\n")).unwrap_err();
            assert_eq!(error.line, 2, "{bad}");
        }
    }
}
