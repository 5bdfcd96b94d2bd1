//! Small filesystem primitives with the guarantees the safety invariants need.
//!
//! What the engine creates or changes as root in a directory another user can write (the
//! receipt's directory belongs to the PostgreSQL user) is reached through descriptors: opened
//! without following a symlink, examined with `fstat`, and changed with `fchown`/`fchmod` on that
//! same descriptor, so that what was checked is what is changed.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use anyhow::{bail, Context};
use camino::{Utf8Path, Utf8PathBuf};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

/// Owner to give files and directories we create (when running as root for another user).
pub type Owner = Option<(Uid, Gid)>;

/// What a non-regular file is, for messages.
#[must_use]
pub fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "a regular file"
    }
}

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
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode))
            .with_context(|| format!("failed to set the mode of {temp}"))?;
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
/// When it is a symlink or not a regular file, larger than `limit`, or unreadable.
pub fn read_nofollow(path: &Utf8Path, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(read_regular(path, limit)?.map(|(bytes, _)| bytes))
}

/// As [`read_nofollow`], with the file's metadata from the descriptor it was read through (its
/// owner and link count are those of the bytes returned, not of whatever is at the path later).
///
/// Opened with `O_NONBLOCK` so that a FIFO (or a device) is refused at once instead of waiting
/// for a writer; only a regular file is read.
///
/// # Errors
/// When it is a symlink or not a regular file, larger than `limit`, or unreadable.
pub fn read_regular(
    path: &Utf8Path,
    limit: u64,
) -> anyhow::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    read_regular_with(path, limit, nix::libc::O_NOFOLLOW)
}

/// Reads a small regular file named by the caller, following symlinks: the config given with
/// `--config`. NixOS publishes `environment.etc` files as symlinks into the Nix store
/// (`/etc/pg-preseed/config.json` -> `/etc/static/…` -> `/nix/store/…`), and only whoever can
/// write the directory holding the link can make one, so following it gives nobody anything.
/// What is read must still be a regular file within `limit`, and a FIFO is refused at once.
/// `Ok(None)` when it does not exist.
///
/// # Errors
/// When it is not a regular file, larger than `limit`, or unreadable.
pub fn read_named(path: &Utf8Path, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(read_regular_with(path, limit, 0)?.map(|(bytes, _)| bytes))
}

fn read_regular_with(
    path: &Utf8Path,
    limit: u64,
    follow_flag: nix::libc::c_int,
) -> anyhow::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(follow_flag | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => {
            bail!("{path} is a symlink; refusing to follow it")
        }
        Err(error) => return Err(error).with_context(|| format!("failed to open {path}")),
    };
    let metadata = file
        .metadata()
        .with_context(|| format!("failed to examine {path}"))?;
    if !metadata.file_type().is_file() {
        bail!(
            "{path} is not a regular file (it is {}); refusing to read it",
            kind_of(metadata.file_type())
        );
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {path}"))?;
    if bytes.len() as u64 > limit {
        bail!("{path} is larger than {limit} bytes; it is not a file this tool wrote");
    }
    Ok(Some((bytes, metadata)))
}

/// Why a file of the engine's (the receipt, the claim, the last-run record) read with `metadata`
/// is not to be believed, or `None`: it must be owned by root or one of `trusted` (the
/// PostgreSQL user) and have no other name (a hard link made elsewhere is not a file this tool
/// wrote here).
#[must_use]
pub fn untrusted(metadata: &std::fs::Metadata, trusted: &[u32]) -> Option<String> {
    if metadata.uid() != 0 && !trusted.contains(&metadata.uid()) {
        return Some(format!(
            "it is owned by uid {}{}, not by root or the PostgreSQL user; a file someone else \
             wrote is not trusted",
            metadata.uid(),
            user_name(metadata.uid()).map_or_else(String::new, |name| format!(" ({name})"))
        ));
    }
    if metadata.nlink() > 1 {
        return Some(format!(
            "it has {} names (a hard link); a file linked here from elsewhere is not trusted",
            metadata.nlink()
        ));
    }
    None
}

/// The name of a user id, for messages.
#[must_use]
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
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
/// Each step is taken through descriptors: the directory is made with `mkdirat` in its parent's
/// descriptor, opened again without following a symlink, checked to be the one just made (owned
/// by the engine's user), and only then given its mode and owner with `fchmod`/`fchown`. A
/// component someone else made meanwhile is left as it is (not ours); one replaced by a symlink
/// or by another user's directory between the steps is refused, never followed or chowned.
///
/// # Errors
/// When a component cannot be created, is replaced, or cannot be given to its owner.
pub fn create_dirs(dir: &Utf8Path, mode: u32, owner: Owner) -> anyhow::Result<Vec<Utf8PathBuf>> {
    create_dirs_with(dir, mode, owner, &mut |_| {})
}

