"""observe against the simulated cluster: the real helm installs the observability stack from a
loopback chart repository (`--repo`, the user's helm repositories untouched), idempotently and
without webhooks, and a repository it cannot fetch from is one line naming the mirror setting;
observe.check finds what the guide's troubleshooting section looks for, as lines or one JSON
document, and exits non-zero only on problems."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.chartrepo import ChartRepo, helm_env, run_helm, serve
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

STACK = {
    "prometheus-kube-prometheus-operator",
    "prometheus-grafana",
    "loki",
    "loki-promtail",
}


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    with serve(tmp_path_factory.mktemp("charts")) as repo:
        yield repo


@pytest.fixture(scope="module")
def user_repositories(charts: ChartRepo) -> bytes:
    """The user's own helm repositories before any install: one they added themselves."""
    run_helm(helm_env(charts.home / "helm"), "repo", "add", "team-charts", charts.repo("grafana"))
    return charts.repositories_file.read_bytes()


@pytest.fixture(scope="module")
def installed(
    sim_cluster: SimCluster, charts: ChartRepo, user_repositories: bytes
) -> Iterator[str]:
    """observe.install from nothing; yields its output. The releases go again at the end."""
    result = sim_cluster.inv("observe.install", NO_COLOR="1", **charts.env)
    assert result.returncode == 0, result.stdout + result.stderr
    yield result.stdout
    removed = sim_cluster.inv("observe.uninstall", "--yes", **charts.env)
    assert removed.returncode == 0, removed.stdout + removed.stderr


def helm(cluster: SimCluster, charts: ChartRepo, *args: str) -> Any:
    flags = ["--kube-context", cluster.context, "--kubeconfig", cluster.kubeconfig]
    result = run_helm(helm_env(charts.home / "helm"), *flags, *args, "-o", "json")
    return json.loads(result.stdout)


def releases(cluster: SimCluster, charts: ChartRepo, namespace: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in helm(cluster, charts, "list", "-n", namespace, "--all")}


def deployments(cluster: SimCluster, namespace: str = "observability") -> dict[str, Any]:
    items = cluster.get("deployments", "-n", namespace)["items"]
    return {d["metadata"]["name"]: d for d in items}


def test_install_deploys_both_releases_at_the_pinned_versions(
    sim_cluster: SimCluster, charts: ChartRepo, installed: str
) -> None:
    found = releases(sim_cluster, charts, "observability")
    assert {name: r["chart"] for name, r in found.items()} == {
        "prometheus": "kube-prometheus-stack-67.8.0",
        "loki": "loki-stack-2.10.2",
    }
    assert {r["status"] for r in found.values()} == {"deployed"}


def test_install_waits_until_every_deployment_is_ready(
    sim_cluster: SimCluster, installed: str
) -> None:
    found = deployments(sim_cluster)
    assert set(found) == STACK  # no loki-grafana: the guide's grafana.enabled=false
    for name, deployment in found.items():
        assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"], name


def test_install_reports_progress_and_time_per_release(charts: ChartRepo, installed: str) -> None:
    """The plain output (NO_COLOR): each release, where its chart comes from, its time."""
    lines = installed.splitlines()
    prometheus = charts.repo("prometheus-community")
    assert f"prometheus: installing kube-prometheus-stack 67.8.0 from {prometheus} ..." in lines
    assert f"loki: installing loki-stack 2.10.2 from {charts.repo('grafana')} ..." in lines
    assert re.search(
        r"^prometheus: kube-prometheus-stack-67.8.0 ready in \d+\.\ds$", installed, re.M
    )
    assert re.search(r"^loki: loki-stack-2.10.2 ready in \d+\.\ds$", installed, re.M)
    assert re.fullmatch(
        r"observability stack ready in namespace observability of cluster prism-ci "
        r"\(\d+\.\ds\); Grafana: `inv observe.grafana`",
        lines[-1],
    )


def test_install_fetches_from_the_configured_urls_and_leaves_the_users_repositories_alone(
    sim_cluster: SimCluster, charts: ChartRepo, user_repositories: bytes, installed: str
) -> None:
    assert {"/prometheus-community/index.yaml", "/grafana/index.yaml"} <= set(charts.requests)
    assert charts.repositories_file.read_bytes() == user_repositories
    listed = {r["name"]: r["url"] for r in helm(sim_cluster, charts, "repo", "list")}
    assert listed == {"team-charts": charts.repo("grafana")}


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections to it are refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/charts"


