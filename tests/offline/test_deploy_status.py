"""`deploy.status` against backends.enabled, without a cluster: the workloads come from a canned
`kubectl get -o json`. An enabled backend with no workload is reported with the step that
deploys it; a deployed backend that is not enabled is marked so, in the table and in --json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from invoke import Result
from support.cli import make_context

from tasks import deploy
from tasks._core import target as _target
from tasks._observe import checks as _checks


def workload(kind: str, namespace: str, name: str, component: str) -> dict[str, Any]:
    """A workload as `kubectl get -o json` lists it: labelled as the manifests label it, Ready."""
    return {
        "kind": kind,
        "metadata": {
            "namespace": namespace,
            "name": name,
            "generation": 1,
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {
                "app.kubernetes.io/part-of": "prism",
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/component": component,
            },
        },
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }


RUNNING = [
    workload("Deployment", "prism", "prism-admin", "admin"),
    workload("StatefulSet", "prism-backends", "redis", "backend"),
    workload("StatefulSet", "prism-backends", "kafka", "backend"),
]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster running RUNNING, with redis and postgres enabled; no HPA finding."""
    kwok = _target.Target("kwok", "prism-ci", "kwok-prism-ci", "", "PRISM_CLUSTER_PROVIDER")

    def kubectl(c: Any, *args: str, **kwargs: Any) -> Result:
        assert args[:2] == ("get", "deployments,statefulsets"), args
        return Result(stdout=json.dumps({"items": RUNNING}))

    monkeypatch.setattr(_target, "require_reachable", lambda c: kwok)
    monkeypatch.setattr(_target, "kubectl", kubectl)
    monkeypatch.setattr(_checks, "metrics_now", lambda c, t: [])
    monkeypatch.setenv("PRISM_BACKENDS_ENABLED", "redis,postgres")


@pytest.mark.usefixtures("cluster")
def test_json_lists_each_backend_enabled_or_deployed_and_finds_the_differences(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deploy.status(make_context(), json=True)
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["cluster", "context", "workloads", "backends", "findings"]
    assert document["backends"] == [
        {"name": "kafka", "enabled": False, "deployed": True},
        {"name": "postgres", "enabled": True, "deployed": False},
        {"name": "redis", "enabled": True, "deployed": True},
    ]
    assert document["findings"] == [
        {
            "severity": "warning",
            "subject": "kafka",
            "detail": "deployed, not enabled (backends.enabled)",
            "fix": "add kafka to PRISM_BACKENDS_ENABLED, or remove it: "
            "`inv backends.delete --only kafka`",
            "check": "backends",
        },
        {
            "severity": "warning",
            "subject": "postgres",
            "detail": "enabled, not deployed",
            "fix": "run `inv deploy.all`",
            "check": "backends",
        },
    ]
    # the workload rows keep their documented keys
    assert {tuple(row) for row in document["workloads"]} == {
        ("namespace", "kind", "name", "ready", "desired", "is_ready", "rollout", "age_seconds")
    }


@pytest.mark.usefixtures("cluster")
def test_table_marks_the_backend_not_enabled_and_names_the_one_not_deployed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    deploy.status(make_context())
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:3]): line for line in lines[1:4]}
    assert rows[("prism-backends", "StatefulSet", "kafka")].endswith(
        "not enabled (backends.enabled)"
    )
    assert "not enabled" not in rows[("prism-backends", "StatefulSet", "redis")]
    assert "not enabled" not in rows[("prism", "Deployment", "prism-admin")]
    assert lines[4:] == [
        "warning  kafka: deployed, not enabled (backends.enabled); fix: add kafka to "
        "PRISM_BACKENDS_ENABLED, or remove it: `inv backends.delete --only kafka`",
        "warning  postgres: enabled, not deployed; fix: run `inv deploy.all`",
    ]


@pytest.mark.usefixtures("cluster")
def test_backends_as_enabled_bring_no_finding(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_BACKENDS_ENABLED", "redis,kafka")
    deploy.status(make_context(), json=True)
    document = json.loads(capsys.readouterr().out)
    assert document["findings"] == []
    assert all(b["enabled"] and b["deployed"] for b in document["backends"])
