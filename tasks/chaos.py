"""Resilience drills: disrupt part of the stack on the project's own cluster, watch the cluster
heal, put back what the drill changed, and report how long the stack took to be whole.

Every drill acts only on a cluster this project created or one named explicitly (guide
correction 20), lists what it would touch under `inv --dry`, and restores what it changed when
interrupted (Ctrl-C: exit 130 and a line saying what was restored). docs/chaos.md has the
details: how eviction timing works, what the simulated cluster can and cannot show.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target

FOR_DEFAULT = 60  # seconds a node stays down / a backend stays away unless --for says
JSON_HELP = (
    "Print one JSON document (keys in docs/chaos.md) instead of the table; progress goes to stderr."
)
TIMEOUT_HELP = (
    "Seconds to wait, once the fault is undone, for the stack to be whole again "
    "(default: chaos.timeout)."
)


@task(
    name="kill-pod",
    help={
        "app": "The workload's `app` label, e.g. prism-proxy or redis (required).",
        "namespace": "Namespace of the workload (default: chaos.namespace, prism).",
        "timeout": "Seconds to wait for the replacement to be Ready (default: chaos.timeout).",
    },
)
def kill_pod(c, app, namespace=None, timeout=None):
    """Delete one Ready pod of a workload and time how long until a replacement is Ready."""
    from ._core import guard as _guard
    from ._kube import client as _kube

    s = _settings.load(c)
    wait = _settings.seconds(timeout, int(s.chaos.timeout))
    t = _target.require_reachable(c)
    _guard.require_owned(c, t)  # guide correction 20: never break a cluster that is not ours
    namespace = namespace or str(s.chaos.namespace)
    selector = f"app={app}"
    with _kube.api_client(c) as api:
        pods = _kube.items(api, f"/api/v1/namespaces/{namespace}/pods", selector, "Pod")
        ready = sorted((p for p in pods if _ready(p)), key=lambda p: p["metadata"]["name"])
        if not pods:
            raise Exit(
                f"no pod with {selector} in namespace {namespace}; "
                "`inv deploy.status` lists the workloads",
                code=1,
            )
        if not ready:
            raise Exit(
                f"no Ready pod with {selector} in namespace {namespace} to kill: the workload "
                "is unhealthy already; `inv observe.check` says why",
                code=1,
            )
        victim = ready[0]["metadata"]
        _target.kubectl(
            c, "delete", "pod", victim["name"], "--wait=false", namespace=namespace, hide="stdout"
        )
        if c.config.run.dry:
            return
        started = time.monotonic()
        print(f"killed pod {namespace}/{victim['name']} ({len(ready)} Ready before)", flush=True)
        name = _until_replaced(api, namespace, selector, victim["uid"], len(ready), wait)
        print(f"healed: {name} Ready after {time.monotonic() - started:.1f}s")


def _ready(pod: dict[str, Any]) -> bool:
    """Ready and staying: a pod being deleted does not count."""
    from ._kube.readiness import pod_ready

    return not pod["metadata"].get("deletionTimestamp") and pod_ready(pod)


def _until_replaced(
    api: Any, namespace: str, selector: str, victim: str, want: int, timeout: int
) -> str:
    """Watch the pods until `want` are Ready again without the victim; the newest one's name."""
    from kubernetes import client, watch

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Exit(
                f"no replacement Ready within {timeout}s; `inv observe.check` says why", code=1
            )
        pods: dict[str, dict[str, Any]] = {}
        stream = watch.Watch().stream(
            core.list_namespaced_pod,
            namespace,
            label_selector=selector,
            timeout_seconds=max(1, int(remaining)),
        )
        for event in stream:
            pod = api.sanitize_for_serialization(event["object"])
            uid = pod["metadata"]["uid"]
            if event["type"] == "DELETED":
                pods.pop(uid, None)
            else:
                pods[uid] = pod
            healthy = [p for u, p in pods.items() if u != victim and _ready(p)]
            if len(healthy) >= want:
                newest = max(healthy, key=lambda p: p["metadata"]["creationTimestamp"])
                return str(newest["metadata"]["name"])


