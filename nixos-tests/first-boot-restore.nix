# A new machine with an empty dataset and backups in the repository: PostgreSQL comes up with the
# data, and the receipt records the restored cluster's system identifier.
{common}: {
  name = "postgresql-preseed-first-boot-restore";
  globalTimeout = 1800;
  nodes = {
    backup = common.backup;
    old = common.db {onNoBackup = "initdb";};
    new = common.db {verifySql = ["SELECT count(*) = 1000 FROM t"];};
  };
  testScript = common.testScript "first-boot-restore";
}
