"""chaos.node-down and chaos.drain on the simulated cluster: the real controller-manager taints
and evicts, the real ReplicaSet/StatefulSet controllers and scheduler replace, PodDisruption-
Budgets decide evictions; the drills report it, put the node back, and restore it on Ctrl-C."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.sim import SimCluster

from cluster.test_chaos import (
    NODE,
    UNREACHABLE,
    chaos_workloads,
    interrupt,
    last_line,
    node,
    prism_workloads_ready,
    read_until,
    ready,
    releasing_gated_pods,
    stack,  # noqa: F401  (fixture)
    start,
    table,
    wait_usable,
)

pytestmark = pytest.mark.cluster

HOLDER = "prism-tasks-chaos"
ANNOTATION = "prism-tasks.chaos/node-down"


def pods(cluster: SimCluster, namespace: str = "chaos-test") -> list[dict[str, Any]]:
    return list(cluster.get("pods", "-n", namespace)["items"])


def on(cluster: SimCluster, name: str = NODE) -> list[dict[str, Any]]:
    return list(cluster.get("pods", "-A", "--field-selector", f"spec.nodeName={name}")["items"])


def lease_holder(cluster: SimCluster, name: str = NODE) -> str:
    return str(cluster.get("lease", "-n", "kube-node-lease", name)["spec"]["holderIdentity"])


def assert_node_as_found(cluster: SimCluster, name: str = NODE) -> None:
    """KWOK holds the lease again, the node is Ready and schedulable, carries no drill record,
    and none of its pods is left NotReady, Terminating or disregarded by KWOK."""
    found = node(cluster, name)
    assert lease_holder(cluster, name) != HOLDER
    assert ready(found) == "True"
    assert not found["spec"].get("unschedulable")
    assert ANNOTATION not in (found["metadata"].get("annotations") or {})
    for pod in on(cluster, name):
        assert not pod["metadata"].get("deletionTimestamp"), pod["metadata"]["name"]
        assert ready(pod) == "True", pod["metadata"]["name"]
        assert ANNOTATION not in (pod["metadata"].get("annotations") or {}), (
            "still disregarded by KWOK"
        )


def evidence(cluster: SimCluster, drill: dict[str, Any], timeline: str) -> str:
    """What a failing node-down run leaves to explain itself, since the cluster's logs go with
    it: the drill's notes and timeline, and what the control plane's logs say of the pod and of
    the node's lease."""
    lines = ["notes:", *drill["notes"], "timeline:", timeline]
    logs = cluster.home / "kwok" / "clusters" / cluster.name / "logs"
    for log in sorted(logs.glob("*.log")):
        if log.name.startswith(("kwok-controller", "kube-controller-manager")):
            told = [
                line[:400]
                for line in log.read_text(errors="replace").splitlines()
                if "chaos-db-0" in line or (NODE in line and "ease" in line)
            ]
            lines += [f"{log.name} (last 40 of {len(told)} lines):", *told[-40:]]
    return "\n".join(lines)


# --- node-down ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_down_run(stack: SimCluster) -> Any:  # noqa: F811
    """One real node-down of 45 s with the test workloads on the node (the web pods and a
    StatefulSet whose volume is pinned there): long enough for the controller-manager, which
    looks at nodes every 25 s here, to taint the node and evict what tolerates 1 s. Yields the
    result, the test pods before, and the StatefulSet's pod after (the workloads are gone by
    then, so that the next tests start from the stack alone)."""
    with chaos_workloads(stack, pinned=True):
        before = {p["metadata"]["name"] for p in pods(stack)}
        result = stack.inv("chaos.node-down", "--node", NODE, "--for", "45", "--json")
        db = stack.get("pod", "-n", "chaos-test", "chaos-db-0")
        wait_usable(stack)  # the next test starts from a usable node
    return result, before, db