# --- the drills with a recovery report ----------------------------------------------------------


@task(
    name="node-down",
    help={
        "node": "The node to take down (a node name, as `inv cluster.status` lists them).",
        "random": "Take down a random Ready agent node instead of naming one.",
        "for_": f"How long the node stays down: 90, 90s, 2m (default {FOR_DEFAULT}s).",
        "timeout": TIMEOUT_HELP,
        "json": JSON_HELP,
    },
)
def node_down(c, node=None, random=False, for_=None, timeout=None, json=False):
    """Take a node down (it stops reporting), bring it back after --for, report the recovery."""
    from ._chaos import spec as _spec

    if bool(node) == bool(random):
        raise Exit("name the node to take down (--node NAME) or pass --random, not both", code=1)
    seconds = _spec.seconds(for_, FOR_DEFAULT)
    wait = _wait(c, timeout)

    def drill(api: Any, t: _target.Target, say: Callable[[str], None], dry: bool) -> Any:
        from ._chaos import nodes as _nodes

        return _nodes.node_down(c, api, t, node, bool(random), seconds, wait, say, dry)

    _one(c, drill, json)


@task(
    help={
        "node": "The node to drain (required).",
        "timeout": "Seconds to retry evictions a PodDisruptionBudget refuses, and then to wait "
        "for the stack to be whole (default: chaos.timeout).",
        "json": JSON_HELP,
    }
)
def drain(c, node, timeout=None, json=False):
    """Cordon a node, evict its pods (PodDisruptionBudgets honoured), uncordon, report."""
    wait = _wait(c, timeout)

    def drill(api: Any, t: _target.Target, say: Callable[[str], None], dry: bool) -> Any:
        from ._chaos import nodes as _nodes

        return _nodes.drain(c, api, t, node, wait, say, dry)

    _one(c, drill, json)


@task(
    name="backend-outage",
    help={
        "backend": "The backend to take away: its StatefulSet in prism-backends, e.g. redis.",
        "for_": f"How long it stays away: 60, 60s, 2m (default {FOR_DEFAULT}s).",
        "timeout": TIMEOUT_HELP,
        "json": JSON_HELP,
    },
)
def backend_outage(c, backend, for_=None, timeout=None, json=False):
    """Scale a backend to zero for --for, then back; report which workloads noticed."""
    from ._chaos import spec as _spec

    seconds = _spec.seconds(for_, FOR_DEFAULT)
    wait = _wait(c, timeout)

    def drill(api: Any, t: _target.Target, say: Callable[[str], None], dry: bool) -> Any:
        from ._chaos import backends as _backends

        probe = _backend_probe(c, backend, say)
        return _backends.outage(api, t, backend, seconds, wait, say, dry, probe)

    _one(c, drill, json)


def _backend_probe(c: Context, backend: str, say: Callable[[str], None]) -> Any:
    """deploy.verify's check of the backend (Redis PING, Postgres SELECT 1, ...), for the
    drill to ask before, during and after the outage; None where it cannot be asked."""
    from ._chaos import backends as _backends
    from ._core import command as _command
    from ._observe import verify as _verify
    from .deploy import verify_stack

    if _command.is_remote(c):
        return None  # its port-forwards and execs run here (deploy.verify refuses -H)
    try:
        _t, stack = verify_stack(c, None)
    except Exit as error:
        say(f"deploy.verify's check of {backend} cannot be asked: {error.message}")
        return None
    check = _verify.backend_checks(c, stack).get(backend)
    return None if check is None else _backends.Probe(check.name, check.ask)


@task(
    name="api-restart",
    help={
        "for_": "How long the control plane stays stopped before it starts again: 0 (default), "
        "30s, 2m.",
        "timeout": TIMEOUT_HELP,
        "json": JSON_HELP,
    },
)
def api_restart(c, for_=None, timeout=None, json=False):
    """Restart the control plane; report the watches that reconnected and the time to whole."""
    from ._chaos import spec as _spec

    seconds = _spec.seconds(for_, 0, zero_ok=True)
    wait = _wait(c, timeout)

    def drill(api: Any, t: _target.Target, say: Callable[[str], None], dry: bool) -> Any:
        from ._chaos import control as _control

        return _control.api_restart(c, _settings.load(c), t, api, seconds, wait, say, dry)

    _one(c, drill, json)


