# PGDATA's dataset fails to mount at boot (a leftover file in the directory underneath, and
# overlay=off): refused; nothing is written to the directory on the root filesystem.
{common}: {
  name = "postgresql-preseed-dataset-not-mounted";
  globalTimeout = 1800;
  nodes = {
    backup = common.backup;
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
    };
  };
  testScript = common.testScript "dataset-not-mounted";
}
