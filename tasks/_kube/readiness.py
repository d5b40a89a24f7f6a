"""Readiness as the API reports it: a rolled-out workload, a Ready pod, and the progress lines
printed while waiting for them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


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
