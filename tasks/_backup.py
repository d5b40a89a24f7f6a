"""Backups of Postgres and Redis that are either complete and verified or absent (ERRATA 16-18).

A backup streams out of its pod into a hidden partial file beside the backups, is verified, gets a
sha256 file, and only then appears under `<backend>-YYYYmmdd-HHMMSS.<ext>` (UTC, to the second;
an existing name is never overwritten: the next one gets `-2`, `-3` ...). Any failure removes
the partial file. Backups are files on the machine that runs the tasks.

Data goes into a pod as a length-delimited stream (`head -c <size>`), never read to end-of-input:
the simulated cluster's `kubectl exec -i` does not pass end-of-input on (a plain `cat` in the pod
waits forever), and counting bytes works whatever the exec protocol does with it. The Postgres
password travels as the first line of that stream (`read -r PGPASSWORD`), so it is on no command
line (neither in `--echo` / `--dry` output nor in a process list), in no file and in no log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from invoke import Context, Exit, Result

from . import _command, _guard, _settings
from ._command import Target
from ._settings import Settings

SUFFIXES = {"postgres": ".dump", "redis": ".rdb"}
MAGIC = {b"PGDMP": "postgres", b"REDIS": "redis"}
RDB_FILE = "dump.rdb"
# Lines kubectl adds when the command in the pod fails (k3d, then the simulation); the line
# worth showing is the command's own, before them.
EXEC_NOISE = ("command terminated with exit code", "error: Internal error occurred")
KLOG = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d")  # kubectl's own log lines (websocket ...)


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


class RdbCount(NamedTuple):
    """What redis-check-rdb read from a snapshot."""

    keys: int
    expires: int
    already_expired: int


# --- the backup directory and its files ----------------------------------------------------------


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


def check_sum(path: Path) -> str:
    """The file's sha256, after checking it against the checksum file written with it."""
    sums = sums_path(path)
    if not sums.is_file():
        raise Exit(
            f"{path.name} has no checksum file {sums.name}; it is incomplete or was not made by "
            "`inv backup.postgres` / `inv backup.redis`",
            code=1,
        )
    expected = sums.read_text(encoding="ascii", errors="replace").split()[:1]
    actual = sha256(path)
    if expected != [actual]:
        raise Exit(
            f"{path.name} does not match its checksum in {sums.name} (the file is damaged); "
            "use another backup (`inv backup.list`)",
            code=1,
        )
    return actual


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


# --- commands in pods ----------------------------------------------------------------------------


def reason(result: Result) -> str:
    """The one line that says why a command failed."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines()]
    lines = [line for line in lines if line]
    useful = [line for line in lines if not _noise(line)] or lines
    return useful[-1] if useful else f"exit code {result.exited}"


def _noise(line: str) -> bool:
    return line.startswith(EXEC_NOISE) or bool(KLOG.match(line))


def in_pod(c: Context, pod: str, *command: str, stdin: bool = False) -> list[str]:
    """`kubectl exec` into a backend pod, pinned to the project's context."""
    s = _settings.load(c)
    t = _command.target(c)
    interactive = ["-i"] if stdin else []
    return [
        "kubectl",
        *_command.kube_flags(t),
        "-n",
        s.backup.namespace,
        "exec",
        *interactive,
        pod,
        "--",
        *command,
    ]


def require_pod(c: Context, pod: str, backend: str) -> None:
    s = _settings.load(c)
    t = _command.target(c)
    namespace = s.backup.namespace
    answer = _command.query(
        c,
        [
            "kubectl",
            *_command.kube_flags(t),
            "-n",
            namespace,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase}",
        ],
        timeout=30,
    )
    if not answer.ok:
        if "NotFound" in answer.stderr:
            raise Exit(
                f"pod {namespace}/{pod} not found on cluster {t.name}; "
                f"deploy it with `inv backends.deploy --only {backend}`",
                code=1,
            )
        raise Exit(f"cannot look up pod {namespace}/{pod}: {reason(answer)}", code=1)
    phase = answer.stdout.strip()
    if phase != "Running":
        raise Exit(
            f"pod {namespace}/{pod} is {phase or 'not running'}; "
            f"see `inv backends.status --only {backend}`",
            code=1,
        )


