"""The kwok provider: a real control plane whose nodes and pods KWOK simulates."""

from __future__ import annotations

from invoke import Context

from . import _command
from ._command import Target
from ._settings import Settings


def names(c: Context) -> list[str]:
    result = _command.query(c, ["kwokctl", "get", "clusters"])
    if not result.ok:
        return []
    return result.stdout.split()


def exists(c: Context, s: Settings, t: Target) -> bool:
    return t.name in names(c)


def report_existing(c: Context, s: Settings, t: Target) -> None:
    print(f"cluster {t.name} already exists (kwok); nothing to do")


def create(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["kwokctl", "create", "cluster", "--name", t.name])


def start(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["kwokctl", "start", "cluster", "--name", t.name])


def stop(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["kwokctl", "stop", "cluster", "--name", t.name])


def delete(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["kwokctl", "delete", "cluster", "--name", t.name])


def purge(c: Context, s: Settings, t: Target) -> None:
    _command.run(c, ["rm", "-rf", str(s.data_dir)])
