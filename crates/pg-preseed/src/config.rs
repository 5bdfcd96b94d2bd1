//! The configuration contract (DESIGN.md, "Config"): one JSON object, written by the NixOS module
//! or by hand. Parsing is pure (`Config::parse` takes the text); every problem is reported with
//! the dotted key it concerns, and an unknown key is an error, never silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::paths::{is_within, misreadable, normalize_absolute};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pg-preseed/config.json";

/// Upper bound on the config file size: the module writes a few kilobytes; anything near this is
/// not a config.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The longest any duration may be, in the config (`verify.timeout`, `pgbackrest.repo_wait`,
/// `pgbackrest.max_backup_age`) and on the command line (`--timeout`, `--lock-wait`): 366 days.
/// Nothing here waits longer, a maximum backup age beyond a year is `null`, and the bound keeps
/// every deadline (now + duration) and age comparison far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86400);

/// Every key the config accepts, as a dotted path (the keys of a list's items after the list's
/// own, e.g. `datasets.name`): docs/design.md's config reference documents each one
/// (`scripts/check-docs` reads them from `pg-preseed names`), and a test proves the list is
/// serde's own, struct by struct.
pub const KEYS: &[&str] = &[
    "pgdata",
    "marker",
    "postgres",
    "postgres.bin_dir",
    "postgres.major",
    "postgres.user",
    "postgres.port",
    "postgres.socket_dir",
    "mode",
    "require_mount",
    "require_mount.dataset",
    "require_mount.fstype",
    "require_mount.mountpoint",
    "on_layering",
    "on_no_backup",
    "pgbackrest",
    "pgbackrest.stanza",
    "pgbackrest.repos",
    "pgbackrest.repos.number",
    "pgbackrest.repos.name",
    "pgbackrest.set",
    "pgbackrest.target",
    "pgbackrest.target.type",
    "pgbackrest.target.value",
    "pgbackrest.process_max",
    "pgbackrest.config",
    "pgbackrest.bin",
    "pgbackrest.max_backup_age",
    "pgbackrest.repo_wait",
    "pgbackrest.archive_get",
    "pgbackrest.archive_get.async",
    "pgbackrest.archive_get.queue_max",
    "pgbackrest.archive_get.process_max",
    "pgbackrest.archive_get.spool_path",
    "verify",
    "verify.sql",
    "verify.sql.name",
    "verify.sql.sql",
    "verify.sql.expect",
    "verify.database",
    "verify.timeout",
    "datasets",
    "datasets.name",
    "datasets.mountpoint",
    "datasets.properties",
    "metrics",
    "metrics.textfile",
    "post_restore",
    "post_restore.script",
    "post_restore.sql",
    "post_restore.timeout",
    "second_primary",
    "second_primary.mode",
    "second_primary.watch",
    "runtime_dir",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL's data directory.
    pub pgdata: Utf8PathBuf,
    /// The receipt (completion marker). Outside PGDATA; defaults per major version.
    #[serde(default)]
    pub marker: Option<Utf8PathBuf>,
    pub postgres: Postgres,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub require_mount: Option<RequireMount>,
    #[serde(default)]
    pub on_layering: OnLayering,
    #[serde(default)]
    pub on_no_backup: OnNoBackup,
    pub pgbackrest: Pgbackrest,
    #[serde(default)]
    pub verify: Verify,
    #[serde(default)]
    pub datasets: Vec<DatasetDecl>,
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// What runs once after a restore (or a fresh initdb) has been verified, before the receipt
    /// is written ([`crate::post_restore`]). `null`: nothing.
    #[serde(default)]
    pub post_restore: Option<PostRestore>,
    #[serde(default)]
    pub second_primary: SecondPrimary,
    /// Where `datasets ensure|check` records its last run: it runs before the filesystems are
    /// mounted, when the receipt's directory may not be there yet (or be the directory a mount
    /// is about to cover), so its record lives on the runtime filesystem instead.
    #[serde(default = "default_runtime_dir")]
    pub runtime_dir: Utf8PathBuf,
}

fn default_runtime_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(crate::files::DEFAULT_RUNTIME_DIR)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// Directory holding `pg_controldata` and `psql`; `null` means "look them up in PATH".
    #[serde(default)]
    pub bin_dir: Option<Utf8PathBuf>,
    /// The server's major version (15, 16, …): a backup of another major is never restored.
    pub major: u32,
    #[serde(default = "default_user")]
    pub user: String,
    /// Port to connect to for `verify`; default: the one in `postmaster.pid`, else libpq's.
    #[serde(default)]
    pub port: Option<u16>,
    /// Unix socket directory for `verify`; default: the one in `postmaster.pid`, else libpq's.
    #[serde(default)]
    pub socket_dir: Option<Utf8PathBuf>,
}

fn default_user() -> String {
    "postgres".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Restore automatically when the decision says so.
    #[default]
    Restore,
    /// Never restore automatically: refuse and print the command that would.
    Guard,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLayering {
    #[default]
    Fail,
    Warn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoBackup {
    /// Let `initdb` create a new cluster when the repositories are reachable and hold nothing.
    Initdb,
    #[default]
    Fail,
}

/// The filesystem PGDATA must be on: a dataset and/or a filesystem type (both must match when
/// both are given), mounted at PGDATA itself or, with `mountpoint`, at a directory above it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequireMount {
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub fstype: Option<String>,
    /// Where that filesystem is mounted when not at PGDATA (PGDATA is a directory inside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<Utf8PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pgbackrest {
    pub stanza: String,
    /// Repositories in the order they are tried. Default: repo 1 only.
    #[serde(default = "default_repos")]
    pub repos: Vec<RepoRef>,
    /// A backup label to restore instead of the newest backup.
    #[serde(default)]
    pub set: Option<String>,
    #[serde(default)]
    pub target: Target,
    /// Parallel restore processes; default: the number of CPUs.
    #[serde(default)]
    pub process_max: Option<u32>,
    /// pgBackRest's config file; default: pgBackRest's own default.
    #[serde(default)]
    pub config: Option<Utf8PathBuf>,
    /// The pgBackRest executable; default: `pgbackrest` in PATH.
    #[serde(default)]
    pub bin: Option<Utf8PathBuf>,
    /// A backup older than this is not restored automatically.
    #[serde(default, with = "duration_opt")]
    pub max_backup_age: Option<Duration>,
    /// How long to wait for a repository that is not reachable yet (NFS late at boot).
    #[serde(default, with = "duration")]
    pub repo_wait: Duration,
    /// How recovery fetches WAL (`pg-preseed archive-get`).
    #[serde(default)]
    pub archive_get: ArchiveGet,
}

/// How `pg-preseed archive-get` fetches WAL during recovery: by default through pgBackRest's
/// asynchronous archive-get, which keeps a queue of the next segments in a spool directory
/// (fetched by `process_max` processes while PostgreSQL replays), from the first repository
/// recovery consults. Whatever it answers other than "fetched" is asked again synchronously,
/// repository by repository, so "not there" and "cannot ask" are told apart exactly as without
/// it (docs/design.md, "Recovery is proven complete").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveGet {
    /// Prefetch with pgBackRest's asynchronous archive-get. A segment the queue does not hold is
    /// asked directly (`commands::archive_get`): that is what lets recovery catch up with
    /// another server still archiving into the repository.
    #[serde(default = "default_async", rename = "async")]
    pub asynchronous: bool,
    /// The most WAL the queue holds ahead of replay (bytes; `archive-get-queue-max`).
    #[serde(default = "default_queue_max", with = "size")]
    pub queue_max: u64,
    /// Processes fetching into the queue; default: the number of CPUs.
    #[serde(default)]
    pub process_max: Option<u32>,
    /// pgBackRest's spool directory for the queue (`spool-path`; the queue is
    /// `archive/<stanza>/in` below it); PostgreSQL's user must be able to write it.
    #[serde(default = "default_spool_path")]
    pub spool_path: Utf8PathBuf,
}

