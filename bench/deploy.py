"""`inv deploy.all` on a fresh simulated cluster, again on the deployed one, and the guide's own
sequence (guide_sequence.py) on the same kind of fresh cluster.

Run, from the project root, inside a loopback-only network namespace:

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/deploy.py [runs]'

Per run (default 3), interleaved so that load drifts hit both alike:
  (a) fresh   - new cluster (`inv cluster.create`, not timed), then `inv deploy.all`, timed as
                a whole process (it renders the `local` overlay: the guide's cluster);
  (b) re-run  - once the cluster has settled, `inv deploy.all` again, timed; the resourceVersion
                of every object in namespaces prism and prism-backends, of the two Namespaces
                and of every PersistentVolume and StorageClass is recorded before and after and
                must be equal (Events are listed apart: they are a log, not state);
  (c) guide   - another new cluster, the guide's heredocs one after the other, each workload
                followed by `kubectl rollout status`.
Clusters are deleted after each part, also on failure. Prints medians and the ratios.
Targets: fresh well under half of the guide; re-run under 2 s.

--profile DIR  after the runs, on one more fresh cluster (not measured): a fresh deploy and a
               re-run with every kubectl/kwokctl they start logged (DIR/*-commands.txt), a
               re-run under cProfile (DIR/rerun.prof) and one under -X importtime.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _simbench as sb
import guide_sequence

BUDGET = 40 * 60  # seconds: no new run starts after this
SETTLE_TRIES = 15  # snapshots ~1 s apart until two in a row agree
NAMESPACES = ("prism", "prism-backends")
EVENT_KINDS = {("v1", "Event"), ("events.k8s.io/v1", "Event")}
NOTHING_CHANGED = re.compile(r"nothing changed: .*\((\d+\.\d)s\)")
TOTAL = re.compile(r"^total\s+([0-9.]+)", re.M)

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


def reported_total(ran: sb.Ran) -> float:
    """The time the task itself reports: its summary table's total, or the "nothing changed"
    line of a no-op run."""
    match = TOTAL.search(ran.stdout) or NOTHING_CHANGED.search(ran.stdout)
    return float(match.group(1)) if match else float("nan")


# --- the resourceVersion proof ---------------------------------------------------------------


def listable_namespaced(home: sb.Home) -> list[str]:
    ran = sb.kubectl(home, "api-resources", "--namespaced=true", "--verbs=list", "-o", "name")
    return sorted(set(ran.stdout.split()))


def versions(home: sb.Home, resources: list[str]) -> dict[Key, str]:
    """resourceVersion of every object in the prism namespaces (every listable type), the two
    Namespaces, and every PersistentVolume and StorageClass."""
    found: dict[Key, str] = {}

    def add(items: list[dict[str, Any]]) -> None:
        for item in items:
            meta = item["metadata"]
            key = (item["apiVersion"], item["kind"], meta.get("namespace", ""), meta["name"])
            found[key] = meta["resourceVersion"]

    for namespace in NAMESPACES:
        add(sb.kubectl_json(home, "get", ",".join(resources), "-n", namespace)["items"])
    cluster = sb.kubectl_json(home, "get", "persistentvolumes,storageclasses,namespaces")["items"]
    add([o for o in cluster if o["kind"] != "Namespace" or o["metadata"]["name"] in NAMESPACES])
    return found


def state(snapshot: dict[Key, str]) -> dict[Key, str]:
    return {k: v for k, v in snapshot.items() if (k[0], k[1]) not in EVENT_KINDS}


def settle(home: sb.Home, resources: list[str]) -> tuple[dict[Key, str], float, set[str]]:
    """Wait (bounded) until the controllers are done: two snapshots ~1 s apart agree.
    Returns the last snapshot, the seconds waited and the kinds that changed meanwhile."""
    started = time.perf_counter()
    previous = versions(home, resources)
    seen: set[str] = set()
    for _ in range(SETTLE_TRIES):
        time.sleep(1)
        current = versions(home, resources)
        a, b = state(previous), state(current)
        changed = {k[1] for k in set(a) | set(b) if a.get(k) != b.get(k)}
        if not changed:
            return current, time.perf_counter() - started, seen
        seen |= changed
        previous = current
    raise sb.BenchError(f"cluster still changing after {SETTLE_TRIES} snapshots: {sorted(seen)}")


def compare(before: dict[Key, str], after: dict[Key, str]) -> tuple[bool, list[str]]:
    lines = []
    a, b = state(before), state(after)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            name = f"{key[1]} {key[2] + '/' if key[2] else ''}{key[3]}"
            lines.append(f"    CHANGED {name}: {a.get(key, 'absent')} -> {b.get(key, 'absent')}")
    event_keys = [k for k in after if (k[0], k[1]) in EVENT_KINDS]
    events = sum(1 for k in event_keys if before.get(k) != after[k])
    ok = not lines
    kinds = sorted({k[1] for k in a})
    lines.insert(
        0,
        f"  resourceVersions: {len(a)} objects ({', '.join(kinds)}); "
        f"{'all equal' if ok else f'{len(lines)} changed'}; "
        f"Events new or updated meanwhile: {events}",
    )
    return ok, lines


# --- profiling the re-run --------------------------------------------------------------------

SHIM = """#!/bin/sh
# bench/deploy.py --profile: log each call's start, duration and argv, then run the real tool
start=$(date +%s.%N)
{real} "$@"
rc=$?
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v rc="$rc" -v c="{name} $*" \\
    'BEGIN {{ printf "%.3f\\t%.3f\\t%s\\t%s\\n", a, b - a, rc, c }}' >> {log}
