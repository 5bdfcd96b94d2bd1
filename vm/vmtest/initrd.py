"""A node's initrd: the cached image's initrd followed by a newc cpio of the node's tree.

Why the initrd and not a config disk or a rebuilt image: Linux unpacks every archive of a
concatenated initramfs in order, so appending one uncompressed cpio puts the node's files into the
initramfs without touching the cached image; the image's init-bottom script (vm/image/files/etc/
initramfs-tools/scripts/init-bottom/vm-tree) copies /vm-tree into the mounted root before
switch_root. The files are then in place before systemd loads a single unit, which a disk read
by a unit or generator could not guarantee, and nothing on the host mounts the guest's disks.
Costs: the tree sits in guest RAM until switch_root (fine for unit files, configs and a few
binaries), and it is re-applied on every boot (as NixOS re-creates /etc at every activation).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Where the init-bottom script looks for the tree inside the initramfs.
TREE_ROOT = "vm-tree"


@dataclass
class Entry:
    """One file, directory or symlink of the tree, at `path` (relative to the guest's /)."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    data: bytes | None = None  # content of a generated file, or a symlink's target
    source: Path | None = None  # a regular file copied from the host


class Tree:
    """The files a node gets before systemd starts, merged from layers (later ones win)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        self._put(path, Entry(mode=stat.S_IFREG | mode, data=data))

    def add_directory_tree(self, root: Path) -> None:
        """Every file, directory and symlink under `root`, at the same path below the guest's /,
        with its mode, owner and mtime as they are on the host (numeric ids)."""
        if not root.is_dir():
            raise FileNotFoundError(f"node tree {root} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                host = Path(dirpath) / name
                info = host.lstat()
                rel = host.relative_to(root).as_posix()
                entry = Entry(mode=info.st_mode, uid=info.st_uid, gid=info.st_gid, mtime=int(info.st_mtime))
                if stat.S_ISLNK(info.st_mode):
                    entry.data = os.readlink(host).encode()
                elif stat.S_ISREG(info.st_mode):
                    entry.source = host
                elif not stat.S_ISDIR(info.st_mode):
                    raise ValueError(f"{host}: only files, directories and symlinks can go into a node tree")
                self._put(rel, entry)
            # os.walk does not descend into symlinked directories: they stay symlinks.

    def _put(self, path: str, entry: Entry) -> None:
        path = path.strip("/")
        if not path or ".." in path.split("/"):
            raise ValueError(f"bad path in a node tree: {path!r}")
        self.entries[path] = entry

    def write_cpio(self, out: BinaryIO) -> None:
        """The tree as a newc archive below /vm-tree, parents before children."""
        writer = _Newc(out)
        paths = {f"{TREE_ROOT}/{p}": e for p, e in self.entries.items()}
        # Directories the tree implies but does not list.
        for path in list(paths):
            parent = path.rsplit("/", 1)[0]
            while parent and parent not in paths:
                paths[parent] = Entry(mode=stat.S_IFDIR | 0o755)
                parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        if TREE_ROOT not in paths:
            paths[TREE_ROOT] = Entry(mode=stat.S_IFDIR | 0o755)
        for path in sorted(paths, key=lambda p: p.split("/")):
            writer.add(path, paths[path])
        writer.trailer()


class _Newc:
    """The "new ASCII" cpio format the kernel's initramfs unpacker reads (070701, no checksum)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.offset = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def _pad(self) -> None:
        self._write(b"\0" * (-self.offset % 4))

    def _header(self, name: str, mode: int, uid: int, gid: int, mtime: int, size: int) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, uid, gid, 1, mtime, size, 0, 0, 0, 0, len(encoded), 0]
        self.ino += 1
        self._write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._pad()

    def add(self, name: str, entry: Entry) -> None:
        if entry.source is not None:
            size = entry.source.stat().st_size
            self._header(name, entry.mode, entry.uid, entry.gid, entry.mtime, size)
            with entry.source.open("rb") as src:
                copied = 0
                while chunk := src.read(1 << 20):
                    self._write(chunk)
                    copied += len(chunk)
            if copied != size:
                raise OSError(f"{entry.source} changed size while it was archived")
        else:
            data = entry.data or b""
            self._header(name, entry.mode, entry.uid, entry.gid, entry.mtime, len(data))
            self._write(data)
        self._pad()

    def trailer(self) -> None:
        self._header("TRAILER!!!", 0, 0, 0, 0, 0)


def write_node_initrd(base_initrd: Path, tree: Tree, out: Path) -> None:
    """base initrd, zero padding to a 512-byte boundary (the kernel skips zeros between
    archives and wants each header 4-byte aligned), then the tree's cpio."""
    with out.open("wb") as dst:
        with base_initrd.open("rb") as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        dst.write(b"\0" * (-dst.tell() % 512))
        tree.write_cpio(dst)
