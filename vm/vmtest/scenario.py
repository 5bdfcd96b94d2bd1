"""A scenario directory: what phase 2 (the module's units rendered per node) produces, and what
the smoke scenarios under vm/smoke/ are written as by hand.

    <dir>/scenario.json
      {
        "name": "wipe-restores",                  # optional, defaults to the directory's name
        "globalTimeout": 1800,                    # seconds, as the NixOS test's globalTimeout
        "testScript": ["../../nixos-tests/common.py", "../../nixos-tests/wipe-restores.py"],
                                                  # concatenated in order, exec'd unchanged;
                                                  # relative paths are relative to <dir>
        "nodes": {
          "db": {
            "memorySize": 2048,                   # MiB (virtualisation.memorySize), default 1024
            "cores": 1,                           # default 1 (TCG: one vCPU per guest is cheapest)
            "emptyDiskImages": [4096],            # MiB each: /dev/vdb, /dev/vdc, …
            "tree": "nodes/db",                   # default nodes/<name> (may be absent: no files)
            "kernelParams": []                    # appended to the command line
          },
          "backup": {}
        },
        "bootChecks": "wipe-restores"             # optional: the driver's boot checks with the
                                                  # expectations of that name (vm/expectations.py)
      }
    <dir>/nodes/<name>/...  the node's tree: files, directories and symlinks placed at the same
                            absolute path in the guest before systemd starts (mode, owner and
                            symlink targets as on the host).

The driver adds a layer under each tree (the tree wins on conflicts): /etc/hostname (the node's
name), /etc/hosts (every node of the scenario), /etc/machine-id, /etc/vm-test/address (the node's
address on the private link, 192.168.1.<n> with n the 1-based position of its name in sorted
order, as NixOS test VMs number them).

The tree is copied over the root filesystem by the initramfs at every boot, before systemd
starts: a unit, a `<unit>.d/` drop-in or a `<target>.wants/`/`.requires/` symlink in the tree's
etc/systemd/system is seen by the first unit load; a file the guest deleted comes back at the
next boot; nothing the tree lacks is removed. What the image (vm/image) gives a tree to build on:
- Debian trixie: systemd 257, PostgreSQL 17 in /usr/lib/postgresql/17/bin, pgbackrest, zfs and
  zpool (OpenZFS 2.3, module built for the guest kernel) in /usr/sbin, util-linux, NFS, stunnel4,
  curl, openssl, sudo, parted; no minio or mc (not in Debian).
- The postgres user and group with NixOS' ids 71:71; no PostgreSQL cluster.
- Debian's postgresql, nfs-server and zfs-* units installed but disabled: a tree enables what its
  node's NixOS configuration has (a symlink in multi-user.target.wants/ etc.) or replaces them with
  rendered units of the same name in etc/systemd/system (which take precedence over /usr/lib).
- /etc/fstab holds only `/dev/vda / ext4 rw 0 0`: a tree's etc/fstab replaces it whole, so it must
  keep that line.
- backdoor.service and vm-network.service are the driver's: a tree must not replace them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .machine import NodeSpec

NODE_KEYS = {"memorySize", "cores", "emptyDiskImages", "tree", "kernelParams"}
SCENARIO_KEYS = {"name", "globalTimeout", "testScript", "nodes", "bootChecks"}


@dataclass
class Scenario:
    name: str
    directory: Path
    global_timeout: int
    script_parts: list[Path]
    nodes: list[NodeSpec]
    trees: dict[str, Path | None]
    boot_checks: str | None = None  # a key of vm/expectations.py (rendered scenarios)

    def script(self) -> str:
        return "".join(part.read_text() for part in self.script_parts)


def load(directory: Path) -> Scenario:
    directory = directory.resolve()
    spec_path = directory / "scenario.json"
    spec = json.loads(spec_path.read_text())
    unknown = set(spec) - SCENARIO_KEYS
    if unknown:
        raise ValueError(f"{spec_path}: unknown keys {sorted(unknown)}")
    parts = [(directory / p).resolve() for p in spec["testScript"]]
    for part in parts:
        if not part.is_file():
            raise FileNotFoundError(f"{spec_path}: testScript part {part} does not exist")
    nodes: list[NodeSpec] = []
    trees: dict[str, Path | None] = {}
    for index, name in enumerate(sorted(spec["nodes"]), start=1):
        node = spec["nodes"][name] or {}
        unknown = set(node) - NODE_KEYS
        if unknown:
            raise ValueError(f"{spec_path}: node {name}: unknown keys {sorted(unknown)}")
        nodes.append(
            NodeSpec(
                name=name,
                index=index,
                memory_mib=int(node.get("memorySize", 1024)),
                cores=int(node.get("cores", 1)),
                empty_disks_mib=[int(size) for size in node.get("emptyDiskImages", [])],
                kernel_params=list(node.get("kernelParams", [])),
            )
        )
        tree = directory / node.get("tree", f"nodes/{name}")
        if "tree" in node and not tree.is_dir():
            raise FileNotFoundError(f"{spec_path}: node {name}: tree {tree} is not a directory")
        trees[name] = tree if tree.is_dir() else None
    if not nodes:
        raise ValueError(f"{spec_path}: no nodes")
    return Scenario(
        name=spec.get("name", directory.name),
        directory=directory,
        global_timeout=int(spec.get("globalTimeout", 3600)),
        script_parts=parts,
        nodes=nodes,
        trees=trees,
        boot_checks=spec.get("bootChecks"),
    )
