"""Cluster lifecycle: create / start / stop / delete / purge / status, for k3d or the simulated
cluster (kwok). The provider modules do the tool-specific work; this module is the CLI surface."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target
from ._core.target import Target

if TYPE_CHECKING:
    from ._providers import Provider

PROVIDER_HELP = "Cluster provider: auto (k3d when Docker answers, else kwok), k3d or kwok."


def _resolve(c: Context, provider: str | None, announce: bool = True) -> Target:
    t = _target.resolve(c, provider)
    _provider(t).require_runtime(c)
    if announce:
        print(f"provider: {t.provider} ({t.reason}); cluster {t.name}, context {t.context}")
    return t


def _provider(t: Target) -> Provider:
    from ._providers import for_target

    return for_target(t)


def _require_lifecycle(t: Target, action: str) -> None:
    """The context provider's cluster belongs to someone else: no start, stop, delete, purge."""
    if t.provider == "context":
        from ._providers import context as _context

        raise _context.refuse(action, t)


def next_questions(c: Context, t: Target) -> list[list[str]]:
    """The read-only questions a task that works on the cluster asks first: the cluster's
    UID for the ownership check (`guard.require_owned`) and, on a -H host, the host's
    kubeconfig for the API tunnel."""
    from ._core import command as _command
    from ._core import guard as _guard

    questions = [] if t.provider == "context" else [_guard.uid_query(t)]
    if _command.is_remote(c):
        from ._remote import tunnel as _tunnel

        questions.append(_tunnel.kubeconfig_query(t))
    return questions


def wait_nodes_ready(c: Context, timeout: int) -> None:
    """Block until every node reports Ready (kubectl wait watches; it does not poll)."""
    _target.kubectl(c, "wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={timeout}s")


@task(
    help={
        "provider": PROVIDER_HELP,
        "tuning": "Apply the guide's API-server tuning (in-flight request limits); "
        "same as PRISM_CLUSTER_TUNING=true.",
    }
)
def create(c, provider=None, tuning=False):
    """Create the cluster of the selected environment and wait for its nodes (idempotent)."""
    from ._core import command as _command
    from ._core import guard as _guard

    t = _resolve(c, provider)
    s = _settings.load(c)
    if tuning:
        s = _with_cluster(s, tuning=True)
    impl = _provider(t)
    impl.check_settings(s, t)
    if asked := impl.existing_queries(s, t):
        # most runs find the cluster there: ask it all at once, with what the task after
        # this pre-task asks first
        _command.prefetch(c, [*asked, *next_questions(c, t)])
    if impl.exists(c, s, t):
        impl.report_existing(c, s, t)
        return
    started = time.monotonic()
    try:
        impl.create(c, s, t)
    except BaseException:
        # Failed or interrupted half-way: a cluster that came into being is still ours, so
        # that `inv cluster.delete` may remove it.
        if impl.exists(c, s, t):
            _guard.record_created(c, t)
        raise
    _guard.record_created(c, t)
    wait_nodes_ready(c, s.cluster.wait_timeout)
    _guard.record_created(c, t, uid=_guard.cluster_uid(c, t))  # now it answers: which one
    if _guard.is_dry(c):
        print(f"cluster {t.name}: dry run, nothing was created")
        return
    print(f"cluster {t.name} ready in {time.monotonic() - started:.1f}s (context {t.context})")


def _with_cluster(s: _settings.Settings, **values: object) -> _settings.Settings:
    """Settings with some cluster keys replaced: a flag wins over every config layer."""
    sections = {**s.sections, "cluster": _settings.Section({**s.sections["cluster"], **values})}
    return s._replace(sections=sections)


@task(help={"provider": PROVIDER_HELP})
def start(c, provider=None):
    """Start a stopped cluster and wait for its nodes."""
    t = _resolve(c, provider)
    _require_lifecycle(t, "start")
    s = _settings.load(c)
    impl = _provider(t)
    _require_exists(c, s, t, impl)
    impl.start(c, s, t)
    wait_nodes_ready(c, s.cluster.wait_timeout)


@task(help={"provider": PROVIDER_HELP})
def stop(c, provider=None):
    """Stop the cluster, keeping its state for `cluster.start`."""
    from ._core import guard as _guard

    t = _resolve(c, provider)
    _require_lifecycle(t, "stop")
    s = _settings.load(c)
    impl = _provider(t)
    _require_exists(c, s, t, impl)
    _guard.require_owned(c, t, unanswered_ok=True)
    _target.forget_reachable(c, t)
    impl.stop(c, s, t)


@task(help={"provider": PROVIDER_HELP})
def delete(c, provider=None):
    """Delete the cluster; data in the environment's data directory is kept."""
    from ._core import guard as _guard

    t = _resolve(c, provider)
    _require_lifecycle(t, "delete")
    s = _settings.load(c)
    impl = _provider(t)
    if not impl.exists(c, s, t):
        print(f"cluster {t.name} does not exist ({t.provider}); nothing to delete")
        return
    _guard.require_owned(c, t)
    _target.forget_reachable(c, t)
    impl.delete(c, s, t)
    _guard.forget(c, t)
    print(f"cluster {t.name} deleted; data kept in {s.data_dir} (`inv cluster.purge` removes it)")


