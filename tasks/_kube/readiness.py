"""Readiness as the API reports it: a rolled-out workload, a Ready pod, and the progress lines
printed while waiting for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._core.output import Status


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


def rollout_state(obj: dict[str, Any]) -> str:
    """Where a workload's rollout stands, in kubectl's words (`kubectl rollout status`):
    counting the new revision's replicas, not the old pods still serving."""
    spec, status = obj.get("spec", {}), obj.get("status", {}) or {}
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return "waiting for the controller to see the new spec"
    if obj.get("kind") == "StatefulSet":
        ready = status.get("readyReplicas", 0)
        if updated < want:
            return f"{updated} of {want} pods updated"
        return f"{ready} of {want} pods ready"
    if updated < want:
        return f"{updated} of {want} new replicas updated"
    old = status.get("replicas", 0) - updated
    if old > 0:
        return f"{old} old replica{'s' * (old != 1)} pending termination"
    available = status.get("availableReplicas", 0)
    return f"{available} of {updated} updated replicas available"


@dataclass
class Progress:
    """The lines of a deploy: each workload as it becomes Ready (permanent lines) and what is
    still awaited (in place on a terminal, a heartbeat line in plain output)."""

    status: Status = field(default_factory=Status)

    def say(self, text: str, ok: bool | None = None) -> None:
        self.status.say(text, ok)

    def waiting(self, key: str, text: str, heartbeat: bool) -> None:
        self.status.update(key, text, plain=heartbeat)

    def done(self, key: str) -> None:
        self.status.clear(key)

    def stop(self) -> None:
        self.status.stop()
