"""Resilience drills: disrupt one workload of the stack on the project's own cluster and time how
long it takes to heal."""

from __future__ import annotations

import time
from typing import Any

from invoke import Collection, Exit, task

from ._core import settings as _settings
from ._core import target as _target


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


ns = Collection("chaos", kill_pod)
_settings.configure(
    ns,
    "chaos",
    {
        "namespace": "prism",
        "timeout": 120,  # seconds for a killed pod's replacement to become Ready
    },
)
