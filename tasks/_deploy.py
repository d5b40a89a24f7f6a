"""The deploy engine: render an overlay, split it into the guide's steps, apply each step once
its prerequisites are Ready, and wait through the API (watches, not sleep loops).

Steps follow the guide's order, but only true dependencies serialise: backends and prism-admin
start together; the proxy waits for admin; the runners wait for backends and the proxy.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from . import _command, _settings

MANIFESTS = _settings.PROJECT_ROOT / "manifests"
FIELD_MANAGER = "prism-tasks"
TIER = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

# The Secrets the manifests reference (ERRATA 1), filled from the environment / .env.
SECRETS = {
    ("prism-backends", "minio-credentials"): {
        "MINIO_ROOT_USER": "PRISM_MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD": "PRISM_MINIO_ROOT_PASSWORD",
    },
    ("prism-backends", "postgres-credentials"): {
        "POSTGRES_USER": "PRISM_POSTGRES_USER",
        "POSTGRES_PASSWORD": "PRISM_POSTGRES_PASSWORD",
        "POSTGRES_DB": "PRISM_POSTGRES_DB",
    },
    ("prism", "mailbox-s3-credentials"): {
        "S3_ACCESS_KEY": "PRISM_S3_ACCESS_KEY",
        "S3_SECRET_KEY": "PRISM_S3_SECRET_KEY",
    },
}


@dataclass(frozen=True)
class Step:
    name: str
    tiers: tuple[str, ...]
    after: tuple[str, ...] = ()


# The guide's phases 2-7 plus the HPA, with the dependencies that really exist.
STEPS = (
    Step("foundation", ("foundation",)),
    Step("backends", ("backend",), ("foundation",)),
    Step("admin", ("admin",), ("foundation",)),
    Step("proxy", ("proxy",), ("admin",)),
    Step("runners", ("runner",), ("backends", "proxy")),
    Step("ingress", ("ingress",), ("admin", "proxy")),
    Step("autoscaling", ("autoscaling",), ("proxy",)),
)
STEP_NAMES = tuple(step.name for step in STEPS)


def local(c: Context) -> Context:
    """Where rendering happens: always this machine, even when `c` is a remote host."""
    return Context(config=c.config) if _command.is_remote(c) else c


def seconds(value: object, default: int) -> int:
    """A --timeout flag (a string from the command line) as whole seconds."""
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise Exit(f"--timeout {value!r} is not a whole number of seconds", code=1) from None
    if number <= 0:
        raise Exit(f"--timeout {value!r} must be a positive number of seconds", code=1)
    return number


def overlay_dir(name: str) -> Path:
    """An overlay by name (manifests/overlays/<name>) or, for your own, by directory path."""
    path = MANIFESTS / "overlays" / name
    if ("/" in name or name.startswith(".")) and (Path(name) / "kustomization.yaml").is_file():
        return Path(name).resolve()
    if not path.is_dir():
        known = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
        raise Exit(f"unknown overlay {name!r}; choose one of: {', '.join(known)}", code=1)
    return path


def kustomize(c: Context, path: Path) -> list[dict[str, Any]]:
    """Render a kustomization locally into objects."""
    import yaml  # imported here: `inv --list` should not pay for it

    result = _command.query(local(c), ["kubectl", "kustomize", str(path)])
    if not result.ok:
        raise Exit(f"cannot render {path}: {result.stderr.strip()}", code=1)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    return [doc for doc in yaml.load_all(result.stdout, Loader=loader) if doc]


def secrets(s: _settings.Settings) -> list[dict[str, Any]]:
    """Secret objects built from the environment; their values never touch a file."""
    objects = []
    for (namespace, name), keys in SECRETS.items():
        data = {key: base64.b64encode(s.secret(var).encode()).decode() for key, var in keys.items()}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        "app.kubernetes.io/part-of": "prism",
                        NAME: "credentials",
                        TIER: "foundation",
                    },
                },
                "type": "Opaque",
                "data": data,
            }
        )
    return objects


def backend_names(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {labels(o).get(NAME, "") for o in objects if labels(o).get(TIER) == "backend"}


def available_backends() -> list[str]:
    return sorted(
        p.name
        for p in (MANIFESTS / "base").iterdir()
        if (p / "kustomization.yaml").is_file() and _is_backend(p)
    )


def _is_backend(path: Path) -> bool:
    return f"{TIER}: backend" in (path / "kustomization.yaml").read_text()


def plan_objects(
    c: Context,
    overlay: str,
    only_backends: Sequence[str] | None = None,
    for_apply: bool = True,
) -> list[dict[str, Any]]:
    """The objects of an overlay, with backends narrowed (or widened) to `only_backends`.

    `for_apply` adds what only exists in a cluster: the Secrets from `.env` and, on the
    simulated cluster, the volumes its claims bind to."""
    objects = kustomize(c, overlay_dir(overlay))
    if only_backends is not None:
        present = backend_names(objects)
        known = sorted(set(available_backends()) | present)
        unknown = [b for b in only_backends if b not in known]
        if unknown:
            raise Exit(f"unknown backend {unknown[0]!r}; choose from: {', '.join(known)}", code=1)
        objects = [
            o
            for o in objects
            if labels(o).get(TIER) != "backend" or labels(o).get(NAME) in only_backends
        ]
        for backend in only_backends:
            if backend not in present:
                objects += kustomize(c, MANIFESTS / "base" / backend)
    if for_apply:
        require_placed(objects)
        extra = secrets(_settings.load(c))
        if _command.target(c).provider == "kwok":
            from . import _kwok

            extra += _kwok.volumes(objects)
        objects = extra + objects
    return objects


def require_placed(objects: Iterable[dict[str, Any]]) -> None:
    """Every object must belong to a step (its component label), or a deploy would skip it."""
    tiers = {tier for step in STEPS for tier in step.tiers}
    for obj in objects:
        if labels(obj).get(TIER) not in tiers:
            meta = obj.get("metadata", {})
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            raise Exit(
                f"{obj.get('kind')} {where}{meta.get('name')} belongs to no step: label it "
                f"{TIER}=<{'|'.join(sorted(tiers))}> in its kustomization",
                code=1,
            )


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels", {}) or {}


def objects_of(objects: Iterable[dict[str, Any]], step: Step) -> list[dict[str, Any]]:
    return [o for o in objects if labels(o).get(TIER) in step.tiers]


def workloads(objects: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of the objects that have readiness to wait for."""
    return [
        (o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"])
        for o in objects
        if o.get("kind") in WORKLOAD_KINDS
    ]


def claims(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Names of the claims StatefulSets create from their volumeClaimTemplates."""
    return [
        f"{template['metadata']['name']}-{o['metadata']['name']}-{ordinal}"
        for o in objects
        if o.get("kind") == "StatefulSet"
        for template in o["spec"].get("volumeClaimTemplates", [])
        for ordinal in range(o["spec"].get("replicas", 1))
    ]


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(list(objects), Dumper=dumper, sort_keys=False)


# Applied first, in this order: what other objects live in or refer to.
FIRST_KINDS = ("Namespace", "StorageClass", "PersistentVolume")


def apply_order(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(objects, key=lambda o: rank.get(o.get("kind", ""), len(rank)))


def apply_command(c: Context) -> list[str]:
    """The kubectl command that does what `Plan.apply` does through the API."""
    flags = _command.kube_flags(_command.target(c))
    return ["kubectl", *flags, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
            "--force-conflicts", "--validate=strict", "-f", "-"]  # fmt: skip


def is_ready(obj: dict[str, Any]) -> bool:
    """A Deployment or StatefulSet whose current spec is fully rolled out and Ready."""
    spec, status = obj.get("spec", {}), obj.get("status", {}) or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False
    return (
        status.get("readyReplicas", 0) >= want
        and status.get("updatedReplicas", 0) >= want
        and status.get("replicas", 0) == want
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    """A pod whose Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)


@dataclass
class Progress:
    """Prints each workload as it becomes Ready, and a heartbeat for the ones still waiting."""

    lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)


