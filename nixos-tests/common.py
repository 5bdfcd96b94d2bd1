# Helpers shared by every scenario's test script (prepended to it by common.nix).
import json
import shlex

PGDATA = "/var/lib/postgresql/17"
RECEIPT = "/var/lib/postgresql-preseed/17/receipt.json"
DATASET = "tank/services/postgresql"
STANZA = "default"


def create_pool(node):
    """The VM boots once without a pool: the datasets unit fails and PostgreSQL stays down,
    as it should. Make the pool on the second disk and reboot, so it is imported at boot and
    the datasets unit creates the declared dataset before ZFS mounts it."""
    node.wait_for_unit("multi-user.target")
    node.succeed(
        "parted --script /dev/vdb mklabel msdos",
        "parted --script /dev/vdb -- mkpart primary 1M -1s",
        "zpool create -m none tank /dev/vdb1",
        "sync",
    )
    node.shutdown()
    node.start()


def psql(node, sql):
    return node.succeed(f"sudo -u postgres psql -XAt -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}").strip()


def pgbackrest(node, args):
    return node.succeed(f"sudo -u postgres pgbackrest --stanza={STANZA} {args}")


def receipt(node):
    return json.loads(node.succeed(f"cat {RECEIPT}"))


def wait_verified(node):
    """PostgreSQL is up and the verify unit has written the receipt."""
    node.wait_for_unit("postgresql.service")
    node.wait_for_unit("postgresql-preseed-verify.service")


def fill(node, rows):
    psql(
        node,
        "CREATE TABLE t (id int PRIMARY KEY, payload text NOT NULL); "
        f"INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, {rows}) i;",
    )


def take_backup(node, repo=1):
    pgbackrest(node, "stanza-create")
    pgbackrest(node, f"--repo={repo} --type=full backup")


def wipe(node):
    """The drill: stop PostgreSQL and empty PGDATA. The receipt stays where it is."""
    node.systemctl("stop postgresql.service")
    node.succeed(f"find {PGDATA} -mindepth 1 -delete")
    node.succeed(f"test -e {RECEIPT}")


def journal(node, unit):
    """What `unit` logged since this boot."""
    return node.succeed(f"journalctl -b -o cat -u {unit}")


def assert_no_initdb(node):
    """nixpkgs' postgresql.service never ran initdb this boot (it prints this when it does).
    Read and checked here, not with `grep -q` in a pipeline: under pipefail, grep -q closing the
    pipe early makes journalctl fail with SIGPIPE, and the pipeline fails when the text IS there."""
    text = journal(node, "postgresql.service")
    assert "The files belonging to this database system" not in text, text


def start_with_data(node, rows=1000):
    """The repository host up, `node` booted on its new pool as a first deployment, given
    `rows` rows in table t and a full backup."""
    backup.start()
    backup.wait_for_unit("nfs-server.service")
    node.start()
    create_pool(node)
    wait_verified(node)
    fill(node, rows)
    take_backup(node)
