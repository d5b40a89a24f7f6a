"""The kwok provider for real: a control plane on 127.0.0.1 with simulated nodes and pods."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import INV, ROOT
from support.sim import SimCluster, sim_env

from tasks._core import sim_binaries as _sim
from tasks._providers import kwok as _kwok

pytestmark = pytest.mark.cluster

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:does-not-matter}]
"""


@pytest.fixture(scope="module")
def web(sim_cluster: SimCluster) -> Iterator[str]:
    """A Deployment whose pods the simulation makes Ready; yields one pod's name."""
    sim_cluster.kubectl("apply", "-f", "-", input=WEB)
    sim_cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    pods = sim_cluster.get("pods", "-l", "app=web")["items"]
    yield pods[0]["metadata"]["name"]
    sim_cluster.kubectl("delete", "deployment", "web", "--wait=false")


def test_nodes_mirror_the_k3d_layout_and_are_ready(sim_cluster: SimCluster) -> None:
    nodes = sim_cluster.get("nodes")["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == ["kwok-prism-ci-agent-0", "kwok-prism-ci-agent-1", "kwok-prism-ci-server-0"]
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"


def test_api_server_reports_the_pinned_version(sim_cluster: SimCluster) -> None:
    version = sim_cluster.kubectl("version", "-o", "json").stdout
    assert _sim.versions()["KUBE_VERSION"] in version


def test_no_webhooks_and_no_aggregated_apis(sim_cluster: SimCluster) -> None:
    assert sim_cluster.get("validatingwebhookconfigurations")["items"] == []
    assert sim_cluster.get("mutatingwebhookconfigurations")["items"] == []
    services = [a for a in sim_cluster.get("apiservices")["items"] if a["spec"].get("service")]
    assert services == []


def test_deployment_reaches_ready(sim_cluster: SimCluster, web: str) -> None:
    deployment = sim_cluster.get("deployment", "web")
    assert deployment["status"]["readyReplicas"] == 2


def test_kwok_leaves_pods_with_the_drill_annotation_alone(sim_cluster: SimCluster) -> None:
    """cluster.create runs KWOK with chaos.node-down's annotation as its disregard selector: a
    pod carrying it stays Terminating when deleted (no "kubelet" confirms its end) until the
    annotation goes, as on a node that is down and then back."""
    key = _kwok.DISREGARDED
    sim_cluster.kubectl("run", "disregarded", "--image=nginx:does-not-matter", "--restart=Never")
    try:
        sim_cluster.kubectl("wait", "--for=condition=Ready", "pod/disregarded", "--timeout=60s")
        sim_cluster.kubectl("annotate", "pod", "disregarded", f"{key}=some-node")
        sim_cluster.kubectl("delete", "pod", "disregarded", "--wait=false")
        time.sleep(3)  # KWOK confirms a deletion it does not disregard within a fraction of this
        pod = sim_cluster.get("pod", "disregarded")
        assert pod["metadata"].get("deletionTimestamp")
        sim_cluster.kubectl("annotate", "pod", "disregarded", f"{key}-")
        sim_cluster.kubectl("wait", "--for=delete", "pod/disregarded", "--timeout=30s")
    finally:
        sim_cluster.kubectl(
            "delete", "pod", "disregarded", "--grace-period=0", "--force", "--ignore-not-found"
        )


def test_exec_runs_a_host_command(sim_cluster: SimCluster, web: str) -> None:
    result = sim_cluster.kubectl("exec", web, "--", "sh", "-c", "echo $PRISM_SIMULATED; hostname")
    assert result.stdout.splitlines() == ["1", socket.gethostname()]


def test_logs_come_back(sim_cluster: SimCluster, web: str) -> None:
    result = sim_cluster.kubectl("logs", web)
    assert "simulated by kwok" in result.stdout


@pytest.fixture
def loopback_http(tmp_path: Path) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1:9000, a port the simulation forwards."""
    (tmp_path / "hello.txt").write_text("hello from loopback\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 9000), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 9000
    server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_port_forward_reaches_a_loopback_server(
    sim_cluster: SimCluster, web: str, loopback_http: int
) -> None:
    local = free_port()
    forward = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            sim_cluster.kubeconfig,
            "--context",
            sim_cluster.context,
            "port-forward",
            f"pod/{web}",
            f"{local}:{loopback_http}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        assert "Forwarding from 127.0.0.1" in forward.stdout.readline()
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{local}/hello.txt", timeout=10) as reply:
            assert reply.read().decode() == "hello from loopback\n"
    finally:
        forward.terminate()
        forward.wait(10)


CLAIMED = """
apiVersion: v1
kind: Service
metadata:
  name: claimed
  namespace: default
  labels: {app.kubernetes.io/part-of: prism, app.kubernetes.io/component: backend,
           app.kubernetes.io/name: claimed}
spec: {clusterIP: None, selector: {app: claimed}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: claimed
  namespace: default
  labels: {app.kubernetes.io/part-of: prism, app.kubernetes.io/component: backend,
           app.kubernetes.io/name: claimed}
spec:
  serviceName: claimed
  replicas: 1
  selector: {matchLabels: {app: claimed}}
  template:
    metadata: {labels: {app: claimed}}
    spec:
      containers: [{name: c, image: busybox}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local-storage
      resources: {requests: {storage: 3Gi}}
"""


def test_statefulset_claim_binds_with_its_requested_size(
    sim_cluster: SimCluster, tmp_path: Path
) -> None:
    """Deployed through the deploy engine from an overlay of our own: the StatefulSet only
    becomes Ready once its claim on local-storage is Bound."""
    overlay = tmp_path / "claimed"
    overlay.mkdir()
    (overlay / "claimed.yaml").write_text(CLAIMED)
    base = os.path.relpath(Path(__file__).resolve().parents[2] / "manifests" / "base", overlay)
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n- {base}/namespaces\n- {base}/storage\n- claimed.yaml\n"
    )
    result = sim_cluster.inv(
        "deploy.foundation", "backends.deploy", "--overlay", str(overlay), "--only", "claimed"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    claim = sim_cluster.get("pvc", "data-claimed-0")
    assert claim["status"]["phase"] == "Bound"
    assert claim["status"]["capacity"]["storage"] == "3Gi"
    assert claim["spec"]["storageClassName"] == "local-storage"


def test_second_create_is_a_no_op_with_a_message(sim_cluster: SimCluster) -> None:
    result = sim_cluster.inv("cluster.create")
    assert result.returncode == 0, result.stderr
    assert "already exists (kwok) and answers; nothing to do" in result.stdout


def test_first_line_says_which_provider_and_why(sim_cluster: SimCluster) -> None:
    result = sim_cluster.inv("cluster.status", PRISM_CLUSTER_PROVIDER="auto")
    assert result.stdout.splitlines()[0].startswith(
        "provider: kwok (auto: no Docker daemon answers, using the simulated cluster)"
    )


def test_status_and_list_as_json(sim_cluster: SimCluster) -> None:
    status = sim_cluster.inv("cluster.status", "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)  # nothing but the document on standard output
    assert set(document) == {"provider", "reason", "cluster", "context", "exists", "nodes"}
    assert (document["provider"], document["cluster"], document["exists"]) == (
        "kwok",
        "prism-ci",
        True,
    )
    assert sorted(n["name"] for n in document["nodes"]) == [
        "kwok-prism-ci-agent-0", "kwok-prism-ci-agent-1", "kwok-prism-ci-server-0"
    ]  # fmt: skip
    assert all(
        set(n) == {"name", "roles", "ready", "version"} and n["ready"] for n in document["nodes"]
    )
    listed = sim_cluster.inv("cluster.list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["provider"] == "kwok"
    assert "prism-ci" in json.loads(listed.stdout)["clusters"]


def test_status_json_of_a_cluster_that_does_not_exist(tmp_path: Path) -> None:
    from support.cli import inv

    result = inv(
        "cluster.status", "--json", env={**sim_env(tmp_path), "PRISM_CLUSTER_NAME": "none"}
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["exists"] is False and document["nodes"] == []


def test_delete_of_a_cluster_that_does_not_exist(tmp_path: Path) -> None:
    env = sim_env(tmp_path)
    from support.cli import inv

    result = inv("cluster.delete", env={**env, "PRISM_CLUSTER_NAME": "nothing-here"})
    assert result.returncode == 0
    assert "cluster nothing-here does not exist (kwok); nothing to delete" in result.stdout


def test_port_already_taken_is_named_and_nothing_starts(tmp_path: Path) -> None:
    from support.cli import inv

    env = {**sim_env(tmp_path), "PRISM_ENV": "dev", "PRISM_CLUSTER_NAME": "taken"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 6543))  # dev's API port
        busy.listen()
        result = inv("cluster.create", env=env)
    assert result.returncode != 0
    assert (
        "port 6543 (kubeApiserverPort of the simulated cluster) is already in use" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "kwok" / "clusters" / "taken").exists()


def fake_bin_dir(home: Path, kube_apiserver: str | None) -> None:
    """A PRISM_SIM_HOME whose pinned bin dir has the real binaries but one replaced/removed."""
    target = home / _sim.bin_dir().name
    target.mkdir(parents=True)
    for name in _sim.BINARIES:
        (target / name).symlink_to(_sim.bin_dir() / name)
    (target / "kube-apiserver").unlink()
    if kube_apiserver is not None:
        (target / "kube-apiserver").write_text(f"#!/bin/sh\necho '{kube_apiserver}'\n")
        (target / "kube-apiserver").chmod(0o755)


def test_missing_binary_is_named_with_the_build_command(tmp_path: Path) -> None:
    from support.cli import inv

    fake_bin_dir(tmp_path / "simhome", kube_apiserver=None)
    env = {
        **sim_env(tmp_path),
        "PRISM_SIM_HOME": str(tmp_path / "simhome"),
        "PRISM_CLUSTER_NAME": "nobin",
    }
    result = inv("cluster.create", env=env)
    assert result.returncode != 0
    assert "binaries missing" in result.stderr and "kube-apiserver" in result.stderr
    assert "scripts/build-sim-binaries.sh" in result.stderr


def test_wrong_version_binary_is_refused(tmp_path: Path) -> None:
    from support.cli import inv

    fake_bin_dir(tmp_path / "simhome", kube_apiserver="Kubernetes v1.28.0")
    env = {
        **sim_env(tmp_path),
        "PRISM_SIM_HOME": str(tmp_path / "simhome"),
        "PRISM_CLUSTER_NAME": "oldbin",
    }
    result = inv("cluster.create", env=env)
    assert result.returncode != 0
    assert "is not v1.32.4 (it reports Kubernetes v1.28.0)" in result.stderr


def test_delete_removes_every_process_and_file(tmp_path: Path) -> None:
    """A cluster of its own (dev's ports), so the session cluster is untouched."""
    from support import sim

    env = {**sim_env(tmp_path), "PRISM_ENV": "dev"}
    cluster = SimCluster(home=tmp_path, env=env, name="prism-dev")
    assert cluster.inv("cluster.create").returncode == 0
    pid_dir = tmp_path / "kwok" / "clusters" / "prism-dev" / "pids"
    pids = [int(p.read_text()) for p in pid_dir.glob("*.pid")]
    assert len(pids) == 5  # etcd, kube-apiserver, controller-manager, scheduler, kwok
    sim.stop(cluster)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "kwok" / "clusters" / "prism-dev").exists()
    assert "kwok-prism-dev" not in Path(env["PRISM_CLUSTER_KUBECONFIG"]).read_text()


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_stale_marker_does_not_make_someone_elses_cluster_ours(tmp_path: Path) -> None:
    """Ours is deleted behind prism-tasks' back (someone names it explicitly, from another data
    directory) and that someone creates a cluster of the same name: the marker recorded which
    cluster was ours, so our delete refuses this one."""
    env = {**sim_env(tmp_path), "PRISM_ENV": "dev"}
    ours = SimCluster(home=tmp_path, env=env, name="prism-dev")
    elsewhere = {"PRISM_DATA_DIR": str(tmp_path / "someone-else")}
    assert ours.inv("cluster.create").returncode == 0
    marker = tmp_path / "data" / "dev" / "clusters" / "kwok-prism-dev.json"
    assert json.loads(marker.read_text())["uid"]
    try:
        gone = ours.inv("cluster.delete", PRISM_CLUSTER_NAME="prism-dev", **elsewhere)
        assert gone.returncode == 0, gone.stderr
        theirs = ours.inv("cluster.create", **elsewhere)
        assert theirs.returncode == 0, theirs.stderr

        refused = ours.inv("cluster.delete")

        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        assert "is not the one prism-tasks created" in refused.stderr.strip().splitlines()[-1]
        assert ours.inv("cluster.status").returncode == 0  # still there
    finally:
        ours.inv("cluster.delete", PRISM_CLUSTER_NAME="prism-dev")


def test_start_returns_once_the_api_answers(tmp_path: Path) -> None:
    env = {**sim_env(tmp_path), "PRISM_ENV": "dev"}
    cluster = SimCluster(home=tmp_path, env=env, name="prism-dev")
    assert cluster.inv("cluster.create").returncode == 0
    try:
        assert cluster.inv("cluster.stop").returncode == 0
        started = cluster.inv("cluster.start", "deploy.foundation")
        assert started.returncode == 0, started.stdout + started.stderr
    finally:
        cluster.inv("cluster.delete")


def test_an_interrupted_create_is_finished_by_the_next_and_the_context_kept(
    tmp_path: Path,
) -> None:
    """Ctrl-C once kwokctl has made the control plane: the user's current context is put back,
    and the next `cluster.create` adds the nodes the first never got to."""
    env = {**sim_env(tmp_path), "PRISM_ENV": "dev"}
    kubeconfig = Path(env["PRISM_CLUSTER_KUBECONFIG"])
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: mine\ncontexts:\n"
        "- name: mine\n  context: {cluster: mine, user: mine}\n"
        "clusters:\n- name: mine\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "users:\n- name: mine\n  user: {}\n"
    )
    cluster = SimCluster(home=tmp_path, env=env, name="prism-dev")
    task = subprocess.Popen(
        [INV, "cluster.create"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = tmp_path / "kwok" / "clusters" / "prism-dev" / "pids"
        deadline = time.monotonic() + 120
        while len(list(pids.glob("*.pid"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # the control plane is coming up: interrupt there
        os.killpg(task.pid, signal.SIGINT)
        out, err = task.communicate(timeout=120)
        assert task.returncode == 130, out + err
        assert "Traceback" not in err
        assert "current-context: mine" in kubeconfig.read_text()

        again = cluster.inv("cluster.create")
        assert again.returncode == 0, again.stdout + again.stderr
        nodes = cluster.get("nodes")["items"]
        assert len(nodes) == 2  # dev: one server, one agent
        assert all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
            for n in nodes
        )
        assert "current-context: mine" in kubeconfig.read_text()
    finally:
        task.kill()
        cluster.inv("cluster.delete")
