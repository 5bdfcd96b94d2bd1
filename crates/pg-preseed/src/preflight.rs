//! Layering, mount identity, marker placement and ownership: pure checks over a [`Layout`]
//! gathered by `facts`. Each problem is a [`Finding`] that names every mount or dataset
//! involved and says how to fix it (DESIGN.md invariant 3).

use std::collections::BTreeSet;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::config::{OnLayering, RequireMount};
use crate::mountinfo::{self, MountEntry};
use crate::zfs::{self, Dataset};

/// What to do after a refusal on findings: each finding carries its own fix.
pub const REFUSED_NEXT: &str =
    "fix what the findings above name (each says how), then start again; nothing was changed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// More than one mount at one mount point: the lower ones are hidden.
    StackedMount,
    /// Two ZFS datasets with `canmount=on` claim one mountpoint.
    SharedMountpoint,
    /// A dataset that should be mounted on PGDATA (or above it, or at the marker) is not.
    DatasetNotMounted,
    /// `require_mount` is set and PGDATA is not a mount point.
    MountMissing,
    /// `require_mount` is set and something else is mounted at PGDATA.
    MountMismatch,
    MarkerInsidePgdata,
    MarkerOnPgdataFilesystem,
    MarkerSymlink,
    MarkerDirUnwritable,
    /// The receipt's directory (or one above it) can be written, or is owned, by someone other
    /// than root and the PostgreSQL user: they could plant a receipt or claim.
    MarkerDirInsecure,
    PgdataOwner,
    /// A fact a safety check needs could not be gathered.
    CheckFailed,
    /// A declared dataset's pool is not imported (`datasets check|ensure`).
    PoolMissing,
}

impl Kind {
    /// Every kind of finding (preflight's and `datasets check|ensure`'s): docs/operations.md
    /// documents each one (`scripts/check-docs` reads them from `pg-preseed names`).
    pub const ALL: [Kind; 13] = [
        Kind::StackedMount,
        Kind::SharedMountpoint,
        Kind::DatasetNotMounted,
        Kind::MountMissing,
        Kind::MountMismatch,
        Kind::MarkerInsidePgdata,
        Kind::MarkerOnPgdataFilesystem,
        Kind::MarkerSymlink,
        Kind::MarkerDirUnwritable,
        Kind::MarkerDirInsecure,
        Kind::PgdataOwner,
        Kind::CheckFailed,
        Kind::PoolMissing,
    ];

    /// The name in reports (`findings[].kind`), as serialized.
    #[must_use]
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Layering findings are the ones `on_layering = "warn"` may downgrade; mount identity,
    /// placement and ownership always refuse.
    #[must_use]
    pub fn is_layering(self) -> bool {
        matches!(self, Kind::StackedMount | Kind::SharedMountpoint)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub path: String,
    pub detail: String,
    pub fix: String,
    /// False when `on_layering = "warn"` downgraded it.
    pub blocking: bool,
}

/// What ZFS said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZfsState {
    /// No `zfs` command on this host.
    NotInstalled,
    Listed(Vec<Dataset>),
    Failed(String),
}

/// Who owns PGDATA, when it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgdataOwner {
    pub uid: u32,
    pub expected_uid: u32,
    pub expected_user: String,
    pub empty: bool,
    /// The engine runs as root and may fix an empty directory's owner itself.
    pub fixable: bool,
}

/// The receipt's directory or one of its existing ancestors: who owns it, its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirStat {
    pub path: Utf8PathBuf,
    pub uid: u32,
    /// The owner's name, when it has one.
    pub user: Option<String>,
    /// Permission bits, with the sticky bit.
    pub mode: u32,
}

/// Everything the checks look at. Paths are resolved (symlinks in existing ancestors followed).
#[derive(Debug, Clone)]
pub struct Layout {
    pub pgdata: Utf8PathBuf,
    /// The receipt's path (`marker` in the config), its directory resolved.
    pub receipt: Utf8PathBuf,
    pub mounts: Result<Vec<MountEntry>, String>,
    pub zfs: ZfsState,
    /// Mount id holding PGDATA (or its nearest existing ancestor).
    pub pgdata_mount: Option<u64>,
    pub pgdata_exists: bool,
    /// Mount id holding the receipt's directory (or its nearest existing ancestor).
    pub receipt_dir_mount: Option<u64>,
    pub receipt_is_symlink: bool,
    /// Why the receipt's directory cannot be written by the engine's user, if it cannot.
    pub receipt_dir_unwritable: Option<String>,
    /// The receipt's directory (when it exists) and every existing directory above it,
    /// innermost first.
    pub receipt_dirs: Vec<DirStat>,
    /// The PostgreSQL user (uid, name): with root, the only owner the receipt's directory may
    /// have.
    pub pg_user: (u32, String),
    pub pgdata_owner: Option<PgdataOwner>,
    pub require_mount: Option<RequireMount>,
    pub on_layering: OnLayering,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub findings: Vec<Finding>,
    /// Observations that do not block (shown, never acted on).
    pub warnings: Vec<String>,
    /// Observations that change nothing here, such as a `zfs list` that failed where no ZFS
    /// mount is involved (zfs installed, its daemon or pools absent): kept for `--json` and the
    /// debug log, never printed as text.
    pub notes: Vec<String>,
}

