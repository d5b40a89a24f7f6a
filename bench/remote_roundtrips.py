"""Count the SSH round trips of `inv -H ...`: commands executed on each host, SSH connections,
tunnel channels, and the time spent waiting on each command.

Runs the real program in this process with fabric's runner and connection instrumented, so the
numbers are those of the same code path `inv -H` takes:

    .venv/bin/python bench/remote_roundtrips.py -H box deploy.all
    .venv/bin/python bench/remote_roundtrips.py --sshd --dry cluster.create

`--sshd` starts a throwaway sshd on 127.0.0.1 (tests/support/sshd.py; needs openssh-server, see
scripts/install-test-deps.sh), adds `-H bench --ssh-config ...` and cross-checks the count of
executed commands against the `exec` sessions in the server's own log. KWOK_WORKDIR,
KUBECACHEDIR and KUBECONFIG, when set here, are set on that host too.
Every argument other than --sshd / --verbose goes to `inv` unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
HOST_ENV = ("KWOK_WORKDIR", "KUBECACHEDIR", "KUBECONFIG")


@dataclass
class Host:
    commands: list[tuple[str, float]] = field(default_factory=list)  # executed, with seconds
    dry: int = 0  # echoed under --dry, never sent
    connections: int = 0
    forwards: int = 0


@contextmanager
def instrumented() -> Iterator[dict[str, Host]]:
    """Record, per host label, what crosses each SSH connection."""
    import paramiko

    from tasks._remote import hosts as _hosts

    hosts: dict[str, Host] = defaultdict(Host)
    run, open_, start, open_channel = (
        _hosts.HostConnection.run,
        _hosts.HostConnection.open,
        _hosts.HostRemote.start,
        paramiko.Transport.open_channel,
    )
    labels: dict[int, str] = {}  # transport id -> host label

    def timed_run(self: Any, command: str, **kwargs: Any) -> Any:
        sent = len(hosts[self.label].commands)
        began = time.perf_counter()
        try:
            return run(self, command, **kwargs)
        finally:
            if len(hosts[self.label].commands) > sent:
                hosts[self.label].commands[-1] = (command, time.perf_counter() - began)
            else:
                hosts[self.label].dry += 1

    def counted_open(self: Any) -> Any:
        connecting = not self.is_connected
        result = open_(self)
        if connecting:
            hosts[self.label].connections += 1
            labels[id(self.transport)] = self.label
        return result

    def counted_start(self: Any, command: str, *args: Any, **kwargs: Any) -> None:
        hosts[self.context.label].commands.append((command, 0.0))
        start(self, command, *args, **kwargs)

    def counted_channel(self: Any, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "direct-tcpip":
            hosts[labels.get(id(self), "?")].forwards += 1
        return open_channel(self, kind, *args, **kwargs)

    _hosts.HostConnection.run = timed_run  # type: ignore[method-assign]
    _hosts.HostConnection.open = counted_open  # type: ignore[method-assign]
    _hosts.HostRemote.start = counted_start  # type: ignore[method-assign]
    paramiko.Transport.open_channel = counted_channel  # type: ignore[method-assign]
    try:
        yield hosts
    finally:
        _hosts.HostConnection.run = run  # type: ignore[method-assign]
        _hosts.HostConnection.open = open_  # type: ignore[method-assign]
        _hosts.HostRemote.start = start  # type: ignore[method-assign]
        paramiko.Transport.open_channel = open_channel  # type: ignore[method-assign]


def run_inv(args: list[str]) -> int:
    from invoke import __version__

    from tasks._cli import program as _program

    program = _program.program(
        ssh=True, name="Invoke", binary="inv", binary_names=["inv"], version=__version__
    )
    try:
        program.run(["inv", *args])
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0


def report(hosts: dict[str, Host], wall: float, verbose: bool) -> None:
    print(f"\n--- SSH round trips ({wall:.2f}s wall) ---")
    for label, host in hosts.items():
        waited = sum(seconds for _, seconds in host.commands)
        print(
            f"{label}: {len(host.commands)} commands executed ({waited:.2f}s waiting), "
            f"{host.dry} dry-run only, {host.connections} SSH connection(s), "
            f"{host.forwards} tunnel channel(s)"
        )
        shown = host.commands if verbose else sorted(host.commands, key=lambda c: -c[1])[:5]
        title = "all commands" if verbose else "slowest"
        for command, seconds in shown:
            print(f"  {seconds:7.3f}s  {command[:110]}")
        if shown:
            print(f"  ({title})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sshd", action="store_true", help="run against a throwaway sshd")
    parser.add_argument("--verbose", action="store_true", help="list every command")
    ours, inv_args = parser.parse_known_args()
    if not inv_args:
        parser.error("give the inv arguments, e.g. -H box deploy.all or --sshd cluster.status")

    with tempfile.TemporaryDirectory(prefix="roundtrips-") as tmp:
        server = None
        if ours.sshd:
            from support.sshd import SshServer, default_path

            # The host is this machine: it keeps kwokctl's and kubectl's state where a local
            # run would (these variables are the host's own; nothing local travels over SSH).
            env = {key: os.environ[key] for key in HOST_ENV if key in os.environ}
            server = SshServer.start(Path(tmp), path=default_path(), env=env)
            inv_args = ["-H", "bench", "--ssh-config", str(server.ssh_config("bench")), *inv_args]
        try:
            with instrumented() as hosts:
                began = time.perf_counter()
                code = run_inv(inv_args)
                wall = time.perf_counter() - began
            report(hosts, wall, ours.verbose)
            if server is not None:
                executed = sum(len(host.commands) for host in hosts.values())
                print(
                    f"sshd log: {server.sessions()} exec sessions, {server.logins()} logins, "
                    f"{server.forwards()} direct-tcpip (instrumented count: {executed})"
                )
        finally:
            if server is not None:
                server.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
