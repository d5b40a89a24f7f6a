"""observe without a cluster: the exact helm and kubectl commands (MockContext, for the k3d
variant that cannot run here), idempotence decisions, and each troubleshooting check on
hand-made objects. (The same against a real helm and the simulated cluster:
tests/cluster/test_observe.py.)"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke import Exit
from support.cli import inv
from support.fakes import changes, cmd, commands, fail, ok, shell, tools  # noqa: F401  (fixture)

from tasks import observe
from tasks._core import target as _target
from tasks._observe import checks as _checks

ROOT = Path(__file__).resolve().parents[2]
K3D = ["--context", "k3d-prism-local"]
READYZ = cmd("kubectl", *K3D, "get", "--raw", "/readyz")
PROMETHEUS_REPO = "https://prometheus-community.github.io/helm-charts"
GRAFANA_REPO = "https://grafana.github.io/helm-charts"
PROMETHEUS_VALUES = str(ROOT / "manifests" / "observability" / "prometheus-values.yaml")
LOKI_VALUES = str(ROOT / "manifests" / "observability" / "loki-values.yaml")


def helm_argv(context: str, *args: str, kubeconfig: str = "") -> list[str]:
    flags = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return ["helm", "--kube-context", context, *flags, "--namespace", "observability", *args]


def prometheus_upgrade(*extra: str) -> list[str]:
    return [
        "upgrade",
        "--install",
        "prometheus",
        "kube-prometheus-stack",
        "--repo",
        PROMETHEUS_REPO,
        "--version",
        "67.8.0",
        "--create-namespace",
        "--wait",
        "--timeout",
        "600s",
        "-f",
        PROMETHEUS_VALUES,
        *extra,
    ]


LOKI_UPGRADE = [
    "upgrade",
    "--install",
    "loki",
    "loki-stack",
    "--repo",
    GRAFANA_REPO,
    "--version",
    "2.10.2",
    "--create-namespace",
    "--wait",
    "--timeout",
    "600s",
    "-f",
    LOKI_VALUES,
]
PROMETHEUS_FETCH = [
    "helm",
    "show",
    "chart",
    "kube-prometheus-stack",
    "--repo",
    PROMETHEUS_REPO,
    "--version",
    "67.8.0",
]
KWOK_SWITCHES = [
    "--set",
    "prometheusOperator.admissionWebhooks.enabled=false",
    "--set",
    "prometheusOperator.admissionWebhooks.patch.enabled=false",
    "--set",
    "prometheusOperator.admissionWebhooks.deployment.enabled=false",
    "--set",
    "prometheusOperator.tls.enabled=false",
]


@pytest.fixture
def k3d(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811  (the fixture)
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")  # named explicitly: may be acted on


def k3d_install_shell(releases: Any = (), values: dict[str, Any] | None = None) -> Any:
    answers = {
        READYZ: ok("ok"),
        cmd(*helm_argv("k3d-prism-local", "list", "--all", "-o", "json")): ok(list(releases)),
        cmd(*helm_argv("k3d-prism-local", *prometheus_upgrade())): ok(),
        cmd(*helm_argv("k3d-prism-local", *LOKI_UPGRADE)): ok(),
    }
    for name, answer in (values or {}).items():
        argv = helm_argv("k3d-prism-local", "get", "values", name, "-o", "json")
        answers[cmd(*argv)] = ok(answer)
    return shell(answers)


@pytest.mark.usefixtures("k3d")
def test_install_on_k3d_installs_the_pinned_charts_from_their_repositories_with_values_files() -> (
    None
):
    """`--repo` and `-f`: no `helm repo add` (the user's repositories stay as they are)."""
    c = k3d_install_shell()
    observe.install(c)
    assert commands(c) == [
        ["kubectl", *K3D, "get", "--raw", "/readyz"],
        helm_argv("k3d-prism-local", "list", "--all", "-o", "json"),
        helm_argv("k3d-prism-local", *prometheus_upgrade()),
        helm_argv("k3d-prism-local", *LOKI_UPGRADE),
    ]


@pytest.mark.usefixtures("tools")
def test_install_on_kwok_switches_off_every_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = str(tmp_path / "kubeconfig")
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")
    monkeypatch.setenv("PRISM_CLUSTER_KUBECONFIG", kubeconfig)
    context = "kwok-prism-local"
    prometheus = helm_argv(context, *prometheus_upgrade(*KWOK_SWITCHES), kubeconfig=kubeconfig)
    loki = helm_argv(context, *LOKI_UPGRADE, kubeconfig=kubeconfig)
    listing = helm_argv(context, "list", "--all", "-o", "json", kubeconfig=kubeconfig)
    readyz = [
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "--context",
        context,
        "get",
        "--raw",
        "/readyz",
    ]
    c = shell(
        {
            cmd(*readyz): ok("ok"),
            cmd(*listing): ok([]),
            cmd(*prometheus): ok(),
            cmd(*loki): ok(),
        }
    )
    observe.install(c)
    assert changes(c) == [prometheus, loki]


@pytest.mark.usefixtures("k3d")
def test_install_leaves_a_release_at_the_pin_with_the_same_values_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployed = {
        "name": "prometheus",
        "revision": "3",
        "status": "deployed",
        "chart": "kube-prometheus-stack-67.8.0",
    }
    same = {"prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": False}}}
    c = k3d_install_shell([deployed], {"prometheus": same})
    observe.install(c)
    upgrades = [argv for argv in changes(c) if "upgrade" in argv]
    assert upgrades == [helm_argv("k3d-prism-local", *LOKI_UPGRADE)]
    out = capsys.readouterr().out
    assert (
        "prometheus: kube-prometheus-stack-67.8.0 already deployed with these values "
        "(revision 3); nothing to do" in out
    )
    assert f"loki: installing loki-stack 2.10.2 from {GRAFANA_REPO} ..." in out


