"""The scenario's private link: a learning Ethernet switch between the nodes' virtio NICs.

Each QEMU connects with `-netdev stream,server=off,addr.type=unix,addr.path=SOCKET`; frames travel
as a 4-byte big-endian length and the frame. The switch forwards a frame to the port that last
sent from its destination MAC, or to every other port (broadcast, unknown). Nothing is bridged to
the host's network: the guests can reach each other and nothing else, and their traffic never
appears on any host interface (it is a unix socket). A node that powers off disconnects; when it
starts again, it connects anew.

Why not QEMU's own options: `-netdev dgram` over unix sockets links exactly two NICs (three nodes
need a switch), `socket,mcast=` puts the frames on a UDP multicast group of the host, `hubport`
only links NICs of one QEMU, and vde_switch would be one more host package. This is a few dozen
lines of standard library.

Run: python3 -m vmtest.hub SOCKET  (the driver starts it and stops it by its pid).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading

BROADCAST_BIT = 0x01


class Switch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ports: list[socket.socket] = []
        self.macs: dict[bytes, socket.socket] = {}
        self.send_locks: dict[socket.socket, threading.Lock] = {}

    def serve(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        while True:
            conn, _ = listener.accept()
            with self.lock:
                self.ports.append(conn)
                self.send_locks[conn] = threading.Lock()
            threading.Thread(target=self.port, args=(conn,), daemon=True).start()

    def port(self, conn: socket.socket) -> None:
        try:
            while True:
                header = _recv_exactly(conn, 4)
                if header is None:
                    break
                (length,) = struct.unpack(">I", header)
                frame = _recv_exactly(conn, length)
                if frame is None or length < 14:
                    break
                self.forward(conn, header + frame, frame[0:6], frame[6:12])
        finally:
            with self.lock:
                self.ports.remove(conn)
                del self.send_locks[conn]
                for mac in [m for m, p in self.macs.items() if p is conn]:
                    del self.macs[mac]
            conn.close()

    def forward(self, source: socket.socket, packet: bytes, dst: bytes, src: bytes) -> None:
        with self.lock:
            self.macs[src] = source
            known = self.macs.get(dst) if not dst[0] & BROADCAST_BIT else None
            targets = [known] if known is not None else [p for p in self.ports if p is not source]
            locks = [(t, self.send_locks[t]) for t in targets if t in self.send_locks]
        for target, lock in locks:
            try:
                with lock:
                    target.sendall(packet)
            except OSError:
                pass  # that node is powering off; its own thread cleans up


def _recv_exactly(conn: socket.socket, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


if __name__ == "__main__":
    Switch().serve(sys.argv[1])
