"""The context provider: a cluster this project did not create (a shared staging cluster,
EKS, GKE, AKS ...), reached through its kubeconfig context (cluster.context).

It has no lifecycle here: `cluster.create` only checks that the cluster answers and says which
Kubernetes it runs; stop, start, delete and purge refuse, since the cluster belongs to someone
else. Deploys, backups, checks and drills work, once the context is in cluster.allowed_contexts
(`_core.guard.require_allowed`)."""

from __future__ import annotations

import json
import shlex

from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target
from .._core.settings import Settings
from .._core.target import Target


def require_runtime(c: Context) -> None:
    _command.require(c, "kubectl")


def names(c: Context) -> list[str]:
    """The contexts of the kubeconfig."""
    t = _target.resolve(c)
    argv = ["kubectl", "config", "get-contexts", "-o", "name"]
    if t.kubeconfig:
        argv[1:1] = ["--kubeconfig", t.kubeconfig]
    return _command.ask(c, argv, "list the kubeconfig's contexts").split()


def check_settings(s: Settings, t: Target) -> None:
    """Nothing to check: the cluster exists already, with its own settings."""


def existing_queries(s: Settings, t: Target) -> list[list[str]]:
    return []  # nothing to ask ahead: `kubectl version` is the one question


def exists(c: Context, s: Settings, t: Target) -> bool:
    return t.context in names(c)


def report_existing(c: Context, s: Settings, t: Target) -> None:
    answer = _command.query(c, ["kubectl", *_target.kube_flags(t), "version", "-o", "json"])
    version = ""
    if answer.ok:
        try:
            version = json.loads(answer.stdout)["serverVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            version = ""
    if not version:
        raise Exit(
            f"context {t.context} does not answer: {_command.why(answer)}; check the cluster "
            f"and your credentials (`{shlex.join(_target.readyz(t))}`)",
            code=1,
        )
    print(
        f"cluster of context {t.context} answers (Kubernetes {version}); the context provider "
        "creates nothing"
    )


def create(c: Context, s: Settings, t: Target) -> None:
    raise Exit(
        f"no context {t.context} in the kubeconfig; the context provider uses an existing "
        "cluster: set PRISM_CLUSTER_CONTEXT to one of `kubectl config get-contexts -o name`",
        code=1,
    )


def refuse(action: str, t: Target) -> Exit:
    return Exit(
        f"cannot {action} the cluster of context {t.context}: the context provider only uses "
        "a cluster someone else runs; use that cluster's own tools",
        code=1,
    )


def start(c: Context, s: Settings, t: Target) -> None:
    raise refuse("start", t)


def stop(c: Context, s: Settings, t: Target) -> None:
    raise refuse("stop", t)


def delete(c: Context, s: Settings, t: Target) -> None:
    raise refuse("delete", t)


def merge_kubeconfig(c: Context, s: Settings, t: Target) -> None:
    """The context is in the kubeconfig already (that is how it was named)."""
