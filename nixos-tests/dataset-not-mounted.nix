# PGDATA's dataset fails to mount at boot (a leftover file in the directory underneath, and
# overlay=off): refused; nothing is written to the directory on the root filesystem.
{common}:
common.standard {name = "dataset-not-mounted";}
