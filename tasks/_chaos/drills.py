"""The part every drill shares: what was Ready when it started, what stopped being Ready and
when, which pods went and which came, and when the stack was whole again.

A workload is *healthy* while at least as many of its pods are Ready (and not Terminating) as
it wanted replicas when the drill started: a backend scaled to zero counts as down, not as
"0 of 0 Ready". Counting pods rather than reading the workload's status keeps the timeline in
step with the pods (the status follows a moment later). The stack is *whole* when every
workload healthy at the start is healthy again, the drill's fault is undone, the nodes it cares
about are usable and every watch is connected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._kube import client as _kube
from .live import Change, Live
from .report import Recovery, Workload

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
DEFAULT_TOLERATION = 300  # seconds: what the DefaultTolerationSeconds admission plugin adds


def workload_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{obj['kind'].lower()}/{meta['name']}"


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def uid(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("uid", ""))


def owner(pod: dict[str, Any]) -> str:
    """The workload a pod belongs to (a ReplicaSet's pods belong to its Deployment)."""
    meta = pod["metadata"]
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, name = ref["kind"], ref["name"]
        if kind == "ReplicaSet":
            template_hash = (meta.get("labels") or {}).get("pod-template-hash", "")
            if template_hash and name.endswith(f"-{template_hash}"):
                return f"{meta.get('namespace', '')}/deployment/{name[: -len(template_hash) - 1]}"
        return f"{meta.get('namespace', '')}/{kind.lower()}/{name}"
    return ""


def pod_ready(pod: dict[str, Any] | None) -> bool:
    if not pod:
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serving(pod: dict[str, Any] | None) -> bool:
    """Ready and not on its way out (a Terminating pod no longer counts)."""
    return pod_ready(pod) and not (pod or {}).get("metadata", {}).get("deletionTimestamp")


def node_ready(node: dict[str, Any] | None) -> str:
    """The node's Ready condition: True, False or Unknown ("" when there is no node)."""
    if not node:
        return ""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def node_usable(node: dict[str, Any] | None) -> bool:
    """Ready, and without the taints the node lifecycle controller puts on a lost node (it
    lifts them at its next pass, node-monitor-period, after the node is Ready again)."""
    taints = ((node or {}).get("spec") or {}).get("taints") or []
    lost = any(t.get("key") in (UNREACHABLE, NOT_READY) for t in taints)
    return node_ready(node) == "True" and not lost


def ready_replicas(obj: dict[str, Any] | None) -> int:
    return int(((obj or {}).get("status") or {}).get("readyReplicas") or 0)


def wanted(obj: dict[str, Any]) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def unreachable_toleration(pod: dict[str, Any]) -> int | None:
    """Seconds the pod may stay on a node tainted unreachable before the taint-eviction
    controller deletes it; None: it tolerates the taint without limit; 0: no toleration."""
    for toleration in (pod.get("spec") or {}).get("tolerations") or []:
        key = toleration.get("key") or ""
        if not key and toleration.get("operator") != "Exists":
            continue
        if key and key != UNREACHABLE:
            continue
        if toleration.get("effect") not in (None, "", "NoExecute"):
            continue
        seconds = toleration.get("tolerationSeconds")
        return None if seconds is None else int(seconds)
    return 0


LEADERS = ("kube-controller-manager", "kube-scheduler")


RENEW_SECONDS = 2.5  # a leader renews its lease every 2 s (its retry period)


def leader_renewals(api: Any) -> dict[str, str]:
    """The last renewal of each of the control plane's leader leases that exists."""
    found = {}
    for name in LEADERS:
        status, lease = _kube.request(
            api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"
        )
        renewed = (lease.get("spec") or {}).get("renewTime") if status < 300 else None
        if renewed:  # no lease: no leader election (or not ours to read), nothing to wait for
            found[name] = str(renewed)
    return found


def await_leaders(api: Any, say: Callable[[str], None], patience: float = 60) -> None:
    """Start a drill only once the controllers act. Right after a control-plane restart the
    new controller-manager and scheduler wait for their predecessors' leader leases to run out,
    and meanwhile nothing is reconciled or scheduled: a drill then would measure a cluster that
    does not heal. A lease renewed more than RENEW_SECONDS ago is watched until it is renewed
    again (the API server's times only, so a clock off here costs at most one renewal)."""
    now = datetime.now(UTC)
    seen = leader_renewals(api)
    waiting = {
        name: renewed
        for name, renewed in seen.items()
        if (now - (timestamp(renewed) or now)).total_seconds() > RENEW_SECONDS
    }
    if not waiting:
        return
    deadline = time.monotonic() + patience
    told = False
    while waiting and time.monotonic() < deadline:
        time.sleep(0.5)
        current = leader_renewals(api)
        waiting = {n: r for n, r in waiting.items() if current.get(n, r) == r}
        if waiting and not told and time.monotonic() > deadline - patience + 3:
            say(f"waiting for {', '.join(waiting)} to lead again (a control plane restart?)")
            told = True
    if waiting:
        say(
            f"warning: {', '.join(waiting)} did not renew its leader lease in {patience:.0f}s; "
            "the drill goes on, but the cluster may not heal"
        )


@dataclass
class Replacement:
    pod: str
    owner: str
    created: float
    node: str = ""
    ready: float | None = None


@dataclass
class Drill:
    """One drill under way: give it every change (`seen`), and it prints the timeline."""

    name: str
    target: str
    provider: str
    live: Live
    say_line: Callable[[str], None]
    focus: set[str] = field(default_factory=set)  # nodes whose pods it follows
    t0: float = field(default_factory=time.monotonic)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    want: dict[str, int] = field(default_factory=dict)
    unready_before: list[str] = field(default_factory=list)
    healthy: dict[str, bool] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    back: dict[str, float] = field(default_factory=dict)
    down_nodes: set[str] = field(default_factory=set)  # nodes without a kubelet now
    needs_ready: set[str] = field(default_factory=set)  # nodes that must be Ready to be whole
    terminating: dict[str, float] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)
    replacements: dict[str, Replacement] = field(default_factory=dict)
    restored_at: float | None = None
    restored_wall: datetime | None = None
    whole_at: float | None = None
    fault_cleared_at: float | None = None
    blocked: bool = False
    not_recovered: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hooks: list[Callable[[Change], None]] = field(default_factory=list)
    serving: dict[str, set[str]] = field(default_factory=dict)  # workload -> Ready pods' uids
    conditions: list[Callable[[], bool]] = field(default_factory=list)  # more to being whole
    on_focus: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> pod, at the start
    evicted: set[str] = field(default_factory=set)  # uids of the pods the drill itself evicted

    def __post_init__(self) -> None:
        for pod in self.live.all("Pod"):
            if serving(pod):
                self.serving.setdefault(owner(pod), set()).add(uid(pod))
        for kind in ("Deployment", "StatefulSet"):
            for obj in self.live.all(kind):
                key, want = workload_key(obj), wanted(obj)
                if want <= 0:
                    continue
                if len(self.serving.get(key, ())) >= want:
                    self.want[key] = want
                    self.healthy[key] = True
                else:
                    self.unready_before.append(key)
        self.on_focus = {
            uid(p): p for p in self.live.all("Pod") if p["spec"].get("nodeName") in self.focus
        }

    # --- the timeline ------------------------------------------------------------------------

    def elapsed(self, at: float | None = None) -> float:
        return (time.monotonic() if at is None else at) - self.t0

    def say(self, text: str, at: float | None = None) -> None:
        self.say_line(f"  +{self.elapsed(at):5.1f}s  {text}")

    def seen(self, change: Change) -> None:
        if change.at < self.t0:
            return  # the first lists: the state the drill started from
        if change.kind == "Node":
            self._node(change)
        elif change.kind == "Pod":
            self._pod(change)
        for hook in self.hooks:
            hook(change)

    def _health(self, key: str, at: float) -> None:
        """A workload is healthy while as many of its pods serve as it wanted at the start."""
        if key not in self.want:
            return
        want, ready = self.want[key], len(self.serving.get(key, ()))
        now_healthy = ready >= want
        namespace, kind, name = key.split("/")
        label = f"{kind} {namespace}/{name}"
        if self.healthy[key] and not now_healthy:
            self.healthy[key] = False
            self.lost.setdefault(key, at)
            self.back.pop(key, None)
            self.say(f"{label} not Ready ({ready} of {want})", at)
        elif not self.healthy[key] and now_healthy:
            self.healthy[key] = True
            self.back[key] = at
            self.say(f"{label} Ready again ({ready} of {want})", at)

    def _node(self, change: Change) -> None:
        old, new = change.old, change.new
        name = (new or old or {}).get("metadata", {}).get("name", "")
        before, after = node_ready(old), node_ready(new)
        if before != after:
            reason = ""
            for condition in ((new or {}).get("status") or {}).get("conditions") or []:
                if condition.get("type") == "Ready" and condition.get("reason"):
                    reason = f" ({condition['reason']}: {condition.get('message', '')})".rstrip()
            self.say(f"node {name} Ready={after or 'gone'}{reason}", change.at)
        taints_before = {_taint(t) for t in ((old or {}).get("spec") or {}).get("taints") or []}
        taints_after = {_taint(t) for t in ((new or {}).get("spec") or {}).get("taints") or []}
        for taint in sorted(taints_after - taints_before):
            self.say(f"node {name} tainted {taint}", change.at)
        for taint in sorted(taints_before - taints_after):
            self.say(f"node {name} no longer tainted {taint}", change.at)

    def _pod(self, change: Change) -> None:
        old, new = change.old, change.new
        pod = new or old
        assert pod is not None
        key, ident, belongs = pod_key(pod), uid(pod), owner(pod)
        pods = self.serving.setdefault(belongs, set())
        was = ident in pods
        if serving(new):
            pods.add(ident)
        else:
            pods.discard(ident)
        if was != (ident in pods):
            self._health(belongs, change.at)
        node = (new or {}).get("spec", {}).get("nodeName") or (old or {}).get("spec", {}).get(
            "nodeName", ""
        )
        if ident not in self.on_focus and ident not in self.replacements:
            if old is not None or new is None or belongs not in self.want:
                return
            self.replacements[ident] = Replacement(key, belongs, change.at, node)
            self.say(f"pod {key} created ({short(belongs)})", change.at)
        if ident in self.replacements:
            moved = self.replacements[ident]
            if node and not moved.node:
                moved.node = node
                self.say(f"pod {key} scheduled on {node}", change.at)
            if moved.ready is None and pod_ready(new):
                moved.ready = change.at
                self.say(f"pod {key} Ready on {node}", change.at)
        if new is None:
            self.gone[ident] = change.at
            self.say(f"pod {key} gone", change.at)
            return
        was_deleted = old is not None and old["metadata"].get("deletionTimestamp")
        if old is not None and not was_deleted and new["metadata"].get("deletionTimestamp"):
            self.terminating[ident] = change.at
            self.say(f"pod {key} marked for deletion (on {node})", change.at)
        if old is not None and ident in self.on_focus and pod_ready(old) != pod_ready(new):
            state = "Ready" if pod_ready(new) else "not Ready"
            self.say(f"pod {key} {state} (on {node})", change.at)

    def replaced(self) -> bool:
        """Every pod the drill evicted is gone, and each of their workloads has as many Ready
        new pods as it lost (a drain's evictions are over)."""
        lost: dict[str, int] = {}
        for ident in self.evicted:
            if ident not in self.gone:
                return False
            belongs = owner(self.on_focus[ident]) if ident in self.on_focus else ""
            lost[belongs] = lost.get(belongs, 0) + 1
        for belongs, count in lost.items():
            ready = sum(
                1 for m in self.replacements.values() if m.owner == belongs and m.ready is not None
            )
            if ready < count:
                return False
        return True

    # --- waiting -------------------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        """Follow the cluster for `seconds`, whatever happens."""
        self.live.until(lambda: False, time.monotonic() + seconds, self.seen)

    def whole(self) -> bool:
        if self.restored_at is None or self.live.open_outages():
            return False
        nodes = all(node_usable(self.live.get("Node", n)) for n in self.needs_ready)
        return nodes and all(self.healthy.values()) and all(c() for c in self.conditions)

    def wait_whole(self, timeout: float) -> bool:
        """Follow the cluster until it is whole (True) or `timeout` seconds pass (False)."""
        whole = self.live.until(self.whole, time.monotonic() + timeout, self.seen)
        if whole:
            self.whole_at = time.monotonic()
        return whole

    def act(self, text: str) -> None:
        """A line about what the drill does itself, after the changes seen so far (so the
        timeline stays in order)."""
        change = self.live.next(0)
        while change is not None:
            self.seen(change)
            change = self.live.next(0)
        self.say(text)

    def restored(self, text: str = "") -> None:
        """The fault is being undone (now): what heals from here on heals after the restore."""
        self.restored_at = time.monotonic()
        self.restored_wall = datetime.now(UTC)
        if text:
            self.act(text)

    # --- the verdict ---------------------------------------------------------------------------

    def explain(self, when: str) -> None:
        """Why each workload that is not Ready is not (`when`: while the fault lasted / at the end)."""
        for key, healthy in sorted(self.healthy.items()):
            if healthy:
                continue
            self.not_recovered.append({"when": when, "workload": key, "why": self.why(key)})

    def why(self, key: str) -> str:
        namespace, kind, name = key.split("/")
        obj = self.live.get(
            "StatefulSet" if kind == "statefulset" else "Deployment", name, namespace
        )
        want = self.want.get(key, 1)
        if obj is not None and wanted(obj) < want:
            return f"scaled to {wanted(obj)} (it wants {want} once restored)"
        pods = sorted(
            (p for p in self.live.all("Pod") if owner(p) == key),
            key=lambda p: (pod_ready(p), p["metadata"]["name"]),
        )
        for pod in pods:
            node = pod["spec"].get("nodeName", "")
            label = f"pod {pod['metadata']['name']}"
            if pod["metadata"].get("deletionTimestamp") and node in self.down_nodes:
                text = (
                    f"{label} stays Terminating on {node}: no kubelet there confirms the deletion"
                )
                if kind == "statefulset":
                    text += (
                        f"; a StatefulSet starts no second {pod['metadata']['name']} until the "
                        "first is gone (at most one pod per identity), so it waits for the node"
                    )
                return text + self.pinned(pod)
            if node in self.down_nodes and not pod_ready(pod):
                seconds = unreachable_toleration(pod)
                if seconds is None:
                    return (
                        f"{label} on {node} is not Ready, and it tolerates {UNREACHABLE} "
                        "without limit: it is never evicted"
                    )
                return (
                    f"{label} on {node} is not Ready and not yet evicted: it tolerates "
                    f"{UNREACHABLE} for {seconds}s after the node is tainted (every pod gets "
                    f"{DEFAULT_TOLERATION}s unless it says otherwise)" + self.pinned(pod)
                )
            if not node:
                return f"{label} is Pending: {_unschedulable(pod)}" + self.pinned(pod)
            if not pod_ready(pod):
                return f"{label} on {node} is not Ready"
        return f"{len(self.serving.get(key, ()))} of {want} pods Ready"

    def pinned(self, pod: dict[str, Any]) -> str:
        """`; its volume V is pinned to node N` for a claim bound to a node-local volume."""
        found = []
        namespace = pod["metadata"].get("namespace", "")
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            status, pvc = _kube.request(
                self.live.api,
                "GET",
                f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}",
            )
            name = (pvc.get("spec") or {}).get("volumeName") if status < 300 else None
            if not name:
                continue
            status, pv = _kube.request(self.live.api, "GET", f"/api/v1/persistentvolumes/{name}")
            nodes = _affinity_nodes(pv) if status < 300 else []
            if nodes:
                found.append(
                    f"its volume {name} (claim {claim}) is pinned to node {', '.join(nodes)}"
                )
        return "; " + "; ".join(found) if found else ""

    def finish(self, whole: bool) -> Recovery:
        if not whole:
            self.explain("at the end")
        workloads = []
        for key, lost in sorted(self.lost.items(), key=lambda item: item[1]):
            back = self.back.get(key) if self.healthy.get(key) else None
            healed = ""
            if back is not None:
                during = self.restored_at is None or back < self.restored_at
                healed = "during" if during else "after restore"
            workloads.append(
                Workload(key, lost - self.t0, None if back is None else back - self.t0, healed)
            )
        whole_after = None
        if whole:
            times = [w.back for w in workloads if w.back is not None]
            if self.fault_cleared_at is not None:
                times.append(self.fault_cleared_at - self.t0)
            if (self.needs_ready or self.conditions) and self.whole_at is not None:
                times.append(self.whole_at - self.t0)  # the nodes usable, the checks passing
            whole_after = max(times, default=0.0)
        if not whole:
            verdict = "not whole"
        elif self.blocked:
            verdict = "blocked"
        elif not workloads:
            verdict = "undisturbed"
        elif all(w.healed == "during" for w in workloads):
            verdict = "self-healed"
        else:
            verdict = "healed after restore"
        report = Recovery(
            self.name,
            self.target,
            self.provider,
            self.started,
            workloads=workloads,
            restored_after=None if self.restored_at is None else self.restored_at - self.t0,
            whole_after=whole_after,
            verdict=verdict,
            not_recovered=self.not_recovered,
            notes=self.notes,
        )
        report.evicted = sorted(
            pod_key(self.on_focus[ident]) for ident in self.terminating if ident in self.on_focus
        )
        latest: dict[str, Replacement] = {}
        count: dict[str, int] = {}
        lost_pods = {
            owner(self.on_focus[i]) for i in [*self.terminating, *self.gone] if i in self.on_focus
        }
        for moved in self.replacements.values():  # a pod name may come back more than once
            if moved.owner not in lost_pods and moved.owner not in self.lost:
                continue  # a scale-up (the HPA ...), not a pod replacing one that went
            latest[moved.pod] = moved
            count[moved.pod] = count.get(moved.pod, 0) + 1
        report.rescheduled = [
            {
                "pod": moved.pod,
                "workload": moved.owner,
                "node": moved.node,
                "ready_after_seconds": None
                if moved.ready is None
                else round(moved.ready - self.t0, 1),
                "times": count[moved.pod],
            }
            for moved in latest.values()
        ]
        report.connections = [
            {
                "watch": outage.kind,
                "lost_after_seconds": round(outage.lost - self.t0, 1),
                "reason": outage.reason,
                "back_after_seconds": None
                if outage.back is None
                else round(outage.back - self.t0, 1),
            }
            for outage in self.live.outages
            if outage.lost >= self.t0
        ]
        if self.unready_before:
            self.notes.append(
                "not Ready before the drill, so left out: "
                + ", ".join(short(k) for k in self.unready_before)
            )
        return report


def _taint(taint: dict[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key', '')}{value}:{taint.get('effect', '')}"


def short(key: str) -> str:
    parts = key.split("/")
    return f"{parts[1]} {parts[0]}/{parts[2]}" if len(parts) == 3 else key


def timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _unschedulable(pod: dict[str, Any]) -> str:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") != "True":
            return str(condition.get("message") or condition.get("reason") or "not scheduled yet")
    return "not scheduled yet"


def _affinity_nodes(pv: dict[str, Any]) -> list[str]:
    """The hostnames a PersistentVolume's node affinity allows (local and local-path volumes)."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms"
    ) or []
    nodes: list[str] = []
    for term in terms:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == "kubernetes.io/hostname" and expression.get("operator") in (
                "In",
                None,
            ):
                nodes += [str(v) for v in expression.get("values") or []]
    return nodes
