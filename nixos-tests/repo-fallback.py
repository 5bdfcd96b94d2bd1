S3_ENV = "env PGBACKREST_REPO2_S3_KEY=preseedkey PGBACKREST_REPO2_S3_KEY_SECRET=preseedsecret"

backup.start()
backup.wait_for_unit("nfs-server.service")
backup.wait_for_unit("minio.service")
# Create the bucket with a signed S3 request (any S3 server understands it; 409 = it exists).
backup.wait_until_succeeds(
    "code=$(curl --silent --insecure --output /dev/null --write-out '%{http_code}'"
    " --aws-sigv4 aws:amz:us-east-1:s3 --user preseedkey:preseedsecret"
    " -X PUT https://localhost:9000/pgbackrest) && [ \"$code\" = 200 ] || [ \"$code\" = 409 ]"
)
db.start()

with subtest("a server with data, backed up to both repositories"):
    create_pool(db)
    wait_verified(db)
    fill(db, 1000)
    db.succeed(f"sudo -u postgres {S3_ENV} pgbackrest --stanza={STANZA} stanza-create")
    db.succeed(f"sudo -u postgres {S3_ENV} pgbackrest --stanza={STANZA} --repo=1 --type=full backup")
    db.succeed(f"sudo -u postgres {S3_ENV} pgbackrest --stanza={STANZA} --repo=2 --type=full backup")

with subtest("the NFS share is gone at the next boot"):
    wipe(db)
    backup.systemctl("stop nfs-server.service")
    db.shutdown()
    db.start()

with subtest("restored from the S3 repository, and the receipt says so"):
    wait_verified(db)
    assert psql(db, "SELECT count(*) FROM t") == "1000"
    r = receipt(db)
    assert r["source"]["repo"] == 2, r
    text = journal(db, "postgresql-preseed.service")
    assert "repo1 (nfs) is unreachable" in text, text