@task(
    help={
        "provider": PROVIDER_HELP,
        "yes": "Do not ask for confirmation before removing the data directory.",
        "backups": "Remove the backups in the data directory too (kept by default).",
    }
)
def purge(c, provider=None, yes=False, backups=False):
    """Delete the cluster and remove its data directory, backups kept (asks first unless --yes)."""
    from ._core import command as _command
    from ._core import guard as _guard

    t = _resolve(c, provider)
    _require_lifecycle(t, "purge")
    s = _settings.load(c)
    impl = _provider(t)
    found = impl.exists(c, s, t)
    if found:
        _guard.require_owned(c, t)
    what = f"everything in {s.data_dir}" + ("" if backups else " but backups/")
    _guard.confirm(f"remove cluster {t.name} and {what}?", yes)
    if found:
        _target.forget_reachable(c, t)
        impl.delete(c, s, t)
        _guard.forget(c, t)
    _command.run(c, purge_command(str(s.data_dir), keep_backups=not backups))
    kept = "" if backups else f"; backups kept in {s.data_dir}/backups"
    print(f"cluster {t.name} purged{kept}")


def purge_command(data_dir: str, keep_backups: bool) -> list[str]:
    """Remove the data directory (on the machine the commands run on), or all of it but the
    backups. Backups are what a purge is most likely to be regretted for."""
    if not keep_backups:
        return ["rm", "-rf", data_dir]
    quoted = shlex.quote(data_dir)
    return [
        "sh",
        "-c",
        f"[ -d {quoted} ] || exit 0; "
        f"find {quoted} -mindepth 1 -maxdepth 1 ! -name backups -exec rm -rf {{}} +",
    ]


JSON_HELP = "Print a JSON document (keys in the README) instead of text."


@task(help={"provider": PROVIDER_HELP, "json": JSON_HELP})
def status(c, provider=None, json=False):
    """Show the cluster's provider, context and nodes."""
    t = _resolve(c, provider, announce=not json)
    s = _settings.load(c)
    impl = _provider(t)
    if not json:
        _require_exists(c, s, t, impl)
        _target.kubectl(c, "get", "nodes", "-o", "wide", dry=False)
        return
    import json as _json

    from ._core import output as _output

    document: dict[str, object] = {
        "provider": t.provider,
        "reason": t.reason,
        "cluster": t.name,
        "context": t.context,
        "exists": impl.exists(c, s, t),
        "nodes": [],
    }
    if document["exists"]:
        result = _target.kubectl(c, "get", "nodes", "-o", "json", dry=False, hide=True, warn=True)
        if result.failed:
            raise Exit(
                f"cluster {t.name} exists but its API server does not answer: "
                f"{' '.join(result.stderr.split())}; `inv cluster.start`",
                code=1,
            )
        document["nodes"] = [_node(n) for n in _json.loads(result.stdout).get("items", [])]
    _output.print_json(document)


def _node(node: dict) -> dict[str, object]:
    labels = node["metadata"].get("labels", {})
    conditions = {x["type"]: x["status"] for x in node.get("status", {}).get("conditions", [])}
    return {
        "name": node["metadata"]["name"],
        "roles": sorted(
            k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")
        ),
        "ready": conditions.get("Ready") == "True",
        "version": node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
    }


@task(name="list", help={"provider": PROVIDER_HELP, "json": JSON_HELP})
def list_(c, provider=None, json=False):
    """List the clusters the provider knows about."""
    t = _resolve(c, provider, announce=False)
    impl = _provider(t)
    names = impl.names(c)
    if json:
        from ._core import output as _output

        _output.print_json({"provider": t.provider, "clusters": names})
        return
    print("\n".join(names) if names else f"no {t.provider} clusters")


@task(help={"provider": PROVIDER_HELP})
def kubeconfig(c, provider=None):
    """Write the cluster's kubeconfig context (k3d) and print the file and context to use."""
    t = _resolve(c, provider, announce=False)
    s = _settings.load(c)
    impl = _provider(t)
    _require_exists(c, s, t, impl)
    impl.merge_kubeconfig(c, s, t)
    print(f"context {t.context} in {t.kubeconfig or '~/.kube/config (or $KUBECONFIG)'}")


def _require_exists(c: Context, s: _settings.Settings, t: Target, impl: Provider) -> None:
    if not impl.exists(c, s, t):
        raise Exit(
            f"cluster {t.name} does not exist ({t.provider}); run `inv cluster.create`", code=1
        )


ns = Collection("cluster", create, start, stop, delete, purge, status, list_, kubeconfig)
_settings.configure(
    ns,
    "cluster",
    {
        "provider": "auto",  # auto | k3d | kwok | context (an existing cluster)
        # context provider: the kubeconfig context of a cluster this project did not create,
        # and the contexts it may change: a YAML list in invoke.yaml (Tilt's allow_k8s_contexts)
        # or a comma-separated string (PRISM_CLUSTER_ALLOWED_CONTEXTS)
        "context": "",
        "allowed_contexts": [],
        # claims' storage class; empty: local-storage (k3d, kwok), the cluster's default (context)
        "storage_class": "",
        "ingress_class": "nginx",  # the Ingresses' ingressClassName
        "proxy_service_type": "LoadBalancer",  # prism-proxy's Service (k3d's servicelb serves it)
        "name": "",  # empty: the environment's name (prism-local, prism-dev ...)
        "servers": 0,  # 0: the environment's count
        "agents": 0,
        "http_port": 0,  # 0: the environment's host ports (guide correction 8)
        "https_port": 0,
        "grpc_port": 0,
        "api_port": 0,
        "kubeconfig": "",  # empty: kubectl's default ($KUBECONFIG or ~/.kube/config)
        "wait_timeout": 180,  # seconds for nodes to become Ready
        # k3s components to disable (comma-separated); servicelb, metrics-server,
        # local-storage and coredns are refused: the stack needs them (guide correction 10)
        "disable": "traefik",
        "tuning": False,  # the guide's API-server in-flight limits (400 / 200)
        "registry": False,  # attach the local registry (images.registry_*) at create
    },
)
