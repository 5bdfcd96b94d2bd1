//! What is in PGDATA: observed at the edge (`observe`), classified by a pure function.
//!
//! pgBackRest writes `backup.manifest` into PGDATA before it changes anything else, restores
//! `global/pg_control` last, and removes the manifest when it finishes; so a manifest means a
//! restore was cut short, and `PG_VERSION` + `global/pg_control` without one means a cluster.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;

use camino::Utf8Path;
use serde::Serialize;

pub const PG_VERSION: &str = "PG_VERSION";
pub const PG_CONTROL: &str = "global/pg_control";
pub const BACKUP_MANIFEST: &str = "backup.manifest";
pub const POSTMASTER_PID: &str = "postmaster.pid";
/// ZFS's control directory at a dataset's root: listed when the dataset has `snapdir=visible`.
pub const ZFS_CONTROL_DIR: &str = ".zfs";
/// The inode number OpenZFS on Linux gives the `.zfs` control directory (`ZFSCTL_INO_ROOT` in
/// its `zfs_ctldir.h`): what tells it from a directory someone made with that name.
pub const ZFSCTL_INO_ROOT: u64 = 0x0000_FFFF_FFFF_FFFF;

/// How many entries of a partial PGDATA are named in messages.
const NAMED_ENTRIES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PgdataState {
    Missing,
    Empty,
    /// Nothing but ZFS's `.zfs` control directory (the dataset has `snapdir=visible`): no data,
    /// but pgBackRest and initdb refuse to write into a directory that lists anything, so it
    /// cannot be restored into until the dataset's `snapdir` is `hidden`.
    EmptyZfsSnapdirVisible,
    Initialized {
        /// Contents of `PG_VERSION` (the cluster's major version).
        pg_version: Option<String>,
        postmaster_pid: bool,
    },
    RestoreInProgress {
        /// The label pgBackRest recorded in the manifest it left behind.
        backup_label: Option<String>,
    },
    Partial {
        entries: Vec<String>,
        total: usize,
        /// Nothing but empty directories, all on PGDATA's filesystem: what pgBackRest leaves
        /// when it is stopped after creating the cluster's directories and before writing its
        /// manifest. Holds no data; still never touched unless pg-preseed's claim shows that
        /// pg-preseed started that restore.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        only_directories: bool,
    },
    NotADirectory,
    Unreadable {
        error: String,
    },
}

impl PgdataState {
    /// The lower-case name DESIGN.md's table uses.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            PgdataState::Missing => "missing",
            PgdataState::Empty => "empty",
            PgdataState::EmptyZfsSnapdirVisible => "empty (.zfs visible)",
            PgdataState::Initialized { .. } => "initialized",
            PgdataState::RestoreInProgress { .. } => "restore in progress",
            PgdataState::Partial { .. } => "partial",
            PgdataState::NotADirectory => "not a directory",
            PgdataState::Unreadable { .. } => "unreadable",
        }
    }

    #[must_use]
    pub fn is_missing_or_empty(&self) -> bool {
        matches!(self, PgdataState::Missing | PgdataState::Empty)
    }

    /// A sentence for reasons: "PGDATA /x is empty".
    #[must_use]
    pub fn describe(&self, pgdata: &Utf8Path) -> String {
        format!("PGDATA {pgdata} {}", self.summary())
    }

    /// What PGDATA holds, as the end of a sentence ("is empty", "holds a PostgreSQL 16 cluster").
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            PgdataState::Missing => "does not exist".to_owned(),
            PgdataState::Empty => "is empty".to_owned(),
            PgdataState::EmptyZfsSnapdirVisible => "holds no data, but lists ZFS's .zfs directory (its dataset has snapdir=visible), and pgBackRest and initdb refuse to write into a directory that lists anything".to_owned(),
            PgdataState::Initialized { pg_version, .. } => format!(
                "holds a PostgreSQL {} cluster (PG_VERSION and global/pg_control present)",
                pg_version.as_deref().unwrap_or("?")
            ),
            PgdataState::RestoreInProgress { backup_label } => format!(
                "holds an unfinished pgBackRest restore (backup.manifest present{})",
                backup_label
                    .as_deref()
                    .map(|label| format!(", backup {label}"))
                    .unwrap_or_default()
            ),
            PgdataState::Partial {
                entries,
                total,
                only_directories,
            } => {
                let mut listed = entries.join(", ");
                if *total > entries.len() {
                    let _ = write!(listed, " and {} more", total - entries.len());
                }
                let hint = if entries.iter().any(|e| e == "lost+found") {
                    " (lost+found: PGDATA is a filesystem root; use a subdirectory of it)"
                } else {
                    ""
                };
                let only = if *only_directories {
                    " (directories only, all empty)"
                } else {
                    ""
                };
                format!(
                    "is neither empty nor a cluster nor an unfinished restore: it contains {listed}{only}{hint}"
                )
            }
            PgdataState::NotADirectory => "exists but is not a directory".to_owned(),
            PgdataState::Unreadable { error } => format!("cannot be read: {error}"),
        }
    }
}