@pytest.mark.parametrize("broken", ["not-found", "refused"])
def test_a_repository_that_cannot_be_fetched_from_is_one_line_naming_it_and_the_mirror_setting(
    sim_cluster: SimCluster, charts: ChartRepo, refused_url: str, broken: str
) -> None:
    url = charts.repo("no-such-repository") if broken == "not-found" else refused_url
    env = {
        **charts.env,
        "PRISM_OBSERVE_NAMESPACE": "observability-broken",
        "PRISM_OBSERVE_PROMETHEUS_REPO": url,
    }
    result = sim_cluster.inv("observe.install", **env)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"cannot fetch chart kube-prometheus-stack 67.8.0 from {url} (Error: ")
    assert line.endswith(
        "); to use a mirror of that repository, set PRISM_OBSERVE_PROMETHEUS_REPO to its URL "
        "(in .env or the environment) and run `inv observe.install` again"
    )
    assert result.stdout.splitlines() == [
        f"prometheus: installing kube-prometheus-stack 67.8.0 from {url} ..."
    ]
    assert releases(sim_cluster, charts, "observability-broken") == {}


def test_install_on_kwok_switches_off_the_webhooks_and_creates_none(
    sim_cluster: SimCluster, charts: ChartRepo, installed: str
) -> None:
    values = helm(sim_cluster, charts, "get", "values", "prometheus", "-n", "observability")
    assert values == {
        "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}},
        "prometheusOperator": {
            "admissionWebhooks": {
                "enabled": False,
                "patch": {"enabled": False},
                "deployment": {"enabled": False},
            },
            "tls": {"enabled": False},
        },
    }
    loki = helm(sim_cluster, charts, "get", "values", "loki", "-n", "observability")
    assert loki == {"grafana": {"enabled": False}, "promtail": {"enabled": True}}
    assert sim_cluster.get("validatingwebhookconfigurations")["items"] == []
    assert sim_cluster.get("mutatingwebhookconfigurations")["items"] == []
    aggregated = [a for a in sim_cluster.get("apiservices")["items"] if a["spec"].get("service")]
    assert aggregated == []


def test_second_install_changes_nothing_and_needs_no_repository(
    sim_cluster: SimCluster, charts: ChartRepo, installed: str
) -> None:
    """helm would write a new revision on every upgrade; an unchanged release is left alone,
    without fetching anything (the repositories here point nowhere)."""
    before = {n: d["metadata"]["resourceVersion"] for n, d in deployments(sim_cluster).items()}
    nowhere = {
        "PRISM_OBSERVE_PROMETHEUS_REPO": charts.repo("gone"),
        "PRISM_OBSERVE_GRAFANA_REPO": charts.repo("gone"),
    }
    result = sim_cluster.inv("observe.install", **{**charts.env, **nowhere})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prometheus: kube-prometheus-stack-67.8.0 already deployed with these values " in (
        result.stdout
    )
    assert "loki: loki-stack-2.10.2 already deployed with these values " in result.stdout
    found = releases(sim_cluster, charts, "observability")
    assert {name: r["revision"] for name, r in found.items()} == {"prometheus": "1", "loki": "1"}
    after = {n: d["metadata"]["resourceVersion"] for n, d in deployments(sim_cluster).items()}
    assert after == before


