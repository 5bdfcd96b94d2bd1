backup.start()
backup.wait_for_unit("nfs-server.service")
db.start()

with subtest("no receipt, an empty repository: a new cluster"):
    create_pool(db)
    wait_verified(db)
    assert receipt(db)["action"] == "fresh"
    assert "decision: fresh" in journal(db, "postgresql-preseed.service")

with subtest("the loop closes: stanza, first backup, and it restores"):
    fill(db, 1000)
    take_backup(db)
    info = json.loads(pgbackrest(db, "--output=json info"))
    assert len(info[0]["backup"]) == 1, info
    wipe(db)
    db.shutdown()
    db.start()
    wait_verified(db)
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    assert receipt(db)["action"] == "restored"
