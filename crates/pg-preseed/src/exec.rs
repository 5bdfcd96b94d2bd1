//! The one place that runs subprocesses.
//!
//! It logs the argv it built (never the environment, which is where secrets live), keeps stderr
//! in the error, tells a non-zero exit, a signal, a timeout and a spawn failure apart, and drops
//! privileges to the PostgreSQL user when the engine runs as root.
//!
//! A child gets a minimal environment ([`child_environment`]): what programs need to be found
//! and to speak the right language in the right time zone. The repositories' credentials
//! (`PGBACKREST_*` from the unit's EnvironmentFile, and what else pgBackRest reads) go only to
//! the commands marked [`Command::repository_env`]: pgBackRest itself, and the drill's server,
//! whose `restore_command` runs pgBackRest. psql, pg_controldata and zfs never see them.
//!
//! Every child is registered while it runs, so that an interrupted drill can stop them all
//! ([`interrupt_children`]) before it removes what they were writing.
//!
//! The post-restore hook's script gets an exact environment instead
//! ([`Command::exact_environment`], see [`crate::post_restore`]).

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ExitStatus, Output};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Pid, Uid, User};

/// How much of a failing command's output an error keeps.
const TAIL_BYTES: usize = 4096;

/// What every child gets from the engine's environment: where programs are, the language and
/// time zone of messages and times (with NixOS' locale archive and zone directory), a home, a
/// temporary directory, and libpq's password file.
const MINIMAL_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TZDIR",
    "LOCALE_ARCHIVE",
    "LOCPATH",
    "TMPDIR",
    "PGPASSFILE",
];
const MINIMAL_PREFIXES: &[&str] = &["LC_"];

/// What pgBackRest may take from the environment besides: its options and the repositories'
/// credentials (`PGBACKREST_*`), S3 web identity (`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`),
/// and where OpenSSL finds CA certificates.
const REPOSITORY_VARS: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR", "NIX_SSL_CERT_FILE"];
const REPOSITORY_PREFIXES: &[&str] = &["PGBACKREST_", "AWS_"];

/// The environment a child gets from the engine's `environment`: the minimal set, and with
/// `repository` what pgBackRest needs too. Pure.
#[must_use]
pub fn child_environment<I>(environment: I, repository: bool) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let wanted = |name: &OsStr| {
        let Some(name) = name.to_str() else {
            return false;
        };
        let listed = |names: &[&str], prefixes: &[&str]| {
            names.contains(&name) || prefixes.iter().any(|p| name.starts_with(p))
        };
        listed(MINIMAL_VARS, MINIMAL_PREFIXES)
            || (repository && listed(REPOSITORY_VARS, REPOSITORY_PREFIXES))
    };
    environment
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .collect()
}

/// The children running now, and whether the engine was interrupted (then no new one starts).
struct Children {
    interrupted: bool,
    running: Vec<(u32, Signal)>,
}

static CHILDREN: Mutex<Children> = Mutex::new(Children {
    interrupted: false,
    running: Vec::new(),
});

/// Removes its children from the registry when they are done with.
struct Registered(Vec<u32>);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        children.running.retain(|(pid, _)| !self.0.contains(pid));
    }
}

/// Whether [`interrupt_children`] has run.
#[must_use]
pub fn interrupted() -> bool {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .interrupted
}

/// For an interrupted engine: starts no child any more, sends each running one its stop signal
/// (SIGTERM; the drill's server SIGQUIT, PostgreSQL's immediate shutdown), and returns once all
/// have exited, killing any still there after `grace`.
pub fn interrupt_children(grace: Duration) {
    let running = {
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        children.interrupted = true;
        children.running.clone()
    };
    let signal_all = |signal: Option<Signal>| {
        for (pid, stop) in &running {
            let pid = Pid::from_raw(i32::try_from(*pid).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, signal.unwrap_or(*stop));
        }
    };
    let all_gone = |within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            if running.iter().all(|(pid, _)| !alive(*pid)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    signal_all(None);
    if !all_gone(grace) {
        tracing::warn!("children still running after the stop signal; killing them");
        signal_all(Some(Signal::SIGKILL));
        all_gone(Duration::from_secs(10));
    }
}

/// Whether `pid` runs (a zombie has exited; only its parent has not collected it yet).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A user to run children as: resolved once, before any fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub home: PathBuf,
}