impl Preflight {
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.blocking)
    }

    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.blocking().next().is_none()
    }
}

/// Runs every check.
#[must_use]
pub fn check(layout: &Layout) -> Preflight {
    let mut report = Preflight::default();
    let pgdata = layout.pgdata.as_path();
    let receipt_dir = layout.receipt.parent().unwrap_or(Utf8Path::new("/"));

    // The paths whose layering matters: PGDATA and everything above it, the receipt's directory
    // and everything above it. Mounts below PGDATA (pg_wal on its own dataset) are added below.
    let mut relevant: BTreeSet<&Utf8Path> = pgdata.ancestors().collect();
    relevant.extend(receipt_dir.ancestors());

    match &layout.mounts {
        Ok(mounts) => {
            let below_pgdata: BTreeSet<&Utf8Path> = mounts
                .iter()
                .map(|m| Utf8Path::new(m.mount_point.as_str()))
                .filter(|p| p.starts_with(pgdata) && *p != pgdata)
                .collect();
            for path in relevant.iter().chain(below_pgdata.iter()) {
                stacked(&mut report, mounts, path, layout.on_layering);
            }
            mount_identity(&mut report, layout, mounts);
            receipt_filesystem(&mut report, layout, mounts);
        }
        Err(error) => report.findings.push(Finding {
            kind: Kind::CheckFailed,
            path: "/proc/self/mountinfo".to_owned(),
            detail: format!(
                "cannot read the mount table, so layering cannot be ruled out: {error}"
            ),
            fix: "make /proc available to the service (do not set ProcSubset=pid or similar)"
                .to_owned(),
            blocking: true,
        }),
    }

    match &layout.zfs {
        ZfsState::NotInstalled => {}
        ZfsState::Listed(datasets) => {
            shared_mountpoints(&mut report, datasets, &relevant, pgdata, layout.on_layering);
            unmounted(&mut report, datasets, &relevant);
        }
        ZfsState::Failed(error) => {
            let zfs_matters = layout
                .require_mount
                .as_ref()
                .is_some_and(|r| r.dataset.is_some())
                || layout.mounts.as_ref().is_ok_and(|mounts| {
                    mounts.iter().any(|m| {
                        is_zfs(&m.fstype) && relevant.contains(Utf8Path::new(&m.mount_point))
                    })
                });
            if zfs_matters {
                report.findings.push(Finding {
                    kind: Kind::CheckFailed,
                    path: pgdata.to_string(),
                    detail: format!(
                        "`zfs list` failed, so datasets sharing PGDATA's mountpoint cannot be ruled out: {error}"
                    ),
                    fix: "make sure the pool is imported before this unit runs and that `zfs` works for the service user".to_owned(),
                    blocking: true,
                });
            } else {
                report.notes.push(format!(
                    "`zfs list` failed (ignored: no ZFS mount is involved): {error}"
                ));
            }
        }
    }

    receipt_placement(&mut report, layout);
    receipt_dir_trust(&mut report, layout);
    ownership(&mut report, layout);
    report
}

fn is_zfs(fstype: &str) -> bool {
    fstype == "zfs" || fstype == "fuse.zfs"
}

fn stacked(
    report: &mut Preflight,
    mounts: &[MountEntry],
    path: &Utf8Path,
    on_layering: OnLayering,
) {
    let stack = mountinfo::stack_at(mounts, path);
    if stack.len() < 2 {
        return;
    }
    let Some((visible, hidden)) = stack.split_last() else {
        return;
    };
    let hidden_list = hidden
        .iter()
        .map(|m| m.describe())
        .collect::<Vec<_>>()
        .join(", ");
    let zfs_hidden: Vec<&str> = hidden
        .iter()
        .filter(|m| is_zfs(&m.fstype))
        .map(|m| m.source.as_str())
        .collect();
    let fix = if zfs_hidden.is_empty() {
        format!(
            "unmount the hidden filesystem(s) ({hidden_list}) and remove whatever mounts them \
             there (fstab/fileSystems, a second unit), so that only {} is mounted at {path}",
            visible.describe()
        )
    } else {
        format!(
            "give the stray dataset(s) their own mountpoint or none — `zfs set mountpoint=none {}` \
             (or `zfs destroy` after checking their contents) — and set `overlay=off` on the \
             dataset that belongs at {path} so ZFS refuses to mount over a busy directory",
            zfs_hidden.join(" ")
        )
    };
    report.findings.push(Finding {
        kind: Kind::StackedMount,
        path: path.to_string(),
        detail: format!(
            "{} filesystems are mounted at {path}: {} on top, hiding {hidden_list}; files on the \
             hidden one (an old marker, old data) are invisible but still there",
            stack.len(),
            visible.describe()
        ),
        fix,
        blocking: on_layering == OnLayering::Fail,
    });
}

