//! The drill's scratch copy: the directories it restores into, and the private server it starts
//! there — `postgres` itself, without `pg_ctl` or a shell, cut off from everything outside the
//! copy ([`crate::postgres::private_settings`]). Both go on every way out of the drill: its end,
//! an error, and an interruption by SIGINT or SIGTERM (a drill run by hand and stopped with
//! Ctrl-C, or `kill`), which stops every child the engine started, removes the copy and then
//! ends the process as the signal would have.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::Signal;

use crate::context::Context;
use crate::exec::{self, Background, Command};
use crate::fsutil::{self, Owner};
use crate::postgres::{self, PrivateServer};

/// How long the drill's server and the other children get to stop before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// The drill's directories: `<base>/drill-<pid>` (the copy, its log and pid file) and a private
/// socket directory under /tmp (short, so the socket's path fits the kernel's limit whatever the
/// scratch path, and free of the commas libpq would split a host list at).
#[derive(Debug)]
pub struct Scratch {
    pub dir: Utf8PathBuf,
    pub pgdata: Utf8PathBuf,
    pub socket_dir: Utf8PathBuf,
    pub log: Utf8PathBuf,
    owner: Owner,
    keep: bool,
    interrupt: Option<signal_hook::iterator::Handle>,
}

impl Scratch {
    /// Creates the directories for `owner` (the PostgreSQL user when the engine is root), and
    /// arms the handler that cleans up after SIGINT and SIGTERM. With `keep`, the copy stays
    /// (also when interrupted); the socket directory never does.
    ///
    /// # Errors
    /// When a directory cannot be created or the handler installed.
    pub fn create(base: &Utf8Path, owner: Owner, keep: bool) -> anyhow::Result<Scratch> {
        let dir = base.join(format!("drill-{}", std::process::id()));
        let pgdata = dir.join("pgdata");
        fsutil::create_dirs(&pgdata, 0o700, owner)?;
        let socket_dir = private_socket_dir(owner)?;
        let mut scratch = Scratch {
            log: dir.join("postgresql.log"),
            dir,
            pgdata,
            socket_dir,
            owner,
            keep,
            interrupt: None,
        };
        scratch.interrupt = Some(scratch.on_interrupt()?);
        Ok(scratch)
    }

    /// What is removed when the drill ends or is interrupted.
    fn removable(&self) -> Vec<Utf8PathBuf> {
        let mut paths = vec![self.socket_dir.clone()];
        if !self.keep {
            paths.push(self.dir.clone());
        }
        paths
    }

    fn on_interrupt(&self) -> anyhow::Result<signal_hook::iterator::Handle> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("failed to install the handler for SIGINT and SIGTERM")?;
        let handle = signals.handle();
        let remove = self.removable();
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::warn!(
                    signal,
                    "drill interrupted: stopping its server and pgBackRest, removing its scratch copy"
                );
                exec::interrupt_children(STOP_GRACE);
                for path in &remove {
                    if let Err(error) = std::fs::remove_dir_all(path) {
                        tracing::warn!(path = %path, error = %error, "could not remove it");
                    }
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
            }
        });
        Ok(handle)
    }

    /// Starts `postgres` on the copy, its output to the drill's log, with the repositories'
    /// credentials (its restore_command runs pgBackRest) and nothing else of the engine's
    /// environment.
    ///
    /// # Errors
    /// When the log cannot be created or the server cannot be started.
    pub fn start_server(&self, ctx: &Context, port: u16) -> anyhow::Result<Server> {
        // pgBackRest restores as it found the cluster; a standby's signal file would keep the
        // copy recovering for ever (its primary_conninfo is cleared), a drill wants it promoted.
        let standby = self.pgdata.join("standby.signal");
        if standby.exists() {
            std::fs::remove_file(&standby)
                .with_context(|| format!("failed to remove {standby} from the copy"))?;
        }
        let log = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&self.log)
            .with_context(|| format!("failed to create the drill's log {}", self.log))?;
        if let Some((uid, gid)) = self.owner {
            nix::unistd::fchown(&log, Some(uid), Some(gid))
                .with_context(|| format!("failed to set the owner of {}", self.log))?;
        }
        let pid_file = self.dir.join("postmaster.external.pid");
        let argv = postgres::private_server_argv(&PrivateServer {
            pgdata: &self.pgdata,
            socket_dir: &self.socket_dir,
            port,
            pid_file: &pid_file,
            major: ctx.config.postgres.major,
        });
        let process = Command::new(ctx.tools.program("postgres"), argv)
            .run_as(ctx.children.as_ref())
            .repository_env()
            .stop_signal(Signal::SIGQUIT)
            .spawn(log)
            .with_context(|| format!("the restored copy did not start; its log is {}", self.log))?;
        Ok(Server {
            process,
            pgdata: self.pgdata.clone(),
            log: self.log.clone(),
            keep: self.keep,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(handle) = self.interrupt.take() {
            handle.close();
        }
        if exec::interrupted() {
            // The handler is removing it, after stopping what wrote there.
            return;
        }
        for path in self.removable() {
            if let Err(error) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path, error = %error, "could not remove the drill's directory");
            }
        }
    }
}

