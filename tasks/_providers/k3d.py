"""The k3d provider: clusters of k3s nodes in Docker, created from a generated k3d config file.

The guide's `k3d cluster create prism-local --servers 1 --agents 2 --port ... --volume
"$(pwd)/local-storage:..."` becomes a `kind: Simple` config (k3d.io/v1alpha5) per environment,
with its own host ports (guide correction 8), a storage directory anchored in the data dir (guide correction 9), an
optional tuning profile that never disables what the stack needs (guide correction 10) and an optional
local registry attached through `registries.use` (guide correction 11).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from invoke import Context, Exit

from .._core import command as _command
from .._core import guard as _guard
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target
from . import ports as _ports
from .k3d_registry import ensure_registry, registry_ref

API_VERSION = "k3d.io/v1alpha5"

# k3d's own rule (pkg/client/clusterName.go, CheckName at v5.6.3): an RFC 1123 hostname of at
# most DefaultClusterNameMaxLength (32) characters, so that `k3d-<name>-server-0` and friends stay
# within Docker's 64-character limit.
HOSTNAME = re.compile(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$"
)
NAME_MAX_LENGTH = 32

# Host port key -> (label, port inside the cluster) behind the k3d load balancer (the guide's
# `--port "8080:80@loadbalancer"` and friends).
LB_PORTS = {"http_port": ("http", 80), "https_port": ("https", 443), "grpc_port": ("grpc", 50051)}
API_CONTAINER_PORT = 6443
STORAGE_MOUNT = "/var/lib/rancher/k3s/storage"

# k3s packaged components and why the deployed stack cannot lose them (guide correction 10).
NEEDED_COMPONENTS = {
    "servicelb": "the prism-proxy LoadBalancer Service would never get an address",
    "metrics-server": "the prism-proxy HorizontalPodAutoscaler would never scale",
    "local-storage": "no PersistentVolumeClaim would bind (the stack's storage class uses it)",
    "coredns": "no Service name would resolve inside the cluster",
}
OPTIONAL_COMPONENTS = ("traefik", "runtimes")

# The guide's "Performance Tuning": raise the API server's in-flight request limits.
TUNING_ARGS = (
    "--kube-apiserver-arg=max-requests-inflight=400",
    "--kube-apiserver-arg=max-mutating-requests-inflight=200",
)


# --- checks that run before anything changes ------------------------------------------------


def require_runtime(c: Context) -> None:
    """k3d is Docker: fail with the next step when no daemon answers."""
    _command.require(c, "docker")
    if not _target.docker_answers(c):
        raise Exit(
            "the k3d provider needs a Docker daemon, but `docker info` does not answer; "
            "start Docker, or use the simulated cluster with PRISM_CLUSTER_PROVIDER=kwok",
            code=1,
        )


def validate_name(name: str) -> None:
    """Reject, before k3d does, a cluster name k3d would refuse."""
    if len(name) > NAME_MAX_LENGTH:
        raise Exit(
            f"cluster name {name!r} has {len(name)} characters; k3d allows at most "
            f"{NAME_MAX_LENGTH}: set a shorter PRISM_CLUSTER_NAME (cluster.name)",
            code=1,
        )
    if not HOSTNAME.match(name):
        raise Exit(
            f"cluster name {name!r} is not a valid hostname for k3d (RFC 1123: letters, digits, "
            "'-' and '.', starting and ending with a letter or digit); "
            "set PRISM_CLUSTER_NAME (cluster.name), e.g. prism-local",
            code=1,
        )


def disabled_components(s: Settings) -> list[str]:
    """The k3s components to disable (cluster.disable), refusing what the stack needs."""
    wanted = [part.strip() for part in str(s.cluster.disable).split(",") if part.strip()]
    for component in wanted:
        if component in NEEDED_COMPONENTS:
            raise Exit(
                f"refusing to disable {component}: {NEEDED_COMPONENTS[component]}; "
                f"remove it from PRISM_CLUSTER_DISABLE (cluster.disable)",
                code=1,
            )
        if component not in OPTIONAL_COMPONENTS:
            raise Exit(
                f"cluster.disable: unknown k3s component {component!r}; "
                f"only {', '.join(OPTIONAL_COMPONENTS)} may be disabled",
                code=1,
            )
    return list(dict.fromkeys(wanted))


def host_ports(s: Settings) -> dict[str, int]:
    """Config key -> host port, for every port the cluster publishes."""
    return {key: s.cluster_int(key) for key in (*LB_PORTS, "api_port")}


def check_ports_free(c: Context, s: Settings) -> None:
    """Every host port must be distinct and free (on the machine k3d runs on); else name the
    port and the key to change."""
    seen: dict[int, str] = {}
    ports = host_ports(s)
    for key, port in ports.items():
        var = f"PRISM_CLUSTER_{key.upper()}"
        if not 0 < port < 65536:
            raise Exit(f"{var}={port} is not a TCP port; choose one between 1 and 65535", code=1)
    taken = _ports.busy(c, ports.values())
    for key, port in ports.items():
        var = f"PRISM_CLUSTER_{key.upper()}"
        if port in seen:
            raise Exit(
                f"host port {port} is configured twice (cluster.{seen[port]} and cluster.{key}); "
                f"set {var} to another port",
                code=1,
            )
        seen[port] = key
        problem = taken.get(port)
        if problem:
            raise Exit(
                f"host port {port} (cluster.{key}, environment {s.env}) {problem}; "
                f"set {var} to a free port or choose another PRISM_ENV",
                code=1,
            )


def check_kubeconfig_context(c: Context, s: Settings, t: Target) -> None:
    """k3d would overwrite a same-named kubeconfig context: refuse if it belongs to another
    cluster (anything but loopback on our API port), so that nothing foreign is clobbered."""
    argv = ["kubectl", "config", "view", "-o", "json"]
    if t.kubeconfig:
        argv[1:1] = ["--kubeconfig", t.kubeconfig]
    result = _command.query(c, argv)
    if not result.ok:
        return
    try:
        view = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        return
    if not isinstance(view, dict):
        return
    contexts = {item.get("name"): item.get("context") or {} for item in view.get("contexts") or []}
    if t.context not in contexts:
        return
    clusters = {item.get("name"): item.get("cluster") or {} for item in view.get("clusters") or []}
    server = str(clusters.get(contexts[t.context].get("cluster"), {}).get("server", ""))
    api_port = s.cluster_int("api_port")
    parts = urlsplit(server)
    loopback = {"127.0.0.1", "0.0.0.0", "localhost", "host.docker.internal"}
    if parts.hostname in loopback and parts.port == api_port:
        return  # a leftover of this very cluster: k3d refreshes it
    raise Exit(
        f"kubeconfig context {t.context} already exists and points at {server or 'nothing'}, "
        f"not at this cluster (https://127.0.0.1:{api_port}); remove it with "
        f"`kubectl config delete-context {t.context}` or choose another PRISM_CLUSTER_NAME",
        code=1,
    )


# --- the generated k3d config ---------------------------------------------------------------


def storage_dir(s: Settings) -> Path:
    """The guide's `$(pwd)/local-storage`, anchored in the environment's data dir (guide correction 9)."""
    return s.data_dir / "local-storage"


def config_path(s: Settings, t: Target) -> Path:
    return s.data_dir / f"k3d-{t.name}.yaml"


def k3s_args(s: Settings) -> list[dict[str, Any]]:
    # every server runs its own API server and applies the packaged manifests, so the guide's
    # `@server:0` becomes `server:*` (it only differs for multi-server clusters such as prod)
    args = [f"--disable={component}" for component in disabled_components(s)]
    if s.cluster.tuning:
        args += TUNING_ARGS
    return [{"arg": arg, "nodeFilters": ["server:*"]} for arg in args]


def config(s: Settings, t: Target) -> dict[str, Any]:
    """The k3d Simple config for the selected environment."""
    servers, agents = s.cluster_int("servers"), s.cluster_int("agents")
    node_filters = ["server:*"] + (["agent:*"] if agents else [])
    options: dict[str, Any] = {
        "k3d": {"wait": True, "timeout": f"{s.cluster.wait_timeout}s"},
        # we pin `--context` everywhere instead of switching the user's current context
        "kubeconfig": {
            "updateDefaultKubeconfig": not t.kubeconfig,
            "switchCurrentContext": False,
        },
    }
    extra_args = k3s_args(s)
    if extra_args:
        options["k3s"] = {"extraArgs": extra_args}
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Simple",
        "metadata": {"name": t.name},
        "servers": servers,
        "agents": agents,
        "kubeAPI": {"hostIP": "127.0.0.1", "hostPort": str(s.cluster_int("api_port"))},
        "ports": [
            {"port": f"{s.cluster_int(key)}:{inner}", "nodeFilters": ["loadbalancer"]}
            for key, (_, inner) in LB_PORTS.items()
        ],
        "volumes": [
            {"volume": f"{storage_dir(s)}:{STORAGE_MOUNT}", "nodeFilters": node_filters},
        ],
        "options": options,
    }
    if s.cluster.registry:
        document["registries"] = {"use": [registry_ref(s)]}
    return document


def write_config(c: Context, s: Settings, t: Target) -> Path:
    """Write the config (0600, atomically); under --dry only show it."""
    import yaml

    path = config_path(s, t)
    text = yaml.safe_dump(config(s, t), sort_keys=False)
    if _guard.is_dry(c):
        print(f"# would write {path}:\n{text}", end="")
        return path
    if _command.is_remote(c):  # the config and the storage volume belong on the Docker host
        _command.run(c, ["mkdir", "-p", str(storage_dir(s))])
        _command.write_file(c, path, text)
        return path
    storage_dir(s).mkdir(parents=True, exist_ok=True)
    _guard.write_atomically(path, text, mode=0o600)
    return path


# --- what k3d reports -----------------------------------------------------------------------


def clusters(c: Context) -> list[dict[str, Any]]:
    """Every k3d cluster on the machine; raises when k3d cannot say."""
    argv = ["k3d", "cluster", "list", "-o", "json"]
    return list(_command.ask_json(c, argv, "list the k3d clusters") or [])


def nodes(c: Context, cluster: str) -> list[dict[str, Any]]:
    """The cluster's containers (servers, agents, load balancer) from `k3d node list`."""
    argv = ["k3d", "node", "list", "-o", "json"]
    found = _command.ask_json(c, argv, "list the k3d nodes") or []
    return [n for n in found if (n.get("runtimeLabels") or {}).get("k3d.cluster") == cluster]


