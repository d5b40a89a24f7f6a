"""chaos.kill-pod on the simulated cluster: a Ready pod dies, its controller replaces it, and the
task reports when the workload is whole again; it refuses a cluster that is not ours. Every
drill refuses such a cluster too (below), and this module holds what the drill tests in
test_chaos_*.py share: the test workloads, running `inv` and sending it Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from support.cli import INV, ROOT
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


# --- shared by the drill tests (tests/cluster/test_chaos_*.py) ----------------------------------

NODE = "kwok-prism-ci-agent-1"  # the drills' node: the ci environment has server-0, agent-0/1
UNREACHABLE = "node.kubernetes.io/unreachable"


GATE = "chaos.test/hold"


def manifests(node: str, pdb: str = "", pinned: bool = False, gated: bool = False) -> str:
    """A Deployment (two pods, preferring `node`) and optionally a StatefulSet whose volume is
    pinned to `node`, both evicted 1 s after their node is tainted unreachable (the default is
    300 s), in a namespace of their own; `pdb` is a PodDisruptionBudget spec for the web pods.
    `gated`: every web pod is created with a scheduling gate, so it is Ready only once the test
    lifts the gate (`releasing_gated_pods`), not whenever KWOK gets to it."""
    tolerate = (
        "tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, "
        "effect: NoExecute, tolerationSeconds: 1}]"
    )
    prefer = (
        "affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: "
        "[{weight: 100, preference: {matchExpressions: [{key: kubernetes.io/hostname, "
        f"operator: In, values: [{node}]}}]}}}}]}}}}"
    )
    docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: chaos-test}",
        f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: chaos-web, namespace: chaos-test}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: chaos-web}}}}
  template:
    metadata: {{labels: {{app: chaos-web}}}}
    spec:
      {prefer}
      {tolerate}
      {f"schedulingGates: [{{name: {GATE}}}]" if gated else ""}
      containers: [{{name: web, image: nginx}}]""",
    ]
    if pdb:
        docs.append(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\n"
            "metadata: {name: chaos-web, namespace: chaos-test}\n"
            f"spec: {{{pdb}, selector: {{matchLabels: {{app: chaos-web}}}}}}"
        )
    if pinned:
        docs += [
            f"""apiVersion: v1
kind: PersistentVolume
metadata: {{name: chaos-pinned}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: chaos-local
  claimRef: {{namespace: chaos-test, name: data-chaos-db-0}}
  hostPath: {{path: /var/lib/chaos-pinned}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]""",
            f"""apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: chaos-db, namespace: chaos-test}}
spec:
  serviceName: chaos-db
  replicas: 1
  selector: {{matchLabels: {{app: chaos-db}}}}
  template:
    metadata: {{labels: {{app: chaos-db}}}}
    spec:
      {tolerate}
      containers: [{{name: db, image: postgres}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec: {{accessModes: [ReadWriteOnce], storageClassName: chaos-local, resources: {{requests: {{storage: 1Gi}}}}}}""",
        ]
    return "\n---\n".join(docs) + "\n"


@contextmanager
def chaos_workloads(
    cluster: SimCluster, node: str = NODE, pdb: str = "", pinned: bool = False, gated: bool = False
) -> Iterator[None]:
    cluster.kubectl("apply", "-f", "-", input=manifests(node, pdb, pinned, gated))
    try:
        if gated:
            with releasing_gated_pods(cluster, after=0):
                wait_for_web(cluster)
        wait_for_web(cluster)
        if pinned:
            cluster.kubectl(
                "rollout", "status", "-n", "chaos-test", "statefulset/chaos-db",
                "--timeout=120s", timeout=150,
            )  # fmt: skip
        yield
    finally:
        cluster.kubectl(
            "delete", "namespace", "chaos-test", "--ignore-not-found", "--wait=true", timeout=180
        )
        cluster.kubectl("delete", "pv", "chaos-pinned", "--ignore-not-found", timeout=120)


def wait_for_web(cluster: SimCluster) -> None:
    cluster.kubectl(
        "rollout", "status", "-n", "chaos-test", "deployment/chaos-web", "--timeout=120s",
        timeout=150,
    )  # fmt: skip


