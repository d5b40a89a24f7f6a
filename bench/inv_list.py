"""`inv --list` on this project against invoke listing an empty collection.

Run: .venv/bin/python bench/inv_list.py [runs]
Prints the median wall time of each and their ratio (target: at most 1.2x).
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
    print(f"invoke, empty collection: {baseline * 1000:.0f} ms (median)")
    print(f"inv --list, this project: {ours * 1000:.0f} ms (median)")
    print(f"ratio: {ours / baseline:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
