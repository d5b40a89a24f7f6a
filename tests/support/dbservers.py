"""Throwaway PostgreSQL and Redis servers on 127.0.0.1 for the backup tests.

They stand in for the pods' servers: on the simulated cluster `kubectl exec postgres-0 -- pg_dump
-h 127.0.0.1 -p <port>` runs on this machine and reaches them. A server that cannot start raises
(the test fails; it is never skipped). Install them with scripts/install-test-deps.sh.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD, DB = "prism", "pg-pass", "prism"  # as in tests/support/sim.py's .env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


@dataclass
class Postgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl) with role and database `prism`."""

    root: Path
    port: int
    bin: Path
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def sql(self, statement: str) -> str:
        """Run SQL as `prism` over TCP, as the backups connect; returns unaligned rows."""
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        argv = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER]
        argv += ["-d", DB, "-v", "ON_ERROR_STOP=1", "-Atqc", statement]
        return _run(argv, env=env).stdout.strip()

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server not installed; run scripts/install-test-deps.sh")
    bin_dir = Path(found[-1]).parent
    # initdb refuses to run as root: then the cluster belongs to the `postgres` user, in a
    # directory it can reach (pytest's tmp dirs are private to root).
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="prism-pg-"))
    if as_user:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = Postgres(root=root, port=free_port(), bin=bin_dir, as_user=as_user)
    pwfile = root / "pw"
    pwfile.write_text("superuser-pass\n")
    if as_user:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    try:
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", str(pwfile)]
        _run([*as_user, str(bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres", *auth])
        options = f"-h 127.0.0.1 -p {server.port} -k {root}"
        start = ["-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"]
        _run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(server.data), *start])
        setup = [str(bin_dir / "psql"), "-h", str(root), "-p", str(server.port), "-U", "postgres"]
        _run(
            [
                *setup,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'",
            ]
        )
        _run([*setup, "-c", f"CREATE DATABASE {DB} OWNER {USER}"])
    except BaseException:
        log = root / "log"
        detail = log.read_text() if log.is_file() else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start:\n{detail}") from None
    return server


@dataclass
class Redis:
    """A daemonized redis-server with automatic snapshots off; `start_command` starts it again
    after a restore's SHUTDOWN NOSAVE, on the same port and directory."""

    dir: Path
    port: int

    @property
    def start_command(self) -> str:
        return shlex.join(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.dir / "redis.pid"),
                "--logfile",
                str(self.dir / "redis.log"),
            ]
        )

    def cli(self, *args: str) -> str:
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args]
        return _run(argv).stdout.strip()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = subprocess.run(
                ["redis-cli", "-p", str(self.port), "PING"], capture_output=True, text=True
            )
            if reply.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        log = self.dir / "redis.log"
        raise RuntimeError(f"Redis did not start:\n{log.read_text() if log.is_file() else ''}")

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "SHUTDOWN", "NOSAVE"], capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def start_redis() -> Redis:
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server not installed; run scripts/install-test-deps.sh")
    server = Redis(dir=Path(tempfile.mkdtemp(prefix="prism-redis-")), port=free_port())
    _run(["sh", "-c", server.start_command])
    server.wait_ready()
    return server


def read_snapshot(path: Path, key: str) -> str:
    """A key's value in an RDB file, read by loading it into a scratch redis-server."""
    scratch = Redis(dir=Path(tempfile.mkdtemp(prefix="prism-rdb-")), port=free_port())
    shutil.copy(path, scratch.dir / "dump.rdb")
    try:
        _run(["sh", "-c", scratch.start_command])
        scratch.wait_ready()
        return scratch.cli("GET", key)
    finally:
        scratch.stop()
