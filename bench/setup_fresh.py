"""`scripts/setup` on a fresh machine: where its time goes, with the network taken out.

A fresh machine pays for two things: downloads (PyPI, the Go module proxy) and work (pip's
installs, the Go builds). The two are measured apart:

  .venv/bin/python bench/setup_fresh.py prepare
      Outside any namespace: downloads, timed, into --dir (default /tmp/prism-setup-bench):
      the wheels `pip install -e '.[test]'` installs, and every Go module the builds read
      (scripts/build-sim-binaries.sh --download-only, build-go-tool.sh --download-only,
      fetch-k3d-schema.sh), into an empty module cache.

  unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/setup_fresh.py run'
      Inside a loopback-only namespace: scripts/setup of a copy of this checkout (or of --rev)
      as a stranger runs it - empty HOME, pip cache, Go module and build caches, PRISM_SIM_HOME -
      with pip and Go served from --dir instead of the network (PIP_NO_INDEX + PIP_FIND_LINKS,
      GOPROXY=file://...). Prints each step's time as setup reports it and the total. With
      --rev, modules that revision reads and prepare did not fetch come from this machine's
      own Go module cache (a second file:// proxy).

The run still unpacks every module from the local proxy into its module cache, so its times are
the fresh machine's minus the transfer. Each run is a cold build: minutes of both CPUs.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

from _simbench import header, require_loopback_only

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
DEFAULT_DIR = Path("/tmp/prism-setup-bench")
# What setup prints about its steps, and build-sim-binaries.sh about its parts (the tools'
# builds are one step each: setup's own line says it).
STEP_LINES = re.compile(
    r"^(?:setup: (?P<step>[^:]+): done in (?P<t1>[\d.]+)s"
    r"|\[build-sim\] built (?P<bin>.+) in (?P<t2>\d+)s"
    r"|\[build-sim\] (?P<resolved>resolved) in (?P<t3>\d+)s)"
)


def step(line: re.Match[str]) -> tuple[str, float]:
    """(name, seconds) of a STEP_LINES match; the build script's parts are indented."""
    found = {k: v for k, v in line.groupdict().items() if v}
    took = float(next(v for k, v in found.items() if re.fullmatch(r"t\d", k)))
    kind, name = next((k, v) for k, v in found.items() if not re.fullmatch(r"t\d", k))
    label = {
        "step": name,
        "bin": f"  build {name}",
        "resolved": "  resolve the kube module's build list",
    }[kind]
    return label, took


def timed(label: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, text=True, stderr=subprocess.PIPE
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    print(f"  {label:<52} {took:7.1f} s", flush=True)
    return took


def remove(path: Path) -> None:
    """rm -rf, also of Go's module cache (its files and directories are read-only)."""
    if path.exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        shutil.rmtree(path)


def size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return f"{total / 2**20:,.0f} MiB"


def prepare(where: Path) -> None:
    """Download everything setup needs into `where`, timing pip's and Go's downloads."""
    header("setup_fresh.py prepare: the downloads of a fresh setup")
    remove(where)
    wheels, modcache = where / "wheels", where / "gomodcache"
    wheels.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="prism-setup-prepare."))
    env = {
        **os.environ,
        "GOMODCACHE": str(modcache),
        "GOCACHE": str(scratch / "gocache"),
        "PRISM_SIM_HOME": str(scratch / "sim"),
        "GOFLAGS": "",
        "GOPROXY": "https://proxy.golang.org,direct",
    }
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"][
        "requires"
    ]
    try:
        print("pip (no cache):")
        pip = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-cache-dir",
            "--quiet",
            "-d",
            str(wheels),
        ]
        pip_s = timed(
            "pip download pip, the build backend, '.[test]'",
            [*pip, "pip", *build_requires, f"{ROOT}[test]"],
            env,
        )
        print("Go module proxy (empty module cache):")
        go_s = timed(
            "build-sim-binaries.sh --download-only",
            [str(SCRIPTS / "build-sim-binaries.sh"), "--download-only"],
            env,
        )
        for tool in tools():
            go_s += timed(
                f"build-go-tool.sh --download-only {tool}",
                [str(SCRIPTS / "build-go-tool.sh"), "--download-only", tool],
                env,
            )
        go_s += timed("fetch-k3d-schema.sh", [str(SCRIPTS / "fetch-k3d-schema.sh")], env)
    finally:
        remove(scratch)
    # The project's own sdist is rebuilt from the checkout by the run: keep only dependencies.
    for own in wheels.glob("prism_tasks-*"):
        own.unlink()
    print(
        f"downloads: pip {pip_s:.1f} s ({size(wheels)}), Go {go_s:.1f} s "
        f"({size(modcache / 'cache' / 'download')} as fetched, {size(modcache)} unpacked)"
    )
    print(
        f"prepared {where}; now: unshare --net bash -c 'ip link set lo up; "
        f".venv/bin/python bench/setup_fresh.py run'"
    )


