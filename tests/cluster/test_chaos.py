"""chaos.kill-pod on the simulated cluster: a Ready pod dies, its controller replaces it, and the
task reports when the workload is whole again; it refuses a cluster that is not ours."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sim import SimCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def stack(sim_cluster: SimCluster) -> SimCluster:
    result = sim_cluster.inv("deploy.all")
    assert result.returncode == 0, result.stdout + result.stderr
    return sim_cluster


def pod_names(cluster: SimCluster, app: str) -> set[str]:
    pods = cluster.get("pods", "-n", "prism", "-l", f"app={app}")["items"]
    return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_kill_pod_replaces_the_pod_and_reports_when_it_healed(stack: SimCluster) -> None:
    before = pod_names(stack, "prism-proxy")

    result = stack.inv("chaos.kill-pod", "--app", "prism-proxy")

    assert result.returncode == 0, result.stdout + result.stderr
    killed = sorted(before)[0]
    assert f"killed pod prism/{killed} ({len(before)} Ready before)" in result.stdout
    healed = result.stdout.split("healed: ", 1)[1].split()[0]
    after = pod_names(stack, "prism-proxy")
    assert killed not in after
    assert healed in after and healed not in before
    assert len(after) == len(before)


def test_an_app_without_pods_is_one_clear_line(stack: SimCluster) -> None:
    result = stack.inv("chaos.kill-pod", "--app", "prism-prxy")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "no pod with app=prism-prxy in namespace prism; `inv deploy.status` lists the workloads"
    )


def test_a_cluster_this_project_did_not_create_is_left_alone(
    stack: SimCluster, tmp_path: Path
) -> None:
    """Another data directory holds no record of creating the cluster (guide correction 20)."""
    before = pod_names(stack, "prism-proxy")
    result = stack.inv("chaos.kill-pod", "--app", "prism-proxy", PRISM_DATA_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "cluster prism-ci was not created by prism-tasks" in result.stderr
    assert pod_names(stack, "prism-proxy") == before


def test_dry_run_prints_the_delete_and_deletes_nothing(stack: SimCluster) -> None:
    before = pod_names(stack, "prism-proxy")
    result = stack.inv("--dry", "chaos.kill-pod", "--app", "prism-proxy")
    assert result.returncode == 0, result.stderr
    assert f"delete pod {sorted(before)[0]} --wait=false" in result.stdout
    assert pod_names(stack, "prism-proxy") == before