/// Raw observations of PGDATA, gathered by [`observe`].
// Independent observations of the disk, each a yes/no; `classify` turns them into one state.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub exists: bool,
    pub is_dir: bool,
    /// Names of the top-level entries, or the error listing them.
    pub entries: Option<Result<Vec<String>, String>>,
    pub has_pg_control: bool,
    pub pg_version: Option<String>,
    pub manifest: Option<String>,
    /// The tree holds directories and nothing else (see [`PgdataState::Partial`]).
    pub only_directories: bool,
    /// One of the entries is ZFS's `.zfs` control directory, not data.
    pub zfs_control_dir: bool,
}

/// Classifies observations; pure.
#[must_use]
pub fn classify(observed: &Observed) -> PgdataState {
    if !observed.exists {
        return PgdataState::Missing;
    }
    if !observed.is_dir {
        return PgdataState::NotADirectory;
    }
    let mut entries = match &observed.entries {
        None => return PgdataState::Missing,
        Some(Err(error)) => {
            return PgdataState::Unreadable {
                error: error.clone(),
            }
        }
        Some(Ok(entries)) => entries.clone(),
    };
    if observed.zfs_control_dir {
        entries.retain(|entry| entry != ZFS_CONTROL_DIR);
        if entries.is_empty() {
            return PgdataState::EmptyZfsSnapdirVisible;
        }
    }
    if entries.is_empty() {
        return PgdataState::Empty;
    }
    let has = |name: &str| entries.iter().any(|entry| entry == name);
    if has(BACKUP_MANIFEST) {
        return PgdataState::RestoreInProgress {
            backup_label: observed.manifest.as_deref().and_then(manifest_label),
        };
    }
    if has(PG_VERSION) && observed.has_pg_control {
        return PgdataState::Initialized {
            pg_version: observed.pg_version.clone(),
            postmaster_pid: has(POSTMASTER_PID),
        };
    }
    entries.sort();
    let total = entries.len();
    entries.truncate(NAMED_ENTRIES);
    PgdataState::Partial {
        entries,
        total,
        only_directories: observed.only_directories,
    }
}

/// `backup-label="20240101-000000F"` from the `[backup]` section of a pgBackRest manifest.
#[must_use]
pub fn manifest_label(manifest: &str) -> Option<String> {
    let mut in_backup = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_backup = line == "[backup]";
        } else if in_backup {
            if let Some(value) = line.strip_prefix("backup-label=") {
                return serde_json::from_str::<String>(value).ok();
            }
        }
    }
    None
}