/// A fresh directory only `owner` can enter, under /tmp (private to the unit under systemd's
/// PrivateTmp; outside it, /tmp's sticky bit keeps others from replacing it).
fn private_socket_dir(owner: Owner) -> anyhow::Result<Utf8PathBuf> {
    for attempt in 0..100 {
        let dir = Utf8PathBuf::from(format!(
            "/tmp/pg-preseed-drill-{}-{attempt}",
            std::process::id()
        ));
        match nix::unistd::mkdir(
            dir.as_std_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o700),
        ) {
            Ok(()) => {
                fsutil::give_dir(&dir, 0o700, owner)?;
                return Ok(dir);
            }
            Err(nix::errno::Errno::EEXIST) => {}
            Err(errno) => {
                return Err(std::io::Error::from(errno)).with_context(|| {
                    format!("failed to create the drill's socket directory {dir}")
                })
            }
        }
    }
    bail!("failed to create a socket directory for the drill under /tmp")
}

/// The drill's server, stopped when dropped: immediately, or with a fast shutdown when the copy
/// is kept (so it is consistent on disk).
#[derive(Debug)]
pub struct Server {
    process: Background,
    pgdata: Utf8PathBuf,
    log: Utf8PathBuf,
    keep: bool,
}

impl Server {
    /// Waits until the server accepts connections with recovery over (`postmaster.pid` says
    /// `ready`; with `hot_standby` off it does only then), failing as soon as the server exits,
    /// with the end of its log.
    ///
    /// # Errors
    /// When the server exits, or is not ready within `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut logged = Instant::now();
        loop {
            if let Some(status) = self.process.exited()? {
                bail!(
                    "the restored copy's server stopped ({status}) before recovery ended; the end of its log {}:\n{}",
                    self.log,
                    log_tail(&self.log)
                );
            }
            let pid = postgres::read_postmaster_pid(&self.pgdata).ok().flatten();
            if let Some(pid) = pid {
                if Some(pid.pid) == self.process.pid() && pid.status.as_deref() == Some("ready") {
                    return Ok(());
                }
            }
            if started.elapsed() >= timeout {
                bail!(
                    "the restored copy did not finish recovery within {}s; its log is {}",
                    timeout.as_secs(),
                    self.log
                );
            }
            if logged.elapsed() >= Duration::from_secs(30) {
                tracing::info!(
                    elapsed_seconds = started.elapsed().as_secs(),
                    "waiting for the drill's server to finish recovery"
                );
                logged = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if exec::interrupted() {
            return;
        }
        let signal = if self.keep {
            Signal::SIGINT
        } else {
            Signal::SIGQUIT
        };
        if let Err(error) = self.process.stop(signal, STOP_GRACE) {
            tracing::warn!(error = %error, "could not stop the drill's server");
        }
    }
}

/// The last few kilobytes of a log, for an error.
fn log_tail(path: &Utf8Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(length.saturating_sub(4096)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    };
    read().unwrap_or_else(|error| format!("(cannot read it: {error})"))
}
