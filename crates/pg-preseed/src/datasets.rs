//! Declared ZFS datasets (`datasets` in the config) against what `zfs list` shows: a pure plan of
//! what `datasets ensure` would create or set, and the conflicts that make it refuse.
//!
//! A conflict is a dataset nobody declared that claims a declared mountpoint (`canmount=on`, or
//! mounted there now) — the incident's leftover `tank/services/postgres` — or a declared dataset
//! whose mountpoint is somewhere else. Neither is fixed automatically: both can hold data.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::DatasetDecl;
use crate::preflight::{Finding, Kind};
use crate::zfs::{CanMount, Dataset, Properties};

/// A change `ensure` makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Change {
    Create {
        name: String,
        mountpoint: String,
        properties: BTreeMap<String, String>,
    },
    Set {
        name: String,
        property: String,
        from: String,
        to: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create {
                name, mountpoint, ..
            } => write!(
                f,
                "create {name} (mountpoint {mountpoint}, not mounted now)"
            ),
            Change::Set {
                name,
                property,
                from,
                to,
            } => write!(f, "set {property}={to} on {name} (was {from})"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Blocking: `ensure` changes nothing while any exists.
    pub findings: Vec<Finding>,
    pub changes: Vec<Change>,
    /// Declared datasets that already match.
    pub in_order: Vec<String>,
}

/// The pool a dataset belongs to (the first component of its name).
#[must_use]
pub fn pool_of(name: &str) -> &str {
    name.split('/').next().unwrap_or_default()
}

/// Whether `zfs list` shows any dataset of `pool`: an imported pool lists at least its root.
#[must_use]
pub fn pool_imported(listed: &[Dataset], pool: &str) -> bool {
    listed.iter().any(|d| pool_of(&d.name) == pool)
}

/// Compares. `extra` are properties to enforce on top of the declared ones, per dataset (such as
/// `overlay=off` on PGDATA's dataset, when this ZFS knows the property).
#[must_use]
pub fn plan(
    declared: &[DatasetDecl],
    listed: &[Dataset],
    current: &Properties,
    extra: &BTreeMap<String, BTreeMap<String, String>>,
) -> Plan {
    let mut plan = Plan::default();
    for decl in declared {
        let mountpoint = decl.mountpoint.as_str();
        for stray in listed.iter().filter(|d| d.name != decl.name) {
            let claims = stray.mountpoint_path() == Some(mountpoint)
                && (stray.canmount == CanMount::On || stray.mounted);
            let declared_elsewhere = declared.iter().any(|other| other.name == stray.name);
            if claims && !declared_elsewhere {
                plan.findings.push(Finding {
                    kind: Kind::SharedMountpoint,
                    path: mountpoint.to_owned(),
                    detail: format!(
                        "dataset {} (not declared here; canmount={}, {}) claims mountpoint {mountpoint}, \
                         which is declared for {}; the two would stack and hide each other",
                        stray.name,
                        match stray.canmount {
                            CanMount::On => "on",
                            CanMount::Off => "off",
                            CanMount::Noauto => "noauto",
                        },
                        if stray.mounted { "mounted" } else { "not mounted" },
                        decl.name
                    ),
                    fix: format!(
                        "check what {0} holds, then `zfs set mountpoint=none {0}` (or `zfs destroy {0}`); \
                         nothing was changed",
                        stray.name
                    ),
                    blocking: true,
                });
            }
        }
        let pool = pool_of(&decl.name);
        if !pool_imported(listed, pool) {
            plan.findings.push(Finding {
                kind: Kind::PoolMissing,
                path: mountpoint.to_owned(),
                detail: format!(
                    "pool {pool} of dataset {} is not imported: `zfs list` shows none of its datasets",
                    decl.name
                ),
                fix: format!(
                    "import it (`zpool import {pool}`; on NixOS `boot.zfs.extraPools = [ \"{pool}\" ]` \
                     imports it at boot) or create it, then start postgresql-preseed-datasets again; \
                     nothing was created"
                ),
                blocking: true,
            });
            continue;
        }
        let mut wanted = decl.properties.clone();
        if let Some(more) = extra.get(&decl.name) {
            for (property, value) in more {
                wanted
                    .entry(property.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        match listed.iter().find(|d| d.name == decl.name) {
            None => plan.changes.push(Change::Create {
                name: decl.name.clone(),
                mountpoint: mountpoint.to_owned(),
                properties: wanted,
            }),
            Some(existing) => {
                if existing.mountpoint_path() != Some(mountpoint) {
                    plan.findings.push(Finding {
                        kind: Kind::MountMismatch,
                        path: mountpoint.to_owned(),
                        detail: format!(
                            "dataset {} exists with mountpoint {}, but is declared at {mountpoint}",
                            decl.name,
                            existing.mountpoint_path().unwrap_or("none/legacy")
                        ),
                        fix: format!(
                            "move it yourself once you know where its data should live: `zfs set mountpoint={mountpoint} {}` (or change the declaration); nothing was changed",
                            decl.name
                        ),
                        blocking: true,
                    });
                    continue;
                }
                let now = current.get(&decl.name);
                let mut drift = false;
                for (property, value) in &wanted {
                    let have = now.and_then(|p| p.get(property));
                    if have.map(String::as_str) != Some(value.as_str()) {
                        drift = true;
                        plan.changes.push(Change::Set {
                            name: decl.name.clone(),
                            property: property.clone(),
                            from: have.cloned().unwrap_or_else(|| "?".to_owned()),
                            to: value.clone(),
                        });
                    }
                }
                if !drift {
                    plan.in_order.push(decl.name.clone());
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::{parse_get, parse_list};

    fn decl(name: &str, mountpoint: &str, properties: &[(&str, &str)]) -> DatasetDecl {
        DatasetDecl {
            name: name.to_owned(),
            mountpoint: mountpoint.into(),
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The incident: the declared dataset and the leftover one on the same mountpoint.
    #[test]
    fn incident_leftover_dataset_is_a_conflict_naming_it() {
        let listed = parse_list(include_str!(
            "../tests/fixtures/zfs-list-incident-zfs-fuse.txt"
        ))
        .unwrap();
        let declared = [decl(
            "tank/services/postgresql",
            "/var/lib/postgresql/16",
            &[],
        )];
        let plan = plan(&declared, &listed, &Properties::new(), &BTreeMap::new());
        assert_eq!(plan.findings.len(), 1);
        assert!(plan.findings[0]
            .detail
            .starts_with("dataset tank/services/postgres (not declared"));
        assert!(plan.findings[0]
            .fix
            .contains("zfs set mountpoint=none tank/services/postgres"));
    }

    #[test]
    fn missing_datasets_are_created_with_their_properties() {
        let listed = parse_list("tank\tnone\ton\tno\n").unwrap();
        let mut extra = BTreeMap::new();
        extra.insert(
            "tank/pg".to_owned(),
            BTreeMap::from([("overlay".to_owned(), "off".to_owned())]),
        );
        let declared = [decl(
            "tank/pg",
            "/var/lib/postgresql/16",
            &[("recordsize", "8K")],
        )];
        let plan = plan(&declared, &listed, &Properties::new(), &extra);
        assert!(plan.findings.is_empty());
        assert_eq!(
            plan.changes,
            [Change::Create {
                name: "tank/pg".to_owned(),
                mountpoint: "/var/lib/postgresql/16".to_owned(),
                properties: BTreeMap::from([
                    ("overlay".to_owned(), "off".to_owned()),
                    ("recordsize".to_owned(), "8K".to_owned())
                ]),
            }]
        );
    }

    #[test]
    fn drifted_properties_are_set_and_matching_ones_left_alone() {
        let listed = parse_list("tank/pg\t/pg\ton\tyes\ntank/wal\t/pg/pg_wal\ton\tyes\n").unwrap();
        let current = parse_get("tank/pg\trecordsize\t128K\ntank/wal\tcompression\tlz4\n").unwrap();
        let declared = [
            decl("tank/pg", "/pg", &[("recordsize", "8K")]),
            decl("tank/wal", "/pg/pg_wal", &[("compression", "lz4")]),
        ];
        let plan = plan(&declared, &listed, &current, &BTreeMap::new());
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            plan.changes[0].to_string(),
            "set recordsize=8K on tank/pg (was 128K)"
        );
        assert_eq!(plan.in_order, ["tank/wal"]);
    }

    /// The pool is not imported (a disk not attached yet, an import that failed): refused with
    /// the pool named, nothing to create.
    #[test]
    fn a_dataset_of_a_pool_that_is_not_imported_is_refused_not_created() {
        let listed = parse_list("rpool\tnone\toff\tno\nrpool/root\t/\ton\tyes\n").unwrap();
        let planned = |listed| {
            plan(
                &[decl("tank/services/postgresql", "/pg", &[])],
                listed,
                &Properties::new(),
                &BTreeMap::new(),
            )
        };
        let refused = planned(&listed);
        assert_eq!(refused.findings.len(), 1);
        assert_eq!(refused.findings[0].kind, Kind::PoolMissing);
        assert!(refused.findings[0]
            .detail
            .contains("pool tank of dataset tank/services/postgresql"));
        assert!(refused.findings[0].fix.contains("zpool import tank"));
        assert!(refused.changes.is_empty());
        // Its pool imported: created.
        let created = planned(&parse_list("tank\tnone\ton\tno\n").unwrap());
        assert!(created.findings.is_empty());
        assert_eq!(created.changes.len(), 1);
    }

    #[test]
    fn declared_dataset_elsewhere_is_not_moved() {
        let listed = parse_list("tank/pg\t/old\ton\tyes\n").unwrap();
        let plan = plan(
            &[decl("tank/pg", "/pg", &[])],
            &listed,
            &Properties::new(),
            &BTreeMap::new(),
        );
        assert_eq!(plan.findings[0].kind, Kind::MountMismatch);
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn noauto_unmounted_namesake_is_not_a_conflict_but_mounted_one_is() {
        let listed = parse_list("tank/pg\t/pg\ton\tyes\ntank/old\t/pg\tnoauto\tno\n").unwrap();
        assert!(plan(
            &[decl("tank/pg", "/pg", &[])],
            &listed,
            &Properties::new(),
            &BTreeMap::new()
        )
        .findings
        .is_empty());
        let listed = parse_list("tank/pg\t/pg\ton\tyes\ntank/old\t/pg\tnoauto\tyes\n").unwrap();
        assert_eq!(
            plan(
                &[decl("tank/pg", "/pg", &[])],
                &listed,
                &Properties::new(),
                &BTreeMap::new()
            )
            .findings
            .len(),
            1
        );
    }
}
