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


# --- images: the docker and crictl answers the images tests share ----------------------------

IMAGE_NAMES = (
    "prism-admin",
    "prism-proxy",
    "keyvalue-runner",
    "consumer-runner",
    "producer-runner",
    "mailbox-runner",
)
CLUSTER_LIST = ("k3d", "cluster", "list", "-o", "json")
NODE_LIST = ("k3d", "node", "list", "-o", "json")
REGISTRY_LIST = ("k3d", "registry", "list", "-o", "json")
NODES = ("k3d-prism-local-server-0", "k3d-prism-local-agent-0", "k3d-prism-local-agent-1")


REFS = tuple(f"{name}:latest" for name in IMAGE_NAMES)


def build_argv(repo: Path, name: str, tag: str = "latest") -> list[str]:
    """`docker build` of one Prism image from its Dockerfile in the source checkout."""
    return [
        "docker",
        "build",
        "-t",
        f"{name}:{tag}",
        "-f",
        f"{repo}/cmd/{name}/Dockerfile",
        str(repo),
    ]


def image_inspect(ref: str) -> str:
    """`docker image inspect` for an image's ID."""
    return cmd("docker", "image", "inspect", "--format", "{{.Id}}", ref)


def crictl(node: str) -> str:
    """What one k3d node holds, asked through its containerd."""
    return cmd("docker", "exec", node, "crictl", "images", "-o", "json")


def image_id(ref: str, version: str = "") -> str:
    """A stable fake image ID per image name (and `version`, for a rebuilt image)."""
    return "sha256:" + (ref.split(":")[0] + version).encode().hex().ljust(64, "0")[:64]


def no_such_image(ref: str) -> Result:
    return Result(stderr=f"Error: No such image: {ref}", exited=1)


def held(*refs: str, stale: bool = False, version: str = "") -> dict[str, object]:
    """What `crictl images -o json` prints for a node holding `refs` (k3d imports them as
    docker.io/library/<name>:<tag>)."""
    return {
        "images": [
            {
                "id": "sha256:" + "f" * 64 if stale else image_id(ref, version),
                "repoTags": [f"docker.io/library/{ref}"],
                "repoDigests": [],
                "size": "1234",
            }
            for ref in refs
        ]
    }


def registry_node(port: str = "5555") -> list[dict[str, object]]:
    """`k3d registry list -o json` with the project's registry on `port`."""
    return [
        {
            "name": "k3d-prism-registry",
            "role": "registry",
            "portMappings": {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": port}]},
        }
    ]


@pytest.fixture
def prism_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Prism checkout with the repository's layout: cmd/<image>/Dockerfile."""
    source = tmp_path / "prism-data-layer"
    for name in IMAGE_NAMES:
        (source / "cmd" / name).mkdir(parents=True)
        (source / "cmd" / name / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("PRISM_IMAGES_SOURCE_DIR", str(source))
    return source


@pytest.fixture
def k3d_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
