"""What a deploy says, without a cluster: each step's objects created and configured, the
table of counts it ends with, and kubectl's rollout words while it waits."""

from __future__ import annotations

from typing import Any

import pytest

from tasks._deploy import plan as _plan
from tasks._deploy.plan import Outcome, Plan, step_report, summarize
from tasks._deploy.render import key
from tasks._kube.readiness import rollout_state


def obj(kind: str, name: str, namespace: str | None = "prism") -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata}


NAMESPACE = obj("Namespace", "prism", None)
CONFIG = obj("ConfigMap", "prism-admin-config")
SERVICE = obj("Service", "prism-admin")
DEPLOYMENT = obj("Deployment", "prism-admin")
POLICY = obj("NetworkPolicy", "default-deny")


def applied(
    monkeypatch: pytest.MonkeyPatch,
    versions: dict[str, tuple[str, str]],
    as_they_are: tuple[dict[str, Any], ...] = (),
) -> Plan:
    """A plan that applied the objects named in `versions` (name -> resourceVersion before the
    deploy, "" when new, and after its apply): what the API server would have answered."""
    objects = [NAMESPACE, CONFIG, SERVICE, DEPLOYMENT, POLICY]
    plan = Plan(None, objects, [])
    plan.before = {key(o): versions[o["metadata"]["name"]][0] for o in objects}

    def server_side_apply(api: Any, resources: Any, o: dict[str, Any], manager: str) -> dict:
        return {"metadata": {"resourceVersion": versions[o["metadata"]["name"]][1]}}

    monkeypatch.setattr(_plan._kube, "server_side_apply", server_side_apply)
    plan.apply(objects, frozenset(key(o) for o in as_they_are))
    return plan


def named(**objects: list[str]) -> dict[str, list[str]]:
    """An outcome's objects: each change (created, configured, unchanged) -> object names."""
    return {change: objects.get(change, []) for change in _plan.CHANGES}


def test_a_step_names_the_objects_it_created_and_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = applied(
        monkeypatch,
        {
            "prism": ("", "11"),  # new
            "prism-admin-config": ("7", "12"),  # changed by this apply
            "prism-admin": ("", "13"),  # the Service and the Deployment: new
            "default-deny": ("8", "8"),  # applied, nothing changed
        },
    )
    objects = plan.changes_of([NAMESPACE, CONFIG, SERVICE, DEPLOYMENT, POLICY])
    report = step_report(Outcome("admin", started=10.0, finished=11.3, objects=objects))
    assert report == (
        "admin (1.3s; 3 created, 1 configured, 1 unchanged)\n"
        "  created: namespace/prism, prism/service/prism-admin, prism/deployment/prism-admin\n"
        "  configured: prism/configmap/prism-admin-config"
    )


def test_a_step_that_changed_nothing_reports_only_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = applied(
        monkeypatch,
        dict.fromkeys(("prism", "prism-admin-config", "prism-admin", "default-deny"), ("5", "5")),
        as_they_are=(CONFIG,),  # known to be a no-op: not even applied
    )
    objects = plan.changes_of([CONFIG, SERVICE, DEPLOYMENT])
    assert objects == named(
        unchanged=[
            "prism/configmap/prism-admin-config",
            "prism/service/prism-admin",
            "prism/deployment/prism-admin",
        ]
    )
    assert step_report(Outcome("admin", 0.0, 0.4, objects=objects)) == "admin (0.4s; 3 unchanged)"


def test_a_step_without_objects_reports_its_time_alone() -> None:
    assert step_report(Outcome("ingress", 2.0, 2.0)) == "ingress (0.0s)"


def test_objects_of_one_name_in_two_namespaces_are_told_apart() -> None:
    other = obj("NetworkPolicy", "default-deny", "prism-backends")
    assert _plan.object_name(POLICY) == "prism/networkpolicy/default-deny"
    assert _plan.object_name(other) == "prism-backends/networkpolicy/default-deny"
    assert _plan.object_name(NAMESPACE) == "namespace/prism"


def test_a_deploy_that_changed_nothing_ends_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = [
        Outcome("foundation", 0.0, 0.1, objects=named(unchanged=["namespace/prism"] * 3)),
        Outcome("admin", 0.1, 0.2, objects=named(unchanged=["prism/service/prism-admin"] * 2)),
    ]
    summarize(outcomes, 1.44)
    assert capsys.readouterr().out == (
        "✓ nothing changed: 5 objects as deployed, every workload Ready (1.4s)\n"
    )


def test_the_table_keeps_the_counts_per_step_and_in_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcomes = [
        Outcome("foundation", 0.0, 0.5, objects=named(unchanged=["namespace/prism"])),
        Outcome(
            "admin",
            0.5,
            2.0,
            objects=named(
                created=["prism/deployment/prism-admin"],
                configured=["prism/configmap/prism-admin-config"],
                unchanged=["prism/service/prism-admin"],
            ),
        ),
        Outcome("ingress", 2.0, 2.0),  # nothing to apply in this overlay
    ]
    summarize(outcomes, 2.1)
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert rows == [
        ["step", "seconds", "created", "configured", "unchanged"],
        ["foundation", "0.5", "0", "0", "1"],
        ["admin", "1.5", "1", "1", "1"],
        ["ingress", "0.0"],
        ["total", "2.1", "1", "1", "2"],
    ]


# --- what a deploy says while it waits: kubectl's rollout words ---------------------------


def workload(kind: str, want: int, generation: int = 1, **status: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"generation": generation},
        "spec": {"replicas": want},
        "status": {"observedGeneration": 1, **status},
    }


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        # the new ReplicaSet has its pods, an old pod is still there
        (workload("Deployment", 2, replicas=3, updatedReplicas=2, availableReplicas=2),
         "1 old replica pending termination"),
        (workload("Deployment", 2, replicas=4, updatedReplicas=2, availableReplicas=2),
         "2 old replicas pending termination"),
        # the old pods are gone, a new one is not available yet
        (workload("Deployment", 2, replicas=2, updatedReplicas=2, availableReplicas=1),
         "1 of 2 updated replicas available"),
        (workload("Deployment", 2, replicas=3, updatedReplicas=1, availableReplicas=2),
         "1 of 2 new replicas updated"),
        (workload("Deployment", 1, generation=2, replicas=1, updatedReplicas=1),
         "waiting for the controller to see the new spec"),
        # a StatefulSet replaces pods one at a time: the old pod still serves
        (workload("StatefulSet", 2, replicas=2, updatedReplicas=1, readyReplicas=2),
         "1 of 2 pods updated"),
        (workload("StatefulSet", 2, replicas=2, updatedReplicas=2, readyReplicas=1),
         "1 of 2 pods ready"),
    ],
)  # fmt: skip
def test_waiting_uses_kubectls_rollout_words(obj: dict[str, Any], words: str) -> None:
    assert rollout_state(obj) == words