fn shared_mountpoints(
    report: &mut Preflight,
    datasets: &[Dataset],
    relevant: &BTreeSet<&Utf8Path>,
    pgdata: &Utf8Path,
    on_layering: OnLayering,
) {
    let mut seen = BTreeSet::new();
    for dataset in datasets {
        let Some(path) = dataset.automount_path() else {
            continue;
        };
        let path = Utf8Path::new(path);
        let matters = relevant.contains(path) || path.starts_with(pgdata);
        if !matters || !seen.insert(path) {
            continue;
        }
        let claimants = zfs::claimants(datasets, path.as_str());
        if claimants.len() < 2 {
            continue;
        }
        let names: Vec<&str> = claimants.iter().map(|d| d.name.as_str()).collect();
        let mounted: Vec<&str> = claimants
            .iter()
            .filter(|d| d.mounted)
            .map(|d| d.name.as_str())
            .collect();
        report.findings.push(Finding {
            kind: Kind::SharedMountpoint,
            path: path.to_string(),
            detail: format!(
                "ZFS datasets {} all have mountpoint={path} and canmount=on (mounted now: {}); at \
                 every import they stack on one another and whichever mounts last hides the rest",
                names.join(", "),
                if mounted.is_empty() { "none".to_owned() } else { mounted.join(", ") }
            ),
            fix: format!(
                "keep one dataset at {path}; for each other one run `zfs set mountpoint=none <name>` \
                 (or `zfs destroy <name>` once its contents are checked), and remove its \
                 declaration from your configuration"
            ),
            blocking: on_layering == OnLayering::Fail,
        });
    }
}

fn unmounted(report: &mut Preflight, datasets: &[Dataset], relevant: &BTreeSet<&Utf8Path>) {
    for dataset in datasets {
        let Some(path) = dataset.automount_path() else {
            continue;
        };
        if dataset.mounted || !relevant.contains(Utf8Path::new(path)) {
            continue;
        }
        report.findings.push(Finding {
            kind: Kind::DatasetNotMounted,
            path: path.to_owned(),
            detail: format!(
                "ZFS dataset {} (canmount=on) should be mounted at {path} but is not; anything \
                 written there now lands on the filesystem underneath",
                dataset.name
            ),
            fix: format!(
                "mount it (`zfs mount {}`), or find out why it failed (`journalctl -u zfs-mount`), \
                 before PostgreSQL starts",
                dataset.name
            ),
            blocking: true,
        });
    }
}

fn mount_identity(report: &mut Preflight, layout: &Layout, mounts: &[MountEntry]) {
    let Some(require) = &layout.require_mount else {
        return;
    };
    let pgdata = layout.pgdata.as_str();
    let expected = describe_requirement(require);
    // Where the filesystem must be mounted: PGDATA itself, or the directory above it that the
    // configuration names (PGDATA is then a directory on it, and may not exist yet).
    let expected_at = require.mountpoint.as_ref().map_or(pgdata, |m| m.as_str());
    let holder = layout
        .pgdata_mount
        .and_then(|id| mountinfo::by_id(mounts, id));
    let at_place = holder.filter(|m| {
        m.mount_point == expected_at && (layout.pgdata_exists || expected_at != pgdata)
    });
    let Some(mount) = at_place else {
        let underneath = holder.map_or_else(
            || "an unknown filesystem".to_owned(),
            |m| format!("{} mounted at {}", m.describe(), m.mount_point),
        );
        let state = if expected_at != pgdata {
            format!("PGDATA {pgdata} is on {underneath}")
        } else if layout.pgdata_exists {
            "PGDATA is not a mount point".to_owned()
        } else {
            "PGDATA does not exist".to_owned()
        };
        let place = if expected_at == pgdata {
            format!("PGDATA {pgdata}")
        } else {
            format!("{expected_at} (PGDATA {pgdata} is a directory on it)")
        };
        report.findings.push(Finding {
            kind: Kind::MountMissing,
            path: pgdata.to_owned(),
            detail: format!(
                "{expected} must be mounted at {place}, but {state}; restoring now would write \
                 the cluster onto {underneath}"
            ),
            fix: require.dataset.as_ref().map_or_else(
                || format!("mount the {expected} filesystem at {expected_at} (check fileSystems / fstab and `journalctl -b`)"),
                |dataset| format!(
                    "import the pool and mount the dataset (`zfs mount {dataset}`); check its \
                     mountpoint with `zfs get mountpoint {dataset}`"
                ),
            ),
            blocking: true,
        });
        return;
    };
    let source_ok = require
        .dataset
        .as_ref()
        .is_none_or(|dataset| &mount.source == dataset);
    let fstype_ok = require.fstype.as_ref().is_none_or(|fstype| {
        mount.fstype == *fstype || mount.fstype.strip_prefix("fuse.") == Some(fstype.as_str())
    });
    if !(source_ok && fstype_ok) {
        report.findings.push(Finding {
            kind: Kind::MountMismatch,
            path: pgdata.to_owned(),
            detail: format!(
                "PGDATA {pgdata} is on {} mounted at {expected_at}, but the config requires {expected}",
                mount.describe()
            ),
            fix: format!(
                "unmount {} from {expected_at} and mount {expected} there, or correct require_mount",
                mount.source
            ),
            blocking: true,
        });
    }
}

