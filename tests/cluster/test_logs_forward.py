"""`observe.logs` and `observe.forward` on the simulated cluster: every pod's lines with its
prefix, a pod that starts while following joins, Ctrl-C ends cleanly; a forward held open with
a free local port when the wanted one is busy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest
from support.cli import INV, ROOT
from support.playing import Http
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

ECHO = """
apiVersion: v1
kind: Namespace
metadata: {name: prism}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: prism
  labels: {app.kubernetes.io/part-of: prism}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:  # the namespace enforces Pod Security "restricted"
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: echo
        image: busybox
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"""


@pytest.fixture(scope="module")
def echo(sim_cluster: SimCluster) -> Iterator[SimCluster]:
    sim_cluster.kubectl("apply", "-f", "-", input=ECHO)
    sim_cluster.kubectl("rollout", "status", "deployment/echo", "-n", "prism", "--timeout=60s")
    yield sim_cluster
    sim_cluster.kubectl("delete", "deployment", "echo", "-n", "prism", "--wait=false")


def pods(cluster: SimCluster) -> set[str]:
    found = cluster.get("pods", "-n", "prism", "-l", "app=echo")["items"]
    return {p["metadata"]["name"] for p in found if not p["metadata"].get("deletionTimestamp")}


def start(cluster: SimCluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [INV, *args],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(
    task: subprocess.Popen[str], done: re.Pattern[str], seconds: float = 60
) -> list[str]:
    """Lines of the task's output until one matches `done` (fails after `seconds`)."""
    assert task.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = task.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if done.search(line):
            return lines
    task.kill()
    raise AssertionError(
        f"never saw {done.pattern!r}: {lines} {task.stderr.read() if task.stderr else ''}"
    )


def interrupt(task: subprocess.Popen[str]) -> tuple[int, str]:
    task.send_signal(signal.SIGINT)
    _, err = task.communicate(timeout=30)
    return task.returncode, err


def test_logs_show_every_pod_with_its_prefix(echo: SimCluster) -> None:
    result = echo.inv("observe.logs", "echo")
    assert result.returncode == 0, result.stderr
    prefixes = {line.split(" ", 1)[0] for line in result.stdout.splitlines()}
    assert prefixes == {f"[{pod}]" for pod in pods(echo)}
    assert all("simulated by kwok" in line for line in result.stdout.splitlines())


def test_follow_picks_up_a_pod_that_starts_later_and_ctrl_c_ends_cleanly(echo: SimCluster) -> None:
    before = pods(echo)
    task = start(echo, "observe.logs", "echo", "--follow")
    try:
        seen: set[str] = set()
        while seen != before:
            line = read_until(task, re.compile(r"^\[echo-"))[-1]
            seen.add(line[1 : line.index("]")])
        echo.kubectl("scale", "deployment/echo", "-n", "prism", "--replicas=3")
        line = read_until(task, re.compile(r"^\[echo-"))[-1]
        assert line[1 : line.index("]")] not in before
    finally:
        code, err = interrupt(task)
        echo.kubectl("scale", "deployment/echo", "-n", "prism", "--replicas=2")
    assert code == 0, err
    assert err.strip().splitlines()[-1] == "stopped following"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("echo", "--since", "5 minutes"),
            "--since '5 minutes' is not a duration; write it like 30s",
        ),
        (("echo", "--tail", "-2"), "--tail -2: give a number of lines (0 or more)"),
        (("ech0",), "no Prism workload 'ech0' in the cluster; choose one of: "),
    ],
)
def test_logs_bad_input_is_one_line(echo: SimCluster, args: tuple[str, ...], message: str) -> None:
    result = echo.inv("observe.logs", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr


@pytest.fixture(scope="module")
def admin(sim_cluster: SimCluster) -> SimCluster:
    deployed = sim_cluster.inv("deploy.all", "--overlay", "ci", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return sim_cluster


def test_forward_takes_a_free_port_when_the_wanted_one_is_busy(admin: SimCluster) -> None:
    """The server playing prism-admin's pod listens on 127.0.0.1:8080 itself, so the
    guide's `8080:8080` cannot be had here: the forward gets another port and says which."""
    server = Http(8080, {"/admin/health": (200, "healthy")})
    task = start(admin, "observe.forward", "prism-admin")
    try:
        lines = read_until(task, re.compile("^forwarding; Ctrl-C to stop"))
        assert "port 8080 is busy on this machine; prism-admin:8080 gets a free port" in lines
        shown = next(line for line in lines if " -> http://" in line)
        assert shown.startswith("prism/svc/prism-admin:8080 -> http://127.0.0.1:")
        url = shown.split(" -> ")[1]
        assert not url.endswith(":8080")
        with urllib.request.urlopen(f"{url}/admin/health", timeout=10) as reply:
            assert reply.read() == b"healthy"
    finally:
        code, err = interrupt(task)
        server.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_forward_of_an_unknown_service_is_one_line(admin: SimCluster) -> None:
    result = admin.inv("observe.forward", "prism-admn")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("no Service 'prism-admn' in namespace prism or prism-backends")
