"""One node: a QEMU guest booted from the cached image, and the subset of the NixOS test driver's
Machine API that the testScripts use, with the same semantics.

Semantics follow nixpkgs' nixos/lib/test-driver/src/test_driver/machine/__init__.py (read at
commit 019697db058b6738eda0cb2cdcc9f5c014c914cb) and driver.py (003d58163f469fbeb0d51e4ef8d46af622759627):
- start() is asynchronous: QEMU runs, nothing waits for the guest; the first command waits for the
  backdoor shell ("connect"). start() on a running machine does nothing.
- execute(cmd, timeout=900) runs `timeout T bash -c 'set -euo pipefail; CMD' | (base64 -w 0; echo)`
  in the guest's root shell (a virtio-serial port where NixOS uses the console hvc0: see the
  image's backdoor.service), then `echo ${PIPESTATUS[0]}`; returns (status, stdout).
  stderr is not captured (it goes to the serial console).
- succeed/fail(*commands, timeout=None) run each command in turn and raise on the first one whose
  status is (not) zero; they return the concatenated stdout.
- wait_until_succeeds/wait_until_fails/wait_for_unit retry once a second up to `timeout` (900 s)
  and make one last try at the end; wait_for_unit raises as soon as the unit is "failed", or
  "inactive" with no job queued.
- systemctl(q) returns execute("systemctl q") without checking it.
- shutdown() writes `poweroff` to the shell and waits for QEMU to exit; crash() tells QEMU to quit
  at once (a power cut: the guest's unwritten page cache is lost) and waits for it to exit.
- sleep(s) sleeps in the guest (`sleep s`), not on the host.
"""

from __future__ import annotations

import base64
import ctypes
import re
import select
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .logger import Logger


def die_with_parent() -> None:
    """preexec_fn for the processes the driver starts (QEMU, the hub): killed when the driver
    dies, however it dies, so no guest outlives a run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


class MachineError(Exception):
    """Something is wrong with the test machinery, not with what the test checks."""


class RequestedAssertionFailed(AssertionError):
    """A check the testScript asked for failed (succeed, fail, wait_for_unit, …)."""


def retry(fn: Callable[[bool], bool], timeout_seconds: int = 900) -> None:
    """Call fn(False) once a second until it is true or time is up, then fn(True) once more."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_seconds:
        if fn(False):
            return
        time.sleep(1)
    elapsed = time.monotonic() - start
    if not fn(True):
        raise RequestedAssertionFailed(f"action timed out after {elapsed:.2f} seconds (timeout={timeout_seconds})")


@dataclass
class NodeSpec:
    """What a node is made of (scenario.json's `nodes.<name>`, see vm/README.md)."""

    name: str
    index: int  # 1-based position in the sorted node names: address 192.168.1.<index>
    memory_mib: int = 1024
    cores: int = 1
    empty_disks_mib: list[int] = field(default_factory=list)
    kernel_params: list[str] = field(default_factory=list)
    initrd: Path | None = None  # the node's initrd (image initrd + its tree), written by the driver

    @property
    def address(self) -> str:
        return f"192.168.1.{self.index}"

    @property
    def mac(self) -> str:
        # The MAC scheme of NixOS test VMs: 52:54:00:12:<vlan>:<node index>.
        return f"52:54:00:12:01:{self.index:02x}"


# Kernel command line: root on the first virtio disk, read-write (the tree is copied in before
# switch_root), the serial console, and what NixOS' test instrumentation sets (panic=1 so a
# failing initramfs ends the run, acpi_pm clock, eth0 naming, kernel messages at level 7).
KERNEL_PARAMS = [
    "root=/dev/vda",
    "rw",
    "console=ttyS0",
    "panic=1",
    "clocksource=acpi_pm",
    "net.ifnames=0",
    "loglevel=7",
]


