"""Is a host port free for a cluster to publish? Both providers ask before they create."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from invoke import Context, Exit

from .._core import command as _command


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


def busy(c: Context, ports: Iterable[int]) -> dict[int, str]:
    """Why each unusable port cannot be published, on the machine the commands run on: here
    by binding it; on a -H host by connecting to it there (bash's /dev/tcp, one round trip for
    all of them), since a port free here says nothing about the host."""
    wanted = list(dict.fromkeys(ports))
    if not _command.is_remote(c):
        return {port: why for port in wanted if (why := port_unavailable(port))}
    probe = " ".join(map(str, wanted))
    script = (
        f"for p in {probe}; do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && echo $p; done; true"
    )
    answer = _command.query(c, ["bash", "-c", script])
    if not answer.ok:
        raise Exit(
            f"cannot check ports {probe} on host {_command.label(c)}: {_command.why(answer)}",
            code=1,
        )
    host = _command.label(c)
    return {int(port): f"is already in use on host {host}" for port in answer.stdout.split()}
