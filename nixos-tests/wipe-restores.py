backup.start()
backup.wait_for_unit("nfs-server.service")
db.start()

with subtest("a first deployment gets data, a backup, and more data after it"):
    create_pool(db)
    wait_verified(db)
    fill(db, 1000)
    take_backup(db)
    psql(db, "INSERT INTO t SELECT i, 'after the backup' FROM generate_series(1001, 1100) i")
    # Switch WAL and wait until it is archived, so the restore can replay it.
    pgbackrest(db, "check")
    before = receipt(db)

with subtest("emptying PGDATA is enough: no marker is deleted by hand"):
    wipe(db)
    db.shutdown()
    db.start()
    wait_verified(db)
    assert psql(db, "SELECT count(*) FROM t") == "1100"
    r = receipt(db)
    assert r["action"] == "restored", r
    assert r["system_identifier"] == before["system_identifier"], (r, before)
    assert "decision: restore" in journal(db, "postgresql-preseed.service")

with subtest("without a reboot: stop, empty, start restores again (no initdb)"):
    psql(db, "INSERT INTO t SELECT i, 'second drill' FROM generate_series(1101, 1200) i")
    pgbackrest(db, "check")
    first = receipt(db)
    wipe(db)
    db.systemctl("start postgresql.service")
    db.wait_for_unit("postgresql.service")
    # Stopping PostgreSQL stopped the verify unit (it requires PostgreSQL); starting it ran
    # verify again, which wrote a new receipt for this restore.
    db.wait_until_succeeds("systemctl is-active postgresql-preseed-verify.service")
    assert psql(db, "SELECT count(*) FROM t") == "1200"
    assert_no_initdb(db)
    second = receipt(db)
    assert second["action"] == "restored", second
    assert second["restored_at"] != first["restored_at"], (first, second)
