"""Where the time of `backup.postgres` and `backup.restore-postgres` goes, part by part, beside
the plain tools, on the simulated cluster against a real PostgreSQL (tests/support/dbservers.py)
filled with generated rows. Needs the loopback-only network namespace:

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python bench/backup_parts.py'
    ... bench/backup_parts.py --rows 2000000

One run of each line, timed from outside (process start included):
  - `inv backup.postgres`, then the checks it runs on the archive after the stream, alone:
    `pg_restore --list`, `pg_restore -f /dev/null` (reads every block), `sha256sum`;
  - plain `pg_dump -Fc` to a file, and the same teed into `pg_restore -f /dev/null` (what
    verifying while streaming would cost);
  - then --restores rounds (default 3) of: `inv backup.restore-postgres`, plain
    `pg_restore --single-transaction --clean --if-exists -d`, and the script the restore runs
    in the pod, run here without kubectl (every schema dropped, then `pg_restore -f -` into one
    psql transaction while sha256sum reads the same bytes): the path a restore that replaces
    the whole database takes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="Postgres rows (~100 B each)")
    parser.add_argument("--restores", type=int, default=3, help="rounds of the three restores")
    args = parser.parse_args()
    import _simbench

    _simbench.require_loopback_only(__file__)

    from support import dbservers, sim
    from support.cli import INV

    from tasks._backup.files import sha256
    from tasks._backup.postgres import _replace

    home = Path(tempfile.mkdtemp(prefix="prism-bench-parts-"))
    with contextlib.ExitStack() as started:  # whatever started is stopped, however it ends
        cluster = sim.start(home)
        started.callback(sim.stop, cluster)
        postgres = dbservers.start_postgres()
        started.callback(postgres.stop)
        env = {
            **os.environ,
            **cluster.env,
            "PRISM_BACKUP_DIR": str(home / "backups"),
            "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port),
            "PGPASSWORD": dbservers.PASSWORD,
        }
        deployed = cluster.inv("backends.deploy", "--only", "postgres")
        if deployed.returncode != 0:
            raise SystemExit(deployed.stdout + deployed.stderr)
        size = _simbench.fill_postgres(postgres, args.rows)
        print(f"postgres: {args.rows} rows ({size}); {_simbench.machine()}", flush=True)

        def timed(label: str, command: str | list[str]) -> None:
            begun = time.monotonic()
            ran = subprocess.run(
                command, shell=isinstance(command, str), env=env, capture_output=True,
                text=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if ran.returncode != 0:
                raise SystemExit(f"{label} failed:\n{ran.stdout}{ran.stderr}")
            print(f"{label:<58}{time.monotonic() - begun:8.2f} s", flush=True)

        pg = postgres.bin
        where = f"-h 127.0.0.1 -p {postgres.port} -U {dbservers.USER}"
        plain = home / "plain.dump"
        timed("inv backup.postgres", [INV, "backup.postgres"])
        (dump,) = (home / "backups").glob("postgres-*.dump")
        timed("  pg_restore --list (after the stream)", f"pg_restore --list {dump} > /dev/null")
        timed(
            "  pg_restore -f /dev/null (after the stream)",
            ["pg_restore", "-f", "/dev/null", str(dump)],
        )
        timed("  sha256sum (after the stream)", ["sha256sum", str(dump)])
        timed("plain pg_dump -Fc", f"{pg}/pg_dump {where} -Fc -f {plain} prism")
        timed(
            "plain pg_dump -Fc, teed into pg_restore -f /dev/null",
            f"{pg}/pg_dump {where} -Fc prism | tee {plain}.2 | pg_restore -f /dev/null",
        )
        # the very script the restore runs in the pod, here on this machine without kubectl,
        # reading the plain archive (the checksum is taken before, not timed)
        replace = _replace(plain.stat().st_size, sha256(plain), f"{pg}/psql -X {where} -q -d prism")
        for _ in range(args.restores):  # interleaved, so that load drift hits all three
            timed(
                "inv backup.restore-postgres",
                [INV, "backup.restore-postgres", "--file", dump.name, "--yes"],
            )
            timed(
                "plain pg_restore --single-transaction --clean -d",
                f"{pg}/pg_restore {where} --single-transaction --clean --if-exists -d prism {plain}",
            )
            timed(
                "the restore's own script (checksum included), without kubectl",
                f"sh -c {shlex.quote(replace)} < {plain}",
            )
        print(f"after: {_simbench.machine()}")


if __name__ == "__main__":
    main()
