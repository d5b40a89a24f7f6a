"""The guide's troubleshooting section, run instead of read (guide correction 15 and 19): each check
looks at the cluster's objects and returns findings, one line each, with the fix.

The checks are plain functions of the objects (`kubectl get -o json`), so they can be tested on
hand-made objects; `gather` fetches them and `run_all` puts both together.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from invoke import Context

from .._core import target as _target
from .._core.target import Target

OK, WARNING, PROBLEM, SKIPPED = "ok", "warning", "problem", "skipped"
# How each severity's line looks on a terminal (tasks/_core/output.py).
STYLES = {OK: "green", WARNING: "yellow", PROBLEM: "bold red", SKIPPED: "dim"}

# Where the stack runs (the guide's namespaces); observability joins them for pods and claims.
STACK_NAMESPACES = ("prism", "prism-backends")
METRICS_API = "v1beta1.metrics.k8s.io"
PULL_ERRORS = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"}
DNS_NAME = "prism-admin.prism.svc.cluster.local"
FALLBACK_DNS_NAME = "kubernetes.default.svc.cluster.local"
DNS_TIMEOUT = 180  # seconds: the first run may pull the image


class Finding(NamedTuple):
    severity: str
    subject: str  # what it is about: a check's name, or an object (prism/pvc/data)
    detail: str
    fix: str = ""
    check: str = ""  # the check that found it; `run_all` fills it in

    def line(self) -> str:
        """One line, always: messages from the cluster may carry newlines."""
        fix = f"; fix: {' '.join(self.fix.split())}" if self.fix else ""
        return f"{self.severity:<8} {self.subject}: {' '.join(self.detail.split())}{fix}"

    def as_json(self) -> dict[str, Any]:
        """The finding for `observe.check --json`: the line's parts, whitespace collapsed."""
        return {
            "severity": self.severity,
            "check": self.check,
            "subject": self.subject,
            "message": " ".join(self.detail.split()),
            "fix": " ".join(self.fix.split()) or None,
        }


def document(cluster: str, findings: list[Finding]) -> dict[str, Any]:
    """`observe.check --json`: keys in a fixed order; README lists them."""
    return {
        "cluster": cluster,
        "findings": [f.as_json() for f in findings],
        "problems": sum(f.severity == PROBLEM for f in findings),
        "warnings": sum(f.severity == WARNING for f in findings),
    }


@dataclass
class Snapshot:
    """The objects the checks read: namespace -> kind -> items, plus cluster-scoped ones."""

    provider: str
    namespaced: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    cluster: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def items(self, kind: str, namespaces: Iterable[str] | None = None) -> list[dict[str, Any]]:
        if namespaces is None:
            return self.cluster.get(kind, [])
        return [i for ns in namespaces for i in self.namespaced.get(ns, {}).get(kind, [])]


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata", {})


def _ref(obj: dict[str, Any], kind: str) -> str:
    return f"{_meta(obj).get('namespace', '')}/{kind}/{_meta(obj).get('name', '')}"


def _kubectl_hint(t: Target, *args: str) -> str:
    return "`" + shlex.join(["kubectl", *_target.kube_flags(t), *args]) + "`"


def _events_for(snap: Snapshot, obj: dict[str, Any], kind: str, reasons: set[str]) -> list[str]:
    """Messages of the object's events with one of `reasons`, oldest first."""
    meta = _meta(obj)
    found = [
        e
        for e in snap.items("Event", [meta.get("namespace", "")])
        if e.get("involvedObject", {}).get("kind") == kind
        and e.get("involvedObject", {}).get("name") == meta.get("name")
        and e.get("reason") in reasons
    ]
    found.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [" ".join(str(e.get("message", "")).split()) for e in found]


# --- metrics-server (guide correction 10, 15) -------------------------------------------------------


