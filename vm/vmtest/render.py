"""A nixos-tests scenario as a scenario directory (scenario.py): each node's tree holds what NixOS
would have put on its disk, from modules/tests/render.nix (through vm/render.nix).

What goes into a node's tree, and where it differs from NixOS (docs/testing.md, "Tier 4"):
- etc/systemd/system: the rendered unit files, drop-ins and .wants/.requires links. A link points
  to "../<unit>" when the unit is rendered here (as NixOS' unit directory links), else to the
  Debian package's file in /usr/lib/systemd/system (NixOS would link the package's unit from the
  store: zfs-mount.service, nfs-server.service, …). Debian's zfs-import-cache/-scan units are
  masked, so only the rendered zfs-import-<pool>.service imports pools.
- etc/<target> for environment.etc: a symlink to the store source, or a copy with its mode, user
  and group when the entry has a mode (as NixOS' setup-etc does).
- etc/tmpfiles.d/00-nixos.conf: the rendered rules.
- etc/hostid: networking.hostId as 4 bytes, little-endian (as NixOS writes it on x86_64).
- etc/fstab: the image's root line (root is /dev/vda in these guests, not by-label/nixos), then
  the node's other fileSystems, written as NixOS writes fstab.
- etc/modules-load.d/nixos.conf: zfs when boot.zfs.enabled (nixpkgs' zfs.nix sets
  boot.kernelModules = ["zfs"]; the twin does not model boot.kernelModules).
- users and groups: etc/sysusers.d/00-nixos.conf (systemd-sysusers adds what the image lacks; a
  drop-in makes it run at every boot, as NixOS creates users at every activation), homes with
  createHome through etc/tmpfiles.d/00-nixos-homes.conf.
- the shell's PATH: etc/profile.d/00-nixos-system-path.sh puts environment.systemPackages' bin
  directories first, as /run/current-system/sw/bin is on NixOS, and etc/sudoers.d/nixos keeps the
  caller's PATH under sudo (NixOS' sudo has no secure_path; Debian's has).
- nix/store/<hash>-<name>: every store object the node's files reference, found by scanning them
  for store paths, as Nix finds a runtime closure: text files as rendered; a package standing for
  a guest program gets bin/ and sbin/ as links to that program's directory; pg-preseed's bin/ gets
  the host-built binary ($PG_PRESEED_BIN); a runCommand is built here on the host, its script run
  as a Nix builder runs it (out, its env, passAsFile, PATH of its tools mapped to the host's
  programs and pg-preseed); store objects are root-owned, 0444/0555, mtime 1.
- TCG allowance: etc/pgbackrest/conf.d/tier4-tcg.conf raises pgBackRest's archive-timeout from
  60 s to 600 s on nodes with a pgBackRest config (pgBackRest reads conf.d beside its default
  config). Under TCG one archive-push takes 2-5 s, so a backup started after a backlog of WAL
  (crash-mid-restore: pgbench -i -s 30 before stanza-create) times out waiting for it (error 82),
  where a KVM guest needs a tenth of that. No pg-preseed decision reads archive-timeout.
- TCG allowance: an NFS fileSystems entry's x-systemd.mount-timeout is raised to 60 s in fstab.
  Under TCG mounting the repository share at boot (nfs modules, rpc.statd, the first RPCs) took
  5.5-15 s over 30 boots, against the scenarios' 15 s: one boot in ~30 failed the mount with the
  server up, and pg-preseed then (rightly) found the repository unreachable. A mount of a server
  that is down (repo-fallback) fails 45 s later than on NixOS; nothing else changes.
- MinIO (not in Debian): vm/stand-ins/minio at the minio package's guest path, serving S3 with
  s3s-fs behind stunnel (TLS) on MinIO's address, certificates and credentials.
"""

from __future__ import annotations

import json
import sys
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
STAND_INS = ROOT / "vm" / "stand-ins"
STORE_REF = re.compile(rb"/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+")
# Users and groups the image already has with NixOS' ids (vm/image/build.sh), by name.
IMAGE_IDS = {"root": 0, "postgres": 71}
# What every guest tree masks: Debian's pool importers (NixOS imports through zfs-import-<pool>).
MASKED = ["zfs-import-cache.service", "zfs-import-scan.service"]
# Filesystem types NixOS never fscks at boot (nixos/modules/tasks/filesystems.nix, fsToSkipCheck).
SKIP_CHECK = {"none", "auto", "overlay", "iso9660", "bindfs", "udf", "btrfs", "zfs", "tmpfs", "bcachefs",
              "nfs", "nfs4", "nilfs2", "vboxsf", "squashfs", "glusterfs", "apfs", "9p", "cifs", "prl_fs", "vmhgfs"}
