"""The Prism images of a deploy: which reference the manifests must carry for each configured
image, bringing the images into the cluster before the workloads need them, and the
edit-build-run loop (`images.reload`: rebuild, load what changed, restart who runs it).

Each configured image (images.names) is `<name>:<tag>` imported into the k3d nodes and never
pulled (the guide's `imagePullPolicy: Never`); with the local registry (cluster.registry),
`<registry>/<name>:<tag>` pulled from it; with a registry of your own (images.registry, the
only choice on a cluster this project did not create), `<images.registry>/<name>:<tag>`.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from invoke import Context, Exit, UnexpectedExit

from .._core import command as _command
from .._core import guard as _guard
from .._core import settings as _settings
from .._core import target as _target
from .._providers import k3d_images as _k3d_images
from .._providers import k3d_registry as _registry
from . import render as _render

Key = tuple[str, str, str]  # (kind, namespace, name) of a workload


# --- what is configured -----------------------------------------------------------------------


class Image(NamedTuple):
    name: str
    tag: str
    dockerfile: Path
    context: Path

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def names(s: _settings.Settings) -> list[str]:
    """images.names, in order."""
    return [name.strip() for name in str(s.images.names).split(",") if name.strip()]


def source_dir(s: _settings.Settings) -> Path:
    return _settings.resolve_path(str(s.images.source_dir))


def wanted(c: Context, only: str = "") -> list[Image]:
    """The configured images (or the `only` subset), with where each one is built from."""
    s = _settings.load(c)
    configured = names(s)
    chosen = configured
    if only:
        chosen = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in configured]
        if unknown:
            raise Exit(
                f"unknown image {unknown[0]!r}; choose from: {', '.join(configured)}", code=1
            )
    source = source_dir(s)
    return [
        Image(
            name=name,
            tag=str(s.images.tag),
            dockerfile=source / _pattern(str(s.images.dockerfile), name, "dockerfile"),
            context=source / _pattern(str(s.images.context), name, "context"),
        )
        for name in chosen
    ]


def _pattern(pattern: str, name: str, key: str) -> str:
    try:
        return pattern.format(name=name)
    except (KeyError, IndexError, ValueError):
        raise Exit(
            f"images.{key}={pattern!r}: the only placeholder is {{name}}; "
            f"fix PRISM_IMAGES_{key.upper()}",
            code=1,
        ) from None


def check_sources(c: Context, chosen: Sequence[Image]) -> None:
    """A missing checkout or Dockerfile is a setup problem: say so before building anything."""
    source = source_dir(_settings.load(c))
    if not source.is_dir():
        raise Exit(
            f"Prism source directory {source} does not exist; clone the Prism repository there "
            "or set PRISM_IMAGES_SOURCE_DIR (images.source_dir)",
            code=1,
        )
    for image in chosen:
        if not image.dockerfile.is_file():
            raise Exit(
                f"no Dockerfile for {image.name} at {image.dockerfile}; "
                "set PRISM_IMAGES_DOCKERFILE (images.dockerfile, e.g. cmd/{name}/Dockerfile)",
                code=1,
            )
        if not image.context.is_dir():
            raise Exit(
                f"build context for {image.name} ({image.context}) is not a directory; "
                "set PRISM_IMAGES_CONTEXT (images.context)",
                code=1,
            )


class Pull(NamedTuple):
    """Where pods get the configured images: their references' prefix, and the pull policy."""

    prefix: str  # "" or "<registry>/"
    policy: str


