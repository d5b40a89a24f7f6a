"""`deploy.all` at 1x, 5x and 20x the pattern runners, against the unordered peer (issue #15).

Run, from the project root, inside a loopback-only network namespace:

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/deploy_scale.py [runs] [--scales 1,5,20]'

Each scale is a generated overlay (a temp directory, `PRISM_DEPLOY_OVERLAY`): the `local`
overlay as kustomize renders it, plus N-1 copies of each of the four pattern runners (their
workload, headless Service, PodDisruptionBudget and NetworkPolicy, renamed `<runner>-02`...), so
20x is 80 runner workloads; all five backends are on (Kafka included). Per run and scale:
  (a) fresh  - a new cluster, `inv deploy.all` timed as a whole process, with the process's peak
               resident memory (VmHWM from /proc, sampled every 20 ms until it exits);
  (b) re-run - once every object's resourceVersion has held still for 1 s, `inv deploy.all`
               again, timed (and checked to say "nothing changed");
  (c) peer   - another new cluster, foundation objects untimed, then one
               `kubectl apply --server-side` of everything else and a rollout wait of every
               workload (bench/deploy_vs_peer.py's peer).
Prints per scale: medians, ratio fresh/peer (target <= 1.1), re-run (target < 1.5 s at 20x,
< 0.5 s at 1x), peak memory (target < 200 MB), and how time grows with the scale.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _simbench as sb
from deploy_vs_peer import peer, rendered

RUNNERS = ("keyvalue-runner", "consumer-runner", "producer-runner", "mailbox-runner")
BACKENDS = "redis,nats,minio,postgres,kafka"


def renamed(obj: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of one runner object under another name: its own pods, selector, Service,
    budget and policy, so the copies never share pods with the original."""
    clone = copy.deepcopy(obj)
    clone["metadata"]["name"] = new
    spec = clone.get("spec") or {}
    for labels in (
        clone["metadata"].get("labels"),
        (spec.get("selector") or {}).get("matchLabels"),
        spec.get("selector") if clone["kind"] == "Service" else None,
        ((spec.get("template") or {}).get("metadata") or {}).get("labels"),
        (spec.get("podSelector") or {}).get("matchLabels"),
    ):
        if labels and labels.get("app") == old:
            labels["app"] = new
    if spec.get("serviceName") == old:
        spec["serviceName"] = new
    return clone


def scaled_overlay(directory: Path, scale: int) -> Path:
    """The generated overlay for `scale` (1 = the local overlay as it is)."""
    import yaml

    text = subprocess.run(
        ["kubectl", "kustomize", str(sb.ROOT / "manifests" / "overlays" / "local")],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    objects = [o for o in yaml.safe_load_all(text) if o]
    copies = [
        renamed(obj, obj["metadata"]["name"], f"{obj['metadata']['name']}-{n:02d}")
        for obj in objects
        if obj["metadata"].get("namespace") == "prism" and obj["metadata"]["name"] in RUNNERS
        for n in range(2, scale + 1)
    ]
    out = directory / f"scale-{scale}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "objects.yaml").write_text(yaml.safe_dump_all(objects + copies, sort_keys=False))
    (out / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [objects.yaml]\n"
    )
    return out


def timed_with_memory(*args: str) -> tuple[float, int, str]:
    """`inv args`, timed, with its peak resident memory in bytes."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sb.INV, *args], cwd=sb.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=sb.DEPLOY_TIMEOUT)
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        raise sb.BenchError(f"inv {' '.join(args)} failed:\n{(out + err)[-2000:]}")
    return seconds, peak[0], out


def settled(home: sb.Home) -> None:
    """Until two resourceVersion snapshots 1 s apart agree (status updates have stopped)."""
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        now = sb.kubectl(home, "get", "all,pvc,pdb,networkpolicy,ingress,hpa", "-A",
                         "-o", "jsonpath={range .items[*]}{.metadata.resourceVersion} {end}").stdout  # fmt: skip
        if now == last:
            return
        last = now
        time.sleep(1)
    raise sb.BenchError("the cluster never settled after the deploy")


def main() -> None:
    sb.require_loopback_only(__file__)
    sb.on_signals_exit()
    runs = sb.runs_argument(3)
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", default="1,5,20")
    scales = [int(s) for s in parser.parse_known_args()[0].scales.split(",")]
    sb.header(f"deploy.all at scales {scales} (runner copies), five backends, vs the peer")
    results: dict[int, dict[str, list[float]]] = {}
    with sb.isolated_home() as home, tempfile.TemporaryDirectory() as generated:
        os.environ["PRISM_BACKENDS_ENABLED"] = BACKENDS
        for scale in scales:
            os.environ["PRISM_DEPLOY_OVERLAY"] = str(scaled_overlay(Path(generated), scale))
            objects = rendered()
            workloads = sum(o["kind"] in ("Deployment", "StatefulSet") for o in objects)
            print(f"scale {scale}x: {len(objects)} objects, {workloads} workloads", flush=True)
            got = results[scale] = {"fresh": [], "rerun": [], "peer": [], "memory": []}
            for _ in range(runs):
                with sb.fresh_cluster(home):
                    seconds, peak, _out = timed_with_memory("deploy.all")
                    got["fresh"].append(seconds)
                    got["memory"].append(peak / 2**20)
                    settled(home)
                    seconds, peak, out = timed_with_memory("deploy.all")
                    if "nothing changed" not in out:
                        raise sb.BenchError(f"the re-run changed something:\n{out[-2000:]}")
                    got["rerun"].append(seconds)
                    got["memory"].append(peak / 2**20)
                with sb.fresh_cluster(home):
                    got["peer"].append(peer(home, objects))
            ratio = statistics.median(got["fresh"]) / statistics.median(got["peer"])
            print(f"  fresh deploy.all: {sb.stats(got['fresh'])}")
            print(f"  peer:             {sb.stats(got['peer'])}")
            print(f"  re-run:           {sb.stats(got['rerun'])}")
            print(f"  ratio fresh/peer (medians) {ratio:.2f}; peak memory of inv "
                  f"{max(got['memory']):.0f} MB (median {statistics.median(got['memory']):.0f})",
                  flush=True)  # fmt: skip
    base = results[scales[0]]
    print("growth against the first scale (median fresh / re-run / peer):")
    for scale in scales:
        row = [statistics.median(results[scale][k]) / statistics.median(base[k])
               for k in ("fresh", "rerun", "peer")]  # fmt: skip
        print(f"  {scale:3d}x: " + " / ".join(f"{r:.2f}x" for r in row))
    print(f"after: {sb.machine()}")


if __name__ == "__main__":
    main()