@contextmanager
def releasing_gated_pods(cluster: SimCluster, after: float) -> Iterator[None]:
    """Lift the scheduling gate of each gated chaos-test pod `after` seconds after it is first
    seen, in the background, for as long as the block runs."""
    done = threading.Event()
    seen: dict[str, float] = {}

    def release() -> None:
        while not done.wait(0.2):
            listed = cluster.kubectl("get", "pods", "-n", "chaos-test", "-o", "json", check=False)
            if listed.returncode != 0:
                continue
            for pod in json.loads(listed.stdout)["items"]:
                name = pod["metadata"]["name"]
                if not pod["spec"].get("schedulingGates"):
                    continue
                if time.monotonic() - seen.setdefault(name, time.monotonic()) >= after:
                    cluster.kubectl(
                        "patch", "pod", name, "-n", "chaos-test", "--type=json",
                        "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]', check=False,
                    )  # fmt: skip

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)


def start(cluster: SimCluster, *args: str) -> subprocess.Popen[str]:
    """A running `inv`, in its own process group (like a shell's foreground job)."""
    return subprocess.Popen(
        [INV, *args],
        cwd=ROOT,
        env={**os.environ, **cluster.env, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def read_until(task: subprocess.Popen[str], text: str) -> list[str]:
    """The task's output lines up to the first that contains `text`."""
    assert task.stdout is not None
    seen = []
    for line in task.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"the task ended without a line containing {text!r}: {''.join(seen)}")


def interrupt(task: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C as a terminal sends it (to the whole process group); the rest of the output."""
    os.killpg(task.pid, signal.SIGINT)
    try:
        out, err = task.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.kill(task.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
        out, err = task.communicate(timeout=30)
        raise AssertionError(f"no end 180 s after Ctrl-C:\n{out}\n{err}") from None
    assert "Traceback" not in out + err
    return out, err


def node(cluster: SimCluster, name: str = NODE) -> dict[str, Any]:
    return cast(dict[str, Any], cluster.get("node", name))


def ready(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def wait_usable(cluster: SimCluster, name: str = NODE, timeout: float = 180) -> None:
    """Until the node is Ready and the node lifecycle controller has lifted its lost-node taints
    (it does so at its next pass, every 25 s on the simulated cluster); waiting, not a check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = node(cluster, name)
        taints = [t["key"] for t in found["spec"].get("taints") or []]
        if ready(found) == "True" and UNREACHABLE not in taints:
            return
        time.sleep(0.5)
    raise AssertionError(f"node {name} not usable after {timeout}s: {found['spec']}")


def prism_workloads_ready(cluster: SimCluster) -> bool:
    items = cluster.get("deployments,statefulsets", "-A", "-l", "app.kubernetes.io/part-of=prism")
    return all(
        (w.get("status") or {}).get("readyReplicas", 0) == w["spec"].get("replicas", 1)
        for w in items["items"]
    )


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


GUARDED = [
    ["chaos.node-down", "--node", NODE, "--for", "5"],
    ["chaos.drain", "--node", NODE],
    ["chaos.backend-outage", "--backend", "redis", "--for", "5"],
    ["chaos.api-restart"],
]


@pytest.mark.parametrize("args", GUARDED, ids=[a[0] for a in GUARDED])
def test_every_drill_refuses_a_cluster_this_project_did_not_create(
    stack: SimCluster, tmp_path: Path, args: list[str]
) -> None:
    """Guide correction 20: another data directory holds no record of creating the cluster, so
    the drill stops before it changes anything (the node stays schedulable and Ready, the
    backend keeps its replica, the control plane keeps its leader)."""
    leader = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    result = stack.inv(*args, PRISM_DATA_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("cluster prism-ci was not created by prism-tasks")
    assert not node(stack)["spec"].get("unschedulable")
    assert ready(node(stack)) == "True"
    assert stack.get("statefulset", "-n", "prism-backends", "redis")["spec"]["replicas"] == 1
    after = stack.get("lease", "-n", "kube-system", "kube-controller-manager")["spec"]
    assert after["holderIdentity"] == leader["holderIdentity"]


def table(out: str) -> list[str]:
    """The recovery table's lines, header first, and whatever follows it (the details)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["drill", "started"])
    return lines[start:]
