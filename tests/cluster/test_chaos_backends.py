"""chaos.backend-outage on the simulated cluster: the backend's StatefulSet goes to zero and
back, the report names its dependents and says honestly what the simulated cluster can show;
Ctrl-C puts the replicas back."""

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


def replicas(cluster: SimCluster, backend: str) -> tuple[int, int]:
    found = cluster.get("statefulset", "-n", "prism-backends", backend)
    return found["spec"]["replicas"], (found.get("status") or {}).get("readyReplicas", 0)


def test_backend_outage_scales_to_zero_and_back_and_reports_the_dependents(
    stack: SimCluster,  # noqa: F811
) -> None:
    result = stack.inv("chaos.backend-outage", "--backend", "redis", "--for", "3s")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert (
        "backend-outage redis for 3s; dependents: statefulset prism/keyvalue-runner (REDIS_URL)"
        in out
    )
    assert "scaling statefulset prism-backends/redis to 0" in out
    assert "statefulset prism-backends/redis not Ready (0 of 1)" in out, out
    assert "scaling statefulset prism-backends/redis back to 1" in out
    assert "statefulset prism-backends/redis Ready again (1 of 1)" in out
    row = table(out)[1]
    assert row.startswith("backend-outage redis ")
    assert "1: redis" in row and row.endswith("healed after restore")
    assert "during the outage: prism-backends/statefulset/redis: scaled to 0" in out
    assert (
        "note: dependents whose readiness never changed: statefulset prism/keyvalue-runner" in out
    )
    assert "note: simulated cluster: no container runs, so no dependent can notice" in out
    assert replicas(stack, "redis") == (1, 1)
    assert prism_workloads_ready(stack)


def test_ctrl_c_during_an_outage_puts_the_replicas_back(stack: SimCluster) -> None:  # noqa: F811
    task = start(stack, "chaos.backend-outage", "--backend", "nats", "--for", "600")
    read_until(task, "statefulset prism-backends/nats not Ready (0 of 1)")
    assert replicas(stack, "nats")[0] == 0
    out, err = interrupt(task)
    assert task.returncode == 130, out + err
    assert "interrupted: restoring what backend-outage changed" in out
    assert last_line(err) == (
        "interrupted (Ctrl-C) during backend-outage: the cluster is as it was: restored nats's "
        "replicas (1): statefulset prism-backends/nats scaled back to 1"
    )
    assert replicas(stack, "nats")[0] == 1
    stack.kubectl(
        "rollout", "status", "-n", "prism-backends", "statefulset/nats", "--timeout=120s",
        timeout=150,
    )  # fmt: skip


def test_backend_outage_dry_run_changes_nothing(stack: SimCluster) -> None:  # noqa: F811
    result = stack.inv("--dry", "chaos.backend-outage", "--backend", "postgres", "--for", "1m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "would scale statefulset prism-backends/postgres from 1 to 0 for 60s, then back to 1"
    )
    assert replicas(stack, "postgres") == (1, 1)


def test_an_unknown_backend_is_one_line_naming_the_backends(stack: SimCluster) -> None:  # noqa: F811
    result = stack.inv("chaos.backend-outage", "--backend", "mysql")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        "no backend 'mysql' (a StatefulSet in prism-backends); choose one of: minio, nats, "
        "postgres, redis"
    )
