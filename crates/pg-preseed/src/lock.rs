//! One engine at a time: an advisory `flock` on a file beside the receipt (outside PGDATA).
//!
//! The kernel drops the lock when the last descriptor closes, so a crashed engine never leaves a
//! stale lock behind. `run` lets pgBackRest inherit the descriptor: if the engine is killed while
//! pgBackRest still runs, the lock stays held until pgBackRest is gone too.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// A lock file the engine will not use: it did not create it and cannot vouch for it.
#[derive(Debug)]
pub struct Untrusted {
    pub path: Utf8PathBuf,
    pub why: String,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing the lock file {}: {}; remove it (`rm {}`): pg-preseed creates its own",
            self.path, self.why, self.path
        )
    }
}

impl std::error::Error for Untrusted {}

/// Opens the lock file: created exclusively (then it is ours), or else opened without following
/// a symlink and without blocking, and examined through the descriptor before anything is done
/// to it. The engine may run as root and then gives the file to the PostgreSQL user and
/// truncates it: a file planted by someone else (a hard link to /etc/shadow, a FIFO) is refused
/// ([`Untrusted`]), never chowned or truncated.
fn open(path: &Utf8Path, owner: Owner) -> anyhow::Result<File> {
    let flags = nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK;
    let symlink = |error: std::io::Error| {
        if error.raw_os_error() == Some(nix::libc::ELOOP) {
            anyhow::Error::from(Untrusted {
                path: path.to_owned(),
                why: "it is a symlink".to_owned(),
            })
        } else {
            anyhow::Error::from(error).context(format!("failed to open lock file {path}"))
        }
    };
    for _ in 0..3 {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => {
                if let Some((uid, gid)) = owner {
                    nix::unistd::fchown(&file, Some(uid), Some(gid))
                        .with_context(|| format!("failed to set the owner of {path}"))?;
                }
                return Ok(file);
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) if error.kind() == ErrorKind::PermissionDenied => {
                // Not allowed to create in the directory; an existing file may still be locked.
            }
            Err(error) => return Err(symlink(error)),
        }
        let existing = |write: bool| {
            OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(flags)
                .open(path)
        };
        let file = match existing(true) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::PermissionDenied => {
                existing(false).map_err(symlink)?
            }
            // Removed between the two opens: create it again.
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            Err(error) => return Err(symlink(error)),
        };
        check(path, &file, owner)?;
        if let Some((uid, gid)) = owner {
            let metadata = file.metadata()?;
            if metadata.uid() != uid.as_raw() || metadata.gid() != gid.as_raw() {
                nix::unistd::fchown(&file, Some(uid), Some(gid))
                    .with_context(|| format!("failed to set the owner of {path}"))?;
            }
        }
        return Ok(file);
    }
    anyhow::bail!("failed to open lock file {path}: it keeps disappearing")
}

/// An existing lock file is used only when it is a regular file with one name, owned by root or
/// the user the engine's files belong to.
fn check(path: &Utf8Path, file: &File, owner: Owner) -> anyhow::Result<()> {
    let metadata = file
        .metadata()
        .with_context(|| format!("failed to examine lock file {path}"))?;
    let untrusted = |why: String| {
        Err(Untrusted {
            path: path.to_owned(),
            why,
        }
        .into())
    };
    if !metadata.file_type().is_file() {
        return untrusted(format!(
            "it is {}, not a regular file",
            crate::fsutil::kind_of(metadata.file_type())
        ));
    }
    let trusted = owner.map_or_else(nix::unistd::Uid::effective, |(uid, _)| uid);
    if let Some(why) = crate::fsutil::untrusted(&metadata, &[trusted.as_raw()]) {
        return untrusted(why);
    }
    Ok(())
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

    /// Issue 15.6: a hard link planted at the lock path (to a file of root's) is refused, never
    /// truncated; so is a FIFO.
    #[test]
    fn planted_lock_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("r.lock")).unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, b"keep me").unwrap();
        std::fs::hard_link(&precious, &path).unwrap();
        let error = Lock::acquire(&path, Duration::ZERO, "run", None).unwrap_err();
        assert!(error.downcast_ref::<Untrusted>().is_some(), "{error:#}");
        assert!(error.to_string().contains("hard link"), "{error:#}");
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(
            path.as_std_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let error = Lock::acquire(&path, Duration::ZERO, "run", None).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error:#}");
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
