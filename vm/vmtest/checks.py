"""Boot checks: what the driver checks in every rendered scenario, beside the testScript and
without changing it (scenario.json's "bootChecks" names the expectations in vm/expectations.py).

- `systemd-analyze verify` of every unit the node's tree renders (the module's and nixpkgs'
  twins', Debian's packaged units with their rendered drop-ins), once per node, on its first
  boot: no output other than the lines the expectations allow (each with its reason).
- No "ordering cycle" in any boot: systemd's lines ("Found ordering cycle", "Job … deleted to
  break ordering cycle") searched in each node's serial log, which holds every boot's journal
  (journald forwards to the console) including boots cut by crash(); and in the persistent
  journal of each node still running at the end.
- `systemctl --failed` at the end (or just before a node's last clean shutdown, when it is off at
  the end) lists exactly the units the expectations name, each with its reason.
- `journalctl -o json` of the pg-preseed units (all boots) has entries with the structured fields
  the expectations name (tracing-journald's DECISION, OUTCOME, …) where a decision was acted on.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

CYCLE = re.compile(r"Found ordering cycle|to break ordering cycle|ordering cycle", re.IGNORECASE)


@dataclass
class NodeExpectations:
    # unit -> why it is failed at the end
    failed: dict[str, str] = field(default_factory=dict)
    # (unit, {FIELD: value}, why): some journal entry of `unit` carries all these fields
    journal: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    # (regex, why): verify output lines that are allowed
    verify_allowed: list[tuple[str, str]] = field(default_factory=list)


def units_of_tree(tree: Path | None) -> list[str]:
    """The unit names a node's tree renders in /etc/systemd/system: unit files and units with
    drop-ins (not masks, not .wants/.requires links)."""
    if tree is None:
        return []
    system = tree / "etc" / "systemd" / "system"
    if not system.is_dir():
        return []
    names = set()
    for entry in system.iterdir():
        if entry.is_symlink():
            continue  # a mask (-> /dev/null) or an alias
        if entry.is_file():
            names.add(entry.name)
        elif entry.is_dir() and entry.name.endswith(".d"):
            names.add(entry.name[:-2])
    # The image's own units for the driver are not the scenario's.
    return sorted(n for n in names if n not in {"backdoor.service", "vm-network.service"})


class BootChecks:
    def __init__(self, name: str, expectations: dict[str, NodeExpectations], trees: dict, log_dir: Path, logger) -> None:
        self.name = name
        self.expectations = expectations
        self.trees = trees
        self.log_dir = log_dir
        self.logger = logger
        self.verified: dict[str, str] = {}  # node -> verify output (one run per node)
        self.failed_at_end: dict[str, tuple[str, list[str]]] = {}  # node -> (when, units)
        self.results: list[str] = []
        self.errors: list[str] = []

    # ---- hooks the machines call -------------------------------------------------------

    def on_connect(self, machine) -> None:
        if machine.name in self.verified:
            return
        units = units_of_tree(self.trees.get(machine.name))
        if not units:
            self.verified[machine.name] = ""
            return
        with machine.nested("boot check: systemd-analyze verify of the rendered units"):
            # --man=no: the image has no man pages (Documentation= lines would all be flagged).
            _, out = machine.execute(
                "systemd-analyze verify --man=no " + " ".join(shlex.quote(u) for u in units) + " 2>&1 || true"
            )
        self.verified[machine.name] = out

    def before_shutdown(self, machine) -> None:
        self.failed_at_end[machine.name] = ("before its last shutdown", self._failed_units(machine))

    # ---- at the end ----------------------------------------------------------------------

    @staticmethod
    def _failed_units(machine) -> list[str]:
        _, out = machine.execute("systemctl --failed --plain --no-legend --no-pager --full")
        return sorted(line.split()[0] for line in out.splitlines() if line.strip())

    def _check_verify(self) -> None:
        for node, out in sorted(self.verified.items()):
            allowed = self.expectations.get(node, NodeExpectations()).verify_allowed
            lines = [line for line in out.splitlines() if line.strip()]
            unexplained = [line for line in lines if not any(re.search(rx, line) for rx, _ in allowed)]
            explained = len(lines) - len(unexplained)
            if unexplained:
                self.errors.append(f"{node}: systemd-analyze verify: " + " | ".join(unexplained))
            else:
                self.results.append(f"{node}: systemd-analyze verify clean" + (f" ({explained} expected lines)" if explained else ""))

    def _check_cycles(self, machines) -> None:
        for machine in machines:
            serial = self.log_dir / f"{machine.name}.serial.log"
            text = serial.read_text(errors="replace") if serial.exists() else ""
            boots = text.count(f"==== ")
            hits = [line.strip() for line in text.splitlines() if CYCLE.search(line) and "systemd" in line]
            if machine.is_up():
                _, journal = machine.execute("journalctl -o short-monotonic --no-pager --grep 'ordering cycle' 2>/dev/null || true")
                hits += [line.strip() for line in journal.splitlines() if CYCLE.search(line)]
            if hits:
                self.errors.append(f"{machine.name}: ordering cycle: " + " | ".join(hits[:5]))
            else:
                self.results.append(f"{machine.name}: no ordering cycle in {boots} boot(s)")

    def _check_failed(self, machines) -> None:
        for machine in machines:
            if machine.is_up():
                self.failed_at_end[machine.name] = ("at the end", self._failed_units(machine))
            if machine.name not in self.failed_at_end:
                continue  # never booted to a shell
            when, units = self.failed_at_end[machine.name]
            expected = self.expectations.get(machine.name, NodeExpectations()).failed
            unexpected = sorted(set(units) - set(expected))
            missing = sorted(set(expected) - set(units))
            if unexpected or missing:
                self.errors.append(
                    f"{machine.name}: systemctl --failed {when}: {units or 'none'}"
                    + (f"; not expected: {unexpected}" if unexpected else "")
                    + (f"; expected but not failed: {missing}" if missing else "")
                )
            else:
                self.results.append(f"{machine.name}: failed units {when}: {units or 'none'} (as expected)")

    def _check_journal(self, machines) -> None:
        for machine in machines:
            wanted = self.expectations.get(machine.name, NodeExpectations()).journal
            if not wanted:
                continue
            if not machine.is_up():
                self.errors.append(f"{machine.name}: journal fields expected but the node is off at the end")
                continue
            for unit, fields, _ in wanted:
                _, out = machine.execute(f"journalctl -o json --no-pager -u {shlex.quote(unit)}")
                entries = []
                for line in out.splitlines():
                    try:
                        entries.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
                match = next((e for e in entries if all(str(e.get(k)) == v for k, v in fields.items())), None)
                wanted_text = ", ".join(f"{k}={v}" for k, v in fields.items())
                if match is None:
                    seen = sorted({f"{k}={e[k]}" for e in entries for k in ("DECISION", "OUTCOME") if k in e})
                    self.errors.append(f"{machine.name}: no journal entry of {unit} with {wanted_text} (seen: {seen or 'no structured fields'})")
                else:
                    extra = sorted(k for k in match if k.isupper() and not k.startswith("_") and k not in ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "TARGET"))
                    self.results.append(f"{machine.name}: journal of {unit} has {wanted_text} (fields: {', '.join(extra)})")

    def finish(self, machines) -> None:
        self._check_verify()
        self._check_cycles(machines)
        self._check_failed(machines)
        self._check_journal(machines)
        for line in self.results:
            self.logger.log(f"boot check: {line}")
        for line in self.errors:
            self.logger.log_test_error(f"boot check failed: {line}")
