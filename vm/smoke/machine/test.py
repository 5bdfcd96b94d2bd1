# Smoke (a): one node; the driver's commands, systemd checks and power states behave as on NixOS.
# Written against the NixOS test driver's API only, like nixos-tests/*.py.
import time

HELLO = "/nix/store/0smoke0hello0aaaaaaaaaaaaaaaaaaaaaa-smoke-hello/bin/smoke-hello"


def expect_failure(what, action, message):
    try:
        action()
    except AssertionError as e:
        assert message in str(e), (what, str(e))
    else:
        raise AssertionError(f"{what}: no failure")


with subtest("power-on to shell; the node's tree is in place before systemd"):
    tic = time.monotonic()
    machine.start()
    machine.succeed("true")
    log.info(f"measure: power-on to shell {time.monotonic() - tic:.1f} s")
    machine.wait_for_unit("multi-user.target")
    log.info(f"measure: power-on to multi-user.target {time.monotonic() - tic:.1f} s")
    assert machine.succeed("hostname").strip() == "machine"
    # A unit that lives in /nix/store, linked into /etc/systemd/system and enabled by a
    # multi-user.target.wants symlink, all from the tree: it ran at boot.
    machine.wait_for_unit("smoke-hello.service")
    assert "hello from the node's tree (machine)" in machine.succeed("journalctl -b -o cat -u smoke-hello.service")
    assert machine.succeed(f"{HELLO}").startswith("hello")
    assert machine.succeed("systemctl is-system-running || true").strip() == "running"

with subtest("the image: the scenarios' tools, no cluster of Debian's, NixOS' postgres ids"):
    machine.succeed(
        "sudo -u postgres psql --version | grep -q 'PostgreSQL) 17'",
        "sudo -u postgres pgbench --version",
        "pgbackrest version",
        "command -v zfs zpool parted journalctl find grep curl openssl stunnel4 exportfs mount.nfs",
    )
    machine.fail("test -e /etc/postgresql/17", "systemctl is-enabled postgresql.service nfs-server.service zfs-mount.service")
    assert machine.succeed("id -u postgres; id -g postgres").split() == ["71", "71"]
    # /tmp is on the root filesystem, as on NixOS.
    assert machine.succeed("findmnt -n -o TARGET --target /tmp").strip() == "/"

with subtest("execute, succeed and fail as NixOS runs them"):
    assert machine.execute("echo out; echo err >&2; exit 3") == (3, "out\n")
    assert machine.succeed("echo a", "echo b") == "a\nb\n"
    assert machine.fail("false", "exit 7", "test -e /nonexistent") == ""
    expect_failure("succeed(false)", lambda: machine.succeed("true", "false"), "command `false` failed (exit code 1)")
    expect_failure("fail(true)", lambda: machine.fail("true"), "command `true` unexpectedly succeeded")
    # set -euo pipefail around every command
    assert machine.execute("false | true")[0] == 1
    assert machine.execute("echo $NOT_SET_ANYWHERE")[0] != 0
    assert machine.execute("false; echo not reached") == (1, "")
    # timeout= is the guest's `timeout`
    assert machine.execute("sleep 10", timeout=2)[0] == 124
    # large and non-ASCII output comes back whole
    assert machine.succeed("head -c 300000 /dev/zero | tr '\\0' x") == "x" * 300000
    assert machine.succeed("printf 'caf\\xc3\\xa9\\n'") == "café\n"
    machine.succeed("rm -f /tmp/flag", "(sleep 3; touch /tmp/flag) >/dev/null 2>&1 &")
    machine.wait_until_succeeds("test -e /tmp/flag", timeout=30)
    expect_failure("wait_until_succeeds(false)", lambda: machine.wait_until_succeeds("false", timeout=3), "action timed out")
    machine.sleep(1)

with subtest("systemd: systemctl, wait_for_unit, require_unit_state"):
    assert machine.systemctl("is-active multi-user.target") == (0, "active\n")
    assert machine.systemctl("is-active smoke-idle.service")[0] != 0
    machine.require_unit_state("backdoor.service")
    machine.require_unit_state("smoke-idle.service", "inactive")
    expect_failure("require_unit_state", lambda: machine.require_unit_state("smoke-idle.service"), "in state 'inactive'")
    machine.systemctl("start smoke-fails.service")
    expect_failure("wait_for_unit(failed)", lambda: machine.wait_for_unit("smoke-fails.service", timeout=60), 'reached state "failed"')
    machine.require_unit_state("smoke-fails.service", "failed")
    expect_failure("wait_for_unit(inactive)", lambda: machine.wait_for_unit("smoke-idle.service", timeout=60), "inactive and there are no pending jobs")

with subtest("shutdown is a clean poweroff; the state survives it"):
    first_boot = machine.succeed("cat /proc/sys/kernel/random/boot_id")
    machine.succeed("echo kept > /root/kept")
    tic = time.monotonic()
    machine.shutdown()
    log.info(f"measure: shutdown (poweroff to QEMU exit) {time.monotonic() - tic:.1f} s")
    assert not machine.is_up()
    tic = time.monotonic()
    machine.start()
    assert machine.succeed("cat /root/kept") == "kept\n"
    log.info(f"measure: second power-on to shell {time.monotonic() - tic:.1f} s")
    assert machine.succeed("cat /proc/sys/kernel/random/boot_id") != first_boot
    # The previous boot ended with a clean shutdown, in its journal.
    machine.succeed("journalctl -b -1 -o cat | grep -q 'Reached target.*Power-Off\\|System Power Off'")

with subtest("crash is a power cut: what was synced survives, what was not is lost"):
    machine.succeed("echo synced > /root/synced && sync")
    # Only in the guest's page cache: ext4 commits every 5 s and writes back after 30 s.
    machine.succeed("echo unsynced > /root/unsynced")
    machine.crash()
    machine.start()
    assert machine.succeed("cat /root/synced") == "synced\n"
    machine.fail("test -s /root/unsynced")
    assert machine.succeed("cat /root/kept") == "kept\n"
    # The crashed boot has no shutdown in its journal.
    machine.fail("journalctl -b -1 -o cat | grep -q 'Reached target.*Power-Off\\|System Power Off'")
