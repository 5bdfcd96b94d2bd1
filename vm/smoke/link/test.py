# Smoke (c): nodes on the scenario's private link. Names resolve to the link's addresses, an NFS
# export of one node is mounted on another, a third node that starts later (as first-boot-restore's
# `new` does after `old`) reaches it too, and there is no route anywhere else. At most two guests
# run at once.
import time

server.start()
client.start()
server.wait_for_unit("nfs-server.service")
client.wait_for_unit("multi-user.target")

with subtest("node names resolve to the private link's addresses; no route out"):
    # Sorted node names are numbered from 1, as in NixOS test VMs.
    assert client.succeed("getent hosts server").split() == ["192.168.1.3", "server"]
    assert server.succeed("getent hosts client").split() == ["192.168.1.1", "client"]
    assert client.succeed("hostname").strip() == "client"
    assert client.succeed("ip -4 route show default") == ""
    assert client.succeed("ip -o -4 address show eth0").split()[3] == "192.168.1.1/24"

with subtest("an NFS export of one node, mounted on another"):
    server.succeed("echo from-server > /srv/share/hello")
    client.succeed("mkdir -p /mnt/share", "mount -t nfs -o soft,timeo=30,retrans=2 server:/srv/share /mnt/share")
    assert client.succeed("cat /mnt/share/hello") == "from-server\n"
    client.succeed("head -c 64M /dev/urandom > /tmp/blob")
    tic = time.monotonic()
    client.succeed("cp /tmp/blob /mnt/share/blob && sync")
    seconds = time.monotonic() - tic
    checksum = client.succeed("sha256sum < /tmp/blob")
    assert server.succeed("sha256sum < /srv/share/blob") == checksum
    log.info(f"measure: NFS write of 64 MiB client -> server: {seconds:.1f} s ({64 / seconds:.1f} MiB/s)")

with subtest("a third node, started after the first one stopped, reads the same export"):
    client.shutdown()
    other.start()
    other.wait_for_unit("multi-user.target")
    other.succeed("mkdir -p /mnt/share", "mount -t nfs -o soft,timeo=30,retrans=2 server:/srv/share /mnt/share")
    tic = time.monotonic()
    assert other.succeed("sha256sum < /mnt/share/blob") == checksum
    seconds = time.monotonic() - tic
    log.info(f"measure: NFS read of 64 MiB server -> other: {seconds:.1f} s ({64 / seconds:.1f} MiB/s)")

with subtest("the server goes away: the soft mount fails instead of hanging"):
    server.shutdown()
    other.fail("timeout 60 stat /mnt/share/hello")