/// Looks at PGDATA without changing it. The manifest is read only up to 64 KiB: its `[backup]`
/// section comes first.
#[must_use]
pub fn observe(pgdata: &Utf8Path) -> Observed {
    let metadata = match std::fs::metadata(pgdata) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return Observed::default(),
        Err(error) => {
            return Observed {
                exists: true,
                is_dir: true,
                entries: Some(Err(error.to_string())),
                ..Observed::default()
            }
        }
    };
    if !metadata.is_dir() {
        return Observed {
            exists: true,
            ..Observed::default()
        };
    }
    let entries = std::fs::read_dir(pgdata)
        .and_then(|dir| {
            dir.map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|error| error.to_string());
    let manifest = read_head(&pgdata.join(BACKUP_MANIFEST), 64 * 1024);
    let pg_version = read_head(&pgdata.join(PG_VERSION), 64).map(|v| v.trim().to_owned());
    let zfs_control_dir = entries
        .as_ref()
        .is_ok_and(|e| e.iter().any(|name| name == ZFS_CONTROL_DIR))
        && is_zfs_control_dir(&pgdata.join(ZFS_CONTROL_DIR));
    let only_directories = manifest.is_none()
        && pg_version.is_none()
        && entries.as_ref().is_ok_and(|e| {
            e.iter()
                .any(|name| !(zfs_control_dir && name == ZFS_CONTROL_DIR))
        })
        && only_empty_directories(pgdata, metadata.dev(), zfs_control_dir);
    Observed {
        exists: true,
        is_dir: true,
        entries: Some(entries),
        has_pg_control: pgdata.join(PG_CONTROL).is_file(),
        pg_version,
        manifest,
        only_directories,
        zfs_control_dir,
    }
}

/// Whether `path` is ZFS's control directory: a directory with OpenZFS's inode number for it
/// (never followed as a symlink; its snapshots are never looked into, which would mount them).
#[must_use]
pub fn is_zfs_control_dir(path: &Utf8Path) -> bool {
    std::fs::symlink_metadata(path)
        .is_ok_and(|metadata| metadata.is_dir() && metadata.ino() == ZFSCTL_INO_ROOT)
}

/// Whether everything below `dir` is a directory on device `device` (no file, no symlink, no
/// mount point). Looks at no more than a few thousand entries: pgBackRest's directory skeleton
/// of a cluster is a few dozen, anything bigger is not that.
fn only_empty_directories(dir: &Utf8Path, device: u64, skip_zfs_control_dir: bool) -> bool {
    const LIMIT: usize = 4096;
    let mut seen = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&current) else {
            return false;
        };
        let top = current == dir;
        for entry in listing {
            seen += 1;
            let Ok(entry) = entry else { return false };
            if top && skip_zfs_control_dir && entry.file_name() == ZFS_CONTROL_DIR {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                return false;
            };
            if seen > LIMIT || !metadata.is_dir() || metadata.dev() != device {
                return false;
            }
            let Ok(path) = camino::Utf8PathBuf::from_path_buf(entry.path()) else {
                return false;
            };
            pending.push(path);
        }
    }
    true
}

