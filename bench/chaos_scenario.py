"""The README's sample chaos run, reproducible: a fresh simulated cluster, the ci overlay's
stack deployed, then `inv chaos.run` of the scenario below; prints the scenario's whole output
(timeline on standard error, then the recovery table and details) and its wall time. Needs the
loopback-only network namespace:

    unshare --net -- bash -c 'ip link set lo up && .venv/bin/python bench/chaos_scenario.py'

Output of a run: docs/chaos-sample-run.txt.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

SCENARIO = """\
pause: 5s
drills:
  - drain: {node: kwok-prism-ci-agent-0}
  - backend-outage: {backend: redis, for: 30s}
  - node-down: {node: kwok-prism-ci-agent-1, for: 60s}
  - api-restart: {}
"""


def main() -> None:
    import _simbench

    _simbench.require_loopback_only(__file__)
    from support import sim
    from support.cli import INV

    home = Path(tempfile.mkdtemp(prefix="prism-bench-chaos-"))
    with contextlib.ExitStack() as started:
        cluster = sim.start(home)
        started.callback(sim.stop, cluster)
        deployed = cluster.inv("deploy.all", "--timeout", "120")
        if deployed.returncode != 0:
            raise SystemExit(deployed.stdout + deployed.stderr)
        scenario = home / "drills.yaml"
        scenario.write_text(SCENARIO)
        print(f"# {_simbench.machine()}\n# drills.yaml:\n{SCENARIO}", flush=True)
        begun = time.monotonic()
        ran = subprocess.run(
            [INV, "chaos.run", "--scenario", str(scenario)],
            env={**os.environ, **cluster.env, "NO_COLOR": "1"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        print(ran.stdout.replace(str(home), "<home>"), end="")
        print(f"# exit {ran.returncode}, {time.monotonic() - begun:.1f} s; {_simbench.machine()}")


if __name__ == "__main__":
    main()
