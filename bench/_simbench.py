"""Shared plumbing for the simulated-cluster benchmarks (cluster_create.py, deploy.py,
guide_sequence.py): the loopback-only check, an isolated environment in a temp directory,
commands with hard timeouts, and a cluster that is deleted however the benchmark ends.

Nothing here is imported by the product; the benchmarks drive the real `inv` as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INV = str(BIN / "inv")
sys.path[:0] = [str(ROOT)]

ENV = "local"  # the guide's own cluster: prism-local, overlay `local`, 1 server + 2 agents
CLUSTER = "prism-local"
CONTEXT = f"kwok-{CLUSTER}"
CREDENTIALS = (
    "PRISM_MINIO_ROOT_USER=minio-user\nPRISM_MINIO_ROOT_PASSWORD=minio-pass\n"
    "PRISM_POSTGRES_USER=prism\nPRISM_POSTGRES_PASSWORD=pg-pass\nPRISM_POSTGRES_DB=prism\n"
    "PRISM_S3_ACCESS_KEY=s3-access\nPRISM_S3_SECRET_KEY=s3-secret\n"
)
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

# Hard limits: every command and every loop ends.
CREATE_TIMEOUT = 300
DELETE_TIMEOUT = 120
DEPLOY_TIMEOUT = 600
KUBECTL_TIMEOUT = 120
MAX_RUNS = 50


class BenchError(RuntimeError):
    pass


# --- safety ----------------------------------------------------------------------------------


def require_loopback_only(script: str) -> None:
    """Refuse to run anywhere but a loopback-only network namespace with `lo` up."""
    names = sorted(name for _, name in socket.if_nameindex())
    lo_up = False
    with suppress(OSError, ValueError):
        lo_up = bool(int(Path("/sys/class/net/lo/flags").read_text(), 16) & 0x1)
    if names != ["lo"] or not lo_up:
        state = f"interfaces {names}" + ("" if lo_up else ", lo down")
        sys.exit(
            f"refusing to run ({state}): needs a loopback-only network namespace; run: "
            f"unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/{script}'"
        )


def on_signals_exit() -> None:
    """SIGTERM / SIGHUP end the benchmark through its `finally` blocks (clusters get deleted)."""

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def runs_argument(default: int, args: Sequence[str] | None = None) -> int:
    """The optional [runs] positional argument, bounded."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="?", type=int, default=default)
    runs = parser.parse_known_args(args)[0].runs
    if not 1 <= runs <= MAX_RUNS:
        sys.exit(f"runs must be between 1 and {MAX_RUNS}")
    return int(runs)


# --- isolated environment --------------------------------------------------------------------


@dataclass
class Home:
    """One temp directory holding everything the simulated cluster and the tasks write."""

    path: Path

    @property
    def kubeconfig(self) -> str:
        return str(self.path / "kubeconfig")

    @property
    def kwok_workdir(self) -> Path:
        return self.path / "kwok"


def sim_bin_dir() -> str:
    from tasks._core import sim_binaries as _sim

    return str(_sim.bin_dir())


@contextmanager
def isolated_home() -> Iterator[Home]:
    """A temp home; this process's environment is replaced by the simulated cluster's (as
    tests/support/sim.py's sim_env, with PRISM_ENV=local), so every child sees the same settings.
    The directory is removed at the end (after the caller deleted its cluster)."""
    path = Path(tempfile.mkdtemp(prefix="prism-simbench-"))
    home = Home(path)
    saved = dict(os.environ)
    dotenv = path / "sim.env"
    dotenv.write_text(CREDENTIALS)
    for key in list(os.environ):
        # No PRISM_* of the user's (PRISM_SIM_HOME locates the binaries and stays), no KWOK_*
        # override of kwokctl's config, no proxy: every connection is to 127.0.0.1.
        if (
            (key.startswith("PRISM_") and key != "PRISM_SIM_HOME")
            or key.startswith("KWOK_")
            or key.lower() in PROXY_VARS
        ):
            del os.environ[key]
    os.environ.update(
        {
            "PRISM_ENV": ENV,
            "PRISM_CLUSTER_PROVIDER": "kwok",
            "PRISM_CLUSTER_KUBECONFIG": home.kubeconfig,
            "PRISM_DATA_DIR": str(path / "data"),
            "PRISM_DOTENV": str(dotenv),
            "KWOK_WORKDIR": str(home.kwok_workdir),
            "KUBECACHEDIR": str(path / "kube-cache"),
            "KUBECONFIG": home.kubeconfig,  # a stray kubectl never sees ~/.kube/config
            "NO_PROXY": "127.0.0.1,localhost",
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", ""), sim_bin_dir()]),
        }
    )
    try:
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(path, ignore_errors=True)


# --- commands --------------------------------------------------------------------------------


@dataclass
class Ran:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 15) -> str:
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(text[-lines:])