def test_a_changed_pin_upgrades_that_release_only_and_uninstall_removes_both(
    sim_cluster: SimCluster, charts: ChartRepo
) -> None:
    """In a namespace of its own, so the module's stack stays as it is."""
    env = {**charts.env, "PRISM_OBSERVE_NAMESPACE": "observability-pins"}
    try:
        older = sim_cluster.inv("observe.install", PRISM_OBSERVE_LOKI_CHART_VERSION="2.10.1", **env)
        assert older.returncode == 0, older.stdout + older.stderr
        newer = sim_cluster.inv("observe.install", **env)
        assert newer.returncode == 0, newer.stdout + newer.stderr
        assert f"loki: upgrading loki-stack 2.10.2 from {charts.repo('grafana')} ..." in (
            newer.stdout
        )
        found = releases(sim_cluster, charts, "observability-pins")
        assert {n: (r["chart"], r["revision"]) for n, r in found.items()} == {
            "prometheus": ("kube-prometheus-stack-67.8.0", "1"),
            "loki": ("loki-stack-2.10.2", "2"),
        }
    finally:
        removed = sim_cluster.inv("observe.uninstall", "--yes", **env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert re.search(r"^loki: uninstalled in \d+\.\ds$", removed.stdout, re.M)
    assert releases(sim_cluster, charts, "observability-pins") == {}
    again = sim_cluster.inv("observe.uninstall", "--yes", **env)
    assert again.returncode == 0
    assert "prometheus: not installed in namespace observability-pins; nothing to do" in (
        again.stdout
    )


def test_status_lists_the_releases_and_the_metrics_warning(
    sim_cluster: SimCluster, charts: ChartRepo, installed: str
) -> None:
    for name in ("observe", "observe.pods"):  # the default task, under its old name too
        result = sim_cluster.inv(name, NO_COLOR="1", **charts.env)
        assert result.returncode == 0, result.stderr
        assert (
            "observability (namespace observability): "
            "prometheus kube-prometheus-stack-67.8.0 deployed (revision 1), "
            "loki loki-stack-2.10.2 deployed (revision 1)" in result.stdout
        )
        assert "warning  metrics-server: no v1beta1.metrics.k8s.io API" in result.stdout


# --- observe.check ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(sim_cluster: SimCluster, installed: str) -> None:
    """The ci overlay and the observability stack, both healthy."""
    result = sim_cluster.inv("deploy.all")
    assert result.returncode == 0, result.stdout + result.stderr


def test_status_heads_each_kubectl_block_with_its_namespace(
    sim_cluster: SimCluster, charts: ChartRepo, stack: None
) -> None:
    result = sim_cluster.inv("observe.status", NO_COLOR="1", **charts.env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first, second = lines.index("namespace prism:"), lines.index("namespace prism-backends:")
    end = next(i for i, line in enumerate(lines) if line.startswith("observability (namespace"))
    assert first < second < end
    prism, backends = lines[first + 1 : second], lines[second + 1 : end]
    assert any(line.startswith("service/prism-admin ") for line in prism), prism
    assert not any(line.startswith("service/redis ") for line in prism), prism
    assert any(line.startswith("service/redis ") for line in backends), backends
    assert not any(line.startswith("service/prism-admin ") for line in backends), backends


def check(cluster: SimCluster, *flags: str) -> subprocess.CompletedProcess[str]:
    result = cluster.inv("observe.check", *flags, NO_COLOR="1")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_check_on_a_healthy_stack_exits_zero_and_warns_about_metrics_server(
    sim_cluster: SimCluster, stack: None
) -> None:
    """The simulated cluster has no metrics-server (no container runs, nothing to measure):
    a warning, not a problem, so a healthy stack passes."""
    result = check(sim_cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("problem")]
    assert any(
        line.startswith("warning  metrics-server: no v1beta1.metrics.k8s.io") for line in lines
    )
    assert any(
        re.fullmatch(
            r"ok       endpoints: \d+ Service\(s\) in prism, prism-backends have ready endpoints",
            line,
        )
        for line in lines
    )
    assert any(line.startswith("ok       claims: ") and "Bound" in line for line in lines)
    assert any(line.startswith("ok       pods: ") for line in lines)
    assert any(
        line.startswith("skipped  dns: not meaningful on the simulated cluster") for line in lines
    )
    assert lines[-1] == "no problems on cluster prism-ci (1 warning(s))"


def test_check_json_on_a_healthy_stack_is_one_document_with_stable_keys(
    sim_cluster: SimCluster, stack: None
) -> None:
    result = check(sim_cluster, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)  # all of standard output: nothing but the document
    assert list(document) == ["cluster", "findings", "problems", "warnings"]
    assert (document["cluster"], document["problems"], document["warnings"]) == ("prism-ci", 0, 1)
    for finding in document["findings"]:
        assert list(finding) == ["severity", "check", "subject", "message", "fix"]
    by_check = {f["check"]: f for f in document["findings"]}
    assert list(by_check) == ["metrics-server", "endpoints", "claims", "pods", "dns"]
    assert by_check["metrics-server"]["severity"] == "warning"
    assert by_check["metrics-server"]["message"].startswith("no v1beta1.metrics.k8s.io API")
    assert by_check["metrics-server"]["fix"] == (
        "expected here; on k3d, metrics-server ships with k3s"
    )
    assert by_check["endpoints"]["severity"] == "ok" and by_check["endpoints"]["fix"] is None
    assert by_check["dns"] == {
        "severity": "skipped",
        "check": "dns",
        "subject": "dns",
        "message": "not meaningful on the simulated cluster: its pods run no containers, so no "
        "pod can resolve anything",
        "fix": None,
    }
    # the same findings as the plain lines, in the same order
    plain = check(sim_cluster).stdout.splitlines()
    assert [line.split(":", 1)[0] for line in plain[:-1]] == [
        f"{f['severity']:<8} {f['subject']}" for f in document["findings"]
    ]


@contextmanager
def applied(cluster: SimCluster, manifest: str) -> Iterator[None]:
    """The objects exist inside the block and are gone after it (the cluster is shared)."""
    cluster.kubectl("apply", "-f", "-", input=manifest)
    try:
        yield
    finally:
        cluster.kubectl("delete", "-f", "-", "--wait=true", input=manifest)


UNBOUND_CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: orphan-data, namespace: prism}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: no-such-class
  resources: {requests: {storage: 1Gi}}
"""


@pytest.fixture
def unbound_claim(sim_cluster: SimCluster, stack: None) -> Iterator[None]:
    with applied(sim_cluster, UNBOUND_CLAIM):
        yield


def test_check_reports_an_unbound_claim_with_the_storage_class_fix(
    sim_cluster: SimCluster, unbound_claim: None
) -> None:
    result = check(sim_cluster)
    assert result.returncode == 1
    assert (
        "problem  prism/pvc/orphan-data: Pending: storage class 'no-such-class' does not exist "
        "(have: local-storage); fix: use an existing class (the stack's is local-storage, "
        "created by `inv deploy.foundation`) or create 'no-such-class'"
    ) in result.stdout.splitlines()
    assert "1 problem(s), 1 warning(s) on cluster prism-ci" in result.stderr


def test_check_json_with_a_problem_prints_the_document_and_exits_1(
    sim_cluster: SimCluster, unbound_claim: None
) -> None:
    result = check(sim_cluster, "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert (document["problems"], document["warnings"]) == (1, 1)
    [problem] = [f for f in document["findings"] if f["severity"] == "problem"]
    assert problem == {
        "severity": "problem",
        "check": "claims",
        "subject": "prism/pvc/orphan-data",
        "message": "Pending: storage class 'no-such-class' does not exist (have: local-storage)",
        "fix": "use an existing class (the stack's is local-storage, created by "
        "`inv deploy.foundation`) or create 'no-such-class'",
    }
    assert "1 problem(s), 1 warning(s) on cluster prism-ci" in result.stderr


UNSCHEDULABLE_POD = """
apiVersion: v1
kind: Pod
metadata: {name: nowhere, namespace: prism}
spec:  # the namespace enforces Pod Security "restricted"
  nodeSelector: {disktype: ssd}
  securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"""


@pytest.fixture
def unschedulable_pod(sim_cluster: SimCluster, stack: None) -> Iterator[None]:
    with applied(sim_cluster, UNSCHEDULABLE_POD):
        sim_cluster.kubectl(
            "wait",
            "-n",
            "prism",
            "--for=condition=PodScheduled=False",
            "pod/nowhere",
            "--timeout=30s",
        )
        yield


def test_check_reports_a_pod_no_node_can_take_with_its_fix(
    sim_cluster: SimCluster, unschedulable_pod: None
) -> None:
    result = check(sim_cluster)
    assert result.returncode == 1
    [line] = [x for x in result.stdout.splitlines() if x.startswith("problem")]
    assert line.startswith(
        "problem  prism/pod/nowhere: Pending, FailedScheduling: 0/3 nodes are available: "
        "3 node(s) didn't match Pod's node affinity/selector."
    )
    assert "; fix: no node has the labels disktype=ssd: remove the nodeSelector or label a " in line
    assert line.endswith(f"--context {sim_cluster.context} label node NODE disktype=ssd`")


def test_check_without_a_cluster_names_the_next_step(tmp_path: Path) -> None:
    from support.cli import inv
    from support.sim import sim_env

    env = {**sim_env(tmp_path), "PRISM_CLUSTER_NAME": "absent"}
    result = inv("observe.check", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach cluster absent" in result.stderr
    assert "run `inv cluster.create`" in result.stderr