def stream_out(c: Context, argv: list[str], partial: Path, secret: str | None = None) -> Result:
    """Run `argv` with its standard output going straight into `partial` (binary-safe: invoke
    would decode it as text); `secret` is its first line of input."""
    script = f"umask 077 && {shlex.join(argv)} > {shlex.quote(str(partial))}"
    extra = {"input": secret + "\n"} if secret is not None else {"in_stream": False}
    return _command.run(c, ["sh", "-c", script], hide="both", warn=True, **extra)


def stream_in(c: Context, argv: list[str], path: Path, secret: str | None = None) -> Result:
    """Run `argv` with the file on its standard input, after `secret` as a first line."""
    source = f"cat {shlex.quote(str(path))}"
    if secret is None:
        script = f"{source} | {shlex.join(argv)}"
        return _command.run(c, ["sh", "-c", script], hide="both", warn=True, in_stream=False)
    script = f'IFS= read -r line && {{ printf "%s\\n" "$line"; {source}; }} | {shlex.join(argv)}'
    return _command.run(c, ["sh", "-c", script], hide="both", warn=True, input=secret + "\n")


def receive(path: Path, digest: str, then: str) -> str:
    """Shell (in the pod) that takes exactly the file's bytes from standard input into a
    temporary file "$f", checks its sha256, then runs `then`; the file is removed on exit."""
    return in_temp_file(
        f'head -c {path.stat().st_size} > "$f" && '
        f'echo "{digest}  $f" | sha256sum -c >/dev/null && {then}'
    )


def in_temp_file(steps: str, f: str = "$(mktemp)") -> str:
    """Shell that runs `steps` with "$f" set to a temporary file, removed whatever happens."""
    return f'f={f} || exit 1; {steps}; status=$?; rm -f "$f"; exit $status'


READ_PASSWORD = "IFS= read -r PGPASSWORD && export PGPASSWORD && "


# --- Postgres ------------------------------------------------------------------------------------


def _postgres_secrets(c: Context) -> tuple[str, str, str]:
    s = _settings.load(c)
    return (
        s.secret("PRISM_POSTGRES_USER"),
        s.secret("PRISM_POSTGRES_DB"),
        s.secret("PRISM_POSTGRES_PASSWORD"),
    )


def _connection(c: Context, user: str) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(_settings.load(c).backup.postgres_port), "-U", user]


def backup_postgres(c: Context) -> Finished | None:
    """pg_dump -Fc in the pod, streamed to a partial file, verified, checksummed, published."""
    started = time.monotonic()
    _local_only(c)
    s = _settings.load(c)
    user, db, password = _postgres_secrets(c)
    _command.require_reachable(c)
    require_pod(c, s.backup.postgres_pod, "postgres")
    directory = _ready_dir(c)
    when = stamp()
    partial = partial_path(directory, "postgres", when)
    dump = f"{READ_PASSWORD}exec pg_dump {shlex.join([*_connection(c, user), '-Fc', db])}"
    argv = in_pod(c, s.backup.postgres_pod, "sh", "-c", dump, stdin=True)
    try:
        result = stream_out(c, argv, partial, secret=password)
        if _guard.is_dry(c):
            return None
        if result.failed:
            raise Exit(
                f"pg_dump failed: {reason(result)}; check PRISM_POSTGRES_USER/PASSWORD/DB in .env "
                "and `inv backends.status --only postgres`",
                code=1,
            )
        entries = archive_entries(c, partial)
        digest = sha256(partial)
        final = publish(partial, "postgres", when, digest)
    finally:
        partial.unlink(missing_ok=True)
    return Finished(
        final,
        final.stat().st_size,
        digest,
        time.monotonic() - started,
        plural(entries, "archive entry", "archive entries"),
    )


