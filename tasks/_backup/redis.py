"""Redis: a fresh snapshot out of the pod (BGSAVE, waiting for LASTSAVE to move) and a restore
that stops Redis without saving over the file it loads (docs/guide-corrections.md, 16-17)."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from invoke import Context, Exit

from .._core import command as _command
from .._core import guard as _guard
from .._core import settings as _settings
from .._core import target as _target
from . import files as _files
from . import pods as _pods

RDB_FILE = "dump.rdb"


class RdbCount(NamedTuple):
    """What redis-check-rdb read from a snapshot."""

    keys: int
    expires: int
    already_expired: int


def redis_argv(c: Context, *command: str) -> list[str]:
    s = _settings.load(c)
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(s.backup.redis_port), *command]
    return _pods.in_pod(c, s.backup.redis_pod, *cli)


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
        why = reply if reply and not result.failed else _pods.reason(result)
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
    """BGSAVE, then wait until LASTSAVE moves past its value from before it (guide correction 16).

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
        raise Exit(
            f"BGSAVE failed in {s.backup.redis_pod}: {reply or _pods.reason(result)}", code=1
        )
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


def copy_out(source: str) -> str:
    """Shell (in the pod) that sends a checked copy of the snapshot `source` to standard output.

    Copy first, then check and send that copy: a later snapshot may replace the file meanwhile.
    The check (redis-check-rdb reads every key: seconds for millions) runs while the copy is
    sent; its report follows the stream on standard error, and a snapshot it refuses fails
    the command, so that nothing is kept."""
    send = _pods.counted('cat "$f"')
    return _pods.in_temp_file(
        f'cp {shlex.quote(source)} "$f" && {{ redis-check-rdb "$f" > "$f.check" 2>&1 & '
        f'check=$!; {send}; sent=$?; wait $check; checked=$?; cat "$f.check" >&2; '
        'rm -f "$f.check"; [ $sent -eq 0 ] && [ $checked -eq 0 ]; }'
    )


def backup_redis(c: Context) -> _files.Finished | None:
    """A fresh snapshot (guide correction 16), checked with redis-check-rdb in the pod, copied out."""
    started = time.monotonic()
    _pods.local_only(c)
    s = _settings.load(c)
    _target.require_reachable(c)
    _pods.require_pod(c, s.backup.redis_pod, "redis")
    directory = _files.ready_dir(c)
    snapshot(c)
    when = _files.stamp()
    partial = _files.partial_path(directory, "redis", when)
    copy = copy_out(f"{s.backup.redis_data_dir.rstrip('/')}/{RDB_FILE}")
    with _files.writing(partial):
        result = _pods.stream_out(c, _pods.in_pod(c, s.backup.redis_pod, "sh", "-c", copy), partial)
        if _guard.is_dry(c):
            return None
        if result.failed:
            raise Exit(
                f"copying the snapshot out of {s.backup.redis_pod} failed: {_pods.reason(result)}; "
                f"is backup.redis_data_dir ({s.backup.redis_data_dir}) Redis' dir?",
                code=1,
            )
        _pods.require_whole(result, partial, "copying the snapshot")
        count = parse_rdb_check(result.stderr)
        _files.check_rdb(partial)
        digest = _pods.Tapped.of(result).sha256 or _files.sha256(partial)  # hashed on the way
        final = _files.publish(partial, "redis", when, digest)
    return _files.Finished(
        final,
        final.stat().st_size,
        digest,
        time.monotonic() - started,
        _files.plural(count.keys, "key"),
    )


def restore_redis(c: Context, file: str, yes: bool) -> tuple[int, float] | None:
    """Put a verified snapshot in place and restart Redis without saving (guide correction 17).

    1. automatic snapshots off (`CONFIG SET save ""`, until the restart) and none running, so
       nothing overwrites the file once it is in place;
    2. the file goes into the pod, is checked (sha256, redis-check-rdb, which also reads its key
       count) and renamed over dump.rdb;
    3. `SHUTDOWN NOSAVE`: Redis stops without writing its memory over the file;
    4. `start_redis`: Redis starts again and loads the file;
    5. the key count must be the backup's."""
    started = time.monotonic()
    path, t, s = _pods.restore_target(c, file)
    digest = _files.check_sum(path)
    _files.require_kind(path, "redis")
    _files.check_rdb(path)
    pod = s.backup.redis_pod
    _pods.require_pod(c, pod, "redis")
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
    try:
        redis_cli(c, "CONFIG", "SET", "save", "", change=True)
        if not _guard.is_dry(c):
            _wait(c, time.monotonic() + s.backup.timeout, "the running snapshot", _idle)
        expected = _put_in_place(c, path, digest)
        run_id = redis_info(c, "server").get("run_id", "")
    except BaseException as error:
        # Redis still runs on its own data: write that back over whatever file is in place and
        # switch snapshots on again, so nothing at all has changed.
        redis_cli(c, "CONFIG", "SET", "save", saves[0] if saves else "", change=True)
        if not _guard.is_dry(c):
            _wait(c, time.monotonic() + s.backup.timeout, "the running snapshot", _idle)
            redis_cli(c, "SAVE", change=True)
        if isinstance(error, KeyboardInterrupt):
            raise Exit(
                f"interrupted before Redis was restarted: Redis in {pod} keeps its own data, "
                "saved back to its file, with snapshots on again; nothing was changed",
                code=130,
            ) from None
        raise
    try:
        # On k3d the container ends with Redis and this exec with it: its exit status means
        # nothing.
        _command.run(
            c, redis_argv(c, "SHUTDOWN", "NOSAVE"), hide="both", warn=True, in_stream=False
        )
        start_redis(c)
        if _guard.is_dry(c) or expected is None:
            return None
        info = _wait_restarted(c, run_id)
    except KeyboardInterrupt:
        raise Exit(
            f"interrupted after Redis in {pod} was stopped with {path.name} in place: Redis "
            "loads it when it starts (k3d: the kubelet restarts it; here: "
            "backup.redis_start_command); check with `inv backends.status --only redis`",
            code=130,
        ) from None
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
    script = _pods.receive(path, digest, f'redis-check-rdb "$f" >&2 && mv "$f" {target}', f=staged)
    result = _pods.stream_in(
        c, _pods.in_pod(c, s.backup.redis_pod, "sh", "-c", script, stdin=True), path
    )
    if _guard.is_dry(c):
        return None
    if result.failed:
        raise Exit(
            f"putting {path.name} into {s.backup.redis_pod} failed, nothing was changed: "
            f"{_pods.reason(result)}",
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
                f"backup.redis_start_command failed: {_pods.reason(result)}; Redis is stopped with the "
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
