//! The argv of every pgBackRest call the engine makes. Each starts with the [`Stanza`] options;
//! none carries a secret (see the module above).

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{Target, TargetType};

/// The stanza every call names, and the pgBackRest config file that defines it when it is not
/// pgBackRest's default: the options each argv starts with. The context builds it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub name: String,
    pub config: Option<Utf8PathBuf>,
}

impl Stanza {
    fn push(&self, argv: &mut Vec<String>) {
        if let Some(config) = &self.config {
            argv.push(format!("--config={config}"));
        }
        argv.push(format!("--stanza={}", self.name));
    }
}

/// `info --output=json` for one repository. `echo_options` raises stderr logging to debug so the
/// "command begin" line (every effective option, secrets redacted by pgBackRest) can be read.
#[must_use]
pub fn info_argv(stanza: &Stanza, repo: u32, echo_options: bool) -> Vec<String> {
    let mut argv = Vec::new();
    stanza.push(&mut argv);
    argv.push(format!("--repo={repo}"));
    argv.push("--log-level-console=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.push(format!(
        "--log-level-stderr={}",
        if echo_options { "debug" } else { "warn" }
    ));
    argv.push("--output=json".to_owned());
    argv.push("info".to_owned());
    argv
}

#[derive(Debug, Clone)]
pub struct Restore<'a> {
    pub stanza: &'a Stanza,
    pub repo: u32,
    pub pgdata: &'a Utf8Path,
    pub process_max: u32,
    /// Only for resuming a restore the engine started (DESIGN.md invariant 6).
    pub delta: bool,
    pub set: Option<&'a str>,
    pub target: &'a Target,
    /// For drills: the scratch directory. The restored cluster must not archive into the
    /// production repository, and tablespaces must land in the scratch directory, not over the
    /// production ones.
    pub drill: Option<&'a Utf8Path>,
}

/// `restore` with the console at `detail` (one line per file, with the running percentage, for
/// progress) and nothing on stderr (so each message arrives once, in order, on one stream).
#[must_use]
pub fn restore_argv(restore: &Restore<'_>) -> Vec<String> {
    let mut argv = Vec::new();
    restore.stanza.push(&mut argv);
    argv.push(format!("--repo={}", restore.repo));
    // Always the configured PGDATA, whatever pg1-path pgbackrest.conf names.
    argv.push(format!("--pg1-path={}", restore.pgdata));
    argv.push(format!("--process-max={}", restore.process_max));
    if restore.delta {
        argv.push("--delta".to_owned());
    }
    if let Some(set) = restore.set {
        argv.push(format!("--set={set}"));
    }
    if restore.target.kind != TargetType::Default {
        argv.push(format!("--type={}", restore.target.kind.as_str()));
        if let Some(value) = &restore.target.value {
            argv.push(format!("--target={value}"));
        }
        // PostgreSQL's default action at a target is to pause, which would leave the server in
        // recovery forever and `verify` waiting.
        argv.push("--target-action=promote".to_owned());
    }
    if let Some(scratch) = restore.drill {
        argv.push("--archive-mode=off".to_owned());
        argv.push(format!("--tablespace-map-all={scratch}/tablespaces"));
    }
    argv.push("--log-level-console=detail".to_owned());
    argv.push("--log-level-stderr=off".to_owned());
    argv.push("restore".to_owned());
    argv
}

/// `verify` of one backup set: pgBackRest re-reads it and names every file that does not match
/// its checksum (used after a restore failed in a way that smells of corruption).
#[must_use]
pub fn verify_argv(stanza: &Stanza, repo: u32, set: &str) -> Vec<String> {
    let mut argv = Vec::new();
    stanza.push(&mut argv);
    argv.push(format!("--repo={repo}"));
    argv.push(format!("--set={set}"));
    argv.push("--log-level-console=info".to_owned());
    argv.push("--log-level-stderr=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.push("verify".to_owned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_argv_has_no_delta_unless_resuming() {
        let target = Target::default();
        let stanza = Stanza {
            name: "main".to_owned(),
            config: Some("/etc/pgbackrest/pgbackrest.conf".into()),
        };
        let mut restore = Restore {
            stanza: &stanza,
            repo: 2,
            pgdata: Utf8Path::new("/var/lib/postgresql/16"),
            process_max: 4,
            delta: false,
            set: None,
            target: &target,
            drill: None,
        };
        let argv = restore_argv(&restore);
        assert_eq!(
            argv,
            [
                "--config=/etc/pgbackrest/pgbackrest.conf",
                "--stanza=main",
                "--repo=2",
                "--pg1-path=/var/lib/postgresql/16",
                "--process-max=4",
                "--log-level-console=detail",
                "--log-level-stderr=off",
                "restore"
            ]
        );
        restore.delta = true;
        assert!(restore_argv(&restore).contains(&"--delta".to_owned()));
    }

    #[test]
    fn restore_argv_targets_promote() {
        let target = Target {
            kind: TargetType::Time,
            value: Some("2024-01-02 03:04:05+00".to_owned()),
        };
        let stanza = Stanza {
            name: "main".to_owned(),
            config: None,
        };
        let restore = Restore {
            stanza: &stanza,
            repo: 1,
            pgdata: Utf8Path::new("/pg"),
            process_max: 1,
            delta: false,
            set: Some("20240101-000000F"),
            target: &target,
            drill: Some(Utf8Path::new("/var/tmp/drill")),
        };
        let argv = restore_argv(&restore);
        for expected in [
            "--set=20240101-000000F",
            "--type=time",
            "--target=2024-01-02 03:04:05+00",
            "--target-action=promote",
            "--archive-mode=off",
            "--tablespace-map-all=/var/tmp/drill/tablespaces",
        ] {
            assert!(
                argv.contains(&expected.to_owned()),
                "{expected} in {argv:?}"
            );
        }
        assert!(!argv.iter().any(|a| a.starts_with("--config")));
    }
}