def archive_entries(c: Context, path: Path, digest: str | None = None) -> int:
    """Verify a custom-format archive with `pg_restore --list`: here when this machine's
    pg_restore can read it, else with the pod's (the version that wrote it)."""
    local = _local_pg_restore_list(c, path)
    if local is not None:
        if local.ok:
            return _count_entries(local.stdout)
        if "unsupported version" not in local.stderr:
            raise Exit(f"{path.name} is not a readable archive: {reason(local)}", code=1)
    _command.require_reachable(c)
    s = _settings.load(c)
    require_pod(c, s.backup.postgres_pod, "postgres")
    then = 'pg_restore --list "$f"'
    script = receive(path, digest or sha256(path), then)
    answer = stream_in(c, in_pod(c, s.backup.postgres_pod, "sh", "-c", script, stdin=True), path)
    if answer.failed:
        raise Exit(f"{path.name} is not a readable archive: {reason(answer)}", code=1)
    why = "is missing" if local is None else "is older than the archive"
    print(f"this machine's pg_restore {why}; verified with the one in {s.backup.postgres_pod}")
    return _count_entries(answer.stdout)


def _local_pg_restore_list(c: Context, path: Path) -> Result | None:
    try:
        _command.require(c, "pg_restore")
    except Exit:
        return None
    return _command.query(c, ["pg_restore", "--list", str(path)], timeout=300)


def _count_entries(listing: str) -> int:
    entries = [line for line in listing.splitlines() if line.strip() and not line.startswith(";")]
    return len(entries)


def restore_postgres(c: Context, file: str, yes: bool) -> float | None:
    """pg_restore --clean --if-exists in one transaction, from a verified backup."""
    started = time.monotonic()
    path, t, s = _restore_target(c, file)
    user, db, password = _postgres_secrets(c)
    digest = check_sum(path)
    _require_kind(path, "postgres")
    archive_entries(c, path, digest)
    require_pod(c, s.backup.postgres_pod, "postgres")
    pod = s.backup.postgres_pod
    _guard.confirm(
        f"replace database {db} in {s.backup.namespace}/{pod} on cluster {t.name} "
        f"with {path.name}?",
        yes,
    )
    restore = shlex.join(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--single-transaction",  # all or nothing: a failed restore leaves the data as it was
            *_connection(c, user),
            "-d",
            db,
        ]
    )
    script = READ_PASSWORD + receive(path, digest, f'{restore} "$f"')
    result = stream_in(c, in_pod(c, pod, "sh", "-c", script, stdin=True), path, secret=password)
    if _guard.is_dry(c):
        return None
    if result.failed:
        raise Exit(
            f"pg_restore failed, nothing was changed: {reason(result)}; "
            "check PRISM_POSTGRES_USER/PASSWORD/DB in .env",
            code=1,
        )
    return time.monotonic() - started


# --- Redis ---------------------------------------------------------------------------------------


def redis_argv(c: Context, *command: str) -> list[str]:
    s = _settings.load(c)
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(s.backup.redis_port), *command]
    return in_pod(c, s.backup.redis_pod, *cli)


def redis_cli(c: Context, *command: str, change: bool = False) -> str:
    """One redis-cli command in the Redis pod; `change` marks commands that --dry only prints."""
    s = _settings.load(c)
    argv = redis_argv(c, *command)
    if change:
        result = _command.run(c, argv, hide="both", warn=True, in_stream=False)
    else:
        result = _command.query(c, argv, timeout=30)
    reply = result.stdout.strip()
    if result.failed or reply.startswith(("ERR", "NOAUTH", "WRONGPASS", "Could not connect")):
        why = reply if reply and not result.failed else reason(result)
        raise Exit(
            f"redis-cli {command[0]} failed in {s.backup.redis_pod}: {why}; "
            "see `inv backends.status --only redis`",
            code=1,
        )
    return reply


def redis_info(c: Context, section: str = "") -> dict[str, str]:
    reply = redis_cli(c, "INFO", *([section] if section else []))
    return _parse_info(reply)


def _parse_info(reply: str) -> dict[str, str]:
    pairs = (line.strip().split(":", 1) for line in reply.splitlines() if ":" in line)
    return {key: value for key, value in pairs}