impl Identity {
    /// Looks a user up through NSS (so NixOS' and Debian's `postgres` users both resolve).
    ///
    /// # Errors
    /// When the user does not exist or the lookup fails.
    pub fn lookup(name: &str) -> anyhow::Result<Identity> {
        let user = User::from_name(name)
            .map_err(|e| anyhow::anyhow!("failed to look up user {name}: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("user {name} does not exist (postgres.user)"))?;
        let c_name = CString::new(name)?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| anyhow::anyhow!("failed to list the groups of {name}: {e}"))?;
        Ok(Identity {
            name: name.to_owned(),
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.dir,
        })
    }

    /// The identity children should switch to: the configured user when we are root, else none
    /// (we run them as ourselves; the NixOS unit already runs as that user).
    ///
    /// # Errors
    /// When the configured user cannot be resolved.
    pub fn for_children(user: &str) -> anyhow::Result<Option<Identity>> {
        let identity = Identity::lookup(user)?;
        if Uid::effective().is_root() && !identity.uid.is_root() {
            Ok(Some(identity))
        } else {
            Ok(None)
        }
    }
}

#[derive(Debug)]
pub enum ExecError {
    Spawn {
        program: String,
        error: std::io::Error,
    },
    Exited {
        program: String,
        code: i32,
        output: String,
    },
    Signaled {
        program: String,
        signal: i32,
        output: String,
    },
    TimedOut {
        program: String,
        after: Duration,
    },
    Io {
        program: String,
        error: std::io::Error,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_output = |f: &mut fmt::Formatter<'_>, output: &str| {
            let output = output.trim();
            if output.is_empty() {
                Ok(())
            } else {
                write!(f, ":\n{output}")
            }
        };
        match self {
            ExecError::Spawn { program, error } => {
                write!(f, "failed to start {program}: {error}")?;
                if error.kind() == std::io::ErrorKind::NotFound {
                    write!(
                        f,
                        " (is it installed, and is its directory in the config or PATH?)"
                    )?;
                }
                Ok(())
            }
            ExecError::Exited {
                program,
                code,
                output,
            } => {
                write!(f, "{program} exited with status {code}")?;
                with_output(f, output)
            }
            ExecError::Signaled {
                program,
                signal,
                output,
            } => {
                write!(f, "{program} was killed by signal {signal}")?;
                with_output(f, output)
            }
            ExecError::TimedOut { program, after } => {
                write!(
                    f,
                    "{program} did not finish within {}s and was killed",
                    after.as_secs()
                )
            }
            ExecError::Io { program, error } => write!(f, "failed to talk to {program}: {error}"),
        }
    }
}

impl std::error::Error for ExecError {}

impl ExecError {
    /// The same error with the output it keeps passed through `f` (to redact it).
    #[must_use]
    pub fn map_output(self, f: impl Fn(&str) -> String) -> ExecError {
        match self {
            ExecError::Exited {
                program,
                code,
                output,
            } => ExecError::Exited {
                program,
                code,
                output: f(&output),
            },
            ExecError::Signaled {
                program,
                signal,
                output,
            } => ExecError::Signaled {
                program,
                signal,
                output: f(&output),
            },
            other => other,
        }
    }
}

/// A command to run; built by the caller, run by one of the methods below.
#[derive(Debug, Clone)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    run_as: Option<Identity>,
    inherit_fd: Option<RawFd>,
    repository_env: bool,
    stop_signal: Signal,
    /// The child's whole environment, instead of the engine's (the identity's HOME, USER and
    /// LOGNAME and `env` are still set on top).
    exact_env: Option<Vec<(OsString, OsString)>>,
    /// What the child reads on stdin (else nothing: /dev/null).
    stdin: Option<Vec<u8>>,
    /// The child leads a process group of its own, and a timeout kills the whole group (a
    /// script's own children with it).
    own_group: bool,
}

impl Command {
    #[must_use]
    pub fn new(program: impl Into<String>, args: Vec<String>) -> Command {
        Command {
            program: program.into(),
            args,
            env: Vec::new(),
            run_as: None,
            inherit_fd: None,
            repository_env: false,
            stop_signal: Signal::SIGTERM,
            exact_env: None,
            stdin: None,
            own_group: false,
        }
    }

    /// Gives the child exactly `environment` rather than the engine's own.
    #[must_use]
    pub fn exact_environment(mut self, environment: Vec<(OsString, OsString)>) -> Command {
        self.exact_env = Some(environment);
        self
    }

