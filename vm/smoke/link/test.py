# Smoke (c): two nodes on the scenario's private link. Names resolve to the link's addresses, an
# NFS export of one node is mounted on the other, and there is no route anywhere else.
import time

start_all()
server.wait_for_unit("nfs-server.service")
client.wait_for_unit("multi-user.target")

with subtest("node names resolve to the private link's addresses; no route out"):
    # Sorted node names are numbered from 1, as in NixOS test VMs.
    assert client.succeed("getent hosts server").split() == ["192.168.1.2", "server"]
    assert server.succeed("getent hosts client").split() == ["192.168.1.1", "client"]
    assert client.succeed("hostname").strip() == "client"
    assert client.succeed("ip -4 route show default") == ""
    assert client.succeed("ip -o -4 address show eth0").split()[3] == "192.168.1.1/24"

with subtest("an NFS export of one node, mounted on the other"):
    server.succeed("echo from-server > /srv/share/hello")
    client.succeed("mkdir -p /mnt/share", "mount -t nfs -o soft,timeo=30,retrans=2 server:/srv/share /mnt/share")
    assert client.succeed("cat /mnt/share/hello") == "from-server\n"
    client.succeed("head -c 64M /dev/urandom > /tmp/blob")
    tic = time.monotonic()
    client.succeed("cp /tmp/blob /mnt/share/blob && sync")
    seconds = time.monotonic() - tic
    assert server.succeed("sha256sum < /srv/share/blob") == client.succeed("sha256sum < /tmp/blob")
    log.info(f"measure: NFS write of 64 MiB client -> server: {seconds:.1f} s ({64 / seconds:.1f} MiB/s)")

with subtest("the server goes away: the client's soft mount fails instead of hanging"):
    server.shutdown()
    client.fail("timeout 60 stat /mnt/share/hello")