def key_count(info: dict[str, str]) -> int:
    """Keys in all databases, from INFO keyspace (`db0:keys=3,expires=0,avg_ttl=0`)."""
    total = 0
    for key, value in info.items():
        if re.fullmatch(r"db\d+", key):
            fields = dict(part.split("=", 1) for part in value.split(","))
            total += int(fields["keys"])
    return total


def snapshot(c: Context) -> None:
    """BGSAVE, then wait until LASTSAVE moves past its value from before it (ERRATA 16).

    LASTSAVE counts seconds, so BGSAVE is only sent once the server's clock has left the second
    of the previous save: a snapshot finishing within that second would otherwise look old."""
    s = _settings.load(c)
    deadline = time.monotonic() + s.backup.timeout
    while True:
        before = int(redis_cli(c, "LASTSAVE"))
        _leave_second(c, before)
        reply = _bgsave(c)
        if _guard.is_dry(c):
            return
        if "already in progress" not in reply:
            break
        # Someone else's snapshot may have started before the latest writes: let it finish,
        # then take ours.
        _wait(c, deadline, "the running snapshot", lambda info: _idle(info))
    _wait(
        c,
        deadline,
        f"BGSAVE (LASTSAVE still {before})",
        lambda info: _idle(info) and int(info["rdb_last_save_time"]) > before,
    )


def _bgsave(c: Context) -> str:
    s = _settings.load(c)
    argv = redis_argv(c, "BGSAVE")
    result = _command.run(c, argv, hide="both", warn=True, in_stream=False)
    reply = result.stdout.strip()
    if result.failed or (reply.startswith("ERR") and "already in progress" not in reply):
        raise Exit(f"BGSAVE failed in {s.backup.redis_pod}: {reply or reason(result)}", code=1)
    return reply


def _leave_second(c: Context, lastsave: int) -> None:
    seconds, micros = (int(v) for v in redis_cli(c, "TIME").split()[:2])
    if seconds <= lastsave:
        time.sleep(lastsave - seconds + 1 - micros / 1e6 + 0.01)


def _idle(info: dict[str, str]) -> bool:
    return info.get("rdb_bgsave_in_progress") == "0"


def _wait(c: Context, deadline: float, what: str, done: Callable[[dict[str, str]], bool]) -> None:
    """Poll INFO persistence (its rdb_last_save_time is LASTSAVE) until `done`, printing
    progress every second; a failed snapshot or the deadline ends it."""
    s = _settings.load(c)
    started = time.monotonic()
    reported = 0
    while True:
        info = redis_info(c, "persistence")
        if done(info):
            return
        if _idle(info) and info.get("rdb_last_bgsave_status") == "err":
            raise Exit(
                f"the snapshot failed in {s.backup.redis_pod} (rdb_last_bgsave_status:err); "
                "check the pod's disk and `kubectl logs`",
                code=1,
            )
        waited = time.monotonic() - started
        if time.monotonic() > deadline:
            raise Exit(
                f"waited {waited:.0f}s for {what}; raise PRISM_BACKUP_TIMEOUT "
                f"(now {s.backup.timeout}) or check the pod",
                code=1,
            )
        if int(waited) > reported:
            reported = int(waited)
            print(f"  waiting for {what}: {reported}s of {s.backup.timeout}s", flush=True)
        time.sleep(0.2)


def parse_rdb_check(output: str) -> RdbCount:
    """The counts redis-check-rdb prints: `[info] 3 keys read`, `[info] 1 expires`, ..."""

    def number(label: str) -> int:
        found = re.search(rf"\[info\] (\d+) {label}", output)
        if not found:
            raise Exit(f"redis-check-rdb printed no `{label}` count; is it Redis 5 or later?")
        return int(found.group(1))

    return RdbCount(number("keys read"), number("expires"), number("already expired"))