@dataclass
class Outcome:
    name: str
    started: float = 0.0
    finished: float = 0.0
    error: Exit | None = None


Key = tuple[str, str, str]  # (kind, namespace, name) of a workload
SELECTOR = "app.kubernetes.io/part-of=prism"


class Plan:
    """One deploy against one cluster, through one API connection: server-side apply with the
    server's strict validation, readiness from watches.

    kubectl would re-read and parse the API's OpenAPI documents in every `apply` process (most
    of a no-op apply's time); the API itself needs one request per object."""

    def __init__(self, api: Any, objects: Sequence[dict[str, Any]], steps: Sequence[Step]):
        from . import _kube

        self.api = api
        self.resources = _kube.Resources(api)
        self.steps = list(steps)
        self.by_step = {step.name: objects_of(objects, step) for step in steps}
        self.namespaces = _namespaces(objects)
        self.progress = Progress()
        self.kicked: set[tuple[str, str, str]] = set()  # (namespace, statefulset, revision)

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        from . import _kube

        for obj in apply_order(objects):
            _kube.server_side_apply(self.api, self.resources, obj, FIELD_MANAGER)

    def snapshot(self, namespaces: Iterable[str]) -> dict[Key, dict[str, Any]]:
        """Every prism workload in the given namespaces, as the API shows it now."""
        from . import _kube

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
        from . import _watch

        _watch.until_ready(self.api, step, pending, started + timeout, self.progress, self.unblock)

    def unblock(self, statefulset: dict[str, Any]) -> None:
        """Delete pods of an outdated revision that never became Ready, once per revision.

        A StatefulSet's rolling update waits for each pod to be Ready before replacing it, so a
        pod from a broken template (say, an image or node selector that was wrong) would block
        the fixed template forever; a careful operator deletes it, and so does this."""
        from . import _kube

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
        """Apply the steps in dependency order, each as soon as its prerequisites are Ready."""
        current = self.snapshot(self.namespaces)
        everything = [w for step in self.steps for w in workloads(self.by_step[step.name])]
        if everything and all(w in current and is_ready(current[w]) for w in everything):
            return self.converge(timeout)
        outcomes = {step.name: Outcome(step.name) for step in self.steps}
        done = {name: threading.Event() for name in outcomes}

        def run_step(step: Step) -> None:
            outcome = outcomes[step.name]
            try:
                for dep in step.after:
                    if dep in done:
                        done[dep].wait()
                        if outcomes[dep].error:
                            outcome.error = Exit(f"{step.name}: skipped because {dep} failed")
                            return
                outcome.started = time.monotonic()
                objects = self.by_step[step.name]
                if objects:
                    self.progress.say(f"→ {step.name}: applying {len(objects)} objects")
                    self.guarded(step.name, self.apply, objects)
                    self.guarded(step.name, self.wait_ready, step.name, workloads(objects), timeout)
                outcome.finished = time.monotonic()
                self.progress.say(f"✓ {step.name} ({outcome.finished - outcome.started:.1f}s)")
            except Exit as error:
                outcome.error = error
            finally:
                done[step.name].set()

        threads = [threading.Thread(target=run_step, args=(s,), daemon=True) for s in self.steps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return list(outcomes.values())

    def converge(self, timeout: int) -> list[Outcome]:
        """Everything is deployed and Ready already: one apply, then one look at whether it
        changed anything that must roll out again (a no-op apply changes nothing)."""
        outcomes = [Outcome(step.name) for step in self.steps]
        objects = [o for step in self.steps for o in self.by_step[step.name]]
        self.guarded("apply", self.apply, objects)
        current = self.snapshot(self.namespaces)
        failed = ""
        for step, outcome in zip(self.steps, outcomes, strict=True):
            outcome.started = time.monotonic()
            if failed:
                outcome.error = Exit(f"{step.name}: skipped because {failed} failed")
                continue
            try:
                wanted = workloads(self.by_step[step.name])
                self.guarded(step.name, self.wait_ready, step.name, wanted, timeout, current)
            except Exit as error:
                outcome.error, failed = error, step.name
                continue
            outcome.finished = time.monotonic()
        return outcomes

    def guarded(self, step: str, action: Any, *args: Any) -> None:
        """Run `action`; a lost connection to the API server becomes one line with the next step."""
        from urllib3.exceptions import HTTPError

        try:
            action(*args)
        except Exit as error:
            message = str(error.message)
            raise Exit(
                message if message.startswith(f"{step}:") else f"{step}: {message}"
            ) from None
        except (HTTPError, OSError) as error:
            raise Exit(
                f"{step}: lost the connection to the Kubernetes API ({error}); "
                "is the cluster running? `inv cluster.status`, then run the same task again"
            ) from None


def run_plan(
    c: Context,
    objects: Sequence[dict[str, Any]],
    steps: Sequence[Step] = STEPS,
    timeout: int = 300,
) -> list[Outcome]:
    """Deploy `steps` of `objects`; under --dry, print what each step would apply."""
    if c.config.run.dry:
        return dry_plan(c, objects, steps)
    from . import _kube

    with _kube.api_client(c) as api:
        return Plan(api, objects, steps).run(timeout)


def dry_plan(c: Context, objects: Sequence[dict[str, Any]], steps: Sequence[Step]) -> list[Outcome]:
    """What a deploy would send, step by step, without touching the cluster."""
    import shlex

    prefix = ""
    if _command.is_remote(c):
        from . import _hosts

        prefix = f"[{_hosts.label(c)}] "  # several hosts' plans interleave
    command = c.config.run.echo_format.format(command=shlex.join(apply_command(c)))
    outcomes = []
    for step in steps:
        chosen = objects_of(objects, step)
        if chosen:
            names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in apply_order(chosen))
            print(
                f"{prefix}→ {step.name}: would apply {len(chosen)} object{'s' * (len(chosen) != 1)} ({names}), as:"
            )
            print(f"{prefix}{command}")
        now = time.monotonic()
        outcomes.append(Outcome(step.name, now, now))
    return outcomes


def _namespaces(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {o["metadata"]["namespace"] for o in objects if o.get("metadata", {}).get("namespace")}


def summarize(outcomes: Sequence[Outcome], total: float) -> None:
    """The per-step timing table printed at the end of a deploy; raises on the first failure."""
    print("\nstep          seconds")
    for o in outcomes:
        if o.finished:
            shown = f"{o.finished - o.started:7.1f}"
        elif o.error:
            shown = "skipped" if _skipped(o) else " failed"
        else:
            shown = "      -"
        print(f"{o.name:<12} {shown}")
    print(f"{'total':<12} {total:7.1f}")
    failures = [o.error for o in outcomes if o.error and not _skipped(o)]
    if failures:
        raise Exit(str(failures[0].message), code=1)


def _skipped(outcome: Outcome) -> bool:
    return outcome.error is not None and "skipped because" in str(outcome.error.message)