@pytest.mark.usefixtures("k3d")
def test_install_upgrades_a_release_at_another_version() -> None:
    older = {"name": "loki", "revision": "1", "status": "deployed", "chart": "loki-stack-2.10.1"}
    c = k3d_install_shell([older])
    observe.install(c)
    assert helm_argv("k3d-prism-local", *LOKI_UPGRADE) in changes(c)


@pytest.mark.usefixtures("k3d")
def test_install_upgrades_a_release_whose_values_differ() -> None:
    deployed = {"name": "loki", "revision": "1", "status": "deployed", "chart": "loki-stack-2.10.2"}
    c = k3d_install_shell([deployed], {"loki": {"grafana": {"enabled": True}}})
    observe.install(c)
    assert helm_argv("k3d-prism-local", *LOKI_UPGRADE) in changes(c)


@pytest.mark.usefixtures("k3d")
def test_install_stops_on_a_release_left_pending_by_an_interrupted_run() -> None:
    stuck = {"name": "prometheus", "revision": "2", "status": "pending-upgrade", "chart": "x"}
    c = k3d_install_shell([stuck])
    with pytest.raises(Exit, match=r"release prometheus is pending-upgrade .* rollback prometheus"):
        observe.install(c)
    assert not [argv for argv in commands(c) if "upgrade" in argv]


@pytest.mark.usefixtures("k3d")
def test_install_that_helm_cannot_finish_says_what_to_do_next() -> None:
    c = k3d_install_shell()
    prometheus = cmd(*helm_argv("k3d-prism-local", *prometheus_upgrade()))
    c.set_result_for("run", prometheus, fail("Error: context deadline exceeded"))
    c.set_result_for("run", cmd(*PROMETHEUS_FETCH), ok("name: kube-prometheus-stack"))
    with pytest.raises(Exit) as caught:
        observe.install(c)
    assert str(caught.value.message) == (
        "helm could not install prometheus (kube-prometheus-stack-67.8.0): Error: context "
        "deadline exceeded; `inv observe.check` shows what is stuck, then run "
        "`inv observe.install` again"
    )
    assert helm_argv("k3d-prism-local", *LOKI_UPGRADE) not in commands(c)


