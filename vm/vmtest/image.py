"""The cached guest image: built by vm/image/build.sh, keyed by a hash of vm/image/.

Layout of the cache directory (PG_PRESEED_VM_CACHE, default /var/cache/pg-preseed-vm):
  <key>/            a finished image (rootfs.img, vmlinuz, initrd.img, manifest.txt, build logs)
  <key>.lock        flock: exclusive while <key> is built, shared while a run boots from it
  <key>.build-<pid> a build in progress (renamed to <key> when it succeeded)
Concurrent `scripts/vm-test` runs serialise on the exclusive lock, so one builds and the others
reuse its result; an image in use by a run is never deleted (older keys are pruned only when
their lock can be taken exclusively).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

IMAGE_SOURCES = Path(__file__).resolve().parent.parent / "image"
DEFAULT_CACHE = Path("/var/cache/pg-preseed-vm")


def cache_dir() -> Path:
    return Path(os.environ.get("PG_PRESEED_VM_CACHE", DEFAULT_CACHE))


def image_key(sources: Path = IMAGE_SOURCES) -> str:
    """A hash of every file under vm/image (path, mode and content; symlinks by target)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in sources.rglob("*") if not p.is_dir() or p.is_symlink()):
        rel = path.relative_to(sources).as_posix()
        info = path.lstat()
        digest.update(f"{rel}\0{info.st_mode:o}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        else:
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Image:
    key: str
    directory: Path
    lock_fd: int  # held shared for as long as the image is in use

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def manifest(self) -> str:
        return (self.directory / "manifest.txt").read_text()

    def release(self) -> None:
        os.close(self.lock_fd)


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("rootfs.img", "vmlinuz", "initrd.img", "manifest.txt"))


def ensure_image(progress=print) -> tuple[Image, float | None]:
    """The image for the current vm/image sources, built when missing. Returns it (held with a
    shared lock until Image.release) and the build's duration in seconds, or None if cached."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = image_key()
    directory = cache / key
    lock_fd = os.open(cache / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    built: float | None = None
    fcntl.flock(lock_fd, fcntl.LOCK_SH)
    if not _complete(directory):
        # Upgrade to exclusive; another builder may finish first, so check again.
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if not _complete(directory):
            built = _build(cache, key, progress)
        fcntl.flock(lock_fd, fcntl.LOCK_SH)
    _prune(cache, key, progress)
    return Image(key=key, directory=directory, lock_fd=lock_fd), built


def _build(cache: Path, key: str, progress) -> float:
    # We hold the key's lock exclusively: any other build directory of this key is a dead one.
    for stale in cache.glob(f"{key}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = cache / f"{key}.build-{os.getpid()}"
    progress(f"building the guest image {key} in {work} (debootstrap, packages, DKMS; several minutes)")
    started = time.monotonic()
    result = subprocess.run([str(IMAGE_SOURCES / "build.sh"), str(work)], stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not _complete(work):
        raise RuntimeError(f"the guest image build failed (exit {result.returncode}); logs in {work}")
    elapsed = time.monotonic() - started
    (work / "build-seconds").write_text(f"{elapsed:.0f}\n")
    shutil.rmtree(cache / key, ignore_errors=True)
    os.rename(work, cache / key)
    progress(f"guest image {key} built in {elapsed:.0f} s")
    return elapsed


def _prune(cache: Path, keep: str, progress) -> None:
    """Remove images of older sources and failed builds that nobody uses."""
    for lock in cache.glob("*.lock"):
        key = lock.name[: -len(".lock")]
        if key == keep:
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            for stale in [cache / key, *cache.glob(f"{key}.build-*")]:
                if stale.exists():
                    progress(f"removing the old guest image {stale}")
                    shutil.rmtree(stale, ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


if __name__ == "__main__":
    image, seconds = ensure_image(lambda m: print(m, file=sys.stderr))
    print(image.directory)
    print("built in %.0f s" % seconds if seconds is not None else "cached")