IMAGE_FSTAB = "/dev/vda / ext4 rw 0 0\n"
# A guest's MinIO stand-in serves TLS on MinIO's address and passes it to s3s-fs here.
S3S_FS_VERSION = "0.14.1"


# TCG allowance for NFS mounts at boot (see the module docstring).
NFS_MOUNT_TIMEOUT_SECONDS = 60


def tcg_mount_timeout(option: str) -> str:
    """x-systemd.mount-timeout of an NFS mount raised to NFS_MOUNT_TIMEOUT_SECONDS, never lowered."""
    match = re.fullmatch(r"x-systemd\.mount-timeout=(\d+)s?", option)
    if match and int(match.group(1)) < NFS_MOUNT_TIMEOUT_SECONDS:
        return f"x-systemd.mount-timeout={NFS_MOUNT_TIMEOUT_SECONDS}s"
    return option


class RenderError(Exception):
    pass


def log(message: str) -> None:
    print(f"render-scenario: {message}", file=sys.stderr, flush=True)


def evaluate(name: str) -> dict:
    """vm/render.nix for scenario `name`, through ../shared/tools/nixenv (a Nix >= 2.18)."""
    nixenv = ROOT.parent / "shared" / "tools" / "nixenv"
    if not os.access(nixenv, os.X_OK):
        raise RenderError(f"{nixenv} is missing: ../shared must be beside the checkout (../shared/NIX.md)")
    env = dict(os.environ)
    env.setdefault("NIXPKGS_LIB", "../shared/vendor/nixpkgs-lib")
    result = subprocess.run(
        [str(nixenv), "nix-instantiate", "--eval", "--strict", "--json", "vm/render.nix",
         "--arg", "lib", "import /nixpkgs-lib/lib", "--argstr", "name", name],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RenderError(f"evaluating vm/render.nix for {name} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def store_base(path: str) -> str:
    """/nix/store/<hash>-<name>[/inside] -> /nix/store/<hash>-<name>."""
    return "/".join(path.split("/")[:4])


def refs_in(data: bytes) -> set[str]:
    return {m.decode() for m in STORE_REF.findall(data)}


def find_program(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    cargo = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin" / name
    return cargo if os.access(cargo, os.X_OK) else None


@dataclass
class Builder:
    """Runs runCommand builders on the host, once per store path for the whole scenario."""

    workdir: Path
    pg_preseed_bin: Path
    pool: dict
    guests: dict
    built: dict[str, Path] = field(default_factory=dict)

    def tool_dirs(self, tools: list[str]) -> list[str]:
        dirs = []
        for tool in tools:
            guest = (self.pool.get(tool) or self.guests.get(tool) or {}).get("guest")
            if guest == "pg-preseed":
                shim = self.workdir / "tools-pg-preseed"
                shim.mkdir(exist_ok=True)
                link = shim / "pg-preseed"
                if not link.is_symlink():
                    link.symlink_to(self.pg_preseed_bin)
                dirs.append(str(shim))
            elif guest:
                # The host's program of the same name (Debian on both sides), e.g. openssl.
                dirs.append(guest)
            else:
                raise RenderError(f"runCommand tool {tool} stands for no program (no `guest`)")
        return dirs

    def build(self, path: str, name: str, spec: dict) -> Path:
        if path in self.built:
            return self.built[path]
        script = spec["script"]
        foreign = refs_in(script.encode()) - set(spec["tools"])
        if foreign:
            raise RenderError(f"{path}: its builder reads store paths {sorted(foreign)}, which do not exist on the host")
        top = Path(tempfile.mkdtemp(prefix="build-", dir=self.workdir))
        tmp = top / "tmp"
        tmp.mkdir()
        out = top / Path(path).name
        env = {
            "PATH": ":".join(self.tool_dirs(spec["tools"]) + ["/usr/bin", "/bin"]),
            "out": str(out),
            "name": name,
            "NIX_BUILD_TOP": str(top),
            "NIX_STORE": "/nix/store",
            "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp), "TEMPDIR": str(tmp),
            "HOME": "/homeless-shelter",
            "PWD": str(top),
        }
        pass_as_file = spec["env"].get("passAsFile", [])
        for key, value in spec["env"].items():
            text = " ".join(value) if isinstance(value, list) else value
            if key in pass_as_file:
                attr = top / f".attr-{key}"
                attr.write_text(text)
                env[f"{key}Path"] = str(attr)
            else:
                env[key] = text
        # stdenv's setup runs a buildCommand with `set -eu -o pipefail`.
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=top, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0 or not (out.exists() or out.is_symlink()):
            raise RenderError(
                f"building {path} on the host failed (exit {result.returncode}); as on NixOS, the "
                f"system would not build:\n{result.stdout}{result.stderr}".rstrip()
            )
        for file in [out] if out.is_file() else [p for p in out.rglob("*") if p.is_file()]:
            if str(out).encode() in file.read_bytes():
                raise RenderError(f"{path}: its output names its own path, which differs here from the store path")
        self.built[path] = out
        return out


def normalize_store(path: Path) -> None:
    """As Nix leaves a store object: root-owned, read-only, executables 0555, mtime 1."""
    entries = [path] + (sorted(path.rglob("*"), reverse=True) if path.is_dir() and not path.is_symlink() else [])
    for p in entries:
        info = p.lstat()
        if stat.S_ISLNK(info.st_mode):
            os.lchown(p, 0, 0)
            continue
        os.chown(p, 0, 0)
        if stat.S_ISDIR(info.st_mode) or info.st_mode & 0o111:
            os.chmod(p, 0o555)
        else:
            os.chmod(p, 0o444)
        os.utime(p, (1, 1))


class NodeTree:
    def __init__(self, name: str, node: dict, tree: Path, scenario: "ScenarioRender") -> None:
        self.name = name
        self.node = node
        self.tree = tree
        self.scenario = scenario
        self.fixups: list[str] = []  # tmpfiles `z` lines for owners known only in the guest

    def path(self, guest_path: str) -> Path:
        return self.tree / guest_path.lstrip("/")

    def write(self, guest_path: str, content: str | bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        p = self.path(guest_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        os.chown(p, uid, gid)
        os.chmod(p, mode)

    def link(self, guest_path: str, target: str) -> None:
        p = self.path(guest_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(target)

    # ---- ids ----------------------------------------------------------------------------

    def user_id(self, name: str) -> int | None:
        if name.startswith("+"):
            return int(name[1:])
        user = self.node["users"].get(name)
        if user and user.get("uid") is not None:
            return int(user["uid"])
        return IMAGE_IDS.get(name)

    def group_id(self, name: str) -> int | None:
        if name.startswith("+"):
            return int(name[1:])
        group = self.node["groups"].get(name)
        if group and group.get("gid") is not None:
            return int(group["gid"])
        return IMAGE_IDS.get(name)

    # ---- the parts ----------------------------------------------------------------------

    def units(self) -> None:
        units = self.node["units"]
        files = {k for k, u in units.items() if "text" in u and "/" not in k}
        for key, unit in sorted(units.items()):
            where = f"/etc/systemd/system/{key}"
            if "text" in unit:
                self.write(where, unit["text"], 0o444)
            else:
                target = unit["symlink"]
                self.link(where, f"../{target}" if target in files else f"/usr/lib/systemd/system/{target}")
        for unit in MASKED:
            if unit not in units:
                self.link(f"/etc/systemd/system/{unit}", "/dev/null")

    def etc(self) -> None:
        for target, entry in sorted(self.node["etc"].items()):
            source = entry["source"]
            if "mode" not in entry:
                self.link(f"/etc/{target}", source)
                continue
            content = self.scenario.store_file(self, source).read_bytes()
            uid, gid = self.user_id(entry["user"]), self.group_id(entry["group"])
            self.write(f"/etc/{target}", content, int(entry["mode"], 8), uid or 0, gid or 0)
            if uid is None or gid is None:
                # Known by name only in the guest: set once sysusers made it.
                self.fixups.append(f"z /etc/{target} {entry['mode']} {entry['user'].lstrip('+')} {entry['group'].lstrip('+')} - -")

    def tmpfiles(self) -> None:
        self.write("/etc/tmpfiles.d/00-nixos.conf", self.node["tmpfiles"], 0o444)

    def host_id(self) -> None:
        host_id = self.node.get("hostId")
        if host_id:
            if not re.fullmatch(r"[0-9a-f]{8}", host_id):
                raise RenderError(f"node {self.name}: networking.hostId {host_id!r} is not 8 hex digits")
            self.write("/etc/hostid", bytes.fromhex(host_id)[::-1], 0o444)

    def fstab(self) -> None:
        lines = [IMAGE_FSTAB]
        for mount_point, fs in sorted(self.node["fileSystems"].items()):
            if mount_point == "/":
                continue
            passno = "0" if fs["fsType"] in SKIP_CHECK or fs["device"] == "none" else "2"
            escaped = fs["mountPoint"].replace(" ", "\\040")
            options = [tcg_mount_timeout(o) if fs["fsType"].startswith("nfs") else o for o in fs["options"]]
            lines.append(f"{fs['device']} {escaped} {fs['fsType']} {','.join(options)} 0 {passno}\n")
        self.write("/etc/fstab", "".join(lines), 0o644)

    def kernel_modules(self) -> None:
        if self.node["zfs"]:
            self.write("/etc/modules-load.d/nixos.conf", "zfs\n", 0o444)

    def users(self) -> None:
        lines = ["# NixOS' users.users and users.groups; sysusers adds what the image lacks.\n"]
        for name, group in sorted(self.node["groups"].items()):
            lines.append(f"g {name} {group['gid'] if group.get('gid') is not None else '-'}\n")
        homes = []
        for name, user in sorted(self.node["users"].items()):
            uid = str(user["uid"]) if user.get("uid") is not None else "-"
            home = user.get("home") or "/var/empty"
            lines.append(f"u {name} {uid}:{user['group']} \"{name}\" {home}\n")
            if user.get("createHome") and user.get("home"):
                homes.append(f"d {user['home']} 0700 {name} {user['group']} - -\n")
        for name, user in sorted(self.node["users"].items()):
            for group in user.get("extraGroups", []):
                lines.append(f"m {name} {group}\n")
        for name, group in sorted(self.node["groups"].items()):
            for member in group.get("members", []):
                lines.append(f"m {member} {name}\n")
        self.write("/etc/sysusers.d/00-nixos.conf", "".join(lines), 0o444)
        self.write("/etc/tmpfiles.d/00-nixos-homes.conf", "".join(homes + [f + "\n" for f in self.fixups]), 0o444)
        self.write(
            "/etc/systemd/system/systemd-sysusers.service.d/vm-test.conf",
            "# NixOS creates users and groups at every activation. The image is built with /etc marked\n"
            "# as updated (no first-boot jobs), so sysusers' ConditionNeedsUpdate would skip it.\n"
            "[Unit]\nConditionNeedsUpdate=\n",
            0o444,
        )

    def shell_path(self) -> None:
        bins = [f"{p}/bin" for p in self.node["systemPackages"]]
        self.write(
            "/etc/profile.d/00-nixos-system-path.sh",
            "# environment.systemPackages first on PATH, as /run/current-system/sw/bin is on NixOS.\n"
            f'PATH="{":".join(dict.fromkeys(bins))}:$PATH"\nexport PATH\n',
            0o444,
        )
        self.write("/etc/sudoers.d/nixos", "# As NixOS' sudo: the caller's PATH is kept.\nDefaults !secure_path\n", 0o440)

    def tcg_allowance(self) -> None:
        if "pgbackrest/pgbackrest.conf" in self.node["etc"]:
            self.write(
                "/etc/pgbackrest/conf.d/tier4-tcg.conf",
                "# Tier 4 runs under TCG, ~10x slower than KVM: one archive-push takes seconds, and a\n"
                "# backlog of WAL outlasts pgBackRest's default archive-timeout (60 s). See vm/vmtest/render.py.\n"
                "[global]\narchive-timeout=600\n",
                0o444,
            )

    def store(self) -> None:
        for path in sorted(self.scenario.closure(self)):
            self.scenario.materialise(self, path)


class ScenarioRender:
    def __init__(self, name: str, data: dict, outdir: Path, pg_preseed_bin: Path) -> None:
        self.name = name
        self.data = data
        self.outdir = outdir
        self.pg_preseed_bin = pg_preseed_bin
        # Every node's store objects: a file on one node may name an object listed on another
        # (the db's pgbackrest.conf names the repository host's certificate).
        self.pool: dict[str, dict] = {}
        for node in data["nodes"].values():
            self.pool.update(node["store"])
        self.guests = data["guests"]
        self.builder = Builder(outdir / ".build", pg_preseed_bin, self.pool, self.guests)
        (outdir / ".build").mkdir(parents=True, exist_ok=True)

    def output_of(self, path: str) -> Path:
        entry = self.pool[path]
        return self.builder.build(path, entry["name"], entry["runCommand"])

    def object_refs(self, path: str) -> set[str]:
        entry = self.pool.get(path)
        if entry is None:
            return set()
        found: set[str] = set()
        for inner in entry.get("files", {}).values():
            found |= refs_in(inner["text"].encode())
        if "runCommand" in entry:
            out = self.output_of(path)
            for file in [out] if out.is_file() else [p for p in out.rglob("*") if p.is_file()]:
                found |= refs_in(file.read_bytes())
        return {store_base(r) for r in found} - {path}

    def closure(self, node: NodeTree) -> set[str]:
        text = json.dumps({k: node.node[k] for k in ("units", "etc", "tmpfiles")}).encode()
        todo = set(node.node["store"]) | {store_base(r) for r in refs_in(text)}
        done: set[str] = set()
        while todo:
            path = todo.pop()
            if path in done:
                continue
            if path not in self.pool and path not in self.guests:
                raise RenderError(f"node {node.name}: {path} is referenced but neither render.nix's store nor the twins' packages know it")
            done.add(path)
            todo |= self.object_refs(path)
        return done

    def store_file(self, node: NodeTree, source: str) -> Path:
        """The host file in node's tree for a store path (the object is materialised first)."""
        base = store_base(source)
        self.materialise(node, base)
        return node.path(source)

    def materialise(self, node: NodeTree, path: str) -> None:
        dest = node.path(path)
        if dest.exists() or dest.is_symlink():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        entry = self.pool.get(path) or {"files": {}, **self.guests[path]}
        guest = entry.get("guest")
        files = entry.get("files") or {}
        if "runCommand" in entry:
            out = self.output_of(path)
            if out.is_dir():
                shutil.copytree(out, dest, symlinks=True)
            else:
                shutil.copy2(out, dest)
        elif "" in files:
            dest.write_text(files[""]["text"])
            if files[""].get("executable"):
                dest.chmod(0o755)
        else:
            dest.mkdir()
            for inner, spec in files.items():
                target = dest / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(spec["text"])
                if spec.get("executable"):
                    target.chmod(0o755)
            if guest == "pg-preseed":
                (dest / "bin").mkdir(exist_ok=True)
                shutil.copy2(self.pg_preseed_bin, dest / "bin" / "pg-preseed")
                (dest / "bin" / "pg-preseed").chmod(0o755)
            elif guest is not None:
                for sub in ("bin", "sbin"):
                    if not (dest / sub).exists():
                        (dest / sub).symlink_to(guest)
                if guest == "/usr/local/bin" and entry["name"].startswith("minio-"):
                    self.minio_stand_in(node)
        normalize_store(dest)

    def minio_stand_in(self, node: NodeTree) -> None:
        s3s_fs = find_program("s3s-fs")
        if s3s_fs is None:
            log(f"installing s3s-fs {S3S_FS_VERSION} for the MinIO stand-in (cargo, once)")
            subprocess.run(["cargo", "install", "--locked", "--quiet", "s3s-fs", "--version", S3S_FS_VERSION,
                            "--features", "binary"], check=True)
            s3s_fs = find_program("s3s-fs")
            if s3s_fs is None:
                raise RenderError("s3s-fs is not on PATH or in ~/.cargo/bin after cargo install")
        node.write("/usr/local/bin/minio", (STAND_INS / "minio").read_bytes(), 0o755)
        node.write("/usr/local/lib/vm-test/s3s-fs", s3s_fs.read_bytes(), 0o755)

    def render(self) -> dict:
        nodes = {}
        for name, node in sorted(self.data["nodes"].items()):
            tree = NodeTree(name, node, self.outdir / "nodes" / name, self)
            tree.tree.mkdir(parents=True)
            tree.store()
            tree.units()
            tree.etc()
            tree.tmpfiles()
            tree.host_id()
            tree.fstab()
            tree.kernel_modules()
            tree.users()
            tree.shell_path()
            tree.tcg_allowance()
            nodes[name] = {
                "memorySize": node["memorySize"],
                # Under TCG one vCPU per guest: a second one only competes with the other guests
                # for this machine's two cores (scenario nodes ask for cores = 2).
                "cores": 1,
                "emptyDiskImages": node["emptyDiskImages"],
                "tree": f"nodes/{name}",
            }
        shutil.rmtree(self.outdir / ".build")
        tests = ROOT / "nixos-tests"
        return {
            "name": self.name,
            "globalTimeout": self.data["globalTimeout"],
            "testScript": [str(tests / "common.py"), str(tests / f"{self.name}.py")],
            "nodes": nodes,
            "bootChecks": self.name,
        }


def render(name: str, outdir: Path, pg_preseed_bin: Path) -> None:
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    data = evaluate(name)
    spec = ScenarioRender(name, data, outdir, pg_preseed_bin).render()
    (outdir / "scenario.json").write_text(json.dumps(spec, indent=2) + "\n")
