"""`kubectl port-forward` held open as a child process, with the local ports it listens on.

`sh` runs it: a long-lived child whose output is read line by line while it runs (the
"Forwarding from 127.0.0.1:PORT -> PORT" lines tell which local port each forward got), and
which is stopped when the block ends, however it ends."""

from __future__ import annotations

import queue
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target

READY = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")
START_TIMEOUT = 20.0
NAMESPACES = ("prism", "prism-backends")


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be listened on here now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_local(c: Context, what: str) -> None:
    if _command.is_remote(c):
        raise Exit(
            f"{what} forwards ports to this machine and does not run over -H yet; "
            f"run it on the host (ssh {_command.label(c)}), or use `ssh -L` to reach its ports",
            code=1,
        )


@dataclass
class Forward:
    namespace: str
    resource: str
    ports: dict[int, int]  # remote port -> local port
    child: Any
    errors: list[str]

    def ended(self) -> str:
        """Why the forward has ended by itself ("" while it runs)."""
        if self.child.is_alive():
            return ""
        return " ".join("".join(self.errors).split()) or f"exit {self.child.exit_code}"


@contextmanager
def forwarding(
    c: Context, namespace: str, resource: str, ports: Sequence[tuple[int, int]]
) -> Iterator[Forward]:
    """Forward (local, remote) port pairs to `resource` (svc/NAME, pod/NAME) in `namespace`;
    local 0 lets kubectl choose a free port. Yields once every forward listens; the child
    process is stopped when the block ends."""
    import sh

    t = _target.resolve(c)
    specs = [f"{local}:{remote}" if local else f":{remote}" for local, remote in ports]
    argv = [*_target.kube_flags(t), "port-forward", "-n", namespace, resource, *specs]
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    try:
        child = sh.Command("kubectl")(
            *argv,
            "--address",
            "127.0.0.1",
            _bg=True,
            _bg_exc=False,
            _out=lines.put,
            _err=errors.append,
            _ok_code=list(range(256)),  # how it ended is judged here, not raised by sh
        )
    except sh.CommandNotFound:
        raise Exit("kubectl is not installed; install it (see `inv doctor`)", code=1) from None
    try:
        mapped = _wait_listening(child, lines, errors, {remote for _, remote in ports}, resource)
        yield Forward(namespace, resource, mapped, child, errors)
    finally:
        _stop(child)


def _wait_listening(
    child: Any, lines: queue.Queue[str], errors: list[str], wanted: set[int], resource: str
) -> dict[int, int]:
    mapped: dict[int, int] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while set(mapped) != wanted:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if not child.is_alive():
                said = " ".join("".join(errors).split()) or f"exit {child.exit_code}"
                raise Exit(f"port-forward to {resource} failed: {said}", code=1) from None
            if time.monotonic() > deadline:
                raise Exit(
                    f"port-forward to {resource} did not start within {START_TIMEOUT:.0f}s",
                    code=1,
                ) from None
            continue
        match = READY.match(line)
        if match:
            mapped[int(match[2])] = int(match[1])
    return mapped


def _stop(child: Any) -> None:
    import sh

    if child.is_alive():
        with suppress(ProcessLookupError):
            child.terminate()
    with suppress(sh.ErrorReturnCode):  # ended by our SIGTERM (or earlier, by its own error)
        child.wait()


def plan(c: Context, t: _target.Target, service: str) -> tuple[str, str, list[tuple[int, int]]]:
    """(namespace, service, [(local, remote)]) for every port of a Prism Service: the same
    local port when it is free here, otherwise 0 (kubectl picks a free one), said once."""
    import json

    for namespace in NAMESPACES:
        result = _target.kubectl(
            c, "get", "service", service, "-o", "json", namespace=namespace,
            hide=True, warn=True, dry=False,
        )  # fmt: skip
        if result.ok:
            break
    else:
        raise Exit(
            f"no Service {service!r} in namespace {' or '.join(NAMESPACES)} of cluster {t.name}; "
            "`inv observe.status` lists them",
            code=1,
        )
    pairs = []
    for entry in json.loads(result.stdout)["spec"].get("ports") or []:
        remote = int(entry["port"])
        if port_free(remote):
            pairs.append((remote, remote))
        else:
            print(f"port {remote} is busy on this machine; {service}:{remote} gets a free port")
            pairs.append((0, remote))
    return namespace, service, pairs


def hold(forwards: Sequence[Forward]) -> None:
    """Until Ctrl-C; a forward that ends by itself (its pod went away) ends the task."""
    while True:
        time.sleep(0.3)
        for fwd in forwards:
            why = fwd.ended()
            if why:
                raise Exit(
                    f"the forward to {fwd.namespace}/{fwd.resource} ended: {why}; "
                    "check the pods (`inv observe.status`) and run it again",
                    code=1,
                )
