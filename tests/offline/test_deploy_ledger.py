"""The deploy's ledger (tasks/_deploy/ledger.py): what proves an object is as our last apply
left it, and the dry runs a re-run skips because of it. On the cluster:
tests/cluster/test_deploy.py (the drift tests and the no-op re-run)."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tasks._deploy import plan as _plan
from tasks._deploy.ledger import Ledger, evidence, owned
from tasks._deploy.render import key

MANAGER = "prism-tasks"

BODY: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "prism-admin", "namespace": "prism", "labels": {"app": "prism-admin"}},
    "spec": {"template": {"spec": {"containers": [{"name": "admin", "image": "prism-admin:1"}]}}},
}


def live(image: str = "prism-admin:1", manager: str = MANAGER, **extra: Any) -> dict[str, Any]:
    """The Deployment as the API server stores it after `manager` applied BODY (with `image`)."""
    fields = {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {'k:{"name":"admin"}': {".": {}, "f:image": {}, "f:name": {}}}
                }
            }
        },
    }
    return {
        **copy.deepcopy(BODY),
        "metadata": {
            **BODY["metadata"],
            "uid": "uid-1",
            "resourceVersion": "7",
            "finalizers": ["example.com/keep"],
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "managedFields": [
                {
                    "manager": manager,
                    "operation": "Apply",
                    "apiVersion": "apps/v1",
                    "time": "2026-12-02T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields,
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "subresource": "status",
                    "fieldsV1": {"f:status": {"f:replicas": {}}},
                },
            ],
        },
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "admin", "image": image, "imagePullPolicy": "IfNotPresent"}
                    ]
                }
            },
        },
        "status": {"replicas": 1},
        **extra,
    }


def test_owned_takes_the_fields_a_managed_fields_set_names() -> None:
    assert owned(live(), live()["metadata"]["managedFields"][0]["fieldsV1"]) == {
        "f:metadata": {"f:labels": {"f:app": "prism-admin"}},
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"admin"}': {"f:image": "prism-admin:1", "f:name": "admin"}
                    }
                }
            }
        },
    }
    fields = {"f:metadata": {"f:finalizers": {'v:"example.com/keep"': {}, 'v:"gone"': {}}}}
    assert owned(live(), fields) == {
        "f:metadata": {"f:finalizers": {'v:"example.com/keep"': True, 'v:"gone"': False}}
    }
    # a list item that is not there any more, and an index past the end
    assert owned({"a": [{"name": "x"}]}, {"f:a": {'k:{"name":"y"}': {"f:b": {}}, "i:3": {}}}) == {
        "f:a": {'k:{"name":"y"}': None, "i:3": None}
    }


def test_evidence_changes_with_a_value_we_own_and_only_then() -> None:
    before = evidence(live(), MANAGER)
    assert before is not None
    assert evidence(live(image="prism-admin:2"), MANAGER) != before  # our field, another value
    untouched = live(status={"replicas": 3})
    untouched["spec"]["replicas"] = 4  # a field we do not own
    untouched["metadata"]["resourceVersion"] = "99"
    assert evidence(untouched, MANAGER) == before
    assert evidence(live(manager="kubectl-edit"), MANAGER) is None  # we applied nothing to it


def test_a_field_taken_by_another_manager_changes_the_evidence() -> None:
    """What the server does when another manager changes a field we own: the field leaves our
    entry, even when its value is put back as it was."""
    taken = live()
    entry = taken["metadata"]["managedFields"][0]
    del entry["fieldsV1"]["f:metadata"]
    assert evidence(taken, MANAGER) != evidence(live(), MANAGER)


def test_the_ledger_proves_only_the_same_body_on_the_same_object(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "cluster-uid", MANAGER)
    k = key(BODY)
    assert not ledger.unchanged(k, BODY, live())  # nothing recorded yet
    ledger.record(k, BODY, live())
    assert ledger.unchanged(k, BODY, live())
    assert not ledger.unchanged(k, BODY, None)  # deleted
    changed_body = copy.deepcopy(BODY)
    changed_body["metadata"]["labels"]["app"] = "renamed"
    assert not ledger.unchanged(k, changed_body, live())
    recreated = live()
    recreated["metadata"]["uid"] = "uid-2"
    assert not ledger.unchanged(k, BODY, recreated)
    assert not ledger.unchanged(k, BODY, live(image="edited"))


def test_the_ledger_is_kept_per_cluster_privately_and_survives_nonsense(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "cluster-uid", MANAGER)
    ledger.record(key(BODY), BODY, live())
    ledger.write()
    assert Ledger(tmp_path, "cluster-uid", MANAGER).unchanged(key(BODY), BODY, live())
    assert not Ledger(tmp_path, "another-cluster", MANAGER).unchanged(key(BODY), BODY, live())
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600  # a body's hash covers Secrets
    assert "prism-admin:1" not in ledger.path.read_text()  # hashes, not manifests
    for text in ("{not json", json.dumps({"format": 1, "cluster": "cluster-uid", "objects": 3})):
        ledger.path.write_text(text)
        assert Ledger(tmp_path, "cluster-uid", MANAGER).kept == {}


def test_a_rerun_dry_runs_only_what_the_ledger_cannot_prove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two objects stored as our last apply left them, one of them edited since: only the
    edited one is dry-run, and both count as checked."""
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "prism-admin-config", "namespace": "prism"},
              "data": {"a": "1"}}  # fmt: skip
    config_live = {
        **copy.deepcopy(config),
        "metadata": {
            **config["metadata"], "uid": "uid-c", "resourceVersion": "5",
            "managedFields": [{"manager": MANAGER, "operation": "Apply",
                               "fieldsV1": {"f:data": {"f:a": {}}}}],
        },
    }  # fmt: skip
    ledger = Ledger(tmp_path, "cluster-uid", MANAGER)
    ledger.record(key(BODY), BODY, live())
    ledger.record(key(config), config, config_live)
    ledger.write()
    config_live["data"]["a"] = "edited by hand"
    stored = {key(BODY): live(), key(config): config_live}

    dry_runs: list[str] = []

    def server_side_apply(api: Any, resources: Any, o: dict, manager: str, dry: bool) -> dict:
        dry_runs.append(o["metadata"]["name"])
        return {"metadata": {"resourceVersion": "5"}}

    monkeypatch.setattr(_plan._kube, "namespaces", lambda api: {"kube-system": "cluster-uid",
                                                                 "prism": "uid-p"})  # fmt: skip
    monkeypatch.setattr(_plan._kube, "server_side_apply", server_side_apply)
    monkeypatch.setattr(_plan.Plan, "list_stored", lambda self, objects: stored)
    plan = _plan.Plan(None, [BODY, config], [], tmp_path)
    plan.check([BODY, config])
    assert dry_runs == ["prism-admin-config"]
    assert plan.proven == {key(BODY)}
    assert set(plan.before) == {key(BODY), key(config)}
    assert plan.before[key(BODY)] == "7"
