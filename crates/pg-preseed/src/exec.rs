//! The one place that runs subprocesses.
//!
//! It logs the argv it built (never the environment, which is where secrets live), keeps stderr
//! in the error, tells a non-zero exit, a signal, a timeout and a spawn failure apart, and drops
//! privileges to the PostgreSQL user when the engine runs as root.
//!
//! A child inherits the engine's environment unless the caller gives it an exact one
//! ([`Command::exact_environment`]: the post-restore hook's, see [`crate::post_restore`]).

use std::ffi::{CString, OsString};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ExitStatus, Output};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};

/// How much of a failing command's output an error keeps.
const TAIL_BYTES: usize = 4096;

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

    // The crate's only unsafe code: a pre_exec hook (see `child_setup`).
    #[allow(unsafe_code)]
    fn expression(&self) -> duct::Expression {
        let mut expression = duct::cmd(&self.program, &self.args).dir("/").unchecked();
        if let Some(environment) = &self.exact_env {
            expression = expression.full_env(environment.iter().cloned());
        }
        for (key, value) in &self.env {
            expression = expression.env(key, value);
        }
        if let Some(identity) = &self.run_as {
            expression = expression
                .env("HOME", &identity.home)
                .env("USER", &identity.name)
                .env("LOGNAME", &identity.name);
        }
        let run_as = self.run_as.clone();
        let inherit_fd = self.inherit_fd;
        let own_group = self.own_group;
        expression.before_spawn(move |command| {
            let run_as = run_as.clone();
            if own_group {
                command.process_group(0);
            }
            // SAFETY: the closure only makes async-signal-safe system calls (setgroups, setgid,
            // setuid, prctl, fcntl) on values computed before the fork.
            unsafe {
                command.pre_exec(move || child_setup(run_as.as_ref(), inherit_fd));
            }
            Ok(())
        })
    }

    /// Runs to completion, capturing stdout and stderr, returning them whatever the exit status.
    ///
    /// # Errors
    /// Spawn failures and timeouts; a non-zero exit is returned as a status, not an error.
    pub fn output_any_status(&self, timeout: Option<Duration>) -> Result<Output, ExecError> {
        tracing::debug!(command = %self.display(), "running");
        let expression = self.expression().stdout_capture().stderr_capture();
        let expression = match &self.stdin {
            Some(bytes) => expression.stdin_bytes(bytes.clone()),
            None => expression.stdin_null(),
        };
        let handle = expression
            .start()
            .map_err(|error| self.spawn_error(error))?;
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
        let reader = self
            .expression()
            .stderr_to_stdout()
            .stdin_null()
            .reader()
            .map_err(|error| self.spawn_error(error))?;
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

/// Runs in the child between fork and exec.
#[allow(unsafe_code)]
fn child_setup(run_as: Option<&Identity>, inherit_fd: Option<RawFd>) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    if let Some(identity) = run_as {
        nix::unistd::setgroups(&identity.groups)?;
        nix::unistd::setgid(identity.gid)?;
        nix::unistd::setuid(identity.uid)?;
    }
    // Set after setuid, which clears it: if the engine dies, its children do not go on
    // restoring unsupervised.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
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
        assert_eq!(String::from_utf8_lossy(&inherited.stdout), "yes\n");
        let exact = Command::new(
            "/bin/sh",
            vec![
                "-c".into(),
                "echo \"[$PG_PRESEED_EXEC_TEST_INHERITED][$ONLY]\"; cat".into(),
            ],
        )
        .exact_environment(vec![("ONLY".into(), "this".into())])
        .stdin_bytes(b"from stdin\n".to_vec())
        .output(None)
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&exact.stdout),
            "[][this]\nfrom stdin\n"
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