impl Default for ArchiveGet {
    fn default() -> Self {
        ArchiveGet {
            asynchronous: true,
            queue_max: default_queue_max(),
            process_max: None,
            spool_path: default_spool_path(),
        }
    }
}

/// 16 segments of 16 MiB: measured in docs/performance.md ("Replay").
pub const DEFAULT_ARCHIVE_GET_QUEUE_MAX: u64 = 256 << 20;

/// One WAL segment of PostgreSQL's default size.
pub const MIN_ARCHIVE_GET_QUEUE_MAX: u64 = 16 << 20;

fn default_async() -> bool {
    true
}

fn default_queue_max() -> u64 {
    DEFAULT_ARCHIVE_GET_QUEUE_MAX
}

/// pgBackRest's own default spool path.
fn default_spool_path() -> Utf8PathBuf {
    Utf8PathBuf::from("/var/spool/pgbackrest")
}

fn default_repos() -> Vec<RepoRef> {
    vec![RepoRef {
        number: 1,
        name: None,
    }]
}

/// A pgBackRest repository: its number (`repoN`) and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoRef {
    pub number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "repo{} ({name})", self.number),
            None => write!(f, "repo{}", self.number),
        }
    }
}

impl<'de> Deserialize<'de> for RepoRef {
    /// Accepts `2`, `"repo2"`, `"2"` or `{"number": 2, "name": "s3"}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            number: u32,
            #[serde(default)]
            name: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Number(u32),
            Text(String),
            Full(Full),
        }
        match Any::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a repository number (2), \"repo2\", or {\"number\": 2, \"name\": \"…\"}",
            )
        })? {
            Any::Number(number) => Ok(RepoRef { number, name: None }),
            Any::Text(text) => text
                .strip_prefix("repo")
                .unwrap_or(&text)
                .parse()
                .map(|number| RepoRef { number, name: None })
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "\"{text}\" is not a repository: write 2 or \"repo2\""
                    ))
                }),
            Any::Full(full) => Ok(RepoRef {
                number: full.number,
                name: full.name,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// Replay all available WAL.
    #[default]
    Default,
    Immediate,
    Time,
    Lsn,
    Name,
    Xid,
}

impl TargetType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Default => "default",
            TargetType::Immediate => "immediate",
            TargetType::Time => "time",
            TargetType::Lsn => "lsn",
            TargetType::Name => "name",
            TargetType::Xid => "xid",
        }
    }

    /// Whether pgBackRest needs `--target` for this type.
    #[must_use]
    pub fn needs_value(self) -> bool {
        !matches!(self, TargetType::Default | TargetType::Immediate)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(rename = "type", default)]
    pub kind: TargetType,
    #[serde(default)]
    pub value: Option<String>,
}

impl Target {
    /// `time "2026-01-02 03:04:05+00"`, `immediate`, … for messages, `status` and the logs.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.value {
            Some(value) => format!("{} \"{value}\"", self.kind.as_str()),
            None => self.kind.as_str().to_owned(),
        }
    }

    /// Checks a time or LSN value in the form pg-preseed checks against the backups before it
    /// restores (the decision); other kinds cannot be looked up in a repository.
    ///
    /// # Errors
    /// A sentence saying what is wrong with the value.
    pub fn check_value(&self) -> Result<(), String> {
        match (self.kind, self.value.as_deref()) {
            (TargetType::Time, Some(value)) => crate::clock::parse_timestamptz(value).map(|_| ()),
            (TargetType::Lsn, Some(value)) => crate::wal::Lsn::parse(value).map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// SQL checks run by `verify` once PostgreSQL is up.
    #[serde(default)]
    pub sql: Vec<SqlCheck>,
    /// Database the checks connect to.
    #[serde(default = "default_database")]
    pub database: String,
    /// How long `verify` waits for PostgreSQL to accept connections and leave recovery.
    #[serde(default = "default_verify_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            sql: Vec::new(),
            database: default_database(),
            timeout: default_verify_timeout(),
        }
    }
}

fn default_database() -> String {
    "postgres".to_owned()
}

fn default_verify_timeout() -> Duration {
    Duration::from_secs(3600)
}

/// One verification query. It passes when it runs without error and its first value is not
/// false/NULL (or equals `expect` when given). Written as a string or as `{name, sql, expect}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SqlCheck {
    pub name: String,
    pub sql: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

impl<'de> Deserialize<'de> for SqlCheck {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            name: Option<String>,
            sql: String,
            #[serde(default)]
            expect: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Sql(String),
            Full(Full),
        }
        match Any::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected an SQL string or {\"name\": \"…\", \"sql\": \"…\", \"expect\": \"…\"}",
            )
        })? {
            Any::Sql(sql) => Ok(SqlCheck {
                name: sql.clone(),
                sql,
                expect: None,
            }),
            Any::Full(full) => Ok(SqlCheck {
                name: full.name.unwrap_or_else(|| full.sql.clone()),
                sql: full.sql,
                expect: full.expect,
            }),
        }
    }
}

/// A ZFS dataset this host declares (reconciled by `datasets ensure`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatasetDecl {
    pub name: String,
    pub mountpoint: Utf8PathBuf,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Never two primaries on one repository: what a restored server does about another server that
/// still writes the repository it was restored from ([`crate::primaries`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondPrimary {
    #[serde(default)]
    pub mode: SecondPrimaryMode,
    /// How long `verify` keeps watching the repositories after recovery has ended before it lets
    /// the restored server archive.
    #[serde(default = "default_second_primary_watch", with = "duration")]
    pub watch: Duration,
}

impl Default for SecondPrimary {
    fn default() -> Self {
        SecondPrimary {
            mode: SecondPrimaryMode::default(),
            watch: default_second_primary_watch(),
        }
    }
}

/// The default watch: longer than one `archive_timeout` of a minute (PostgreSQL's documentation
/// calls "a minute or so" reasonable; measured in docs/performance.md, "Watching for a second
/// primary"), so a primary that writes anything at all archives at least once while it is
/// watched.
pub const DEFAULT_SECOND_PRIMARY_WATCH: Duration = Duration::from_secs(90);

/// The longest watch accepted: archiving is held while it runs.
pub const MAX_SECOND_PRIMARY_WATCH: Duration = Duration::from_secs(3600);

