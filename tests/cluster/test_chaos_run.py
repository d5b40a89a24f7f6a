"""chaos.run on the simulated cluster: a scenario of drills with pauses, one recovery table at
the end (or one JSON document for CI), a scenario stopped by Ctrl-C restores and still shows
its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.sim import SimCluster

from cluster.test_chaos import (
    NODE,
    interrupt,
    last_line,
    node,
    prism_workloads_ready,
    read_until,
    stack,  # noqa: F401  (fixture)
    start,
    table,
)

pytestmark = pytest.mark.cluster

KEYS = [
    "drill", "target", "provider", "started", "disrupted", "time_to_whole_seconds",
    "restored_after_seconds", "verdict", "ok", "workloads", "evicted", "rescheduled",
    "not_recovered", "connections", "notes",
]  # fmt: skip


def scenario(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return str(path)


def test_a_scenario_ends_in_one_json_document_for_ci(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "pause: 1s\n"
        "drills:\n"
        "  - drain: {node: kwok-prism-ci-agent-0}\n"
        "  - backend-outage: {backend: redis, for: 2s}\n"
        "  - pause: 0\n"
        "  - api-restart: {}\n",
    )
    result = stack.inv("chaos.run", "--scenario", path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["cluster", "provider", "scenario", "verdict", "drills"]
    assert document["cluster"] == "prism-ci" and document["provider"] == "kwok"
    assert document["scenario"] == path and document["verdict"] == "whole"
    drills = document["drills"]
    assert [d["drill"] for d in drills] == ["drain", "backend-outage", "api-restart"]
    assert all(list(d) == KEYS for d in drills)
    assert all(d["ok"] and d["time_to_whole_seconds"] is not None for d in drills)
    assert drills[1]["disrupted"] == ["prism-backends/statefulset/redis"]
    assert drills[2]["connections"], "the restart cut the drill's watches"
    # progress went to standard error, one pause between the first two drills, none before
    # the third (its own pause of 0 replaced it)
    assert "== drills[0] (drain)" in result.stderr and "pause 1s" in result.stderr
    assert result.stderr.count("pause 1s") == 1
    assert prism_workloads_ready(stack)


def test_a_scenario_prints_one_recovery_table(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "pause: 0\ndrills:\n  - backend-outage: {backend: minio, for: 1s}\n"
        "  - drain: {node: kwok-prism-ci-agent-0}\n",
    )
    result = stack.inv("chaos.run", "--scenario", path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table(result.stdout)
    assert rows[0].split() == ["drill", "started", "disrupted", "workloads", "time", "to", "whole", "verdict"]  # fmt: skip
    assert rows[1].startswith("backend-outage minio ") and rows[1].endswith("healed after restore")
    assert rows[2].startswith("drain kwok-prism-ci-agent-0 ")
    assert "backend-outage minio:" in result.stdout  # its details, under the table
    assert not node(stack, "kwok-prism-ci-agent-0")["spec"].get("unschedulable")


def test_ctrl_c_in_a_scenario_restores_and_shows_what_ran(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "pause: 0\ndrills:\n  - backend-outage: {backend: redis, for: 1s}\n"
        f"  - node-down: {{node: {NODE}, for: 10m}}\n"
        "  - api-restart: {}\n",
    )
    task = start(stack, "chaos.run", "--scenario", path)
    read_until(task, f"node {NODE} Ready=Unknown")
    out, err = interrupt(task)
    assert task.returncode == 130, out + err
    assert last_line(err).startswith(
        f"interrupted (Ctrl-C) during node-down: the cluster is as it was: restored node {NODE}"
    )
    rows = table(out)
    assert rows[1].startswith("backend-outage redis ") and rows[1].endswith("healed after restore")
    assert rows[2].startswith(f"node-down {NODE} ") and rows[2].endswith("interrupted")
    assert rows[3].startswith("api-restart ") and rows[3].endswith("not run")
    found = node(stack)
    assert not found["spec"].get("unschedulable")
    assert (
        next(c["status"] for c in found["status"]["conditions"] if c["type"] == "Ready") == "True"
    )


def test_ctrl_c_in_a_pause_between_drills_shows_what_ran(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "pause: 0\ndrills:\n  - backend-outage: {backend: minio, for: 1s}\n"
        "  - pause: 10m\n  - drain: {node: kwok-prism-ci-agent-0}\n",
    )
    task = start(stack, "chaos.run", "--scenario", path)
    read_until(task, "pause 600s")
    out, err = interrupt(task)
    assert task.returncode == 130, out + err
    assert last_line(err) == "interrupted (Ctrl-C) between drills: nothing needed restoring"
    rows = table(out)
    assert rows[1].startswith("backend-outage minio ") and rows[1].endswith("healed after restore")
    assert rows[2].startswith("drain kwok-prism-ci-agent-0 ") and rows[2].endswith("not run")
    assert not node(stack, "kwok-prism-ci-agent-0")["spec"].get("unschedulable")


def test_a_dry_scenario_lists_what_each_drill_would_touch_and_changes_nothing(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        "drills:\n  - backend-outage: {backend: redis, for: 5s}\n"
        "  - drain: {node: kwok-prism-ci-agent-0}\n  - api-restart: {}\n",
    )
    leader = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    result = stack.inv("--dry", "chaos.run", "--scenario", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would scale statefulset prism-backends/redis from 1 to 0 for 5s" in result.stdout
    assert "would drain node kwok-prism-ci-agent-0" in result.stdout
    assert "pause" not in result.stdout  # nothing waits in a dry run
    assert stack.get("statefulset", "-n", "prism-backends", "redis")["spec"]["replicas"] == 1
    assert not node(stack, "kwok-prism-ci-agent-0")["spec"].get("unschedulable")
    after = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    assert after["holderIdentity"] == leader["holderIdentity"]


def test_a_scenario_refuses_a_cluster_this_project_did_not_create(
    stack: SimCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Guide correction 20, for a whole scenario: nothing runs, not even its first drill."""
    path = scenario(tmp_path, "drills:\n  - backend-outage: {backend: redis, for: 5s}\n")
    result = stack.inv("chaos.run", "--scenario", path, PRISM_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("cluster prism-ci was not created by prism-tasks")
    assert "==" not in result.stdout + result.stderr  # no drill started
    assert stack.get("statefulset", "-n", "prism-backends", "redis")["spec"]["replicas"] == 1
