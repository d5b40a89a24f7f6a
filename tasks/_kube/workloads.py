"""The Prism workloads in a cluster, found by name: what `observe.logs APP`, `deploy.restart APP`
and the verify checks are given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from invoke import Exit

from .client import items

NAMESPACES = ("prism", "prism-backends")
SELECTOR = "app.kubernetes.io/part-of=prism"
PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    obj: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/{PLURALS[self.kind]}/{self.name}"

    @property
    def selector(self) -> str:
        """The label selector of its pods."""
        labels = self.obj["spec"]["selector"].get("matchLabels", {})
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def every(api: Any, namespaces: tuple[str, ...] = NAMESPACES) -> list[Workload]:
    """Every Prism Deployment and StatefulSet in the Prism namespaces."""
    found = []
    for namespace in namespaces:
        for kind, plural in PLURALS.items():
            path = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
            for item in items(api, path, SELECTOR, kind):
                found.append(Workload(kind, namespace, item["metadata"]["name"], item))
    return found


def find(api: Any, app: str) -> Workload:
    """The workload called `app`; when there is none, one line naming those there are."""
    known = every(api)
    for workload in known:
        if workload.name == app:
            return workload
    names = ", ".join(sorted(w.name for w in known)) or "none; run `inv deploy.all`"
    raise Exit(f"no Prism workload {app!r} in the cluster; choose one of: {names}", code=1)
