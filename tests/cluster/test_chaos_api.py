"""chaos.api-restart on the simulated cluster: the whole control plane stops and starts; the
drill's watches lose their connections and reconnect, the controllers lead again, and a task in
flight either reconnects or ends in one line. Ctrl-C while it is down starts it again."""

from __future__ import annotations

import pytest
from support.sim import SimCluster

from cluster.test_chaos import (
    interrupt,
    last_line,
    prism_workloads_ready,
    read_until,
    stack,  # noqa: F401  (fixture)
    start,
    table,
)

pytestmark = pytest.mark.cluster


def answers(cluster: SimCluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0


def test_api_restart_reconnects_the_watches_and_a_task_in_flight_ends_cleanly(
    stack: SimCluster,  # noqa: F811
) -> None:
    follower = start(stack, "observe.logs", "--app", "prism-proxy", "--follow")
    assert follower.stderr is not None
    assert "following Deployment prism/prism-proxy" in follower.stderr.readline()

    result = stack.inv("chaos.api-restart", "--for", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "stopping the control plane (kwokctl stop cluster --name prism-ci)" in out
    assert "the API server answers again" in out
    assert "kube-controller-manager leads again" in out
    assert "kube-scheduler leads again" in out
    for kind in ("Nodes", "Pods", "Deployments", "StatefulSets"):
        line = next(x for x in out.splitlines() if x.startswith(f"watch of {kind}: lost after"))
        assert "back after" in line, line
    row = table(out)[1]
    assert row.startswith("api-restart ")
    assert row.split()[-1] in ("undisturbed", "self-healed", "restore")
    assert "note: API away for" in out
    assert answers(stack) and prism_workloads_ready(stack)

    # The task in flight met the same outage: it reconnected (still following) or ended with a
    # last line naming the lost connection (observe.logs says first which log stream ended);
    # never a traceback.
    if follower.poll() is None:
        out, err = interrupt(follower)
        assert follower.returncode == 130, err
    else:
        out, err = follower.communicate()
        assert follower.returncode == 1
        assert last_line(err).startswith(
            "lost the connection to the Kubernetes API of cluster prism-ci"
        ), err
    assert "Traceback" not in out + err


def test_ctrl_c_while_the_control_plane_is_down_starts_it_again(
    stack: SimCluster,  # noqa: F811
) -> None:
    task = start(stack, "chaos.api-restart", "--for", "600")
    read_until(task, "control plane stopped")
    assert not answers(stack)
    out, err = interrupt(task)
    assert task.returncode == 130, out + err
    assert last_line(err) == (
        "interrupted (Ctrl-C) during api-restart: the cluster is as it was: restored the "
        "control plane: the API server answers again"
    )
    assert answers(stack)
    # The next drill waits until the restarted controllers lead (they first wait out their
    # predecessors' leader leases), so what it measures is a cluster that heals.
    again = stack.inv("chaos.backend-outage", "--backend", "minio", "--for", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "statefulset prism-backends/minio not Ready (0 of 1)" in again.stdout, again.stdout
    assert table(again.stdout)[1].endswith("healed after restore")


def test_api_restart_dry_run_restarts_nothing(stack: SimCluster) -> None:  # noqa: F811
    leader = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    result = stack.inv("--dry", "chaos.api-restart", "--for", "10s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "would restart the control plane of cluster prism-ci (kwok, 10s away):"
    )
    assert "kwokctl stop cluster --name prism-ci" in result.stdout
    after = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    assert after["holderIdentity"] == leader["holderIdentity"]
