//! Real `zfs` commands on zfs-fuse (Debian's package), for the tests that need ZFS datasets:
//! a pool on a sparse file per test, destroyed when dropped.
//!
//! zfs-fuse is OpenZFS's old ancestor: no `-p`, no `-u` on create, no `overlay` property. A
//! dataset created while its mountpoint directory is empty mounts on top of whatever is there,
//! which reproduces the incident's stacked layout.

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::{run_ok, wait_for, Sandbox, ROOT};

/// Starts the zfs-fuse daemon unless one answers already.
pub fn ensure_daemon() {
    crate::require_root();
    fs::create_dir_all(ROOT).expect("create the testbed root");
    let lock = fs::File::create(Utf8Path::new(ROOT).join("zfs-fuse.lock")).expect("create lock");
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock zfs-fuse start");
    if daemon_answers() {
        return;
    }
    remove_stale_pidfile();
    let mut command = Command::new("zfs-fuse");
    command
        .args(["--no-kstat-mount", "--pidfile", PIDFILE])
        .stdin(Stdio::null());
    without_inherited_fds(&mut command);
    let status = command
        .status()
        .expect("zfs-fuse is installed (apt-get install zfs-fuse)");
    assert!(status.success(), "zfs-fuse failed to start: {status}");
    wait_for(
        "zfs-fuse to answer",
        Duration::from_secs(30),
        daemon_answers,
    );
}

/// Where the daemon writes its pid (`.ci/run` stops it by that pid).
const PIDFILE: &str = "/run/zfs-fuse.pid";

/// zfs-fuse refuses to start while its pidfile is newer than the boot, even when the pid in it is
/// gone (a daemon killed without removing it): remove such a file, never one of a live process.
fn remove_stale_pidfile() {
    let Ok(text) = fs::read_to_string(PIDFILE) else {
        return;
    };
    let alive = text
        .trim()
        .parse::<i32>()
        .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    if !alive {
        eprintln!("testbed: removing the stale {PIDFILE} ({})", text.trim());
        let _ = fs::remove_file(PIDFILE);
    }
}

/// The daemon outlives the test run that starts it, so it must not keep the descriptors that run
/// inherited without close-on-exec: above all the lock `flock /tmp/pg-preseed-tier2.lock
/// ./scripts/test` holds, which a daemon holding it would keep taken until someone kills it.
#[allow(unsafe_code)]
fn without_inherited_fds(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let limit = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
        .ok()
        .flatten()
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(1024)
        .min(65_536);
    // SAFETY: between fork and exec the closure only calls fcntl and close (async-signal-safe) on
    // plain integers. Descriptors with close-on-exec (Rust's own exec-error pipe among them) are
    // left alone.
    unsafe {
        command.pre_exec(move || {
            for fd in 3..limit {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                if flags >= 0 && flags & nix::libc::FD_CLOEXEC == 0 {
                    nix::libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

fn daemon_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A pool on a sparse file in the sandbox.
pub struct Pool {
    pub name: String,
    pub file: Utf8PathBuf,
}

impl Pool {
    /// Creates pool `<prefix><pid>` (pool names must be unique while imported).
    #[must_use]
    pub fn create(sandbox: &Sandbox, prefix: &str) -> Pool {
        ensure_daemon();
        let name = format!("{prefix}{}", std::process::id());
        let file = sandbox.path(&format!("{name}.img"));
        run_ok(Command::new("truncate").args(["-s", "512M", file.as_str()]));
        // A pool left behind by a crashed run of this pid would block the name.
        let _ = Command::new("zpool")
            .args(["destroy", "-f", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("zpool").args(["create", "-m", "none", &name, file.as_str()]));
        // Destroyed by the sandbox, after it has stopped the servers running on the pool.
        sandbox.register_pool(&name);
        Pool { name, file }
    }

    /// `pool/relative`.
    #[must_use]
    pub fn dataset(&self, relative: &str) -> String {
        format!("{}/{relative}", self.name)
    }

    /// Runs `zfs` with these arguments, panicking on failure.
    pub fn zfs(&self, args: &[&str]) -> Output {
        run_ok(Command::new("zfs").args(args))
    }

    /// `zfs destroy`, retried for a few seconds: zfs-fuse reports a dataset it just unmounted
    /// busy for a moment.
    pub fn destroy_dataset(&self, name: &str) {
        let mut last = String::new();
        for _ in 0..40 {
            let output = Command::new("zfs")
                .args(["destroy", name])
                .output()
                .expect("run zfs");
            if output.status.success() {
                return;
            }
            last = String::from_utf8_lossy(&output.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("zfs destroy {name} kept failing: {last}");
    }

    /// Creates `pool/relative` (and parents) with a mountpoint; it mounts at once.
    pub fn create_dataset(&self, relative: &str, mountpoint: Option<&Utf8Path>) -> String {
        let name = self.dataset(relative);
        let mut args = vec!["create".to_owned(), "-p".to_owned()];
        if let Some(mountpoint) = mountpoint {
            fs::create_dir_all(mountpoint).expect("create mountpoint");
            args.push("-o".to_owned());
            args.push(format!("mountpoint={mountpoint}"));
        }
        args.push(name.clone());
        run_ok(Command::new("zfs").args(&args));
        name
    }
}

/// The seed's incident on `pool`: `services/postgres` mounted at `pgdata` holding the old
/// `.preseed-completed` marker, with `services/postgresql` mounted over it, empty. Returns
/// (bottom, top) dataset names.
///
/// zfs-fuse will not mount over a non-empty directory (OpenZFS does, `overlay=on`), so the
/// marker is written through a bind mount of the bottom dataset after the top one is mounted.
pub fn stack_incident(sandbox: &Sandbox, pool: &Pool, pgdata: &Utf8Path) -> (String, String) {
    let bottom = pool.create_dataset("services/postgres", Some(pgdata));
    let view = sandbox.path("bottom-view");
    fs::create_dir_all(&view).expect("create the view");
    run_ok(Command::new("mount").args(["--bind", pgdata.as_str(), view.as_str()]));
    let top = pool.create_dataset("services/postgresql", Some(pgdata));
    fs::write(view.join(".preseed-completed"), b"").expect("the old marker, on the bottom dataset");
    run_ok(Command::new("umount").arg(view.as_str()));
    assert!(
        !pgdata.join(".preseed-completed").exists(),
        "the old marker is hidden under the top dataset"
    );
    (bottom, top)
}

/// `zpool destroy`, retried: zfs-fuse reports a pool busy for a while after its files were used.
pub(crate) fn destroy_pool(name: &str) {
    for attempt in 0..40 {
        let output = Command::new("zpool").args(["destroy", "-f", name]).output();
        match output {
            Ok(output) if output.status.success() => return,
            Ok(output) if attempt == 39 => eprintln!(
                "testbed: could not destroy pool {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