@task(
    help={
        "scenario": "The scenario file: YAML listing drills and pauses (docs/chaos.md).",
        "json": JSON_HELP,
    }
)
def run(c, scenario, json=False):
    """Run the drills of a scenario file in turn; end with one recovery table (or --json)."""
    from ._chaos import spec as _spec
    from ._chaos.undo import Interrupted

    plan = _spec.load(scenario)
    wait = _wait(c, None)
    say = _say(json)
    t, dry = _guarded(c)
    from datetime import UTC, datetime

    from ._kube import client as _kube

    reports: list[Any] = []
    stopped: Exit | None = None  # Ctrl-C: the table first, then this
    with _quiet_commands(json), _kube.api_client(c) as api:
        _preflight(api, plan)
        previous_was_drill = False
        steps = list(plan.steps)
        for index, step in enumerate(steps):
            pause = step.options["for"] if step.drill == "pause" else 0
            if step.drill != "pause" and previous_was_drill:
                pause = plan.pause
            previous_was_drill = step.drill != "pause"
            try:
                if pause and not dry:
                    say(f"pause {pause}s")
                    time.sleep(pause)
            except KeyboardInterrupt:
                stopped = Interrupted(
                    "interrupted (Ctrl-C) between drills: nothing needed restoring", code=130
                )
                _not_run(reports, steps[index:], t)
                break
            if step.drill == "pause":
                continue
            started = datetime.now(UTC)
            target = str(step.options.get("node") or step.options.get("backend") or "")
            try:
                found = _step(c, api, t, step, wait, say, dry)
            except Interrupted as error:
                stopped = error
                reports.append(_placeholder(step.drill, target, t, "interrupted", started))
                _not_run(reports, steps[index + 1 :], t)
                break
            except KeyboardInterrupt:  # outside the drill's fault: before it, or once undone
                stopped = Interrupted(
                    f"interrupted (Ctrl-C) during {step.drill} while nothing of it was left to "
                    "restore (before its fault, or after it was undone)",
                    code=130,
                )
                reports.append(_placeholder(step.drill, target, t, "interrupted", started))
                _not_run(reports, steps[index + 1 :], t)
                break
            except Exit as error:
                failed = _placeholder(step.drill, target, t, "error", started)
                failed.notes.append(str(error.message))
                reports.append(failed)
                _not_run(reports, steps[index + 1 :], t)
                break
            if found is None:  # a dry run: the plan was printed
                continue
            reports.append(found)
            if not found.ok:
                _not_run(reports, steps[index + 1 :], t)
                break
    if dry and stopped is None:
        return
    _show(t, reports, json, plan.path)
    if stopped is not None:
        raise stopped
    _fail_unless_whole(reports)


def _preflight(api: Any, plan: Any) -> None:
    """Every node and backend the scenario names exists, before the first drill starts."""
    from ._chaos import backends as _backends
    from ._chaos import nodes as _nodes

    for step in plan.drills():
        try:
            if step.options.get("node"):
                _nodes.choose(api, step.options["node"], False)
            if step.options.get("backend"):
                _backends.find(api, step.options["backend"])
        except Exit as error:
            raise Exit(f"scenario {plan.path}: {step.label()}: {error.message}", code=1) from None


# --- shared by the drills -------------------------------------------------------------------


def _wait(c: Context, timeout: object) -> int:
    return _settings.seconds(timeout, int(_settings.load(c).chaos.timeout))