    /// Feeds `bytes` to the child's stdin (for [`Command::output_any_status`] and
    /// [`Command::output`]).
    #[must_use]
    pub fn stdin_bytes(mut self, bytes: Vec<u8>) -> Command {
        self.stdin = Some(bytes);
        self
    }

    /// Starts the child as the leader of a new process group; a timeout kills the group.
    #[must_use]
    pub fn own_process_group(mut self) -> Command {
        self.own_group = true;
        self
    }

    /// Gives the child what pgBackRest needs from the environment, the repositories'
    /// credentials included: for pgBackRest, and for a server whose restore_command runs it.
    #[must_use]
    pub fn repository_env(mut self) -> Command {
        self.repository_env = true;
        self
    }

    /// The signal that stops the child when the engine is interrupted or dies (SIGTERM unless
    /// set).
    #[must_use]
    pub fn stop_signal(mut self, signal: Signal) -> Command {
        self.stop_signal = signal;
        self
    }

    #[must_use]
    pub fn run_as(mut self, identity: Option<&Identity>) -> Command {
        self.run_as = identity.cloned();
        self
    }

    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Command {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Lets the child (and its children) inherit this descriptor, so a lock held through it lives
    /// as long as they do.
    #[must_use]
    pub fn inherit_fd(mut self, fd: RawFd) -> Command {
        self.inherit_fd = Some(fd);
        self
    }

    /// The command line, for logs: program and arguments only.
    #[must_use]
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(|arg| {
                if arg.is_empty() || arg.contains(char::is_whitespace) {
                    format!("'{arg}'")
                } else {
                    arg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The child's whole environment: [`child_environment`] of ours, the identity it runs as,
    /// and what the caller set.
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut environment = match &self.exact_env {
            Some(exact) => exact.clone(),
            None => child_environment(std::env::vars_os(), self.repository_env),
        };
        let mut set = |key: &str, value: OsString| {
            environment.retain(|(name, _)| name != key);
            environment.push((key.into(), value));
        };
        if let Some(identity) = &self.run_as {
            set("HOME", identity.home.clone().into_os_string());
            set("USER", identity.name.clone().into());
            set("LOGNAME", identity.name.clone().into());
        }
        for (key, value) in &self.env {
            set(key, value.into());
        }
        environment
    }

    // The crate's only unsafe code: a pre_exec hook (see `child_setup`).
    #[allow(unsafe_code)]
    fn expression(&self) -> duct::Expression {
        let expression = duct::cmd(&self.program, &self.args)
            .dir("/")
            .unchecked()
            .full_env(self.environment());
        let run_as = self.run_as.clone();
        let inherit_fd = self.inherit_fd;
        let death_signal = self.stop_signal;
        let own_group = self.own_group;
        expression.before_spawn(move |command| {
            let run_as = run_as.clone();
            if own_group {
                command.process_group(0);
            }
            // SAFETY: the closure only makes async-signal-safe system calls (setgroups, setgid,
            // setuid, prctl, fcntl) on values computed before the fork.
            unsafe {
                command.pre_exec(move || child_setup(run_as.as_ref(), inherit_fd, death_signal));
            }
            Ok(())
        })
    }

    /// Starts the child through `start`, registered (see [`interrupt_children`]) until the
    /// returned guard is dropped. Refused once the engine was interrupted.
    fn launch<T>(
        &self,
        start: impl FnOnce(duct::Expression) -> std::io::Result<T>,
        pids: impl FnOnce(&T) -> Vec<u32>,
    ) -> Result<(T, Registered), ExecError> {
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        if children.interrupted {
            return Err(self.spawn_error(std::io::Error::other(
                "interrupted: no new process is started",
            )));
        }
        let started = start(self.expression()).map_err(|error| self.spawn_error(error))?;
        let pids = pids(&started);
        children
            .running
            .extend(pids.iter().map(|pid| (*pid, self.stop_signal)));
        Ok((started, Registered(pids)))
    }

    /// Starts the child in the background, its stdout and stderr going to `output`.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn spawn(&self, output: File) -> Result<Background, ExecError> {
        tracing::info!(command = %self.display(), "starting");
        let (handle, registered) = self.launch(
            |expression| {
                // duct applies the outer redirection first: stdout to the file, then stderr
                // to where stdout now goes.
                expression
                    .stderr_to_stdout()
                    .stdout_file(output)
                    .stdin_null()
                    .start()
            },
            duct::Handle::pids,
        )?;
        Ok(Background {
            handle,
            program: self.program.clone(),
            _registered: registered,
        })
    }

    /// Runs to completion, capturing stdout and stderr, returning them whatever the exit status.
    ///
    /// # Errors
    /// Spawn failures and timeouts; a non-zero exit is returned as a status, not an error.
    pub fn output_any_status(&self, timeout: Option<Duration>) -> Result<Output, ExecError> {
        tracing::debug!(command = %self.display(), "running");
        let stdin = self.stdin.clone();
        let (handle, _registered) = self.launch(
            |expression| {
                let expression = expression.stdout_capture().stderr_capture();
                match stdin {
                    Some(bytes) => expression.stdin_bytes(bytes),
                    None => expression.stdin_null(),
                }
                .start()
            },
            duct::Handle::pids,
        )?;
        let Some(timeout) = timeout else {
            return handle.into_output().map_err(|error| self.io_error(error));
        };
        // Wait on another thread so the answer comes the moment the child exits, and the
        // deadline is still kept.
        let handle = std::sync::Arc::new(handle);
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = std::sync::Arc::clone(&handle);
        std::thread::spawn(move || {
            let _ = sender.send(waiter.wait().cloned());
        });
        if let Ok(result) = receiver.recv_timeout(timeout) {
            result.map_err(|error| self.io_error(error))
        } else {
            // A child stuck on a dead NFS mount may not even die; do not wait for it.
            if self.own_group {
                for pid in handle.pids() {
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = handle.kill();
            Err(ExecError::TimedOut {
                program: self.program.clone(),
                after: timeout,
            })
        }
    }

    /// Runs to completion; a non-zero exit or a signal is an error carrying stderr.
    ///
    /// # Errors
    /// See [`ExecError`].
    pub fn output(&self, timeout: Option<Duration>) -> Result<Output, ExecError> {
        let output = self.output_any_status(timeout)?;
        self.check(output.status, &String::from_utf8_lossy(&output.stderr))?;
        Ok(output)
    }

    /// Runs with stderr merged into stdout, handing each line to `on_line` as it arrives.
    ///
    /// # Errors
    /// See [`ExecError`]; the error keeps the last lines of output.
    pub fn stream(&self, on_line: &mut dyn FnMut(&str)) -> Result<(), ExecError> {
        tracing::info!(command = %self.display(), "running");
        let (reader, _registered) = self.launch(
            |expression| expression.stderr_to_stdout().stdin_null().reader(),
            duct::ReaderHandle::pids,
        )?;
        let mut lines = BufReader::new(&reader);
        let mut tail = Tail::default();
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match lines.read_until(b'\n', &mut buffer) {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\n', '\r']);
                    tail.push(line);
                    on_line(line);
                }
                Err(error) => return Err(self.io_error(error)),
            }
        }
        let status = reader
            .try_wait()
            .map_err(|error| self.io_error(error))?
            .map(|output| output.status)
            .ok_or_else(|| {
                self.io_error(std::io::Error::other("output ended before the process did"))
            })?;
        self.check(status, &tail.text())
    }

    fn check(&self, status: ExitStatus, output: &str) -> Result<(), ExecError> {
        if status.success() {
            return Ok(());
        }
        let output = tail_of(output);
        match (status.code(), status.signal()) {
            (Some(code), _) => Err(ExecError::Exited {
                program: self.program.clone(),
                code,
                output,
            }),
            (None, Some(signal)) => Err(ExecError::Signaled {
                program: self.program.clone(),
                signal,
                output,
            }),
            (None, None) => Err(ExecError::Exited {
                program: self.program.clone(),
                code: -1,
                output,
            }),
        }
    }

    fn spawn_error(&self, error: std::io::Error) -> ExecError {
        ExecError::Spawn {
            program: self.program.clone(),
            error,
        }
    }

    fn io_error(&self, error: std::io::Error) -> ExecError {
        ExecError::Io {
            program: self.program.clone(),
            error,
        }
    }
}

/// A child running in the background ([`Command::spawn`]): the drill's server.
#[derive(Debug)]
pub struct Background {
    handle: duct::Handle,
    program: String,
    _registered: Registered,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Registered({:?})", self.0)
    }
}

impl Background {
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.handle.pids().first().copied()
    }

