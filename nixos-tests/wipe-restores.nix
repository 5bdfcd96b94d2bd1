# A running server is stopped and PGDATA emptied, the receipt left in place: the next start
# restores. (The seed's runbook needed "delete marker (CRITICAL!)" here; this does not.)
{common}: {
  name = "postgresql-preseed-wipe-restores";
  globalTimeout = 1800;
  nodes = {
    backup = common.backup;
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
    };
  };
  testScript = common.testScript "wipe-restores";
}
