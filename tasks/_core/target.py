"""The cluster a task acts on: provider choice, the pinned kubeconfig context, reachability.

Every kubectl and helm command gets `--context` (and `--kubeconfig`) from here, so no task ever
follows whatever the current kubeconfig context happens to be (docs/guide-corrections.md, 20).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from invoke import Context, Exit, Result

from . import settings as _settings
from .command import query, run, where, why


class Target(NamedTuple):
    """The cluster a task acts on, with the kubeconfig context pinned (guide correction 20)."""

    provider: str
    name: str
    context: str
    kubeconfig: str
    reason: str


PROVIDERS = ("auto", "k3d", "kwok", "context")


_targets: dict[tuple[str, str, str], Target] = {}


def docker_answers(c: Context) -> bool:
    """Does a Docker daemon answer on the machine that runs the commands?"""
    try:  # no docker at all (here, or on the host: exit 127) means no daemon either
        result = query(c, ["docker", "info", "--format", "{{.ServerVersion}}"], timeout=15)
    except Exit:
        return False
    return result.ok and bool(result.stdout.strip())


def resolve(c: Context, provider: str | None = None) -> Target:
    """Resolve the provider (auto: k3d when Docker answers, else kwok) and the context."""
    s = _settings.load(c)
    chosen = provider or s.cluster.provider
    if chosen not in PROVIDERS:
        raise Exit(f"unknown cluster provider {chosen!r}; choose one of: {', '.join(PROVIDERS)}")
    key = (where(c), chosen, s.cluster_name)
    if key in _targets:
        return _targets[key]
    if chosen == "context":
        found = _existing(s)
        _targets[key] = found
        return found
    if chosen == "auto":
        if docker_answers(c):
            chosen, reason = "k3d", "auto: a Docker daemon answers"
        else:
            chosen, reason = "kwok", "auto: no Docker daemon answers, using the simulated cluster"
    else:
        reason = "chosen by configuration" if not provider else "chosen by --provider"
    name = s.cluster_name
    found = Target(
        provider=chosen,
        name=name,
        context=f"{chosen}-{name}",
        kubeconfig=str(s.place(s.cluster.kubeconfig)) if s.cluster.kubeconfig else "",
        reason=reason,
    )
    _targets[key] = found
    return found


def _existing(s: _settings.Settings) -> Target:
    """A cluster this project did not create, by its kubeconfig context (the context
    provider): named by the context, never renamed."""
    context = str(s.cluster.context).strip()
    if not context:
        raise Exit(
            "PRISM_CLUSTER_PROVIDER=context needs PRISM_CLUSTER_CONTEXT: the kubeconfig context "
            "of the cluster to use (`kubectl config get-contexts -o name` lists them)",
            code=1,
        )
    kubeconfig = str(s.place(s.cluster.kubeconfig)) if s.cluster.kubeconfig else ""
    return Target("context", context, context, kubeconfig, "an existing cluster, by its context")


def forget_all() -> None:
    """Drop cached provider decisions (tests switch configuration within one process)."""
    _targets.clear()
    _reachable.clear()


def kube_flags(t: Target) -> list[str]:
    flags = ["--context", t.context]
    if t.kubeconfig:
        flags[:0] = ["--kubeconfig", t.kubeconfig]
    return flags


def kubectl(c: Context, *args: str, namespace: str | None = None, **kwargs: Any) -> Result:
    """kubectl pinned to the project's context (never whatever is current)."""
    t = resolve(c)
    argv = ["kubectl", *kube_flags(t)]
    if namespace:
        argv += ["-n", namespace]
    return run(c, [*argv, *args], **kwargs)


def readyz(t: Target) -> list[str]:
    """The probe of whether the cluster's API server is ready to serve."""
    return ["kubectl", *kube_flags(t), "get", "--raw", "/readyz"]


# Clusters whose API server answered in this process, by (where, target): a task and its
# pre-tasks probe once (a probe is an SSH round trip on a remote host).
_reachable: set[tuple[str, Target]] = set()


def _probe(c: Context, t: Target) -> Result | None:
    """Ask the API server whether it is ready, once per process while it answers: None when
    it has answered already, else the failed probe."""
    if (where(c), t) in _reachable:
        return None
    answer = query(c, readyz(t), timeout=30)
    if not answer.ok:
        return answer
    _reachable.add((where(c), t))
    return None


def answers(c: Context) -> bool:
    """Whether the target cluster's API server is ready (probed once per process)."""
    return _probe(c, resolve(c)) is None


def require_reachable(c: Context) -> Target:
    """Stop with the next step when the target cluster's API server does not answer."""
    t = resolve(c)
    if c.config.run.dry:
        return t  # a dry run may plan against a cluster that does not exist yet
    failed = _probe(c, t)
    if failed is not None:
        raise Exit(
            f"cannot reach cluster {t.name} (context {t.context}): {why(failed)}; "
            "run `inv cluster.create` (or `inv cluster.start` if it is stopped)",
            code=1,
        )
    return t


def forget_reachable(c: Context, t: Target) -> None:
    """The cluster is going away (stop, delete): probe again before using it."""
    _reachable.discard((where(c), t))


def helm(c: Context, *args: str, namespace: str | None = None, **kwargs: Any) -> Result:
    """helm pinned to the project's context."""
    t = resolve(c)
    argv = ["helm", "--kube-context", t.context]
    if t.kubeconfig:
        argv += ["--kubeconfig", t.kubeconfig]
    if namespace:
        argv += ["--namespace", namespace]
    return run(c, [*argv, *args], **kwargs)