def test_repository_url_that_is_not_http_is_one_clear_line() -> None:
    result = inv("observe.install", env={"PRISM_OBSERVE_GRAFANA_REPO": "ftp://charts.example"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (
        "PRISM_OBSERVE_GRAFANA_REPO='ftp://charts.example' is not an http(s) chart repository URL"
        in result.stderr
    )


def test_timeout_flag_must_be_positive() -> None:
    result = inv("observe.install", "--timeout=-5")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--timeout '-5' must be between 1 and 86400 seconds" in result.stderr


def test_empty_chart_version_is_refused() -> None:
    result = inv("observe.install", env={"PRISM_OBSERVE_LOKI_CHART_VERSION": ""})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "PRISM_OBSERVE_LOKI_CHART_VERSION is empty; pin a chart version" in result.stderr


@pytest.mark.usefixtures("k3d")
def test_uninstall_without_yes_and_without_a_terminal_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")  # named explicitly: may be acted on
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    c = shell({READYZ: ok("ok")})
    with pytest.raises(Exit, match="uninstall prometheus and loki .*: refusing without --yes"):
        observe.uninstall(c)
    assert changes(c) == []


@pytest.mark.usefixtures("k3d")
def test_grafana_prints_the_port_forward_and_where_the_password_comes_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    observe.grafana(shell({}), port=3300)
    out = capsys.readouterr().out
    assert (
        "kubectl --context k3d-prism-local -n observability port-forward "
        "svc/prometheus-grafana 3300:80" in out
    )
    assert "chart's default grafana.adminPassword (`prom-operator`" in out
    assert "get secret prometheus-grafana -o 'jsonpath={.data.admin-password}' | base64 -d" in out


@pytest.mark.usefixtures("k3d")
def test_grafana_port_out_of_range_is_refused() -> None:
    with pytest.raises(Exit, match="port 70000 is not a TCP port"):
        observe.grafana(shell({}), port=70000)


# --- observe.check on k3d (MockContext): the guide's DNS pod --------------------------------

KINDS = _checks.NAMESPACED_KINDS
METRICS_API = {
    "kind": "APIService",
    "metadata": {"name": "v1beta1.metrics.k8s.io"},
    "spec": {"service": {"name": "metrics-server", "namespace": "kube-system"}},
    "status": {"conditions": [{"type": "Available", "status": "True"}]},
}
ADMIN_SERVICE = {
    "kind": "Service",
    "metadata": {"name": "prism-admin", "namespace": "prism"},
    "spec": {"selector": {"app": "prism-admin"}, "type": "ClusterIP"},
}
ADMIN_SLICE = {
    "kind": "EndpointSlice",
    "metadata": {
        "name": "prism-admin-x",
        "namespace": "prism",
        "labels": {"kubernetes.io/service-name": "prism-admin"},
    },
    "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": True}}],
}
DNS = [
    "kubectl",
    *K3D,
    "-n",
    "default",
    "run",
    "--rm",
    "-i",
    "--restart=Never",
    "dnstest",
    "--image=busybox:1.36",
    "--pod-running-timeout=2m",
    "--",
    "nslookup",
    "prism-admin.prism.svc.cluster.local",
]


def listing(*items: dict[str, Any]) -> Any:
    return ok({"kind": "List", "items": list(items)})


def k3d_check_shell(dns_answer: Any) -> Any:
    return shell(
        {
            READYZ: ok("ok"),
            cmd("kubectl", *K3D, "get", "apiservices,storageclasses", "-o", "json"): listing(
                METRICS_API
            ),
            cmd(
                "kubectl", *K3D, "-n", "kube-system", "get", "deployments", "-o", "json"
            ): listing(),
            cmd("kubectl", *K3D, "-n", "prism", "get", KINDS, "-o", "json"): listing(
                ADMIN_SERVICE, ADMIN_SLICE
            ),
            cmd("kubectl", *K3D, "-n", "prism-backends", "get", KINDS, "-o", "json"): listing(),
            cmd("kubectl", *K3D, "-n", "observability", "get", KINDS, "-o", "json"): listing(),
            cmd(*DNS): dns_answer,
        }
    )


@pytest.mark.usefixtures("k3d")
def test_check_on_k3d_resolves_prism_admin_from_a_throwaway_pod(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = k3d_check_shell(ok("Server:\t10.43.0.10\nName:\tprism-admin.prism.svc.cluster.local\n"))
    observe.check(c)
    assert changes(c) == [DNS]  # the only command that is not a read-only query
    out = capsys.readouterr().out.splitlines()
    assert (
        "ok       dns: prism-admin.prism.svc.cluster.local resolves from a pod (busybox:1.36)"
        in out
    )
    assert (
        "ok       metrics-server: v1beta1.metrics.k8s.io is available; the HPA gets its metrics"
        in out
    )
    assert out[-1] == "no problems on cluster prism-local (0 warning(s))"


@pytest.mark.usefixtures("k3d")
def test_check_on_k3d_reports_failed_dns_with_the_coredns_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from invoke import Result

    failed = Result(
        stdout="** server can't find prism-admin.prism.svc.cluster.local: NXDOMAIN\n"
        'pod "dnstest" deleted\n',
        exited=1,
    )
    with pytest.raises(Exit, match=r"1 problem\(s\), 0 warning\(s\)"):
        observe.check(k3d_check_shell(failed))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("problem"))
    assert line == (
        "problem  dns: nslookup prism-admin.prism.svc.cluster.local from a pod failed: "
        "** server can't find prism-admin.prism.svc.cluster.local: NXDOMAIN; fix: check CoreDNS: "
        "`kubectl --context k3d-prism-local -n kube-system get pods -l k8s-app=kube-dns` and "
        "`kubectl --context k3d-prism-local -n kube-system logs -l k8s-app=kube-dns`"
    )


