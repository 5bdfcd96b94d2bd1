STRAY = "tank/services/postgres"

with subtest("a server with data and a backup"):
    start_with_data(db)

with subtest("the incident's layout: a stray dataset under PGDATA's, the top one emptied"):
    db.systemctl("stop postgresql.service")
    db.succeed(
        f"zfs umount {DATASET}",
        f"zfs create -o mountpoint={PGDATA} {STRAY}",
        f"touch {PGDATA}/.preseed-completed",
        # What overlay=on did at boot: mount the real dataset over the busy directory.
        f"zfs mount -O {DATASET}",
        f"find {PGDATA} -mindepth 1 -delete",
    )
    db.shutdown()
    db.start()
    db.wait_for_unit("multi-user.target")

with subtest("refused before PostgreSQL: no initdb, both datasets named"):
    db.require_unit_state("postgresql-preseed-datasets.service", "failed")
    db.fail("systemctl is-active postgresql.service")
    db.fail(f"test -e {PGDATA}/PG_VERSION")
    text = journal(db, "postgresql-preseed-datasets.service")
    assert f"dataset {STRAY} " in text, text
    assert DATASET in text, text
    assert_no_initdb(db)

with subtest("with the stray dataset destroyed, a restart restores"):
    db.succeed(
        # Which of the two `zfs mount -a` mounted first at boot varies (it mounts in parallel):
        # with the stray one on top, `zfs umount DATASET` would unmount the top mount, by path.
        # Unmount whatever is stacked on PGDATA instead.
        f"while mountpoint -q {PGDATA}; do umount {PGDATA}; done",
        f"zfs destroy {STRAY}",
        f"zfs mount {DATASET}",
        "systemctl reset-failed",
    )
    db.systemctl("start postgresql.service")
    wait_verified(db)
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    assert receipt(db)["action"] == "restored"

with subtest("snapdir=visible: .zfs at PGDATA's root is ZFS's, not data"):
    wipe(db)
    db.succeed(f"zfs set snapdir=visible {DATASET}")
    # OpenZFS lists its control directory at the dataset's root, with inode ZFSCTL_INO_ROOT.
    assert db.succeed(f"ls -A {PGDATA}").split() == [".zfs"]
    assert db.succeed(f"stat -c %i {PGDATA}/.zfs").strip() == str(0xFFFFFFFFFFFF)
    db.fail("systemctl start postgresql.service")
    text = journal(db, "postgresql-preseed.service")
    assert "lists ZFS's .zfs directory" in text, text
    assert "zfs set snapdir=hidden" in text, text
    db.fail(f"test -e {PGDATA}/PG_VERSION")
    assert_no_initdb(db)
    # The datasets unit hides it, as it does at every boot for a declared dataset.
    db.succeed("systemctl restart postgresql-preseed-datasets.service", "systemctl reset-failed")
    assert db.succeed(f"zfs get -H -o value snapdir {DATASET}").strip() == "hidden"
    db.systemctl("start postgresql.service")
    wait_verified(db)
    assert psql(db, "SELECT count(*) FROM t") == "1000"
