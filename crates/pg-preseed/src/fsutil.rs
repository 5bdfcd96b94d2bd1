//! Small filesystem primitives with the guarantees the safety invariants need.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use nix::unistd::{Gid, Uid};

/// Owner to give files and directories we create (when running as root for another user).
pub type Owner = Option<(Uid, Gid)>;

/// Writes `bytes` to `path` so that a reader sees either the old file or the new one.
///
/// Guaranteed: the data goes to a temporary file created exclusively (`O_EXCL`, which never
/// follows a symlink) in the same directory, is fsynced, renamed over `path`, and the directory
/// is fsynced, so after `Ok` the new content survives a power loss. A `path` that is a symlink is
/// refused rather than replaced or followed.
/// Not guaranteed: protection against another writer racing on the same path (callers hold the
/// engine's lock), or durability on filesystems that ignore fsync.
///
/// # Errors
/// When `path` is a symlink, its directory is missing or unwritable, or any step fails.
pub fn atomic_write(path: &Utf8Path, bytes: &[u8], mode: u32, owner: Owner) -> anyhow::Result<()> {
    refuse_symlink(path)?;
    let dir = parent_of(path)?;
    let name = path
        .file_name()
        .with_context(|| format!("failed to write {path}: no file name"))?;
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&temp)
            .with_context(|| format!("failed to create temporary file {temp}"))?;
        file.write_all(bytes)
            .with_context(|| format!("failed to write {temp}"))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(&file, Some(uid), Some(gid))
                .with_context(|| format!("failed to set the owner of {temp}"))?;
        }
        file.sync_all()
            .with_context(|| format!("failed to fsync {temp}"))?;
        drop(file);
        std::fs::rename(&temp, path)
            .with_context(|| format!("failed to rename {temp} to {path}"))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Only our own temporary file, never anything else.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Resolves symlinks in the longest existing prefix of `path` and appends the rest.
#[must_use]
pub fn resolve(path: &Utf8Path) -> Utf8PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = ancestor.canonicalize_utf8() {
            let rest = path.strip_prefix(ancestor).unwrap_or(Utf8Path::new(""));
            return if rest.as_str().is_empty() {
                real
            } else {
                real.join(rest)
            };
        }
    }
    path.to_owned()
}

/// Reads a small file without following a symlink at its final component.
/// `Ok(None)` when it does not exist.
///
/// # Errors
/// When it is a symlink, larger than `limit`, or unreadable.
pub fn read_nofollow(path: &Utf8Path, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => {
            bail!("{path} is a symlink; refusing to follow it")
        }
        Err(error) => return Err(error).with_context(|| format!("failed to open {path}")),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {path}"))?;
    if bytes.len() as u64 > limit {
        bail!("{path} is larger than {limit} bytes; it is not a file this tool wrote");
    }
    Ok(Some(bytes))
}

/// Fails when `path` exists and is a symlink.
///
/// # Errors
/// When it is a symlink, or cannot be examined.
pub fn refuse_symlink(path: &Utf8Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            bail!("{path} is a symlink; refusing to write through it (remove the link)")
        }
        Ok(_) => Ok(()),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to examine {path}")),
    }
}

/// Removes a file we own (the receipt, a claim), fsyncing the directory. Symlinks are removed as
/// links, never followed. Missing is fine.
///
/// # Errors
/// When removal fails for another reason.
pub fn remove_file(path: &Utf8Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent_of(path)?)?;
            Ok(true)
        }
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("failed to remove {path}")),
    }
}

/// Creates `dir` and any missing ancestors (mode `mode`), giving each directory created here to
/// `owner`. Returns the directories created, outermost first.
///
/// # Errors
/// When a component cannot be created or given to its owner.
pub fn create_dirs(dir: &Utf8Path, mode: u32, owner: Owner) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let missing: Vec<&Utf8Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    let mut created = Vec::new();
    for path in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {}
            // Someone else made it meanwhile: not ours, leave its owner alone.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("failed to create directory {path}"))
            }
        }
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(path.as_std_path(), Some(uid), Some(gid))
                .with_context(|| format!("failed to set the owner of {path}"))?;
        }
        created.push(path.to_owned());
    }
    if let Some(first) = created.first() {
        sync_dir(parent_of(first)?)?;
    }
    Ok(created)
}

