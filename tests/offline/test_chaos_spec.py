"""The chaos drills' pure parts: durations, the scenario file and its one-line mistakes, the
undo stack behind Ctrl-C, the recovery report, and the cluster facts the drills read (owners,
tolerations, budgets, pinned volumes)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from invoke import Exit

from tasks._chaos import drills as _drills
from tasks._chaos import nodes as _nodes
from tasks._chaos import report as _report
from tasks._chaos import spec as _spec
from tasks._chaos.undo import Interrupted, Undo, restoring

# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("60", 60), ("60s", 60), ("2m", 120), ("1m30s", 90), ("1h", 3600), (45, 45), (None, 7)],
)
def test_durations(value: object, seconds: int) -> None:
    assert _spec.seconds(value, 7) == seconds


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("5q", "--for '5q' is not a duration; write it like 60, 60s, 2m or 1m30s"),
        ("-5", "--for '-5' is not a duration"),
        ("1.5s", "--for '1.5s' is not a duration"),
        ("0", "--for '0' must be between 1 and 86400 seconds"),
        ("25h", "--for '25h' must be between 1 and 86400 seconds"),
        (True, "--for True is not a duration"),
    ],
)
def test_a_bad_duration_is_one_line(value: object, says: str) -> None:
    with pytest.raises(Exit) as raised:
        _spec.seconds(value, 60)
    assert raised.value.message.startswith(says)
    assert raised.value.code == 1


def test_zero_is_a_duration_where_it_means_at_once() -> None:
    assert _spec.seconds("0", 5, zero_ok=True) == 0


# --- the scenario file --------------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> _spec.Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return _spec.load(path)


def test_a_scenario_is_drills_and_pauses(tmp_path: Path) -> None:
    found = load(
        tmp_path,
        "pause: 10s\ndrills:\n"
        "  - drain: {node: a}\n"
        "  - pause: 1m\n"
        "  - node-down: {random: true, for: 90s, timeout: 2m}\n"
        "  - backend-outage: {backend: redis}\n"
        "  - api-restart:\n",
    )
    assert found.pause == 10
    assert [(s.drill, s.options) for s in found.steps] == [
        ("drain", {"node": "a"}),
        ("pause", {"for": 60}),
        ("node-down", {"random": True, "for": 90, "timeout": 120}),
        ("backend-outage", {"backend": "redis"}),
        ("api-restart", {}),
    ]
    assert [s.drill for s in found.drills()] == [
        "drain",
        "node-down",
        "backend-outage",
        "api-restart",
    ]
    assert found.steps[2].label() == "drills[2] (node-down)"


def test_the_default_pause(tmp_path: Path) -> None:
    assert load(tmp_path, "drills: [{api-restart: {}}]").pause == _spec.DEFAULT_PAUSE


BAD = [
    ("drills: [{node-dwn: {node: a}}]", "drills[0]: unknown drill 'node-dwn' (did you mean node-down?); choose one of: node-down, drain, backend-outage, api-restart, pause"),
    ("drills: [{drain: {node: a, fo: 1}}]", "drills[0] (drain): unknown key 'fo'; drain takes: node, timeout"),
    ("drills: [{node-down: {node: a, fore: 1}}]", "drills[0] (node-down): unknown key 'fore' (did you mean for?); node-down takes: node, random, for, timeout"),
    ("drills: [{drain: {}}]", "drills[0] (drain): needs node"),
    ("drills: [{node-down: {for: 5}}]", "drills[0] (node-down): needs node or random"),
    ("drills: [{node-down: {node: a, random: true}}]", "drills[0] (node-down): give node or random: true, not both"),
    ("drills: [{node-down: {random: 'yes'}}]", "drills[0] (node-down): random must be true or false, not 'yes'"),
    ("drills: [{backend-outage: {backend: redis, for: 5q}}]", "drills[0] (backend-outage): for '5q' is not a duration"),
    ("drills: [{backend-outage: {backend: 3}}]", "drills[0] (backend-outage): backend must be a name, not 3"),
    ("drills: [{drain: [a]}]", "drills[0] (drain): its options must be a mapping"),
    ("drills: [{drain: {node: a}, api-restart: {}}]", "drills[0] must be one drill, written `- DRILL: {options}`"),
    ("drills: [drain]", "drills[0] must be one drill"),
    ("drills: []", "`drills` must be a non-empty list of drills"),
    ("drills: [{pause: 5}]", "only pauses, no drill to run"),
    ("drils: []", "expected a mapping with `drills:`"),
    ("drills: [{api-restart: {}}]\npase: 3", "unknown key 'pase' (did you mean pause?); a scenario has: drills, pause"),
    ("pause: soon\ndrills: [{api-restart: {}}]", "pause 'soon' is not a duration"),
    ("- drain: {node: a}", "expected a mapping with `drills:`"),
    ('drills: [{drain: {node: "a}]', "is not YAML: found unexpected end of stream (line 1)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "says"), BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_scenario_is_one_line_naming_the_drill_and_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(Exit) as raised:
        load(tmp_path, text)
    message = raised.value.message
    assert message.startswith(f"scenario {tmp_path / 's.yaml'}")
    assert says in message
    assert "\n" not in message
    assert raised.value.code == 1


def test_a_missing_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(Exit, match=r"scenario .*nope.yaml: no such file"):
        _spec.load(tmp_path / "nope.yaml")
    with pytest.raises(Exit, match="is a directory; give a YAML file"):
        _spec.load(tmp_path)


# --- restoring: the undo stack behind Ctrl-C ----------------------------------------------------


def test_undo_runs_what_is_pending_newest_first_and_reports_a_failure() -> None:
    ran: list[str] = []
    undo = Undo()
    undo.push("first", lambda: ran.append("first") or "one")

    def broken() -> str:
        raise Exit("the API went away")

    undo.push("second", broken)
    undo.push("third", lambda: ran.append("third") or "")
    assert undo.run_all() == [
        "restored third",
        "could NOT restore second: the API went away",
        "restored first: one",
    ]
    assert ran == ["third", "first"] and not undo.pending


def test_an_undo_run_by_the_drill_is_not_run_again() -> None:
    ran: list[str] = []
    undo = Undo()
    undo.push("node", lambda: ran.append("node") or "back")
    assert undo.run("node") == "back"
    assert undo.run_all() == [] and ran == ["node"]


def test_ctrl_c_restores_ignoring_ctrl_c_meanwhile_then_exits_130() -> None:
    said: list[str] = []
    handlers: list[Any] = []

    def restore() -> str:
        handlers.append(signal.getsignal(signal.SIGINT))
        return "uncordoned"

    with pytest.raises(Interrupted) as raised, restoring("drain", Undo(), said.append) as undo:
        undo.push("node a schedulable", restore)
        raise KeyboardInterrupt
    assert raised.value.code == 130
    assert raised.value.message == (
        "interrupted (Ctrl-C) during drain: the cluster is as it was: restored node a "
        "schedulable: uncordoned"
    )
    assert handlers == [signal.SIG_IGN]  # a second Ctrl-C cannot stop the restore half-way
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    assert said == [
        "interrupted: restoring what drain changed (Ctrl-C is ignored until done)",
        "  restored node a schedulable: uncordoned",
    ]


def test_ctrl_c_after_the_fault_was_undone_says_nothing_needed_restoring() -> None:
    with (
        pytest.raises(Interrupted, match="nothing needed restoring"),
        restoring("node-down", Undo(), lambda _: None),
    ):
        raise KeyboardInterrupt


def test_a_failing_drill_restores_too_and_its_failure_ends_the_task() -> None:
    ran: list[str] = []
    with (
        pytest.raises(Exit, match="cannot evict pod"),
        restoring("drain", Undo(), lambda _: None) as undo,
    ):
        undo.push("node a schedulable", lambda: ran.append("uncordon") or "")
        raise Exit("cannot evict pod x: 500")
    assert ran == ["uncordon"]


# --- the report ---------------------------------------------------------------------------------


def recovery(**kwargs: Any) -> _report.Recovery:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return _report.Recovery("node-down", "agent-1", "kwok", started, **kwargs)


def test_a_recovery_row_and_its_document() -> None:
    found = recovery(
        workloads=[
            _report.Workload("prism/deployment/prism-admin", 0.1, 19.4, "during"),
            _report.Workload("prism/statefulset/keyvalue-runner", 0.2, 61.0, "after restore"),
        ],
        restored_after=60.0,
        whole_after=61.04,
        verdict="healed after restore",
    )
    row = found.row()
    assert row[0] == "node-down agent-1"
    assert row[2:] == ["2: prism-admin, keyvalue-runner", "61.0s", "healed after restore"]
    document = found.document()
    assert list(document) == [
        "drill", "target", "provider", "started", "disrupted", "time_to_whole_seconds",
        "restored_after_seconds", "verdict", "ok", "workloads", "evicted", "rescheduled",
        "not_recovered", "connections", "notes",
    ]  # fmt: skip
    assert document["started"] == "2026-01-02T03:04:05+00:00"
    assert document["disrupted"] == [
        "prism/deployment/prism-admin",
        "prism/statefulset/keyvalue-runner",
    ]
    assert document["time_to_whole_seconds"] == 61.0 and document["ok"] is True
    assert document["workloads"][1] == {
        "workload": "prism/statefulset/keyvalue-runner",
        "not_ready_after_seconds": 0.2,
        "ready_again_after_seconds": 61.0,
        "healed": "after restore",
    }


@pytest.mark.parametrize(
    ("verdict", "ok"),
    [
        ("undisturbed", True),
        ("self-healed", True),
        ("healed after restore", True),
        ("not whole", False),
        ("blocked", False),
        ("interrupted", False),
    ],
)
def test_which_verdicts_pass(verdict: str, ok: bool) -> None:
    assert recovery(verdict=verdict).ok is ok


def test_a_drill_that_never_got_whole_shows_a_dash_and_its_details() -> None:
    found = recovery(
        verdict="not whole",
        evicted=["prism/web-1"],
        rescheduled=[
            {
                "pod": "prism/db-0",
                "workload": "x",
                "node": "n2",
                "ready_after_seconds": 3.0,
                "times": 4,
            }
        ],
        not_recovered=[
            {"when": "at the end", "workload": "prism/statefulset/db", "why": "Pending"}
        ],
        connections=[
            {
                "watch": "Pod",
                "lost_after_seconds": 1.0,
                "reason": "connection refused",
                "back_after_seconds": None,
            }
        ],
        notes=["simulated"],
    )
    assert found.row()[2:] == ["none", "-", "not whole"]
    assert found.details() == [
        "evicted: prism/web-1",
        "rescheduled: prism/db-0 on n2, Ready after 3.0s (created 4 times)",
        "at the end: prism/statefulset/db: Pending",
        "watch of Pods: lost after 1.0s (connection refused), never back",
        "note: simulated",
    ]


# --- what the drills read from the cluster ------------------------------------------------------


def pod(**meta: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"namespace": "prism", "name": "p", **meta}, "spec": {}}


def test_a_pod_belongs_to_its_deployment_through_its_replicaset() -> None:
    ref = {"kind": "ReplicaSet", "name": "prism-proxy-6cff94c585", "controller": True}
    found = pod(ownerReferences=[ref], labels={"pod-template-hash": "6cff94c585"})
    assert _drills.owner(found) == "prism/deployment/prism-proxy"
    sts = pod(ownerReferences=[{"kind": "StatefulSet", "name": "redis", "controller": True}])
    assert _drills.owner(sts) == "prism/statefulset/redis"
    assert _drills.owner(pod()) == ""


@pytest.mark.parametrize(
    ("tolerations", "seconds"),
    [
        ([], 0),
        ([{"key": _drills.UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}], 300),
        ([{"key": _drills.UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}], None),
        ([{"operator": "Exists"}], None),
        ([{"key": _drills.NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}], 0),
        ([{"key": _drills.UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}], 0),
    ],
)  # fmt: skip
def test_how_long_a_pod_stays_on_an_unreachable_node(
    tolerations: list[dict[str, Any]], seconds: int | None
) -> None:
    found = pod()
    found["spec"]["tolerations"] = tolerations
    assert _drills.unreachable_toleration(found) == seconds


def test_a_node_is_usable_once_ready_and_the_lost_node_taints_are_gone() -> None:
    node: dict[str, Any] = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert _drills.node_usable(node)
    node["spec"] = {"taints": [{"key": _drills.UNREACHABLE, "effect": "NoExecute"}]}
    assert not _drills.node_usable(node)
    node["spec"] = {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}
    assert _drills.node_usable(node)
    assert not _drills.node_usable(None)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {"app": "a"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "a"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"app": "a"}, True),
        ({}, {"app": "a"}, False),
    ],
)  # fmt: skip
def test_which_pods_a_disruption_budget_covers(
    selector: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert _nodes.matches(selector, labels) is matches


def test_the_nodes_a_local_volume_is_pinned_to() -> None:
    volume = {
        "spec": {
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": ["k3d-prism-local-agent-0"],
                                }
                            ]
                        }
                    ]
                }
            }
        }
    }
    assert _drills._affinity_nodes(volume) == ["k3d-prism-local-agent-0"]
    assert _drills._affinity_nodes({"spec": {"hostPath": {"path": "/x"}}}) == []


def test_a_drill_hold_on_a_lease_runs_out() -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    held = {
        "spec": {"holderIdentity": _nodes.HOLDER, "renewTime": now, "leaseDurationSeconds": 100}
    }
    assert _nodes.held_until(held) is not None
    expired = {"spec": {**held["spec"], "leaseDurationSeconds": 0}}
    assert _nodes.held_until(expired) is None
    kwoks = {"spec": {**held["spec"], "holderIdentity": "vm_1234"}}
    assert _nodes.held_until(kwoks) is None


def test_the_node_down_annotation_is_the_one_kwok_disregards() -> None:
    """chaos.node-down marks the node and its pods with the key cluster.create gives KWOK as its
    disregard selector; were they to drift apart, KWOK could confirm evictions mid-drill."""
    from tasks._providers import kwok

    assert _nodes.ANNOTATION == kwok.DISREGARDED
    options = kwok.kwok_config()["options"]
    assert options["disregardStatusWithAnnotationSelector"] == _nodes.ANNOTATION


def test_a_pod_of_the_down_node_deleted_outright_is_reported_unless_it_had_finished() -> None:
    """No dead kubelet confirms a deletion: a pod of the down node that is gone mid-outage is
    named, with the lease's holder then; a finished pod (deleted at once by the API server),
    a pod of another node and a pod merely updated are not."""
    from types import SimpleNamespace

    said: list[str] = []
    drill = SimpleNamespace(notes=[], say=lambda text, at=None: said.append(text))
    fault = SimpleNamespace(name="n1", lease=lambda: {"spec": {"holderIdentity": _nodes.HOLDER}})

    def pod(name: str, node: str, phase: str = "Running") -> dict[str, Any]:
        meta = {"namespace": "ns", "name": name}
        return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": phase}}

    for change in [
        SimpleNamespace(at=1.0, old=pod("gone", "n1"), new=None),
        SimpleNamespace(at=1.0, old=pod("done", "n1", "Succeeded"), new=None),
        SimpleNamespace(at=1.0, old=pod("elsewhere", "n2"), new=None),
        SimpleNamespace(at=1.0, old=pod("updated", "n1"), new=pod("updated", "n1")),
    ]:
        _nodes._confirmed_while_down(drill, fault, change)  # type: ignore[arg-type]

    (note,) = drill.notes
    assert note.startswith("pod ns/gone was deleted outright while node n1 was down")
    assert f"(lease held by {_nodes.HOLDER})" in note
    assert said == [note]
