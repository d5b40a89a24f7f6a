"""The Python Kubernetes client for a cluster on a remote host, reached through SSH itself.

The API server listens where the host's kubeconfig says (k3d: https://0.0.0.0:<port>, kwok:
https://127.0.0.1:<port>), usually on the host's loopback. `api_client(c, t)` reads that
kubeconfig over SSH into memory (no file on the host; the client library keeps its certificates
in owner-only temp files here until exit), listens on a kernel-chosen port of this machine's
127.0.0.1, carries each connection to the API server in an SSH direct-tcpip channel - so nothing
new listens on the host - and points the client at the local port while TLS still verifies the
server under its original name (`tls-server-name`).
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import yaml
from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target
from .._core.target import Target
from . import hosts as _hosts

CHUNK = 65536
CHANNEL_OPEN_TIMEOUT = 10.0
# Wildcard listen addresses in a kubeconfig mean "this machine" to the host's kubectl.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@contextmanager
def api_client(c: Context, t: Target) -> Iterator[Any]:
    """An ApiClient for context `t.context` on the host behind `c`; the tunnel closes on exit."""
    from kubernetes import config as kube_config
    from urllib3.exceptions import HTTPError

    config = remote_kubeconfig(c, t)
    cluster = config["clusters"][0]["cluster"]
    server = urlsplit(cluster["server"])
    name = server.hostname or ""
    port = server.port or 443
    c.open()  # type: ignore[attr-defined]  # a fabric Connection
    with Forwarder(c.transport, (_LOOPBACK.get(name, name), port)) as forwarder:  # type: ignore[attr-defined]
        cluster["server"] = server._replace(netloc=f"127.0.0.1:{forwarder.port}").geturl()
        cluster.setdefault("tls-server-name", name)  # verify the certificate for `name`
        client = kube_config.new_client_from_config_dict(
            config, context=t.context, persist_config=False
        )
        try:
            yield client
        except HTTPError:
            if forwarder.error is None:
                raise
            raise Exit(
                f"cannot reach the Kubernetes API at {name}:{port} from {_command.label(c)} "
                f"({forwarder.error}); is the cluster running? `inv cluster.start`",
                code=1,
            ) from None
        finally:
            client.close()


def kubeconfig_query(t: Target) -> list[str]:
    """The command that prints the host's kubeconfig for `t.context` (`remote_kubeconfig`)."""
    return ["kubectl", "config", "view", "--raw", "--minify", "--flatten", *_target.kube_flags(t)]


def remote_kubeconfig(c: Context, t: Target) -> dict[str, Any]:
    """The host's kubeconfig for `t.context` alone, credentials inlined, as a dict in memory."""
    result = _command.query(c, kubeconfig_query(t))
    if result.exited == 127:
        raise _hosts.tool_missing(c, "kubectl")
    config = yaml.safe_load(result.stdout) if result.ok else None
    if not config or not config.get("clusters"):
        detail = (result.stderr.strip().splitlines() or [f"exit {result.exited}"])[-1]
        raise Exit(
            f"no kubeconfig context {t.context} on host {_command.label(c)} ({detail}); "
            "run `inv cluster.create`",
            code=1,
        )
    return dict(config)


class Forwarder:
    """Listen on 127.0.0.1:<free port>; each accepted connection gets its own direct-tcpip
    channel to `remote` over `transport`. The port is bound before `__enter__` returns, so a
    client can connect at once; a channel the host refuses closes the local connection (the
    client fails fast instead of hanging) and is remembered in `error`."""

    def __init__(self, transport: Any, remote: tuple[str, int]) -> None:
        self.transport = transport
        self.remote = remote
        self.error: Exception | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()  # readable once closing: wakes all
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Forwarder:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._wake_w.send(b"x")
        self._threads[0].join(timeout=5)  # the acceptor first: then no pump starts any more
        with self._lock:
            pumps = self._threads[1:]
        for thread in pumps:
            thread.join(timeout=5)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                local, peer = self._listener.accept()
                try:
                    channel = self.transport.open_channel(
                        "direct-tcpip", self.remote, peer, timeout=CHANNEL_OPEN_TIMEOUT
                    )
                except Exception as error:  # paramiko.ChannelException, SSHException, EOFError
                    self.error = error
                    local.close()
                    continue
                self._spawn(self._pump, local, channel)

    def _pump(self, local: socket.socket, channel: Any) -> None:
        """Copy both ways until either side closes or the forwarder does."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(local, selectors.EVENT_READ)
                selector.register(channel, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while True:
                    ready = {key.fileobj for key, _ in selector.select()}
                    if self._wake_r in ready:
                        return
                    if local in ready:
                        data = local.recv(CHUNK)
                        if not data:
                            return
                        channel.sendall(data)
                    if channel in ready:
                        data = channel.recv(CHUNK)
                        if not data:
                            return
                        local.sendall(data)
        except OSError:
            return  # the client or the host hung up mid-transfer
        finally:
            channel.close()
            local.close()