exit $rc
"""
FLAGS = re.compile(r" --kubeconfig \S+ --context \S+")


def logged_deploy(home: sb.Home, log: Path, label: str) -> None:
    """`inv deploy.all` with a shim first on PATH that logs every kubectl / kwokctl it starts;
    prints the timeline (start offset, duration, command)."""
    import shutil

    shims = home.path / "shims"
    shims.mkdir(exist_ok=True)
    log.write_text("")
    for name in ("kubectl", "kwokctl"):
        real = shutil.which(name)
        if real:
            (shims / name).write_text(SHIM.format(real=real, name=name, log=log))
            (shims / name).chmod(0o755)
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{shims}{os.pathsep}{saved}"
    began = time.time()
    try:
        ran = sb.inv("deploy.all")
    finally:
        os.environ["PATH"] = saved
    rows = sorted(
        (float(a), float(d), c)
        for a, d, _rc, c in (x.split("\t", 3) for x in log.read_text().splitlines() if x)
    )
    print(
        f"  {label}: {ran.seconds:.2f}s wall, {len(rows)} kubectl/kwokctl commands, "
        f"{sum(r[1] for r in rows):.2f}s inside them (they may overlap) -> {log}"
    )
    for at, seconds, command in rows:
        print(f"    +{at - began:5.2f}s {seconds:5.2f}s  {FLAGS.sub('', command)[:100]}")


def profile(home: sb.Home, out: Path) -> None:
    """On a fresh cluster of its own: a logged fresh deploy, then re-runs under cProfile,
    under -X importtime, and logged. None of these runs is part of the measurements."""
    import pstats

    out.mkdir(parents=True, exist_ok=True)
    python = str(sb.BIN / "python")
    print("profile (not measured):")
    logged_deploy(home, out / "fresh-commands.txt", "logged fresh deploy")
    prof = out / "rerun.prof"
    ran = sb.run(
        [python, "-m", "cProfile", "-o", str(prof), sb.INV, "deploy.all"],
        timeout=sb.DEPLOY_TIMEOUT,
    )
    print(f"  cProfile re-run: {ran.seconds:.2f}s -> {prof}; by cumulative time:")
    stats = pstats.Stats(str(prof))
    rows = [
        (v[3], f"{Path(k[0]).name}:{k[1]}({k[2]})")
        for k, v in stats.stats.items()  # type: ignore[attr-defined]
        if "/tasks/" in k[0] or k[2] in ("sleep", "load_all", "safe_dump_all")
    ]
    for cumulative, where in sorted(rows, reverse=True)[:14]:
        print(f"    {cumulative:5.2f}s  {where}")
    ran = sb.run([python, "-X", "importtime", sb.INV, "deploy.all"], timeout=sb.DEPLOY_TIMEOUT)
    (out / "rerun-importtime.txt").write_text(ran.stderr)
    imports = []
    for line in ran.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            imports.append((int(parts[1]), parts[2].rstrip()))
    top = [(us, name) for us, name in imports if not name.startswith("  ")]
    print(
        f"  -X importtime re-run: {ran.seconds:.2f}s; top-level imports (cumulative): "
        + ", ".join(
            f"{name.strip()} {us / 1000:.0f}ms" for us, name in sorted(top, reverse=True)[:6]
        )
    )
    logged_deploy(home, out / "rerun-commands.txt", "logged re-run")


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    sb.require_loopback_only("deploy.py")
    sb.on_signals_exit()
    import argparse

    parser = argparse.ArgumentParser(description="inv deploy.all vs the guide's sequence")
    parser.add_argument("runs", nargs="?", type=int, default=3)
    parser.add_argument("--profile", metavar="DIR", type=Path, default=None)
    options = parser.parse_args()
    runs = sb.runs_argument(3, [str(options.runs)])
    profile_dir = options.profile.resolve() if options.profile else None
    deadline = sb.Deadline(BUDGET)
    sb.header(f"inv deploy.all (fresh, re-run) vs the guide's sequence, {runs} runs")
    fresh, fresh_rep, rerun, rerun_rep, guide, settled = [], [], [], [], [], []
    proofs: list[bool] = []
    guide_steps: list[list[tuple[str, float]]] = []
    with sb.isolated_home() as home:
        commands = guide_sequence.guide_commands()
        for i in range(runs):
            if deadline.spent():
                print(f"budget of {BUDGET}s spent; stopping after {i} runs")
                break
            with sb.fresh_cluster(home):
                ran = sb.inv("deploy.all")
                fresh.append(ran.seconds)
                fresh_rep.append(reported_total(ran))
                resources = listable_namespaced(home)
                before, waited, moving = settle(home, resources)
                settled.append(waited)
                ran = sb.inv("deploy.all")
                rerun.append(ran.seconds)
                rerun_rep.append(reported_total(ran))
                after = versions(home, resources)
                ok, lines = compare(before, after)
                proofs.append(ok)
                print(
                    f"run {i + 1}: fresh {fresh[-1]:.2f}s (reported {fresh_rep[-1]:.1f}), "
                    f"settled after {waited:.1f}s (changing meanwhile: "
                    f"{', '.join(sorted(moving)) or 'nothing'}), re-run {rerun[-1]:.2f}s "
                    f"(reported {rerun_rep[-1]:.1f})",
                    flush=True,
                )
                print("\n".join(lines), flush=True)
            with sb.fresh_cluster(home):
                total, steps = guide_sequence.run_guide(home, commands)
            guide.append(total)
            guide_steps.append(steps)
            print(f"run {i + 1}: guide {total:.2f}s", flush=True)
        if profile_dir:
            with sb.fresh_cluster(home):
                profile(home, profile_dir)
    if not guide:
        sys.exit("no run finished")
    n = len(guide)
    mf, mr, mg = (statistics.median(x[:n]) for x in (fresh, rerun, guide))
    print()
    print(f"fresh  inv deploy.all:   {sb.stats(fresh[:n])}")
    print(f"        (task's total):  {sb.stats(fresh_rep[:n])}")
    print(f"re-run inv deploy.all:   {sb.stats(rerun[:n])}")
    print(f"        (task's total):  {sb.stats(rerun_rep[:n])}")
    print(f"guide sequence:          {sb.stats(guide)}")
    print(
        "guide steps (median s): "
        + ", ".join(
            f"{label} {statistics.median(s[j][1] for s in guide_steps):.2f}"
            for j, (label, _) in enumerate(guide_steps[0])
        )
    )
    print(f"ratio fresh/guide:  {mf / mg:.2f}  (target well under 0.5)")
    print(f"ratio re-run/guide: {mr / mg:.2f}")
    print(f"re-run median:      {mr:.2f}s (target < 2 s)")
    print(f"resourceVersion proof: {sum(proofs)}/{len(proofs)} re-runs changed nothing")
    print(f"after: {sb.machine()}")
    print(json.dumps({"fresh": fresh, "rerun": rerun, "guide": guide, "proofs": proofs}))
    if not all(proofs):
        sys.exit("re-run changed objects (see CHANGED lines above)")


if __name__ == "__main__":
    main()