fn describe_requirement(require: &RequireMount) -> String {
    match (&require.dataset, &require.fstype) {
        (Some(dataset), Some(fstype)) => format!("dataset {dataset} ({fstype})"),
        (Some(dataset), None) => format!("dataset {dataset}"),
        (None, Some(fstype)) => format!("a {fstype} filesystem"),
        (None, None) => "a filesystem".to_owned(),
    }
}

fn receipt_filesystem(report: &mut Preflight, layout: &Layout, mounts: &[MountEntry]) {
    let (Some(pg_id), Some(receipt_id)) = (layout.pgdata_mount, layout.receipt_dir_mount) else {
        return;
    };
    let (Some(pg_mount), Some(receipt_mount)) = (
        mountinfo::by_id(mounts, pg_id),
        mountinfo::by_id(mounts, receipt_id),
    ) else {
        return;
    };
    let same_filesystem =
        (pg_mount.major, pg_mount.minor) == (receipt_mount.major, receipt_mount.minor);
    if !same_filesystem {
        return;
    }
    // A filesystem of its own is mounted at PGDATA from its root. A bind of a subdirectory of
    // another filesystem (systemd's ReadWritePaths= bind-mounts a path onto itself inside the
    // unit's namespace) is not PGDATA's own filesystem.
    let dedicated = layout.pgdata_exists
        && pg_mount.mount_point == layout.pgdata.as_str()
        && pg_mount.root == "/";
    if dedicated || layout.require_mount.is_some() {
        report.findings.push(Finding {
            kind: Kind::MarkerOnPgdataFilesystem,
            path: layout.receipt.to_string(),
            detail: format!(
                "the receipt {} is on PGDATA's own filesystem ({}); it would vanish with that \
                 filesystem or survive on it when hidden, exactly like the incident's marker",
                layout.receipt,
                pg_mount.describe()
            ),
            fix: "put the receipt (`marker`) on another filesystem (the default, /var/lib/postgresql-preseed/<major>/receipt.json, is outside PGDATA's dataset)".to_owned(),
            blocking: true,
        });
    } else {
        report.warnings.push(format!(
            "the receipt and PGDATA share the filesystem {} mounted at {}; if PGDATA had its own \
             filesystem the receipt would be independent of it",
            pg_mount.describe(),
            pg_mount.mount_point
        ));
    }
}

fn receipt_placement(report: &mut Preflight, layout: &Layout) {
    if layout.receipt.starts_with(&layout.pgdata) {
        report.findings.push(Finding {
            kind: Kind::MarkerInsidePgdata,
            path: layout.receipt.to_string(),
            detail: format!(
                "the receipt {} resolves to a path inside PGDATA {} (through a symlink in its \
                 directory); emptying PGDATA would delete it, and a hidden PGDATA would keep it",
                layout.receipt, layout.pgdata
            ),
            fix: "set `marker` to a path outside PGDATA and its filesystem".to_owned(),
            blocking: true,
        });
    }
    if layout.receipt_is_symlink {
        report.findings.push(Finding {
            kind: Kind::MarkerSymlink,
            path: layout.receipt.to_string(),
            detail: format!(
                "the receipt path {} is a symlink; the engine never reads or writes a receipt \
                 through a link, which could point anywhere (into PGDATA, onto a hidden dataset)",
                layout.receipt
            ),
            fix: format!(
                "remove the link (`rm {}`) and let the engine write a real file",
                layout.receipt
            ),
            blocking: true,
        });
    }
    if let Some(why) = &layout.receipt_dir_unwritable {
        let dir = layout.receipt.parent().unwrap_or(Utf8Path::new("/"));
        report.findings.push(Finding {
            kind: Kind::MarkerDirUnwritable,
            path: dir.to_string(),
            detail: format!("the receipt's directory {dir} cannot be written: {why}"),
            fix: format!(
                "create it writable for the PostgreSQL user (`install -d -o postgres -g postgres -m 0750 {dir}`) or choose another marker path"
            ),
            blocking: true,
        });
    }
}