def pull(s: _settings.Settings) -> Pull:
    """Where the cluster gets the Prism images, by configuration:

    - images.registry, a registry the cluster can reach (ghcr.io/acme/prism): pulled when the
      node lacks that tag (IfNotPresent; what is pushed there is built elsewhere, by CI);
    - cluster.registry, k3d's local registry: pulled on every pod start, whatever the tag: a
      reload pushes a new image under the same tag, and with IfNotPresent a node holding the
      old one would keep running it (the registry is on this machine; asking costs
      milliseconds);
    - neither: imported into the k3d nodes and never pulled (there is nothing to pull them
      from). A cluster this project did not create holds no imported images, and `Never` would
      leave its pods in ErrImageNeverPull: the context provider needs images.registry.

    (Both registries at once are refused where the settings are read.)"""
    if s.images.registry:
        return Pull(f"{s.images.registry}/", "IfNotPresent")
    if str(s.cluster.provider) == "context":
        raise Exit(
            "the context provider's cluster cannot run images imported into k3d nodes "
            "(imagePullPolicy: Never): set PRISM_IMAGES_REGISTRY (images.registry) to the "
            "registry it pulls the Prism images from, e.g. ghcr.io/acme/prism",
            code=1,
        )
    if s.cluster.registry:
        return Pull(f"{_registry.registry_ref(s)}/", "Always")
    return Pull("", "Never")


def cluster_ref(s: _settings.Settings, name: str) -> str:
    """The reference pods use for a configured image."""
    return f"{pull(s).prefix}{name}:{s.images.tag}"


def not_loaded(s: _settings.Settings, t: _target.Target) -> str:
    """Why nothing is loaded into cluster `t` from this machine, or "" when its Prism images
    are (k3d: imported into its nodes, or pushed to the local registry)."""
    registry = str(s.images.registry)
    if t.provider == "kwok":
        return "the simulated cluster (kwok) runs no containers"
    if t.provider == "context" and not registry:
        return (
            "a shared cluster pulls the Prism images from a registry; push yours to one it can "
            "reach and set PRISM_IMAGES_REGISTRY to it"
        )
    where = f"{registry} (images.registry)"
    if t.provider == "context":
        return f"a shared cluster pulls the Prism images; push yours to {where}"
    if registry:
        return f"it pulls the Prism images from {where}; push yours there"
    return ""


def require_k3d(c: Context) -> _target.Target:
    from .._providers import k3d as _k3d

    t = _target.resolve(c)
    if t.provider == "context":
        raise Exit(
            f"the cluster provider is context ({t.reason}): images go into k3d clusters only; "
            "a shared cluster pulls them: push them to its registry and set "
            "PRISM_IMAGES_REGISTRY to it",
            code=1,
        )
    if t.provider != "k3d":
        raise Exit(
            f"the cluster provider is {t.provider} ({t.reason}): images go into k3d clusters "
            "only (the simulated cluster runs no containers); set PRISM_CLUSTER_PROVIDER=k3d",
            code=1,
        )
    _k3d.require_runtime(c)
    return t


# --- the manifests follow the configuration ---------------------------------------------------


def image_name(image: str) -> str:
    """An image reference without its tag or digest, as kustomize's `images:` matches it."""
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


def containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in an object (pod templates of workloads,
    job templates of CronJobs, bare Pods), as kustomize's image transformer finds them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (item for item in value if isinstance(item, dict))
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def follow_config(c: Context, objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with every configured Prism image as the configuration says: its tag
    (images.tag), the registry's name in registry mode, and the pull policy that goes with it.
    Other images (redis, postgres ...) are left as they are.

    Names and tags are rewritten by kustomize's own `images:` transformer, run on a generated
    kustomization whose only resource is the rendered objects that need it, in a temporary
    directory removed afterwards. It works on the rendered objects rather than wrapping the
    overlay because a deploy's objects come from more than the overlay (backends rendered from
    their bases, the Secrets, the simulated cluster's volumes): one rewrite covers them all, and
    only objects that run a configured image are written to the file, so Secrets never touch
    the disk. kustomize has no transformer for the pull policy; it is set here, on exactly the
    containers whose image is now a configured one. Nothing to change means no kustomize run."""
    s = _settings.load(c)
    source = pull(s)
    targets = {name: f"{source.prefix}{name}:{s.images.tag}" for name in names(s)}
    stale = [
        o
        for o in objects
        if o.get("kind") != "Secret"
        and any(
            image_name(image) in targets and image != targets[image_name(image)]
            for image in (ct.get("image", "") for ct in containers(o))
        )
    ]
    rewritten = {_render.key(o): o for o in _transform(c, s, stale, targets)} if stale else {}
    ids = {id(o) for o in stale}
    policy = source.policy
    final = set(targets.values())
    result = []
    for original in objects:
        obj = rewritten[_render.key(original)] if id(original) in ids else original
        _require_rewritten(original, obj, targets)
        if any(
            ct.get("image") in final and ct.get("imagePullPolicy") != policy
            for ct in containers(obj)
        ):
            obj = copy.deepcopy(obj)
            for ct in containers(obj):
                if ct.get("image") in final:
                    ct["imagePullPolicy"] = policy
        result.append(obj)
    return result


def _transform(
    c: Context, s: _settings.Settings, objects: list[dict[str, Any]], targets: dict[str, str]
) -> list[dict[str, Any]]:
    """Run kustomize's `images:` transformer over `objects`."""
    import yaml

    prefix = pull(s).prefix
    images = []
    for name in targets:
        entry: dict[str, str] = {"name": name}
        if prefix:
            entry["newName"] = f"{prefix}{name}"
        entry["newTag"] = str(s.images.tag)
        images.append(entry)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["objects.yaml"],
        "images": images,
    }
    with tempfile.TemporaryDirectory(prefix="prism-images-") as tmp:
        folder = Path(tmp)
        (folder / "objects.yaml").write_text(_render.to_yaml(objects), encoding="utf-8")
        (folder / "kustomization.yaml").write_text(
            yaml.safe_dump(kustomization, sort_keys=False), encoding="utf-8"
        )
        return _render.kustomize(c, folder)


def _require_rewritten(
    before: dict[str, Any], after: dict[str, Any], targets: dict[str, str]
) -> None:
    """Every container that ran a configured image now runs its configured reference: a
    kustomize that matched differently would otherwise deploy the old images silently."""
    for old, new in zip(containers(before), containers(after), strict=False):
        name = image_name(str(old.get("image", "")))
        if name in targets and new.get("image") != targets[name]:
            raise Exit(
                f"{before.get('kind')} {before.get('metadata', {}).get('name')}: kustomize left "
                f"image {new.get('image')!r}, expected {targets[name]!r}",
                code=1,
            )


# --- bringing the images into the cluster -----------------------------------------------------


@dataclass
class Line:
    """What happened to one image: where it came from and what was done with it."""

    ref: str
    source: str = ""
    result: str = ""


def _print_lines(lines: Iterable[Line]) -> None:
    rows = list(lines)
    width = max((len(row.ref) for row in rows), default=0)
    for row in rows:
        print(
            f"{row.ref:<{width}}  " + ", ".join(part for part in (row.source, row.result) if part)
        )


def _unbuildable(c: Context, s: _settings.Settings, build: bool) -> tuple[str, str]:
    """Why the images cannot be built here, and what to do about an image that is also not in
    the local store; ("", "") when they can be built."""
    if not build:
        return "--no-build", "build it with `inv images.build`, or drop --no-build"
    if _command.is_remote(c):
        host = _command.label(c)
        return (
            f"the commands run on host {host}, the source directory is on this machine",
            f"build it on {host} (`docker build -t <image> ...`) first",
        )
    source = source_dir(s)
    if not source.is_dir():
        return (
            f"no Prism source directory at {source}",
            "clone the Prism repository there or set PRISM_IMAGES_SOURCE_DIR (images.source_dir)",
        )
    return "", ""