    /// How it ended, if it has.
    ///
    /// # Errors
    /// When it cannot be waited for.
    pub fn exited(&self) -> Result<Option<ExitStatus>, ExecError> {
        self.handle
            .try_wait()
            .map(|output| output.map(|o| o.status))
            .map_err(|error| ExecError::Io {
                program: self.program.clone(),
                error,
            })
    }

    /// Sends `signal` and waits up to `grace` for the child to exit, then kills it.
    ///
    /// # Errors
    /// When it cannot be signalled or waited for.
    pub fn stop(&self, signal: Signal, grace: Duration) -> Result<ExitStatus, ExecError> {
        if let Some(status) = self.exited()? {
            return Ok(status);
        }
        if let Some(pid) = self.pid() {
            let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, signal);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(program = %self.program, "did not stop in time; killing it");
        let io = |error| ExecError::Io {
            program: self.program.clone(),
            error,
        };
        self.handle.kill().map_err(io)?;
        self.handle.wait().map(|output| output.status).map_err(io)
    }
}

/// Runs in the child between fork and exec.
#[allow(unsafe_code)]
fn child_setup(
    run_as: Option<&Identity>,
    inherit_fd: Option<RawFd>,
    death_signal: Signal,
) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    if let Some(identity) = run_as {
        nix::unistd::setgroups(&identity.groups)?;
        nix::unistd::setgid(identity.gid)?;
        nix::unistd::setuid(identity.uid)?;
    }
    // Set after setuid, which clears it: if the engine dies, its children do not go on
    // restoring unsupervised (and the drill's server does not go on running).
    nix::sys::prctl::set_pdeathsig(death_signal)?;
    if let Some(fd) = inherit_fd {
        // SAFETY: the descriptor belongs to the parent's lock file and stays open across fork.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    Ok(())
}

