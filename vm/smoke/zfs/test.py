# Smoke (b) and (d): in-kernel OpenZFS 2.3 in the guest. The pool on /dev/vdb is imported at boot
# by Debian's zfs-import-cache/-scan and zfs-mount units, which this node's tree enables (a
# stand-in for the NixOS zfs units that phase 2 renders). Then the incident's layout: two datasets
# on one mountpoint stack with the default overlay=on and are refused with overlay=off. Then the
# time of `zfs list` with 1, 50 and 500 datasets, in guest time (TCG: compare, don't quote).
import time

PGDATA = "/var/lib/postgresql/17"
LIST = "zfs list -H -o name,mountpoint,canmount,mounted -t filesystem"


def mounts_at(node, path):
    """(mount id, parent id, source) of each mount on `path`, from /proc/self/mountinfo."""
    found = []
    for line in node.succeed("cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == path:
            after = fields[fields.index("-") + 1:]
            found.append((fields[0], fields[1], after[1]))
    return found


def guest_seconds(node, command, runs=5):
    """Median wall time of `command` in the guest, over `runs` runs."""
    times = []
    for _ in range(runs):
        out = node.succeed(f"s=$(date +%s%N); {command} >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))")
        times.append(int(out.strip()))
    return sorted(times)[len(times) // 2] / 1000


db.start()
with subtest("OpenZFS 2.3 in the guest kernel"):
    db.wait_for_unit("multi-user.target")
    db.succeed("modprobe zfs")
    kmod = db.succeed("cat /sys/module/zfs/version").strip()
    assert kmod.startswith("2.3."), kmod
    log.info(f"measure: zfs kmod {kmod}, kernel {db.succeed('uname -r').strip()}")

with subtest("a pool on /dev/vdb, imported at the next boot by the units the tree enables"):
    db.succeed(
        "parted --script /dev/vdb mklabel msdos",
        "parted --script /dev/vdb -- mkpart primary 1M -1s",
        "zpool create -m none tank /dev/vdb1",
        "sync",
    )
    db.shutdown()
    db.start()
    db.wait_for_unit("zfs.target")
    db.wait_for_unit("zfs-mount.service")
    assert db.succeed("zpool list -H -o name,health tank").split() == ["tank", "ONLINE"]
    assert db.succeed("zfs get -H -o value overlay tank").strip() == "on"

with subtest("overlay=on: two datasets on one mountpoint both mount, one over the other"):
    db.succeed(
        f"zfs create -p -o mountpoint={PGDATA} tank/services/postgres",
        f"touch {PGDATA}/.preseed-completed",
        f"zfs create -o mountpoint={PGDATA} tank/services/postgresql",
        f"echo 17 > {PGDATA}/PG_VERSION",
        # The incident's boot: import, then mount everything in zfs' own order.
        "zpool export tank",
        "zpool import -N tank",
        "zfs mount -a",
    )
    stacked = mounts_at(db, PGDATA)
    assert len(stacked) == 2, stacked
    ids = {mount_id for mount_id, _, _ in stacked}
    (lower,) = [m for m in stacked if m[1] not in ids]
    (upper,) = [m for m in stacked if m[1] in ids]
    assert upper[1] == lower[0], stacked
    assert {lower[2], upper[2]} == {"tank/services/postgres", "tank/services/postgresql"}, stacked
    for dataset in ("tank/services/postgres", "tank/services/postgresql"):
        assert db.succeed(f"zfs get -H -o value mounted {dataset}").strip() == "yes"
    visible = db.succeed(f"ls -A {PGDATA}").split()
    log.info(f"measure: overlay=on: {upper[2]} (mount {upper[0]}) over {lower[2]} (mount {lower[0]}); {PGDATA} shows {visible}")

with subtest("overlay=off: the second mount is refused"):
    db.succeed(
        "zfs set overlay=off tank/services/postgres",
        "zfs set overlay=off tank/services/postgresql",
        "zpool export tank",
        "zpool import -N tank",
    )
    status, out = db.execute("zfs mount -a 2>&1")
    assert status != 0, out
    assert "directory is not empty" in out, out
    assert len(mounts_at(db, PGDATA)) == 1
    log.info(f"measure: overlay=off: zfs mount -a exit {status}: {out.strip()}")
    db.succeed("zfs destroy -r tank/services")

with subtest("zfs list with 1, 50 and 500 datasets"):
    db.succeed("zfs create -o mountpoint=/bench tank/bench")
    made = 1
    for total in (1, 50, 500):
        tic = time.monotonic()
        if total > made:
            # Several creates at once share transaction groups: much faster than one by one.
            db.succeed(f"seq {made + 1} {total} | xargs -P 8 -I@ zfs create tank/bench/d@", timeout=1800)
        created = time.monotonic() - tic
        assert int(db.succeed(f"{LIST} -r tank/bench | wc -l")) == total
        listed = int(db.succeed(f"{LIST} | wc -l"))
        median = guest_seconds(db, f"{LIST}")
        log.info(
            f"measure: zfs list with {total} datasets (tank/bench and below; {listed} lines): "
            f"{median:.3f} s (median of 5, guest time); {total - made} created in {created:.0f} s"
        )
        made = total
