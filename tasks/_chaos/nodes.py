"""node-down and drain.

node-down, simulated cluster. KWOK is every node's kubelet, and a node is KWOK's while KWOK
holds the node's Lease (kube-node-lease/<node>). The drill takes the lease (another holder, the
renew time left where KWOK last put it): from then on KWOK neither reports for the node nor
touches its pods, as with a dead kubelet. The node lifecycle controller would notice only after
its node-monitor-grace-period (kwokctl runs it with 3m20s), so the drill marks the node as the
controller then would — Ready/MemoryPressure/DiskPressure/PIDPressure Unknown, "Kubelet stopped
posting node status.", and its pods not Ready — and from there the real controller-manager
acts: it taints the node node.kubernetes.io/unreachable (NoExecute at its next
node-monitor-period, 25 s), evicts each pod once its toleration of that taint runs out (300 s
unless the pod says otherwise), and the ReplicaSet/StatefulSet controllers and the scheduler
replace them elsewhere. Evicted pods stay Terminating: no kubelet confirms their end. KWOK's
cache of the lease can lag behind, so the drill also annotates the node and its pods with the
annotation KWOK is told to disregard (clusters made by cluster.create): KWOK leaves them alone
whatever its cache says.
Coming back, the drill plays the returning kubelet: the lease back to KWOK, the node's
conditions as they were, its pods Ready again, its Terminating pods' deletion confirmed. The
node carries an annotation with what to put back, so a drill that was killed outright is
restored by the next node-down.

node-down, k3d: `docker stop` of the node's container (the real kubelet goes), `docker start`
to bring it back; the controller-manager does the rest on its own timing.

drain: cordon, evict every pod through the Eviction API (PodDisruptionBudgets decide; a
refused eviction is retried until --timeout, then reported), wait until the evicted pods'
workloads are whole elsewhere, uncordon.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core.target import Target
from .._kube import client as _kube
from . import drills as _drills
from .live import Live
from .report import Recovery
from .undo import Undo, restoring

# On the node: what to put back. On the node and its pods: KWOK's disregard selector on a
# cluster made by cluster.create (_providers/kwok.py, DISREGARDED, the same key).
ANNOTATION = "prism-tasks.chaos/node-down"
HOLDER = "prism-tasks-chaos"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
CONTROL_PLANE = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

Say = Callable[[str], None]


def _now(micro: bool = False) -> str:
    stamp = datetime.now(UTC)
    if micro:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ok(answer: tuple[int, dict[str, Any]], what: str, missing_ok: bool = False) -> dict[str, Any]:
    status, body = answer
    if status == 404 and missing_ok:
        return {}
    if status >= 300:
        raise Exit(f"cannot {what}: {body.get('message', status)}", code=1)
    return body


# --- choosing the node ------------------------------------------------------------------------


def nodes(api: Any) -> list[dict[str, Any]]:
    return _kube.items(api, "/api/v1/nodes", "", "Node")


def is_control_plane(node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    return any(label in labels for label in CONTROL_PLANE)


def choose(api: Any, name: str | None, pick_random: bool) -> dict[str, Any]:
    """The node to act on: the one named, or a random Ready agent; one line when none fits."""
    found = nodes(api)
    names = sorted(n["metadata"]["name"] for n in found)
    if pick_random:
        agents = [
            n
            for n in found
            if not is_control_plane(n)
            and _drills.node_ready(n) == "True"
            and not n["spec"].get("unschedulable")
            and ANNOTATION not in (n["metadata"].get("annotations") or {})
        ]
        if not agents:
            raise Exit(
                f"no Ready agent node to take down (nodes: {', '.join(names) or 'none'}); "
                "a server node's loss is `inv chaos.api-restart`",
                code=1,
            )
        return random.choice(agents)
    for node in found:
        if node["metadata"]["name"] == name:
            return node
    raise Exit(f"no node {name!r} in the cluster; choose one of: {', '.join(names)}", code=1)


def pods_on(api: Any, node: str) -> list[dict[str, Any]]:
    status, found = _kube.request(
        api, "GET", "/api/v1/pods", [("fieldSelector", f"spec.nodeName={node}")]
    )
    if status >= 300:
        raise Exit(f"cannot list the pods on {node}: {found.get('message', status)}", code=1)
    return [{"kind": "Pod", **p} for p in found.get("items") or []]


def _describe(pod: dict[str, Any]) -> str:
    belongs = _drills.owner(pod)
    return f"{_drills.pod_key(pod)} ({_drills.short(belongs) if belongs else 'no controller'})"


# --- node-down on the simulated cluster --------------------------------------------------------


class KwokNode:
    """The dead-kubelet fault of one simulated node (see the module's docstring)."""

    def __init__(self, api: Any, name: str, record: dict[str, Any] | None = None) -> None:
        self.api, self.name = api, name
        record = record or {}
        self.holder: str | None = record.get("holder")
        self.duration: int | None = record.get("duration")
        self.conditions: list[dict[str, Any]] = list(record.get("conditions") or [])
        self.marked: list[str] = list(record.get("marked") or [])
        self.annotated = bool(record)
        self.marked_at = 0.0  # time.monotonic() of the last mark()

    @property
    def lease_path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"

    def lease(self) -> dict[str, Any]:
        return _ok(
            _kube.request(self.api, "GET", self.lease_path), "read the lease", missing_ok=True
        )

    def describe(self, seconds: int) -> list[str]:
        return [
            f"take the lease kube-node-lease/{self.name} from KWOK (for {seconds}s): nothing "
            "reports for the node or its pods any more",
            f"mark node {self.name} Ready=Unknown and its pods not Ready, as the node lifecycle "
            "controller marks a node whose kubelet stopped posting status",
            "give the lease back, put the node's conditions back and its pods Ready, and "
            "confirm the deletion of pods evicted meanwhile (the kubelet coming back)",
        ]

    def stop(self, seconds: int) -> None:
        lease = _ok(
            _kube.request(self.api, "GET", self.lease_path), f"read the lease of node {self.name}"
        )
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") == HOLDER:
            raise Exit(f"node {self.name}'s lease is held by another drill already", code=1)
        node = _ok(_kube.request(self.api, "GET", f"/api/v1/nodes/{self.name}"), "read the node")
        self.holder = str(spec.get("holderIdentity") or "")
        self.duration = int(spec.get("leaseDurationSeconds") or 40)
        self.conditions = [
            c for c in (node.get("status") or {}).get("conditions") or [] if c["type"] in CONDITIONS
        ]
        self._annotate()
        renewed = _drills.timestamp(spec.get("renewTime")) or datetime.now(UTC)
        age = max(0, int((datetime.now(UTC) - renewed).total_seconds()))
        # Long enough for the drill, short enough that KWOK takes the node back by itself
        # should this process be killed outright; the renew time stays as KWOK left it (a
        # renewal would be a heartbeat to the node lifecycle controller).
        patch = {"spec": {"holderIdentity": HOLDER, "leaseDurationSeconds": age + seconds + 60}}
        _ok(
            _kube.request(self.api, "PATCH", self.lease_path, body=patch, content_type=MERGE),
            f"take the lease of node {self.name}",
        )

    def quiet_for(self) -> float:
        """Seconds since the node was last marked down."""
        return time.monotonic() - self.marked_at

    def mark(self) -> list[str]:
        """Node Unknown and its pods not Ready, as the node lifecycle controller writes them."""
        self.marked_at = time.monotonic()
        now = _now()
        conditions = [
            {
                "type": kind,
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastTransitionTime": now,
            }
            for kind in CONDITIONS
        ]
        self._report(conditions, f"mark node {self.name} Unknown")
        marked = []
        for pod in pods_on(self.api, self.name):
            if ANNOTATION not in (pod["metadata"].get("annotations") or {}):
                self._disregard(pod, True)
            if pod["metadata"].get("deletionTimestamp") or not _drills.pod_ready(pod):
                continue
            key = _drills.pod_key(pod)
            if key not in self.marked:
                self.marked.append(key)
            self._pod_ready(pod, False)
            marked.append(key)
        self._annotate()
        return marked

    def _report(self, conditions: list[dict[str, Any]], what: str) -> None:
        """Write the node's conditions, as its kubelet would."""
        _ok(
            _kube.request(
                self.api,
                "PATCH",
                f"/api/v1/nodes/{self.name}/status",
                body={"status": {"conditions": conditions}},
                content_type=STRATEGIC,
            ),
            what,
        )

    def restore(self) -> str:
        if self.holder is None:
            self._unannotate()
            return "nothing had changed yet"
        lease = _ok(
            _kube.request(self.api, "GET", self.lease_path), "read the lease", missing_ok=True
        )
        if (lease.get("spec") or {}).get("holderIdentity") == HOLDER:  # else KWOK has it back
            renew = {
                "spec": {
                    "holderIdentity": self.holder,
                    "leaseDurationSeconds": self.duration,
                    "renewTime": _now(micro=True),
                }
            }
            _ok(
                _kube.request(self.api, "PATCH", self.lease_path, body=renew, content_type=MERGE),
                f"give the lease of node {self.name} back to KWOK",
                missing_ok=True,  # KWOK recreates a lease that is gone
            )
        now = _now()
        conditions = [
            {**c, "lastHeartbeatTime": now, "lastTransitionTime": now} for c in self.conditions
        ]
        if conditions:
            self._report(conditions, f"report node {self.name} Ready again")
        confirmed = ready = 0
        for pod in pods_on(self.api, self.name):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                _kube.request(self.api, "DELETE", _pod_path(pod), body={"gracePeriodSeconds": 0})
                confirmed += 1
                continue
            if _drills.pod_key(pod) in self.marked and not _drills.pod_ready(pod):
                self._pod_ready(pod, True)
                ready += 1
            if ANNOTATION in (meta.get("annotations") or {}):
                self._disregard(pod, False)
        self._unannotate()
        return (
            f"KWOK reports for node {self.name} again; {ready} pod(s) Ready again, "
            f"{confirmed} evicted pod(s) confirmed gone"
        )

    def _pod_ready(self, pod: dict[str, Any], ready: bool) -> None:
        condition = {"type": "Ready", "status": str(ready), "lastTransitionTime": _now()}
        self._patch_pod(pod, {"status": {"conditions": [condition]}}, "update", "/status")

    def _disregard(self, pod: dict[str, Any], on: bool) -> None:
        """The node's annotation on one of its pods too: a cluster made by cluster.create runs
        KWOK with this annotation as its disregard selector (_providers/kwok.py, DISREGARDED),
        so KWOK leaves the pod alone — it confirms no eviction, as no dead kubelet does — even
        while its cache of the node's lease still names it."""
        body = {"metadata": {"annotations": {ANNOTATION: self.name if on else None}}}
        self._patch_pod(pod, body, "annotate")

    def _patch_pod(
        self, pod: dict[str, Any], body: dict[str, Any], what: str, subresource: str = ""
    ) -> None:
        """One patch of a pod of the node; a pod gone meanwhile is no error."""
        path = _pod_path(pod) + subresource
        status, answer = _kube.request(self.api, "PATCH", path, body=body, content_type=STRATEGIC)
        if status >= 300 and status != 404:
            name = pod["metadata"]["name"]
            raise Exit(f"cannot {what} pod {name}: {answer.get('message', status)}", code=1)

    def _annotate(self) -> None:
        record = {
            "holder": self.holder,
            "duration": self.duration,
            "conditions": self.conditions,
            "marked": self.marked,
        }
        body = {"metadata": {"annotations": {ANNOTATION: json.dumps(record)}}}
        _ok(
            _kube.request(
                self.api, "PATCH", f"/api/v1/nodes/{self.name}", body=body, content_type=MERGE
            ),
            f"annotate node {self.name}",
        )
        self.annotated = True

    def _unannotate(self) -> None:
        if not self.annotated:
            return
        body = {"metadata": {"annotations": {ANNOTATION: None}}}
        _kube.request(
            self.api, "PATCH", f"/api/v1/nodes/{self.name}", body=body, content_type=MERGE
        )
        self.annotated = False


def _pod_path(pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"


def held_until(lease: dict[str, Any]) -> datetime | None:
    """When a drill's hold on a lease runs out; None when no drill holds it (any more)."""
    spec = lease.get("spec") or {}
    renewed = _drills.timestamp(spec.get("renewTime"))
    if spec.get("holderIdentity") != HOLDER or renewed is None:
        return None
    until = renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    return until if until > datetime.now(UTC) else None


def left_down(api: Any, say: Say) -> None:
    """Restore simulated nodes that a drill killed outright left down (their annotation)."""
    for node in nodes(api):
        text = (node["metadata"].get("annotations") or {}).get(ANNOTATION)
        if not text:
            continue
        name = node["metadata"]["name"]
        try:
            record = json.loads(text)
        except ValueError:
            record = {}
        if not isinstance(record, dict) or not record.get("holder"):
            continue
        lease = KwokNode(api, name).lease()
        until = held_until(lease)
        if until is not None:
            say(
                f"node {name} is down by a drill still under way (until {until:%H:%M:%S}); left alone"
            )
            continue
        said = KwokNode(api, name, record).restore()
        say(f"node {name} was left down by a drill that did not finish: restored ({said})")


# --- node-down on k3d ---------------------------------------------------------------------------


class DockerNode:
    """A k3d node is a Docker container named like the node: stop it, start it."""

    def __init__(self, c: Context, name: str) -> None:
        self.c, self.name = c, name
        self.stop_argv = ["docker", "stop", name]
        self.start_argv = ["docker", "start", name]

    def describe(self, seconds: int) -> list[str]:
        return [
            " ".join(self.stop_argv)
            + f"   (the node's kubelet and containers stop, for {seconds}s)",
            " ".join(self.start_argv),
        ]

    def stop(self, seconds: int) -> None:
        _command.run(self.c, self.stop_argv, hide=True)

    def mark(self) -> list[str]:
        return []  # the real node lifecycle controller notices the silence by itself

    def restore(self) -> str:
        _command.run(self.c, self.start_argv, hide=True)
        return f"container {self.name} started"


def k3d_node(c: Context, t: Target, node: dict[str, Any]) -> DockerNode:
    from .._providers import k3d as _k3d

    name = node["metadata"]["name"]
    containers = {n.get("name"): n for n in _k3d.nodes(c, t.name)}
    if name not in containers:
        raise Exit(
            f"node {name} is not a container of k3d cluster {t.name} "
            f"(its containers: {', '.join(sorted(str(n) for n in containers))})",
            code=1,
        )
    return DockerNode(c, name)


# --- the drills ---------------------------------------------------------------------------------


def node_down(
    c: Context,
    api: Any,
    t: Target,
    name: str | None,
    pick_random: bool,
    seconds: int,
    timeout: int,
    say: Say,
    dry: bool,
) -> Recovery | None:
    if t.provider == "context":
        raise Exit(
            "chaos.node-down stops a node, and the nodes of a cluster this project did not "
            "create are not its to stop; chaos.drain and chaos.backend-outage work through the API",
            code=1,
        )
    if t.provider == "kwok" and not dry:
        left_down(api, say)
    node = choose(api, name, pick_random)
    name = str(node["metadata"]["name"])
    if is_control_plane(node):
        raise Exit(
            f"node {name} is a server (control-plane) node: stopping it stops the API server; "
            "`inv chaos.api-restart` is that drill",
            code=1,
        )
    if ANNOTATION in (node["metadata"].get("annotations") or {}) and dry:
        say(
            f"note: node {name} carries {ANNOTATION}: a drill left it down; the real run restores it first"
        )
    elif _drills.node_ready(node) != "True":
        raise Exit(
            f"node {name} is not Ready now; a drill needs a healthy node to take down", code=1
        )
    fault: KwokNode | DockerNode = (
        KwokNode(api, name) if t.provider == "kwok" else k3d_node(c, t, node)
    )
    pods = [p for p in pods_on(api, name) if not p["metadata"].get("deletionTimestamp")]
    tolerations = _tolerations(pods)
    if dry:
        say(f"would take node {name} down for {seconds}s ({t.provider}), then bring it back:")
        for step in fault.describe(seconds):
            say(f"  {step}")
        say(f"pods on it ({len(pods)}), which the node lifecycle controller evicts after:")
        for pod in pods:
            say(f"  {_describe(pod)}: {_toleration_text(_drills.unreachable_toleration(pod))}")
        return None
    say(f"node-down {name} ({t.provider}) for {seconds}s; {len(pods)} pod(s) on it")
    _drills.await_leaders(api, say)
    with Live(api) as live:
        drill = _drills.Drill("node-down", name, t.provider, live, say, focus={name})
        drill.notes.append(
            "eviction timing: the node lifecycle controller taints an unreachable node "
            "node.kubernetes.io/unreachable:NoExecute, and each pod is evicted when its "
            "toleration of that taint runs out (" + tolerations + ")"
        )
        with restoring("node-down", Undo(), say) as undo:
            undo.push(f"node {name}", fault.restore)
            drill.act(f"node {name} stops reporting ({_how_stopped(t)})")
            fault.stop(seconds)
            drill.down_nodes.add(name)
            if isinstance(fault, KwokNode):
                drill.act(
                    f"marking node {name} Unknown and its pods not Ready, as the node "
                    "lifecycle controller does once a node stops reporting"
                )
                fault.mark()
                drill.hooks.append(_keep_down(drill, fault, name))
                _until_kwok_lets_go(drill, fault, name)
            drill.wait(seconds - drill.elapsed())
            drill.explain("while the node was down")
            drill.act(f"node {name} comes back ({_how_back(t)})")
            drill.restored()  # from here on, what heals heals after the restore
            undo.run(f"node {name}")
            drill.down_nodes.discard(name)
            drill.needs_ready.add(name)
        whole = drill.wait_whole(timeout)
        if whole:
            drill.say("whole: every workload Ready again, the node Ready")
        return drill.finish(whole)


# KWOK answers a node that is not Ready at once while it still acts for the node (its
# node-initialize stage reports it Ready again). It stops when its cache of the node's Lease
# shows the drill as holder; that cache follows a watch of its own, which can lag behind the
# node's (seconds, on a busy machine). Until it has caught up KWOK would also confirm the
# deletion of the pods the controller-manager evicts, which no dead kubelet does. So the drill
# waits for a mark that holds: QUIET seconds without KWOK reporting the node Ready again.
QUIET = 3.0
KWOK_PATIENCE = 30.0


def _until_kwok_lets_go(drill: _drills.Drill, fault: KwokNode, name: str) -> None:
    deadline = time.monotonic() + KWOK_PATIENCE
    if not drill.live.until(lambda: fault.quiet_for() >= QUIET, deadline, drill.seen):
        raise Exit(
            f"KWOK still reports node {name} Ready {KWOK_PATIENCE:.0f}s after the drill took "
            "its lease, so the node cannot be taken down here; the drill stops (the node is "
            "put back). Check the kwok process of the cluster (`inv cluster.status`)",
            code=1,
        )


def _keep_down(drill: _drills.Drill, fault: KwokNode, name: str) -> Callable[[Any], None]:
    """KWOK may still report the node Ready before it has seen the drill take its lease (see
    QUIET); a dead kubelet sends nothing, so the node is marked down again (and the report
    says so)."""

    def hook(change: Any) -> None:
        if drill.restored_at is not None or name not in drill.down_nodes:
            return
        if change.kind == "Pod":
            _confirmed_while_down(drill, fault, change)
            return
        if change.kind != "Node":
            return
        node = change.new or {}
        revived = _drills.node_ready(change.old) != "True" and _drills.node_ready(node) == "True"
        if node.get("metadata", {}).get("name") == name and revived:
            fault.mark()
            drill.notes.append(
                "KWOK reported the node Ready before it had seen the drill take its lease; "
                "marked the node down again"
            )

    return hook


def _confirmed_while_down(drill: _drills.Drill, fault: KwokNode, change: Any) -> None:
    """A pod of the down node whose end was confirmed: no dead kubelet does that, so somebody
    force-deleted it or the node still reported. The report says so, with the lease's holder
    then, rather than show the pod's replacement as if the node's loss alone had made it."""
    pod = change.old or {}
    if change.new is not None or (pod.get("spec") or {}).get("nodeName") != fault.name:
        return
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return  # a finished pod's deletion needs no kubelet
    holder = (fault.lease().get("spec") or {}).get("holderIdentity") or "nobody"
    text = (
        f"pod {_drills.pod_key(pod)} was deleted outright while node {fault.name} was down "
        f"(lease held by {holder}): no dead kubelet confirms a deletion, so it was force-deleted "
        "or the node still reported"
    )
    drill.say(text, change.at)
    drill.notes.append(text)


def _how_stopped(t: Target) -> str:
    if t.provider == "kwok":
        return "its lease taken from KWOK: no heartbeats, nothing reported for its pods"
    return "its container stopped: the kubelet is gone"


def _how_back(t: Target) -> str:
    if t.provider == "kwok":
        return (
            "the kubelet returning: the lease back to KWOK, the node's conditions as they were, "
            "its pods Ready, its evicted pods' deletion confirmed"
        )
    return "its container started"


def _tolerations(pods: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for pod in pods:
        text = _toleration_text(_drills.unreachable_toleration(pod))
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(f"{n} pod(s): {text}" for text, n in sorted(counts.items())) or "no pods"


def _toleration_text(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return "at once" if seconds == 0 else f"{seconds}s"


# --- drain --------------------------------------------------------------------------------------


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector:
        return False  # policy/v1: an empty selector of a PDB matches nothing
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def budgets(api: Any, pod: dict[str, Any], pdbs: list[dict[str, Any]]) -> list[str]:
    labels = pod["metadata"].get("labels") or {}
    return [
        f"{p['metadata']['namespace']}/{p['metadata']['name']} "
        f"(allows {(p.get('status') or {}).get('disruptionsAllowed', '?')} disruption(s) now)"
        for p in pdbs
        if p["metadata"]["namespace"] == pod["metadata"]["namespace"]
        and matches((p.get("spec") or {}).get("selector"), labels)
    ]


def drain_plan(api: Any, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The pods to evict, and what is skipped (DaemonSet and mirror pods, finished pods)."""
    to_evict, skipped, bare = [], [], []
    for pod in pods_on(api, name):
        meta = pod["metadata"]
        kinds = [r.get("kind") for r in meta.get("ownerReferences") or [] if r.get("controller")]
        if "DaemonSet" in kinds:
            skipped.append(f"{_drills.pod_key(pod)} (DaemonSet: it stays, as with kubectl drain)")
        elif "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            skipped.append(f"{_drills.pod_key(pod)} (static pod)")
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            skipped.append(f"{_drills.pod_key(pod)} (finished)")
        elif meta.get("deletionTimestamp"):
            skipped.append(f"{_drills.pod_key(pod)} (being deleted already)")
        elif not kinds:
            bare.append(_drills.pod_key(pod))
        else:
            to_evict.append(pod)
    if bare:
        raise Exit(
            f"cannot drain node {name}: pod(s) {', '.join(bare)} have no controller, so an "
            "evicted one would be gone for good; delete them first",
            code=1,
        )
    return to_evict, skipped


def drain(
    c: Context, api: Any, t: Target, name: str, timeout: int, say: Say, dry: bool
) -> Recovery | None:
    node = choose(api, name, False)
    cordoned = bool(node["spec"].get("unschedulable"))
    to_evict, skipped = drain_plan(api, name)
    pdbs = _kube.items(api, "/apis/policy/v1/poddisruptionbudgets", "", "PodDisruptionBudget")
    if dry:
        state = "already cordoned: left so" if cordoned else "cordon it"
        say(f"would drain node {name} ({state}), evict {len(to_evict)} pod(s), then uncordon:")
        for pod in to_evict:
            covered = budgets(api, pod, pdbs)
            guard = f"; PodDisruptionBudget {', '.join(covered)}" if covered else ""
            say(f"  evict {_describe(pod)}{guard}")
        for line in skipped:
            say(f"  skip {line}")
        return None
    say(
        f"drain {name}: {len(to_evict)} pod(s) to evict"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    _drills.await_leaders(api, say)
    with Live(api) as live:
        drill = _drills.Drill("drain", name, t.provider, live, say, focus={name})
        with restoring("drain", Undo(), say) as undo:
            if not cordoned:
                undo.push(f"node {name} schedulable", lambda: _cordon(api, name, False))
                drill.act(f"cordoning node {name}")
                _cordon(api, name, True)
            else:
                drill.notes.append(f"node {name} was cordoned before the drill and is left so")
            deadline = time.monotonic() + timeout
            pending = _evict_all(api, drill, to_evict, pdbs, deadline)
            if pending:
                drill.blocked = True
                for pod, reason in pending.values():
                    drill.not_recovered.append(
                        {"when": "at --timeout", "workload": _drills.owner(pod), "why": reason}
                    )
            # evictions done: wait until their workloads are whole elsewhere, still cordoned
            drill.live.until(
                lambda: drill.replaced() and all(drill.healthy.values()),
                max(deadline, time.monotonic() + 1),
                drill.seen,
            )
            drill.explain("while the node was cordoned")
            if not cordoned:
                drill.act(f"uncordoning node {name}")
                drill.restored()
                undo.run(f"node {name} schedulable")
            else:
                drill.restored(f"node {name} left cordoned, as it was")
        whole = drill.wait_whole(timeout)
        if whole:
            drill.say("whole: every workload Ready again")
        return drill.finish(whole)


def _cordon(api: Any, name: str, on: bool) -> str:
    _ok(
        _kube.request(
            api,
            "PATCH",
            f"/api/v1/nodes/{name}",
            body={"spec": {"unschedulable": True if on else None}},
            content_type=MERGE,
        ),
        f"{'cordon' if on else 'uncordon'} node {name}",
    )
    return "" if on else "uncordoned"


def _evict_all(
    api: Any,
    drill: _drills.Drill,
    to_evict: list[dict[str, Any]],
    pdbs: list[dict[str, Any]],
    deadline: float,
) -> dict[str, tuple[dict[str, Any], str]]:
    """Evict every pod, retrying refused ones (once a second, and whenever the cluster
    changes) until the deadline; returns {pod key: (pod, why)} for those never evicted."""
    pending = {_drills.pod_key(p): p for p in to_evict}
    blocked_since: dict[str, float] = {}
    reasons: dict[str, str] = {}
    while pending:
        for key, pod in list(pending.items()):
            meta = pod["metadata"]
            body = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            }
            status, answer = _kube.request(api, "POST", _pod_path(pod) + "/eviction", body=body)
            if status < 300 or status == 404:
                del pending[key]
                if status < 300:  # it goes now; one already gone is not waited for
                    drill.evicted.add(str(meta.get("uid", "")))
                waited = ""
                if key in blocked_since:
                    waited = f" (after {time.monotonic() - blocked_since[key]:.1f}s blocked)"
                drill.say(
                    f"evicted pod {key}{waited}" if status < 300 else f"pod {key} gone already"
                )
            elif status == 429:
                message = _cause(answer)
                covered = budgets(api, pod, pdbs) or ["a PodDisruptionBudget"]
                reasons[key] = f"eviction refused: {message} ({', '.join(covered)})"
                if key not in blocked_since:
                    blocked_since[key] = time.monotonic()
                    drill.act(f"eviction of {key} refused: {message}; retrying until --timeout")
            else:
                raise Exit(f"cannot evict pod {key}: {answer.get('message', status)}", code=1)
        if not pending:
            break
        if time.monotonic() >= deadline:
            for key in pending:
                held = time.monotonic() - blocked_since.get(key, time.monotonic())
                reasons[key] += f"; still refused after {held:.0f}s"
            return {key: (pending[key], reasons[key]) for key in pending}
        # try again when something changes (a replacement Ready frees the budget) or in 1 s
        change = drill.live.next(min(1.0, deadline - time.monotonic()))
        while change is not None:
            drill.seen(change)
            change = drill.live.next(0)
    return {}


def _cause(answer: dict[str, Any]) -> str:
    causes = (answer.get("details") or {}).get("causes") or []
    for cause in causes:
        if cause.get("message"):
            return str(cause["message"])
    return str(answer.get("message", "refused"))
