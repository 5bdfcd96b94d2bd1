//! What every command needs to reach the system, resolved once when it starts: the validated
//! config, the files beside the receipt, the PostgreSQL user, where PostgreSQL's programs are, and
//! the stanza options every pgBackRest call starts with.

use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::Uid;

use crate::config::{Config, ConfigError, ConfigIssue, MAX_CONFIG_BYTES};
use crate::exec::{Command, Identity};
use crate::files::Files;
use crate::fsutil::{self, Owner};
use crate::pgbackrest::Stanza;
use crate::postgres::Tools;

#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    pub config_path: Utf8PathBuf,
    pub files: Files,
    /// The configured PostgreSQL user, resolved.
    pub pg_user: Identity,
    /// Who children run as: the PostgreSQL user when we are root, else ourselves.
    pub children: Option<Identity>,
    pub tools: Tools,
    /// `--config` (when set) and `--stanza`: what every pgBackRest argv starts with.
    pub stanza: Stanza,
    /// This host's name, for the receipt and the claim.
    pub host: String,
}

impl Context {
    /// Reads and validates the config at `config_path`, then resolves what it names.
    ///
    /// # Errors
    /// [`ConfigError`] for a config that cannot be used; others when the PostgreSQL user does
    /// not exist.
    pub fn load(config_path: &Utf8Path) -> anyhow::Result<Context> {
        let config = load_config(config_path)?;
        Context::new(config, config_path.to_owned())
    }

    /// # Errors
    /// When the PostgreSQL user does not exist.
    pub fn new(config: Config, config_path: Utf8PathBuf) -> anyhow::Result<Context> {
        let pg_user = Identity::lookup(&config.postgres.user)?;
        let children = Identity::for_children(&config.postgres.user)?;
        let files = Files::new(config.receipt_path())
            .trusting(pg_user.uid.as_raw())
            .with_runtime_dir(&config.runtime_dir);
        let tools = Tools::locate(config.postgres.bin_dir.as_deref(), config.postgres.major);
        let stanza = Stanza {
            name: config.pgbackrest.stanza.clone(),
            config: config.pgbackrest.config.clone(),
        };
        Ok(Context {
            config,
            config_path,
            files,
            pg_user,
            children,
            tools,
            stanza,
            host: hostname(),
        })
    }

    /// Owner for files and directories we create: the PostgreSQL user when we are root (so the
    /// verify unit, running as that user, can replace them).
    #[must_use]
    pub fn owner(&self) -> Owner {
        Uid::effective()
            .is_root()
            .then_some((self.pg_user.uid, self.pg_user.gid))
    }

    /// A pgBackRest call (`pgbackrest.bin`, else `pgbackrest` in PATH) with `argv`, run as the
    /// PostgreSQL user when we are root, with the repositories' credentials from the
    /// environment (the only program besides the drill's server that gets them).
    #[must_use]
    pub fn pgbackrest(&self, argv: Vec<String>) -> Command {
        let program = self
            .config
            .pgbackrest
            .bin
            .as_ref()
            .map_or_else(|| "pgbackrest".to_owned(), ToString::to_string);
        Command::new(program, argv)
            .run_as(self.children.as_ref())
            .repository_env()
    }
}

/// The host name, as receipts and claims record it.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Reads and validates a config file.
///
/// # Errors
/// [`ConfigError`] for a missing, unreadable, oversized or invalid file.
pub fn load_config(path: &Utf8Path) -> Result<Config, ConfigError> {
    let fail = |message: String| ConfigError {
        source_name: path.to_string(),
        issues: vec![ConfigIssue {
            key: String::new(),
            message,
        }],
    };
    // Followed: NixOS's /etc/pg-preseed/config.json is a symlink into the store.
    let bytes = fsutil::read_named(path, MAX_CONFIG_BYTES)
        .map_err(|e| fail(format!("{e:#}")))?
        .ok_or_else(|| fail(format!("{path} does not exist (pass --config FILE)")))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".to_owned()))?;
    Config::parse(&text, path.as_str())
}
