"""Fresh `inv deploy.all` against the peer a user would pick instead: one
`kubectl apply --server-side` of the whole rendered overlay, then a wait until every workload
is rolled out (no ordering at all) — issue #15's yardstick.

Run, from the project root, inside a loopback-only network namespace:

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/deploy_vs_peer.py [runs]'

Per run (default 3), each on its own new simulated cluster (`inv cluster.create`, untimed):
  (a) ours - `inv deploy.all`, the whole process timed;
  (b) peer - the foundation objects given for free (Namespaces, the StorageClass, the
             simulated cluster's PersistentVolumes, the Secrets; applied untimed, as in the
             issue's measurement), then timed: one `kubectl apply --server-side` of every other
             object and `kubectl rollout status` of every workload, all at once.
Both render the `local` overlay (the guide's stack). Prints medians and the ratio ours/peer
(target: <= 1.1).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _simbench as sb

FREE_KINDS = {"Namespace", "StorageClass", "PersistentVolume", "Secret"}


def rendered() -> list[dict]:
    """What `deploy.all` sends, rendered in this process with the bench's settings."""
    from invoke import Config, Context

    import tasks
    from tasks._core import settings as _settings
    from tasks._core import target as _target
    from tasks._deploy import images as _images
    from tasks._deploy import render as _render

    config = Config()
    config.load_collection(tasks.ns.configuration())
    c = Context(config=config)
    _target.forget_all()
    s = _settings.load(c)
    objects = _render.plan_objects(c, s.overlay, _render.enabled_backends(s))
    # the peer applies the overlay as kustomize renders it: without the claims deploy.all
    # makes ahead (they are ours), with the configured images
    made = {_render.key(o) for o in _render.statefulset_claims(objects)}
    return [o for o in _images.follow_config(c, objects) if _render.key(o) not in made]


def peer(home: sb.Home, objects: list[dict]) -> float:
    from tasks._deploy import render as _render

    free = _render.apply_order([o for o in objects if o["kind"] in FREE_KINDS])
    rest = [o for o in objects if o["kind"] not in FREE_KINDS]
    sb.kubectl(home, "apply", "--server-side", "-f", "-", input=_render.to_yaml(free))
    workloads = [
        (o["metadata"]["namespace"], f"{o['kind'].lower()}/{o['metadata']['name']}")
        for o in rest
        if o["kind"] in ("Deployment", "StatefulSet")
    ]
    base = ["kubectl", "--kubeconfig", home.kubeconfig, "--context", sb.CONTEXT]
    started = time.perf_counter()
    sb.kubectl(home, "apply", "--server-side", "-f", "-", input=_render.to_yaml(rest))
    waits = [
        subprocess.Popen([*base, "-n", ns, "rollout", "status", name, "--timeout=300s"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for ns, name in workloads
    ]  # fmt: skip
    failed = [w for w in waits if w.wait() != 0]
    seconds = time.perf_counter() - started
    if failed:
        raise sb.BenchError(f"{len(failed)} workloads never rolled out in the peer run")
    return seconds


def main() -> None:
    sb.require_loopback_only(__file__)
    sb.on_signals_exit()
    runs = sb.runs_argument(3)
    sb.header("fresh deploy.all vs one server-side apply + rollout status of everything")
    ours: list[float] = []
    theirs: list[float] = []
    with sb.isolated_home() as home:
        objects = rendered()
        for _ in range(runs):
            with sb.fresh_cluster(home):
                ours.append(sb.inv("deploy.all").seconds)
            with sb.fresh_cluster(home):
                theirs.append(peer(home, objects))
    print(f"ours (inv deploy.all, process): {sb.stats(ours)}")
    print(f"peer (apply + rollout status):  {sb.stats(theirs)}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"ratio ours/peer (medians): {ratio:.2f} (target <= 1.1)")
    print(f"after: {sb.machine()}")


if __name__ == "__main__":
    main()
