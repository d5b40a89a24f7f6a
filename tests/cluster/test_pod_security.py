"""Pod Security "restricted" on the simulated cluster, whose real kube-apiserver enforces it (its
default admission plugins include PodSecurity): every overlay's pods are admitted - a deploy is
Ready only once the API server let them in - and a pod that breaks the profile is refused, in
the deploy's one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
OUR_NAMESPACES = ("prism", "prism-backends")


def deploy(cluster: SimCluster, *args: str) -> None:
    result = cluster.inv("deploy.all", "--timeout", "60", *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def deployed(sim_cluster: SimCluster) -> Iterator[SimCluster]:
    """The ci overlay; what the other overlays add (Ingresses, the HPA) is removed afterwards,
    so the modules after this one find the ci overlay as deployed."""
    deploy(sim_cluster)
    yield sim_cluster
    for kind in ("hpa", "ingress"):
        sim_cluster.kubectl("delete", kind, "--all", "-n", "prism", "--ignore-not-found")
    deploy(sim_cluster)


# The guide's workloads, every overlay's (other modules' workloads may share the namespaces).
GUIDE_WORKLOADS = {
    ("StatefulSet", "redis"), ("StatefulSet", "nats"), ("StatefulSet", "minio"),
    ("StatefulSet", "postgres"), ("Deployment", "prism-admin"), ("Deployment", "prism-proxy"),
    ("StatefulSet", "keyvalue-runner"), ("Deployment", "consumer-runner"),
    ("Deployment", "producer-runner"), ("StatefulSet", "mailbox-runner"),
}  # fmt: skip


def workloads(cluster: SimCluster) -> list[dict[str, Any]]:
    found = [
        w
        for namespace in OUR_NAMESPACES
        for w in cluster.get("deployments,statefulsets", "-n", namespace)["items"]
        if (w["kind"], w["metadata"]["name"]) in GUIDE_WORKLOADS
    ]
    assert {(w["kind"], w["metadata"]["name"]) for w in found} == GUIDE_WORKLOADS
    return found


def overlay_with(tmp_path: Path, patch: str = "", extra: str = "") -> Path:
    """The ci overlay with a patch on top, or one more resource, or both."""
    overlay = tmp_path / "overlay"
    overlay.mkdir(parents=True)
    kustomization = f"resources:\n- {os.path.relpath(MANIFESTS / 'overlays' / 'ci', overlay)}\n"
    if extra:
        kustomization += "- extra.yaml\n"
        (overlay / "extra.yaml").write_text(extra)
    if patch:
        kustomization += "patches:\n- path: patch.yaml\n"
        (overlay / "patch.yaml").write_text(patch)
    (overlay / "kustomization.yaml").write_text(kustomization)
    return overlay


def test_both_namespaces_enforce_restricted(deployed: SimCluster) -> None:
    for name in OUR_NAMESPACES:
        labels = deployed.get("namespace", name)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", name


def test_kafka_from_its_base_is_admitted_too(deployed: SimCluster) -> None:
    """Kafka is no overlay's: the backends tasks deploy it from base/kafka alone."""
    result = deployed.inv("backends.deploy", "--only", "kafka", "--timeout", "60")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        kafka = deployed.get("statefulset", "kafka", "-n", "prism-backends")
        assert kafka["status"].get("readyReplicas") == 1
    finally:
        deployed.inv("backends.delete", "--only", "kafka", "--yes")


UNRESTRICTED_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: debug
  namespace: prism
  labels: {app.kubernetes.io/component: foundation}
spec:
  containers:
  - name: debug
    image: busybox:1.36
"""

RESTRICTED = """
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    seccompProfile: {type: RuntimeDefault}
"""
CONTAINER_RESTRICTED = """
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: ["ALL"]}
"""


def test_a_pod_without_the_security_context_is_refused_in_one_line(
    deployed: SimCluster, tmp_path: Path
) -> None:
    result = deployed.inv(
        "deploy.all", "--overlay", str(overlay_with(tmp_path, extra=UNRESTRICTED_POD))
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        'the API server rejected Pod prism/debug: pods "debug" is forbidden: '
        'violates PodSecurity "restricted:latest": '
    ), last
    for rule in ("allowPrivilegeEscalation != false", "unrestricted capabilities",
                 "runAsNonRoot != true", "seccompProfile"):  # fmt: skip
        assert rule in last, rule
    assert last.endswith("(nothing was applied)"), last
    assert deployed.kubectl("get", "pod", "debug", "-n", "prism", check=False).returncode != 0

    # the same pod with the security context is admitted (a server-side dry run)
    admitted = UNRESTRICTED_POD.replace("spec:\n", f"spec:{RESTRICTED}", 1) + CONTAINER_RESTRICTED
    dry = deployed.kubectl("apply", "--dry-run=server", "-f", "-", input=admitted, check=False)
    assert dry.returncode == 0, dry.stderr


PRIVILEGE_ESCALATING_ADMIN = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: prism-admin, namespace: prism}
spec:
  template:
    spec:
      containers:
      - name: prism-admin
        securityContext: {allowPrivilegeEscalation: true}
"""


def test_a_workload_whose_pods_break_the_profile_gets_none_and_the_deploy_stops(
    deployed: SimCluster, tmp_path: Path
) -> None:
    """The API server takes the Deployment (Pod Security checks pods, not their templates) and
    refuses every pod its ReplicaSet makes; the old pods keep serving, and the deploy stops at
    that step. Deploying the overlay as it is puts the pods back."""
    overlay = overlay_with(tmp_path, patch=PRIVILEGE_ESCALATING_ADMIN)
    result = deployed.inv("deploy.all", "--overlay", str(overlay), "--timeout", "8")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "admin: deployment prism/prism-admin not Ready after" in result.stderr
    # the refusal itself, from the events of the ReplicaSet that could not create the pods
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr
    assert "hint: the namespace's Pod Security level" in result.stderr
    assert "proxy        skipped" in result.stdout
    events = deployed.get(
        "events",
        "-n",
        "prism",
        "--field-selector",
        "reason=FailedCreate,involvedObject.kind=ReplicaSet",
    )["items"]
    refused = [
        e["message"] for e in events if e["involvedObject"]["name"].startswith("prism-admin-")
    ]
    assert any('violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in m
               for m in refused), refused  # fmt: skip

    deploy(deployed)
    admin = deployed.get("deployment", "prism-admin", "-n", "prism")
    assert admin["status"].get("readyReplicas") == 1
    container = admin["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("overlay", ["local", "dev", "staging", "prod"])
def test_every_overlay_is_admitted_and_ready(deployed: SimCluster, overlay: str) -> None:
    """The deploy returns once every workload is Ready, which it is only when the API server
    admitted its pods. (ci is the fixture's deploy, and tests/cluster/test_deploy.py's.) Last in
    this module: the Ingresses and the HPA stay until the fixture removes them."""
    deploy(deployed, "--overlay", overlay)
    for workload in workloads(deployed):
        meta, spec = workload["metadata"], workload["spec"]
        assert workload["status"].get("readyReplicas", 0) >= 1, meta["name"]
        pod = spec["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, meta["name"]
