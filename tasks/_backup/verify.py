"""Check a backup file: its checksum, then its format (the whole archive, for Postgres)."""

from __future__ import annotations

from pathlib import Path

from invoke import Context

from . import files as _files
from . import pods as _pods
from . import postgres as _postgres


def verify(c: Context, path: Path) -> str:
    """Checksum and format of a backup file; returns what it holds."""
    _pods.local_only(c)
    digest = _files.check_sum(path)
    if _files.kind(path) == "postgres":
        return f"pg_dump archive, {_postgres.archive_entries(c, path, digest)} entries"
    _files.check_rdb(path)
    return "Redis RDB snapshot"