def load(c: Context, only: str = "", build: bool = True, force: bool = False) -> None:
    """Bring the images into the cluster: build them when the source is there (else take them
    from the local Docker store), then import into the nodes what they lack, or push to the
    registry what it lacks. Every precondition is checked before the first build."""
    from .._providers import k3d as _k3d

    t = _target.resolve(c)
    s = _settings.load(c)
    reason = not_loaded(s, t)
    if reason:
        print(f"images: nothing to load into cluster {t.name}: {reason}")
        return
    chosen = wanted(c, only)
    _k3d.require_runtime(c)
    dry = _guard.is_dry(c)
    registry = bool(s.cluster.registry)

    # where they go
    registry_ready = False
    held: list[dict[str, str]] | None = None
    if registry:
        registry_ready = _registry.registry_host(s) in _registry.registries(c)
        if not registry_ready and not dry:
            _registry.require_registry(c, s)  # raises, naming the fix
    elif _k3d.exists(c, s, t):
        held = _k3d_images.held_by_nodes(c, t)  # raises when the cluster is stopped
    elif not dry:  # a dry `cluster.create deploy.all` plans against a cluster still to come
        raise Exit(f"cluster {t.name} does not exist (k3d); run `inv cluster.create`", code=1)

    # where they come from
    cannot, fix = _unbuildable(c, s, build)
    lines = {image.ref: Line(image.ref) for image in chosen}
    unknown: set[str] = set()  # built under --dry: what the build would make is unknown
    if cannot:
        local = {image.ref: _k3d_images.image_id(c, image.ref) for image in chosen}
        absent = [ref for ref, found in local.items() if not found]
        if absent:
            raise Exit(
                f"image {absent[0]} is neither in the local Docker image store nor buildable "
                f"({cannot}); {fix}",
                code=1,
            )
        print(f"using the local Docker store's images ({cannot}): {', '.join(local)}")
        for line in lines.values():
            line.source = "from the local Docker store"
    else:
        check_sources(c, chosen)
        print(f"building {len(chosen)} image(s) from {source_dir(s)}")
        for image in chosen:
            started = time.monotonic()
            _k3d_images.build(c, image.ref, image.dockerfile, image.context)
            lines[image.ref].source = (
                "would build" if dry else f"built in {time.monotonic() - started:.1f}s"
            )
        if dry:
            local, unknown = {ref: "" for ref in lines}, set(lines)
        else:
            local = {ref: _k3d_images.local_image_id(c, ref) for ref in lines}

    if registry:
        compare = registry_ready and not force
        summary = _push(c, s, lines, {ref for ref in local if compare and ref not in unknown})
    else:
        summary = _import(c, t, local, held, lines, force, unknown)
    _print_lines(lines.values())
    print(summary if not dry else "dry run: nothing was built, imported or pushed")


def _import(
    c: Context,
    t: _target.Target,
    local: dict[str, str],
    held: list[dict[str, str]] | None,
    lines: dict[str, Line],
    force: bool,
    unknown: set[str],
) -> str:
    dry = _guard.is_dry(c)
    if force or held is None:
        todo = list(local)
    else:
        stale = set(_k3d_images.lacking(local, held)) | unknown
        todo = [ref for ref in local if ref in stale]
    started = time.monotonic()
    if todo:
        _k3d_images.import_refs(c, t, todo)
    took = time.monotonic() - started
    for ref, line in lines.items():
        if ref in todo:
            line.result = "would import" if dry else "imported"
        else:
            line.result = f"unchanged: every node of {t.name} holds it"
    if not todo:
        return f"nothing to import: cluster {t.name} holds every image"
    return f"imported {len(todo)} image(s) into cluster {t.name} in {took:.1f}s"


def _push(c: Context, s: _settings.Settings, lines: dict[str, Line], comparable: set[str]) -> str:
    """Push each image unless the registry holds it already (asked only for `comparable`)."""
    dry = _guard.is_dry(c)
    pushed = 0
    for ref, line in lines.items():
        if ref in comparable and _registry.holds(c, s, ref):
            line.result = f"unchanged: registry {_registry.registry_host(s)} holds it"
            continue
        started = time.monotonic()
        _registry.push(c, s, ref)
        pushed += 1
        line.result = "would push" if dry else f"pushed in {time.monotonic() - started:.1f}s"
    where = f"{_registry.registry_ref(s)}/<image>:{s.images.tag}"
    if not pushed:
        return f"nothing to push: the registry holds every image; the cluster pulls {where}"
    return (
        f"pushed {pushed} image(s) (docker push sends only the layers the registry lacks); "
        f"the cluster pulls {where}"
    )