fn read_head(path: &Utf8Path, limit: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(entries: &[&str]) -> Observed {
        Observed {
            exists: true,
            is_dir: true,
            entries: Some(Ok(entries.iter().map(|&e| e.to_owned()).collect())),
            has_pg_control: false,
            pg_version: None,
            manifest: None,
            only_directories: false,
            zfs_control_dir: false,
        }
    }

    /// The skeleton pgBackRest creates before its manifest: directories only. One file, or a
    /// symlink, anywhere below makes it unknown contents again.
    #[test]
    fn observe_tells_a_directory_skeleton_from_contents() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(pgdata.join("base/1")).unwrap();
        std::fs::create_dir_all(pgdata.join("global")).unwrap();
        let observed = observe(pgdata);
        assert!(observed.only_directories);
        assert!(matches!(
            classify(&observed),
            PgdataState::Partial {
                only_directories: true,
                ..
            }
        ));
        std::os::unix::fs::symlink("/tmp", pgdata.join("base/link")).unwrap();
        assert!(!observe(pgdata).only_directories);
        std::fs::remove_file(pgdata.join("base/link")).unwrap();
        std::fs::write(pgdata.join("base/1/16384"), b"data").unwrap();
        assert!(!observe(pgdata).only_directories);
    }

    #[test]
    fn missing_and_empty() {
        assert_eq!(classify(&Observed::default()), PgdataState::Missing);
        assert_eq!(classify(&with(&[])), PgdataState::Empty);
        let file = Observed {
            exists: true,
            ..Observed::default()
        };
        assert_eq!(classify(&file), PgdataState::NotADirectory);
    }

    #[test]
    fn initialized_needs_both_files() {
        let mut observed = with(&["PG_VERSION", "global", "base", "postmaster.pid"]);
        assert!(matches!(classify(&observed), PgdataState::Partial { .. }));
        observed.has_pg_control = true;
        observed.pg_version = Some("16".to_owned());
        assert_eq!(
            classify(&observed),
            PgdataState::Initialized {
                pg_version: Some("16".to_owned()),
                postmaster_pid: true
            }
        );
    }

    #[test]
    fn manifest_wins_over_everything() {
        // pgBackRest writes pg_control last but removes the manifest after it: in between, the
        // restore is still unfinished.
        let mut observed = with(&["PG_VERSION", "global", "backup.manifest"]);
        observed.has_pg_control = true;
        observed.manifest = Some(
            "[backrest]\nbackrest-format=5\n\n[backup]\nbackup-label=\"20261127-090147F\"\n"
                .to_owned(),
        );
        assert_eq!(
            classify(&observed),
            PgdataState::RestoreInProgress {
                backup_label: Some("20261127-090147F".to_owned())
            }
        );
    }

    #[test]
    fn partial_lists_a_few_entries_and_the_total() {
        let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let PgdataState::Partial { entries, total, .. } = classify(&with(&refs)) else {
            panic!("expected partial");
        };
        assert_eq!(total, 20);
        assert_eq!(entries.len(), NAMED_ENTRIES);
        let text = classify(&with(&refs)).describe(Utf8Path::new("/pg"));
        assert!(text.contains("and 12 more"), "{text}");
    }

    #[test]
    fn lost_found_gets_a_hint() {
        let text = classify(&with(&["lost+found"])).describe(Utf8Path::new("/pg"));
        assert!(text.contains("filesystem root"), "{text}");
    }

    /// Issue 10.16: ZFS's `.zfs` (listed with `snapdir=visible`) is not data; a directory of
    /// that name that is not ZFS's is.
    #[test]
    fn zfs_control_dir_is_not_data() {
        let mut observed = with(&[ZFS_CONTROL_DIR]);
        assert!(matches!(classify(&observed), PgdataState::Partial { .. }));
        observed.zfs_control_dir = true;
        assert_eq!(classify(&observed), PgdataState::EmptyZfsSnapdirVisible);
        assert!(!classify(&observed).is_missing_or_empty());
        let mut cluster = with(&[ZFS_CONTROL_DIR, PG_VERSION, "global"]);
        cluster.zfs_control_dir = true;
        cluster.has_pg_control = true;
        assert!(matches!(
            classify(&cluster),
            PgdataState::Initialized { .. }
        ));
        let mut other = with(&[ZFS_CONTROL_DIR, "base"]);
        other.zfs_control_dir = true;
        let PgdataState::Partial { entries, .. } = classify(&other) else {
            panic!("expected partial");
        };
        assert_eq!(entries, ["base"]);
    }

    /// A `.zfs` someone made in an ordinary directory keeps its inode number: observed as data.
    #[test]
    fn a_made_dot_zfs_directory_is_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir(root.join(ZFS_CONTROL_DIR)).unwrap();
        let observed = observe(root);
        assert!(!observed.zfs_control_dir);
        assert!(matches!(classify(&observed), PgdataState::Partial { .. }));
    }

    #[test]
    fn only_postmaster_pid_is_partial() {
        assert!(matches!(
            classify(&with(&["postmaster.pid"])),
            PgdataState::Partial { .. }
        ));
    }

    #[test]
    fn manifest_label_only_from_backup_section() {
        assert_eq!(manifest_label("[other]\nbackup-label=\"x\"\n"), None);
        assert_eq!(
            manifest_label("[backup]\nbackup-archive-start=\"0001\"\nbackup-label=\"L\"\n")
                .as_deref(),
            Some("L")
        );
        assert_eq!(manifest_label("[backup]\nbackup-label=unquoted\n"), None);
    }

    #[test]
    fn unreadable_is_its_own_state() {
        let observed = Observed {
            exists: true,
            is_dir: true,
            entries: Some(Err("Permission denied (os error 13)".to_owned())),
            ..Observed::default()
        };
        assert!(matches!(
            classify(&observed),
            PgdataState::Unreadable { .. }
        ));
    }
}
