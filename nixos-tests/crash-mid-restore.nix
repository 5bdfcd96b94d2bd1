# Power loss during the restore: the next boot resumes it (pgBackRest --delta) and completes; no
# receipt is written before the verify step.
{common}: {
  name = "postgresql-preseed-crash-mid-restore";
  globalTimeout = 2400;
  nodes = {
    backup = common.backup;
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
    };
  };
  testScript = common.testScript "crash-mid-restore";
}