/// [`create_dirs`], calling `between` after each `mkdirat` (tests put a race there).
fn create_dirs_with(
    dir: &Utf8Path,
    mode: u32,
    owner: Owner,
    between: &mut dyn FnMut(&Utf8Path),
) -> anyhow::Result<Vec<Utf8PathBuf>> {
    let missing: Vec<&Utf8Path> = dir
        .ancestors()
        .take_while(
            |p| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == ErrorKind::NotFound),
        )
        .collect();
    let Some(outermost) = missing.last() else {
        return Ok(Vec::new());
    };
    let base = parent_of(outermost)?;
    let mut parent: OwnedFd = nix::fcntl::open(
        base.as_std_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("failed to open directory {base}"))?;
    let mut created = Vec::new();
    for path in missing.into_iter().rev() {
        let name = path
            .file_name()
            .with_context(|| format!("{path} has no file name"))?;
        let made_here =
            match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                // Someone else made it meanwhile: not ours, leave its owner alone.
                Err(nix::errno::Errno::EEXIST) => false,
                Err(errno) => {
                    return Err(std::io::Error::from(errno))
                        .with_context(|| format!("failed to create directory {path}"))
                }
            };
        if made_here {
            between(path);
        }
        let fd = nix::fcntl::openat(
            &parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| {
            format!("failed to open directory {path} (replaced by a symlink or a file?)")
        })?;
        if made_here {
            let stat = nix::sys::stat::fstat(&fd)
                .map_err(std::io::Error::from)
                .with_context(|| format!("failed to examine {path}"))?;
            if stat.st_uid != Uid::effective().as_raw() {
                bail!(
                    "{path} was replaced by another user's directory (uid {}) right after it was \
                     created; refusing to use it",
                    stat.st_uid
                );
            }
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
                .map_err(std::io::Error::from)
                .with_context(|| format!("failed to set the mode of {path}"))?;
            if let Some((uid, gid)) = owner {
                nix::unistd::fchown(&fd, Some(uid), Some(gid))
                    .map_err(std::io::Error::from)
                    .with_context(|| format!("failed to set the owner of {path}"))?;
            }
            created.push(path.to_owned());
        }
        parent = fd;
    }
    if !created.is_empty() {
        sync_dir(base)?;
    }
    Ok(created)
}

/// Gives the directory `dir` (not followed if it is a symlink) to `owner` and mode `mode`, through
/// one descriptor: what was opened is what is changed. Returns what it changed, for the log.
///
/// # Errors
/// When `dir` is not a directory, or cannot be opened or changed.
pub fn give_dir(dir: &Utf8Path, mode: u32, owner: Owner) -> anyhow::Result<Vec<String>> {
    let fd = nix::fcntl::open(
        dir.as_std_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("failed to open directory {dir} (a symlink is not followed)"))?;
    let stat = nix::sys::stat::fstat(&fd)
        .map_err(std::io::Error::from)
        .with_context(|| format!("failed to examine {dir}"))?;
    let mut done = Vec::new();
    if let Some((uid, gid)) = owner {
        if stat.st_uid != uid.as_raw() || stat.st_gid != gid.as_raw() {
            nix::unistd::fchown(&fd, Some(uid), Some(gid))
                .map_err(std::io::Error::from)
                .with_context(|| format!("failed to set the owner of {dir}"))?;
            done.push(format!("gave {dir} to uid {uid}"));
        }
    }
    if stat.st_mode & 0o7777 != mode {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
            .map_err(std::io::Error::from)
            .with_context(|| format!("failed to set mode {mode:o} on {dir}"))?;
        done.push(format!("set mode {mode:04o} on {dir}"));
    }
    Ok(done)
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

    /// Tier 4 found it: the module's config is `/etc/pg-preseed/config.json`, which NixOS
    /// makes a symlink into the store, and every unit refused it ("is a symlink").
    #[test]
    fn read_named_follows_a_symlink_and_still_refuses_what_is_not_a_file() {
        let (_guard, dir) = tempdir();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(dir.join("config.json"), dir.join("static")).unwrap();
        std::os::unix::fs::symlink(dir.join("static"), dir.join("link")).unwrap();
        assert_eq!(read_named(&dir.join("link"), 10).unwrap().unwrap(), b"{}");
        assert_eq!(read_named(&dir.join("absent"), 10).unwrap(), None);
        assert!(read_named(&dir.join("link"), 1).is_err());
        std::os::unix::fs::symlink(&dir, dir.join("dirlink")).unwrap();
        let error = read_named(&dir.join("dirlink"), 10).unwrap_err();
        assert!(
            format!("{error:#}").contains("not a regular file"),
            "{error:#}"
        );
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

    /// Issue 15.6: a directory created and then chowned by path could be swapped for a symlink
    /// in between, and the chown (or chmod) would land on the link's target. Each step goes
    /// through a descriptor now: the swapped component is refused, its target untouched.
    #[test]
    fn create_dirs_refuses_a_component_swapped_for_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let (_guard, dir) = tempdir();
        let target = dir.join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = create_dirs_with(&dir.join("a/b"), 0o755, None, &mut |made| {
            if made.file_name() == Some("a") {
                std::fs::rename(made, dir.join("a-moved")).unwrap();
                std::os::unix::fs::symlink(&target, made).unwrap();
            }
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("symlink"), "{error:#}");
        let target_mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
        assert_eq!(target_mode, 0o700, "the link's target was not touched");
        assert!(
            !target.join("b").exists(),
            "nothing was created through the link"
        );
        // Without a race: every directory made, with its mode whatever the umask.
        let created = create_dirs(&dir.join("c/d"), 0o750, None).unwrap();
        assert_eq!(created, [dir.join("c"), dir.join("c/d")]);
        for made in &created {
            assert_eq!(
                std::fs::metadata(made).unwrap().permissions().mode() & 0o7777,
                0o750
            );
        }
    }

    #[test]
    fn give_dir_changes_through_one_descriptor_and_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let (_guard, dir) = tempdir();
        let real = dir.join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("link")).unwrap();
        assert!(give_dir(&dir.join("link"), 0o700, None).is_err());
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert_eq!(give_dir(&real, 0o700, None).unwrap().len(), 1);
        assert!(give_dir(&real, 0o700, None).unwrap().is_empty());
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