# --- the edit-build-run loop ------------------------------------------------------------------


def deployed(c: Context) -> list[dict[str, Any]]:
    """Every Prism Deployment and StatefulSet in the Prism namespaces, as the API lists them
    (the listing `deploy.restart` finds its workload in)."""
    from .._kube import client as _kube
    from .._kube import workloads as _workloads

    with _kube.api_client(c) as api:
        return [workload.obj for workload in _workloads.every(api)]


def workloads_using(
    items: Iterable[dict[str, Any]], refs: Iterable[str]
) -> list[tuple[Key, list[str]]]:
    """The workloads whose pod template runs one of `refs`, with the ones it runs."""
    by_normal = {_k3d_images.normalize_ref(ref): ref for ref in refs}
    found = []
    for item in items:
        meta = item["metadata"]
        template = (item.get("spec") or {}).get("template") or {}
        used = sorted(
            {
                by_normal[normal]
                for ct in containers(template)
                if (normal := _k3d_images.normalize_ref(str(ct.get("image", "")))) in by_normal
            }
        )
        if used:
            found.append(((item["kind"], meta.get("namespace", "default"), meta["name"]), used))
    return sorted(found)


class Reload(NamedTuple):
    """What a reload works with, once its preconditions hold."""

    target: _target.Target
    images: list[Image]
    wait: int  # seconds each restarted workload may take to be Ready


def nothing_to_reload(
    c: Context, only: str = "", timeout: object = None, interval: object = None
) -> str:
    """The one line images.reload prints instead of reloading when the cluster takes no images
    from this machine (the simulated cluster, a shared cluster, a registry of your own); ""
    when there is something to reload. The flags are checked first, on every cluster."""
    s = _settings.load(c)
    _settings.seconds(timeout, s.deploy.timeout)
    _settings.seconds(interval, 1, "--interval")
    wanted(c, only)
    t = _target.resolve(c)
    reason = not_loaded(s, t)
    if not reason:
        return ""
    return (
        f"images: nothing to rebuild or load into cluster {t.name}: {reason}; "
        "`inv deploy.restart APP` restarts a workload"
    )


def preflight(c: Context, only: str = "", timeout: object = None) -> Reload:
    """Everything a reload needs, checked before the first build: the flags, a k3d cluster
    that runs (or the registry), the source, the API, and that the cluster is ours to restart
    workloads in (guide correction 20)."""
    from .._providers import k3d as _k3d

    s = _settings.load(c)
    wait = _settings.seconds(timeout, s.deploy.timeout)
    chosen = wanted(c, only)
    t = require_k3d(c)
    if _command.is_remote(c):
        raise Exit(
            "images.reload builds from the source directory on this machine; run it without -H",
            code=1,
        )
    check_sources(c, chosen)
    if s.cluster.registry:
        _registry.require_registry(c, s)
    elif not _k3d.exists(c, s, t):
        raise Exit(f"cluster {t.name} does not exist (k3d); run `inv cluster.create`", code=1)
    else:
        _k3d_images.running_nodes(c, t)
    _target.require_reachable(c)
    if not _guard.is_dry(c):
        _guard.require_owned(c, t)
    return Reload(t, chosen, wait)


