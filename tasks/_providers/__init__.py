"""Cluster providers: k3d (k3s nodes in Docker), kwok (the simulated cluster) and context (an
existing cluster this project did not create).

Each provider is a module that implements `Provider`; `for_target` picks it. mypy checks the
modules against the protocol where `for_target` returns them.
"""

from __future__ import annotations

from typing import Protocol

from invoke import Context

from .._core.settings import Settings
from .._core.target import Target


class Provider(Protocol):
    """The cluster lifecycle every provider offers; `s` and `t` come from the caller."""

    def require_runtime(self, c: Context) -> None:
        """Stop with the next step when what the provider runs on is missing (Docker ...)."""

    def names(self, c: Context) -> list[str]:
        """Every cluster of this provider; raises when the tool cannot say."""

    def check_settings(self, s: Settings, t: Target) -> None:
        """Refuse, before any command runs, settings this provider cannot create a cluster
        from (a name k3d rejects, ports past 65535 ...)."""

    def exists(self, c: Context, s: Settings, t: Target) -> bool: ...

    def existing_queries(self, s: Settings, t: Target) -> list[list[str]]:
        """The read-only commands `exists` and `report_existing` run on a cluster that is
        there already: `cluster.create` asks them ahead, side by side in one shell (on a -H
        host, one SSH session instead of one each)."""

    def report_existing(self, c: Context, s: Settings, t: Target) -> None:
        """`cluster.create` found the cluster: say whether it answers and matches the config."""

    def create(self, c: Context, s: Settings, t: Target) -> None: ...

    def start(self, c: Context, s: Settings, t: Target) -> None: ...

    def stop(self, c: Context, s: Settings, t: Target) -> None: ...

    def delete(self, c: Context, s: Settings, t: Target) -> None:
        """Remove the cluster; data in the environment's data directory stays."""

    def merge_kubeconfig(self, c: Context, s: Settings, t: Target) -> None:
        """Write the cluster's context into the kubeconfig without switching to it."""


def for_target(t: Target) -> Provider:
    """The provider module behind a resolved target (imported on first use)."""
    if t.provider == "k3d":
        from . import k3d

        return k3d
    if t.provider == "context":
        from . import context

        return context
    from . import kwok

    return kwok
