# The seed's exact layout: tank/services/postgres and tank/services/postgresql both with mountpoint
# /var/lib/postgresql/17, the old marker on the bottom one, PGDATA emptied on the top one. The
# datasets unit and preflight refuse, postgresql.service does not start, no initdb runs, and the
# journal names both datasets. After `zfs destroy` of the stray dataset, a restart restores.
{common}:
common.standard {name = "incident-stacked-datasets";}
