# A running server is stopped and PGDATA emptied, the receipt left in place: the next start
# restores. (The seed's runbook needed "delete marker (CRITICAL!)" here; this does not.)
{common}:
common.standard {name = "wipe-restores";}