def backup_redis(c: Context) -> Finished | None:
    """A fresh snapshot (ERRATA 16), checked with redis-check-rdb in the pod, copied out."""
    started = time.monotonic()
    _local_only(c)
    s = _settings.load(c)
    _command.require_reachable(c)
    require_pod(c, s.backup.redis_pod, "redis")
    directory = _ready_dir(c)
    snapshot(c)
    when = stamp()
    partial = partial_path(directory, "redis", when)
    source = shlex.quote(f"{s.backup.redis_data_dir.rstrip('/')}/{RDB_FILE}")
    # Copy first, then check and send that copy: a later snapshot may replace dump.rdb meanwhile.
    copy = in_temp_file(f'cp {source} "$f" && redis-check-rdb "$f" >&2 && cat "$f"')
    try:
        result = stream_out(c, in_pod(c, s.backup.redis_pod, "sh", "-c", copy), partial)
        if _guard.is_dry(c):
            return None
        if result.failed:
            raise Exit(
                f"copying the snapshot out of {s.backup.redis_pod} failed: {reason(result)}; "
                f"is backup.redis_data_dir ({s.backup.redis_data_dir}) Redis' dir?",
                code=1,
            )
        count = parse_rdb_check(result.stderr)
        check_rdb(partial)
        digest = sha256(partial)
        final = publish(partial, "redis", when, digest)
    finally:
        partial.unlink(missing_ok=True)
    return Finished(
        final, final.stat().st_size, digest, time.monotonic() - started, plural(count.keys, "key")
    )


def restore_redis(c: Context, file: str, yes: bool) -> tuple[int, float] | None:
    """Put a verified snapshot in place and restart Redis without saving (ERRATA 17).

    1. automatic snapshots off (`CONFIG SET save ""`, until the restart) and none running, so
       nothing overwrites the file once it is in place;
    2. the file goes into the pod, is checked (sha256, redis-check-rdb, which also reads its key
       count) and renamed over dump.rdb;
    3. `SHUTDOWN NOSAVE`: Redis stops without writing its memory over the file;
    4. `start_redis`: Redis starts again and loads the file;
    5. the key count must be the backup's."""
    started = time.monotonic()
    path, t, s = _restore_target(c, file)
    digest = check_sum(path)
    _require_kind(path, "redis")
    check_rdb(path)
    pod = s.backup.redis_pod
    require_pod(c, pod, "redis")
    if redis_cli(c, "CONFIG", "GET", "appendonly").split()[-1:] == ["yes"]:
        raise Exit(
            f"Redis in {pod} has appendonly on and would load its AOF, not the snapshot; "
            "nothing was changed",
            code=1,
        )
    _guard.confirm(
        f"replace every key of Redis in {s.backup.namespace}/{pod} on cluster {t.name} "
        f"with {path.name}?",
        yes,
    )
    saves = redis_cli(c, "CONFIG", "GET", "save").splitlines()[1:]
    redis_cli(c, "CONFIG", "SET", "save", "", change=True)
    try:
        if not _guard.is_dry(c):
            _wait(c, time.monotonic() + s.backup.timeout, "the running snapshot", _idle)
        expected = _put_in_place(c, path, digest)
    except BaseException:
        redis_cli(c, "CONFIG", "SET", "save", saves[0] if saves else "", change=True)
        raise
    run_id = redis_info(c, "server").get("run_id", "")
    # On k3d the container ends with Redis and this exec with it: its exit status means nothing.
    _command.run(
        c,
        redis_argv(c, "SHUTDOWN", "NOSAVE"),
        hide="both",
        warn=True,
        in_stream=False,
    )
    start_redis(c)
    if _guard.is_dry(c) or expected is None:
        return None
    info = _wait_restarted(c, run_id)
    keys = key_count(info)
    low = expected.keys - expected.expires  # keys with a TTL may expire in between
    high = expected.keys - expected.already_expired
    if not low <= keys <= high:
        raise Exit(
            f"Redis came back with {keys} keys but {path.name} holds {high}; it did not load the "
            f"snapshot (is backup.redis_data_dir, {s.backup.redis_data_dir}, Redis' dir?)",
            code=1,
        )
    return keys, time.monotonic() - started


