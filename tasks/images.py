"""Prism images: build them from the Prism repository, load them into the k3d cluster (only
what the nodes lack) or push them to a local registry the cluster pulls from, and reload them
while you edit (rebuild, load what changed, restart the workloads that run it)."""

from __future__ import annotations

from invoke import Collection, Exit, task

from ._core import command as _command
from ._core import settings as _settings

ONLY_HELP = "Comma-separated subset of images.names (default: all)."


@task(help={"only": ONLY_HELP})
def build(c, only=""):
    """Build the Prism images with docker from the Prism source directory."""
    from ._deploy import images as _images
    from ._providers import k3d as _k3d
    from ._providers import k3d_images as _k3d_images

    wanted = _images.wanted(c, only)
    _images.check_sources(c, wanted)
    _k3d.require_runtime(c)
    for image in wanted:
        _k3d_images.build(c, image.ref, image.dockerfile, image.context)
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
    from ._deploy import images as _images
    from ._providers import k3d as _k3d
    from ._providers import k3d_images as _k3d_images

    t = _images.require_k3d(c)
    s = _settings.load(c)
    if not _k3d.exists(c, s, t):
        raise Exit(f"cluster {t.name} does not exist (k3d); run `inv cluster.create`", code=1)
    refs = [image.ref for image in _images.wanted(c, only)]
    imported, skipped = _k3d_images.import_images(c, s, t, refs, force=force)
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
    from ._deploy import images as _images

    print("\n".join(image.ref for image in _images.wanted(c)))


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
    from ._deploy import images as _images
    from ._providers import k3d as _k3d
    from ._providers import k3d_images as _k3d_images
    from ._providers import k3d_registry as _registry

    _command.require(c, "k3d")
    _k3d.require_runtime(c)
    s = _settings.load(c)
    _registry.require_registry(c, s)
    wanted = _images.wanted(c, only)
    for image in wanted:
        _k3d_images.local_image_id(c, image.ref)  # every image present before anything is pushed
    for image in wanted:
        _registry.push(c, s, image.ref)
    print(
        f"pushed {len(wanted)} image(s); in the cluster they are {_registry.registry_ref(s)}/<image>"
    )


@task(
    help={
        "only": ONLY_HELP,
        "build": "Build from images.source_dir when it exists (default); --no-build takes the "
        "images from the local Docker store as they are.",
        "force": "Import (or push) even images the cluster (or registry) already holds.",
    }
)
def load(c, only="", build=True, force=False):
    """Bring the images into the cluster (deploy.all's first step): build, import or push."""
    from ._deploy import images as _images

    _images.load(c, only, build=build, force=force)


@task(
    help={
        "only": ONLY_HELP,
        "timeout": "Seconds each restarted workload may take to be Ready (default: "
        "deploy.timeout).",
        "watch": "Keep going: reload again whenever a file in images.source_dir changes, "
        "until Ctrl-C.",
        "interval": "With --watch: seconds between looks at the source files (default: 1).",
    }
)
def reload(c, only="", timeout=None, watch=False, interval=None):
    """Rebuild the images, load the ones that changed and restart the workloads that run them."""
    from ._deploy import images as _images

    if interval and not watch:
        raise Exit("--interval goes with --watch; add --watch or leave --interval out", code=1)
    nothing = _images.nothing_to_reload(c, only, timeout, interval)
    if nothing:
        print(nothing)
    elif watch:
        _images.watch(c, only, timeout, interval)
    else:
        _images.reload(c, only, timeout)


ns = Collection("images", list_, build, import_, load, reload, registry, push)
_settings.configure(
    ns,
    "images",
    {
        # The guide's six images ("Building and Loading Images"), comma-separated.
        "names": "prism-admin,prism-proxy,keyvalue-runner,consumer-runner,producer-runner,mailbox-runner",
        # Empty: the environment's - `latest` for local and dev (the guide's local imports),
        # the release the overlay pins for staging, prod and ci (settings.ENVIRONMENTS).
        "tag": "",
        # A checkout of the Prism repository; relative paths are anchored at this project.
        "source_dir": "../prism-data-layer",
        # Per image, relative to source_dir; {name} is the image name.
        "dockerfile": "cmd/{name}/Dockerfile",
        "context": ".",
        # The guide's local registry: `k3d registry create prism-registry --port 5555`.
        "registry_name": "prism-registry",
        "registry_port": 5555,
        # A registry of your own that the cluster pulls the Prism images from, as a prefix
        # (ghcr.io/acme/prism): every render runs <registry>/<name>:<tag> with IfNotPresent.
        # Empty: imported into the k3d nodes (or cluster.registry); the context provider needs it.
        "registry": "",
    },
)