def _host_port(port_map: dict[str, Any], container_port: int) -> str:
    bindings = (port_map or {}).get(f"{container_port}/tcp") or []
    return str(bindings[0].get("HostPort", "")) if bindings else ""


@dataclass(frozen=True)
class Difference:
    what: str
    actual: str
    configured: str

    def __str__(self) -> str:
        return f"{self.what} is {self.actual or 'unset'} (config: {self.configured})"


def differences(c: Context, s: Settings, t: Target) -> list[Difference]:
    """How the running cluster differs from what `config()` would create."""
    found: list[Difference] = []
    entry = next((item for item in clusters(c) if item.get("name") == t.name), None)
    if entry is None:
        return found
    for what, key, count in (
        ("servers", "servers", "serversCount"),
        ("agents", "agents", "agentsCount"),
    ):
        if int(entry.get(count, -1)) != s.cluster_int(key):
            found.append(Difference(what, str(entry.get(count, "?")), str(s.cluster_int(key))))
    members = nodes(c, t.name)
    balancer = next((n for n in members if n.get("role") == "loadbalancer"), None)
    if balancer is not None:
        wanted = {key: inner for key, (_, inner) in LB_PORTS.items()}
        wanted["api_port"] = API_CONTAINER_PORT
        for key, inner in wanted.items():
            actual = _host_port(balancer.get("portMappings") or {}, inner)
            if actual != str(s.cluster_int(key)):
                found.append(
                    Difference(f"host port for {inner} ({key})", actual, str(s.cluster_int(key)))
                )
    storage = f"{storage_dir(s)}:{STORAGE_MOUNT}"
    servers = [n for n in members if n.get("role") == "server"]
    binds = [str(b) for n in servers for b in n.get("volumes") or []]
    # a bind may carry options (`:rw`); compare source and target only
    if servers and not any(b == storage or b.startswith(f"{storage}:") for b in binds):
        found.append(Difference("storage volume", "another directory", storage))
    return found