fn default_second_primary_watch() -> Duration {
    DEFAULT_SECOND_PRIMARY_WATCH
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondPrimaryMode {
    /// Hold archiving after a restore until no other writer was seen; refuse (no receipt,
    /// archiving stays held) when one was.
    #[default]
    Refuse,
    /// The same watch, but another writer is a warning: archiving is released.
    Warn,
    /// No hold, no watch: the restored server archives from its first start.
    Off,
}

impl SecondPrimaryMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SecondPrimaryMode::Refuse => "refuse",
            SecondPrimaryMode::Warn => "warn",
            SecondPrimaryMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// A Prometheus textfile-collector file, written atomically after every command that acts.
    #[serde(default)]
    pub textfile: Option<Utf8PathBuf>,
}

/// The post-restore hook: SQL statements, then a script, run once per verified restore or fresh
/// start ([`crate::post_restore`] says when, how and with what environment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostRestore {
    /// An executable, run as the PostgreSQL user with the receipt's facts in its environment.
    #[serde(default)]
    pub script: Option<Utf8PathBuf>,
    /// Statements psql runs first, in one session on `verify.database`, each in its own
    /// transaction (autocommit), stopping at the first error.
    #[serde(default)]
    pub sql: Vec<String>,
    /// How long the statements and the script may take together.
    #[serde(default = "default_post_restore_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_post_restore_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

/// The longest `post_restore.timeout`: the bound every duration of the config has (366 days).
const MAX_POST_RESTORE_TIMEOUT: Duration = Duration::from_secs(366 * 86400);

