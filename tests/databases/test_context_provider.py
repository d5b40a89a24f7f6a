"""The context provider on a cluster this project did not create: a simulated cluster made by
kwokctl directly (tests/support/sim.py: start_foreign), playing a shared staging cluster whose
administrator provides a default storage class with pre-provisioned volumes. prism-tasks deploys,
backs up and checks it only once its context is allowed, and refuses every lifecycle task."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import dbservers
from support.dbservers import Postgres
from support.sim import SimCluster, start_foreign, stop_foreign

pytestmark = pytest.mark.cluster

CLAIMS = [  # the ci overlay's claims, as the cluster's administrator provisions for them
    ("prism", "prism-admin-data"),
    ("prism", "data-mailbox-runner-0"),
    ("prism-backends", "data-redis-0"),
    ("prism-backends", "data-nats-0"),
    ("prism-backends", "data-minio-0"),
    ("prism-backends", "data-postgres-0"),
]
STORAGE = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
"""


def volume(namespace: str, claim: str) -> str:
    return f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-{namespace}-{claim}}}
spec:
  capacity: {{storage: 100Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: standard
  claimRef: {{namespace: {namespace}, name: {claim}}}
  hostPath: {{path: /var/lib/theirs/{claim}}}
"""


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    cluster = start_foreign(tmp_path_factory.mktemp("theirs"))
    try:
        cluster.kubectl(
            "apply", "-f", "-", input="---".join([STORAGE, *(volume(n, c) for n, c in CLAIMS)])
        )
        yield cluster
    finally:
        stop_foreign(cluster)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = dbservers.start_postgres()
    yield server
    server.stop()


def as_context(cluster: SimCluster, tmp_path: Path, allowed: bool = True) -> dict[str, str]:
    """Our environment pointed at their context, with a data directory of our own and the
    registry their cluster pulls the Prism images from (never reached: kwok runs no containers)."""
    env = {
        **cluster.env,
        "PRISM_ENV": "ci",
        "PRISM_CLUSTER_PROVIDER": "context",
        "PRISM_CLUSTER_CONTEXT": cluster.context,
        "PRISM_DATA_DIR": str(tmp_path / "ours"),
        "PRISM_IMAGES_REGISTRY": "registry.example.com/prism",
    }
    del env["PRISM_CLUSTER_NAME"]
    if allowed:
        env["PRISM_CLUSTER_ALLOWED_CONTEXTS"] = f"someone-else,{cluster.context}"
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    from support.cli import inv

    return inv(*args, env=env)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_create_only_checks_that_it_answers(theirs: SimCluster, tmp_path: Path) -> None:
    result = run(as_context(theirs, tmp_path), "cluster.create")
    assert result.returncode == 0, result.stderr
    assert f"cluster of context {theirs.context} answers (Kubernetes v1.32.4)" in result.stdout
    assert not (tmp_path / "ours" / "clusters").exists()  # nothing recorded as created


def test_a_context_not_allowed_is_refused_before_anything_is_applied(
    theirs: SimCluster, tmp_path: Path
) -> None:
    result = run(as_context(theirs, tmp_path, allowed=False), "deploy.all")
    assert result.returncode == 1
    assert last_line(result) == (
        f"context {theirs.context} is not in cluster.allowed_contexts (now empty): prism-tasks "
        f"changes a cluster it did not create only when allowed; add {theirs.context} to "
        "PRISM_CLUSTER_ALLOWED_CONTEXTS (comma-separated) or to the cluster.allowed_contexts "
        "list in invoke.yaml"
    )
    namespaces = {n["metadata"]["name"] for n in theirs.get("namespaces")["items"]}
    assert "prism" not in namespaces and "prism-backends" not in namespaces


def test_without_a_registry_for_the_prism_images_nothing_is_applied(
    theirs: SimCluster, tmp_path: Path
) -> None:
    env = as_context(theirs, tmp_path)
    del env["PRISM_IMAGES_REGISTRY"]
    result = run(env, "deploy.all")
    assert result.returncode == 1
    assert "images: nothing to load into cluster " in result.stdout  # images.load, the pre-task
    assert last_line(result).startswith(
        "the context provider's cluster cannot run images imported into k3d nodes "
        "(imagePullPolicy: Never): set PRISM_IMAGES_REGISTRY (images.registry)"
    )
    namespaces = {n["metadata"]["name"] for n in theirs.get("namespaces")["items"]}
    assert "prism" not in namespaces and "prism-backends" not in namespaces


@pytest.mark.parametrize("task", ["observe.install", "ingress.install"])
def test_the_helm_installs_are_refused_on_a_context_not_allowed(
    theirs: SimCluster, tmp_path: Path, task: str
) -> None:
    result = run(as_context(theirs, tmp_path, allowed=False), task)
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"context {theirs.context} is not in cluster.allowed_contexts (now empty)"
    )
    namespaces = {n["metadata"]["name"] for n in theirs.get("namespaces")["items"]}
    assert "observability" not in namespaces and "ingress-nginx" not in namespaces


@pytest.mark.parametrize(
    "task", ["cluster.stop", "cluster.start", "cluster.delete", "cluster.purge"]
)
def test_lifecycle_tasks_refuse(theirs: SimCluster, tmp_path: Path, task: str) -> None:
    result = run(
        as_context(theirs, tmp_path), task, *(["--yes"] if task == "cluster.purge" else [])
    )
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"cannot {task.split('.')[1]} the cluster of context {theirs.context}: the context "
        "provider only uses a cluster someone else runs"
    )
    assert theirs.kubectl("get", "--raw", "/readyz").stdout == "ok"


def test_deploy_on_their_storage_then_backup(
    theirs: SimCluster, postgres: Postgres, tmp_path: Path
) -> None:
    env = as_context(theirs, tmp_path)
    deployed = run(env, "deploy.all", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    claims = theirs.get("pvc", "-A")["items"]
    assert {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in claims} == set(CLAIMS)
    assert all(c["spec"]["storageClassName"] == "standard" for c in claims)  # their default
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    classes = {sc["metadata"]["name"] for sc in theirs.get("storageclass")["items"]}
    assert classes == {"standard"}  # ours (local-storage) was not added to their cluster
    assert [
        pv for pv in theirs.get("pv")["items"] if pv["metadata"]["name"].startswith("sim-")
    ] == []

    status = json.loads(run(env, "deploy.status", "--json").stdout)
    assert all(w["is_ready"] for w in status["workloads"]) and len(status["workloads"]) == 10

    backup = run(
        {**env, "PRISM_BACKUP_DIR": str(tmp_path / "backups"),
         "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port)},
        "backup.postgres",
    )  # fmt: skip
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert len(list((tmp_path / "backups").glob("postgres-*.dump"))) == 1

    # Every task that changes their cluster needs the allow-list: refused, nothing touched ...
    (dump,) = (tmp_path / "backups").glob("postgres-*.dump")
    not_allowed = {
        **as_context(theirs, tmp_path, allowed=False),
        "PRISM_BACKUP_DIR": str(tmp_path / "backups"),
        "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port),
    }
    for task in (
        ["backends.deploy"],
        ["deploy.delete", "--yes"],
        ["chaos.backend-outage", "--backend", "redis", "--for", "2"],
        ["chaos.drain", "--node", theirs.get("nodes")["items"][-1]["metadata"]["name"]],
        ["backup.restore-postgres", "--file", str(dump), "--yes"],
    ):
        refused = run(not_allowed, *task)
        assert refused.returncode == 1, (task, refused.stdout, refused.stderr)
        assert last_line(refused).startswith(
            f"context {theirs.context} is not in cluster.allowed_contexts"
        ), task
    redis = theirs.get("statefulset", "-n", "prism-backends", "redis")
    assert redis["spec"]["replicas"] == 1
    assert not any(n["spec"].get("unschedulable") for n in theirs.get("nodes")["items"])

    # ... and allowed, a drill that works through the API runs there and ends whole.
    drill = run(env, "chaos.backend-outage", "--backend", "redis", "--for", "2", "--json")
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert json.loads(drill.stdout)["verdict"] == "whole"