def reload(c: Context, only: str = "", timeout: object = None) -> list[str]:
    """Rebuild the images, load those whose ID changed and restart the workloads that run them,
    each waited for until its new pods are Ready. Returns the images that changed."""
    from . import plan as _plan

    t, chosen, wait = preflight(c, only, timeout)
    s = _settings.load(c)
    dry = _guard.is_dry(c)
    registry = bool(s.cluster.registry)
    before = {image.ref: _k3d_images.image_id(c, image.ref) for image in chosen}
    lines = {image.ref: Line(image.ref) for image in chosen}
    for image in chosen:
        started = time.monotonic()
        _k3d_images.build(c, image.ref, image.dockerfile, image.context)
        lines[image.ref].source = f"built in {time.monotonic() - started:.1f}s"
    if dry:
        print(
            "dry run: nothing was built; which images change, and which workloads restart, "
            "is known only after the builds"
        )
        return []
    after = {ref: _k3d_images.local_image_id(c, ref) for ref in before}
    changed = [ref for ref in before if after[ref] != before[ref]]
    for ref, line in lines.items():
        line.result = "changed" if ref in changed else "unchanged (same image ID)"
    if not changed:
        _print_lines(lines.values())
        print("nothing changed: no image loaded, no workload restarted")
        return []

    started = time.monotonic()
    if registry:
        for ref in changed:
            _registry.push(c, s, ref)
        summary = f"pushed {len(changed)} image(s) to registry {_registry.registry_host(s)}"
    else:
        _k3d_images.import_refs(c, t, changed)
        summary = f"imported {len(changed)} image(s) into cluster {t.name}"
    for ref in changed:
        lines[ref].result = "changed, " + ("pushed" if registry else "imported")
    _print_lines(lines.values())
    print(f"{summary} in {time.monotonic() - started:.1f}s")

    in_cluster = {cluster_ref(s, i.name): i.ref for i in chosen if i.ref in changed}
    users = workloads_using(deployed(c), in_cluster)
    unused = [in_cluster[r] for r in in_cluster if not any(r in used for _, used in users)]
    if unused:
        print(f"no deployed workload runs {', '.join(unused)}: nothing to restart for it")
    for (kind, namespace, name), used in users:
        started = time.monotonic()
        _plan.restart(c, name, wait)
        print(
            f"restarted {kind} {namespace}/{name} ({', '.join(in_cluster[u] for u in used)}): "
            f"new pods Ready in {time.monotonic() - started:.1f}s"
        )
    return changed


# Build output and caches, not sources: their churn must not trigger a reload.
SKIPPED_DIRS = frozenset({"node_modules", "target", "__pycache__"})


def snapshot(source: Path) -> dict[str, tuple[int, int]]:
    """Every source file under `source` -> (mtime in ns, size); hidden directories and build
    output are left out."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue  # removed while we looked
            found[path] = (info.st_mtime_ns, info.st_size)
    return found


def watch(
    c: Context,
    only: str = "",
    timeout: object = None,
    interval: object = None,
    once: Callable[..., object] | None = None,
) -> None:
    """Reload now, then again on every change of the source files (polled), until Ctrl-C.
    Preconditions are checked once, first; after that a failed build, load or rollout is
    reported and the watch goes on: the next save may fix it."""
    once = once or reload
    every = _settings.seconds(interval, 1, "--interval")
    preflight(c, only, timeout)
    source = source_dir(_settings.load(c))
    print(f"watching {source} (every {every}s); Ctrl-C stops")
    try:
        seen = snapshot(source)
        _attempt(once, c, only, timeout)
        while True:
            time.sleep(every)
            now = snapshot(source)
            if now == seen:
                continue
            touched = sorted(p for p in now.keys() | seen.keys() if now.get(p) != seen.get(p))
            seen = now
            first = os.path.relpath(touched[0], source)
            more = f" and {len(touched) - 1} more" if len(touched) > 1 else ""
            print(f"\nchanged: {first}{more}; reloading")
            _attempt(once, c, only, timeout)
    except KeyboardInterrupt:
        print("stopped watching")


def _attempt(once: Callable[..., object], c: Context, only: str, timeout: object) -> None:
    """One reload inside the watch; its failure is reported, and the watch goes on."""
    try:
        once(c, only, timeout)
    except UnexpectedExit as error:
        print(
            f"reload failed: `{error.result.command}` exited {error.result.exited}; "
            "watching for the next change",
            file=sys.stderr,
        )
    except Exit as error:
        print(f"reload failed: {error.message}; watching for the next change", file=sys.stderr)