def _put_in_place(c: Context, path: Path, digest: str) -> RdbCount | None:
    s = _settings.load(c)
    directory = s.backup.redis_data_dir.rstrip("/")
    target = shlex.quote(f"{directory}/{RDB_FILE}")
    # The temporary copy lives in the data directory so that the rename cannot cross filesystems.
    staged = shlex.quote(f"{directory}/.prism-restore.rdb")
    script = in_temp_file(
        f'head -c {path.stat().st_size} > "$f" && '
        f'echo "{digest}  $f" | sha256sum -c >/dev/null && '
        f'redis-check-rdb "$f" >&2 && mv "$f" {target}',
        f=staged,
    )
    result = stream_in(c, in_pod(c, s.backup.redis_pod, "sh", "-c", script, stdin=True), path)
    if _guard.is_dry(c):
        return None
    if result.failed:
        raise Exit(
            f"putting {path.name} into {s.backup.redis_pod} failed, nothing was changed: "
            f"{reason(result)}",
            code=1,
        )
    return parse_rdb_check(result.stderr)


def start_redis(c: Context) -> None:
    """Bring Redis back after `SHUTDOWN NOSAVE`.

    On k3d nothing needs doing: Redis is the container's main process, so the container ends
    with it and the kubelet restarts it in the same pod (restartPolicy Always), on the same
    volume, loading the file. On the simulated cluster no container exists; `backup.redis_start_command`
    (run on this machine) starts the Redis server that plays the pod."""
    command = _settings.load(c).backup.redis_start_command
    if command:
        print(f"starting Redis: {command}")
        result = _command.run(c, ["sh", "-c", command], hide="both", warn=True, in_stream=False)
        if result.failed:
            raise Exit(
                f"backup.redis_start_command failed: {reason(result)}; Redis is stopped with the "
                "backup in place: start it by hand",
                code=1,
            )
    else:
        print("Redis stopped; waiting for the kubelet to restart its container")


def _wait_restarted(c: Context, old_run_id: str) -> dict[str, str]:
    """INFO once a new Redis process (another run_id) has finished loading."""
    s = _settings.load(c)
    started = time.monotonic()
    reported = 0
    last = "no answer yet"
    while True:
        try:
            info = redis_info(c)
        except Exit as stopped:  # the container is restarting: exec or connection fails
            info, last = {}, str(stopped.message)
        if info.get("run_id", old_run_id) != old_run_id and info.get("loading") == "0":
            return info
        waited = time.monotonic() - started
        if waited > s.backup.timeout:
            raise Exit(
                f"Redis did not come back within {s.backup.timeout}s ({last}); "
                "see `inv backends.status --only redis`",
                code=1,
            )
        if int(waited) >= reported + 2:
            reported = int(waited)
            print(f"  waiting for Redis to load the snapshot: {reported}s", flush=True)
        time.sleep(0.3)


# --- shared checks -------------------------------------------------------------------------------


def verify(c: Context, path: Path) -> str:
    """Checksum and format of a backup file; returns what it holds."""
    _local_only(c)
    digest = check_sum(path)
    if kind(path) == "postgres":
        return f"pg_dump archive, {archive_entries(c, path, digest)} entries"
    check_rdb(path)
    return "Redis RDB snapshot"


def _restore_target(c: Context, file: str) -> tuple[Path, Target, Settings]:
    """What every restore checks first: a local backup file, and a reachable cluster this
    project may change (ERRATA 20)."""
    _local_only(c)
    path = find(c, file)
    t = _command.require_reachable(c)
    _guard.require_owned(c, t)
    return path, t, _settings.load(c)


def _require_kind(path: Path, expected: str) -> None:
    found = kind(path)
    if found != expected:
        raise Exit(f"{path.name} is a {found} backup; use `inv backup.restore-{found}`", code=1)


def _ready_dir(c: Context) -> Path:
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
    return directory


def _local_only(c: Context) -> None:
    if _command.is_remote(c):
        raise Exit(
            "backups are files on the machine that runs the tasks; run the backup tasks there "
            "without -H",
            code=1,
        )
