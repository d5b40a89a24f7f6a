"""`inv --list` on this project against invoke listing an empty collection.

Run: .venv/bin/python bench/inv_list.py [runs]
Runs the two alternately and prints the wall times of each (median, min, max), the ratio of
the medians (target: at most 1.2x), the median of each round's ratio, and the load average
before and after.

Both sides should start from bytecode: invoke's was compiled by pip, tasks/ by scripts/setup.
With PYTHONDONTWRITEBYTECODE=1 (set on some machines) an edited tasks/ is compiled again on every
start, about 10 ms here; the benchmark says when that is the case.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def seconds(argv: list[str], cwd: Path, check: bool = True) -> float:
    """Wall seconds of one run of `argv`."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=check, capture_output=True)
    return time.perf_counter() - started


def spread(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{statistics.median(ms):.0f} ms (median; min {min(ms):.0f}, max {max(ms):.0f})"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stale_bytecode() -> list[str]:
    """Modules of tasks/ whose cached bytecode is missing or older than the source."""
    import importlib.util

    stale = []
    for source in sorted((ROOT / "tasks").glob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
            stale.append(source.name)
    return stale


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    load_before = load()
    baseline: list[float] = []
    ours: list[float] = []
    ours_argv = [str(BIN / "inv"), "--list"]
    with tempfile.TemporaryDirectory() as empty:
        Path(empty, "tasks.py").write_text("from invoke import Collection\n\nns = Collection()\n")
        # invoke's own program, not this project's `inv` wrapper, lists the empty collection.
        baseline_argv = [str(BIN / "python"), "-m", "invoke", "--list"]
        # Alternating the two spreads whatever else the machine does over both alike. The
        # first two rounds only warm the file cache. invoke exits 1 on an empty collection
        # ("No tasks found"); only its time matters here.
        for i in range(runs + 2):
            base, own = seconds(baseline_argv, Path(empty), check=False), seconds(ours_argv, ROOT)
            if i >= 2:
                baseline.append(base)
                ours.append(own)
    print(f"runs: {runs}; load average {load_before} before, {load()} after")
    stale = stale_bytecode()
    if stale:
        print(
            f"note: no current bytecode for {', '.join(stale)}; "
            "`.venv/bin/python -m compileall -q tasks` (scripts/setup does it)"
        )
    print(f"invoke, empty collection: {spread(baseline)}")
    print(f"inv --list, this project: {spread(ours)}")
    ratio = statistics.median(ours) / statistics.median(baseline)
    print(f"ratio of the medians: {ratio:.2f}x (target <= 1.2x)")
    # each round's two runs saw about the same load: their ratio is steadier on a busy machine
    paired = statistics.median(o / b for o, b in zip(ours, baseline, strict=True))
    print(f"median of the rounds' ratios: {paired:.2f}x")


if __name__ == "__main__":
    main()
