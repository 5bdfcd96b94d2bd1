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
    /// `key=value` settings for postgresql.auto.conf (`--recovery-option`), already quoted for
    /// it: pg-preseed's restore_command and the ones pgbackrest.conf sets, which a
    /// `--recovery-option` on the command line would otherwise drop ([`recovery_options_argv`]).
    pub recovery_options: &'a [String],
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
    for option in restore.recovery_options {
        argv.push(format!("--recovery-option={option}"));
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

/// `help restore recovery-option` with the console at info: pgBackRest then logs its "command
/// begin" line with every effective option, each `recovery-option` value separately (read by
/// [`super::recovery_options`]). Asking costs nothing and touches nothing. A `--recovery-option`
/// on the restore's command line replaces all of pgbackrest.conf's (pgBackRest 2.45), so the
/// engine asks which there are and passes them on beside its own.
#[must_use]
pub fn recovery_options_argv(stanza: &Stanza) -> Vec<String> {
    let mut argv = Vec::new();
    stanza.push(&mut argv);
    argv.push("--log-level-console=info".to_owned());
    argv.push("--log-level-stderr=off".to_owned());
    argv.push("--log-level-file=off".to_owned());
    argv.extend(["help", "restore", "recovery-option"].map(str::to_owned));
    argv
}

/// One `archive-get` of one WAL file from one repository.
#[derive(Debug, Clone)]
pub struct ArchiveGet<'a> {
    pub stanza: &'a Stanza,
    pub repo: u32,
    /// The PGDATA being recovered (pgBackRest reads its pg_control to pick the archive).
    pub pgdata: &'a Utf8Path,
    pub wal: &'a str,
    /// Absolute: pgBackRest only takes a relative one when run inside PGDATA, and the engine
    /// runs its children in "/".
    pub destination: &'a Utf8Path,
}

/// `archive-get` of one file from one repository (`--repo`: asked one at a time, because
/// pgBackRest 2.45 asked about all of them at once answers "not found" when one repository
/// fails and the others do not hold the file). Synchronous (`--no-archive-async`): an
/// asynchronous queue would mix the repositories again. Warnings and errors on stderr, which
/// tell "not there" (exit 1, silent) from a failure.
#[must_use]
pub fn archive_get_argv(get: &ArchiveGet<'_>) -> Vec<String> {
    let mut argv = Vec::new();
    get.stanza.push(&mut argv);
    argv.push(format!("--repo={}", get.repo));
    argv.push(format!("--pg1-path={}", get.pgdata));
    argv.push("--no-archive-async".to_owned());
    argv.push("--log-level-console=off".to_owned());
    argv.push("--log-level-stderr=warn".to_owned());
    argv.push("archive-get".to_owned());
    argv.push(get.wal.to_owned());
    argv.push(get.destination.to_string());
    argv
}

/// How long one `archive-get` waits for the queue to deliver a segment (`--archive-timeout`).
pub const QUEUE_WAIT_SECONDS: u32 = 10;

/// The prefetch queue of [`archive_get_async_argv`].
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a> {
    /// pgBackRest's spool path; the queue is `archive/<stanza>/in` below it.
    pub spool_path: &'a Utf8Path,
    /// `archive-get-queue-max`, bytes.
    pub queue_max: u64,
    /// Processes the asynchronous process fetches with.
    pub process_max: u32,
}

