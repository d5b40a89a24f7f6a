"""Images on k3d: building them with docker, what the local Docker store and each node hold,
and `k3d image import` for what a node lacks (docs/guide-corrections.md, 12: there is no
`k3d image list`, so each node's containerd is asked through crictl)."""

from __future__ import annotations

from pathlib import Path

from invoke import Context, Exit

from .._core import command as _command
from .._core.settings import Settings
from .._core.target import Target
from .k3d import nodes


def normalize_ref(ref: str) -> str:
    """Docker's reference normalization: `prism-admin:latest` is docker.io/library/..."""
    first, _, rest = ref.partition("/")
    if not rest:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    if ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
        ref += ":latest"
    return ref


def node_images(c: Context, node: str) -> dict[str, str]:
    """Image reference -> image ID held by one node's containerd (via crictl)."""
    argv = ["docker", "exec", node, "crictl", "images", "-o", "json"]
    answer = _command.ask_json(c, argv, f"list the images node {node} holds")
    listed = (answer.get("images") if isinstance(answer, dict) else None) or []
    return {
        normalize_ref(tag): str(image.get("id", ""))
        for image in listed
        for tag in image.get("repoTags") or []
    }


def inspect_id(argv_ref: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", argv_ref]


def image_id(c: Context, image: str) -> str:
    """The image's ID in the local Docker store; "" when docker says there is no such image.
    Any other failure raises: "could not look" is never "not there"."""
    result = _command.query(c, inspect_id(image))
    if result.ok and result.stdout.strip():
        return str(result.stdout.strip())
    if "no such image" in (result.stderr or "").lower():
        return ""
    raise _command.QueryFailed(
        f"cannot inspect image {image}: `docker image inspect` failed: {_command.why(result)}",
        code=1,
    )


def local_image_id(c: Context, image: str) -> str:
    result = _command.query(c, inspect_id(image))
    if not result.ok or not result.stdout.strip():
        raise Exit(
            f"image {image} is not in the local Docker image store; build it with "
            "`inv images.build` (or `docker pull` it)",
            code=1,
        )
    return str(result.stdout.strip())


def build(c: Context, ref: str, dockerfile: Path, context: Path) -> None:
    _command.run(c, ["docker", "build", "-t", ref, "-f", str(dockerfile), str(context)])


def running_nodes(c: Context, t: Target) -> list[str]:
    """The cluster's server and agent containers; raises when there are none or one is stopped
    (an import into a stopped node fails half-way)."""
    members = [n for n in nodes(c, t.name) if n.get("role") in ("server", "agent")]
    if not members:
        raise Exit(f"cluster {t.name} has no nodes; run `inv cluster.create`", code=1)
    stopped = [n["name"] for n in members if not (n.get("State") or {}).get("Running", True)]
    if stopped:
        raise Exit(
            f"cluster {t.name} is not running ({', '.join(stopped)} stopped); "
            "run `inv cluster.start`",
            code=1,
        )
    return [str(n["name"]) for n in members]


def held_by_nodes(c: Context, t: Target) -> list[dict[str, str]]:
    """What each node holds (reference -> ID); raises when the cluster is not running."""
    return [node_images(c, node) for node in running_nodes(c, t)]


def lacking(local: dict[str, str], held: list[dict[str, str]]) -> list[str]:
    """The images some node lacks, or holds under another ID.

    Compared by ID: with Docker's containerd image store `.Id` is the manifest digest, which
    never equals crictl's config digest; the images are then re-imported, never wrongly
    skipped."""
    return [
        image
        for image, local_id in local.items()
        if not local_id or any(node.get(normalize_ref(image)) != local_id for node in held)
    ]


def import_refs(c: Context, t: Target, images: list[str]) -> None:
    _command.run(c, ["k3d", "image", "import", *images, "-c", t.name])


def import_images(
    c: Context, s: Settings, t: Target, images: list[str], force: bool = False
) -> tuple[list[str], list[str]]:
    """Import what some node lacks (compared by image ID); returns (imported, skipped)."""
    local = {image: local_image_id(c, image) for image in images}
    held = held_by_nodes(c, t)
    missing = list(images) if force else lacking(local, held)
    skipped = [image for image in images if image not in missing]
    if missing:
        import_refs(c, t, missing)
    return missing, skipped
