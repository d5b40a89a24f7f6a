"""`observe.logs APP`: the logs of every pod of a workload, interleaved, each line prefixed
with its pod; `follow` keeps reading and picks up pods that start later (a rollout, a
rescheduled pod), until Ctrl-C.

Read through the API (one streamed request per container), so it works over -H too."""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from invoke import Context, Exit

from .._kube import client as _kube
from .._kube import workloads as _workloads

DURATION = re.compile(r"(\d+)([smhd])")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WATCH_SECONDS = 60  # a pod watch is re-opened this often (the API server ends long ones anyway)


def duration(value: str, flag: str = "--since") -> int:
    """`90s`, `5m`, `1h30m`, `2d` as seconds."""
    text = str(value).strip()
    parts = DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise Exit(f"{flag} {value!r} is not a duration; write it like 30s, 5m, 1h30m or 2d")
    seconds = sum(int(n) * UNIT[u] for n, u in parts)
    if seconds <= 0:
        raise Exit(f"{flag} {value!r} must be longer than 0s")
    return seconds


def started(pod: dict[str, Any]) -> bool:
    """Whether a pod has logs to read: it ran or is running."""
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")


@dataclass
class Streams:
    """One reader thread per container of each pod, printing whole lines under one lock."""

    api: Any
    namespace: str
    query: list[tuple[str, str]]
    seen: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name in self.seen or not started(pod):
            return
        self.seen.add(name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        for container in containers:
            prefix = f"[{name}]" if len(containers) == 1 else f"[{name}/{container}]"
            thread = threading.Thread(target=self.read, args=(name, container, prefix), daemon=True)
            thread.start()
            self.threads.append(thread)

    def read(self, pod: str, container: str, prefix: str) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log"
        try:
            with _kube.streaming(self.api, path, [*self.query, ("container", container)]) as raw:
                for line in raw:
                    self.say(f"{prefix} {line.decode(errors='replace').rstrip()}")
        except Exit as error:
            self.failed.append(pod)
            self.say(f"{prefix} cannot read its logs: {error.message}", sys.stderr)
        except Exception as error:  # the connection went away mid-stream
            self.failed.append(pod)
            self.say(f"{prefix} log stream ended: {type(error).__name__}: {error}", sys.stderr)

    def say(self, text: str, stream: Any = None) -> None:
        with self.lock:
            print(text, file=stream or sys.stdout, flush=True)


def show(c: Context, app: str, follow: bool, since: int | None, tail: int) -> None:
    query = [("follow", "true")] if follow else []
    if since:
        query.append(("sinceSeconds", str(since)))
    if tail >= 0:
        query.append(("tailLines", str(tail)))
    with _kube.api_client(c) as api:
        workload = _workloads.find(api, app)
        pods_path = f"/api/v1/namespaces/{workload.namespace}/pods"
        streams = Streams(api, workload.namespace, query)
        if not follow:
            pods = _kube.items(api, pods_path, workload.selector, "Pod")
            running = [p for p in pods if started(p)]
            if not running:
                raise Exit(
                    f"{workload.kind} {workload.namespace}/{workload.name} has no running pods; "
                    "see `inv observe.check`, or add --follow to wait for them",
                    code=1,
                )
            for pod in running:
                streams.start(pod)
            for thread in streams.threads:
                thread.join()
            if len(streams.failed) == len(streams.seen):
                raise Exit(f"could not read the logs of any pod of {workload.name}", code=1)
            return
        print(
            f"following {workload.kind} {workload.namespace}/{workload.name} "
            "(new pods join as they start); Ctrl-C to stop",
            file=sys.stderr,
        )
        try:
            _follow_pods(api, pods_path, workload.selector, streams)
        except KeyboardInterrupt:
            print("stopped following", file=sys.stderr)


def _follow_pods(api: Any, path: str, selector: str, streams: Streams) -> None:
    """List the pods, stream the started ones, then watch for more; re-list when a watch ends."""
    while True:
        status, listed = _kube.request(api, "GET", path, [("labelSelector", selector)])
        if status >= 300:
            raise Exit(f"cannot list pods: {listed.get('message', status)}", code=1)
        for pod in listed.get("items") or []:
            streams.start(pod)
        watch = [
            ("labelSelector", selector),
            ("watch", "true"),
            ("resourceVersion", listed["metadata"]["resourceVersion"]),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        with _kube.streaming(api, path, watch) as raw:
            for line in raw:
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    streams.start(event["object"])
