"""Prism images: build them from the Prism repository, load them into the k3d cluster (only
what the nodes lack), or push them to a local registry the cluster pulls from."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from invoke import Collection, Context, Exit, task

from ._core import command as _command
from ._core import settings as _settings
from ._core import target as _target


class Image(NamedTuple):
    name: str
    tag: str
    dockerfile: Path
    context: Path

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def image_names(c) -> list[str]:
    """The configured Prism images, `name:tag`."""
    return [image.ref for image in images(c)]


def images(c: Context, only: str = "") -> list[Image]:
    """The configured images (or the `only` subset), with where each one is built from."""
    s = _settings.load(c)
    names = [name.strip() for name in str(s.images.names).split(",") if name.strip()]
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in names]
        if unknown:
            raise Exit(f"unknown image {unknown[0]!r}; choose from: {', '.join(names)}", code=1)
        names = wanted
    source = _settings.resolve_path(str(s.images.source_dir))
    return [
        Image(
            name=name,
            tag=str(s.images.tag),
            dockerfile=source / _pattern(str(s.images.dockerfile), name, "dockerfile"),
            context=source / _pattern(str(s.images.context), name, "context"),
        )
        for name in names
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


def _check_sources(c: Context, wanted: list[Image]) -> None:
    """A missing checkout or Dockerfile is a setup problem: say so before building anything."""
    s = _settings.load(c)
    source = _settings.resolve_path(str(s.images.source_dir))
    if not source.is_dir():
        raise Exit(
            f"Prism source directory {source} does not exist; clone the Prism repository there "
            "or set PRISM_IMAGES_SOURCE_DIR (images.source_dir)",
            code=1,
        )
    for image in wanted:
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


def _k3d_target(c: Context) -> _target.Target:
    from ._providers import k3d as _k3d

    t = _target.resolve(c)
    if t.provider != "k3d":
        raise Exit(
            f"the cluster provider is {t.provider} ({t.reason}): images go into k3d clusters "
            "only (the simulated cluster runs no containers); set PRISM_CLUSTER_PROVIDER=k3d",
            code=1,
        )
    _k3d.require_runtime(c)
    return t


ONLY_HELP = "Comma-separated subset of images.names (default: all)."


@task(help={"only": ONLY_HELP})
def build(c, only=""):
    """Build the Prism images with docker from the Prism source directory."""
    from ._providers import k3d as _k3d

    wanted = images(c, only)
    _check_sources(c, wanted)
    _k3d.require_runtime(c)
    for image in wanted:
        _command.run(
            c,
            ["docker", "build", "-t", image.ref, "-f", str(image.dockerfile), str(image.context)],
        )
    print(f"built {len(wanted)} image(s): {', '.join(i.ref for i in wanted)}")


@task(
    name="import",
    help={
        "only": ONLY_HELP,
        "force": "Import even images whose ID every node already holds.",
    },
)
def import_(c, only="", force=False):
    """Load the images into the k3d cluster, skipping those every node already holds."""
    from ._providers import k3d as _k3d
    from ._providers import k3d_images as _images

    t = _k3d_target(c)
    s = _settings.load(c)
    if not _k3d.exists(c, s, t):
        raise Exit(f"cluster {t.name} does not exist (k3d); run `inv cluster.create`", code=1)
    refs = [image.ref for image in images(c, only)]
    imported, skipped = _images.import_images(c, s, t, refs, force=force)
    if skipped:
        print(f"already in cluster {t.name}: {', '.join(skipped)}")
    print(
        f"imported into {t.name}: {', '.join(imported)}"
        if imported
        else f"nothing to import: cluster {t.name} holds every image"
    )


@task(name="list", default=True)
def list_(c):
    """List the Prism images this project builds and loads."""
    print("\n".join(image_names(c)))


@task
def registry(c):
    """Create the local image registry (idempotent); PRISM_CLUSTER_REGISTRY=true clusters use it."""
    from ._providers import k3d as _k3d
    from ._providers import k3d_registry as _registry

    _command.require(c, "k3d")
    _k3d.require_runtime(c)
    s = _settings.load(c)
    _registry.ensure_registry(c, s)
    print(
        f"push with `inv images.push`; clusters created with PRISM_CLUSTER_REGISTRY=true pull "
        f"{_registry.registry_ref(s)}/<image>:{s.images.tag}"
    )


@task(help={"only": ONLY_HELP})
def push(c, only=""):
    """Tag and push the images to the local registry (localhost:<registry_port>)."""
    from ._providers import k3d as _k3d
    from ._providers import k3d_images as _images
    from ._providers import k3d_registry as _registry

    _command.require(c, "k3d")
    _k3d.require_runtime(c)
    s = _settings.load(c)
    host = _registry.registry_host(s)
    if host not in _registry.registries(c):
        raise Exit(f"registry {host} does not exist; run `inv images.registry`", code=1)
    wanted = images(c, only)
    for image in wanted:
        _images.local_image_id(c, image.ref)  # every image present before anything is pushed
    for image in wanted:
        remote = f"localhost:{s.images.registry_port}/{image.ref}"
        _command.run(c, ["docker", "tag", image.ref, remote])
        _command.run(c, ["docker", "push", remote])
    print(
        f"pushed {len(wanted)} image(s); in the cluster they are {_registry.registry_ref(s)}/<image>"
    )


ns = Collection("images", list_, build, import_, registry, push)
_settings.configure(
    ns,
    "images",
    {
        # The guide's six images ("Building and Loading Images"), comma-separated.
        "names": "prism-admin,prism-proxy,keyvalue-runner,consumer-runner,producer-runner,mailbox-runner",
        "tag": "latest",
        # A checkout of the Prism repository; relative paths are anchored at this project.
        "source_dir": "../prism-data-layer",
        # Per image, relative to source_dir; {name} is the image name.
        "dockerfile": "cmd/{name}/Dockerfile",
        "context": ".",
        # The guide's local registry: `k3d registry create prism-registry --port 5555`.
        "registry_name": "prism-registry",
        "registry_port": 5555,
    },
)
