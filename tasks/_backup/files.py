"""Backup files that are either complete and verified or absent (docs/guide-corrections.md, 18).

A backup streams into a hidden partial file beside the backups, is verified, gets a sha256 file,
and only then appears under `<backend>-YYYYmmdd-HHMMSS.<ext>` (UTC, to the second; an existing
name is never overwritten: the next one gets `-2`, `-3` ...). Any failure removes the partial
file. Backups are files on the machine that runs the tasks.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from invoke import Context, Exit

from .._core import settings as _settings

SUFFIXES = {"postgres": ".dump", "redis": ".rdb"}


MAGIC = {b"PGDMP": "postgres", b"REDIS": "redis"}


class Finished(NamedTuple):
    """A backup that passed every check, under its final name."""

    path: Path
    size: int
    sha256: str
    seconds: float
    contents: str  # "23 archive entries", "3 keys"

    def report(self, backend: str) -> str:
        return (
            f"{backend} backup {self.path} ({human(self.size)}, {self.contents}) "
            f"sha256 {self.sha256}, took {self.seconds:.1f}s"
        )


def backup_dir(c: Context) -> Path:
    s = _settings.load(c)
    return _settings.resolve_path(s.backup.dir) if s.backup.dir else s.data_dir / "backups"


def sums_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def finished_backups(c: Context) -> list[Path]:
    """Backup files (not their checksums, not partial files), newest first."""
    directory = backup_dir(c)
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in SUFFIXES.values()
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def find(c: Context, file: str) -> Path:
    """A backup named on the command line: as given, or by its name in the backup directory."""
    given = Path(file).expanduser()
    for candidate in (given, backup_dir(c) / given):
        if candidate.is_file():
            return candidate.resolve()
    raise Exit(
        f"backup file {file} not found (looked in the current directory and {backup_dir(c)}); "
        "`inv backup.list` shows the backups",
        code=1,
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def plural(count: int, one: str, many: str = "") -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def partial_path(directory: Path, backend: str, when: str) -> Path:
    """Hidden, so `backup.list` never shows it; the process id keeps two runs in the same second
    from writing into one partial file."""
    return directory / f".{backend}-{when}.{os.getpid()}{SUFFIXES[backend]}.partial"


@contextmanager
def writing(partial: Path) -> Iterator[Path]:
    """The partial file a backup streams into: removed however the block ends (published
    backups are a hard link of their own), and an OS error (a full disk, a directory gone) ends
    in one line. Nothing half-written stays."""
    try:
        yield partial
    except OSError as error:
        raise Exit(
            f"cannot write the backup in {partial.parent}: {error.strerror}; nothing was kept",
            code=1,
        ) from None
    finally:
        partial.unlink(missing_ok=True)


def publish(partial: Path, backend: str, when: str, digest: str) -> Path:
    """Give a verified partial file its final name, never replacing an existing backup.

    The checksum file is created first (exclusively, which also claims the name), then the
    backup is hard-linked into place: a link, unlike a rename, fails when the name exists."""
    _fsync(partial)
    suffix = SUFFIXES[backend]
    for attempt in range(1, 100):
        name = (
            f"{backend}-{when}{suffix}" if attempt == 1 else f"{backend}-{when}-{attempt}{suffix}"
        )
        final = partial.with_name(name)
        sums = sums_path(final)
        try:
            fd = os.open(sums, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{digest}  {name}\n")  # the format of `sha256sum -c`
                handle.flush()
                os.fsync(handle.fileno())
            os.link(partial, final)
        except FileExistsError:
            sums.unlink()
            continue
        except BaseException:
            sums.unlink(missing_ok=True)
            raise
        partial.unlink()
        _fsync(partial.parent)
        return final
    raise Exit(f"99 {backend} backups already carry the time {when}; remove some", code=1)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def kind(path: Path) -> str:
    """postgres (custom-format archive) or redis (RDB snapshot), from the file's first bytes."""
    with path.open("rb") as handle:
        head = handle.read(5)
    if head not in MAGIC:
        raise Exit(
            f"{path} is neither a pg_dump custom-format archive nor a Redis RDB snapshot", code=1
        )
    return MAGIC[head]


def recorded_sum(path: Path) -> str:
    """The sha256 written with the file, as its checksum file holds it (the file not read)."""
    sums = sums_path(path)
    if not sums.is_file():
        raise Exit(
            f"{path.name} has no checksum file {sums.name}; it is incomplete or was not made by "
            "`inv backup.postgres` / `inv backup.redis`",
            code=1,
        )
    recorded = sums.read_text(encoding="ascii", errors="replace").split()[:1]
    if not recorded or not re.fullmatch(r"[0-9a-f]{64}", recorded[0]):
        raise Exit(f"{sums.name} holds no sha256; use another backup (`inv backup.list`)", code=1)
    return recorded[0]


def damaged(path: Path) -> Exit:
    return Exit(
        f"{path.name} does not match its checksum in {sums_path(path).name} (the file is "
        "damaged); use another backup (`inv backup.list`)",
        code=1,
    )


def check_sum(path: Path) -> str:
    """The file's sha256, after checking it against the checksum file written with it."""
    recorded = recorded_sum(path)
    if sha256(path) != recorded:
        raise damaged(path)
    return recorded


def check_rdb(path: Path) -> None:
    """An RDB file starts with `REDIS` and a 4-digit version, and ends with the EOF opcode 0xFF
    and an 8-byte checksum (every version since Redis 2.6): catches truncated copies."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(9)
        handle.seek(max(0, size - 9))
        tail = handle.read(9)
    if not (head.startswith(b"REDIS") and head[5:].isdigit()):
        raise Exit(f"{path.name} is not a Redis RDB snapshot (no REDIS header)", code=1)
    if size < 18 or tail[0] != 0xFF:
        raise Exit(f"{path.name} is truncated: the RDB end marker is missing", code=1)


def require_kind(path: Path, expected: str) -> None:
    found = kind(path)
    if found != expected:
        raise Exit(f"{path.name} is a {found} backup; use `inv backup.restore-{found}`", code=1)


def ready_dir(c: Context) -> Path:
    directory = backup_dir(c)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Exit(
            f"cannot create backup directory {directory}: {error.strerror}; set PRISM_BACKUP_DIR",
            code=1,
        ) from None
    if not os.access(directory, os.W_OK):
        raise Exit(f"backup directory {directory} is not writable; set PRISM_BACKUP_DIR", code=1)
    sweep_partials(directory)
    return directory


def sweep_partials(directory: Path) -> None:
    """Remove partial files left by runs that died (killed, power lost): the process id in
    their name no longer runs. A running backup's partial file is left alone."""
    for partial in directory.glob(".*.partial"):
        try:
            pid = int(partial.name.rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue
        if not _alive(pid):
            partial.unlink(missing_ok=True)
            print(f"removed {partial.name}, left by an interrupted backup")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
