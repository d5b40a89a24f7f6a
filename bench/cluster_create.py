"""`inv cluster.create` on the simulated cluster (kwok provider): from the command to every
node Ready (the task returns only after `kubectl wait --for=condition=Ready nodes --all`).

Run, from the project root, inside a loopback-only network namespace:

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/cluster_create.py [runs]'

Each run creates the guide's cluster (prism-local: 1 server, 2 agents) in a temp home, checks
that every node is Ready, and deletes it. Prints median/min/max (default 5 runs) of the whole
`inv cluster.create` process and of the time the task itself reports ("ready in X.Xs").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _simbench as sb

BUDGET = 20 * 60  # seconds: no new run starts after this


def main() -> None:
    sb.require_loopback_only("cluster_create.py")
    sb.on_signals_exit()
    runs = sb.runs_argument(5)
    deadline = sb.Deadline(BUDGET)
    sb.header(f"inv cluster.create, kwok provider, {runs} runs")
    walls, reported, deletes = [], [], []
    with sb.isolated_home() as home:
        for i in range(runs):
            if deadline.spent():
                print(f"budget of {BUDGET}s spent; stopping after {i} runs")
                break
            try:
                created = sb.create_cluster(home)
            finally:
                deletes.append(sb.delete_cluster(home))
            walls.append(created.wall)
            reported.append(created.reported)
            print(
                f"run {i + 1}: process {created.wall:.2f}s, reported {created.reported:.2f}s, "
                f"delete {deletes[-1]:.2f}s",
                flush=True,
            )
    if not walls:
        sys.exit("no run finished")
    print(f"inv cluster.create (whole process): {sb.stats(walls)}")
    print(f"time the task reports:             {sb.stats(reported)}")
    print(f"inv cluster.delete (between runs):  {sb.stats(deletes)}")
    print(f"after: {sb.machine()}")


if __name__ == "__main__":
    main()
