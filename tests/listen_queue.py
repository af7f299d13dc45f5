"""How many connections wait on a listening socket, for tests of how a server accepts them."""

import socket
import struct


def listen_queue(sock: socket.socket) -> int:
    """Connections the kernel has completed and no process has accepted yet (Linux: a listening
    socket's TCP_INFO holds its accept queue's length where a connected one holds unacked segments)."""
    return int(struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0])
