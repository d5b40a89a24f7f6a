"""Backups of the stateful backends, kept in the environment's data directory (guide correction 16-18).

The work is in `_backup`; these tasks read flags, call it and print one result line.
"""

from __future__ import annotations

from invoke import Collection, task

from ._core import settings as _settings

FILE_HELP = "Backup file: a path, or a name from `inv backup.list` (required)."
YES_HELP = "Do not ask for confirmation (required when there is no terminal)."


@task(
    name="list",
    default=True,
    help={"json": "Print a JSON list (kind, file, bytes, created, sha256) instead."},
)
def list_(c, json=False):
    """List finished backups, newest first."""
    from datetime import UTC, datetime
    from pathlib import Path

    from ._backup import files as _files
    from ._core import output as _output

    files = _files.finished_backups(c)
    if json:

        def entry(path: Path) -> dict[str, object]:
            # sha256 as the checksum file records it (null without one): listing reads no
            # backup through; `backup.verify` checks a file against it
            sums = _files.sums_path(path)
            recorded = sums.read_text("ascii", "replace").split()[:1] if sums.is_file() else []
            info = path.stat()
            return {
                "kind": next(k for k, sfx in _files.SUFFIXES.items() if path.suffix == sfx),
                "file": str(path),
                "bytes": info.st_size,
                "created": datetime.fromtimestamp(info.st_mtime, UTC).isoformat("T", "seconds"),
                "sha256": recorded[0] if recorded else None,
            }

        _output.print_json([entry(path) for path in files])
        return
    if not files:
        _output.say(f"no backups in {_files.backup_dir(c)}")
    for path in files:
        checked = "" if _files.sums_path(path).is_file() else "  (no checksum file)"
        _output.say(f"{_files.human(path.stat().st_size):>10}  {path}{checked}")


@task
def postgres(c):
    """Dump Postgres (pg_dump -Fc), verify it and keep it under a timestamped name."""
    from ._backup import postgres as _postgres

    done = _postgres.backup_postgres(c)
    if done:
        print(done.report("postgres"))


@task
def redis(c):
    """Snapshot Redis (BGSAVE, waiting for LASTSAVE to move), verify it and keep it."""
    from ._backup import redis as _redis

    done = _redis.backup_redis(c)
    if done:
        print(done.report("redis"))


@task(help={"file": FILE_HELP})
def verify(c, file):
    """Check a backup against its checksum and its format."""
    from ._backup import files as _files
    from ._backup import verify as _verify

    path = _files.find(c, file)
    print(f"{path}: checksum OK, {_verify.verify(c, path)}")


@task(name="restore-postgres", help={"file": FILE_HELP, "yes": YES_HELP})
def restore_postgres(c, file, yes=False):
    """Replace the Postgres database with a backup: every schema dropped, the backup restored, one transaction."""
    from ._backup import postgres as _postgres

    seconds = _postgres.restore_postgres(c, file, yes)
    if seconds is not None:
        print(f"restored {file} into Postgres, took {seconds:.1f}s")


@task(name="restore-redis", help={"file": FILE_HELP, "yes": YES_HELP})
def restore_redis(c, file, yes=False):
    """Replace Redis' data with a snapshot: SHUTDOWN NOSAVE, restart, check the key count.

    On k3d the kubelet restarts the Redis container after the shutdown; on the simulated cluster
    `backup.redis_start_command` starts the server that stands in for the pod."""
    from ._backup import files as _files
    from ._backup import redis as _redis

    restored = _redis.restore_redis(c, file, yes)
    if restored is not None:
        keys, seconds = restored
        count = _files.plural(keys, "key")
        print(f"restored {file} into Redis: {count}, as in the backup; took {seconds:.1f}s")


ns = Collection("backup", list_, postgres, redis, verify, restore_postgres, restore_redis)
_settings.configure(
    ns,
    "backup",
    {
        "dir": "",  # empty: <data_dir>/<env>/backups
        "namespace": "prism-backends",
        "postgres_pod": "postgres-0",
        "postgres_port": 5432,  # as seen inside the pod (pg_dump -h 127.0.0.1 -p ...)
        # pg_dump -Z: 1 compresses 2-3x faster than pg_dump's own default (6) into an archive
        # a few per cent larger; 0 stores data uncompressed, 9 is the smallest and slowest
        "postgres_compression": 1,
        "redis_pod": "redis-0",
        "redis_port": 6379,
        "redis_data_dir": "/data",  # Redis' `dir` inside the pod, where dump.rdb lives
        # Run on this machine after SHUTDOWN NOSAVE to start Redis again; empty on k3d, where the
        # kubelet restarts the container. The simulated cluster needs one (it has no container).
        "redis_start_command": "",
        "timeout": 120,  # seconds to wait for BGSAVE, and for Redis to come back after a restore
    },
)
