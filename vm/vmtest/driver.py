"""Runs one scenario: the private link, one Machine per node (each with its own tree in its
initrd), and the testScript exec'd unchanged with the NixOS test driver's globals (driver.py's
test_symbols: start_all, subtest, log, machines, driver, retry, join_all, os, t, one name per
node, and `machine` when there is exactly one node)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .checks import BootChecks
from .expectations import EXPECTATIONS
from .initrd import Tree, write_node_initrd
from .logger import Logger
from .machine import Machine, MachineError, RequestedAssertionFailed, die_with_parent, retry
from .scenario import Scenario

SCRIPT_FILENAME = "<testScript>"


class AssertionTester(unittest.TestCase):
    """The testScript's `t`: unittest assertions that fail as RequestedAssertionFailed."""

    failureException = RequestedAssertionFailed

    def runTest(self) -> None:  # unittest wants one to instantiate the class
        pass


def pythonize_name(name: str) -> str:
    return re.sub(r"^[^A-Za-z_]|[^A-Za-z0-9_]", "_", name)


@dataclass
class Result:
    name: str
    passed: bool
    seconds: float
    log_dir: Path
    error: str = ""
    measurements: list[str] = field(default_factory=list)


class Driver:
    def __init__(self, scenario: Scenario, image, log_dir: Path, verbose: bool = False, keep: bool = False) -> None:
        self.scenario = scenario
        self.image = image
        self.log_dir = log_dir
        self.keep = keep
        log_dir.mkdir(parents=True, exist_ok=True)
        self.logger = Logger(log_dir / "driver.log", sys.stderr if verbose else None)
        # Short paths: unix socket names are limited to 108 bytes.
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"vmt-{scenario.name[:20]}-", dir="/var/tmp"))
        self.hub_socket = self.state_dir / "link"
        self.hub: subprocess.Popen | None = None
        self.machines: list[Machine] = []
        self.timed_out = False
        self.checks: BootChecks | None = None
        if scenario.boot_checks is not None:
            if scenario.boot_checks not in EXPECTATIONS:
                raise ValueError(f"no boot-check expectations named {scenario.boot_checks} in vm/vmtest/expectations.py")
            self.checks = BootChecks(scenario.boot_checks, EXPECTATIONS[scenario.boot_checks], scenario.trees, log_dir, self.logger)
        self.race_timer = threading.Timer(scenario.global_timeout, self.terminate_test)

    # ---- setup --------------------------------------------------------------------------

    def _start_hub(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.hub = subprocess.Popen(
            [sys.executable, "-m", "vmtest.hub", str(self.hub_socket)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=(self.log_dir / "hub.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.hub_socket))
                probe.close()  # the hub sees a port open and close: harmless
                return
            except OSError:
                probe.close()
                if self.hub.poll() is not None or time.monotonic() > deadline:
                    raise MachineError(f"the private link's hub did not start (see {self.log_dir / 'hub.log'})")
                time.sleep(0.05)

    def _base_layer(self, tree: Tree, node) -> None:
        hosts = ["127.0.0.1 localhost", "::1 localhost"]
        hosts += [f"{n.address} {n.name}" for n in self.scenario.nodes]
        tree.add_file("etc/hostname", node.name + "\n")
        tree.add_file("etc/hosts", "\n".join(hosts) + "\n")
        machine_id = hashlib.sha256(f"{self.scenario.name}/{node.name}".encode()).hexdigest()[:32]
        tree.add_file("etc/machine-id", machine_id + "\n", 0o444)
        tree.add_file("etc/vm-test/address", f"{node.address}/24\n")

    def _prepare_machines(self) -> None:
        for node in self.scenario.nodes:
            tree = Tree()
            self._base_layer(tree, node)
            source = self.scenario.trees.get(node.name)
            if source is not None:
                tree.add_directory_tree(source)
            node_dir = self.state_dir / node.name
            node_dir.mkdir()
            node.initrd = node_dir / "initrd"
            write_node_initrd(self.image.initrd, tree, node.initrd)
            machine = Machine(node, self.image, node_dir, self.log_dir, self.logger, self.hub_socket)
            machine.checks = self.checks
            self.machines.append(machine)

    # ---- the NixOS test driver's globals ------------------------------------------------

    def start_all(self) -> None:
        with self.logger.nested("start all VMs"):
            for machine in self.machines:
                machine.start()

    def join_all(self) -> None:
        with self.logger.nested("wait for all VMs to finish"):
            for machine in self.machines:
                machine.wait_for_shutdown()

    @contextmanager
    def subtest(self, name: str) -> Iterator[None]:
        with self.logger.subtest(name):
            try:
                yield
            except Exception as e:
                self.logger.log_test_error(f'Test "{name}" failed with error: "{e}"')
                raise

    def test_symbols(self) -> dict:
        symbols = dict(
            start_all=self.start_all,
            join_all=self.join_all,
            subtest=self.subtest,
            log=self.logger,
            machines=self.machines,
            driver=self,
            retry=retry,
            os=os,
            t=AssertionTester(),
            Machine=Machine,
            BaseMachine=Machine,
        )
        for machine in self.machines:
            symbols[pythonize_name(machine.name)] = machine
        if len(self.machines) == 1:
            symbols["machine"] = self.machines[0]
        return symbols

    def terminate_test(self) -> None:
        """The global timeout: runs on the timer's thread; ending every QEMU makes the script's
        current command fail on the main thread."""
        self.timed_out = True
        self.logger.log_test_error(f"global timeout of {self.scenario.global_timeout} s reached; ending the machines")
        for machine in self.machines:
            machine.release()

    def abort(self) -> None:
        """Ctrl-C or SIGTERM of scripts/vm-test (any thread): end every QEMU; the script's
        current command then fails on the scenario's own thread, which cleans up."""
        try:
            self.logger.log_test_error("interrupted; ending the machines")
        except ValueError:
            pass  # the scenario had finished: its transcript is closed
        for machine in self.machines:
            machine.release()

    # ---- running ------------------------------------------------------------------------

    def _script_location(self, lineno: int) -> str:
        """Where line `lineno` of the concatenated script comes from (file:line)."""
        for part in self.scenario.script_parts:
            count = len(part.read_text().splitlines())
            if lineno <= count:
                return f"{part}:{lineno}"
            lineno -= count
        return f"{SCRIPT_FILENAME}:{lineno}"

    def _report(self, error: BaseException) -> str:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == SCRIPT_FILENAME]
        source = self.scenario.script().splitlines()
        self.logger.log_test_error("Traceback (most recent call last), testScript frames:")
        for frame in frames:
            line = source[frame.lineno - 1].strip() if frame.lineno and frame.lineno <= len(source) else ""
            self.logger.log_test_error(f"  {self._script_location(frame.lineno or 0)}: {line}")
        summary = f"{type(error).__name__}: {error}"
        if self.timed_out:
            summary = f"global timeout ({self.scenario.global_timeout} s) reached; then {summary}"
        for line in summary.splitlines():
            self.logger.log_test_error(line)
        if not isinstance(error, AssertionError):
            for line in traceback.format_exception(error):
                self.logger.log(line.rstrip())
        where = f" at {self._script_location(frames[-1].lineno or 0)}" if frames else ""
        return summary.splitlines()[0] + where

    def run(self) -> Result:
        started = time.monotonic()
        error = ""
        passed = False
        self.logger.log(f"scenario {self.scenario.name}: nodes {', '.join(n.name for n in self.scenario.nodes)}")
        self.logger.log(f"image {self.image.key} ({self.image.directory}); state in {self.state_dir}")
        try:
            self._start_hub()
            self._prepare_machines()
            code = compile(self.scenario.script(), SCRIPT_FILENAME, "exec")
            self.logger.log(f"Test will time out and terminate in {self.scenario.global_timeout} seconds")
            self.race_timer.start()
            with self.logger.nested("run the VM test script"):
                exec(code, self.test_symbols(), None)
            for machine in self.machines:
                if machine.is_up():
                    machine.execute("sync")
            passed = not self.timed_out
            if self.timed_out:
                error = f"global timeout ({self.scenario.global_timeout} s) reached"
            elif self.checks is not None:
                with self.logger.nested("boot checks"):
                    self.checks.finish(self.machines)
                if self.checks.errors:
                    passed = False
                    error = f"boot check: {self.checks.errors[0]}" + (f" (+{len(self.checks.errors) - 1} more)" if len(self.checks.errors) > 1 else "")
        except BaseException as e:  # noqa: BLE001 - any failure of the script fails the scenario
            if isinstance(e, KeyboardInterrupt):
                self.logger.log_test_error("interrupted")
                self._cleanup()
                raise
            error = self._report(e)
        finally:
            self.race_timer.cancel()
        self._cleanup()
        seconds = time.monotonic() - started
        self.logger.log(f"scenario {self.scenario.name}: {'pass' if passed else 'FAIL'} in {seconds:.0f} s")
        self.logger.close()
        measurements = list(self.logger.measurements)
        if self.checks is not None:
            measurements += [f"boot check: {line}" for line in self.checks.results]
        return Result(self.scenario.name, passed, seconds, self.log_dir, error, measurements)

    def interact(self) -> None:
        """As NixOS' driverInteractive: a Python prompt with the testScript's globals (start_all,
        the machines, subtest, …) and test_script() to run the scenario's script; nothing runs
        until asked. <node>.shell_interact() gives a root shell in a guest."""
        import code

        try:
            self._start_hub()
            self._prepare_machines()
            symbols = self.test_symbols()
            script = compile(self.scenario.script(), SCRIPT_FILENAME, "exec")
            symbols["test_script"] = lambda: exec(script, symbols, None)
            names = ", ".join(pythonize_name(m.name) for m in self.machines)
            code.interact(
                banner=(
                    f"tier-4 scenario {self.scenario.name}: machines {names}.\n"
                    "start_all(), <node>.start(), <node>.succeed('…'), <node>.shell_interact() (a root shell),\n"
                    "test_script() runs the scenario's script. Serial consoles and the transcript: "
                    f"{self.log_dir}. Ctrl-D ends (the guests are powered off).\n"
                ),
                local=symbols,
                exitmsg="",
            )
        finally:
            self._cleanup()
            self.logger.close()

    def _cleanup(self) -> None:
        with self.logger.nested("cleanup"):
            for machine in self.machines:
                try:
                    machine.release()
                except Exception as e:  # noqa: BLE001 - cleanup goes on
                    self.logger.log(f"error ending {machine.name}: {e}")
            if self.hub is not None and self.hub.poll() is None:
                self.hub.terminate()
                self.hub.wait()
            if self.keep:
                self.logger.log(f"machine state kept in {self.state_dir}")
            else:
                shutil.rmtree(self.state_dir, ignore_errors=True)