/// One problem in a config, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// A config that cannot be used: every issue found, each naming its key (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}", self.source_name)?;
        for issue in &self.issues {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a config. `source_name` (usually the file path) only appears in
    /// messages.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem found, each with its dotted key.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let error = |issues| ConfigError {
            source_name: source_name.to_owned(),
            issues,
        };
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            error(vec![ConfigIssue {
                key,
                message: clean_serde_message(&e.inner().to_string()),
            }])
        })?;
        let issues = config.normalize_and_validate();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(error(issues))
        }
    }

    /// The receipt's path: `marker`, explicit or the per-major default.
    #[must_use]
    pub fn receipt_path(&self) -> &Utf8Path {
        self.marker
            .as_deref()
            .expect("marker is filled in by validation")
    }

    /// The default receipt location for a major version: outside any PGDATA.
    #[must_use]
    pub fn default_marker(major: u32) -> Utf8PathBuf {
        Utf8PathBuf::from(format!("/var/lib/postgresql-preseed/{major}/receipt.json"))
    }

    /// Normalises paths in place and returns every problem found, one section after the other
    /// in the contract's order (`postgres.major` before `marker`, whose default depends on it).
    fn normalize_and_validate(&mut self) -> Vec<ConfigIssue> {
        let mut issues = Issues::default();
        self.check_pgdata(&mut issues);
        self.check_major(&mut issues);
        self.check_marker(&mut issues);
        self.check_postgres(&mut issues);
        self.check_require_mount(&mut issues);
        self.check_pgbackrest(&mut issues);
        self.check_verify(&mut issues);
        self.check_datasets(&mut issues);
        self.check_metrics(&mut issues);
        self.check_post_restore(&mut issues);
        self.check_second_primary(&mut issues);
        issues.absolute("runtime_dir", &mut self.runtime_dir);
        if is_within(&self.runtime_dir, &self.pgdata) {
            issues.push("runtime_dir", "must be outside pgdata".to_owned());
        }
        issues.0
    }

    fn check_pgdata(&mut self, issues: &mut Issues) {
        issues.absolute("pgdata", &mut self.pgdata);
        if self.pgdata == "/" {
            issues.push("pgdata", "must not be the root directory".to_owned());
        }
    }

    fn check_major(&self, issues: &mut Issues) {
        if !(9..=99).contains(&self.postgres.major) {
            issues.push(
                "postgres.major",
                format!(
                    "{} is not a PostgreSQL major version (write e.g. 16)",
                    self.postgres.major
                ),
            );
        }
    }

    /// Fills in the default receipt path, and keeps it out of PGDATA.
    fn check_marker(&mut self, issues: &mut Issues) {
        let mut marker = self
            .marker
            .take()
            .unwrap_or_else(|| Config::default_marker(self.postgres.major));
        issues.absolute("marker", &mut marker);
        if marker.file_name().is_none() || marker == "/" {
            issues.push("marker", "must name a file".to_owned());
        } else if is_within(&marker, &self.pgdata) {
            issues.push(
                "marker",
                format!(
                    "\"{marker}\" is inside pgdata \"{}\": a receipt inside PGDATA is emptied with it \
                     or survives on a hidden filesystem; put it outside, e.g. \"{}\"",
                    self.pgdata,
                    Config::default_marker(self.postgres.major)
                ),
            );
        } else if is_within(&self.pgdata, &marker) {
            issues.push(
                "marker",
                format!("\"{marker}\" is an ancestor of pgdata; it must be a file outside PGDATA"),
            );
        }
        self.marker = Some(marker);
    }

    fn check_postgres(&mut self, issues: &mut Issues) {
        let postgres = &mut self.postgres;
        if let Some(bin_dir) = &mut postgres.bin_dir {
            issues.absolute("postgres.bin_dir", bin_dir);
        }
        if let Some(socket_dir) = &mut postgres.socket_dir {
            issues.absolute("postgres.socket_dir", socket_dir);
        }
        if postgres.user.is_empty() {
            issues.push("postgres.user", "must not be empty".to_owned());
        }
        if postgres.port == Some(0) {
            issues.push("postgres.port", "must be between 1 and 65535".to_owned());
        }
    }

    fn check_require_mount(&mut self, issues: &mut Issues) {
        let pgdata = self.pgdata.clone();
        let Some(require) = &mut self.require_mount else {
            return;
        };
        if let Some(mountpoint) = &mut require.mountpoint {
            issues.absolute("require_mount.mountpoint", mountpoint);
            if !pgdata.starts_with(&*mountpoint) {
                issues.push(
                    "require_mount.mountpoint",
                    format!("{mountpoint} must be PGDATA ({pgdata}) or a directory above it"),
                );
            }
        }
        match (&require.dataset, &require.fstype) {
            (None, None) => issues.push(
                "require_mount",
                "give \"dataset\" or \"fstype\" (or set require_mount to null)".to_owned(),
            ),
            (Some(dataset), _) if !valid_dataset_name(dataset) => issues.push(
                "require_mount.dataset",
                format!("\"{dataset}\" is not a ZFS dataset name (pool/path)"),
            ),
            (_, Some(fstype)) if fstype.is_empty() || fstype.contains(char::is_whitespace) => {
                issues.push(
                    "require_mount.fstype",
                    format!("\"{fstype}\" is not a filesystem type"),
                );
            }
            _ => {}
        }
    }

    fn check_pgbackrest(&mut self, issues: &mut Issues) {
        let pgbackrest = &mut self.pgbackrest;
        if !valid_stanza(&pgbackrest.stanza) {
            issues.push(
                "pgbackrest.stanza",
                format!(
                    "\"{}\" is not a stanza name (letters, digits, '-', '_', '.')",
                    pgbackrest.stanza
                ),
            );
        }
        if pgbackrest.repos.is_empty() {
            issues.push(
                "pgbackrest.repos",
                "list at least one repository, in the order to try them".to_owned(),
            );
        }
        for (index, repo) in pgbackrest.repos.iter().enumerate() {
            if !(1..=256).contains(&repo.number) {
                issues.push(
                    &format!("pgbackrest.repos[{index}]"),
                    format!(
                        "repo{} does not exist: pgBackRest numbers repositories 1 to 256",
                        repo.number
                    ),
                );
            }
            if pgbackrest.repos[..index]
                .iter()
                .any(|earlier| earlier.number == repo.number)
            {
                issues.push(
                    &format!("pgbackrest.repos[{index}]"),
                    format!("repo{} is listed twice", repo.number),
                );
            }
        }
        if let Some(set) = &pgbackrest.set {
            if set.is_empty() || set.contains(char::is_whitespace) {
                issues.push("pgbackrest.set", format!("\"{set}\" is not a backup label"));
            }
        }
        match (
            &pgbackrest.target.value,
            pgbackrest.target.kind.needs_value(),
        ) {
            (None, true) => issues.push(
                "pgbackrest.target.value",
                format!(
                    "target type \"{}\" needs a value",
                    pgbackrest.target.kind.as_str()
                ),
            ),
            (Some(_), false) => issues.push(
                "pgbackrest.target.value",
                format!(
                    "target type \"{}\" takes no value",
                    pgbackrest.target.kind.as_str()
                ),
            ),
            (Some(value), true) if value.trim().is_empty() => {
                issues.push("pgbackrest.target.value", "must not be empty".to_owned());
            }
            (Some(_), true) => {
                // Time and LSN targets are checked against the backups before restoring.
                if let Err(message) = pgbackrest.target.check_value() {
                    issues.push("pgbackrest.target.value", message);
                }
            }
            _ => {}
        }
        if let Some(process_max) = pgbackrest.process_max {
            if !(1..=999).contains(&process_max) {
                issues.push(
                    "pgbackrest.process_max",
                    format!("{process_max} is outside 1..=999 (pgBackRest's range)"),
                );
            }
        }
        if let Some(config) = &mut pgbackrest.config {
            issues.absolute("pgbackrest.config", config);
        }
        if let Some(bin) = &mut pgbackrest.bin {
            issues.absolute("pgbackrest.bin", bin);
            // pgBackRest writes its own path into restore_command unquoted.
            if bin.as_str().contains(' ') {
                issues.push(
                    "pgbackrest.bin",
                    format!("\"{bin}\" holds a space: pgBackRest writes its path into restore_command unquoted"),
                );
            }
        }
        if pgbackrest.max_backup_age == Some(Duration::ZERO) {
            issues.push(
                "pgbackrest.max_backup_age",
                "must be longer than zero (or null for no limit)".to_owned(),
            );
        }
        let archive_get = &mut pgbackrest.archive_get;
        if let Some(process_max) = archive_get.process_max {
            if !(1..=999).contains(&process_max) {
                issues.push(
                    "pgbackrest.archive_get.process_max",
                    format!("{process_max} is outside 1..=999 (pgBackRest's range)"),
                );
            }
        }
        if archive_get.queue_max < MIN_ARCHIVE_GET_QUEUE_MAX {
            issues.push(
                "pgbackrest.archive_get.queue_max",
                format!(
                    "{} bytes is less than one WAL segment (16MiB): the queue would never hold one",
                    archive_get.queue_max
                ),
            );
        }
        issues.absolute(
            "pgbackrest.archive_get.spool_path",
            &mut archive_get.spool_path,
        );
        if archive_get.spool_path == "/" {
            issues.push(
                "pgbackrest.archive_get.spool_path",
                "must not be the root directory".to_owned(),
            );
        } else if is_within(&archive_get.spool_path, &self.pgdata) {
            issues.push(
                "pgbackrest.archive_get.spool_path",
                format!(
                    "{} is inside pgdata {}: the queue must not be part of the cluster",
                    archive_get.spool_path, self.pgdata
                ),
            );
        }
    }

    fn check_verify(&self, issues: &mut Issues) {
        for (index, check) in self.verify.sql.iter().enumerate() {
            if check.sql.trim().is_empty() {
                issues.push(&format!("verify.sql[{index}]"), "empty SQL".to_owned());
            }
        }
        if self.verify.database.is_empty() {
            issues.push("verify.database", "must not be empty".to_owned());
        }
    }

    fn check_datasets(&mut self, issues: &mut Issues) {
        for index in 0..self.datasets.len() {
            let key = format!("datasets[{index}]");
            let (earlier, rest) = self.datasets.split_at_mut(index);
            let dataset = &mut rest[0];
            if !valid_dataset_name(&dataset.name) {
                issues.push(
                    &format!("{key}.name"),
                    format!("\"{}\" is not a ZFS dataset name (pool/path)", dataset.name),
                );
            }
            issues.absolute(&format!("{key}.mountpoint"), &mut dataset.mountpoint);
            for property in dataset.properties.keys() {
                if matches!(property.as_str(), "mountpoint" | "name") {
                    issues.push(
                        &format!("{key}.properties.{property}"),
                        format!("set \"{property}\" as the dataset's own field, not as a property"),
                    );
                }
            }
            if let Some(other) = earlier.iter().find(|d| d.name == dataset.name) {
                issues.push(
                    &format!("{key}.name"),
                    format!("dataset {} is declared twice", other.name),
                );
            } else if let Some(other) = earlier.iter().find(|d| d.mountpoint == dataset.mountpoint)
            {
                issues.push(
                    &format!("{key}.mountpoint"),
                    format!(
                        "{} and {} both claim mountpoint {}: two datasets on one mountpoint stack \
                         and hide each other (the incident this tool exists for)",
                        other.name, dataset.name, dataset.mountpoint
                    ),
                );
            }
        }
    }

    fn check_metrics(&mut self, issues: &mut Issues) {
        if let Some(Metrics {
            textfile: Some(textfile),
        }) = &mut self.metrics
        {
            issues.absolute("metrics.textfile", textfile);
            if is_within(textfile, &self.pgdata) {
                issues.push("metrics.textfile", "must be outside pgdata".to_owned());
            }
        }
    }

    fn check_second_primary(&self, issues: &mut Issues) {
        if self.second_primary.watch > MAX_SECOND_PRIMARY_WATCH {
            issues.push(
                "second_primary.watch",
                format!(
                    "{} is longer than {}: the restored server's archiving is held while it runs",
                    humantime::format_duration(self.second_primary.watch),
                    humantime::format_duration(MAX_SECOND_PRIMARY_WATCH)
                ),
            );
        }
    }
}

impl Config {
    fn check_post_restore(&mut self, issues: &mut Issues) {
        let Some(hook) = &mut self.post_restore else {
            return;
        };
        if hook.script.is_none() && hook.sql.is_empty() {
            issues.push(
                "post_restore",
                "give \"script\" or \"sql\" (or set post_restore to null)".to_owned(),
            );
        }
        if let Some(script) = &mut hook.script {
            issues.absolute("post_restore.script", script);
            if script.file_name().is_none() {
                issues.push("post_restore.script", "must name a file".to_owned());
            }
        }
        for (index, statement) in hook.sql.iter().enumerate() {
            if statement.trim().is_empty() {
                issues.push(
                    &format!("post_restore.sql[{index}]"),
                    "empty SQL".to_owned(),
                );
            }
        }
        if hook.timeout.is_zero() {
            issues.push(
                "post_restore.timeout",
                "must be longer than zero".to_owned(),
            );
        } else if hook.timeout > MAX_POST_RESTORE_TIMEOUT {
            issues.push(
                "post_restore.timeout",
                format!(
                    "is longer than allowed: at most {} ({} seconds)",
                    humantime::format_duration(MAX_POST_RESTORE_TIMEOUT),
                    MAX_POST_RESTORE_TIMEOUT.as_secs()
                ),
            );
        }
    }
}

