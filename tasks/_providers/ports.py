"""Is a host port free for a cluster to publish? Both providers ask before they create."""

from __future__ import annotations

import errno
import socket


def port_unavailable(port: int) -> str:
    """Why k3d could not publish `port` on this host ("" when it is free): it binds all
    addresses, so a listener on loopback or on any address is in the way."""
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR: a socket in TIME_WAIT is no obstacle, a listening one still is
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return "is already in use"
                if error.errno == errno.EACCES:
                    return "is privileged (below 1024) and this user may not bind it"
                return f"cannot be bound ({error.strerror})"
    return ""