HEALTHY_K3D_FINDINGS = [
    {
        "severity": "ok",
        "check": "metrics-server",
        "subject": "metrics-server",
        "message": "v1beta1.metrics.k8s.io is available; the HPA gets its metrics",
        "fix": None,
    },
    {
        "severity": "ok",
        "check": "endpoints",
        "subject": "endpoints",
        "message": "1 Service(s) in prism, prism-backends have ready endpoints",
        "fix": None,
    },
    {
        "severity": "ok",
        "check": "claims",
        "subject": "claims",
        "message": "0 claim(s) Bound",
        "fix": None,
    },
    {
        "severity": "ok",
        "check": "pods",
        "subject": "pods",
        "message": "0 pod(s) in prism, prism-backends, observability: no pull, crash or "
        "scheduling errors",
        "fix": None,
    },
    {
        "severity": "ok",
        "check": "dns",
        "subject": "dns",
        "message": "prism-admin.prism.svc.cluster.local resolves from a pod (busybox:1.36)",
        "fix": None,
    },
]


@pytest.mark.usefixtures("k3d")
def test_check_json_on_k3d_is_one_document_with_every_finding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    observe.check(k3d_check_shell(ok("Name:\tprism-admin.prism.svc.cluster.local\n")), json=True)
    document = json.loads(capsys.readouterr().out)  # the whole output: nothing else printed
    assert list(document) == ["cluster", "findings", "problems", "warnings"]
    assert document == {
        "cluster": "prism-local",
        "findings": HEALTHY_K3D_FINDINGS,
        "problems": 0,
        "warnings": 0,
    }


@pytest.mark.usefixtures("k3d")
def test_check_json_with_a_problem_prints_the_document_then_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from invoke import Result

    failed = Result(stdout="** server can't find prism-admin.prism.svc.cluster.local\n", exited=1)
    with pytest.raises(Exit) as caught:
        observe.check(k3d_check_shell(failed), json=True)
    assert caught.value.code == 1
    document = json.loads(capsys.readouterr().out)
    assert (document["problems"], document["warnings"]) == (1, 0)
    assert document["findings"][:4] == HEALTHY_K3D_FINDINGS[:4]
    assert document["findings"][4] == {
        "severity": "problem",
        "check": "dns",
        "subject": "dns",
        "message": "nslookup prism-admin.prism.svc.cluster.local from a pod failed: "
        "** server can't find prism-admin.prism.svc.cluster.local",
        "fix": "check CoreDNS: `kubectl --context k3d-prism-local -n kube-system get pods -l "
        "k8s-app=kube-dns` and `kubectl --context k3d-prism-local -n kube-system logs -l "
        "k8s-app=kube-dns`",
    }


@pytest.mark.usefixtures("k3d")
def test_check_plain_output_with_no_color_is_the_findings_lines_then_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    observe.check(k3d_check_shell(ok("Name:\tprism-admin.prism.svc.cluster.local\n")))
    assert capsys.readouterr().out.splitlines() == [
        *(f"ok       {f['subject']}: {f['message']}" for f in HEALTHY_K3D_FINDINGS),
        "no problems on cluster prism-local (0 warning(s))",
    ]


# --- the checks, one behaviour each, on hand-made objects ------------------------------------

T_K3D = _target.Target("k3d", "prism-local", "k3d-prism-local", "", "test")
T_KWOK = _target.Target("kwok", "prism-ci", "kwok-prism-ci", "", "test")


