"""backend-outage: a backend's StatefulSet scaled to zero for a while and back to what it was;
meanwhile the readiness of every workload is followed, the backend's dependents named.

Dependents are read from the pod templates: a workload depends on redis when its template
names `redis.prism-backends` (REDIS_URL=redis://redis.prism-backends.svc.cluster.local:6379).
On k3d their readiness probes decide whether they notice; on the simulated cluster no
container runs, so they cannot notice, and the report says so rather than suggest otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from invoke import Exit

from .._core.target import Target
from .._kube import client as _kube
from .._kube import workloads as _workloads
from . import drills as _drills
from .live import Live
from .report import Recovery
from .undo import Undo, restoring

NAMESPACE = "prism-backends"
MERGE = "application/merge-patch+json"


def find(api: Any, backend: str) -> dict[str, Any]:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
    found = _kube.items(api, path, _workloads.SELECTOR, "StatefulSet")
    for obj in found:
        if obj["metadata"]["name"] == backend:
            return obj
    names = ", ".join(sorted(o["metadata"]["name"] for o in found)) or "none; run `inv deploy.all`"
    raise Exit(
        f"no backend {backend!r} (a StatefulSet in {NAMESPACE}); choose one of: {names}", code=1
    )


def dependents(api: Any, backend: str) -> dict[str, list[str]]:
    """Workload (namespace/kind/name) -> the variables or arguments that name the backend."""
    needle = f"{backend}.{NAMESPACE}"
    found: dict[str, list[str]] = {}
    for workload in _workloads.every(api):
        if workload.namespace == NAMESPACE and workload.name == backend:
            continue
        spec = workload.obj["spec"]["template"]["spec"]
        names = []
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for env in container.get("env") or []:
                if needle in str(env.get("value", "")):
                    names.append(env["name"])
            if needle in json.dumps([container.get("args"), container.get("command")]):
                names.append(f"{container['name']} arguments")
        if names:
            found[_drills.workload_key(workload.obj)] = names
    return found


def _scale(api: Any, name: str, replicas: int) -> str:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets/{name}/scale"
    status, answer = _kube.request(
        api, "PATCH", path, body={"spec": {"replicas": replicas}}, content_type=MERGE
    )
    if status >= 300:
        raise Exit(f"cannot scale {name}: {answer.get('message', status)}", code=1)
    return f"statefulset {NAMESPACE}/{name} scaled back to {replicas}"


def outage(
    api: Any,
    t: Target,
    backend: str,
    seconds: int,
    timeout: int,
    say: Callable[[str], None],
    dry: bool,
) -> Recovery | None:
    obj = find(api, backend)
    replicas = _drills.wanted(obj)
    if replicas <= 0:
        raise Exit(
            f"backend {backend} is scaled to 0 already; scale it up (`inv backends.deploy "
            f"--only {backend}`) before drilling its outage",
            code=1,
        )
    needs = dependents(api, backend)
    named = ", ".join(f"{_drills.short(k)} ({', '.join(v)})" for k, v in needs.items()) or "none"
    if dry:
        say(
            f"would scale statefulset {NAMESPACE}/{backend} from {replicas} to 0 for {seconds}s, then back to {replicas}"
        )
        say(f"  its dependents, whose readiness is followed: {named}")
        return None
    say(f"backend-outage {backend} for {seconds}s; dependents: {named}")
    _drills.await_leaders(api, say)
    with Live(api) as live:
        drill = _drills.Drill("backend-outage", backend, t.provider, live, say)
        with restoring("backend-outage", Undo(), say) as undo:
            undo.push(f"{backend}'s replicas ({replicas})", lambda: _scale(api, backend, replicas))
            drill.act(f"scaling statefulset {NAMESPACE}/{backend} to 0")
            _scale(api, backend, 0)
            drill.wait(seconds - drill.elapsed())
            drill.explain("during the outage")
            drill.act(f"scaling statefulset {NAMESPACE}/{backend} back to {replicas}")
            drill.restored()  # from here on, what heals heals after the restore
            undo.run(f"{backend}'s replicas ({replicas})")
        whole = drill.wait_whole(timeout)
        if whole:
            drill.say(f"whole: {backend} and every workload Ready again")
        report = drill.finish(whole)
    noticed = [k for k in needs if k in drill.lost]
    if needs:
        quiet = [_drills.short(k) for k in needs if k not in drill.lost]
        if noticed:
            report.notes.append(
                "dependents that lost readiness: " + ", ".join(_drills.short(k) for k in noticed)
            )
        if quiet:
            report.notes.append("dependents whose readiness never changed: " + ", ".join(quiet))
    if t.provider == "kwok":
        report.notes.append(
            "simulated cluster: no container runs, so no dependent can notice a backend going "
            "away; the readiness above is what the API reports, not what the applications saw "
            "(on k3d their readiness probes decide)"
        )
    return report
