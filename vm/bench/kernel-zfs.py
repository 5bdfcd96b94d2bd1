# Tier-4 measurements on kernel OpenZFS (scripts/vm-test --bench): run after nixos-tests/common.py
# on the nodes of the first-deploy scenario, rendered from the module (backup + db, the module's
# own units). Every time is guest time under TCG (slow): compare numbers of one run with each
# other, not with a real machine. Lines logged as "measure: …" are printed by scripts/vm-test and
# copied into docs/performance.md.
#
# 1. boot-to-verified-restore against a hand restore of the same backup, in the same guest;
# 2. what `pgbackrest restore` and `initdb` do with a PGDATA whose dataset has snapdir=visible
#    (`.zfs` listed in it), and what pg-preseed makes of that PGDATA (issue 10.16);
# 3. the incident's two datasets on one mountpoint: which one `zfs mount -a` leaves on top, over
#    repeated mounts, with overlay=on on both (the seed) and with overlay=off on the declared one
#    (what the datasets unit sets);
# 4. `pg-preseed preflight` with 1, 50 and 500 datasets, beside `zfs list`'s own time.

PG_PRESEED = "/etc/pg-preseed/bin/pg-preseed --config /etc/pg-preseed/config.json"
ZFS_LIST = "zfs list -H -o name,mountpoint,canmount,mounted -t filesystem"  # the engine's argv
PG_BIN = "/usr/lib/postgresql/17/bin"


def ms(node, command):
    """Wall time of `command` in the guest, in milliseconds (it must succeed)."""
    out = node.succeed(f"s=$(date +%s%N); {command} >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))")
    return int(out.strip())