def metrics_server(snap: Snapshot, t: Target) -> list[Finding]:
    """Without the metrics API the HorizontalPodAutoscaler never scales."""
    hpas = snap.items("HorizontalPodAutoscaler", STACK_NAMESPACES)
    api = next((a for a in snap.items("APIService") if _meta(a).get("name") == METRICS_API), None)
    deployment = next(
        (
            d
            for d in snap.items("Deployment", ["kube-system"])
            if _meta(d).get("name") == "metrics-server"
        ),
        None,
    )
    subject = "metrics-server"
    hpa_note = (
        f"the HPA {', '.join(_meta(h)['name'] for h in hpas)} never scales"
        if hpas
        else "an HPA (deploy.autoscaling) would never scale"
    )
    if api is None:
        if snap.provider == "kwok":
            return [
                Finding(
                    WARNING,
                    subject,
                    f"no {METRICS_API} API on the simulated cluster (kwok runs no containers, "
                    f"so there are no metrics); {hpa_note}",
                    "expected here; on k3d, metrics-server ships with k3s",
                )
            ]
        return [
            Finding(
                PROBLEM if hpas else WARNING,
                subject,
                f"not installed (no APIService {METRICS_API}"
                f"{', no deployment kube-system/metrics-server' if deployment is None else ''}); "
                f"{hpa_note}",
                "k3s ships it unless started with --disable=metrics-server: recreate the "
                "cluster with `inv cluster.create`, which never disables it",
            )
        ]
    available = [
        cond
        for cond in api.get("status", {}).get("conditions", [])
        if cond.get("type") == "Available"
    ]
    if available and available[0].get("status") == "True":
        return [Finding(OK, subject, f"{METRICS_API} is available; the HPA gets its metrics")]
    why = available[0].get("message", "not Available") if available else "no Available condition"
    return [
        Finding(
            PROBLEM if hpas else WARNING,
            subject,
            f"{METRICS_API} is not available ({why}); {hpa_note}",
            _kubectl_hint(t, "-n", "kube-system", "logs", "deployment/metrics-server"),
        )
    ]


# --- Services without ready endpoints (guide: "Services not accessible") --------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def endpoints(snap: Snapshot, t: Target) -> list[Finding]:
    findings = []
    checked = 0
    slices = snap.items("EndpointSlice", STACK_NAMESPACES)
    for service in snap.items("Service", STACK_NAMESPACES):
        meta, spec = _meta(service), service.get("spec", {})
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName":
            continue  # endpoints managed by hand: nothing to compare with
        checked += 1
        ready = [
            endpoint
            for s in slices
            if _meta(s).get("namespace") == meta["namespace"]
            and _meta(s).get("labels", {}).get("kubernetes.io/service-name") == meta["name"]
            for endpoint in s.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready", True)
        ]
        if ready:
            continue
        pods = [
            p
            for p in snap.items("Pod", [meta["namespace"]])
            if _matches(selector, _meta(p).get("labels", {}))
        ]
        shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        if not pods:
            detail = f"no ready endpoints: no pod matches the selector {shown}"
            fix = "deploy it (`inv deploy.all`) or correct the Service's selector"
        else:
            names = ", ".join(_meta(p)["name"] for p in pods[:3])
            detail = f"no ready endpoints: {len(pods)} pod(s) match {shown}, none ready ({names})"
            fix = "see why: " + _kubectl_hint(
                t, "-n", meta["namespace"], "describe", "pod", _meta(pods[0])["name"]
            )
        findings.append(Finding(PROBLEM, _ref(service, "svc"), detail, fix))
    if not findings:
        where = ", ".join(STACK_NAMESPACES)
        findings.append(
            Finding(OK, "endpoints", f"{checked} Service(s) in {where} have ready endpoints")
        )
    return findings


# --- claims (guide: "Persistent volume issues") -----------------------------------------------


def _default_class(classes: list[dict[str, Any]]) -> str | None:
    for sc in classes:
        annotations = _meta(sc).get("annotations", {})
        if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
            return str(_meta(sc)["name"])
    return None


def claims(snap: Snapshot, t: Target, namespaces: tuple[str, ...]) -> list[Finding]:
    classes = {_meta(sc)["name"]: sc for sc in snap.items("StorageClass")}
    have = ", ".join(sorted(classes)) or "none"
    findings = []
    pvcs = snap.items("PersistentVolumeClaim", namespaces)
    for pvc in pvcs:
        phase = pvc.get("status", {}).get("phase", "Pending")
        if phase == "Bound":
            continue
        meta, subject = _meta(pvc), _ref(pvc, "pvc")
        named = pvc.get("spec", {}).get("storageClassName")
        name = named if named is not None else _default_class(list(classes.values()))
        describe = _kubectl_hint(t, "-n", meta["namespace"], "describe", "pvc", meta["name"])
        if phase == "Lost":
            findings.append(
                Finding(PROBLEM, subject, "Lost: its PersistentVolume is gone", describe)
            )
        elif name is None:
            findings.append(
                Finding(
                    PROBLEM,
                    subject,
                    f"{phase}: no storageClassName and no default storage class (have: {have})",
                    "set storageClassName: local-storage (`inv deploy.foundation` creates it)",
                )
            )
        elif name not in classes:
            findings.append(
                Finding(
                    PROBLEM,
                    subject,
                    f"{phase}: storage class {name!r} does not exist (have: {have})",
                    f"use an existing class (the stack's is local-storage, created by "
                    f"`inv deploy.foundation`) or create {name!r}",
                )
            )
        elif classes[name].get("volumeBindingMode") == "WaitForFirstConsumer" and not _used(
            snap, pvc
        ):
            findings.append(
                Finding(
                    WARNING,
                    subject,
                    f"{phase}: class {name} binds a claim only once a pod uses it, and none does",
                    "nothing to do unless a workload should mount it",
                )
            )
        else:
            events = _events_for(
                snap, pvc, "PersistentVolumeClaim", {"ProvisioningFailed", "FailedBinding"}
            )
            why = events[-1] if events else "no volume bound yet"
            provisioner = classes[name].get("provisioner", "?")
            findings.append(
                Finding(
                    PROBLEM,
                    subject,
                    f"{phase}: {why}",
                    f"check that the provisioner of class {name} ({provisioner}) runs "
                    f"(k3d: local-path-provisioner in kube-system); {describe}",
                )
            )
    if not findings:
        findings.append(Finding(OK, "claims", f"{len(pvcs)} claim(s) Bound"))
    return findings