fn parent_of(path: &Utf8Path) -> anyhow::Result<&Utf8Path> {
    path.parent()
        .filter(|p| !p.as_str().is_empty())
        .with_context(|| format!("{path} has no parent directory"))
}

/// fsync a directory so a rename or unlink in it is durable.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to fsync directory {dir}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, path)
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let (_guard, dir) = tempdir();
        let path = dir.join("receipt.json");
        atomic_write(&path, b"one", 0o640, None).unwrap();
        atomic_write(&path, b"two", 0o640, None).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["receipt.json"]);
    }

    #[test]
    fn atomic_write_refuses_a_symlink_and_leaves_its_target_alone() {
        let (_guard, dir) = tempdir();
        let target = dir.join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.join("receipt.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = atomic_write(&link, b"x", 0o640, None).unwrap_err();
        assert!(error.to_string().contains("symlink"), "{error:#}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn atomic_write_into_a_missing_directory_fails_cleanly() {
        let (_guard, dir) = tempdir();
        let error = atomic_write(&dir.join("nope/receipt.json"), b"x", 0o640, None).unwrap_err();
        assert!(format!("{error:#}").contains("failed to create temporary file"));
    }

    #[test]
    fn read_nofollow_cases() {
        let (_guard, dir) = tempdir();
        assert_eq!(read_nofollow(&dir.join("absent"), 10).unwrap(), None);
        std::fs::write(dir.join("small"), b"abc").unwrap();
        assert_eq!(
            read_nofollow(&dir.join("small"), 10).unwrap().unwrap(),
            b"abc"
        );
        assert!(read_nofollow(&dir.join("small"), 2).is_err());
        std::os::unix::fs::symlink(dir.join("small"), dir.join("link")).unwrap();
        let error = read_nofollow(&dir.join("link"), 10).unwrap_err();
        assert!(error.to_string().contains("symlink"));
    }

    /// Issue 15.7: a FIFO at a path read here blocked until someone wrote to it (`check-config`
    /// on a FIFO hung). Only regular files are read, and the answer comes at once.
    #[test]
    fn read_nofollow_refuses_what_is_not_a_regular_file() {
        let (_guard, dir) = tempdir();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(
            fifo.as_std_path(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(read_nofollow(&fifo, 10).map_err(|e| format!("{e:#}")));
        });
        let result = receiver
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("reading a FIFO returns instead of waiting for a writer");
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.contains("not a regular file")),
            "{result:?}"
        );
        let error = read_nofollow(&dir, 10).unwrap_err();
        assert!(
            format!("{error:#}").contains("not a regular file"),
            "{error:#}"
        );
    }

    #[test]
    fn create_dirs_reports_what_it_created() {
        let (_guard, dir) = tempdir();
        let created = create_dirs(&dir.join("a/b/c"), 0o750, None).unwrap();
        assert_eq!(created, [dir.join("a"), dir.join("a/b"), dir.join("a/b/c")]);
        assert!(create_dirs(&dir.join("a/b/c"), 0o750, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn remove_file_is_idempotent_and_removes_links_not_targets() {
        let (_guard, dir) = tempdir();
        std::fs::write(dir.join("t"), b"keep").unwrap();
        std::os::unix::fs::symlink(dir.join("t"), dir.join("l")).unwrap();
        assert!(remove_file(&dir.join("l")).unwrap());
        assert!(!remove_file(&dir.join("l")).unwrap());
        assert_eq!(std::fs::read(dir.join("t")).unwrap(), b"keep");
    }

    #[test]
    fn resolve_keeps_the_missing_tail() {
        let dir = tempfile::tempdir().unwrap();
        let base = Utf8PathBuf::from_path_buf(dir.path().canonicalize().unwrap()).unwrap();
        std::os::unix::fs::symlink(&base, base.join("link")).unwrap();
        assert_eq!(resolve(&base.join("link/a/b")), base.join("a/b"));
        assert_eq!(resolve(&base), base);
    }
}