def snapshot(provider: str = "k3d", **namespaced: list[dict[str, Any]]) -> _checks.Snapshot:
    snap = _checks.Snapshot(provider=provider)
    for key, items in namespaced.items():
        namespace = key.replace("_", "-")
        snap.namespaced[namespace] = _checks.by_kind(items)
    return snap


def pod(name: str, namespace: str = "prism", **status: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {},
        "status": status,
    }


def waiting(reason: str, image: str, message: str = "") -> dict[str, Any]:
    return {
        "containerStatuses": [
            {
                "name": "main",
                "image": image,
                "restartCount": 4,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ]
    }


def test_image_pull_error_of_a_prism_image_says_build_and_import() -> None:
    snap = snapshot(
        prism=[pod("prism-admin-1", **waiting("ErrImageNeverPull", "prism-admin:latest"))]
    )
    [finding] = _checks.containers(snap, T_K3D, ("prism",), {"prism-admin"})
    assert finding.line() == (
        "problem  prism/pod/prism-admin-1 (main): ErrImageNeverPull for image prism-admin:latest; "
        "fix: build the image and load it into the cluster: `inv images.load`"
    )


def test_image_pull_error_of_a_foreign_image_asks_to_check_the_reference() -> None:
    snap = snapshot(prism=[pod("x", **waiting("ImagePullBackOff", "docker.io/library/nginx:nope"))])
    [finding] = _checks.containers(snap, T_K3D, ("prism",), {"prism-admin"})
    assert finding.severity == "problem"
    assert finding.fix == "check the image reference and that the nodes can pull it"


def test_crash_loop_points_to_the_previous_logs() -> None:
    snap = snapshot(prism=[pod("p", **waiting("CrashLoopBackOff", "prism-proxy:latest"))])
    [finding] = _checks.containers(snap, T_K3D, ("prism",), set())
    assert finding.detail == "CrashLoopBackOff (4 restarts)"
    assert "`kubectl --context k3d-prism-local -n prism logs p -c main --previous`" in finding.fix


def test_missing_metrics_server_with_an_hpa_on_k3d_is_a_problem() -> None:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "prism-proxy"}}
    [finding] = _checks.metrics_server(snapshot(prism=[hpa]), T_K3D)
    assert finding.severity == "problem"
    assert "the HPA prism-proxy never scales" in finding.detail
    assert finding.fix == (
        "k3s ships it unless started with --disable=metrics-server: recreate the cluster with "
        "`inv cluster.create`, which never disables it"
    )


def test_missing_metrics_server_on_the_simulated_cluster_is_a_warning() -> None:
    [finding] = _checks.metrics_server(snapshot("kwok"), T_KWOK)
    assert finding.severity == "warning"
    assert "kwok runs no containers" in finding.detail


def test_metrics_api_not_available_is_reported_with_its_logs() -> None:
    snap = snapshot()
    down = {
        **METRICS_API,
        "status": {
            "conditions": [
                {"type": "Available", "status": "False", "message": "failing or missing response"}
            ]
        },
    }
    snap.cluster = {"APIService": [down]}
    [finding] = _checks.metrics_server(snap, T_K3D)
    assert finding.severity == "warning"  # no HPA deployed: nothing breaks yet
    assert "failing or missing response" in finding.detail
    assert "logs deployment/metrics-server" in finding.fix


def test_service_whose_pods_are_not_ready_names_them() -> None:
    service = {**ADMIN_SERVICE}
    not_ready = pod("prism-admin", phase="Running")
    snap = snapshot(prism=[service, not_ready])
    [finding] = _checks.endpoints(snap, T_K3D)
    assert finding.line() == (
        "problem  prism/svc/prism-admin: no ready endpoints: 1 pod(s) match app=prism-admin, "
        "none ready (prism-admin); fix: see why: "
        "`kubectl --context k3d-prism-local -n prism describe pod prism-admin`"
    )


def test_claim_waiting_for_its_first_consumer_is_only_a_warning() -> None:
    claim = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "spare", "namespace": "prism"},
        "spec": {"storageClassName": "local-path"},
        "status": {"phase": "Pending"},
    }
    snap = snapshot(prism=[claim])
    snap.cluster = {
        "StorageClass": [
            {"metadata": {"name": "local-path"}, "volumeBindingMode": "WaitForFirstConsumer"}
        ]
    }
    [finding] = _checks.claims(snap, T_K3D, ("prism",))
    assert finding.severity == "warning"
    assert "binds a claim only once a pod uses it, and none does" in finding.detail