/// The receipt and the claim decide whether PostgreSQL may start on an empty PGDATA; whoever
/// can create files in their directory could plant one (a claim saying "fresh start" lets
/// initdb run), and whoever can write a directory above it (without the sticky bit) or owns
/// one could put a directory of their own in its place. Only root and the PostgreSQL user may.
/// The receipt's own directory may not be writable by group or others even with the sticky
/// bit (which stops renaming others' files, not creating new ones).
fn receipt_dir_trust(report: &mut Preflight, layout: &Layout) {
    let receipt_dir = layout.receipt.parent().unwrap_or(Utf8Path::new("/"));
    let (pg_uid, pg_name) = &layout.pg_user;
    for dir in &layout.receipt_dirs {
        let itself = dir.path == receipt_dir;
        let owner = || {
            format!(
                "uid {}{}",
                dir.uid,
                dir.user
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" ({n})"))
            )
        };
        let writers = match (dir.mode & 0o020 != 0, dir.mode & 0o002 != 0) {
            (true, true) => "its group and everyone",
            (true, false) => "its group",
            (false, true) => "everyone",
            (false, false) => "",
        };
        let sticky = dir.mode & 0o1000 != 0;
        let problem = if dir.uid != 0 && dir.uid != *pg_uid {
            format!("is owned by {}, not by root or {pg_name}", owner())
        } else if !writers.is_empty() && (itself || !sticky) {
            format!("is writable by {writers} (mode {:04o})", dir.mode)
        } else {
            continue;
        };
        let path = &dir.path;
        let (detail, fix) = if itself {
            (
                format!(
                    "the receipt's directory {path} {problem}: whoever can write there can plant a \
                     receipt or a claim (a claim saying \"fresh start\" lets initdb run over an \
                     emptied PGDATA), so nothing in it can be believed"
                ),
                format!(
                    "give it to {pg_name} and let only its owner write: `chown {pg_name}: {path} && \
                     chmod 0755 {path}` (the NixOS module's tmpfiles rule does), after checking \
                     the files in it"
                ),
            )
        } else {
            (
                format!(
                    "{path}, above the receipt's directory {receipt_dir}, {problem}: whoever can \
                     write it can move the receipt's directory away and put one of their own in \
                     its place"
                ),
                format!(
                    "let only root write {path} (`chown root: {path} && chmod go-w {path}`), or \
                     put the receipt (`marker`) under a directory only root and {pg_name} control, \
                     such as the default /var/lib/postgresql-preseed/<major>/receipt.json"
                ),
            )
        };
        report.findings.push(Finding {
            kind: Kind::MarkerDirInsecure,
            path: path.to_string(),
            detail,
            fix,
            blocking: true,
        });
    }
}

