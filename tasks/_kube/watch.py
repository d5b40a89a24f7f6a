"""Waiting on workloads through the Kubernetes API with watches, and explaining a timeout.

A watch is re-opened every HEARTBEAT seconds only to print what is still pending; readiness
changes arrive as events, not by sleeping and polling.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from invoke import Exit

from .readiness import Progress, is_ready, pod_ready, rollout_state

HEARTBEAT = 10

IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}


def until_ready(
    api: Any,
    step: str,
    pending: set[tuple[str, str, str]],
    deadline: float,
    progress: Progress,
    on_pending_statefulset: Callable[[dict[str, Any]], None],
) -> None:
    from kubernetes import client, watch

    started = time.monotonic()
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for kind, namespace, name in pending:
        groups[(kind, namespace)].add(name)

    apps = client.AppsV1Api(api)
    listers = {
        "Deployment": apps.list_namespaced_deployment,
        "StatefulSet": apps.list_namespaced_stateful_set,
    }
    for (kind, namespace), names in sorted(groups.items()):
        status: dict[str, str] = {name: "not seen yet" for name in names}
        key = f"{step}/{kind}/{namespace}"
        while names:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                name = sorted(names)[0]
                raise Exit(explain(api, step, kind, namespace, name, status[name], started))
            stream = watch.Watch().stream(
                listers[kind],
                namespace,
                label_selector="app.kubernetes.io/part-of=prism",
                timeout_seconds=max(1, int(min(HEARTBEAT, remaining))),
            )
            for event in stream:
                obj = api.sanitize_for_serialization(event["object"])
                name = obj["metadata"]["name"]
                if name not in names:
                    continue
                status[name] = rollout_state(obj)
                if kind == "StatefulSet" and not is_ready(obj):
                    on_pending_statefulset(obj)
                if is_ready(obj):
                    names.discard(name)
                    elapsed = time.monotonic() - started
                    progress.say(
                        f"  {kind.lower()} {namespace}/{name} ready ({elapsed:.1f}s)", ok=True
                    )
                if not names:
                    break
                progress.waiting(key, _waiting(step, names, status, started), heartbeat=False)
            if names:
                progress.waiting(key, _waiting(step, names, status, started), heartbeat=True)
        progress.done(key)


def _waiting(step: str, names: set[str], status: dict[str, str], started: float) -> str:
    waiting = ", ".join(f"{n} ({status[n]})" for n in sorted(names))
    return f"  … {step}: waiting for {waiting} ({time.monotonic() - started:.0f}s)"


def explain(
    api: Any, step: str, kind: str, namespace: str, name: str, ready: str, started: float
) -> str:
    """One failing object, its pods' states and recent events, and the fix to try."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    read = (
        apps.read_namespaced_deployment
        if kind == "Deployment"
        else apps.read_namespaced_stateful_set
    )
    workload = read(name, namespace)
    selector = ",".join(f"{k}={v}" for k, v in (workload.spec.selector.match_labels or {}).items())
    lines = [
        f"{step}: {kind.lower()} {namespace}/{name} not Ready after "
        f"{time.monotonic() - started:.0f}s ({ready})"
    ]
    hint = f"inspect it with `kubectl -n {namespace} describe {kind.lower()} {name}`"
    found = core.list_namespaced_pod(namespace, label_selector=selector)
    pods: list[dict[str, Any]] = api.sanitize_for_serialization(found)["items"]
    pods.sort(key=pod_ready)  # the pods that are not Ready explain the wait: show them first
    for pod in pods[:3]:
        pod_name, phase = pod["metadata"]["name"], pod.get("status", {}).get("phase", "")
        reasons = [
            cs["state"]["waiting"]["reason"]
            for cs in pod.get("status", {}).get("containerStatuses", [])
            if cs.get("state", {}).get("waiting", {}).get("reason")
        ]
        lines.append(f"  pod {pod_name}: {phase} {' '.join(reasons)}".rstrip())
        if IMAGE_REASONS & set(reasons):
            images = ", ".join(ct["image"] for ct in pod["spec"]["containers"])
            hint = f"the image ({images}) is not in the cluster: run `inv images.load`"
        for event in _events(core, namespace, "Pod", pod_name):
            lines.append(f"    {event}")
            if "didn't match" in event or "Insufficient" in event:
                hint = "no node can run this pod: check nodeSelector/affinity and resource requests"
            if "unbound immediate PersistentVolumeClaims" in event:
                hint = "its claim does not bind: check `kubectl get storageclass local-storage`"
    if not pods:
        lines.append("  no pods were created")
    # Pods that could not even be created (a namespace's Pod Security level refusing them, a
    # quota) show only as events of what creates them: the StatefulSet, or the Deployment's
    # newest ReplicaSet.
    creator = kind, name
    if kind == "Deployment":
        newest = _newest_replica_set(apps, namespace, selector)
        creator = ("ReplicaSet", newest) if newest else creator
    events = _events(core, namespace, *creator)
    refusals = [e for e in events if e.startswith("Warning")]
    if refusals or not pods:
        lines.append(f"  {creator[0].lower()} {creator[1]}:")
        lines += [f"    {e}" for e in refusals or events]
    if any("violates PodSecurity" in e for e in refusals):
        hint = (
            "the namespace's Pod Security level (pod-security.kubernetes.io/enforce) refuses "
            "its pods: fix their securityContext in the overlay (docs/manifests-security.md)"
        )
    lines.append(f"  hint: {hint}; then run the same task again")
    return "\n".join(lines)


def _newest_replica_set(apps: Any, namespace: str, selector: str) -> str:
    """The name of a Deployment's newest ReplicaSet (by the revision the Deployment gives it)."""
    found = apps.list_namespaced_replica_set(namespace, label_selector=selector).items

    def revision(rs: Any) -> int:
        value = (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "0")
        return int(value) if value.isdigit() else 0

    return str(max(found, key=revision).metadata.name) if found else ""


def _events(core: Any, namespace: str, kind: str, name: str) -> list[str]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    events = core.list_namespaced_event(namespace, field_selector=selector).items
    return [f"{e.type} {e.reason}: {e.message}" for e in events[-5:]]