/// The problems found so far, in the order they were found.
#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, key: &str, message: String) {
        self.0.push(ConfigIssue {
            key: key.to_owned(),
            message,
        });
    }

    /// Normalises `path` in place, or records that it is not absolute or holds a character
    /// that could be misread on its way to a program ([`crate::paths::misreadable`]).
    fn absolute(&mut self, key: &str, path: &mut Utf8PathBuf) {
        if let Some(why) = misreadable(path.as_str()) {
            self.push(key, format!("{:?} {why}", path.as_str()));
            return;
        }
        match normalize_absolute(path) {
            Some(normal) => *path = normal,
            None => self.push(
                key,
                format!("\"{path}\" must be an absolute path without \"..\""),
            ),
        }
    }
}

/// serde's messages for unknown fields list every expected field; keep them, but drop the
/// line/column suffix that `serde_path_to_error` already replaced with a key path.
fn clean_serde_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// pgBackRest stanza names: it rejects anything but these in practice (they become paths).
fn valid_stanza(stanza: &str) -> bool {
    !stanza.is_empty()
        && stanza
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !stanza.starts_with('.')
}

/// OpenZFS dataset names: `pool/a/b`, components of alphanumerics and `-_.: ` (space is legal).
#[must_use]
pub fn valid_dataset_name(name: &str) -> bool {
    name.len() < 256
        && !name.is_empty()
        && name.split('/').all(|component| {
            !component.is_empty()
                && component
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' '))
        })
        && name
            .split('/')
            .next()
            .is_some_and(|pool| pool.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// `duration`, when it is at most [`MAX_DURATION`]; else why not (to follow the value).
///
/// # Errors
/// When it is longer.
pub fn bounded(duration: Duration) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        Err(format!(
            "is longer than allowed: at most {} ({} seconds)",
            humantime::format_duration(MAX_DURATION),
            MAX_DURATION.as_secs()
        ))
    } else {
        Ok(duration)
    }
}