fn ownership(report: &mut Preflight, layout: &Layout) {
    let Some(owner) = &layout.pgdata_owner else {
        return;
    };
    if owner.uid == owner.expected_uid {
        return;
    }
    if owner.empty && owner.fixable {
        report.warnings.push(format!(
            "PGDATA {} is owned by uid {}, not {}; `run` gives the empty directory to {} before \
             restoring",
            layout.pgdata, owner.uid, owner.expected_user, owner.expected_user
        ));
        return;
    }
    report.findings.push(Finding {
        kind: Kind::PgdataOwner,
        path: layout.pgdata.to_string(),
        detail: format!(
            "PGDATA {} is owned by uid {}, not by {} (uid {}); PostgreSQL and pgBackRest refuse or \
             fail on it",
            layout.pgdata, owner.uid, owner.expected_user, owner.expected_uid
        ),
        fix: format!(
            "chown {}: {} && chmod 0700 {} (check first that it really is this cluster's data)",
            owner.expected_user, layout.pgdata, layout.pgdata
        ),
        blocking: true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Kind::ALL` holds every kind once (issue 16.8), checked against serde's own list of the
    /// variants (the one its "unknown variant" error gives), which a new variant joins by itself.
    #[test]
    fn all_kinds_are_listed() {
        let error = serde_json::from_str::<Kind>("\"no such kind\"")
            .expect_err("not a kind")
            .to_string();
        let expected = error
            .split("expected one of ")
            .nth(1)
            .and_then(|list| list.split(" at line").next())
            .unwrap_or_else(|| panic!("serde's message changed: {error}"));
        let variants: Vec<&str> = expected
            .split(", ")
            .map(|name| name.trim_matches('`'))
            .collect();
        let listed: Vec<String> = Kind::ALL.into_iter().map(Kind::name).collect();
        assert_eq!(listed, variants);
        assert_eq!(Kind::StackedMount.name(), "stacked_mount");
        assert_eq!(Kind::MarkerDirInsecure.name(), "marker_dir_insecure");
    }

    const INCIDENT_MOUNTS: &str = include_str!("../tests/fixtures/mountinfo-incident-zfs-fuse.txt");
    const INCIDENT_ZFS: &str = include_str!("../tests/fixtures/zfs-list-incident-zfs-fuse.txt");

    fn layout(mounts: &str) -> Layout {
        Layout {
            pgdata: "/var/lib/postgresql/16".into(),
            receipt: "/var/lib/postgresql-preseed/16/receipt.json".into(),
            mounts: mountinfo::parse(mounts).map_err(|e| e.to_string()),
            zfs: ZfsState::NotInstalled,
            pgdata_mount: None,
            pgdata_exists: true,
            receipt_dir_mount: None,
            receipt_is_symlink: false,
            receipt_dir_unwritable: None,
            receipt_dirs: Vec::new(),
            pg_user: (102, "postgres".to_owned()),
            pgdata_owner: None,
            require_mount: None,
            on_layering: OnLayering::Fail,
        }
    }

    fn kinds(report: &Preflight) -> Vec<Kind> {
        report.findings.iter().map(|f| f.kind).collect()
    }

    /// The seed's incident, from real captures: both datasets are named, and the fix too.
    #[test]
    fn incident_stacked_datasets_are_found_and_named() {
        let mut layout = layout(INCIDENT_MOUNTS);
        layout.zfs = ZfsState::Listed(zfs::parse_list(INCIDENT_ZFS).unwrap());
        layout.pgdata_mount = Some(44);
        layout.receipt_dir_mount = Some(27);
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::StackedMount, Kind::SharedMountpoint]);
        for finding in &report.findings {
            assert!(finding.blocking);
            assert_eq!(finding.path, "/var/lib/postgresql/16");
            let words: Vec<&str> = finding.detail.split([' ', ',', '(', ')']).collect();
            assert!(
                words.contains(&"tank/services/postgres"),
                "{}",
                finding.detail
            );
            assert!(
                words.contains(&"tank/services/postgresql"),
                "{}",
                finding.detail
            );
        }
        assert!(report.findings[0]
            .fix
            .contains("zfs set mountpoint=none tank/services/postgres"));
        assert!(!report.is_clean());
    }

    #[test]
    fn on_layering_warn_downgrades_layering_only() {
        let mut layout = layout(INCIDENT_MOUNTS);
        layout.on_layering = OnLayering::Warn;
        layout.require_mount = Some(RequireMount {
            dataset: Some("tank/other".to_owned()),
            fstype: None,
            mountpoint: None,
        });
        layout.pgdata_mount = Some(44);
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::StackedMount, Kind::MountMismatch]);
        assert!(!report.findings[0].blocking);
        assert!(report.findings[1].blocking);
    }

    #[test]
    fn stacking_on_an_ancestor_or_below_pgdata_counts() {
        let text = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
40 27 0:50 / /var/lib rw - tmpfs lower rw
41 40 0:51 / /var/lib rw - tmpfs upper rw
42 41 0:52 / /var/lib/postgresql/16/pg_wal rw - tmpfs wal1 rw
43 42 0:53 / /var/lib/postgresql/16/pg_wal rw - tmpfs wal2 rw
44 27 0:54 / /srv rw - tmpfs a rw
45 44 0:55 / /srv rw - tmpfs b rw
";
        let report = check(&layout(text));
        let paths: Vec<_> = report.findings.iter().map(|f| f.path.as_str()).collect();
        // /srv is stacked too, but it is not PGDATA's business.
        assert_eq!(paths, ["/var/lib", "/var/lib/postgresql/16/pg_wal"]);
        assert!(report.findings[0]
            .detail
            .contains("upper (tmpfs) on top, hiding lower (tmpfs)"));
    }

    #[test]
    fn stacking_at_the_marker_directory_counts() {
        let text = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
40 27 0:50 / /var/lib/postgresql-preseed rw - tmpfs m1 rw
41 40 0:51 / /var/lib/postgresql-preseed rw - tmpfs m2 rw
";
        let report = check(&layout(text));
        assert_eq!(kinds(&report), [Kind::StackedMount]);
        assert_eq!(report.findings[0].path, "/var/lib/postgresql-preseed");
    }

    #[test]
    fn a_clean_host_is_clean() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / /var/lib/postgresql/16 rw - zfs tank/pg rw\n";
        let mut layout = layout(text);
        layout.zfs = ZfsState::Listed(
            zfs::parse_list("tank\tnone\ton\tno\ntank/pg\t/var/lib/postgresql/16\ton\tyes\n")
                .unwrap(),
        );
        layout.require_mount = Some(RequireMount {
            dataset: Some("tank/pg".to_owned()),
            fstype: Some("zfs".to_owned()),
            mountpoint: None,
        });
        layout.pgdata_mount = Some(40);
        layout.receipt_dir_mount = Some(27);
        let report = check(&layout);
        assert!(report.findings.is_empty(), "{report:?}");
        assert!(report.warnings.is_empty(), "{report:?}");
    }

    #[test]
    fn shared_mountpoint_is_found_even_when_only_one_is_mounted() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.zfs = ZfsState::Listed(
            zfs::parse_list(
                "tank/a\t/var/lib/postgresql/16\ton\tyes\ntank/b\t/var/lib/postgresql/16\ton\tno\ntank/c\t/elsewhere\ton\tyes\ntank/d\t/elsewhere\ton\tyes\n",
            )
            .unwrap(),
        );
        let report = check(&layout);
        assert_eq!(
            kinds(&report),
            [Kind::SharedMountpoint, Kind::DatasetNotMounted]
        );
        assert!(report.findings[0].detail.contains("mounted now: tank/a"));
        assert!(report.findings[1].detail.contains("tank/b"));
    }

    #[test]
    fn dataset_not_mounted_at_pgdata() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.zfs =
            ZfsState::Listed(zfs::parse_list("tank/pg\t/var/lib/postgresql/16\ton\tno\n").unwrap());
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::DatasetNotMounted]);
        assert!(report.findings[0].fix.contains("zfs mount tank/pg"));
    }

    #[test]
    fn require_mount_missing_names_what_is_underneath() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.require_mount = Some(RequireMount {
            dataset: Some("tank/pg".to_owned()),
            fstype: None,
            mountpoint: None,
        });
        layout.pgdata_mount = Some(27);
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::MountMissing]);
        assert!(
            report.findings[0]
                .detail
                .contains("/dev/vda (ext4) mounted at /"),
            "{}",
            report.findings[0].detail
        );
        layout.pgdata_exists = false;
        assert!(check(&layout).findings[0].detail.contains("does not exist"));
    }

    /// Issue 10.8: PGDATA is a directory on a dataset mounted above it (/var/lib/postgresql).
    #[test]
    fn require_mount_above_pgdata() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / /var/lib/postgresql rw - zfs tank/pg rw\n";
        let mut layout = layout(text);
        layout.require_mount = Some(RequireMount {
            dataset: Some("tank/pg".to_owned()),
            fstype: None,
            mountpoint: Some("/var/lib/postgresql".into()),
        });
        layout.pgdata_mount = Some(40);
        assert!(check(&layout).findings.is_empty());
        // Not there yet: PGDATA may be created inside it.
        layout.pgdata_exists = false;
        assert!(check(&layout).findings.is_empty());
        // The dataset did not mount: PGDATA's nearest mount is the root filesystem.
        layout.pgdata_mount = Some(27);
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::MountMissing]);
        assert!(
            report.findings[0].detail.contains(
                "must be mounted at /var/lib/postgresql (PGDATA /var/lib/postgresql/16 is a directory on it), but PGDATA /var/lib/postgresql/16 is on /dev/vda (ext4) mounted at /"
            ),
            "{}",
            report.findings[0].detail
        );
    }

    #[test]
    fn require_fstype_matches_fuse_variant() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 0:50 / /var/lib/postgresql/16 rw - fuse.zfs tank/pg rw\n";
        let mut layout = layout(text);
        layout.require_mount = Some(RequireMount {
            dataset: None,
            fstype: Some("zfs".to_owned()),
            mountpoint: None,
        });
        layout.pgdata_mount = Some(40);
        assert!(check(&layout).findings.is_empty());
        layout.require_mount = Some(RequireMount {
            dataset: None,
            fstype: Some("xfs".to_owned()),
            mountpoint: None,
        });
        assert_eq!(kinds(&check(&layout)), [Kind::MountMismatch]);
    }

    #[test]
    fn marker_on_pgdata_filesystem() {
        // A bind mount of PGDATA's filesystem at the marker's directory: same device.
        let text = "\
27 1 254:0 / / rw - ext4 /dev/vda rw
40 27 0:50 / /var/lib/postgresql/16 rw - tmpfs pg rw
41 27 0:50 /sub /var/lib/postgresql-preseed/16 rw - tmpfs pg rw
";
        let mut layout = layout(text);
        layout.pgdata_mount = Some(40);
        layout.receipt_dir_mount = Some(41);
        assert_eq!(kinds(&check(&layout)), [Kind::MarkerOnPgdataFilesystem]);
        // PGDATA is a plain directory on the root filesystem, like the marker: a warning.
        let mut layout = self::layout(text);
        layout.pgdata = "/srv/pg".into();
        layout.pgdata_mount = Some(27);
        layout.receipt_dir_mount = Some(27);
        let report = check(&layout);
        assert!(report.findings.is_empty());
        assert_eq!(report.warnings.len(), 1);
    }

    /// Inside a unit with ProtectSystem=strict, systemd bind-mounts each ReadWritePaths= entry
    /// onto itself; PGDATA on the root filesystem then looks like a mount point.
    #[test]
    fn systemd_self_binds_are_not_a_dedicated_filesystem() {
        let text = "\
27 1 254:0 / / ro - ext4 /dev/vda rw
60 27 254:0 /var/lib/postgresql/16 /var/lib/postgresql/16 rw - ext4 /dev/vda rw
61 27 254:0 /var/lib/postgresql-preseed/16 /var/lib/postgresql-preseed/16 rw - ext4 /dev/vda rw
";
        let mut layout = layout(text);
        layout.pgdata_mount = Some(60);
        layout.receipt_dir_mount = Some(61);
        let report = check(&layout);
        assert!(report.findings.is_empty(), "{report:?}");
        assert_eq!(report.warnings.len(), 1);
    }

    #[test]
    fn marker_symlink_inside_and_unwritable() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.receipt = "/var/lib/postgresql/16/.preseed-completed".into();
        layout.receipt_is_symlink = true;
        layout.receipt_dir_unwritable = Some("permission denied".to_owned());
        assert_eq!(
            kinds(&check(&layout)),
            [
                Kind::MarkerInsidePgdata,
                Kind::MarkerSymlink,
                Kind::MarkerDirUnwritable
            ]
        );
    }

    /// Issue 15.2: a receipt directory others can write or own is a finding; so is a directory
    /// above it that others can write without the sticky bit (/tmp's sticky bit is fine above,
    /// not for the receipt's own directory).
    #[test]
    fn receipt_directory_others_could_write() {
        let dir = |path: &str, uid: u32, mode: u32| DirStat {
            path: path.into(),
            uid,
            user: None,
            mode,
        };
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.receipt = "/tmp/state/receipt.json".into();
        layout.receipt_dirs = vec![
            dir("/tmp/state", 102, 0o755),
            dir("/tmp", 0, 0o1777),
            dir("/", 0, 0o755),
        ];
        assert!(check(&layout).is_clean());
        for (mode, uid) in [(0o775, 102), (0o757, 102), (0o1777, 0), (0o755, 65534)] {
            layout.receipt_dirs[0] = dir("/tmp/state", uid, mode);
            let report = check(&layout);
            assert_eq!(kinds(&report), [Kind::MarkerDirInsecure], "{mode:o} {uid}");
            assert_eq!(report.findings[0].path, "/tmp/state");
        }
        layout.receipt_dirs[0] = dir("/tmp/state", 102, 0o755);
        layout.receipt_dirs[1] = dir("/tmp", 0, 0o777);
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::MarkerDirInsecure]);
        assert_eq!(report.findings[0].path, "/tmp");
        layout.receipt_dirs[1] = dir("/tmp", 1000, 0o755);
        assert_eq!(kinds(&check(&layout)), [Kind::MarkerDirInsecure]);
    }

    #[test]
    fn ownership_is_a_finding_unless_empty_and_fixable() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.pgdata_owner = Some(PgdataOwner {
            uid: 0,
            expected_uid: 102,
            expected_user: "postgres".to_owned(),
            empty: true,
            fixable: true,
        });
        let report = check(&layout);
        assert!(report.findings.is_empty());
        assert_eq!(report.warnings.len(), 1);
        layout.pgdata_owner.as_mut().unwrap().empty = false;
        assert_eq!(kinds(&check(&layout)), [Kind::PgdataOwner]);
    }

    #[test]
    fn unreadable_mount_table_fails_closed() {
        let mut layout = layout("");
        layout.mounts = Err("permission denied".to_owned());
        let report = check(&layout);
        assert_eq!(kinds(&report), [Kind::CheckFailed]);
        assert!(!report.is_clean());
    }

    #[test]
    fn failed_zfs_list_blocks_only_when_zfs_is_involved() {
        let mut layout = layout("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        layout.zfs = ZfsState::Failed("no pools".to_owned());
        let report = check(&layout);
        assert!(report.is_clean());
        // A note, not a warning: it changes nothing, so the text report does not show it.
        assert_eq!(report.notes.len(), 1);
        assert!(report.warnings.is_empty());
        layout.mounts = mountinfo::parse(INCIDENT_MOUNTS).map_err(|e| e.to_string());
        layout.on_layering = OnLayering::Warn;
        let report = check(&layout);
        assert!(report
            .findings
            .iter()
            .any(|f| f.kind == Kind::CheckFailed && f.blocking));
    }
}
