"""The guide's own deployment sequence (memo-035 steps 2-7 and the HPA), done as a careful
operator copying the guide would: each heredoc applied with `kubectl apply -f -`, one after the
other, each workload followed by `kubectl rollout status` before the next command.

The manifests are the project's rendered `local` overlay (`kubectl kustomize
manifests/overlays/local`), grouped as the guide groups its heredocs; NATS is the project's
rendered StatefulSet (the guide fetches it from a URL). Applied first, as `inv deploy.all`'s
foundation step does: the Namespaces, the Secrets (`tasks._deploy.render.secrets`) and, because the
simulation has no provisioner, the pre-bound PersistentVolumes (`tasks._providers.kwok.volumes`).
The guide's step 1 (the nginx ingress controller, fetched from a URL) is not part of it, and
neither are its read-only `kubectl get` checks (leaving them out only makes the guide faster).

deploy.py imports this module to compare; on its own it times the sequence alone:

    unshare --net bash -c 'ip link set lo up; .venv/bin/python bench/guide_sequence.py [runs]'
    .venv/bin/python bench/guide_sequence.py --print   # the commands, nothing is run
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _simbench as sb

OVERLAY = sb.ROOT / "manifests" / "overlays" / "local"
WAIT = "120s"  # each rollout status; the guide's own examples wait 120s
TIER = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"


@dataclass
class Command:
    label: str
    objects: list[dict[str, Any]]  # applied with `kubectl apply -f -`
    wait: tuple[str, str, str] | None = None  # (kind, namespace, name) for rollout status


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels", {}) or {}


def render() -> list[dict[str, Any]]:
    import yaml

    ran = sb.run(["kubectl", "kustomize", str(OVERLAY)], timeout=60)
    return [doc for doc in yaml.safe_load_all(ran.stdout) if doc]


def extras(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Secrets and pre-bound volumes, from the product's own functions."""
    from invoke import Config, Context

    import tasks
    from tasks._core import settings as _settings
    from tasks._deploy import render as _deploy
    from tasks._providers import kwok as _kwok

    config = Config()
    config.load_collection(tasks.ns.configuration())
    settings = _settings.load(Context(config=config))  # reads PRISM_DOTENV of the temp home
    return _deploy.secrets(settings) + _kwok.volumes(objects)


def sequence(objects: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[Command]:
    """The overlay's objects in the guide's heredocs, in the guide's order. Every object is
    used exactly once (checked), so the guide deploys what `inv deploy.all` deploys."""
    used: set[int] = set()

    def take(pred: Any) -> list[dict[str, Any]]:
        found = [o for o in objects if id(o) not in used and pred(o)]
        used.update(id(o) for o in found)
        return found

    def workload(o: dict[str, Any]) -> tuple[str, str, str]:
        return (o["kind"].lower(), o["metadata"]["namespace"], o["metadata"]["name"])

    def by_name(tier: str, name: str, label: str, kinds: tuple[str, ...] = ()) -> Command:
        found = take(
            lambda o: (
                _labels(o).get(TIER) == tier
                and _labels(o).get(NAME) == name
                and (not kinds or o["kind"] in kinds)
            )
        )
        waits = [workload(o) for o in found if o["kind"] in ("Deployment", "StatefulSet")]
        return Command(label, found, waits[0] if waits else None)

    commands = [
        Command(
            "prelude: namespaces, Secrets, pre-bound PVs",
            take(lambda o: o["kind"] == "Namespace") + extra,
        ),
        Command("2 storage class", take(lambda o: o["kind"] == "StorageClass")),
        # not in the guide (issue #17 added them): applied once, up front, as deploy.all does
        Command(
            "budgets and network policies",
            take(lambda o: o["kind"] in ("PodDisruptionBudget", "NetworkPolicy")),
        ),
        by_name("backend", "redis", "3 redis"),
        by_name("backend", "nats", "3 nats (project's rendered StatefulSet)"),
        by_name("backend", "minio", "3 minio"),
        by_name("backend", "postgres", "3 postgres"),
        by_name("admin", "prism-admin", "4 admin ConfigMap", ("ConfigMap",)),
        by_name("admin", "prism-admin", "4 admin Service+Deployment+PVC"),
        by_name("proxy", "prism-proxy", "5 proxy"),
        by_name("runner", "keyvalue-runner", "6 keyvalue-runner"),
        by_name("runner", "consumer-runner", "6 consumer-runner"),
        by_name("runner", "producer-runner", "6 producer-runner"),
        by_name("runner", "mailbox-runner", "6 mailbox-runner"),
        Command("7 ingress", take(lambda o: _labels(o).get(TIER) == "ingress")),
        Command("HPA", take(lambda o: _labels(o).get(TIER) == "autoscaling")),
    ]
    left = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if id(o) not in used]
    empty = [c.label for c in commands if not c.objects]
    if left or empty:
        raise sb.BenchError(f"guide grouping is off: unused {left}, empty steps {empty}")
    return commands


def argv_of(command: Command) -> list[list[str]]:
    """The kubectl command lines of one guide step (context flags are added by sb.kubectl)."""
    lines = [["apply", "-f", "-"]]
    if command.wait:
        kind, namespace, name = command.wait
        lines.append(["rollout", "status", f"{kind}/{name}", "-n", namespace, f"--timeout={WAIT}"])
    return lines


def run_guide(home: sb.Home, commands: list[Command]) -> tuple[float, list[tuple[str, float]]]:
    """Run the sequence against the cluster; returns the total and each step's seconds."""
    import yaml

    steps = []
    started = time.perf_counter()
    for command in commands:
        step_started = time.perf_counter()
        text = yaml.safe_dump_all(command.objects, sort_keys=False)
        for args in argv_of(command):
            # the subprocess limit is above rollout status's own --timeout, which reports first
            sb.kubectl(home, *args, input=text if args[0] == "apply" else None, timeout=180)
        steps.append((command.label, time.perf_counter() - step_started))
    return time.perf_counter() - started, steps


def guide_commands() -> list[Command]:
    objects = render()
    return sequence(objects, extras(objects))


def main() -> None:
    if "--print" in sys.argv:
        with sb.isolated_home():
            for command in guide_commands():
                kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in command.objects)
                print(f"# {command.label}: {kinds}")
                for args in argv_of(command):
                    print(
                        "kubectl "
                        + " ".join(args)
                        + (" <<EOF ... EOF" if args[0] == "apply" else "")
                    )
        return
    sb.require_loopback_only("guide_sequence.py")
    sb.on_signals_exit()
    runs = sb.runs_argument(3)
    deadline = sb.Deadline(20 * 60)
    sb.header(f"the guide's sequence (kubectl apply + rollout status), {runs} runs")
    totals = []
    with sb.isolated_home() as home:
        commands = guide_commands()
        for i in range(runs):
            if deadline.spent():
                print(f"budget spent; stopping after {i} runs")
                break
            with sb.fresh_cluster(home):
                total, steps = run_guide(home, commands)
            totals.append(total)
            print(
                f"run {i + 1}: {total:.2f}s  "
                + "  ".join(f"[{label}] {s:.2f}" for label, s in steps)
            )
    if totals:
        print(f"guide sequence: {sb.stats(totals)}; median {statistics.median(totals):.2f}s")
    print(f"after: {sb.machine()}")


if __name__ == "__main__":
    main()
