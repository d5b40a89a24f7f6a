"""Backups of the stateful backends, kept in the environment's data directory."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task

from . import _settings


def backup_dir(c) -> Path:
    s = _settings.load(c)
    return _settings.resolve_path(s.backup.dir) if s.backup.dir else s.data_dir / "backups"


@task(name="list", default=True)
def list_(c):
    """List finished backups, newest first."""
    directory = backup_dir(c)
    files = sorted(
        (p for p in directory.glob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    if not files:
        print(f"no backups in {directory}")
    for path in files:
        print(f"{path.stat().st_size:>12}  {path}")


ns = Collection("backup", list_)
_settings.configure(
    ns,
    "backup",
    {
        "dir": "",  # empty: <data_dir>/<env>/backups
    },
)