/// Sizes in bytes (`268435456`) or text with a binary unit (`"256MiB"`, `"1GiB"`), written back
/// as bytes.
mod size {
    use super::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }

    pub(super) fn parse(text: &str) -> Result<u64, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            "TiB" => 40,
            _ => return Err(format!("\"{text}\" is not a size: write bytes or e.g. \"256MiB\", \"1GiB\" (units B, KiB, MiB, GiB, TiB)")),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
            .ok_or_else(|| format!("\"{text}\" is not a size: write bytes or e.g. \"256MiB\", \"1GiB\" (units B, KiB, MiB, GiB, TiB)"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a size: bytes (268435456) or text (\"256MiB\")")
        })? {
            Raw::Bytes(bytes) => Ok(bytes),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` signature
    pub fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*bytes)
    }
}

mod duration {
    use super::{Deserialize, Deserializer, Duration, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub(super) fn from_raw(raw: Raw) -> Result<Duration, String> {
        let duration = match &raw {
            Raw::Seconds(seconds) => Duration::from_secs(*seconds),
            Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                format!("\"{text}\" is not a duration ({e}); write seconds or e.g. \"90s\", \"2min\", \"7days\"")
            })?,
        };
        super::bounded(duration).map_err(|why| match raw {
            Raw::Seconds(seconds) => format!("{seconds} seconds {why}"),
            Raw::Text(text) => format!("\"{text}\" {why}"),
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration: seconds (60) or text (\"2min\")")
        })?;
        from_raw(raw).map_err(serde::de::Error::custom)
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` signature
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

mod duration_opt {
    use super::{duration, Deserialize, Deserializer, Duration, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let raw = Option::<duration::Raw>::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration: seconds (60), text (\"7days\") or null")
        })?;
        raw.map(duration::from_raw)
            .transpose()
            .map_err(serde::de::Error::custom)
    }

    #[allow(clippy::ref_option)] // serde's `with` signature
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => duration::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
        "pgdata": "/var/lib/postgresql/16",
        "postgres": {"major": 16},
        "pgbackrest": {"stanza": "main"}
    }"#;

    fn issues(text: &str) -> Vec<ConfigIssue> {
        Config::parse(text, "test.json").unwrap_err().issues
    }

    fn keys(text: &str) -> Vec<String> {
        issues(text).into_iter().map(|i| i.key).collect()
    }

    /// `KEYS` is what the parser accepts (issue 16.8). For each object of a config that has them
    /// all, an unknown key makes serde list the object's fields ("expected one of `a`, `b`"):
    /// those must be exactly the listed keys under that path. The items of `pgbackrest.repos` and
    /// `verify.sql` also take a plain number or string, so serde's error does not list their
    /// fields: there every listed key must be accepted, and an unknown one refused.
    #[test]
    fn keys_are_what_the_parser_accepts() {
        let full = serde_json::json!({
            "pgdata": "/var/lib/postgresql/16",
            "postgres": {"major": 16},
            "require_mount": {"dataset": "tank/pg"},
            "pgbackrest": {"stanza": "main", "target": {"type": "default"}},
            "verify": {},
            "datasets": [{"name": "tank/pg", "mountpoint": "/var/lib/postgresql/16"}],
            "metrics": {},
            "post_restore": {"sql": ["ANALYZE"]},
            "second_primary": {},
        });
        Config::parse(&full.to_string(), "t").expect("the base config is valid");
        let objects: [(&str, &[&str]); 11] = [
            ("", &[]),
            ("postgres", &["postgres"]),
            ("require_mount", &["require_mount"]),
            ("pgbackrest", &["pgbackrest"]),
            ("pgbackrest.target", &["pgbackrest", "target"]),
            ("pgbackrest.archive_get", &["pgbackrest", "archive_get"]),
            ("verify", &["verify"]),
            ("datasets", &["datasets", "0"]),
            ("metrics", &["metrics"]),
            ("post_restore", &["post_restore"]),
            ("second_primary", &["second_primary"]),
        ];
        let under = |prefix: &str| -> Vec<String> {
            KEYS.iter()
                .filter_map(|key| {
                    let rest = if prefix.is_empty() {
                        *key
                    } else {
                        key.strip_prefix(prefix)?.strip_prefix('.')?
                    };
                    (!rest.contains('.')).then(|| rest.to_owned())
                })
                .collect()
        };
        let mut covered = 0;
        for (prefix, pointer) in objects {
            let mut config = full.clone();
            let mut object = &mut config;
            for step in pointer {
                object = match step.parse::<usize>() {
                    Ok(index) => &mut object[index],
                    Err(_) => &mut object[*step],
                };
            }
            object["zzz_unknown"] = serde_json::json!(1);
            let message = issues(&config.to_string())[0].message.clone();
            // "unknown field `zzz_unknown`, expected one of `a`, `b`": the names after the first.
            let mut fields: Vec<String> = message
                .split('`')
                .skip(1)
                .step_by(2)
                .skip(1)
                .map(str::to_owned)
                .collect();
            fields.sort();
            let mut listed = under(prefix);
            listed.sort();
            assert_eq!(listed, fields, "keys under {prefix:?} ({message})");
            covered += listed.len();
        }
        for (prefix, item, without) in [
            (
                "pgbackrest.repos",
                serde_json::json!({"number": 2, "name": "s3"}),
                "name",
            ),
            (
                "verify.sql",
                serde_json::json!({"name": "n", "sql": "SELECT true", "expect": "t"}),
                "expect",
            ),
        ] {
            let listed = under(prefix);
            assert_eq!(
                listed.len(),
                item.as_object().map_or(0, serde_json::Map::len),
                "{prefix}: {listed:?}"
            );
            covered += listed.len();
            let (parent, list) = prefix.split_once('.').expect("a nested list");
            let with = |item: serde_json::Value| {
                let mut config = full.clone();
                config[parent][list] = serde_json::json!([item]);
                Config::parse(&config.to_string(), "t")
            };
            for key in &listed {
                assert!(
                    item.get(key).is_some(),
                    "{prefix}.{key} is not in the test item"
                );
            }
            with(item.clone()).unwrap_or_else(|e| panic!("{prefix}: {e}"));
            let mut unknown = item.clone();
            unknown["zzz_unknown"] = serde_json::json!(1);
            assert!(with(unknown).is_err(), "{prefix} refuses an unknown key");
            let mut fewer = item.clone();
            fewer.as_object_mut().expect("an object").remove(without);
            with(fewer).unwrap_or_else(|e| panic!("{prefix} without {without}: {e}"));
        }
        // Every listed key is a field of one of the objects above: nothing else is listed.
        assert_eq!(covered, KEYS.len());
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let config = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(config.mode, Mode::Restore);
        assert_eq!(config.on_layering, OnLayering::Fail);
        assert_eq!(config.on_no_backup, OnNoBackup::Fail);
        assert_eq!(config.postgres.user, "postgres");
        assert_eq!(
            config.pgbackrest.repos,
            vec![RepoRef {
                number: 1,
                name: None
            }]
        );
        assert_eq!(config.pgbackrest.repo_wait, Duration::ZERO);
        assert_eq!(
            config.receipt_path(),
            "/var/lib/postgresql-preseed/16/receipt.json"
        );
        assert_eq!(config.second_primary.mode, SecondPrimaryMode::Refuse);
        assert_eq!(config.second_primary.watch, DEFAULT_SECOND_PRIMARY_WATCH);
    }

    #[test]
    fn second_primary_modes_and_watch() {
        let with = |section: &str| {
            MINIMAL.replace(
                r#""pgbackrest": {"stanza": "main"}"#,
                &format!(r#""pgbackrest": {{"stanza": "main"}}, "second_primary": {section}"#),
            )
        };
        let config = Config::parse(&with(r#"{"mode": "warn", "watch": "5s"}"#), "t").unwrap();
        assert_eq!(config.second_primary.mode, SecondPrimaryMode::Warn);
        assert_eq!(config.second_primary.watch, Duration::from_secs(5));
        let config = Config::parse(&with(r#"{"mode": "off"}"#), "t").unwrap();
        assert_eq!(config.second_primary.mode, SecondPrimaryMode::Off);
        assert_eq!(config.second_primary.watch, DEFAULT_SECOND_PRIMARY_WATCH);
        assert_eq!(keys(&with(r#"{"mode": "fail"}"#)), ["second_primary.mode"]);
        assert_eq!(keys(&with(r#"{"watch": "2h"}"#)), ["second_primary.watch"]);
        assert_eq!(keys(&with(r#"{"window": 5}"#)), ["second_primary.window"]);
        // What --json prints parses again.
        let config = Config::parse(&with(r#"{"mode": "warn", "watch": 75}"#), "t").unwrap();
        let again = Config::parse(&serde_json::to_string(&config).unwrap(), "t").unwrap();
        assert_eq!(again.second_primary, config.second_primary);
    }

    #[test]
    fn full_config_round_trips() {
        let text = r#"{
            "pgdata": "/var/lib/postgresql/16/",
            "marker": "/var/lib/postgresql-preseed/16.json",
            "postgres": {"bin_dir": "/usr/lib/postgresql/16/bin", "major": 16, "user": "postgres",
                         "port": 5433, "socket_dir": "/run/postgresql"},
            "mode": "guard",
            "require_mount": {"dataset": "tank/services/postgresql"},
            "on_layering": "warn",
            "on_no_backup": "initdb",
            "pgbackrest": {"stanza": "main", "repos": [{"number": 1, "name": "nas"}, "repo2", 3],
                           "set": "20240101-000000F", "target": {"type": "time", "value": "2024-01-02 00:00:00+00"},
                           "process_max": 4, "config": "/etc/pgbackrest/pgbackrest.conf",
                           "max_backup_age": "7days", "repo_wait": 90},
            "verify": {"sql": ["SELECT count(*) > 0 FROM pg_database", {"name": "orders", "sql": "SELECT count(*) FROM orders", "expect": "3"}]},
            "datasets": [{"name": "tank/services/postgresql", "mountpoint": "/var/lib/postgresql/16", "properties": {"recordsize": "8K"}}],
            "metrics": {"textfile": "/var/lib/prometheus-node-exporter/pg-preseed.prom"}
        }"#;
        let config = Config::parse(text, "t").unwrap();
        assert_eq!(config.pgdata, "/var/lib/postgresql/16");
        assert_eq!(config.pgbackrest.repos.len(), 3);
        assert_eq!(config.pgbackrest.repos[0].to_string(), "repo1 (nas)");
        assert_eq!(config.pgbackrest.repos[1].number, 2);
        assert_eq!(config.pgbackrest.repo_wait, Duration::from_secs(90));
        assert_eq!(
            config.pgbackrest.max_backup_age,
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(config.verify.sql[1].expect.as_deref(), Some("3"));
        // What we print back with --json parses again to the same thing.
        let again = Config::parse(&serde_json::to_string(&config).unwrap(), "t").unwrap();
        assert_eq!(again.pgbackrest.repos, config.pgbackrest.repos);
        assert_eq!(
            again.pgbackrest.max_backup_age,
            config.pgbackrest.max_backup_age
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = MINIMAL.replace(r#""stanza": "main""#, r#""stanza": "main", "stanzza": 1"#);
        let found = issues(&text);
        assert_eq!(found[0].key, "pgbackrest.stanzza");
        assert!(
            found[0].message.contains("unknown field `stanzza`"),
            "{found:?}"
        );
        let text = MINIMAL.replace(r#""pgdata""#, r#""pgdatta": "/x", "pgdata""#);
        assert!(issues(&text)[0].message.contains("`pgdatta`"));
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let text = MINIMAL.replace(r#"{"major": 16}"#, r#"{"major": "sixteen"}"#);
        assert_eq!(keys(&text), ["postgres.major"]);
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "repos": [true]"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.repos[0]"]);
    }

    #[test]
    fn missing_required_key_is_reported() {
        let found = issues(r#"{"pgdata": "/x", "pgbackrest": {"stanza": "main"}}"#);
        assert!(
            found[0].message.contains("missing field `postgres`"),
            "{found:?}"
        );
    }

    #[test]
    fn relative_paths_are_rejected_by_key() {
        let text = MINIMAL.replace("\"/var/lib/postgresql/16\"", "\"var/lib/pg\"");
        assert_eq!(keys(&text), ["pgdata"]);
        let text = MINIMAL.replace(
            r#""postgres": {"major": 16}"#,
            r#""postgres": {"major": 16, "bin_dir": "bin"}, "marker": "../m.json""#,
        );
        assert_eq!(keys(&text), ["marker", "postgres.bin_dir"]);
    }

    #[test]
    fn marker_inside_pgdata_is_rejected() {
        let text = MINIMAL.replace(
            r#""postgres""#,
            r#""marker": "/var/lib/postgresql/16/.preseed-completed", "postgres""#,
        );
        let found = issues(&text);
        assert_eq!(found[0].key, "marker");
        assert!(found[0].message.contains("inside pgdata"));
        // A sibling whose name merely starts like pgdata is fine.
        let text = MINIMAL.replace(
            r#""postgres""#,
            r#""marker": "/var/lib/postgresql/16.json", "postgres""#,
        );
        assert!(Config::parse(&text, "t").is_ok());
    }

    #[test]
    fn target_value_must_match_type() {
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "target": {"type": "time"}"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.target.value"]);
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "target": {"type": "immediate", "value": "x"}"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.target.value"]);
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "target": {"type": "sometime"}"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.target.type"]);
        // A time without its UTC offset, an LSN that is not one.
        for target in [
            r#"{"type": "time", "value": "2026-01-02 03:04:05"}"#,
            r#"{"type": "lsn", "value": "16B3748"}"#,
        ] {
            let text = MINIMAL.replace(
                r#""stanza": "main""#,
                &format!(r#""stanza": "main", "target": {target}"#),
            );
            assert_eq!(keys(&text), ["pgbackrest.target.value"], "{target}");
        }
    }

    #[test]
    fn target_values_checked_before_restoring() {
        let target = |kind: TargetType, value: &str| Target {
            kind,
            value: Some(value.to_owned()),
        };
        assert!(target(TargetType::Time, "2026-01-02 03:04:05+00")
            .check_value()
            .is_ok());
        assert!(target(TargetType::Time, "2026-01-02 03:04:05")
            .check_value()
            .is_err());
        assert!(target(TargetType::Lsn, "0/16B3748").check_value().is_ok());
        assert!(target(TargetType::Lsn, "16B3748").check_value().is_err());
        assert!(target(TargetType::Name, "anything").check_value().is_ok());
        assert_eq!(
            target(TargetType::Name, "before b").describe(),
            "name \"before b\""
        );
        assert_eq!(Target::default().describe(), "default");
    }

    #[test]
    fn repos_must_be_distinct_and_in_range() {
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "repos": [1, 0, 1]"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.repos[1]", "pgbackrest.repos[2]"]);
        let text = MINIMAL.replace(r#""stanza": "main""#, r#""stanza": "main", "repos": []"#);
        assert_eq!(keys(&text), ["pgbackrest.repos"]);
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "repos": ["nas"]"#,
        );
        assert_eq!(keys(&text), ["pgbackrest.repos[0]"]);
    }

    #[test]
    fn durations_accept_seconds_and_text() {
        for (raw, secs) in [
            ("30", 30),
            ("\"30s\"", 30),
            ("\"2min\"", 120),
            ("\"1h 30m\"", 5400),
        ] {
            let text = MINIMAL.replace(
                r#""stanza": "main""#,
                &format!(r#""stanza": "main", "repo_wait": {raw}"#),
            );
            assert_eq!(
                Config::parse(&text, "t").unwrap().pgbackrest.repo_wait,
                Duration::from_secs(secs)
            );
        }
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "repo_wait": "soon""#,
        );
        assert_eq!(keys(&text), ["pgbackrest.repo_wait"]);
    }

    /// Issue 15.5: `verify.timeout = 18446744073709551615` passed and then panicked in verify
    /// (now + timeout overflowed). Every duration is bounded by [`MAX_DURATION`], named by key.
    #[test]
    fn durations_are_bounded() {
        for (key, raw) in [
            ("verify", r#"{"timeout": 18446744073709551615}"#),
            ("verify", r#"{"timeout": "367days"}"#),
        ] {
            let text = MINIMAL.replace(
                r#""pgbackrest""#,
                &format!(r#""{key}": {raw}, "pgbackrest""#),
            );
            let found = issues(&text);
            assert_eq!(found[0].key, "verify.timeout", "{found:?}");
            assert!(found[0].message.contains("at most"), "{found:?}");
        }
        for (field, raw) in [
            ("repo_wait", "9223372036854775807"),
            ("max_backup_age", "\"400days\""),
        ] {
            let text = MINIMAL.replace(
                r#""stanza": "main""#,
                &format!(r#""stanza": "main", "{field}": {raw}"#),
            );
            assert_eq!(keys(&text), [format!("pgbackrest.{field}")]);
        }
        let text = MINIMAL.replace(
            r#""pgbackrest""#,
            r#""verify": {"timeout": "366days"}, "pgbackrest""#,
        );
        assert_eq!(
            Config::parse(&text, "t").unwrap().verify.timeout,
            MAX_DURATION
        );
    }

    /// Issue 15.3: a path a shell or PostgreSQL could misread is refused, by key.
    #[test]
    fn misreadable_paths_are_rejected_by_key() {
        let text = MINIMAL.replace("/var/lib/postgresql/16", "/srv/pg$(touch /tmp/x)");
        assert_eq!(keys(&text), ["pgdata"]);
        let text = MINIMAL.replace(
            r#""stanza": "main""#,
            r#""stanza": "main", "bin": "/opt/my tools/pgbackrest", "config": "/etc/pgbackrest/it's.conf""#,
        );
        assert_eq!(keys(&text), ["pgbackrest.config", "pgbackrest.bin"]);
        let text = MINIMAL.replace("/var/lib/postgresql/16", "/var/lib/my postgresql/16");
        assert!(Config::parse(&text, "t").is_ok(), "a space is fine");
    }

    /// Issue 13: the post-restore hook's contract (the module's `postRestore` writes it).
    #[test]
    fn post_restore_hook() {
        let with = |hook: &str| {
            MINIMAL.replace(
                r#""pgbackrest""#,
                &format!(r#""post_restore": {hook}, "pgbackrest""#),
            )
        };
        assert_eq!(Config::parse(MINIMAL, "t").unwrap().post_restore, None);
        assert_eq!(
            Config::parse(&with("null"), "t").unwrap().post_restore,
            None
        );
        let hook = Config::parse(&with(r#"{"script": "/etc/pg-preseed/after-restore"}"#), "t")
            .unwrap()
            .post_restore
            .unwrap();
        assert_eq!(
            hook.script.as_deref(),
            Some(Utf8Path::new("/etc/pg-preseed/after-restore"))
        );
        assert!(hook.sql.is_empty());
        assert_eq!(hook.timeout, Duration::from_secs(30 * 60));
        let hook = Config::parse(
            &with(r#"{"script": null, "sql": ["GRANT SELECT ON t TO r", "ANALYZE"], "timeout": "5min"}"#),
            "t",
        )
        .unwrap()
        .post_restore
        .unwrap();
        assert_eq!(
            (hook.sql.len(), hook.timeout),
            (2, Duration::from_secs(300))
        );
        // What --json prints back parses to the same.
        let config = Config::parse(&with(r#"{"sql": ["ANALYZE"], "timeout": 90}"#), "t").unwrap();
        let again = Config::parse(&serde_json::to_string(&config).unwrap(), "t").unwrap();
        assert_eq!(again.post_restore, config.post_restore);

        for (hook, key) in [
            ("{}", "post_restore"),
            (r#"{"script": null, "sql": []}"#, "post_restore"),
            (r#"{"script": "after-restore"}"#, "post_restore.script"),
            (r#"{"sql": ["ANALYZE", "  "]}"#, "post_restore.sql[1]"),
            (
                r#"{"sql": ["ANALYZE"], "timeout": 0}"#,
                "post_restore.timeout",
            ),
            (
                r#"{"sql": ["ANALYZE"], "timeout": "400days"}"#,
                "post_restore.timeout",
            ),
            (
                r#"{"sql": ["ANALYZE"], "timeout": "soon"}"#,
                "post_restore.timeout",
            ),
            (
                r#"{"sql": ["ANALYZE"], "scriptt": "/x"}"#,
                "post_restore.scriptt",
            ),
            (r#"{"sql": "ANALYZE"}"#, "post_restore.sql"),
        ] {
            assert_eq!(keys(&with(hook)), [key], "{hook}");
        }
    }

    #[test]
    fn two_declared_datasets_on_one_mountpoint_are_rejected() {
        // The incident's two declarations, written as config.
        let text = MINIMAL.replace(
            r#""postgres""#,
            r#""datasets": [
                {"name": "tank/services/postgres", "mountpoint": "/var/lib/postgresql/16"},
                {"name": "tank/services/postgresql", "mountpoint": "/var/lib/postgresql/16/"}],
               "postgres""#,
        );
        let found = issues(&text);
        assert_eq!(found[0].key, "datasets[1].mountpoint");
        assert!(found[0]
            .message
            .contains("tank/services/postgres and tank/services/postgresql"));
    }

    /// Issue 10.8: the filesystem may be mounted above PGDATA, never below or beside it.
    #[test]
    fn require_mount_mountpoint_is_at_or_above_pgdata() {
        let with = |mountpoint: &str| {
            MINIMAL.replace(
                r#""postgres""#,
                &format!(
                    r#""require_mount": {{"dataset": "tank/pg", "mountpoint": "{mountpoint}"}}, "postgres""#
                ),
            )
        };
        let config = Config::parse(&with("/var/lib/postgresql/"), "t").unwrap();
        assert_eq!(
            config.require_mount.unwrap().mountpoint.as_deref(),
            Some(Utf8Path::new("/var/lib/postgresql"))
        );
        assert!(Config::parse(&with("/var/lib/postgresql/16"), "t").is_ok());
        assert_eq!(
            keys(&with("/var/lib/postgresql/16/base")),
            ["require_mount.mountpoint"]
        );
        assert_eq!(keys(&with("/srv")), ["require_mount.mountpoint"]);
        assert_eq!(
            keys(&with("relative")),
            ["require_mount.mountpoint", "require_mount.mountpoint"]
        );
    }

    #[test]
    fn all_issues_are_reported_at_once() {
        let text = r#"{"pgdata": "rel", "marker": "rel2", "postgres": {"major": 3},
                       "pgbackrest": {"stanza": "bad name", "process_max": 0}}"#;
        assert_eq!(
            keys(text),
            [
                "pgdata",
                "postgres.major",
                "marker",
                "pgbackrest.stanza",
                "pgbackrest.process_max"
            ]
        );
    }

    #[test]
    fn archive_get_defaults_and_checks() {
        let config = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(config.pgbackrest.archive_get, ArchiveGet::default());
        assert!(config.pgbackrest.archive_get.asynchronous);
        assert_eq!(config.pgbackrest.archive_get.queue_max, 256 << 20);
        assert_eq!(
            config.pgbackrest.archive_get.spool_path,
            "/var/spool/pgbackrest"
        );
        let with = |section: &str| {
            MINIMAL.replace(
                r#""pgbackrest": {"stanza": "main"}"#,
                &format!(r#""pgbackrest": {{"stanza": "main", "archive_get": {section}}}"#),
            )
        };
        let config = Config::parse(
            &with(r#"{"async": false, "queue_max": "1GiB", "process_max": 3, "spool_path": "/var/spool/pg//q/"}"#),
            "t",
        )
        .unwrap();
        let archive_get = config.pgbackrest.archive_get;
        assert!(!archive_get.asynchronous);
        assert_eq!(archive_get.queue_max, 1 << 30);
        assert_eq!(archive_get.process_max, Some(3));
        assert_eq!(archive_get.spool_path, "/var/spool/pg/q");
        assert_eq!(
            Config::parse(&with(r#"{"queue_max": 33554432}"#), "t")
                .unwrap()
                .pgbackrest
                .archive_get
                .queue_max,
            32 << 20
        );
        for (section, key, needle) in [
            (
                r#"{"queue_max": "1MiB"}"#,
                "pgbackrest.archive_get.queue_max",
                "less than one WAL segment",
            ),
            (
                r#"{"queue_max": "1GB"}"#,
                "pgbackrest.archive_get.queue_max",
                "is not a size",
            ),
            (
                r#"{"queue_max": -1}"#,
                "pgbackrest.archive_get.queue_max",
                "expected a size",
            ),
            (
                r#"{"process_max": 0}"#,
                "pgbackrest.archive_get.process_max",
                "outside 1..=999",
            ),
            (
                r#"{"spool_path": "spool"}"#,
                "pgbackrest.archive_get.spool_path",
                "absolute",
            ),
            (
                r#"{"spool_path": "/var/lib/postgresql/16/spool"}"#,
                "pgbackrest.archive_get.spool_path",
                "inside pgdata",
            ),
            (
                r#"{"spool_path": "/"}"#,
                "pgbackrest.archive_get.spool_path",
                "root directory",
            ),
            (
                r#"{"async": "yes"}"#,
                "pgbackrest.archive_get.async",
                "expected a boolean",
            ),
            (
                r#"{"asynch": true}"#,
                "pgbackrest.archive_get.asynch",
                "unknown field",
            ),
        ] {
            let found = issues(&with(section));
            assert_eq!(found.len(), 1, "{section}: {found:?}");
            assert_eq!(found[0].key, key, "{section}");
            assert!(
                found[0].message.contains(needle),
                "{section}: {}",
                found[0].message
            );
        }
    }

    #[test]
    fn not_json_is_a_config_error() {
        assert_eq!(issues("").len(), 1);
        assert_eq!(issues("{\"pgdata\": ").len(), 1);
        assert_eq!(issues("[]").len(), 1);
    }

    #[test]
    fn dataset_names() {
        assert!(valid_dataset_name("tank/services/postgres"));
        assert!(valid_dataset_name("rpool/my data:v1.2"));
        assert!(!valid_dataset_name("tank//x"));
        assert!(!valid_dataset_name("/tank"));
        assert!(!valid_dataset_name("tank/a@snap"));
        assert!(!valid_dataset_name("1tank"));
    }
}