def tools() -> list[str]:
    pins = (SCRIPTS / "tool-versions.env").read_text().splitlines()
    return [
        line.split("=", 1)[0].lower().replace("_", "-")
        for line in pins
        if re.match(r"^[A-Z_]+=", line)
    ]


def checkout(into: Path, rev: str | None) -> None:
    """The files of `rev`, or of the working tree (tracked and untracked, not ignored)."""
    if rev:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True
        ).stdout
        into.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="tar")
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def run(where: Path, rev: str | None, keep: bool) -> None:
    require_loopback_only("setup_fresh.py run")
    wheels, proxy = where / "wheels", where / "gomodcache" / "cache" / "download"
    if not wheels.is_dir() or not proxy.is_dir():
        sys.exit(
            f"nothing prepared in {where}: run `.venv/bin/python bench/setup_fresh.py prepare` "
            "first, outside the namespace (it downloads)"
        )
    header(f"setup_fresh.py run: scripts/setup of {rev or 'the working tree'}, from {where}")
    proxies = [proxy]
    if rev:
        # Another revision's builds may read other module versions than prepare fetched (with
        # this tree's scripts): those come from this machine's own module cache.
        mine = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        )
        proxies.append(Path(mine.stdout.strip()) / "cache" / "download")
        print(f"modules not in {proxy} come from {proxies[-1]}")
    scratch = Path(tempfile.mkdtemp(prefix="prism-setup-fresh."))
    tree, home = scratch / "checkout", scratch / "home"
    home.mkdir()
    checkout(tree, rev)
    keep_vars = {"PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL"}
    env = {k: v for k, v in os.environ.items() if k in keep_vars}
    env |= {
        "HOME": str(home),
        "PRISM_SIM_HOME": str(scratch / "sim"),
        "GOMODCACHE": str(home / "go" / "pkg" / "mod"),
        "GOCACHE": str(home / ".cache" / "go-build"),
        "GOPROXY": ",".join(f"file://{source}" for source in proxies),
        "GOSUMDB": "off",  # the proxy is our own download; sum.golang.org is not reachable here
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
    }
    steps: list[tuple[str, float]] = []
    started = time.perf_counter()
    try:
        with subprocess.Popen(
            [str(tree / "scripts" / "setup")],
            cwd=tree,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as setup:
            assert setup.stdout is not None
            for line in setup.stdout:
                print(f"  | {line}", end="", flush=True)
                if m := STEP_LINES.match(line):
                    steps.append(step(m))
        wall = time.perf_counter() - started
        if setup.returncode != 0:
            sys.exit(f"scripts/setup failed (exit {setup.returncode}) after {wall:.0f} s")
        print("\nstep                                            seconds")
        for name, took in steps:
            print(f"  {name:<44} {took:8.1f}")
        print(f"  {'total (wall)':<44} {wall:8.1f}")
        print(
            f"module cache {size(home / 'go' / 'pkg' / 'mod')}, build cache "
            f"{size(home / '.cache' / 'go-build')}, simulated-cluster binaries "
            f"{size(scratch / 'sim')}; load after: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    finally:
        if keep:
            print(f"kept {scratch} (PRISM_SIM_HOME={scratch / 'sim'})")
        else:
            remove(scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what",
        choices=["prepare", "run"],
        help="prepare: download (needs the network); run: set up from the download",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where prepare puts the downloads (default {DEFAULT_DIR})",
    )
    parser.add_argument("--rev", help="run: set up this git revision instead of the working tree")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="run: keep the scratch directory (its built binaries) afterwards",
    )
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.dir)
    else:
        run(args.dir, args.rev, args.keep)


if __name__ == "__main__":
    main()
