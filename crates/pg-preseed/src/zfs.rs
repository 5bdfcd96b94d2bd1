//! The `zfs` command: the argv of every call the engine makes, pure parsers of what it prints,
//! and [`Zfs`], which runs them through [`crate::exec`].
//!
//! `zfs list -H -o name,mountpoint,canmount,mounted -t filesystem` is the column subset OpenZFS
//! and its ancestor zfs-fuse both print (zfs-fuse has no `-p`). `mountpoint` is the effective
//! one: inherited values are already resolved by `zfs`. zfs-fuse also lacks `create -u` and the
//! `overlay` property: [`Zfs::create`] falls back, and [`Zfs::has_overlay`] asks.

use std::collections::BTreeMap;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::exec::{Command, ExecError};
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

/// Current values of properties, by dataset then property (from `zfs get`).
pub type Properties = BTreeMap<String, BTreeMap<String, String>>;

/// `zfs get` of `properties` on `datasets`, in the form [`parse_get`] reads.
#[must_use]
pub fn get_argv(properties: &[String], datasets: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "get".into(),
        "-H".into(),
        "-o".into(),
        "name,property,value".into(),
        properties.join(","),
    ];
    argv.extend(datasets.iter().map(|&name| name.to_owned()));
    argv
}

/// Parses `zfs get -H -o name,property,value <props> <datasets>`.
///
/// # Errors
/// A line without three tab-separated columns.
pub fn parse_get(text: &str) -> Result<Properties, String> {
    let mut properties = Properties::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let mut columns = line.split('\t');
        let (Some(name), Some(property), Some(value)) =
            (columns.next(), columns.next(), columns.next())
        else {
            return Err(format!(
                "zfs get line {}: expected name, property, value",
                index + 1
            ));
        };
        properties
            .entry(name.to_owned())
            .or_default()
            .insert(property.to_owned(), value.to_owned());
    }
    Ok(properties)
}

/// Asks `pool` for its `overlay` property: OpenZFS 2.x has it, zfs-fuse and old releases do not.
#[must_use]
pub fn overlay_argv(pool: &str) -> Vec<String> {
    ["get", "-H", "-o", "value", "overlay", pool]
        .map(str::to_owned)
        .to_vec()
}

/// `-o mountpoint=… -o property=value …`, the options a new dataset is created with.
fn create_options(mountpoint: &str, properties: &BTreeMap<String, String>) -> Vec<String> {
    let mut options = vec!["-o".to_owned(), format!("mountpoint={mountpoint}")];
    for (property, value) in properties {
        options.extend(["-o".to_owned(), format!("{property}={value}")]);
    }
    options
}

/// Creates `name` (and its parents) without mounting it (`-u`): the pool's mount unit mounts it,
/// in order.
#[must_use]
pub fn create_argv(
    name: &str,
    mountpoint: &str,
    properties: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut argv = vec!["create".to_owned(), "-u".to_owned(), "-p".to_owned()];
    argv.extend(create_options(mountpoint, properties));
    argv.push(name.to_owned());
    argv
}

/// Whether `zfs create` failed for want of `-u` (zfs-fuse, older ZFS).
#[must_use]
pub fn lacks_create_u(output: &str) -> bool {
    output.contains("invalid option 'u'")
}

/// What [`create_argv`] does on a ZFS without `-u`: create the dataset unmountable, then allow
/// mounting.
#[must_use]
pub fn create_argv_without_u(
    name: &str,
    mountpoint: &str,
    properties: &BTreeMap<String, String>,
) -> [Vec<String>; 2] {
    let mut create = vec![
        "create".to_owned(),
        "-p".to_owned(),
        "-o".to_owned(),
        "canmount=noauto".to_owned(),
    ];
    create.extend(create_options(mountpoint, properties));
    create.push(name.to_owned());
    [create, set_argv(name, "canmount", "on")]
}

/// `zfs set property=value name`.
#[must_use]
pub fn set_argv(name: &str, property: &str, value: &str) -> Vec<String> {
    vec![
        "set".to_owned(),
        format!("{property}={value}"),
        name.to_owned(),
    ]
}

/// Finds the `zfs` command: PATH first, then where distributions and NixOS put it.
#[must_use]
pub fn find() -> Option<Utf8PathBuf> {
    let from_path = std::env::var("PATH").ok().and_then(|path| {
        path.split(':')
            .map(|dir| Utf8Path::new(dir).join("zfs"))
            .find(|candidate| candidate.is_file())
    });
    from_path.or_else(|| {
        [
            "/usr/sbin/zfs",
            "/sbin/zfs",
            "/run/current-system/sw/bin/zfs",
        ]
        .into_iter()
        .map(Utf8PathBuf::from)
        .find(|candidate| candidate.is_file())
    })
}