def test_node_down_report_evictions_rescheduling_and_the_pinned_statefulset(
    stack: SimCluster,  # noqa: F811
    node_down_run: Any,
) -> None:
    result, before, _ = node_down_run
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)  # --json: standard output is the document alone
    assert list(document) == ["cluster", "provider", "scenario", "verdict", "drills"]
    assert document["verdict"] == "whole"
    (drill,) = document["drills"]
    assert drill["drill"] == "node-down" and drill["target"] == NODE
    # The pinned StatefulSet heals only once the node is back, so the stack as a whole does too.
    assert drill["verdict"] == "healed after restore"
    assert drill["restored_after_seconds"] >= 45
    assert drill["time_to_whole_seconds"] >= drill["restored_after_seconds"]
    assert "chaos-test/statefulset/chaos-db" in drill["disrupted"]
    assert "chaos-test/deployment/chaos-web" in drill["disrupted"]
    # The controller-manager evicted every test pod (1 s toleration) ...
    web_before = sorted(n for n in before if n.startswith("chaos-web-"))
    assert set(drill["evicted"]) >= {f"chaos-test/{n}" for n in [*web_before, "chaos-db-0"]}
    # ... the web pods came back elsewhere while the node was down ...
    web = [m for m in drill["rescheduled"] if m["workload"] == "chaos-test/deployment/chaos-web"]
    assert len(web) == 2
    assert all(m["node"] != NODE and m["ready_after_seconds"] is not None for m in web)
    assert all(m["ready_after_seconds"] < drill["restored_after_seconds"] for m in web)
    (healed_web,) = [w for w in drill["workloads"] if w["workload"].endswith("/chaos-web")]
    assert healed_web["healed"] == "during"
    # ... and the StatefulSet's pod could not, and the report says why.
    (stuck,) = [
        x
        for x in drill["not_recovered"]
        if x["workload"] == "chaos-test/statefulset/chaos-db"
        and x["when"] == "while the node was down"
    ]
    assert f"pod chaos-db-0 stays Terminating on {NODE}" in stuck["why"], evidence(
        stack, drill, result.stderr
    )
    assert "at most one pod per identity" in stuck["why"]
    assert (
        f"its volume chaos-pinned (claim data-chaos-db-0) is pinned to node {NODE}" in stuck["why"]
    )
    # Prism's own pods tolerate the taint for 300 s, so they were marked, not evicted.
    assert any(
        "tolerates node.kubernetes.io/unreachable for 300s" in x["why"]
        for x in drill["not_recovered"]
    )
    # The timeline went to standard error.
    assert f"marking node {NODE} Unknown and its pods not Ready" in result.stderr
    assert f"node {NODE} tainted {UNREACHABLE}:NoExecute" in result.stderr


def test_node_down_leaves_the_node_and_the_stack_as_found(
    stack: SimCluster,  # noqa: F811
    node_down_run: Any,
) -> None:
    result, _, db = node_down_run
    assert result.returncode == 0, result.stderr
    assert_node_as_found(stack)
    assert db["spec"]["nodeName"] == NODE and ready(db) == "True"  # back on its volume's node
    assert prism_workloads_ready(stack)


def test_ctrl_c_during_node_down_restores_the_node_and_says_so(
    stack: SimCluster,  # noqa: F811
) -> None:
    task = start(stack, "chaos.node-down", "--node", NODE, "--for", "600")
    read_until(task, f"node {NODE} Ready=Unknown")  # the node is down: interrupt there
    out, err = interrupt(task)
    assert task.returncode == 130, out + err
    assert "interrupted: restoring what node-down changed" in out
    assert f"restored node {NODE}: KWOK reports for node {NODE} again" in out
    assert last_line(err).startswith(
        f"interrupted (Ctrl-C) during node-down: the cluster is as it was: restored node {NODE}"
    )
    assert_node_as_found(stack)  # at once: the restore is done before the task ends
    wait_usable(stack)
    assert prism_workloads_ready(stack)


def test_node_down_dry_run_lists_the_pods_and_changes_nothing(
    stack: SimCluster,  # noqa: F811
) -> None:
    holder = lease_holder(stack)
    result = stack.inv("--dry", "chaos.node-down", "--node", NODE, "--for", "30")
    assert result.returncode == 0, result.stderr
    assert f"would take node {NODE} down for 30s (kwok)" in result.stdout
    assert f"take the lease kube-node-lease/{NODE} from KWOK" in result.stdout
    for pod in on(stack):
        assert f"{pod['metadata']['namespace']}/{pod['metadata']['name']} (" in result.stdout
    assert lease_holder(stack) == holder
    assert_node_as_found(stack)


def test_node_down_refuses_a_server_node_and_an_unknown_one(
    stack: SimCluster,  # noqa: F811
) -> None:
    server = stack.inv("chaos.node-down", "--node", "kwok-prism-ci-server-0")
    assert server.returncode == 1
    assert last_line(server.stderr) == (
        "node kwok-prism-ci-server-0 is a server (control-plane) node: stopping it stops the "
        "API server; `inv chaos.api-restart` is that drill"
    )
    unknown = stack.inv("chaos.node-down", "--node", "kwok-prism-ci-agent-9")
    assert unknown.returncode == 1
    assert last_line(unknown.stderr) == (
        "no node 'kwok-prism-ci-agent-9' in the cluster; choose one of: kwok-prism-ci-agent-0, "
        "kwok-prism-ci-agent-1, kwok-prism-ci-server-0"
    )
    assert "Traceback" not in server.stderr + unknown.stderr


# --- drain --------------------------------------------------------------------------------------


