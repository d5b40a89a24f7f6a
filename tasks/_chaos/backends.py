"""backend-outage: a backend's StatefulSet scaled to zero for a while and back to what it was;
meanwhile the readiness of every workload is followed, the backend's dependents named, and the
backend's own check from `deploy.verify` (Redis PING, Postgres SELECT 1, ...) asked before,
during and after the outage: when it failed and when it answered again.

Dependents are read from the pod templates: a workload depends on redis when its template
names `redis.prism-backends` (REDIS_URL=redis://redis.prism-backends.svc.cluster.local:6379).
Their readiness shows whether they noticed only where they have a readiness probe: Prism's
pattern runners have none yet (docs/manifests-security.md), and on the simulated cluster no
container runs at all; the report says so rather than suggest otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Probe:
    """The backend's own check: `run` returns (answered, what it saw)."""

    name: str
    run: Callable[[], tuple[bool, str]]


class Answers:
    """When the backend's check failed during the outage and when it answered again; asked
    at most every EVERY seconds (a check is an exec or a port-forward)."""

    EVERY = 2.0

    def __init__(self, drill: _drills.Drill, probe: Probe) -> None:
        self.drill, self.probe = drill, probe
        self.asked = float("-inf")
        self.answering = True
        self.failed_at: float | None = None
        self.back_at: float | None = None

    def ask(self) -> bool:
        now = time.monotonic()
        if now - self.asked < self.EVERY:
            return self.answering
        self.asked = now
        self.answering, seen = self.probe.run()
        if not self.answering and self.failed_at is None:
            self.failed_at = now
            self.drill.say(f"{self.probe.name} fails: {seen}", now)
        elif self.answering and self.failed_at is not None and self.back_at is None:
            self.back_at = now
            self.drill.say(f"{self.probe.name} answers again", now)
        return self.answering

    def during(self) -> bool:
        """For the wait while the backend is away: ask, and never end the wait early."""
        self.ask()
        return False

    def note(self) -> str:
        name, at = self.probe.name, self.drill.elapsed
        if self.failed_at is None:
            return f"{name} (deploy.verify's check) never failed during the outage"
        said = f"{name} (deploy.verify's check) failed from +{at(self.failed_at):.1f}s"
        if self.back_at is None:
            return said + "; it did not answer again"
        again = f"; answered again at +{at(self.back_at):.1f}s"
        restored = self.drill.restored_at
        if restored is None or self.back_at < restored:
            return said + again + ", before the restore"
        return said + again + f", {self.back_at - restored:.1f}s after the restore"


def _baseline(probe: Probe, say: Callable[[str], None]) -> bool:
    """The check answers before the outage; else following it would say nothing."""
    answered, seen = probe.run()
    if answered:
        say(f"{probe.name}: {seen} (asked again during and after the outage)")
    else:
        say(f"{probe.name} fails before the outage already ({seen}); not followed")
    return answered


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
    probe: Probe | None = None,
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
        if probe is not None:
            say(f"  its own check, asked before, during and after: {probe.name}")
        return None
    say(f"backend-outage {backend} for {seconds}s; dependents: {named}")
    followed = probe is not None and _baseline(probe, say)
    _drills.await_leaders(api, say)
    with Live(api) as live:
        drill = _drills.Drill("backend-outage", backend, t.provider, live, say)
        answers = Answers(drill, probe) if probe is not None and followed else None
        with restoring("backend-outage", Undo(), say) as undo:
            undo.push(f"{backend}'s replicas ({replicas})", lambda: _scale(api, backend, replicas))
            drill.act(f"scaling statefulset {NAMESPACE}/{backend} to 0")
            _scale(api, backend, 0)
            end = time.monotonic() + seconds - drill.elapsed()
            live.until(answers.during if answers else lambda: False, end, drill.seen)
            drill.explain("during the outage")
            drill.act(f"scaling statefulset {NAMESPACE}/{backend} back to {replicas}")
            drill.restored()  # from here on, what heals heals after the restore
            undo.run(f"{backend}'s replicas ({replicas})")
        if answers is not None:
            drill.conditions.append(answers.ask)  # whole once the backend answers again
        whole = drill.wait_whole(timeout)
        if whole:
            drill.say(f"whole: {backend} and every workload Ready again")
        report = drill.finish(whole)
    if answers is not None:
        report.notes.append(answers.note())
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
            "away; the readiness above is what the API reports, not what the applications saw"
        )
    else:
        runners = [_drills.short(k) for k in needs if k not in drill.lost and "-runner" in k]
        if runners:
            report.notes.append(
                "the pattern runners have no readiness probe yet (docs/manifests-security.md), "
                "so their readiness cannot show whether they noticed: " + ", ".join(runners)
            )
    return report
