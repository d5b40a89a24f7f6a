"""What a deploy sends: an overlay rendered into objects, split into the guide's steps, plus the
Secrets from `.env` and (on the simulated cluster) the volumes its claims bind to."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core import guard as _guard
from .._core import settings as _settings
from .._core import target as _target

MANIFESTS = _settings.PROJECT_ROOT / "manifests"
TIER = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

# The Secrets the manifests reference (guide correction 1), filled from the environment / .env.
SECRETS = {
    ("prism-backends", "minio-credentials"): {
        "MINIO_ROOT_USER": "PRISM_MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD": "PRISM_MINIO_ROOT_PASSWORD",
    },
    ("prism-backends", "postgres-credentials"): {
        "POSTGRES_USER": "PRISM_POSTGRES_USER",
        "POSTGRES_PASSWORD": "PRISM_POSTGRES_PASSWORD",
        "POSTGRES_DB": "PRISM_POSTGRES_DB",
    },
    ("prism", "mailbox-s3-credentials"): {
        "S3_ACCESS_KEY": "PRISM_S3_ACCESS_KEY",
        "S3_SECRET_KEY": "PRISM_S3_SECRET_KEY",
    },
}


@dataclass(frozen=True)
class Step:
    name: str
    tiers: tuple[str, ...]
    after: tuple[str, ...] = ()


# The guide's phases 2-7 plus the HPA, with the dependencies that really exist.
STEPS = (
    Step("foundation", ("foundation",)),
    Step("backends", ("backend",), ("foundation",)),
    Step("admin", ("admin",), ("foundation",)),
    Step("proxy", ("proxy",), ("admin",)),
    Step("runners", ("runner",), ("backends", "proxy")),
    Step("ingress", ("ingress",), ("admin", "proxy")),
    Step("autoscaling", ("autoscaling",), ("proxy",)),
)
STEP_NAMES = tuple(step.name for step in STEPS)


def local(c: Context) -> Context:
    """Where rendering happens: always this machine, even when `c` is a remote host."""
    return Context(config=c.config) if _command.is_remote(c) else c


def overlay_dir(name: str) -> Path:
    """An overlay by name (manifests/overlays/<name>) or, for your own, by directory path."""
    path = MANIFESTS / "overlays" / name
    if ("/" in name or name.startswith(".")) and (Path(name) / "kustomization.yaml").is_file():
        return Path(name).resolve()
    if not path.is_dir():
        known = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())
        raise Exit(f"unknown overlay {name!r}; choose one of: {', '.join(known)}", code=1)
    return path


def kustomize(c: Context, path: Path) -> list[dict[str, Any]]:
    """Render a kustomization locally into objects; a render is kept in the data directory
    while nothing it is made of changes (_deploy/cache.py)."""
    import yaml  # imported here: `inv --list` should not pay for it

    from . import cache as _cache

    kept_in = _settings.load(c).local_data_dir / "cache"
    wanted = _cache.key(path)
    if wanted is not None:
        kept = _cache.load(kept_in, path, wanted)
        if kept is not None:
            return kept
    result = _command.query(local(c), ["kubectl", "kustomize", str(path)])
    if not result.ok:
        raise Exit(f"cannot render {path}: {result.stderr.strip()}", code=1)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    objects = [doc for doc in yaml.load_all(result.stdout, Loader=loader) if doc]
    if wanted is not None and not _guard.is_dry(c):  # a dry run writes nothing
        _cache.store(kept_in, path, wanted, objects)
    return objects


def secrets(s: _settings.Settings) -> list[dict[str, Any]]:
    """Secret objects built from the environment; their values never touch a file."""
    objects = []
    for (namespace, name), keys in SECRETS.items():
        data = {key: base64.b64encode(s.secret(var).encode()).decode() for key, var in keys.items()}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        "app.kubernetes.io/part-of": "prism",
                        NAME: "credentials",
                        TIER: "foundation",
                    },
                },
                "type": "Opaque",
                "data": data,
            }
        )
    return objects


def backend_names(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {labels(o).get(NAME, "") for o in objects if labels(o).get(TIER) == "backend"}


def enabled_backends(s: _settings.Settings) -> list[str]:
    """backends.enabled (PRISM_BACKENDS_ENABLED): the one switch for which backends every
    deploy, diff, render and status includes, whatever the overlay lists."""
    names = [n.strip() for n in str(s.backends.enabled).split(",") if n.strip()]
    if not names:
        raise Exit("no backend enabled; set PRISM_BACKENDS_ENABLED (backends.enabled)", code=1)
    return names


def available_backends() -> list[str]:
    return sorted(
        p.name
        for p in (MANIFESTS / "base").iterdir()
        if (p / "kustomization.yaml").is_file() and _is_backend(p)
    )


def _is_backend(path: Path) -> bool:
    return f"{TIER}: backend" in (path / "kustomization.yaml").read_text()


def plan_objects(
    c: Context,
    overlay: str,
    only_backends: Sequence[str] | None = None,
    for_apply: bool = True,
) -> list[dict[str, Any]]:
    """The objects of an overlay, with backends narrowed (or widened) to `only_backends`.

    `for_apply` adds what only exists in a cluster: the Secrets from `.env` and, on the
    simulated cluster, the volumes its claims bind to."""
    objects = kustomize(c, overlay_dir(overlay))
    objects = fit_cluster(objects, _settings.load(c))
    if only_backends is not None:
        present = backend_names(objects)
        known = sorted(set(available_backends()) | present)
        unknown = [b for b in only_backends if b not in known]
        if unknown:
            raise Exit(f"unknown backend {unknown[0]!r}; choose from: {', '.join(known)}", code=1)
        objects = [
            o
            for o in objects
            if labels(o).get(TIER) != "backend" or labels(o).get(NAME) in only_backends
        ]
        for backend in only_backends:
            if backend not in present:
                objects += fit_cluster(
                    kustomize(c, MANIFESTS / "base" / backend), _settings.load(c)
                )
    if for_apply:
        require_placed(objects)
        extra = secrets(_settings.load(c)) + statefulset_claims(objects)
        if _target.resolve(c).provider == "kwok":
            from .._providers import kwok as _kwok

            extra += _kwok.volumes(objects)
        objects = extra + objects
    return objects


LOCAL_STORAGE = "local-storage"  # the manifests' storage class (base/storage)


def fit_cluster(objects: list[dict[str, Any]], s: _settings.Settings) -> list[dict[str, Any]]:
    """The objects as the configured cluster needs them: the claims' storage class
    (cluster.storage_class; on a cluster this project did not create, the cluster's default
    class, and the manifests' own StorageClass is not applied there), the Ingresses' class
    (cluster.ingress_class) and prism-proxy's Service type (cluster.proxy_service_type, one of
    settings.SERVICE_TYPES: checked where it is configured). With the defaults on k3d and kwok
    nothing changes. The objects are changed in place: they are the caller's own, just
    rendered."""
    existing = str(s.cluster.provider) == "context"
    wanted = str(s.cluster.storage_class).strip() or (None if existing else LOCAL_STORAGE)
    ingress_class = str(s.cluster.ingress_class).strip()
    service_type = str(s.cluster.proxy_service_type)
    fitted = []
    for obj in objects:
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        if kind == "StorageClass" and name == LOCAL_STORAGE and wanted != LOCAL_STORAGE:
            continue  # not ours to add to that cluster, or not used
        for spec in _claim_specs(obj):
            if spec.get("storageClassName") == LOCAL_STORAGE and wanted != LOCAL_STORAGE:
                if wanted is None:
                    del spec["storageClassName"]  # the cluster's default class
                else:
                    spec["storageClassName"] = wanted
        if kind == "Ingress" and ingress_class and "ingressClassName" in obj["spec"]:
            obj["spec"]["ingressClassName"] = ingress_class
        if kind == "Service" and name == "prism-proxy" and "type" in obj["spec"]:
            obj["spec"]["type"] = service_type
        fitted.append(obj)
    return fitted


def _claim_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj.get("kind") == "PersistentVolumeClaim":
        return [obj["spec"]]
    if obj.get("kind") == "StatefulSet":
        return [t["spec"] for t in obj["spec"].get("volumeClaimTemplates", [])]
    return []


def require_placed(objects: Iterable[dict[str, Any]]) -> None:
    """Every object must belong to a step (its component label), or a deploy would skip it."""
    tiers = {tier for step in STEPS for tier in step.tiers}
    for obj in objects:
        if labels(obj).get(TIER) not in tiers:
            meta = obj.get("metadata", {})
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            raise Exit(
                f"{obj.get('kind')} {where}{meta.get('name')} belongs to no step: label it "
                f"{TIER}=<{'|'.join(sorted(tiers))}> in its kustomization",
                code=1,
            )


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels", {}) or {}


def objects_of(objects: Iterable[dict[str, Any]], step: Step) -> list[dict[str, Any]]:
    """The objects a step applies. Every claim goes with the foundation, whatever step its
    workload is in: claims bind while the steps before their workload run, instead of after."""
    if "foundation" in step.tiers:
        return [
            o for o in objects
            if labels(o).get(TIER) in step.tiers or o.get("kind") == "PersistentVolumeClaim"
        ]  # fmt: skip
    return [
        o for o in objects
        if labels(o).get(TIER) in step.tiers and o.get("kind") != "PersistentVolumeClaim"
    ]  # fmt: skip


def statefulset_claims(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims each StatefulSet's controller would create from its volumeClaimTemplates
    (`<template>-<statefulset>-<ordinal>`), made ahead with the foundation so that they bind
    (a pre-bound or provisioned volume) while earlier steps run; the controller uses a claim of
    that name when it finds one. Only deploys add them: `deploy.delete` leaves the
    StatefulSets' claims, and their data, in place as before."""
    made = []
    for obj in objects:
        if obj.get("kind") != "StatefulSet":
            continue
        meta, spec = obj["metadata"], obj["spec"]
        selector = spec["selector"].get("matchLabels", {})
        for template in spec.get("volumeClaimTemplates", []):
            for ordinal in range(spec.get("replicas", 1)):
                made.append(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {
                            "name": f"{template['metadata']['name']}-{meta['name']}-{ordinal}",
                            "namespace": meta.get("namespace", "default"),
                            # what the controller gives its claims (the template's labels and
                            # the pods' selector), and the StatefulSet's step
                            "labels": {
                                **template["metadata"].get("labels", {}),
                                **selector,
                                "app.kubernetes.io/part-of": "prism",
                                TIER: labels(obj).get(TIER, ""),
                            },
                        },
                        "spec": template["spec"],
                    }
                )
    return made


