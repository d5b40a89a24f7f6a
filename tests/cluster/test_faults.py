"""Faults on a cluster of its own (staging's ports): the API server killed mid-deploy, Ctrl-C
mid-deploy, and a cluster that is not ours. Each ends non-zero in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import INV, ROOT
from support.sim import SimCluster, sim_env

pytestmark = pytest.mark.cluster


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[SimCluster]:
    env = {**sim_env(tmp_path), "PRISM_ENV": "staging"}
    cluster = SimCluster(home=tmp_path, env=env, name="prism-staging")
    created = cluster.inv("cluster.create")
    assert created.returncode == 0, created.stdout + created.stderr
    yield cluster
    cluster.inv("cluster.delete", PRISM_CLUSTER_NAME="prism-staging")


def start_deploy(cluster: SimCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [INV, "deploy.all", "--timeout", "60"],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )


def wait_for_line(task: subprocess.Popen[str], text: str) -> list[str]:
    """Read the task's output until a line contains `text`."""
    assert task.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = task.stdout.readline()
        seen.append(line)
        if text in line or not line:
            return seen
    raise AssertionError(f"no line with {text!r}: {seen}")


def one_line(task: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = task.communicate(timeout=120)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return task.returncode, lines[0]


def test_the_api_server_killed_mid_deploy_ends_in_one_line_and_the_next_run_finishes(
    staging: SimCluster, tmp_path: Path
) -> None:
    task = start_deploy(staging)
    wait_for_line(task, "→ backends")
    pids = tmp_path / "kwok" / "clusters" / "prism-staging" / "pids"
    os.kill(int((pids / "kube-apiserver.pid").read_text()), signal.SIGKILL)
    code, line = one_line(task)
    assert code != 0
    assert "Kubernetes API" in line or "cannot reach" in line, line
    # The next run's cluster.create finds the API server down, restarts the cluster, and the
    # deploy finishes.
    again = staging.inv("deploy.all", "--timeout", "60")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "exists but its API server is not ready: restarting it" in again.stdout


def test_ctrl_c_mid_deploy_exits_130_and_the_rerun_converges(staging: SimCluster) -> None:
    task = start_deploy(staging)
    wait_for_line(task, "→ backends")
    os.killpg(task.pid, signal.SIGINT)
    code, line = one_line(task)
    assert code == 130
    assert line.startswith("interrupted (Ctrl-C)")
    again = staging.inv("deploy.all", "--timeout", "60")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_deploy_to_a_cluster_that_is_not_ours_pushes_no_credentials(
    staging: SimCluster, tmp_path: Path
) -> None:
    """The same cluster seen from another data directory: no marker there, so no Secret from
    this `.env` goes into it."""
    refused = staging.inv("deploy.foundation", PRISM_DATA_DIR=str(tmp_path / "someone-else"))
    assert refused.returncode != 0
    assert "was not created by prism-tasks" in refused.stderr.strip().splitlines()[-1]
    assert staging.get("secrets", "-A", "-l", "app.kubernetes.io/part-of=prism")["items"] == []
