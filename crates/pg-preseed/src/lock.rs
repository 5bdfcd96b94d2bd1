//! One engine at a time: an advisory `flock` on a file beside the receipt (outside PGDATA).
//!
//! The kernel drops the lock when the last descriptor closes, so a crashed engine never leaves a
//! stale lock behind. `run` lets pgBackRest inherit the descriptor: if the engine is killed while
//! pgBackRest still runs, the lock stays held until pgBackRest is gone too.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::fsutil::Owner;

#[derive(Debug)]
pub struct Lock {
    file: Flock<File>,
    /// Another holder had it first and this one waited for it.
    waited: bool,
}

/// The lock is held by someone else and did not come free in time.
#[derive(Debug)]
pub struct Busy {
    pub path: Utf8PathBuf,
    pub holder: String,
    pub waited: Duration,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another pg-preseed holds {} ({}); ",
            self.path,
            if self.holder.is_empty() {
                "holder unknown"
            } else {
                &self.holder
            }
        )?;
        if self.waited.is_zero() {
            write!(f, "not waiting for it (pass --lock-wait to wait)")
        } else {
            write!(f, "gave up after waiting {}s", self.waited.as_secs())
        }
    }
}

impl std::error::Error for Busy {}

impl Lock {
    /// Takes the lock, waiting up to `wait` for a holder to finish. `describe` is recorded in
    /// the file for whoever finds it busy.
    ///
    /// # Errors
    /// [`Busy`] when held elsewhere past `wait`; other errors when the file cannot be opened.
    pub fn acquire(
        path: &Utf8Path,
        wait: Duration,
        describe: &str,
        owner: Owner,
    ) -> anyhow::Result<Lock> {
        let mut file = open(path, owner)?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut locked) => {
                    // Best effort: a read-only descriptor (file made by root, we are not) still
                    // locks, it just cannot say who holds it.
                    let _ = record_holder(&mut locked, describe);
                    return Ok(Lock {
                        file: locked,
                        waited: announced,
                    });
                }
                Err((returned, Errno::EWOULDBLOCK)) => {
                    file = returned;
                    let holder = read_holder(&mut file);
                    if started.elapsed() >= wait {
                        return Err(Busy {
                            path: path.to_owned(),
                            holder,
                            waited: wait,
                        }
                        .into());
                    }
                    if !announced {
                        tracing::warn!(lock = %path, %holder, wait_seconds = wait.as_secs(), "waiting for another pg-preseed to finish");
                        announced = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((_, errno)) => {
                    return Err(anyhow::Error::from(errno))
                        .with_context(|| format!("failed to lock {path}"))
                }
            }
        }
    }

    /// Whether another pg-preseed held the lock first: what it did meanwhile is not in facts
    /// gathered before the wait.
    #[must_use]
    pub fn waited(&self) -> bool {
        self.waited
    }

    /// The descriptor holding the lock (for children that must keep it held).
    #[must_use]
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn open(path: &Utf8Path, owner: Owner) -> anyhow::Result<File> {
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
    };
    match open(true) {
        Ok(file) => {
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(&file, Some(uid), Some(gid))
                    .with_context(|| format!("failed to set the owner of {path}"))?;
            }
            Ok(file)
        }
        Err(error) if error.kind() == ErrorKind::PermissionDenied => {
            open(false).with_context(|| format!("failed to open lock file {path}"))
        }
        Err(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => {
            Err(error).with_context(|| format!("lock file {path} is a symlink; remove it"))
        }
        Err(error) => Err(error).with_context(|| format!("failed to open lock file {path}")),
    }
}

fn record_holder(file: &mut File, describe: &str) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(
        file,
        "pid {} {} since {}",
        std::process::id(),
        describe,
        crate::clock::now_rfc3339()
    )
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file
        .rewind()
        .and_then(|()| file.take(512).read_to_string(&mut text));
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_ones_description() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("r.lock")).unwrap();
        let first = Lock::acquire(&path, Duration::ZERO, "run", None).unwrap();
        let error = Lock::acquire(&path, Duration::from_millis(300), "run", None).unwrap_err();
        let busy = error.downcast_ref::<Busy>().expect("busy");
        assert!(
            busy.holder
                .contains(&format!("pid {} run", std::process::id())),
            "{busy}"
        );
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                Lock::acquire(&path, Duration::from_secs(30), "verify", None).map(|l| l.waited())
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!first.waited());
        drop(first);
        assert!(waiter.join().unwrap().unwrap(), "the second holder waited");
        assert!(!Lock::acquire(&path, Duration::ZERO, "run", None)
            .unwrap()
            .waited());
    }

    #[test]
    fn symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("r.lock")).unwrap();
        std::os::unix::fs::symlink("/tmp", &path).unwrap();
        let error = Lock::acquire(&path, Duration::ZERO, "run", None).unwrap_err();
        assert!(format!("{error:#}").contains("symlink"));
    }
}
