"""The drills on k3d, where Docker cannot run here: the exact docker commands that take a node
down and bring it back, and restart the server node, as argument lists through the fake shell;
and the refusals for a cluster this project did not create (the context provider)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from invoke import Exit
from support.fakes import (
    NODE_LIST,
    cmd,
    commands,
    k3d_nodes,
    ok,
    shell,
    tools,  # noqa: F401  (fixture)
)

from tasks._chaos import control as _control
from tasks._chaos import nodes as _nodes
from tasks._chaos.undo import Interrupted, Undo, restoring
from tasks._core import settings as _settings
from tasks._core.target import Target

pytestmark = pytest.mark.usefixtures("tools")

K3D = Target("k3d", "prism-local", "k3d-prism-local", "", "chosen by configuration")
CONTEXT = Target("context", "staging", "staging", "", "an existing cluster, by its context")


def node(name: str) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name, "labels": {}}, "spec": {}}


def test_node_down_on_k3d_stops_the_node_container_and_starts_it_again() -> None:
    c = shell(
        {
            cmd(*NODE_LIST): ok(k3d_nodes()),
            cmd("docker", "stop", "k3d-prism-local-agent-1"): ok("k3d-prism-local-agent-1"),
            cmd("docker", "start", "k3d-prism-local-agent-1"): ok("k3d-prism-local-agent-1"),
        }
    )
    fault = _nodes.k3d_node(c, K3D, node("k3d-prism-local-agent-1"))
    fault.stop(60)
    assert fault.mark() == []  # the real node lifecycle controller marks it by itself
    assert fault.restore() == "container k3d-prism-local-agent-1 started"
    assert commands(c) == [
        list(NODE_LIST),
        ["docker", "stop", "k3d-prism-local-agent-1"],
        ["docker", "start", "k3d-prism-local-agent-1"],
    ]
    assert fault.describe(60) == [
        "docker stop k3d-prism-local-agent-1   (the node's kubelet and containers stop, for 60s)",
        "docker start k3d-prism-local-agent-1",
    ]


def test_a_node_that_is_no_container_of_the_cluster_is_refused() -> None:
    c = shell({cmd(*NODE_LIST): ok(k3d_nodes())})
    with pytest.raises(Exit) as raised:
        _nodes.k3d_node(c, K3D, node("worker-7"))
    assert raised.value.message == (
        "node worker-7 is not a container of k3d cluster prism-local (its containers: "
        "k3d-prism-local-agent-0, k3d-prism-local-agent-1, k3d-prism-local-server-0, "
        "k3d-prism-local-serverlb)"
    )
    assert commands(c) == [list(NODE_LIST)]  # nothing was stopped


def test_api_restart_on_k3d_restarts_the_first_server_container_and_waits_for_the_api() -> None:
    wait = re.compile(r"^sh -c .*get --raw /readyz")
    c = shell(
        {
            cmd("docker", "stop", "k3d-prism-local-server-0"): ok(),
            cmd("docker", "start", "k3d-prism-local-server-0"): ok(),
            wait: ok(),
        }
    )
    s = _settings.load(c)
    restart = _control.Restart(c, s, K3D, timeout=120)
    assert restart.describe() == [
        "docker stop k3d-prism-local-server-0",
        "docker start k3d-prism-local-server-0, and wait until the API answers",
    ]
    restart.stop()
    assert restart.start() == "the API server answers again"
    ran = commands(c)
    assert ran[:2] == [
        ["docker", "stop", "k3d-prism-local-server-0"],
        ["docker", "start", "k3d-prism-local-server-0"],
    ]
    assert ran[2][:2] == ["sh", "-c"] and "--context k3d-prism-local get --raw /readyz" in ran[2][2]


def test_the_drills_that_stop_machines_refuse_a_cluster_this_project_did_not_create() -> None:
    c = shell({})
    with pytest.raises(Exit, match="not its to restart"):
        _control.Restart(c, _settings.load(c), CONTEXT, timeout=10)
    with pytest.raises(Exit, match="are not its to stop; chaos.drain and chaos.backend-outage"):
        _nodes.node_down(c, None, CONTEXT, "n", False, 60, 60, print, dry=False)
    assert commands(c) == []


def test_ctrl_c_while_a_k3d_node_is_down_starts_its_container_again_and_says_so() -> None:
    """The undo a node-down pushes on k3d, run by Ctrl-C the way the drill's body runs it."""
    c = shell(
        {
            cmd(*NODE_LIST): ok(k3d_nodes()),
            cmd("docker", "stop", "k3d-prism-local-agent-1"): ok(),
            cmd("docker", "start", "k3d-prism-local-agent-1"): ok(),
        }
    )
    fault = _nodes.k3d_node(c, K3D, node("k3d-prism-local-agent-1"))
    said: list[str] = []
    with (
        pytest.raises(Interrupted) as raised,
        restoring("node-down", Undo(), said.append) as undo,
    ):
        undo.push("node k3d-prism-local-agent-1", fault.restore)
        fault.stop(60)
        raise KeyboardInterrupt
    assert raised.value.code == 130
    assert raised.value.message == (
        "interrupted (Ctrl-C) during node-down: the cluster is as it was: restored node "
        "k3d-prism-local-agent-1: container k3d-prism-local-agent-1 started"
    )
    assert commands(c)[1:] == [
        ["docker", "stop", "k3d-prism-local-agent-1"],
        ["docker", "start", "k3d-prism-local-agent-1"],
    ]


def test_ctrl_c_while_the_k3d_server_is_stopped_starts_it_again() -> None:
    wait = re.compile(r"^sh -c .*get --raw /readyz")
    c = shell(
        {
            cmd("docker", "stop", "k3d-prism-local-server-0"): ok(),
            cmd("docker", "start", "k3d-prism-local-server-0"): ok(),
            wait: ok(),
        }
    )
    restart = _control.Restart(c, _settings.load(c), K3D, timeout=120)
    with (
        pytest.raises(Interrupted, match="the cluster is as it was: restored the control plane"),
        restoring("api-restart", Undo(), print) as undo,
    ):
        undo.push("the control plane", restart.start)
        restart.stop()
        raise KeyboardInterrupt
    assert commands(c)[:2] == [
        ["docker", "stop", "k3d-prism-local-server-0"],
        ["docker", "start", "k3d-prism-local-server-0"],
    ]