def workloads(objects: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of the objects that have readiness to wait for."""
    return [
        (o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"])
        for o in objects
        if o.get("kind") in WORKLOAD_KINDS
    ]


def autoscaled(objects: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of the workloads a HorizontalPodAutoscaler among `objects` scales:
    their replica count belongs to the autoscaler once they exist."""
    found = set()
    for o in objects:
        if o.get("kind") == "HorizontalPodAutoscaler":
            ref = o["spec"]["scaleTargetRef"]
            found.add((ref["kind"], o["metadata"].get("namespace", "default"), ref["name"]))
    return found


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of an object."""
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", "default"), meta["name"])


def without_replicas(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a workload with no `spec.replicas`."""
    spec = {k: v for k, v in obj["spec"].items() if k != "replicas"}
    return {**obj, "spec": spec}


def claims(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Names of the claims StatefulSets create from their volumeClaimTemplates."""
    return [
        f"{template['metadata']['name']}-{o['metadata']['name']}-{ordinal}"
        for o in objects
        if o.get("kind") == "StatefulSet"
        for template in o["spec"].get("volumeClaimTemplates", [])
        for ordinal in range(o["spec"].get("replicas", 1))
    ]


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump_all(list(objects), Dumper=dumper, sort_keys=False)


# Applied first, in this order: what other objects live in or refer to.
FIRST_KINDS = ("Namespace", "StorageClass", "PersistentVolume")


def apply_order(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
    return sorted(objects, key=lambda o: rank.get(o.get("kind", ""), len(rank)))


def namespaces_of(objects: Iterable[dict[str, Any]]) -> set[str]:
    return {o["metadata"]["namespace"] for o in objects if o.get("metadata", {}).get("namespace")}