def run(argv: Sequence[str], timeout: float, input: str | None = None, check: bool = True) -> Ran:
    """Run one command in its own process group; on timeout (or ^C) kill that group only."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException as error:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(error, subprocess.TimeoutExpired):
            raise BenchError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from None
        raise
    ran = Ran(list(argv), proc.returncode, out, err, time.perf_counter() - started)
    if check and not ran.ok:
        raise BenchError(f"`{' '.join(argv)}` failed (exit {ran.returncode}):\n{ran.tail()}")
    return ran


def inv(*args: str, timeout: float = DEPLOY_TIMEOUT, check: bool = True) -> Ran:
    return run([INV, *args], timeout=timeout, check=check)


def kubectl(
    home: Home,
    *args: str,
    input: str | None = None,
    timeout: float = KUBECTL_TIMEOUT,
    check: bool = True,
) -> Ran:
    argv = ["kubectl", "--kubeconfig", home.kubeconfig, "--context", CONTEXT, *args]
    return run(argv, timeout=timeout, input=input, check=check)


def kubectl_json(home: Home, *args: str) -> Any:
    return json.loads(kubectl(home, *args, "-o", "json").stdout or "{}")


# --- the cluster -----------------------------------------------------------------------------


@dataclass
class Created:
    wall: float  # the whole `inv cluster.create` process
    reported: float  # the "ready in X.Xs" the task prints


READY = re.compile(r"cluster \S+ ready in ([0-9.]+)s")


def create_cluster(home: Home) -> Created:
    ran = inv("cluster.create", timeout=CREATE_TIMEOUT)
    match = READY.search(ran.stdout)
    if not match:
        raise BenchError(f"cluster.create did not report its time:\n{ran.tail()}")
    check_created(home)
    return Created(ran.seconds, float(match.group(1)))


def check_created(home: Home) -> None:
    """The endpoint of the measurement holds: every node Ready, and the API on 127.0.0.1."""
    import yaml

    config = yaml.safe_load(Path(home.kubeconfig).read_text())
    servers = {c["cluster"]["server"] for c in config.get("clusters", [])}
    if not servers or any(not s.startswith("https://127.0.0.1:") for s in servers):
        raise BenchError(f"kubeconfig points at {sorted(servers)}, not only 127.0.0.1")
    nodes = kubectl_json(home, "get", "nodes")["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n["status"].get("conditions", [])
        )
    ]
    if not nodes or len(ready) != len(nodes):
        raise BenchError(f"cluster.create returned with {len(ready)}/{len(nodes)} nodes Ready")


def delete_cluster(home: Home) -> float:
    """`inv cluster.delete`; if that fails, kwokctl directly; if components survive, end them
    by the pids kwokctl recorded (they are processes this benchmark started). Returns seconds."""
    started = time.perf_counter()
    problems = []
    try:
        ran = inv("cluster.delete", timeout=DELETE_TIMEOUT, check=False)
        if not ran.ok:
            problems.append(f"inv cluster.delete: exit {ran.returncode}: {ran.tail(3)}")
    except BenchError as error:
        problems.append(str(error))
    if cluster_dir(home).exists():
        try:
            run(
                [
                    "kwokctl",
                    "delete",
                    "cluster",
                    "--name",
                    CLUSTER,
                    "--kubeconfig",
                    home.kubeconfig,
                ],
                timeout=DELETE_TIMEOUT,
                check=False,
            )
        except BenchError as error:
            problems.append(str(error))
    killed = kill_leftovers(home)
    if killed:
        problems.append(f"ended leftover cluster processes {killed}")
    if problems:
        print("cleanup: " + "; ".join(problems), file=sys.stderr, flush=True)
    return time.perf_counter() - started


def cluster_dir(home: Home) -> Path:
    return home.kwok_workdir / "clusters" / CLUSTER


def kill_leftovers(home: Home) -> list[int]:
    """Components whose pid file is still there and whose command line is one of the
    simulated-cluster binaries of this run's cluster."""
    killed = []
    pids_dir = cluster_dir(home) / "pids"
    for pid_file in sorted(pids_dir.glob("*.pid")) if pids_dir.is_dir() else []:
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if str(home.path) in cmdline or sim_bin_dir() in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


@contextmanager
def fresh_cluster(home: Home) -> Iterator[Created]:
    """A newly created cluster, deleted when the block ends, however it ends."""
    try:
        yield create_cluster(home)
    finally:
        delete_cluster(home)


# --- reporting -------------------------------------------------------------------------------


class Deadline:
    """A budget for a whole benchmark: runs stop starting once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def spent(self) -> bool:
        return time.monotonic() >= self.end


def stats(samples: Sequence[float]) -> str:
    return (
        f"median {statistics.median(samples):6.2f}s  min {min(samples):6.2f}s  "
        f"max {max(samples):6.2f}s  (n={len(samples)}: "
        + ", ".join(f"{s:.2f}" for s in samples)
        + ")"
    )


def machine() -> str:
    load = os.getloadavg()
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu or 'unknown'}), load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def header(title: str) -> None:
    print(f"{title}\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)


def fill_postgres(postgres: Any, rows: int) -> str:
    """`rows` generated rows of about 100 bytes in table `bench`; the database's size, as
    Postgres prints it. The table is vacuumed and frozen once filled, so that no timed run
    pays for setting its hint bits or for an autovacuum that starts meanwhile (the first run
    after the fill was up to 50 % slower than the others)."""
    postgres.sql(
        "CREATE TABLE bench AS SELECT n AS id, md5(n::text) || md5((n * 7)::text) || "
        f"md5((n * 13)::text) AS body FROM generate_series(1, {rows}) AS n"
    )
    postgres.sql("VACUUM (FREEZE, ANALYZE) bench")
    return str(postgres.sql("SELECT pg_size_pretty(pg_database_size('prism'))"))