class Machine:
    def __init__(
        self,
        spec: NodeSpec,
        image,
        state_dir: Path,
        log_dir: Path,
        logger: Logger,
        hub_socket: Path,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.image = image
        self.state_dir = state_dir
        self.logger = logger
        self.hub_socket = hub_socket
        self.serial_log_path = log_dir / f"{self.name}.serial.log"
        self.shell_path = state_dir / "shell"
        self.monitor_path = state_dir / "monitor"
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.shell: socket.socket | None = None
        self.monitor: socket.socket | None = None
        self.serial_thread: threading.Thread | None = None
        self.shell_buffer = b""
        self.booted = False
        self.connected = False
        self.boots = 0
        self.start_time = 0.0
        self.last_connect_seconds: float | None = None
        self.full_console_log: list[str] = []
        # The driver's boot checks (checks.py): called after each boot's first connection and
        # before a clean shutdown; None for scenarios without boot checks.
        self.checks = None
        state_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"<Machine '{self.name}'>"

    # ---- logging -------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        self.logger.log(msg, {"machine": self.name})

    def nested(self, msg: str, attrs: dict[str, str] | None = None):
        attributes = {"machine": self.name}
        attributes.update(attrs or {})
        return self.logger.nested(msg, attributes)

    # ---- disks and the QEMU command ----------------------------------------------------

    def _create_disks(self) -> None:
        """The root overlay and the empty disks, made once per scenario run: they keep the
        node's state across its shutdowns, starts and crashes."""
        overlay = self.state_dir / "root.qcow2"
        if not overlay.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.image.rootfs), str(overlay)],
                check=True,
            )
        for number, size in enumerate(self.spec.empty_disks_mib, start=1):
            disk = self.state_dir / f"empty{number}.img"
            if not disk.exists():
                with disk.open("wb") as f:
                    f.truncate(size * 1024 * 1024)

    def qemu_command(self) -> list[str]:
        assert self.spec.initrd is not None
        # cache=unsafe: guest flushes do not reach the host's disk. The host does not crash in a
        # test; QEMU writes its caches out when it exits, including on the monitor's `quit` that
        # crash() uses, so what the guest wrote before a power cut is kept exactly as a disk with
        # a volatile cache would keep it. It saves host fsyncs on every guest commit.
        drives = [
            "-drive", f"if=none,id=root,format=qcow2,cache=unsafe,file={self.state_dir / 'root.qcow2'}",
            "-device", "virtio-blk-pci,drive=root",
        ]
        for number in range(1, len(self.spec.empty_disks_mib) + 1):
            drives += [
                "-drive", f"if=none,id=empty{number},format=raw,cache=unsafe,file={self.state_dir / f'empty{number}.img'}",
                "-device", f"virtio-blk-pci,drive=empty{number}",
            ]
        return [
            "qemu-system-x86_64",
            "-name", self.name,
            "-nodefaults", "-no-user-config", "-display", "none",
            # NIX.md: /dev/kvm here is PVM and cannot run a stock kernel; TCG can.
            "-accel", "tcg", "-cpu", "max",
            "-smp", str(self.spec.cores), "-m", str(self.spec.memory_mib),
            "-kernel", str(self.image.kernel), "-initrd", str(self.spec.initrd),
            "-append", " ".join(KERNEL_PARAMS + self.spec.kernel_params),
            *drives,
            "-netdev", f"stream,id=link,server=off,addr.type=unix,addr.path={self.hub_socket}",
            "-device", f"virtio-net-pci,netdev=link,mac={self.spec.mac}",
            # The backdoor shell: the virtio-serial port "backdoor" in the guest (see the image's
            # backdoor.service for why not the console hvc0), a unix socket the driver listens on.
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=shell,path={self.shell_path}",
            "-device", "virtserialport,chardev=shell,name=backdoor",
            "-device", "virtio-rng-pci",
            "-monitor", f"unix:{self.monitor_path}",
            "-serial", "stdio",
            # A reboot or a panic ends QEMU, as in NixOS test VMs.
            "-no-reboot",
        ]

    # ---- lifecycle ------------------------------------------------------------------------

    def is_up(self) -> bool:
        return self.booted and self.connected

    def start(self, allow_reboot: bool = False) -> None:
        """Power the machine on. Asynchronous: does not wait for the guest to boot."""
        if allow_reboot:
            raise MachineError("start(allow_reboot=True) is not supported by this driver")
        if self.booted:
            return
        self.log("starting vm")
        self._create_disks()
        listeners = {}
        for path in (self.shell_path, self.monitor_path):
            if path.exists():
                path.unlink()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(path))
            s.listen(1)
            listeners[path] = s
        self.boots += 1
        serial = self.serial_log_path.open("ab")
        serial.write(f"==== {time.strftime('%H:%M:%S')} boot {self.boots} of {self.name}\n".encode())
        serial.flush()
        self.start_time = time.monotonic()
        self.process = subprocess.Popen(
            self.qemu_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            self.monitor = self._accept(listeners[self.monitor_path], "monitor")
            self.shell = self._accept(listeners[self.shell_path], "shell")
        finally:
            for s in listeners.values():
                s.close()
        self.shell_buffer = b""
        self.full_console_log = []

        def process_serial_output() -> None:
            assert self.process and self.process.stdout
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").replace("\r", "").rstrip("\n")
                self.full_console_log.append(line)
                serial.write(f"{time.monotonic() - self.start_time:8.2f} {line}\n".encode())
                serial.flush()
            serial.close()

        self.serial_thread = threading.Thread(target=process_serial_output, daemon=True)
        self.serial_thread.start()
        self._wait_for_monitor_prompt()
        self.pid = self.process.pid
        self.booted = True
        self.log(f"QEMU running (pid {self.pid})")

    def _accept(self, listener: socket.socket, what: str) -> socket.socket:
        listener.settimeout(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn, _ = listener.accept()
                conn.settimeout(None)
                return conn
            except TimeoutError:
                assert self.process
                if self.process.poll() is not None:
                    output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                    raise MachineError(f"{self.name}: QEMU exited ({self.process.returncode}) before connecting its {what}: {output}")
                if time.monotonic() > deadline:
                    raise MachineError(f"{self.name}: QEMU did not connect its {what} within 60 s")

    def _wait_for_monitor_prompt(self) -> str:
        assert self.monitor
        answer = b""
        while not answer.endswith(b"(qemu) "):
            chunk = self.monitor.recv(1024)
            if not chunk:
                break
            answer += chunk
        return answer.decode(errors="replace")

    def send_monitor_command(self, command: str) -> str:
        assert self.monitor
        self.monitor.send(f"{command}\n".encode())
        return self._wait_for_monitor_prompt()

    def connect(self) -> None:
        """Wait for the guest's backdoor shell (starting the machine if it is off)."""
        if self.connected:
            return
        with self.nested("waiting for the VM to finish booting"):
            self.start()
            assert self.shell
            tic = time.monotonic()
            while not select.select([self.shell], [], [], 30)[0]:
                self.log("Guest root shell did not produce any data yet...")
                self.log("  To debug, read the node's serial log: " + str(self.serial_log_path))
            seen = b""
            while b"Spawning backdoor root shell...\n" not in seen:
                chunk = self.shell.recv(1024)
                if not chunk:
                    raise MachineError(f"{self.name}: the guest shell disconnected while booting (see {self.serial_log_path})")
                seen += chunk
            # Whatever followed the greeting belongs to the first command's answer.
            self.shell_buffer = seen.split(b"Spawning backdoor root shell...\n", 1)[1]
            self.last_connect_seconds = time.monotonic() - self.start_time
            self.log("connected to guest root shell")
            self.log(f"(connecting took {time.monotonic() - tic:.2f} seconds; {self.last_connect_seconds:.2f} s since power-on)")
            self.connected = True
        if self.checks is not None:
            self.checks.on_connect(self)

    def wait_for_shutdown(self) -> None:
        """Wait for QEMU to exit (it does not initiate the shutdown)."""
        if not self.booted:
            return
        with self.nested("waiting for the VM to power off"):
            assert self.process
            self.process.wait()
            if self.serial_thread:
                self.serial_thread.join()
            for s in (self.shell, self.monitor):
                if s is not None:
                    s.close()
            self.shell = self.monitor = None
            self.pid = None
            self.booted = False
            self.connected = False

    def shutdown(self) -> None:
        """A clean poweroff from inside the guest; waits for QEMU to exit."""
        if not self.booted:
            return
        if self.connected and self.checks is not None:
            self.checks.before_shutdown(self)
        assert self.shell
        self.shell.send(b"poweroff\n")
        self.wait_for_shutdown()

    def crash(self) -> None:
        """A power cut: QEMU stops at once, the guest syncs nothing."""
        if not self.booted:
            return
        self.log("forced crash")
        self.send_monitor_command("quit")
        self.wait_for_shutdown()

    def release(self) -> None:
        """End QEMU (at the end of a run or on the global timeout)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.logger.info(f"kill machine {self.name} (pid {self.process.pid})")
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for s in (self.shell, self.monitor):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def block(self) -> None:
        """Unplug the node from the private link."""
        self.send_monitor_command("set_link link off")

    def unblock(self) -> None:
        self.send_monitor_command("set_link link on")

    def get_console_log(self) -> str:
        return "\n".join(self.full_console_log)

    # ---- commands -------------------------------------------------------------------------

    def _read_line(self) -> bytes:
        assert self.shell
        while b"\n" not in self.shell_buffer:
            chunk = self.shell.recv(65536)
            if not chunk:
                raise MachineError(f"{self.name}: the guest shell disconnected (QEMU exited?)")
            self.shell_buffer += chunk
        line, self.shell_buffer = self.shell_buffer.split(b"\n", 1)
        return line

    def execute(
        self,
        command: str,
        check_return: bool = True,
        check_output: bool = True,
        timeout: int | None = 900,
    ) -> tuple[int, str]:
        self.connect()
        command = f"set -euo pipefail; {command}"
        timeout_str = f"timeout {timeout} " if timeout is not None else ""
        assert self.shell
        self.shell.send(f"{timeout_str}bash -c {shlex.quote(command)} | (base64 -w 0; echo)\n".encode())
        if not check_output:
            return (-2, "")
        output = base64.b64decode(self._read_line())
        if not check_return:
            return (-1, output.decode())
        self.shell.send(b"echo ${PIPESTATUS[0]}\n")
        status = int(self._read_line().strip())
        return (status, output.decode(errors="replace"))

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            with self.nested(f"must succeed: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status != 0:
                    self.log(f"output: {out}")
                    raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
                output += out
        return output

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            with self.nested(f"must fail: {command}"):
                status, out = self.execute(command, timeout=timeout)
                if status == 0:
                    raise RequestedAssertionFailed(f"command `{command}` unexpectedly succeeded")
                output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        output = ""

        def check_success(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0

        with self.nested(f"waiting for success: {command}"):
            retry(check_success, timeout)
            return output

    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        output = ""

        def check_failure(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        with self.nested(f"waiting for failure: {command}"):
            retry(check_failure, timeout)
            return output

    def wait_for_file(self, filename: str, timeout: int = 900) -> None:
        def check_file(_last_try: bool) -> bool:
            status, _ = self.execute(f"test -e {filename}")
            return status == 0

        with self.nested(f"waiting for file '{filename}'"):
            retry(check_file, timeout)

    def shell_interact(self) -> None:
        """A root shell in the guest for a person (scripts/vm-test --interactive): each line is
        run as one command, as execute() runs it; its output and exit status are printed.
        Ctrl-D goes back to the Python prompt."""
        self.connect()
        print(f"{self.name}: root shell (one command per line, run by bash; Ctrl-D returns)")
        while True:
            try:
                line = input(f"{self.name}# ")
            except EOFError:
                print()
                return
            if not line.strip():
                continue
            status, out = self.execute(line, timeout=None)
            print(out, end="" if not out or out.endswith("\n") else "\n")
            if status != 0:
                print(f"(exit {status})")

    def sleep(self, secs: int) -> None:
        # In guest time, as NixOS does.
        self.succeed(f"sleep {secs}")

    # ---- systemd ---------------------------------------------------------------------------

    def systemctl(self, q: str, user: str | None = None) -> tuple[int, str]:
        if user is not None:
            q = q.replace("'", "\\'")
            return self.execute(
                f"su -l {user} --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
            )
        return self.execute(f"systemctl {q}")

    def start_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"start {jobname}", user)

    def stop_job(self, jobname: str, user: str | None = None) -> tuple[int, str]:
        return self.systemctl(f"stop {jobname}", user)

    def get_unit_info(self, unit: str, user: str | None = None) -> dict[str, str]:
        status, lines = self.systemctl(f'--no-pager show "{unit}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'retrieving systemctl info for unit "{unit}"'
                + ("" if user is None else f' under user "{user}"')
                + f" failed with exit code {status}"
            )
        pattern = re.compile(r"^([^=]+)=(.*)$")
        return {m[1]: m[2] for m in (pattern.match(line) for line in lines.split("\n")) if m}

    def get_unit_property(self, unit: str, property: str, user: str | None = None) -> str:
        status, lines = self.systemctl(f'--no-pager show "{unit}" --property="{property}"', user)
        if status != 0:
            raise RequestedAssertionFailed(
                f'retrieving systemctl property "{property}" for unit "{unit}"'
                + ("" if user is None else f' under user "{user}"')
                + f" failed with exit code {status}"
            )
        match = re.match(r"^([^=]+)=(.*)$", lines)
        invalid = f'systemctl show --property "{property}" "{unit}" produced invalid output: {lines}'
        assert match is not None, invalid
        assert match[1] == property, invalid
        return match[2]

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        def check_active(_last_try: bool) -> bool:
            state = self.get_unit_property(unit, "ActiveState", user)
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            if state == "inactive":
                _, jobs = self.systemctl("list-jobs --full 2>&1", user)
                if "No jobs" in jobs:
                    info = self.get_unit_info(unit, user)
                    if info["ActiveState"] == state:
                        raise RequestedAssertionFailed(f'unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"

        with self.nested(f"waiting for unit {unit}" + (f" with user {user}" if user is not None else "")):
            retry(check_active, timeout)

    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        with self.nested(f"checking if unit '{unit}' has reached state '{require_state}'"):
            state = self.get_unit_info(unit)["ActiveState"]
            if state != require_state:
                raise RequestedAssertionFailed(
                    f"Expected unit '{unit}' to to be in state '{require_state}' but it is in state '{state}'"
                )


__all__ = ["Machine", "MachineError", "NodeSpec", "RequestedAssertionFailed", "retry"]
