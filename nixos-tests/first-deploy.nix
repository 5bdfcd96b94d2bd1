# An empty repository without a stanza and onNoBackup = "initdb": PostgreSQL initialises a new
# cluster; then stanza-create and a first backup succeed, and that backup restores.
{common}: {
  name = "postgresql-preseed-first-deploy";
  globalTimeout = 1800;
  nodes = {
    backup = common.backup;
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
    };
  };
  testScript = common.testScript "first-deploy";
}