def median_ms(node, command, runs=5):
    times = sorted(ms(node, command) for _ in range(runs))
    return times[len(times) // 2]


def monotonic(node, unit, prop):
    """A unit's timestamp property in microseconds of CLOCK_MONOTONIC (since the kernel started)."""
    return int(node.succeed(f"systemctl show -P {prop} {unit}").strip())


def uptime_us(node):
    return int(float(node.succeed("cut -d' ' -f1 /proc/uptime").strip()) * 1e6)


backup.start()
backup.wait_for_unit("nfs-server.service")
db.start()

with subtest("a server with data and a backup"):
    create_pool(db)
    wait_verified(db)
    db.succeed("sudo -u postgres pgbench -i -s 10 postgres >/dev/null 2>&1")
    fill(db, 1000)
    take_backup(db)
    size = psql(db, "SELECT pg_size_pretty(pg_database_size('postgres'))")
    log.info(f"measure: restore timings: database of {size} (pgbench -s 10 + 1000 rows), one full backup on the NFS repository")

with subtest("boot to verified restore"):
    wipe(db)
    db.shutdown()
    db.start()
    wait_verified(db)
    verified = monotonic(db, "postgresql-preseed-verify.service", "ActiveEnterTimestampMonotonic")
    run_start = monotonic(db, "postgresql-preseed.service", "ExecMainStartTimestampMonotonic")
    run_end = monotonic(db, "postgresql-preseed.service", "ExecMainExitTimestampMonotonic")
    pg_active = monotonic(db, "postgresql.service", "ActiveEnterTimestampMonotonic")
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    assert receipt(db)["action"] == "restored"
    log.info(
        f"measure: boot to verified restore: {verified / 1e6:.1f} s from kernel start to the receipt "
        f"(pg-preseed run {(run_end - run_start) / 1e6:.1f} s, of it the restore; PostgreSQL ready at "
        f"{pg_active / 1e6:.1f} s; verify done {(verified - pg_active) / 1e6:.1f} s later)"
    )

with subtest("the same restore through the units, without a reboot"):
    wipe(db)
    begin = uptime_us(db)
    db.succeed("systemctl start postgresql.service")
    db.wait_until_succeeds("systemctl is-active postgresql-preseed-verify.service")
    verified = monotonic(db, "postgresql-preseed-verify.service", "ActiveEnterTimestampMonotonic")
    run_start = monotonic(db, "postgresql-preseed.service", "ExecMainStartTimestampMonotonic")
    run_end = monotonic(db, "postgresql-preseed.service", "ExecMainExitTimestampMonotonic")
    pg_active = monotonic(db, "postgresql.service", "ActiveEnterTimestampMonotonic")
    units_seconds = (verified - begin) / 1e6
    # PostgreSQL serves from its readiness (Type=notify: after recovery); the receipt follows the
    # verify unit's watch for a second primary (secondPrimary.watch, 90 s by default).
    serving_seconds = (pg_active - begin) / 1e6
    log.info(
        f"measure: units, no reboot: systemctl start postgresql.service to PostgreSQL serving: {serving_seconds:.1f} s, "
        f"to verified: {units_seconds:.1f} s (pg-preseed run {(run_end - run_start) / 1e6:.1f} s)"
    )

with subtest("a hand restore of the same backup: pgbackrest restore, start, wait"):
    wipe(db)
    conf = db.succeed("systemctl cat postgresql.service | grep -o '/nix/store/[^ ]*unit-script-postgresql-pre-start[^ ]*'").strip()
    conf_link = db.succeed(f"grep -o '/nix/store/[^\"]*-postgresql.conf/postgresql.conf' {conf}").strip()
    begin = uptime_us(db)
    db.succeed(
        "sudo -u postgres pgbackrest --stanza=default restore >/dev/null",
        # What nixpkgs' preStart does on every start.
        f"sudo -u postgres ln -sfn {conf_link} {PGDATA}/postgresql.conf",
        f"mkdir -p /run/postgresql && chown postgres:postgres /run/postgresql",
        f"sudo -u postgres {PG_BIN}/pg_ctl -D {PGDATA} -l /tmp/hand-restore.log -w -t 3600 start >/dev/null",
    )
    db.wait_until_succeeds("test \"$(sudo -u postgres psql -XAt -c 'SELECT pg_is_in_recovery()')\" = f")
    hand_seconds = (uptime_us(db) - begin) / 1e6
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    db.succeed(f"sudo -u postgres {PG_BIN}/pg_ctl -D {PGDATA} -w stop -m fast >/dev/null")
    log.info(
        f"measure: hand restore (pgbackrest restore + pg_ctl start + wait for the end of recovery): {hand_seconds:.1f} s; "
        f"the units without a reboot served after {serving_seconds / hand_seconds:.2f}x that, "
        f"and wrote the receipt after {units_seconds / hand_seconds:.2f}x"
    )
    db.succeed("systemctl start postgresql.service")
    db.wait_until_succeeds("systemctl is-active postgresql-preseed-verify.service")

with subtest("snapdir=visible: .zfs in an otherwise empty PGDATA (issue 10.16)"):
    probe = "/var/lib/postgresql/probe"
    config = "/tmp/probe-config.json"
    # The module's config with PGDATA, receipt and required dataset moved to the probe.
    db.succeed(
        "python3 -c \"import json; c = json.load(open('/etc/pg-preseed/config.json')); "
        f"c['pgdata'] = '{probe}'; c['marker'] = '/var/lib/postgresql-preseed/probe/receipt.json'; "
        "c['require_mount'] = {'dataset': 'tank/probe', 'fstype': None}; c['datasets'] = []; "
        f"json.dump(c, open('{config}', 'w'))\"",
        "mkdir -p /var/lib/postgresql-preseed/probe && chown postgres:postgres /var/lib/postgresql-preseed/probe",
    )
    for snapdir in ("visible", "hidden"):
        db.succeed(
            f"zfs create -o mountpoint={probe} -o snapdir={snapdir} tank/probe",
            f"chown postgres:postgres {probe} && chmod 0750 {probe}",
        )
        listing = db.succeed(f"ls -A {probe}").split()
        status, restore_out = db.execute(
            f"sudo -u postgres pgbackrest --stanza=default --pg1-path={probe} restore 2>&1 | tail -3"
        )
        restored = db.succeed(f"test -e {probe}/PG_VERSION && echo yes || echo no").strip()
        db.succeed(f"zfs destroy tank/probe && zfs create -o mountpoint={probe} -o snapdir={snapdir} tank/probe",
                   f"chown postgres:postgres {probe} && chmod 0750 {probe}")
        initdb_status, initdb_out = db.execute(f"sudo -u postgres {PG_BIN}/initdb -D {probe} 2>&1 | tail -4")
        db.succeed(f"zfs destroy tank/probe && zfs create -o mountpoint={probe} -o snapdir={snapdir} tank/probe",
                   f"chown postgres:postgres {probe} && chmod 0750 {probe}")
        plan_status, plan_out = db.execute(f"sudo -u postgres /etc/pg-preseed/bin/pg-preseed --config {config} plan --json 2>&1")
        db.succeed("zfs destroy tank/probe")
        one_line = lambda text: " / ".join(line.strip() for line in text.strip().splitlines())  # noqa: E731
        log.info(f"measure: snapdir={snapdir}: `ls -A PGDATA` = {listing}")
        log.info(f"measure: snapdir={snapdir}: pgbackrest restore: exit {status}, PG_VERSION restored: {restored}: {one_line(restore_out)}")
        log.info(f"measure: snapdir={snapdir}: initdb: exit {initdb_status}: {one_line(initdb_out)}")
        log.info(f"measure: snapdir={snapdir}: pg-preseed plan: exit {plan_status}: {one_line(plan_out)[:600]}")

def stack_at(node, path):
    """The datasets mounted on `path`, bottom first (from /proc/self/mountinfo)."""
    mounts = []
    for line in node.succeed("cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == path:
            mounts.append((fields[0], fields[1], fields[fields.index("-") + 2]))
    ids = {m[0] for m in mounts}
    ordered = [m for m in mounts if m[1] not in ids]
    while len(ordered) < len(mounts):
        ordered += [m for m in mounts if m[1] == ordered[-1][0]]
    return [m[2] for m in ordered]


with subtest("the incident's two datasets: what zfs mount -a stacks, run after run"):
    point = "/srv/incident"
    stray, declared = "tank/incident/postgres", "tank/incident/postgresql"
    db.succeed(
        "zfs create -o mountpoint=none tank/incident",
        f"zfs create -o mountpoint={point} {stray}",
        f"touch {point}/.preseed-completed",
        f"zfs create -o mountpoint={point} {declared}",
    )
    for overlay in ("on", "off"):
        db.succeed(f"zfs set overlay={overlay} {declared}")
        seen = {}
        for _ in range(8):
            db.succeed(f"while grep -q ' {point} ' /proc/self/mountinfo; do umount {point}; done")
            status, _ = db.execute("zfs mount -a 2>&1")
            key = f"exit {status}: " + (" under ".join(reversed(stack_at(db, point))) or "nothing")
            seen[key] = seen.get(key, 0) + 1
        log.info(f"measure: incident layout, overlay=on on {stray}, overlay={overlay} on {declared}: "
                 + "; ".join(f"{k} ({n}/8)" for k, n in sorted(seen.items())))
    db.succeed(f"while grep -q ' {point} ' /proc/self/mountinfo; do umount {point}; done", "zfs destroy -r tank/incident")

with subtest("preflight with 1, 50 and 500 datasets"):
    db.succeed("zfs create -o mountpoint=/bench tank/bench")
    made = 1
    for total in (1, 50, 500):
        if total > made:
            db.succeed(f"seq {made + 1} {total} | xargs -P 8 -I@ zfs create tank/bench/d@", timeout=3600)
        made = total
        assert int(db.succeed(f"{ZFS_LIST} -r tank/bench | wc -l")) == total
        datasets = int(db.succeed(f"{ZFS_LIST} | wc -l"))
        mounts = int(db.succeed("wc -l < /proc/self/mountinfo"))
        listing = median_ms(db, ZFS_LIST)
        cli = median_ms(db, f"sudo -u postgres {PG_PRESEED} preflight")
        # The unit as it runs at boot (sandbox set-up included): ExecMainStart to ExecMainExit.
        unit_times = []
        for _ in range(3):
            db.succeed("systemctl restart postgresql-preseed-preflight.service")
            start = monotonic(db, "postgresql-preseed-preflight.service", "ExecMainStartTimestampMonotonic")
            end = monotonic(db, "postgresql-preseed-preflight.service", "ExecMainExitTimestampMonotonic")
            unit_times.append((end - start) // 1000)
        unit = sorted(unit_times)[1]
        log.info(
            f"measure: preflight, {total} bench datasets ({datasets} filesystems, {mounts} mounts): "
            f"zfs list {listing} ms; pg-preseed preflight {cli} ms ({cli / listing:.1f}x zfs list); "
            f"the preflight unit {unit} ms (median of 3)"
        )
    # Each command pg-preseed runs is logged at debug level ("running command=…").
    commands = db.succeed(f"sudo -u postgres {PG_PRESEED} -vv preflight 2>&1 >/dev/null | grep -c ' running ' || true").strip()
    log.info(f"measure: preflight ran {commands} command(s) (pg-preseed -vv)")
