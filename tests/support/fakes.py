"""The fake shell the k3d, images and ingress tests share (Docker and k3d cannot run here).

Every command goes through invoke's `MockContext`: a command without a prepared answer raises
`NotImplementedError`, so a test fails on any command it did not expect, and `commands(c)`
gives the exact argument lists that ran, in order.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from unittest.mock import Mock

import pytest
from invoke import Config, MockContext, Result

import tasks

TOOLS = ("k3d", "docker", "kubectl", "helm", "kwokctl")
DOCKER_INFO = ("docker", "info", "--format", "{{.ServerVersion}}")
UID_QUERY = re.compile(r"^kubectl .*get namespace kube-system -o 'jsonpath=\{\.metadata\.uid\}'$")


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Stand-ins for the tools on PATH, so `_command.require` finds them; if anything really
    ran one, it would fail loudly."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        path = bin_dir / tool
        path.write_text(f"#!/bin/sh\necho 'fake {tool} must not run' >&2\nexit 99\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield bin_dir


def cmd(*argv: str) -> str:
    """The command string `_command.run` hands to `c.run` for `argv`."""
    return shlex.join(argv)


def ok(stdout: str | Any = "") -> Result:
    if not isinstance(stdout, str):
        stdout = json.dumps(stdout)
    return Result(stdout=stdout, exited=0)


def fail(stderr: str = "error") -> Result:
    return Result(stderr=stderr, exited=1)


def shell(answers: Mapping[Any, Any], **config: Any) -> MockContext:
    """A MockContext with the collection's defaults (as `inv` builds it) and fixed answers:
    command string (or compiled regex) -> Result."""
    cfg = Config(overrides=config)
    cfg.load_collection(tasks.ns.configuration())
    # Which cluster instance answers (the ownership marker records it): none, unless a test
    # says otherwise; the fakes run no API server.
    return MockContext(config=cfg, run={UID_QUERY: fail("no API server here"), **answers})


def commands(c: MockContext) -> list[list[str]]:
    """Every command that ran, as an argument list."""
    return [shlex.split(call.args[0]) for call in cast(Mock, c.run).call_args_list]


def changes(c: MockContext) -> list[list[str]]:
    """The commands that change something (queries run with dry=False)."""
    return [
        shlex.split(call.args[0])
        for call in cast(Mock, c.run).call_args_list
        if call.kwargs.get("dry") is not False
    ]


def k3d_cluster(
    name: str = "prism-local", servers: int = 1, agents: int = 2, running: bool = True
) -> dict[str, Any]:
    """One entry of `k3d cluster list -o json` (the fields k3d v5.6 prints)."""
    return {
        "name": name,
        "serversCount": servers,
        "serversRunning": servers if running else 0,
        "agentsCount": agents,
        "agentsRunning": agents if running else 0,
        "hasLoadbalancer": True,
    }


def k3d_nodes(
    name: str = "prism-local",
    servers: int = 1,
    agents: int = 2,
    ports: Sequence[tuple[int, int]] = ((8080, 80), (8443, 443), (50051, 50051), (6443, 6443)),
    volumes: Sequence[str] = (),
    running: bool = True,
) -> list[dict[str, Any]]:
    """`k3d node list -o json` for one cluster: servers, agents and the load balancer."""

    def node(role: str, suffix: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": f"k3d-{name}-{suffix}",
            "role": role,
            "runtimeLabels": {"k3d.cluster": name, "k3d.role": role},
            "State": {"Running": running, "Status": "running" if running else "exited"},
            **extra,
        }

    found = [node("server", f"server-{i}", volumes=list(volumes)) for i in range(servers)]
    found += [node("agent", f"agent-{i}", volumes=list(volumes)) for i in range(agents)]
    port_map = {
        f"{inner}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(host)}] for host, inner in ports
    }
    found.append(node("loadbalancer", "serverlb", portMappings=port_map))
    return found