def running(c: Context, t: Target) -> bool:
    entry = next((item for item in clusters(c) if item.get("name") == t.name), {})
    return int(entry.get("serversRunning", 0)) > 0


# --- the provider interface (shared with _kwok) ---------------------------------------------


def names(c: Context) -> list[str]:
    return [str(cluster["name"]) for cluster in clusters(c) if "name" in cluster]


def existing_queries(s: Settings, t: Target) -> list[list[str]]:
    return []  # k3d lists its clusters several times over; nothing is asked ahead


def exists(c: Context, s: Settings, t: Target) -> bool:
    return t.name in names(c)


def report_existing(c: Context, s: Settings, t: Target) -> None:
    """Leave an existing cluster alone, but say how it differs from the configuration."""
    state = "running" if running(c, t) else "stopped (`inv cluster.start` starts it)"
    diffs = differences(c, s, t)
    if not diffs:
        print(f"cluster {t.name} already exists (k3d, {state}) and matches the configuration")
        return
    print(f"cluster {t.name} already exists (k3d, {state}); left unchanged, but it differs:")
    for diff in diffs:
        print(f"  {diff}")
    print("  to apply the configuration: `inv cluster.delete` then `inv cluster.create`")


def check_settings(s: Settings, t: Target) -> None:
    validate_name(t.name)
    disabled_components(s)


def create(c: Context, s: Settings, t: Target) -> None:
    """Check everything first, then write the config and run `k3d cluster create --config`."""
    validate_name(t.name)
    config(s, t)  # disabled-component guard and config errors before any command
    _command.require(c, "k3d")
    _command.require(c, "kubectl")
    check_kubeconfig_context(c, s, t)
    check_ports_free(c, s)
    if s.cluster.registry:
        ensure_registry(c, s)
    path = write_config(c, s, t)
    _command.run(c, ["k3d", "cluster", "create", "--config", str(path)])
    if t.kubeconfig:
        merge_kubeconfig(c, s, t)


def start(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "start", t.name])


def stop(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "stop", t.name])


def delete(c: Context, s: Settings, t: Target) -> None:
    # the storage directory is a bind mount: k3d leaves it, and so the data survives (guide correction 9)
    _command.run(c, ["k3d", "cluster", "delete", t.name])


def merge_kubeconfig(c: Context, s: Settings, t: Target) -> None:
    """(Re)write the cluster's context into the project's kubeconfig without switching to it."""
    argv = ["k3d", "kubeconfig", "merge", t.name, "--kubeconfig-switch-context=false"]
    argv += ["--output", t.kubeconfig] if t.kubeconfig else ["--kubeconfig-merge-default"]
    _command.run(c, argv)