/// The last few kilobytes of output, cut at a line boundary.
fn tail_of(output: &str) -> String {
    if output.len() <= TAIL_BYTES {
        return output.to_owned();
    }
    let mut start = output.len() - TAIL_BYTES;
    while !output.is_char_boundary(start) {
        start += 1;
    }
    let cut = &output[start..];
    cut.find('\n').map_or(cut, |n| &cut[n + 1..]).to_owned()
}

#[derive(Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&mut self, line: &str) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_owned());
        while self.bytes > TAIL_BYTES && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }

    fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn exit_codes_signals_and_spawn_failures_are_told_apart() {
        let ok = Command::new("sh", vec!["-c".into(), "echo out; echo err >&2".into()])
            .output(None)
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "out\n");

        let exited = Command::new("sh", vec!["-c".into(), "echo bad >&2; exit 3".into()])
            .output(None)
            .unwrap_err();
        assert!(
            matches!(&exited, ExecError::Exited { code: 3, output, .. } if output.contains("bad")),
            "{exited}"
        );

        let signaled = Command::new("sh", vec!["-c".into(), "kill -9 $$".into()])
            .output(None)
            .unwrap_err();
        assert!(
            matches!(signaled, ExecError::Signaled { signal: 9, .. }),
            "{signaled}"
        );

        let missing = Command::new("/nonexistent/pg-preseed-test", vec![])
            .output(None)
            .unwrap_err();
        assert!(matches!(missing, ExecError::Spawn { .. }));
        assert!(missing.to_string().contains("is it installed"));
    }

    #[test]
    fn timeout_kills_the_child() {
        let started = Instant::now();
        let error = Command::new("sleep", vec!["30".into()])
            .output(Some(Duration::from_millis(200)))
            .unwrap_err();
        assert!(matches!(error, ExecError::TimedOut { .. }));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// The post-restore hook's script: its own children die with it at the timeout.
    #[test]
    fn timeout_of_a_process_group_kills_its_children_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let error = Command::new("sh", vec!["-c".into(), script])
            .own_process_group()
            .output(Some(Duration::from_millis(500)))
            .unwrap_err();
        assert!(matches!(error, ExecError::TimedOut { .. }));
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let running = state
                .rfind(')')
                .and_then(|end| state[end + 1..].split_whitespace().next())
                .is_some_and(|s| s != "Z");
            if running {
                std::thread::sleep(Duration::from_millis(10));
            }
            !running
        });
        assert!(gone, "the script's child {child} outlived the timeout");
    }

    #[test]
    fn exact_environment_and_stdin() {
        std::env::set_var("PG_PRESEED_EXEC_TEST_INHERITED", "yes");
        let inherited = Command::new(
            "sh",
            vec![
                "-c".into(),
                "echo \"$PG_PRESEED_EXEC_TEST_INHERITED\"".into(),
            ],
        )
        .output(None)
        .unwrap();
        // The minimal environment leaves the engine's own variables out.
        assert_eq!(String::from_utf8_lossy(&inherited.stdout), "\n");
        let exact = Command::new(
            "/bin/sh",
            vec![
                "-c".into(),
                "echo \"[$PG_PRESEED_EXEC_TEST_INHERITED][$ONLY]\"; cat".into(),
            ],
        )
        .exact_environment(vec![
            ("ONLY".into(), "this".into()),
            ("PG_PRESEED_EXEC_TEST_INHERITED".into(), "given".into()),
        ])
        .stdin_bytes(b"from stdin\n".to_vec())
        .output(None)
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&exact.stdout),
            "[given][this]\nfrom stdin\n"
        );
    }

    #[test]
    fn stream_delivers_lines_in_order_and_keeps_the_tail() {
        let mut seen = Vec::new();
        let error = Command::new(
            "sh",
            vec![
                "-c".into(),
                "echo one; echo two >&2; echo three; exit 4".into(),
            ],
        )
        .stream(&mut |line| seen.push(line.to_owned()))
        .unwrap_err();
        assert_eq!(seen, ["one", "two", "three"]);
        assert!(
            matches!(&error, ExecError::Exited { code: 4, output, .. } if output.ends_with("three"))
        );
    }

    /// Issue 15.4: children get a minimal environment; the repositories' credentials only when
    /// marked.
    #[test]
    fn children_get_a_minimal_environment() {
        let engine: Vec<(OsString, OsString)> = [
            ("PATH", "/run/current-system/sw/bin"),
            ("LANG", "en_US.UTF-8"),
            ("LC_MESSAGES", "C"),
            (
                "LOCALE_ARCHIVE",
                "/nix/store/x-glibc-locales/lib/locale/locale-archive",
            ),
            ("PGBACKREST_REPO1_S3_KEY_SECRET", "secret"),
            ("PGBACKREST_CONFIG", "/etc/pgbackrest/pgbackrest.conf"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/token"),
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca.pem"),
            ("PGPASSWORD", "secret too"),
            ("INVOCATION_ID", "1234"),
            ("PG_PRESEED_CONFIG", "/etc/pg-preseed/config.json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let names = |repository| {
            child_environment(engine.clone(), repository)
                .into_iter()
                .map(|(k, _)| k.into_string().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(false),
            ["PATH", "LANG", "LC_MESSAGES", "LOCALE_ARCHIVE"]
        );
        assert_eq!(
            names(true),
            [
                "PATH",
                "LANG",
                "LC_MESSAGES",
                "LOCALE_ARCHIVE",
                "PGBACKREST_REPO1_S3_KEY_SECRET",
                "PGBACKREST_CONFIG",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "SSL_CERT_FILE"
            ]
        );
    }

    #[test]
    fn a_child_sees_only_what_it_is_given() {
        let output = Command::new("sh", vec!["-c".into(), "env".into()])
            .env("PGCONNECT_TIMEOUT", "10")
            .output(None)
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("PGCONNECT_TIMEOUT=10"), "{text}");
        for line in text.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(
                MINIMAL_VARS.contains(&name)
                    || name.starts_with("LC_")
                    || ["PGCONNECT_TIMEOUT", "PWD", "SHLVL", "_"].contains(&name),
                "{line}"
            );
        }
    }

    #[test]
    fn background_output_goes_to_the_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        let child = Command::new("sh", vec!["-c".into(), "echo out; echo err >&2".into()])
            .spawn(file)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.exited().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("out") && text.contains("err"), "{text:?}");
    }

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let command = Command::new(
            "pgbackrest",
            vec!["--target=2024-01-01 00:00".into(), "restore".into()],
        );
        assert_eq!(
            command.display(),
            "pgbackrest '--target=2024-01-01 00:00' restore"
        );
    }

    #[test]
    fn tail_keeps_the_end_on_a_line_boundary() {
        let long: String = (0..2000).fold(String::new(), |mut s, i| {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!("line {i}\n"));
            s
        });
        let tail = tail_of(&long);
        assert!(tail.len() <= TAIL_BYTES);
        assert!(tail.starts_with("line "));
        assert!(tail.ends_with("line 1999\n"));
    }
}
