"""What the boot checks (checks.py) expect of each rendered scenario, node by node, each with the
reason it is expected. A node not named expects nothing failed, no journal fields and a clean
`systemd-analyze verify`."""

from __future__ import annotations

from .checks import NodeExpectations as Node

RUN = "postgresql-preseed.service"


def restored(why: str) -> tuple[str, dict[str, str], str]:
    return (RUN, {"DECISION": "restore", "OUTCOME": "ok"}, why)


EXPECTATIONS: dict[str, dict[str, Node]] = {
    "first-boot-restore": {
        # `old` is off at the end (the script shuts it down): its journal is not read.
        "new": Node(journal=[restored("the new machine's first boot restored the old one's backup")]),
    },
    "wipe-restores": {
        "db": Node(journal=[restored("emptying PGDATA made the next start restore")]),
    },
    "incident-stacked-datasets": {
        "db": Node(journal=[restored("after the stray dataset is destroyed, a restart restores")]),
    },
    "dataset-not-mounted": {
        "db": Node(
            failed={
                "postgresql-preseed-preflight.service": "the scenario's point: PGDATA's dataset is not mounted, preflight refuses",
                "zfs-mount.service": "`zfs mount -a` cannot mount PGDATA's dataset (overlay=off, a leftover file in the "
                "directory underneath) and exits 1: that is how the dataset comes to be not mounted",
            },
        ),
    },
    "crash-mid-restore": {
        "db": Node(journal=[(RUN, {"DECISION": "resume"}, "the boot after the power cut resumes the restore")]),
    },
    "first-deploy": {
        "db": Node(
            journal=[
                (RUN, {"DECISION": "fresh"}, "an empty repository without a stanza: initdb allowed"),
                restored("after the first backup and a wipe, the next boot restores"),
            ]
        ),
    },
    "repo-fallback": {
        "db": Node(
            failed={
                "mnt-pgbackrest.mount": "the scenario stops the NFS server before this boot: the share cannot mount "
                "(nofail; its mount timeout, 15 s on NixOS, is 60 s here: render.py), which is why repo1 is unreachable",
            },
            journal=[restored("repo1 (NFS) is down: restored from repo2 (S3)")],
        ),
    },
}