def _used(snap: Snapshot, pvc: dict[str, Any]) -> bool:
    meta = _meta(pvc)
    for pod in snap.items("Pod", [meta["namespace"]]):
        for volume in pod.get("spec", {}).get("volumes") or []:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]:
                return True
    return False


# --- pods: images, crashes, scheduling (guide: "Pods stuck in ImagePullBackOff") -------------


def _image_name(image: str) -> str:
    """`localhost:5555/prism-admin:latest` -> `prism-admin`."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def containers(
    snap: Snapshot, t: Target, namespaces: tuple[str, ...], our_images: set[str]
) -> list[Finding]:
    findings = []
    for pod in snap.items("Pod", namespaces):
        meta, status = _meta(pod), pod.get("status", {})
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            subject = f"{_ref(pod, 'pod')} ({cs.get('name')})"
            image = cs.get("image", "")
            if reason in PULL_ERRORS:
                if _image_name(image) in our_images:
                    fix = "build the image and load it into the cluster: `inv images.load`"
                else:
                    fix = "check the image reference and that the nodes can pull it"
                findings.append(Finding(PROBLEM, subject, f"{reason} for image {image}", fix))
            elif reason == "CrashLoopBackOff":
                findings.append(
                    Finding(
                        PROBLEM,
                        subject,
                        f"CrashLoopBackOff ({cs.get('restartCount', 0)} restarts)",
                        "read why: "
                        + _kubectl_hint(
                            t,
                            "-n",
                            meta["namespace"],
                            "logs",
                            meta["name"],
                            "-c",
                            str(cs.get("name")),
                            "--previous",
                        ),
                    )
                )
            elif reason == "CreateContainerConfigError":
                findings.append(
                    Finding(
                        PROBLEM,
                        subject,
                        f"CreateContainerConfigError: {waiting.get('message', '')}",
                        "a Secret or ConfigMap is missing: copy .env.example to .env and run "
                        "`inv deploy.foundation`",
                    )
                )
    return findings


def scheduling(snap: Snapshot, t: Target, namespaces: tuple[str, ...]) -> list[Finding]:
    findings = []
    for pod in snap.items("Pod", namespaces):
        meta, status, spec = _meta(pod), pod.get("status", {}), pod.get("spec", {})
        if status.get("phase") != "Pending":
            continue
        condition: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
        )
        if condition.get("status") != "False" or condition.get("reason") != "Unschedulable":
            continue
        events = _events_for(snap, pod, "Pod", {"FailedScheduling"})
        why = events[-1] if events else " ".join(str(condition.get("message", "")).split())
        selector = spec.get("nodeSelector") or {}
        if "node affinity/selector" in why and selector:
            pairs = [f"{k}={v}" for k, v in sorted(selector.items())]
            fix = (
                f"no node has the labels {','.join(pairs)}: remove the nodeSelector or label a "
                "node: " + _kubectl_hint(t, "label", "node", "NODE", *pairs)
            )
        elif "Insufficient" in why:
            fix = (
                "lower the requests (the profile-small component) or add agents "
                "(PRISM_CLUSTER_AGENTS, then recreate the cluster)"
            )
        elif "PersistentVolumeClaim" in why:
            fix = "its claim cannot bind: see the claim finding"
        else:
            fix = _kubectl_hint(t, "-n", meta["namespace"], "describe", "pod", meta["name"])
        findings.append(
            Finding(PROBLEM, _ref(pod, "pod"), f"Pending, FailedScheduling: {why}", fix)
        )
    return findings


def pods_summary(snap: Snapshot, namespaces: tuple[str, ...]) -> Finding:
    count = len(snap.items("Pod", namespaces))
    return Finding(
        OK,
        "pods",
        f"{count} pod(s) in {', '.join(namespaces)}: no pull, crash or scheduling errors",
    )


# --- DNS from a throwaway pod (guide: "DNS resolution issues") ------------------------------


def dns_name(snap: Snapshot) -> str:
    """prism-admin's name when its Service exists, else the API server's (always there)."""
    for service in snap.items("Service", ["prism"]):
        if _meta(service).get("name") == "prism-admin":
            return DNS_NAME
    return FALLBACK_DNS_NAME


def dns_args(image: str, name: str) -> list[str]:
    return [
        "run",
        "--rm",
        "-i",
        "--restart=Never",
        "dnstest",
        f"--image={image}",
        "--pod-running-timeout=2m",
        "--",
        "nslookup",
        name,
    ]


def dns(c: Context, snap: Snapshot, t: Target, image: str) -> Finding:
    subject = "dns"
    if t.provider == "kwok":
        return Finding(
            SKIPPED,
            subject,
            "not meaningful on the simulated cluster: its pods run no containers, so no pod "
            "can resolve anything",
        )
    if c.config.run.dry:
        return Finding(SKIPPED, subject, "not run under --dry (it starts a pod)")
    name = dns_name(snap)
    from invoke.exceptions import CommandTimedOut

    try:
        result = _target.kubectl(
            c,
            *dns_args(image, name),
            namespace="default",
            hide=True,
            warn=True,
            in_stream=False,
            timeout=DNS_TIMEOUT,
        )
    except CommandTimedOut:
        return Finding(
            PROBLEM,
            subject,
            f"nslookup {name} from a pod did not finish within {DNS_TIMEOUT}s",
            f"delete the leftover pod: {_kubectl_hint(t, '-n', 'default', 'delete', 'pod', 'dnstest')}",
        )
    if result.ok:
        return Finding(OK, subject, f"{name} resolves from a pod ({image})")
    lines = [
        line
        for line in (result.stdout + "\n" + result.stderr).splitlines()
        if line.strip() and "deleted" not in line
    ]
    why = lines[-1].strip() if lines else f"exit {result.exited}"
    return Finding(
        PROBLEM,
        subject,
        f"nslookup {name} from a pod failed: {why}",
        "check CoreDNS: "
        + _kubectl_hint(t, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns")
        + " and "
        + _kubectl_hint(t, "-n", "kube-system", "logs", "-l", "k8s-app=kube-dns"),
    )


# --- gathering and running ------------------------------------------------------------------

NAMESPACED_KINDS = (
    "pods,services,endpointslices.discovery.k8s.io,persistentvolumeclaims,events,"
    "horizontalpodautoscalers.autoscaling"
)


def _get(c: Context, *args: str, namespace: str | None = None) -> list[dict[str, Any]]:
    import json

    result = _target.kubectl(
        c, "get", *args, "-o", "json", namespace=namespace, dry=False, hide=True, in_stream=False
    )
    return list(json.loads(result.stdout or "{}").get("items", []))


def by_kind(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        grouped.setdefault(str(item.get("kind", "")), []).append(item)
    return grouped


def gather(
    c: Context, t: Target, namespaces: tuple[str, ...], kinds: str = NAMESPACED_KINDS
) -> Snapshot:
    """Five-or-so kubectl queries: cluster-scoped objects, kube-system's Deployments (for
    metrics-server) and `kinds` in each namespace."""
    snap = Snapshot(provider=t.provider)
    snap.cluster = by_kind(_get(c, "apiservices,storageclasses"))
    snap.namespaced["kube-system"] = by_kind(_get(c, "deployments", namespace="kube-system"))
    for namespace in namespaces:
        snap.namespaced[namespace] = by_kind(_get(c, kinds, namespace=namespace))
    return snap


def metrics_now(c: Context, t: Target) -> list[Finding]:
    """The metrics-server check alone, with just the queries it needs (the status tasks)."""
    snap = gather(c, t, STACK_NAMESPACES, kinds="horizontalpodautoscalers.autoscaling")
    return metrics_server(snap, t)


def run_all(
    c: Context, t: Target, observe_namespace: str, our_images: set[str], dns_image: str
) -> list[Finding]:
    """Every check, in the guide's order of concern: metrics, reachability, storage, pods, DNS."""
    pod_namespaces = (*STACK_NAMESPACES, observe_namespace)
    snap = gather(c, t, pod_namespaces)

    def by(check: str, found: list[Finding]) -> list[Finding]:
        return [f._replace(check=check) for f in found]

    findings = [
        *by("metrics-server", metrics_server(snap, t)),
        *by("endpoints", endpoints(snap, t)),
        *by("claims", claims(snap, t, pod_namespaces)),
    ]
    pod_findings = [
        *containers(snap, t, pod_namespaces, our_images),
        *scheduling(snap, t, pod_namespaces),
    ]
    findings += by("pods", pod_findings or [pods_summary(snap, pod_namespaces)])
    findings += by("dns", [dns(c, snap, t, dns_image)])
    return findings
