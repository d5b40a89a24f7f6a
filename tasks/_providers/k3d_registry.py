"""The local image registry on k3d (the guide's "Alternative: Use local registry"), attached to
the cluster through its config file, not left alone (docs/guide-corrections.md, 11)."""

from __future__ import annotations

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
    problem = _ports.port_unavailable(port)
    if problem:
        raise Exit(
            f"host port {port} (images.registry_port) {problem}; "
            "set PRISM_IMAGES_REGISTRY_PORT to a free port",
            code=1,
        )
    _command.run(c, ["k3d", "registry", "create", str(s.images.registry_name), "--port", str(port)])
    return True
