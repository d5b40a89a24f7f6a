"""Carry out a deploy: apply each step's objects through the API once the step's prerequisites
are Ready, and wait through watches (not sleep loops).

Steps follow the guide's order, but only true dependencies serialise: backends and prism-admin
start together; the proxy waits for admin; the runners wait for backends and the proxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target
from .._kube import client as _kube
from .._kube import watch as _watch
from .._kube.readiness import Progress, is_ready, pod_ready
from .ledger import Ledger
from .render import (
    STEPS,
    TIER,
    WORKLOAD_KINDS,
    Step,
    apply_order,
    autoscaled,
    labels,
    namespaces_of,
    objects_of,
    without_replicas,
    workloads,
)
from .render import (
    key as object_key,
)

FIELD_MANAGER = "prism-tasks"
# Holds a workload's replica count for the moment we stop applying it (see Plan.leave_replicas).
HANDOVER_MANAGER = "prism-tasks-hpa-handover"


class StepFailed(Exit):
    """A step that failed, its message already naming the step."""


class Skipped(Exit):
    """A step not run because a step it depends on failed (the failure itself is reported)."""


def apply_command(c: Context) -> list[str]:
    """The kubectl command that does what `Plan.apply` does through the API."""
    flags = _target.kube_flags(_target.resolve(c))
    return ["kubectl", *flags, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
            "--force-conflicts", "--validate=strict", "-f", "-"]  # fmt: skip


CHANGES = ("created", "configured", "unchanged")
NAMED = ("created", "configured")  # listed object by object; the unchanged ones stay a count


@dataclass
class Outcome:
    name: str
    started: float = 0.0
    finished: float = 0.0
    error: Exit | None = None
    # created / configured / unchanged -> those objects by `object_name`, in apply order
    objects: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changes(self) -> dict[str, int]:
        """How many objects were created / configured / left unchanged ({} before it ran)."""
        return {change: len(names) for change, names in self.objects.items()}


def object_name(obj: dict[str, Any]) -> str:
    """An object as a deploy names it: namespace/kind/name, or kind/name for a cluster-scoped
    one (as the chaos reports name workloads; `kind/name` is what `kubectl get` takes)."""
    meta = obj["metadata"]
    kind_name = f"{obj['kind'].lower()}/{meta['name']}"
    return f"{meta['namespace']}/{kind_name}" if meta.get("namespace") else kind_name


Key = tuple[str, str, str]  # (kind, namespace, name) of a workload


SELECTOR = "app.kubernetes.io/part-of=prism"
CHECKS_AT_ONCE = 4  # dry-run and list requests in flight together


class Plan:
    """One deploy against one cluster, through one API connection: server-side apply with the
    server's strict validation, readiness from watches.

    kubectl would re-read and parse the API's OpenAPI documents in every `apply` process (most
    of a no-op apply's time); the API itself needs one request per object, and none for an
    object the ledger (`ledger.py`, kept in `ledger_dir`) shows is as the last apply left it."""

    def __init__(
        self,
        api: Any,
        objects: Sequence[dict[str, Any]],
        steps: Sequence[Step],
        ledger_dir: Path | None = None,
    ):
        self.api = api
        self.ledger_dir = ledger_dir
        self.ledger: Ledger | None = None
        self.resources = _kube.Resources(api)
        self.steps = list(steps)
        chosen = {tier for step in steps for tier in step.tiers}
        # the foundation creates the claims of the steps chosen, and only those
        self.by_step = {
            step.name: [
                o for o in objects_of(objects, step)
                if o.get("kind") != "PersistentVolumeClaim" or labels(o).get(TIER) in chosen
            ]
            for step in steps
        }  # fmt: skip
        self.namespaces = namespaces_of(objects)
        self.progress = Progress()
        self.kicked: set[tuple[str, str, str]] = set()  # (namespace, statefulset, revision)
        self.autoscaled = autoscaled(objects)
        # resourceVersion of each object before this deploy, from the dry run ("" for new ones)
        self.before: dict[Key, str] = {}
        # what the server answered to each dry run: the object as the apply would leave it
        self.would_be: dict[Key, dict[str, Any]] = {}
        self.changed: dict[Key, str] = {}  # object -> created / configured / unchanged
        # the objects as the API stored them before this deploy, one list per kind
        self.stored: dict[Key, dict[str, Any]] = {}
        # objects the ledger shows are as our last apply left them: no dry run, no apply
        self.proven: frozenset[Key] = frozenset()

    def check(self, objects: Sequence[dict[str, Any]]) -> None:
        """Ask the server to validate every object (a dry-run apply) before any is applied, so
        that one rejected object leaves the cluster as it was. Objects in a namespace this
        deploy has yet to create cannot be dry-run; the server checks those when they are
        applied, after their namespace.

        An object the ledger shows is exactly as our last apply of the same body left it is
        not dry-run: the server accepted that body then, and applying it changes nothing."""
        existing = _kube.namespaces(self.api)
        if self.ledger_dir is not None and existing.get("kube-system"):
            self.ledger = Ledger(self.ledger_dir, existing["kube-system"], FIELD_MANAGER)
        known = [
            o for o in objects if o["metadata"].get("namespace", "default") in existing
            or not o["metadata"].get("namespace")
        ]  # fmt: skip
        self.stored = self.list_stored(known)
        if self.ledger is not None:
            ledger = self.ledger
            self.proven = frozenset(
                key
                for key, obj in ((object_key(o), o) for o in known)
                if ledger.unchanged(key, self.body(key, obj), self.stored.get(key))
            )
        for key in self.proven:  # not dry-run: `as_they_are` counts them as they are
            self.before[key] = self.stored[key]["metadata"].get("resourceVersion", "")
        checked = [o for o in known if object_key(o) not in self.proven]

        def dry_run(obj: dict[str, Any]) -> dict[str, Any]:
            return _kube.server_side_apply(self.api, self.resources, obj, FIELD_MANAGER, True)

        # A dry run stores nothing, so the objects are checked side by side (the API server
        # answers several requests at once); the first refusal in apply order is reported.
        ordered = apply_order(checked)
        with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as pool:
            answers = pool.map(dry_run, ordered)
            try:
                for obj, answer in zip(ordered, answers, strict=True):
                    # its answer carries the stored object's version ("" for a new one)
                    key = object_key(obj)
                    self.before[key] = answer.get("metadata", {}).get("resourceVersion", "")
                    self.would_be[key] = answer
            except _kube.Rejected as error:
                raise StepFailed(f"{error.message} (nothing was applied)") from None

    def list_stored(self, objects: Sequence[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
        """The prism objects of the kinds among `objects`, as stored now: one list per kind.
        The first kind of each group/version goes first, so that their discovery requests
        run side by side too."""
        kinds = sorted({(o["apiVersion"], o["kind"]) for o in objects})
        firsts = list({version: (version, kind) for version, kind in reversed(kinds)}.values())
        kinds = firsts + [kind for kind in kinds if kind not in firsts]

        def listed(kind: tuple[str, str]) -> list[dict[str, Any]]:
            path = self.resources.collection(*kind)
            return _kube.items(self.api, path, SELECTOR, kind[1])

        stored: dict[Key, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as pool:
            for (version, _), found in zip(kinds, pool.map(listed, kinds), strict=True):
                for item in found:
                    item.setdefault("apiVersion", version)
                    stored[object_key(item)] = item
        return stored

    def body(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """What an apply sends for `obj` once it exists (an autoscaled workload's replica
        count is left to its autoscaler: `leave_replicas`)."""
        return without_replicas(obj) if key in self.autoscaled else obj

    def apply(
        self, objects: Sequence[dict[str, Any]], as_they_are: frozenset[Key] = frozenset()
    ) -> None:
        """Server-side apply each object, but those in `as_they_are` (known to be no-ops);
        the ledger records what each apply sent and left."""
        for obj in apply_order(objects):
            key = object_key(obj)
            if key in as_they_are:
                self.changed[key] = "unchanged"
                if self.ledger is not None and key not in self.proven and key in self.stored:
                    self.ledger.record(key, self.body(key, obj), self.stored[key])
                continue
            if key in self.autoscaled:
                obj = self.leave_replicas(obj)
            answer = _kube.server_side_apply(self.api, self.resources, obj, FIELD_MANAGER)
            if self.ledger is not None:
                self.ledger.record(key, obj, answer)
            before = self.before.get(key, "")
            after = answer.get("metadata", {}).get("resourceVersion", "")
            self.changed[key] = (
                "created" if not before else "unchanged" if after == before else "configured"
            )

    def as_they_are(self) -> frozenset[Key]:
        """The objects whose apply would change nothing: those the ledger proved, and those
        whose dry-run answer is exactly what the lists before it found stored
        (resourceVersion, managed fields and all). An object the lists miss is applied as
        usual; so is an autoscaled one the ledger did not prove (its apply hands its replica
        count over)."""
        return self.proven | frozenset(
            key
            for key, answer in self.would_be.items()
            if key not in self.autoscaled and self.stored.get(key) == answer
        )

    def changes_of(self, objects: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
        """Which of `objects` this deploy created, configured, left unchanged."""
        found: dict[str, list[str]] = {change: [] for change in CHANGES}
        for obj in apply_order(objects):
            change = self.changed.get(object_key(obj))
            if change:
                found[change].append(object_name(obj))
        return found

    def leave_replicas(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What to apply of a workload an HPA scales: the manifest's replica count only when
        the workload is created (the starting point), never again, so a re-deploy does not
        undo the autoscaler's decision.

        Leaving out a field that this manager alone owns would remove it, and the count would
        fall to the default of 1. So while we still own it, a second manager first takes the
        live count as its own: the ownership handover the Kubernetes documentation describes
        for HPAs ("Transferring ownership"); the autoscaler's next change takes it from there."""
        path = self.resources.path(obj)
        status, live = _kube.request(self.api, "GET", path)
        if status == 404:
            return obj
        if status >= 300:
            raise Exit(f"cannot read {obj['kind']} {path}: {live.get('message', status)}", code=1)
        if _owns_replicas(live, FIELD_MANAGER):
            meta = obj["metadata"]
            handover = {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")},
                "spec": {"replicas": live["spec"].get("replicas", 1)},
            }
            _kube.server_side_apply(self.api, self.resources, handover, HANDOVER_MANAGER)
        return without_replicas(obj)

    def snapshot(self, namespaces: Iterable[str]) -> dict[Key, dict[str, Any]]:
        """Every prism workload in the given namespaces, as the API shows it now."""
        found: dict[Key, dict[str, Any]] = {}
        for namespace in sorted(set(namespaces)):
            for kind, plural in (("Deployment", "deployments"), ("StatefulSet", "statefulsets")):
                path = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
                for item in _kube.items(self.api, path, SELECTOR, kind):
                    found[(kind, namespace, item["metadata"]["name"])] = item
        return found

    def wait_ready(
        self,
        step: str,
        wanted: Sequence[Key],
        timeout: int,
        current: dict[Key, dict[str, Any]] | None = None,
    ) -> None:
        """Watch the wanted workloads until each is Ready; on timeout explain the first laggard."""
        if not wanted:
            return
        started = time.monotonic()
        if current is None:
            current = self.snapshot(ns for _, ns, _ in wanted)
        pending = {w for w in wanted if w not in current or not is_ready(current[w])}
        if not pending:
            return
        for key in sorted(pending):
            if key[0] == "StatefulSet" and key in current:
                self.unblock(current[key])

        _watch.until_ready(self.api, step, pending, started + timeout, self.progress, self.unblock)

    def unblock(self, statefulset: dict[str, Any]) -> None:
        """Delete pods of an outdated revision that never became Ready, once per revision.
        A StatefulSet's rolling update waits for each pod to be Ready before replacing it, so a
        pod from a broken template (say, an image or node selector that was wrong) would block
        the fixed template forever; a careful operator deletes it, and so does this."""

        status, meta = statefulset.get("status") or {}, statefulset["metadata"]
        update = status.get("updateRevision")
        if not update or status.get("observedGeneration", 0) < meta.get("generation", 1):
            return  # the controller has not caught up with the latest spec yet
        if status.get("updatedReplicas", 0) >= status.get("replicas", 0):
            return  # every pod there is (none, for a new StatefulSet) is of this revision
        key = (meta["namespace"], meta["name"], update)
        if key in self.kicked:
            return
        self.kicked.add(key)
        selector = ",".join(
            f"{k}={v}" for k, v in statefulset["spec"]["selector"].get("matchLabels", {}).items()
        )
        pods_path = f"/api/v1/namespaces/{meta['namespace']}/pods"
        for pod in _kube.items(self.api, pods_path, selector, "Pod"):
            revision = pod["metadata"].get("labels", {}).get("controller-revision-hash")
            if revision != update and not pod_ready(pod):
                name = pod["metadata"]["name"]
                self.progress.say(
                    f"  ↻ replacing pod {meta['namespace']}/{name}: outdated and not Ready"
                )
                _kube.request(self.api, "DELETE", f"{pods_path}/{name}")

    def run(self, timeout: int) -> list[Outcome]:
        """Apply the steps in dependency order, each as soon as its prerequisites are Ready;
        the ledger is kept whatever happens (each record is true on its own)."""
        try:
            return self._run(timeout)
        finally:
            if self.ledger is not None:
                self.ledger.write()

    def _run(self, timeout: int) -> list[Outcome]:
        self.guarded("check", self.check, [o for s in self.steps for o in self.by_step[s.name]])
        # the check's lists hold every workload of the deploy that exists (its namespace does)
        current = {k: v for k, v in self.stored.items() if k[0] in WORKLOAD_KINDS}
        everything = [w for step in self.steps for w in workloads(self.by_step[step.name])]
        if everything and all(w in current and is_ready(current[w]) for w in everything):
            return self.converge(timeout, current)
        outcomes = {step.name: Outcome(step.name) for step in self.steps}
        done = {name: threading.Event() for name in outcomes}

        def run_step(step: Step) -> None:
            outcome = outcomes[step.name]
            try:
                for dep in step.after:
                    if dep in done:
                        done[dep].wait()
                        if outcomes[dep].error:
                            outcome.error = Skipped(f"{step.name}: skipped because {dep} failed")
                            return
                outcome.started = time.monotonic()
                objects = self.by_step[step.name]
                if objects:
                    self.progress.say(f"→ {step.name}: applying {len(objects)} objects")
                    self.guarded(step.name, self.apply, objects, self.proven)
                    self.guarded(step.name, self.wait_ready, step.name, workloads(objects), timeout)
                    outcome.objects = self.changes_of(objects)
                outcome.finished = time.monotonic()
                self.progress.say(step_report(outcome), ok=True)
            except Exit as error:
                outcome.error = error
            except Exception as error:  # a bug or an unforeseen answer: still this step's failure
                outcome.error = StepFailed(f"{step.name}: {type(error).__name__}: {error}")
            finally:
                done[step.name].set()

        threads = [threading.Thread(target=run_step, args=(s,), daemon=True) for s in self.steps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.progress.stop()
        return list(outcomes.values())

    def converge(self, timeout: int, current: dict[Key, dict[str, Any]]) -> list[Outcome]:
        """Everything is deployed and Ready already (`current`): one apply, then, when it
        changed anything, one look at whether that must roll out again. Only the steps that
        changed something report a line."""
        outcomes = [Outcome(step.name) for step in self.steps]
        objects = [o for step in self.steps for o in self.by_step[step.name]]
        unchanged = self.guarded("apply", self.as_they_are)
        self.guarded("apply", self.apply, objects, unchanged)
        if any(change != "unchanged" for change in self.changed.values()):
            current = self.snapshot(self.namespaces)
        failed = ""
        for step, outcome in zip(self.steps, outcomes, strict=True):
            outcome.started = time.monotonic()
            if failed:
                outcome.error = Skipped(f"{step.name}: skipped because {failed} failed")
                continue
            try:
                wanted = workloads(self.by_step[step.name])
                self.guarded(step.name, self.wait_ready, step.name, wanted, timeout, current)
            except Exit as error:
                outcome.error, failed = error, step.name
                continue
            except Exception as error:
                outcome.error = StepFailed(f"{step.name}: {type(error).__name__}: {error}")
                failed = step.name
                continue
            outcome.objects = self.changes_of(self.by_step[step.name])
            outcome.finished = time.monotonic()
            if any(outcome.objects[change] for change in NAMED):
                self.progress.say(step_report(outcome), ok=True)  # only what changed
        self.progress.stop()
        return outcomes

    def guarded(self, step: str, action: Any, *args: Any) -> Any:
        """Run `action` and return what it returns; whatever goes wrong becomes this step's
        failure in one line (a lost connection with the next step), so that the steps after it
        are skipped."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return action(*args)
        except StepFailed:
            raise
        except Exit as error:
            raise StepFailed(f"{step}: {error.message}") from None
        except ApiException as error:
            raise StepFailed(
                f"{step}: the Kubernetes API refused a request: {error.status} {error.reason}"
            ) from None
        except (HTTPError, OSError) as error:
            raise StepFailed(
                f"{step}: lost the connection to the Kubernetes API ({error}); "
                "is the cluster running? `inv cluster.status`, then run the same task again"
            ) from None
        except Exception as error:  # a bug or an unforeseen answer: still this step's failure
            raise StepFailed(f"{step}: {type(error).__name__}: {error}") from None


def _owns_replicas(live: dict[str, Any], manager: str) -> bool:
    """Whether `manager`'s server-side apply owns the workload's `spec.replicas`."""
    return any(
        entry.get("manager") == manager
        and entry.get("operation") == "Apply"
        and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        for entry in live["metadata"].get("managedFields") or []
    )


def run_plan(
    c: Context,
    objects: Sequence[dict[str, Any]],
    steps: Sequence[Step] = STEPS,
    timeout: int = 300,
) -> list[Outcome]:
    """Deploy `steps` of `objects`; under --dry, print what each step would apply."""
    if c.config.run.dry:
        return dry_plan(c, objects, steps)

    from .._core import settings as _settings

    ledger_dir = _settings.load(c).local_data_dir / "cache"
    with _kube.api_client(c) as api:
        return Plan(api, objects, steps, ledger_dir).run(timeout)


def restart(c: Context, app: str, timeout: int) -> Key:
    """Roll a workload's pods (what `kubectl rollout restart` does: a new annotation on the pod
    template) and wait until the new pods are Ready. Returns the workload restarted."""
    from datetime import UTC, datetime

    from .._kube import workloads as _workloads

    with _kube.api_client(c) as api:
        plan = Plan(api, [], [])
        found = _workloads.find(api, app)
        kind, namespace, name = key = (found.kind, found.namespace, found.name)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        if c.config.run.dry:
            print(f"would restart {kind} {namespace}/{name} ({RESTARTED_AT}={now})")
            return key
        status, answer = _kube.request(
            api, "PATCH", found.path, body=patch, content_type="application/merge-patch+json"
        )
        if status >= 300:
            raise Exit(f"cannot restart {kind} {namespace}/{name}: {answer.get('message')}", code=1)
        plan.progress.say(f"↻ restarting {kind} {namespace}/{name}")
        plan.guarded("restart", plan.wait_ready, "restart", [key], timeout)
    return key


# The annotation `kubectl rollout restart` sets: a new value makes a new pod template revision.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def dry_plan(c: Context, objects: Sequence[dict[str, Any]], steps: Sequence[Step]) -> list[Outcome]:
    """What a deploy would send, step by step, without touching the cluster; no outcomes,
    since nothing ran."""
    import shlex

    prefix = ""
    if _command.is_remote(c):
        prefix = f"[{_command.label(c)}] "  # several hosts' plans interleave
    command = c.config.run.echo_format.format(command=shlex.join(apply_command(c)))
    for step in steps:
        chosen = objects_of(objects, step)
        if chosen:
            names = ", ".join(object_name(o) for o in apply_order(chosen))
            print(
                f"{prefix}→ {step.name}: would apply {len(chosen)} object{'s' * (len(chosen) != 1)} ({names}), as:"
            )
            print(f"{prefix}{command}")
    print(f"{prefix}dry run: nothing was applied")
    return []


def summarize(outcomes: Sequence[Outcome], total: float) -> None:
    """The end of a deploy: per step its time and what it changed, or one line when nothing
    changed at all; raises on the first failure."""
    from .._core import output as _output

    if not outcomes:
        return  # a dry run: it said what it would do
    failures = [o.error for o in outcomes if o.error and not _skipped(o)]
    totals = {change: sum(o.changes.get(change, 0) for o in outcomes) for change in CHANGES}
    finished = not failures and all(o.finished for o in outcomes)
    if finished and totals["unchanged"] and not totals["created"] and not totals["configured"]:
        _output.line(
            True,
            f"nothing changed: {totals['unchanged']} objects as deployed, every workload "
            f"Ready ({total:.1f}s)",
        )
        return
    rows = []
    for o in outcomes:
        if o.finished:
            shown = f"{o.finished - o.started:.1f}"
        elif o.error:
            shown = "skipped" if _skipped(o) else "failed"
        else:
            shown = "-"
        counts = [str(o.changes[c]) if o.changes else "" for c in CHANGES]
        rows.append((o.name, shown.rjust(7), *counts))
    rows.append(("total", f"{total:7.1f}", *(str(totals[c]) for c in CHANGES)))
    print()
    _output.print_table(("step", "seconds", *CHANGES), rows)
    if failures:
        raise Exit(str(failures[0].message), code=1)


def step_report(outcome: Outcome) -> str:
    """A finished step: its time and counts, then one line per kind of change naming the
    objects created and configured (kapp's summary, grouped):

        admin (1.3s; 1 created, 1 configured, 1 unchanged)
          created: prism/deployment/prism-admin
          configured: prism/configmap/prism-admin-config
    """
    took = outcome.finished - outcome.started
    counts = ", ".join(f"{n} {change}" for change, n in outcome.changes.items() if n)
    lines = [f"{outcome.name} ({took:.1f}s{'; ' + counts if counts else ''})"]
    for change in NAMED:
        if outcome.objects.get(change):
            lines.append(f"  {change}: {', '.join(outcome.objects[change])}")
    return "\n".join(lines)


def _skipped(outcome: Outcome) -> bool:
    return isinstance(outcome.error, Skipped)
