"""The local image registry on k3d (the guide's "Alternative: Use local registry"), attached to
the cluster through its config file, not left alone (docs/guide-corrections.md, 11)."""

from __future__ import annotations

import json

from invoke import Context, Exit

from .._core import command as _command
from .._core.settings import Settings
from . import ports as _ports


def registry_host(s: Settings) -> str:
    """k3d names the registry container `k3d-<name>`; clusters pull from `<host>:<port>`."""
    return f"k3d-{s.images.registry_name}"


def registry_ref(s: Settings) -> str:
    return f"{registry_host(s)}:{s.images.registry_port}"


def registries(c: Context) -> dict[str, str]:
    """Registry container name -> host port."""
    argv = ["k3d", "registry", "list", "-o", "json"]
    found = _command.ask_json(c, argv, "list the k3d registries") or []
    return {
        str(reg.get("name", "")): next(
            (
                str(bindings[0].get("HostPort", ""))
                for bindings in (reg.get("portMappings") or {}).values()
                if bindings
            ),
            "",
        )
        for reg in found
    }


def ensure_registry(c: Context, s: Settings) -> bool:
    """Create the registry unless it exists; True when it was created."""
    host, port = registry_host(s), int(s.images.registry_port)
    existing = registries(c)
    if host in existing:
        if existing[host] and existing[host] != str(port):
            raise Exit(
                f"registry {host} already exists on host port {existing[host]}, not {port}; "
                f"set PRISM_IMAGES_REGISTRY_PORT={existing[host]} or delete it with "
                f"`k3d registry delete {host}`",
                code=1,
            )
        print(f"registry {host} already exists on port {port}; nothing to do")
        return False
    problem = _ports.busy(c, [port]).get(port)
    if problem:
        raise Exit(
            f"host port {port} (images.registry_port) {problem}; "
            "set PRISM_IMAGES_REGISTRY_PORT to a free port",
            code=1,
        )
    _command.run(c, ["k3d", "registry", "create", str(s.images.registry_name), "--port", str(port)])
    return True


def require_registry(c: Context, s: Settings) -> None:
    host = registry_host(s)
    if host not in registries(c):
        raise Exit(f"registry {host} does not exist; run `inv images.registry`", code=1)


def push_ref(s: Settings, ref: str) -> str:
    """Where this machine pushes `ref`: the registry's host port (the guide's localhost:5555)."""
    return f"localhost:{s.images.registry_port}/{ref}"


def holds(c: Context, s: Settings, ref: str) -> bool:
    """Does the registry hold, under `ref`'s tag, the very image the local store has as `ref`?

    `docker push` records the digest the registry stored in the image's RepoDigests; the
    registry's current digest for the tag comes from `docker manifest inspect`. Equal means
    the same image; anything else, including a question docker could not answer, means
    "push it" (a push sends only the layers the registry lacks)."""
    remote = push_ref(s, ref)
    manifest = _command.query(c, ["docker", "manifest", "inspect", "--insecure", "-v", remote])
    if not manifest.ok:
        return False
    try:
        answer = json.loads(manifest.stdout or "null")
    except json.JSONDecodeError:
        return False
    # one platform: an object with the registry's descriptor; a manifest list: an array
    digest = (answer.get("Descriptor") or {}).get("digest") if isinstance(answer, dict) else ""
    if not digest:
        return False
    local = _command.query(
        c, ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref]
    )
    if not local.ok:
        return False
    try:
        digests = json.loads(local.stdout or "null") or []
    except json.JSONDecodeError:
        return False
    repository = remote.rsplit(":", 1)[0]
    return f"{repository}@{digest}" in digests


def push(c: Context, s: Settings, ref: str) -> None:
    remote = push_ref(s, ref)
    _command.run(c, ["docker", "tag", ref, remote])
    _command.run(c, ["docker", "push", remote])
