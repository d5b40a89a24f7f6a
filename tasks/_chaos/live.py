"""The cluster as it changes: one watch per kind (pods, nodes, Deployments, StatefulSets, all
namespaces), each in a background thread that lists, watches, and lists again when a watch
ends. The main thread reads the changes from a queue, so Ctrl-C reaches it at any moment.

When the API server goes away the watches lose their connections; each thread records when
(and why), retries, and records when it is back. Changes made while it was away arrive as the
difference between what it knew and what the next list shows, so nothing is missed.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from invoke import Exit

from .._kube import client as _kube

PATHS = {
    "Node": "/api/v1/nodes",
    "Pod": "/api/v1/pods",
    "Deployment": "/apis/apps/v1/deployments",
    "StatefulSet": "/apis/apps/v1/statefulsets",
    # the control plane's leader leases (kube-controller-manager, kube-scheduler)
    "Lease": "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
}
WORKLOADS = ("Node", "Pod", "Deployment", "StatefulSet")
WATCH_SECONDS = 20  # a watch is re-opened this often (a stopped thread ends within it)
RETRY_SECONDS = 0.5  # between attempts while the API server does not answer


@dataclass(frozen=True)
class Change:
    at: float  # time.monotonic()
    kind: str
    old: dict[str, Any] | None  # None: new
    new: dict[str, Any] | None  # None: deleted


@dataclass
class Outage:
    """A watch that lost its connection: when, why, and when it was back (None: never)."""

    kind: str
    lost: float
    reason: str
    back: float | None = None


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


@dataclass
class Live:
    api: Any
    kinds: tuple[str, ...] = WORKLOADS
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    changes: queue.Queue[Change] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    listed: dict[str, threading.Event] = field(default_factory=dict)
    streams: dict[str, Any] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    failure: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 30) -> Live:
        """Start every watch and return once each has listed its kind."""
        for kind in self.kinds:
            self.objects[kind] = {}
            self.listed[kind] = threading.Event()
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True)
            thread.start()
            self.threads.append(thread)
        deadline = time.monotonic() + timeout
        for kind in self.kinds:
            while not self.listed[kind].wait(0.1):
                if kind in self.failure and self.failure[kind].startswith("refused"):
                    self.stop()
                    raise Exit(f"cannot watch {kind}s: {self.failure[kind]}", code=1)
                if time.monotonic() > deadline:
                    self.stop()
                    why = self.failure.get(kind, "no answer")
                    raise Exit(f"cannot list the cluster's {kind}s: {why}", code=1)
        return self

    def stop(self) -> None:
        """End the watches. Takes no lock: a Ctrl-C that landed while the main thread held it
        must not keep the task from ending."""
        self.stopping.set()
        for raw in list(self.streams.values()):
            with contextlib.suppress(Exception):
                raw.shutdown()

    def __enter__(self) -> Live:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the main thread asks ------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            return self.objects[kind].get(f"{namespace}/{name}")

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects[kind].values())

    def next(self, timeout: float) -> Change | None:
        """The next change, or None after `timeout` seconds without one."""
        try:
            return self.changes.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def until(
        self, done: Callable[[], bool], deadline: float, seen: Callable[[Change], None]
    ) -> bool:
        """Hand every change to `seen` until `done()` holds (True) or the deadline (False).
        `done` is asked again at least once a second: some conditions are about time."""
        while True:
            change = self.next(0)
            while change is not None:  # what has arrived first, so `done` sees the same state
                seen(change)
                change = self.next(0)
            if done():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            change = self.next(min(remaining, 1.0))
            if change is not None:
                seen(change)

    def open_outages(self) -> list[Outage]:
        with self.lock:
            return [o for o in self.outages if o.back is None]

    # --- the watch threads ----------------------------------------------------------------------

    def _run(self, kind: str) -> None:
        path = PATHS[kind]
        version = ""
        outage: Outage | None = None
        while not self.stopping.is_set():
            try:
                if not version:
                    version = self._list(kind, path)
                    if outage is not None:
                        with self.lock:
                            outage.back = time.monotonic()
                        outage = None
                    self.listed[kind].set()
                version = self._watch(kind, path, version)
            except Exit as error:  # a refusal (403 ...): no retry makes it work
                self.failure[kind] = f"refused: {error.message}"
                if self.stopping.wait(RETRY_SECONDS * 4):
                    return
            except Exception as error:  # the connection went away; retry until stopped
                if self.stopping.is_set():
                    return
                reason = _reason(error)
                self.failure[kind] = reason
                if outage is None:
                    outage = Outage(kind, time.monotonic(), reason)
                    with self.lock:
                        self.outages.append(outage)
                version = ""
                if self.stopping.wait(RETRY_SECONDS):
                    return

    def _list(self, kind: str, path: str) -> str:
        status, found = _kube.request(self.api, "GET", path)
        if status >= 300:
            raise Exit(str(found.get("message", status)), code=1)
        items = {key(item): {"kind": kind, **item} for item in found.get("items") or []}
        now = time.monotonic()
        with self.lock:
            known = self.objects[kind]
            for name in [n for n in known if n not in items]:
                self.changes.put(Change(now, kind, known.pop(name), None))
            for name, item in items.items():
                old = known.get(name)
                if old is None or old["metadata"].get("resourceVersion") != item["metadata"].get(
                    "resourceVersion"
                ):
                    known[name] = item
                    self.changes.put(Change(now, kind, old, item))
        return str(found.get("metadata", {}).get("resourceVersion", ""))

    def _watch(self, kind: str, path: str, version: str) -> str:
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        with _kube.streaming(self.api, path, query) as raw:
            self.streams[kind] = raw  # one key per thread: no lock needed
            try:
                for line in raw:
                    if self.stopping.is_set():
                        return version
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        return ""  # 410 Gone (too old): list again
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") == "BOOKMARK":
                        continue
                    self._apply(kind, event["type"], {"kind": kind, **obj})
            finally:
                self.streams.pop(kind, None)
        return version

    def _apply(self, kind: str, kind_of_event: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        name = key(obj)
        with self.lock:
            known = self.objects[kind]
            old = known.get(name)
            if kind_of_event == "DELETED":
                known.pop(name, None)
                self.changes.put(Change(now, kind, old or obj, None))
            else:
                known[name] = obj
                self.changes.put(Change(now, kind, old, obj))


def _reason(error: BaseException) -> str:
    """Why a connection failed, in a few words (urllib3 wraps the useful part)."""
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for marker in ("Connection refused", "Connection reset", "timed out"):
        if marker.lower() in text.lower():
            return marker.lower()
    if "ended prematurely" in text or "Remote end closed" in text:
        return "the API server closed the connection"
    return f"{type(error).__name__}: {text}"[:120]
