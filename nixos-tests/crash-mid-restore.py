backup.start()
backup.wait_for_unit("nfs-server.service")
db.start()

with subtest("a server with enough data that a restore takes a while, and a backup"):
    create_pool(db)
    wait_verified(db)
    db.succeed("sudo -u postgres pgbench -i -s 30 postgres")
    fill(db, 1000)
    take_backup(db)

with subtest("power is cut in the middle of the restore"):
    wipe(db)
    db.succeed("systemctl restart --no-block postgresql-preseed.service")
    db.wait_until_succeeds(f"test -e {PGDATA}/backup.manifest", timeout=300)
    db.sleep(2)
    # Still the first boot's receipt: nothing claims the unfinished restore was done.
    assert receipt(db)["action"] == "fresh"
    db.crash()

with subtest("the next boot resumes and completes the restore"):
    db.start()
    wait_verified(db)
    assert "decision: resume" in journal(db, "postgresql-preseed.service")
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    assert receipt(db)["action"] == "restored"
    assert "receipt written" in journal(db, "postgresql-preseed-verify.service")
