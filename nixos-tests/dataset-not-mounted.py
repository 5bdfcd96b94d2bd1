with subtest("a server with data and a backup"):
    start_with_data(db)
    # The datasets unit set overlay=off on PGDATA's dataset.
    db.succeed(f"zfs get -H -o value overlay {DATASET} | grep -qx off")

with subtest("the dataset does not mount at the next boot"):
    db.systemctl("stop postgresql.service")
    db.succeed(f"zfs umount {DATASET}", f"echo left-behind > {PGDATA}/leftover.txt")
    db.shutdown()
    db.start()
    db.wait_for_unit("multi-user.target")
    db.succeed(f"zfs get -H -o value mounted {DATASET} | grep -qx no")

with subtest("refused; the directory on the root filesystem is untouched"):
    db.require_unit_state("postgresql-preseed-preflight.service", "failed")
    db.fail("systemctl is-active postgresql.service")
    text = journal(db, "postgresql-preseed-preflight.service")
    assert "dataset_not_mounted" in text and DATASET in text, text
    assert db.succeed(f"ls -A {PGDATA}").split() == ["leftover.txt"]