/// `archive-get` of one WAL segment from one repository through pgBackRest's asynchronous
/// queue: the first call forks pgBackRest's `archive-get:async` process, which fetches this
/// segment and the ones after it into the spool with `process_max` processes; later calls move
/// them from there. Its exit status 1 is ambiguous in pgBackRest 2.45 — the segment is not in
/// the archive (the asynchronous process wrote `<segment>.ok`), or `archive-timeout` passed with
/// no answer from it — and a failure it recorded (`<segment>.error`, `global.error`) comes out
/// as an error code below 126, so the caller trusts only exit 0 from it and asks again with
/// [`archive_get_argv`] otherwise. The lock path is private to the queue (`<spool>/lock`): the
/// asynchronous process takes pgBackRest's archive lock of the stanza, the same one an
/// asynchronous `archive-push` on the host holds, and without the lock it is never started.
#[must_use]
pub fn archive_get_async_argv(get: &ArchiveGet<'_>, queue: &Queue<'_>) -> Vec<String> {
    let mut argv = Vec::new();
    get.stanza.push(&mut argv);
    argv.push(format!("--repo={}", get.repo));
    argv.push(format!("--pg1-path={}", get.pgdata));
    argv.push("--archive-async".to_owned());
    argv.push(format!("--spool-path={}", queue.spool_path));
    argv.push(format!("--lock-path={}", queue.spool_path.join("lock")));
    argv.push(format!("--archive-get-queue-max={}", queue.queue_max));
    argv.push(format!("--process-max={}", queue.process_max));
    // How long the call waits for the queue before it gives up (pgBackRest's default, a minute,
    // per segment, when the queue falls behind): the direct ask follows at once.
    argv.push(format!("--archive-timeout={QUEUE_WAIT_SECONDS}"));
    argv.push("--log-level-console=off".to_owned());
    argv.push("--log-level-stderr=warn".to_owned());
    argv.push("archive-get".to_owned());
    argv.push(get.wal.to_owned());
    argv.push(get.destination.to_string());
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
            recovery_options: &[],
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
        let options = ["restore_command=/bin/pg-preseed archive-get %f \"%p\"".to_owned()];
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
            recovery_options: &options,
        };
        let argv = restore_argv(&restore);
        for expected in [
            "--set=20240101-000000F",
            "--type=time",
            "--target=2024-01-02 03:04:05+00",
            "--target-action=promote",
            "--archive-mode=off",
            "--tablespace-map-all=/var/tmp/drill/tablespaces",
            "--recovery-option=restore_command=/bin/pg-preseed archive-get %f \"%p\"",
        ] {
            assert!(
                argv.contains(&expected.to_owned()),
                "{expected} in {argv:?}"
            );
        }
        assert!(!argv.iter().any(|a| a.starts_with("--config")));
    }

    #[test]
    fn recovery_options_are_asked_of_pgbackrest_itself() {
        let stanza = Stanza {
            name: "main".to_owned(),
            config: None,
        };
        assert_eq!(
            recovery_options_argv(&stanza),
            [
                "--stanza=main",
                "--log-level-console=info",
                "--log-level-stderr=off",
                "--log-level-file=off",
                "help",
                "restore",
                "recovery-option"
            ]
        );
    }

    #[test]
    fn archive_get_argv_asks_one_repository_synchronously() {
        let stanza = Stanza {
            name: "main".to_owned(),
            config: Some("/etc/pgbackrest/pgbackrest.conf".into()),
        };
        let argv = archive_get_argv(&ArchiveGet {
            stanza: &stanza,
            repo: 2,
            pgdata: Utf8Path::new("/var/lib/postgresql/16"),
            wal: "000000010000000000000003",
            destination: Utf8Path::new("/var/lib/postgresql/16/pg_wal/RECOVERYXLOG"),
        });
        assert_eq!(
            argv,
            [
                "--config=/etc/pgbackrest/pgbackrest.conf",
                "--stanza=main",
                "--repo=2",
                "--pg1-path=/var/lib/postgresql/16",
                "--no-archive-async",
                "--log-level-console=off",
                "--log-level-stderr=warn",
                "archive-get",
                "000000010000000000000003",
                "/var/lib/postgresql/16/pg_wal/RECOVERYXLOG"
            ]
        );
    }

    #[test]
    fn archive_get_async_argv_asks_one_repository_through_a_private_queue() {
        let stanza = Stanza {
            name: "main".to_owned(),
            config: None,
        };
        let argv = archive_get_async_argv(
            &ArchiveGet {
                stanza: &stanza,
                repo: 1,
                pgdata: Utf8Path::new("/var/lib/postgresql/16"),
                wal: "000000010000000000000003",
                destination: Utf8Path::new("/var/lib/postgresql/16/pg_wal/RECOVERYXLOG"),
            },
            &Queue {
                spool_path: Utf8Path::new("/var/spool/pgbackrest"),
                queue_max: 256 << 20,
                process_max: 2,
            },
        );
        assert_eq!(
            argv,
            [
                "--stanza=main",
                "--repo=1",
                "--pg1-path=/var/lib/postgresql/16",
                "--archive-async",
                "--spool-path=/var/spool/pgbackrest",
                "--lock-path=/var/spool/pgbackrest/lock",
                "--archive-get-queue-max=268435456",
                "--process-max=2",
                "--archive-timeout=10",
                "--log-level-console=off",
                "--log-level-stderr=warn",
                "archive-get",
                "000000010000000000000003",
                "/var/lib/postgresql/16/pg_wal/RECOVERYXLOG"
            ]
        );
    }
}
