"""The driver transcript: what NixOS' test driver logs (nested actions with their durations,
subtests, machine messages, test errors), one timestamped line each, to a file and optionally to
stderr. The testScript sees an instance as the global `log`, as on NixOS."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


class Logger:
    def __init__(self, transcript: Path, echo: TextIO | None = None) -> None:
        self.file = transcript.open("a", buffering=1)
        self.echo = echo
        self.started = time.monotonic()
        self.depth = 0
        self.lock = threading.Lock()
        # Lines a testScript logs with the prefix "measure: " are collected for the summary.
        self.measurements: list[str] = []

    def _line(self, message: str, attributes: dict[str, str] | None = None) -> None:
        prefix = f"{attributes['machine']}: " if attributes and "machine" in attributes else ""
        stamp = f"{time.monotonic() - self.started:8.2f}"
        with self.lock:
            for part in (message.splitlines() or [""]):
                line = f"{stamp} {'  ' * self.depth}{prefix}{part}"
                self.file.write(line + "\n")
                if self.echo is not None:
                    print(line, file=self.echo, flush=True)

    def log(self, message: str, attributes: dict[str, str] | None = None) -> None:
        if message.startswith("measure: "):
            self.measurements.append(message[len("measure: "):])
        self._line(message, attributes)

    def info(self, *args, **kwargs) -> None:
        self.log(str(args[0]), kwargs or None)

    def warning(self, *args, **kwargs) -> None:
        self.log(str(args[0]), kwargs or None)

    def debug(self, *args, **kwargs) -> None:
        self.log(str(args[0]), kwargs or None)

    def error(self, *args, **kwargs) -> None:
        # NixOS' composite logger exits the driver on error(); a testScript that calls it means
        # to stop the test, so this raises.
        self.log(f"!!! {args[0]}", kwargs or None)
        raise SystemExit(1)

    def log_test_error(self, *args, **kwargs) -> None:
        self.log(f"!!! {args[0]}", kwargs or None)

    @contextmanager
    def nested(self, message: str, attributes: dict[str, str] | None = None) -> Iterator[None]:
        self._line(message, attributes)
        tic = time.monotonic()
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self._line(f"(finished: {message}, in {time.monotonic() - tic:.2f} seconds)", attributes)

    @contextmanager
    def subtest(self, name: str, attributes: dict[str, str] | None = None) -> Iterator[None]:
        with self.nested("subtest: " + name, attributes):
            yield

    # Serial lines go to the nodes' own serial logs (machine.py), not into the transcript.
    def log_serial(self, message: str, machine: str) -> None:
        pass

    def print_serial_logs(self, enable: bool) -> None:
        pass

    def close(self) -> None:
        self.file.close()


def stderr_logger(transcript: Path, verbose: bool) -> Logger:
    return Logger(transcript, sys.stderr if verbose else None)