/// Runs `zfs`, each call bounded by a timeout (a pool that hangs must not hang the boot).
#[derive(Debug, Clone)]
pub struct Zfs {
    program: Utf8PathBuf,
    timeout: Duration,
}

impl Zfs {
    /// The `zfs` found by [`find`], if there is one.
    #[must_use]
    pub fn find(timeout: Duration) -> Option<Zfs> {
        find().map(|program| Zfs { program, timeout })
    }

    fn run(&self, argv: Vec<String>) -> Result<std::process::Output, ExecError> {
        Command::new(self.program.as_str(), argv).output(Some(self.timeout))
    }

    /// Every filesystem dataset ([`LIST_ARGS`]).
    ///
    /// # Errors
    /// When `zfs list` fails ([`ExecError`]) or prints what [`parse_list`] rejects
    /// ([`ParseError`]).
    pub fn list(&self) -> anyhow::Result<Vec<Dataset>> {
        let output = self.run(LIST_ARGS.map(str::to_owned).to_vec())?;
        Ok(parse_list(&String::from_utf8_lossy(&output.stdout))?)
    }

    /// `properties` of `datasets`.
    ///
    /// # Errors
    /// When `zfs get` fails or prints what [`parse_get`] rejects.
    pub fn get(&self, properties: &[String], datasets: &[&str]) -> anyhow::Result<Properties> {
        let output = self.run(get_argv(properties, datasets))?;
        parse_get(&String::from_utf8_lossy(&output.stdout)).map_err(anyhow::Error::msg)
    }

    /// Whether this ZFS knows the `overlay` property (asking `pool`).
    #[must_use]
    pub fn has_overlay(&self, pool: &str) -> bool {
        self.run(overlay_argv(pool)).is_ok()
    }

    /// Creates `name` unmounted ([`create_argv`], or [`create_argv_without_u`] where `-u` is
    /// unknown).
    ///
    /// # Errors
    /// The failing call's [`ExecError`].
    pub fn create(
        &self,
        name: &str,
        mountpoint: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<(), ExecError> {
        match self.run(create_argv(name, mountpoint, properties)) {
            Ok(_) => Ok(()),
            Err(ExecError::Exited { output, .. }) if lacks_create_u(&output) => {
                for argv in create_argv_without_u(name, mountpoint, properties) {
                    self.run(argv)?;
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// `zfs set property=value name`.
    ///
    /// # Errors
    /// The call's [`ExecError`].
    pub fn set(&self, name: &str, property: &str, value: &str) -> Result<(), ExecError> {
        self.run(set_argv(name, property, value)).map(drop)
    }
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

    #[test]
    fn zfs_get_parsing() {
        let parsed = parse_get("tank/a\tcompression\ton\ntank/a\trecordsize\t128K\n").unwrap();
        assert_eq!(parsed["tank/a"]["recordsize"], "128K");
        assert!(parse_get("tank/a compression on\n").is_err());
    }

    #[test]
    fn argv_of_each_call() {
        let properties = BTreeMap::from([("recordsize".to_owned(), "8K".to_owned())]);
        assert_eq!(
            create_argv("tank/pg", "/var/lib/postgresql/16", &properties),
            [
                "create",
                "-u",
                "-p",
                "-o",
                "mountpoint=/var/lib/postgresql/16",
                "-o",
                "recordsize=8K",
                "tank/pg"
            ]
        );
        assert_eq!(
            get_argv(
                &["atime".to_owned(), "overlay".to_owned()],
                &["tank/a", "tank/b"]
            ),
            [
                "get",
                "-H",
                "-o",
                "name,property,value",
                "atime,overlay",
                "tank/a",
                "tank/b"
            ]
        );
        assert_eq!(
            overlay_argv("tank"),
            ["get", "-H", "-o", "value", "overlay", "tank"]
        );
        assert_eq!(
            set_argv("tank/pg", "atime", "off"),
            ["set", "atime=off", "tank/pg"]
        );
    }

    /// zfs-fuse has no `create -u`: the dataset is created unmountable, then allowed to mount.
    #[test]
    fn create_without_u_for_zfs_fuse() {
        assert!(lacks_create_u(
            "invalid option 'u'\nusage:\n\tcreate [-p] [-o property=value] ... <filesystem>"
        ));
        assert!(!lacks_create_u(
            "cannot create 'tank/pg': dataset already exists"
        ));
        let [create, allow] = create_argv_without_u("tank/pg", "/pg", &BTreeMap::new());
        assert_eq!(
            create,
            [
                "create",
                "-p",
                "-o",
                "canmount=noauto",
                "-o",
                "mountpoint=/pg",
                "tank/pg"
            ]
        );
        assert_eq!(allow, ["set", "canmount=on", "tank/pg"]);
    }
}
