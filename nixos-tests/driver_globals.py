# What the NixOS test driver puts in scope for a testScript, typed, as nixos/lib/testing/
# driver.nix prepends it before running mypy on the script (nixos/lib/test-script-prepend.py and
# the driver's Machine API, nixos-25.11; facts in docs/testing.md). scripts/lint-vm-tests puts
# this, the node names and the scenario's script together and type-checks them with the
# driver's own mypy flags, so a script that would fail `nix flake check` fails CI here. Tier 4's
# driver (vm/) implements the same API; the bodies here only raise.
from typing import Callable, ContextManager, List, Optional, Protocol, Tuple


class Logger:
    def info(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError
    def warning(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError
    def error(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError
    def log(self, message: str, attributes: dict = {}) -> None:
        raise NotImplementedError


class Machine:
    name: str

    def start(self, allow_reboot: bool = False) -> None:
        raise NotImplementedError
    def shutdown(self) -> None:
        raise NotImplementedError
    def crash(self) -> None:
        raise NotImplementedError
    def reboot(self) -> None:
        raise NotImplementedError
    def execute(
        self,
        command: str,
        check_return: bool = True,
        check_output: bool = True,
        timeout: Optional[int] = 900,
    ) -> Tuple[int, str]:
        raise NotImplementedError
    def succeed(self, *commands: str, timeout: Optional[int] = None) -> str:
        raise NotImplementedError
    def fail(self, *commands: str, timeout: Optional[int] = None) -> str:
        raise NotImplementedError
    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        raise NotImplementedError
    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        raise NotImplementedError
    def wait_for_unit(
        self, unit: str, user: Optional[str] = None, timeout: int = 900
    ) -> None:
        raise NotImplementedError
    def wait_for_file(self, filename: str, timeout: int = 900) -> None:
        raise NotImplementedError
    def wait_for_open_port(
        self, port: int, addr: str = "localhost", timeout: int = 900
    ) -> None:
        raise NotImplementedError
    def systemctl(self, q: str, user: Optional[str] = None) -> Tuple[int, str]:
        raise NotImplementedError
    def require_unit_state(self, unit: str, require_state: str = "active") -> None:
        raise NotImplementedError
    def get_unit_info(self, unit: str, user: Optional[str] = None) -> dict:
        raise NotImplementedError
    def sleep(self, secs: int) -> None:
        raise NotImplementedError


class RetryProtocol(Protocol):
    def __call__(self, fn: Callable, timeout: int = 900) -> None:
        raise NotImplementedError


start_all: Callable[[], None]
join_all: Callable[[], None]
subtest: Callable[[str], ContextManager[None]]
retry: RetryProtocol
log: Logger
machines: List[Machine]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
