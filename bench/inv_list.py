"""`inv --list` on this project against invoke listing an empty collection.

Run: .venv/bin/python bench/inv_list.py [runs]
Prints the median wall time of each and their ratio (target: at most 1.2x).

Both sides should start from bytecode: invoke's was compiled by pip, tasks/ by scripts/setup.
With PYTHONDONTWRITEBYTECODE=1 (set on some machines) an edited tasks/ is compiled again on every
start, about 10 ms here; the benchmark says when that is the case.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def median_seconds(argv: list[str], cwd: Path, runs: int, check: bool = True) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=check, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


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
    with tempfile.TemporaryDirectory() as empty:
        Path(empty, "tasks.py").write_text("from invoke import Collection\n\nns = Collection()\n")
        # invoke's own program, not this project's `inv` wrapper, lists the empty collection.
        baseline_argv = [str(BIN / "python"), "-m", "invoke", "--list"]
        # invoke exits 1 on an empty collection ("No tasks found"); only its time matters here.
        median_seconds(baseline_argv, Path(empty), 2, check=False)  # warm the file cache
        baseline = median_seconds(baseline_argv, Path(empty), runs, check=False)
    ours_argv = [str(BIN / "inv"), "--list"]
    median_seconds(ours_argv, ROOT, 2)
    ours = median_seconds(ours_argv, ROOT, runs)
    print(f"runs: {runs}")
    stale = stale_bytecode()
    if stale:
        print(
            f"note: no current bytecode for {', '.join(stale)}; "
            "`.venv/bin/python -m compileall -q tasks` (scripts/setup does it)"
        )
    print(f"invoke, empty collection: {baseline * 1000:.0f} ms (median)")
    print(f"inv --list, this project: {ours * 1000:.0f} ms (median)")
    print(f"ratio: {ours / baseline:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
