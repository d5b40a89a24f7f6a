"""Time `backup.postgres/redis` and `backup.restore-postgres/redis` on the simulated cluster,
against real PostgreSQL and Redis servers (tests/support/dbservers.py) filled with generated data.

Needs the loopback-only network namespace the simulated cluster insists on:

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python bench/backup_times.py'
    ... bench/backup_times.py --rows 1000000 --keys 500000 --runs 5

Each line is one real `inv` run (process start included), timed from outside, beside the
plain tool a user would run instead on the same server (issue #15's yardstick): `pg_dump -Fc`
to a file, `pg_restore --single-transaction --clean --if-exists` of that file, and
`redis-cli --rdb` to a file. `backup.postgres` compresses at level 1 where `pg_dump -Fc` uses
6, so a second row compares it with `pg_dump -Fc -Z1`: the cost of the stream through
`kubectl exec` and of the verification on the way, at equal compression. Runs are interleaved (ours, then the plain tool) so load drift
hits both. Throughput is the database size over the median time; ratio = plain / ours (>= 0.9
is the target: ours at least 90 % of the plain tool's throughput).

For issue #15's 1 GB database: --rows 7500000 (Postgres reports the size it reached).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Postgres rows (~100 B each)")
    parser.add_argument("--keys", type=int, default=200_000, help="Redis keys (~100 B values)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each task")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import _simbench

    _simbench.require_loopback_only(__file__)

    from support import dbservers, sim
    from support.cli import INV

    home = Path(tempfile.mkdtemp(prefix="prism-bench-backup-"))
    started = contextlib.ExitStack()  # whatever started is stopped, however the run ends
    cluster = sim.start(home)
    started.callback(sim.stop, cluster)
    try:
        postgres = dbservers.start_postgres()
        started.callback(postgres.stop)
        redis = dbservers.start_redis()
        started.callback(redis.stop)
    except BaseException:
        started.close()
        raise
    env = {
        **os.environ,
        **cluster.env,
        "PRISM_BACKUP_DIR": str(home / "backups"),
        "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port),
        "PRISM_BACKUP_REDIS_PORT": str(redis.port),
        "PRISM_BACKUP_REDIS_DATA_DIR": str(redis.dir),
        "PRISM_BACKUP_REDIS_START_COMMAND": redis.start_command,
    }

    def plain(*argv: str, **extra: str) -> float:
        started = time.monotonic()
        result = subprocess.run(
            list(argv), env={**os.environ, **extra}, capture_output=True, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
        return time.monotonic() - started

    def inv(*task: str) -> tuple[float, str]:
        started = time.monotonic()
        result = subprocess.run(
            [INV, *task], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise SystemExit(f"inv {' '.join(task)} failed:\n{result.stdout}{result.stderr}")
        return time.monotonic() - started, result.stdout

    try:
        deployed = cluster.inv("backends.deploy", "--only", "redis,postgres")
        if deployed.returncode != 0:
            raise SystemExit(deployed.stdout + deployed.stderr)
        size = _simbench.fill_postgres(postgres, args.rows)
        redis.cli(
            "EVAL",
            "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'key:' .. i, string.rep('v', 100)) end",
            "0",
            str(args.keys),
        )
        print(f"postgres: {args.rows} rows ({size}); redis: {redis.cli('DBSIZE')} keys")
        pg = [str(postgres.bin / tool) for tool in ("pg_dump", "pg_restore")]
        where = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", dbservers.USER]
        secret = {"PGPASSWORD": dbservers.PASSWORD}
        plain_file = home / "plain"
        db_bytes = int(postgres.sql("SELECT pg_database_size('prism')"))
        peers = {
            "postgres": lambda: plain(pg[0], *where, "-Fc", "-f", str(plain_file), "prism", **secret),
            "postgres -Z1": lambda: plain(
                pg[0], *where, "-Fc", "-Z1", "-f", str(home / "plain-z1"), "prism", **secret
            ),
            "restore-postgres": lambda: plain(
                pg[1], *where, "--single-transaction", "--clean", "--if-exists", "-d", "prism",
                str(plain_file), **secret,
            ),
            "redis": lambda: plain(
                "redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "--rdb", str(plain_file)
            ),
        }  # fmt: skip
        print(f"{'task':<26}{'median s':>10}{'min s':>8}{'max s':>8}  {'plain median':>12}  ratio")

        def row(name: str, ours: list[float], theirs: list[float], extra: str) -> None:
            ratio = statistics.median(theirs) / statistics.median(ours) if theirs else None
            print(
                f"{name:<26}{statistics.median(ours):>10.2f}{min(ours):>8.2f}{max(ours):>8.2f}  "
                + (f"{statistics.median(theirs):>12.2f}  {ratio:.2f}" if ratio else f"{'-':>12}  -")
                + f"  {extra}"
            )

        for backend in ("postgres", "redis"):
            times, restores, plain_dumps, plain_restores, last = [], [], [], [], ("", "")
            same_level: list[float] = []
            for _ in range(args.runs):
                seconds, out = inv(f"backup.{backend}")
                times.append(seconds)
                last = re.search(rf"{backend} backup (\S+) \(([^,]+)", out).groups()  # type: ignore[union-attr,assignment]
                plain_dumps.append(peers[backend]())
                if backend == "postgres":
                    same_level.append(peers["postgres -Z1"]())
            for _ in range(args.runs):
                seconds, _out = inv(f"backup.restore-{backend}", "--file", last[0], "--yes")
                restores.append(seconds)
                if backend == "postgres":  # the archive the plain pg_dump left
                    plain_restores.append(peers["restore-postgres"]())
            size = f"file {last[1]}" + (
                f", database {db_bytes / 2**30:.2f} GiB" if backend == "postgres" else ""
            )
            row(f"backup.{backend}", times, plain_dumps, size)
            if same_level:
                row("  vs pg_dump -Fc -Z1", times, same_level, "(the same compression level)")
            row(f"restore-{backend}", restores, plain_restores, "")
    finally:
        started.close()


if __name__ == "__main__":
    main()
