"""The k3d provider: clusters of k3s nodes in Docker, as the guide creates them."""

from __future__ import annotations

import json

from invoke import Context

from . import _command
from ._command import Target
from ._settings import Settings


def names(c: Context) -> list[str]:
    result = _command.query(c, ["k3d", "cluster", "list", "-o", "json"])
    if not result.ok:
        return []
    return [cluster["name"] for cluster in json.loads(result.stdout or "[]")]


def exists(c: Context, s: Settings, t: Target) -> bool:
    return t.name in names(c)


def report_existing(c: Context, s: Settings, t: Target) -> None:
    print(f"cluster {t.name} already exists (k3d); nothing to do")


def create(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "create", t.name])


def start(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "start", t.name])


def stop(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "stop", t.name])


def delete(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["k3d", "cluster", "delete", t.name])


def purge(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["rm", "-rf", str(s.data_dir)])
