# The seed's exact layout: tank/services/postgres and tank/services/postgresql both with mountpoint
# /var/lib/postgresql/16, the old marker on the bottom one, PGDATA emptied on the top one. The
# datasets unit and preflight refuse, postgresql.service does not start, no initdb runs, and the
# journal names both datasets. After `zfs destroy` of the stray dataset, a restart restores.
{common}: {
  name = "postgresql-preseed-incident-stacked-datasets";
  globalTimeout = 1800;
  nodes = {
    backup = common.backup;
    db = common.db {
      onNoBackup = "initdb";
      verifySql = ["SELECT count(*) > 0 FROM pg_class"];
    };
  };
  testScript = common.testScript "incident-stacked-datasets";
}
