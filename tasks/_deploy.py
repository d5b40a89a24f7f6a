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

from invoke import Context, Exit, UnexpectedExit

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
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


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
        extra = secrets(_settings.load(c))
        if _command.target(c).provider == "kwok":
            from . import _kwok

            extra += _kwok.volumes(objects)
        objects = extra + objects
    return objects


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

    return yaml.safe_dump_all(list(objects), sort_keys=False)


# Applied first, in this order: what other objects live in or refer to.
FIRST_KINDS = ("Namespace", "StorageClass", "PersistentVolume")


def apply(c: Context, objects: Sequence[dict[str, Any]], **kwargs: Any) -> None:
    """Server-side apply through stdin: nothing rendered is written to disk, and an unchanged
    object keeps its resourceVersion."""
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    objects = sorted(objects, key=lambda o: rank.get(o.get("kind", ""), len(rank)))
    _command.kubectl(
        c,
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        "-",
        input=to_yaml(objects),
        hide="stdout",
        **kwargs,
    )


# --- readiness ---------------------------------------------------------------------------


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


def snapshot(c: Context, namespaces: Iterable[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every prism workload in the given namespaces, as the API shows it now."""
    import json

    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for namespace in sorted(set(namespaces)):
        result = _command.kubectl(
            c,
            "get",
            "deployments,statefulsets",
            "-l",
            "app.kubernetes.io/part-of=prism",
            "-o",
            "json",
            namespace=namespace,
            dry=False,
            hide=True,
            warn=True,
            echo=False,
        )
        if not result.ok:
            continue
        for item in json.loads(result.stdout or "{}").get("items", []):
            key = (item["kind"], namespace, item["metadata"]["name"])
            found[key] = item
    return found


@dataclass
class Progress:
    """Prints each workload as it becomes Ready, and a heartbeat for the ones still waiting."""

    lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)


def wait_ready(
    c: Context,
    step: str,
    wanted: Sequence[tuple[str, str, str]],
    timeout: int,
    progress: Progress,
) -> None:
    """Watch the wanted workloads until each is Ready; on timeout explain the first laggard."""
    if not wanted:
        return
    started = time.monotonic()
    current = snapshot(c, (ns for _, ns, _ in wanted))
    pending = {w for w in wanted if w not in current or not is_ready(current[w])}
    if not pending:
        return
    kicked: set[tuple[str, str]] = set()

    def on_pending(statefulset: dict[str, Any]) -> None:
        """Called with each not-yet-Ready StatefulSet: unblock it once per revision."""
        status = statefulset.get("status") or {}
        key = (statefulset["metadata"]["name"], status.get("updateRevision", ""))
        if key not in kicked and replace_stuck_pods(c, statefulset, progress):
            kicked.add(key)

    for key in sorted(pending):
        if key[0] == "StatefulSet" and key in current:
            on_pending(current[key])
    from . import _watch

    _watch.until_ready(c, step, pending, started + timeout, progress, on_pending)


def replace_stuck_pods(c: Context, statefulset: dict[str, Any], progress: Progress) -> bool:
    """Delete pods of an outdated revision that never became Ready.

    A StatefulSet's rolling update waits for each pod to be Ready before replacing it, so a pod
    from a broken template (say, an image or node selector that was wrong) would block the fixed
    template forever; a careful operator deletes it, and so does this."""
    import json

    status = statefulset.get("status") or {}
    meta = statefulset["metadata"]
    update = status.get("updateRevision")
    if not update or status.get("observedGeneration", 0) < meta.get("generation", 1):
        return False  # the controller has not caught up with the latest spec yet
    selector = ",".join(
        f"{k}={v}" for k, v in statefulset["spec"]["selector"].get("matchLabels", {}).items()
    )
    result = _command.kubectl(
        c,
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "json",
        namespace=meta["namespace"],
        dry=False,
        hide=True,
        warn=True,
        echo=False,
    )
    if not result.ok:
        return False
    for pod in json.loads(result.stdout or "{}").get("items", []):
        labels = pod["metadata"].get("labels", {})
        conditions = pod.get("status", {}).get("conditions", [])
        ready = any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)
        if labels.get("controller-revision-hash") != update and not ready:
            name = pod["metadata"]["name"]
            progress.say(f"  ↻ replacing pod {meta['namespace']}/{name}: outdated and not Ready")
            _command.kubectl(
                c, "delete", "pod", name, "--wait=false", namespace=meta["namespace"], hide="stdout"
            )
    return True  # this revision has been checked; later events need not list pods again


# --- running a plan -----------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    started: float = 0.0
    finished: float = 0.0
    error: Exit | None = None


def run_plan(
    c: Context,
    objects: Sequence[dict[str, Any]],
    steps: Sequence[Step] = STEPS,
    timeout: int = 300,
) -> list[Outcome]:
    """Apply `steps` in dependency order, each as soon as its prerequisites are Ready."""
    progress = Progress()
    dry = bool(c.config.run.dry)
    chosen = {s.name for s in steps}
    by_step = {step.name: objects_of(objects, step) for step in steps}
    outcomes = {step.name: Outcome(step.name) for step in steps}
    time.monotonic()

    current = {} if dry else snapshot(c, _namespaces(objects))
    everything = [w for step in steps for w in workloads(by_step[step.name])]
    if everything and all(w in current and is_ready(current[w]) for w in everything):
        # Every prerequisite already holds: one apply, then confirm step by step that nothing
        # the apply changed is left rolling.
        apply(c, [o for step in steps for o in by_step[step.name]])
        failed = ""
        for step in steps:
            outcome = outcomes[step.name]
            outcome.started = time.monotonic()
            if failed:
                outcome.error = Exit(f"{step.name}: skipped because {failed} failed")
                continue
            try:
                if not dry:
                    wait_ready(c, step.name, workloads(by_step[step.name]), timeout, progress)
            except Exit as error:
                outcome.error, failed = error, step.name
                continue
            outcome.finished = time.monotonic()
        return list(outcomes.values())

    done = {name: threading.Event() for name in outcomes}
    apply_lock = threading.Lock()  # one command at a time on the host; waits run in parallel

    def run_step(step: Step) -> None:
        outcome = outcomes[step.name]
        try:
            for dep in step.after:
                if dep in chosen:
                    done[dep].wait()
                    if outcomes[dep].error:
                        outcome.error = Exit(f"{step.name}: skipped because {dep} failed")
                        return
            outcome.started = time.monotonic()
            if by_step[step.name]:
                with apply_lock:
                    progress.say(f"→ {step.name}: applying {len(by_step[step.name])} objects")
                    apply(c, by_step[step.name])
                if not dry:
                    wait_ready(c, step.name, workloads(by_step[step.name]), timeout, progress)
            outcome.finished = time.monotonic()
            progress.say(f"✓ {step.name} ({outcome.finished - outcome.started:.1f}s)")
        except Exit as error:
            outcome.error = error
        except UnexpectedExit as error:  # its output was shown as it ran
            result = error.result
            last = (result.stderr.strip().splitlines() or [""])[-1]
            outcome.error = Exit(
                f"{step.name}: `{result.command}` failed (exit {result.exited}): {last}"
            )
        finally:
            done[step.name].set()

    threads = [threading.Thread(target=run_step, args=(s,), daemon=True) for s in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return list(outcomes.values())


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