def _say(json: bool) -> Callable[[str], None]:
    """Progress lines: standard output, or standard error when it carries a JSON document."""
    from ._core import output as _output

    if not json:
        return _output.say

    def to_stderr(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    return to_stderr


def _guarded(c: Context) -> tuple[_target.Target, bool]:
    """The target cluster, answering and ours (guide correction 20), and whether this is --dry."""
    from ._core import guard as _guard

    t = _target.require_reachable(c)
    _guard.require_owned(c, t)
    return t, _guard.is_dry(c)


def _one(c: Context, drill: Callable[..., Any], json: bool) -> None:
    from ._kube import client as _kube

    say = _say(json)
    t, dry = _guarded(c)
    with _quiet_commands(json), _kube.api_client(c) as api:
        found = drill(api, t, say, dry)
    if found is None:
        return
    _show(t, [found], json, None)
    _fail_unless_whole([found])


def _step(
    c: Context, api: Any, t: _target.Target, step: Any, wait: int, say: Any, dry: bool
) -> Any:
    """One drill of a scenario, with its options."""
    from ._chaos import spec as _spec

    options = step.options
    timeout = options.get("timeout") or wait
    seconds = options.get("for")
    say(f"== {step.label()}")
    if step.drill == "node-down":
        from ._chaos import nodes as _nodes

        return _nodes.node_down(
            c,
            api,
            t,
            options.get("node"),
            bool(options.get("random")),
            seconds or FOR_DEFAULT,
            timeout,
            say,
            dry,
        )
    if step.drill == "drain":
        from ._chaos import nodes as _nodes

        return _nodes.drain(c, api, t, options["node"], timeout, say, dry)
    if step.drill == "backend-outage":
        from ._chaos import backends as _backends

        backend = options["backend"]
        probe = _backend_probe(c, backend, say)
        return _backends.outage(api, t, backend, seconds or FOR_DEFAULT, timeout, say, dry, probe)
    if step.drill == "api-restart":
        from ._chaos import control as _control

        return _control.api_restart(c, _settings.load(c), t, api, seconds or 0, timeout, say, dry)
    raise Exit(f"unknown drill {step.drill!r}; choose one of: {', '.join(_spec.DRILLS)}", code=1)


def _placeholder(drill: str, target: str, t: _target.Target, verdict: str, started: Any) -> Any:
    from datetime import UTC, datetime

    from ._chaos import report as _report

    return _report.placeholder(drill, target, t.provider, started or datetime.now(UTC), verdict)


def _not_run(reports: list[Any], rest: list[Any], t: _target.Target) -> None:
    for step in rest:
        if step.drill != "pause":
            target = str(step.options.get("node") or step.options.get("backend") or "")
            reports.append(_placeholder(step.drill, target, t, "not run", None))


def _show(t: _target.Target, reports: list[Any], json: bool, scenario: Any) -> None:
    """The recovery table and its details, or the JSON document."""
    from ._chaos import report as _report
    from ._core import output as _output

    if json:
        _output.print_json(
            {
                "cluster": t.name,
                "provider": t.provider,
                "scenario": None if scenario is None else str(scenario),
                "verdict": _overall(reports),
                "drills": [r.document() for r in reports],
            }
        )
        return
    print(flush=True)
    _output.print_table(_report.HEADER, [r.row() for r in reports])
    for report in reports:
        lines = report.details()
        if lines and len(reports) > 1:
            _output.say(f"{report.drill} {report.target}:".replace(" :", ":"))
        for line in lines:
            _output.say(f"  {line}" if len(reports) > 1 else line)


def _overall(reports: list[Any]) -> str:
    if any(r.verdict == "interrupted" for r in reports):
        return "interrupted"
    return "whole" if reports and all(r.ok for r in reports) else "not whole"


def _fail_unless_whole(reports: list[Any]) -> None:
    failed = [r for r in reports if not r.ok and r.verdict != "not run"]
    if failed:
        named = ", ".join(f"{r.drill} {r.target}: {r.verdict}".replace(" :", ":") for r in failed)
        raise Exit(f"not every drill ended with the stack whole ({named})", code=1)


def _quiet_commands(json: bool) -> Any:
    """With --json, whatever the commands a drill runs print goes to standard error, so that
    standard output carries the document alone (hidden output stays hidden)."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr) if json else contextlib.nullcontext()


ns = Collection("chaos", kill_pod, node_down, drain, backend_outage, api_restart, run)
_settings.configure(
    ns,
    "chaos",
    {
        "namespace": "prism",
        # seconds: a killed pod's replacement to become Ready; a drill's stack to be whole again
        "timeout": 120,
    },
)
