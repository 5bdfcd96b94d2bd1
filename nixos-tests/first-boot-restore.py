backup.start()
backup.wait_for_unit("nfs-server.service")

with subtest("the old server starts empty, gets data and a backup"):
    old.start()
    create_pool(old)
    wait_verified(old)
    assert receipt(old)["action"] == "fresh"
    fill(old, 1000)
    take_backup(old)
    old_system_identifier = psql(old, "SELECT system_identifier FROM pg_control_system()")
    old.shutdown()

with subtest("a new machine with an empty dataset restores on its first boot"):
    new.start()
    create_pool(new)
    wait_verified(new)
    assert psql(new, "SELECT count(*) FROM t") == "1000"
    r = receipt(new)
    assert r["action"] == "restored", r
    assert r["system_identifier"] == old_system_identifier, (r, old_system_identifier)
    assert r["source"]["repo"] == 1, r
    new.succeed(f"zfs get -H -o value mounted {DATASET} | grep -qx yes")
    # nixpkgs' preStart never got to run initdb.
    assert_no_initdb(new)