def test_drain_evicts_through_the_budget_and_uncordons(stack: SimCluster) -> None:  # noqa: F811
    """maxUnavailable 1 over two pods on the node: the second eviction is refused until the
    first pod's replacement is Ready elsewhere, so the web never has both pods down. The
    replacement is held back 3 s (a scheduling gate), so the refusal does not depend on how
    fast KWOK makes it Ready."""
    with chaos_workloads(stack, pdb="maxUnavailable: 1", gated=True):
        web = sorted(p["metadata"]["name"] for p in pods(stack))
        assert all(p["spec"]["nodeName"] == NODE for p in pods(stack))
        with releasing_gated_pods(stack, after=3):
            result = stack.inv("chaos.drain", "--node", NODE, "--timeout", "120")
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert f"cordoning node {NODE}" in out
        assert "refused: The disruption budget chaos-web needs 1 healthy pods" in out
        assert "blocked)" in out  # "evicted pod ... (after N.Ns blocked)"
        assert "deployment chaos-test/chaos-web not Ready (0 of 2)" not in out
        assert f"uncordoning node {NODE}" in out
        header, row = table(out)[:2]
        assert header.split() == ["drill", "started", "disrupted", "workloads", "time", "to", "whole", "verdict"]  # fmt: skip
        assert row.startswith(f"drain {NODE}") and row.endswith("self-healed")
        for name in web:
            assert f"evicted: chaos-test/{name}" in out
        assert not node(stack)["spec"].get("unschedulable")
        moved = pods(stack)
        assert len(moved) == 2 and all(p["spec"]["nodeName"] != NODE for p in moved)
        assert all(ready(p) == "True" for p in moved)
        assert prism_workloads_ready(stack)


def test_a_drain_the_budget_never_allows_is_reported_and_the_node_uncordoned(
    stack: SimCluster,  # noqa: F811
) -> None:
    with chaos_workloads(stack, pdb="minAvailable: 2"):
        before = sorted(p["metadata"]["name"] for p in pods(stack))
        result = stack.inv("chaos.drain", "--node", NODE, "--timeout", "5")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert last_line(result.stderr) == (
            f"not every drill ended with the stack whole (drain {NODE}: blocked)"
        )
        assert "retrying until --timeout" in result.stdout
        assert "at --timeout: chaos-test/deployment/chaos-web: eviction refused:" in result.stdout
        assert "(chaos-test/chaos-web (allows 0 disruption(s) now))" in result.stdout
        assert not node(stack)["spec"].get("unschedulable")
        # the budget held: no web pod was evicted
        assert sorted(p["metadata"]["name"] for p in pods(stack)) == before


def test_ctrl_c_during_a_drain_uncordons_the_node_and_says_so(stack: SimCluster) -> None:  # noqa: F811
    with chaos_workloads(stack, pdb="minAvailable: 2"):  # the drain waits on the budget
        task = start(stack, "chaos.drain", "--node", NODE, "--timeout", "600")
        read_until(task, "retrying until --timeout")
        assert node(stack)["spec"].get("unschedulable") is True
        out, err = interrupt(task)
        assert task.returncode == 130, out + err
        assert last_line(err) == (
            f"interrupted (Ctrl-C) during drain: the cluster is as it was: restored node {NODE} "
            "schedulable: uncordoned"
        )
        assert not node(stack)["spec"].get("unschedulable")


def test_drain_dry_run_lists_evictions_and_budgets_and_changes_nothing(
    stack: SimCluster,  # noqa: F811
) -> None:
    with chaos_workloads(stack, pdb="maxUnavailable: 1"):
        before = sorted(p["metadata"]["name"] for p in on(stack))
        result = stack.inv("--dry", "chaos.drain", "--node", NODE)
        assert result.returncode == 0, result.stderr
        assert f"would drain node {NODE} (cordon it)" in result.stdout
        assert (
            "PodDisruptionBudget chaos-test/chaos-web (allows 1 disruption(s) now)" in result.stdout
        )
        assert not node(stack)["spec"].get("unschedulable")
        assert sorted(p["metadata"]["name"] for p in on(stack)) == before


def test_node_down_random_picks_a_ready_agent(stack: SimCluster) -> None:  # noqa: F811
    result = stack.inv("--dry", "chaos.node-down", "--random")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("would take node kwok-prism-ci-agent-"), first
    assert first.endswith("down for 60s (kwok), then bring it back:")


def test_a_node_left_down_by_a_killed_drill_is_restored_by_the_next(
    stack: SimCluster,  # noqa: F811
) -> None:
    """SIGKILL leaves no chance to restore: the node keeps the drill's record (an annotation)
    and KWOK gets the lease back only once the drill's hold runs out. The next node-down puts
    the node back first (its conditions, its pods' readiness), then runs its own drill."""
    with chaos_workloads(stack):  # pods on the node, to be marked not Ready
        task = start(stack, "chaos.node-down", "--node", NODE, "--for", "600")
        read_until(task, f"node {NODE} Ready=Unknown")
        task.kill()
        task.communicate(timeout=60)
        assert lease_holder(stack) == HOLDER
        assert ANNOTATION in node(stack)["metadata"]["annotations"]
        assert any(ready(p) != "True" for p in on(stack))
        # the hold runs out (as it would 660 s later)
        stack.kubectl(
            "patch", "lease", "-n", "kube-node-lease", NODE, "--type=merge",
            "-p", '{"spec": {"renewTime": "2020-01-01T00:00:00.000000Z"}}',
        )  # fmt: skip
        result = stack.inv("chaos.node-down", "--node", "kwok-prism-ci-agent-0", "--for", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[0].startswith(
            f"node {NODE} was left down by a drill that did not finish: restored"
        )
        assert_node_as_found(stack)
        wait_usable(stack, "kwok-prism-ci-agent-0")
        wait_usable(stack)
        assert prism_workloads_ready(stack)
