"""api-restart: the control plane goes away and comes back.

Simulated cluster: the whole control plane restarts as `inv cluster.stop cluster.start` would
(etcd, kube-apiserver, controller-manager, scheduler and KWOK; the node leases are released
first so that the new KWOK manages the nodes at once). k3d: the first server node's container
is stopped and started (its API server, controllers and kubelet go with it).

Meanwhile the drill's own watches lose their connections and reconnect; the report says when
each was lost and when it was back. Other tasks in flight meet the same outage: their watches
reconnect (observe.logs --follow re-lists) or they end with one line naming the lost
connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core.settings import Settings
from .._core.target import Target
from . import drills as _drills
from .live import WORKLOADS, Change, Live
from .report import Recovery
from .undo import Undo, restoring


class Leaders:
    """The controller-manager and the scheduler act only while they hold their leader lease;
    after a restart each waits until its predecessor's lease has run out (15 s by default)
    before it leads, and until then nothing is reconciled or scheduled."""

    def __init__(self, drill: _drills.Drill, names: set[str]) -> None:
        self.drill, self.names = drill, names
        self.back: dict[str, float] = {}

    def seen(self, change: Change) -> None:
        if change.kind != "Lease" or self.drill.restored_at is None or change.new is None:
            return
        name = change.new["metadata"]["name"]
        if name not in self.names or name in self.back:
            return
        spec, before = change.new.get("spec") or {}, (change.old or {}).get("spec") or {}
        renewed = _drills.timestamp(spec.get("renewTime"))
        since = self.drill.restored_wall
        new_holder = spec.get("holderIdentity") != before.get("holderIdentity")
        if new_holder or (renewed is not None and since is not None and renewed > since):
            self.back[name] = change.at
            self.drill.say(f"{name} leads again (its leader lease is renewed)", change.at)

    def leading(self) -> bool:
        return all(name in self.back for name in self.names)


class Restart:
    """How to stop and start the control plane of one provider."""

    def __init__(self, c: Context, s: Settings, t: Target, timeout: int) -> None:
        if t.provider == "context":
            raise Exit(
                "chaos.api-restart restarts the control plane, and a cluster this project did "
                "not create is not its to restart (PRISM_CLUSTER_PROVIDER=context)",
                code=1,
            )
        self.c, self.s, self.t, self.timeout = c, s, t, timeout
        self.server = f"k3d-{t.name}-server-0"

    def describe(self) -> list[str]:
        if self.t.provider == "kwok":
            return [
                "release the node leases (kubectl delete leases --all -n kube-node-lease), then "
                f"kwokctl stop cluster --name {self.t.name}",
                f"kwokctl start cluster --name {self.t.name}, and wait until the API answers",
            ]
        return [
            f"docker stop {self.server}",
            f"docker start {self.server}, and wait until the API answers",
        ]

    def how(self) -> str:
        if self.t.provider == "kwok":
            return f"kwokctl stop cluster --name {self.t.name}"
        return f"docker stop {self.server}"

    def stop(self) -> None:
        if self.t.provider == "kwok":
            from .._providers import kwok as _kwok

            _kwok.stop(self.c, self.s, self.t)
        else:
            _command.run(self.c, ["docker", "stop", self.server], hide=True)

    def start(self) -> str:
        from .._providers import kwok as _kwok

        if self.t.provider == "kwok":
            _kwok.start(self.c, self.s, self.t)
        else:
            _command.run(self.c, ["docker", "start", self.server], hide=True)
            _kwok.wait_api_ready(self.c, self.t, self.timeout)
        return "the API server answers again"


def api_restart(
    c: Context,
    s: Settings,
    t: Target,
    api: Any,
    seconds: int,
    timeout: int,
    say: Callable[[str], None],
    dry: bool,
) -> Recovery | None:
    restart = Restart(c, s, t, timeout)
    if dry:
        away = f", {seconds}s away" if seconds else ""
        say(f"would restart the control plane of cluster {t.name} ({t.provider}{away}):")
        for step in restart.describe():
            say(f"  {step}")
        return None
    say(
        f"api-restart of cluster {t.name} ({t.provider})"
        + (f", {seconds}s away" if seconds else "")
    )
    _drills.await_leaders(api, say)
    with Live(api, kinds=(*WORKLOADS, "Lease")) as live:
        drill = _drills.Drill("api-restart", "", t.provider, live, say)
        drill.needs_ready = {
            n["metadata"]["name"] for n in live.all("Node") if _drills.node_ready(n) == "True"
        }
        leaders = Leaders(
            drill,
            {
                lease["metadata"]["name"]
                for lease in live.all("Lease")
                if lease["metadata"]["name"] in _drills.LEADERS
            },
        )
        drill.hooks.append(leaders.seen)
        drill.conditions.append(leaders.leading)
        with restoring("api-restart", Undo(), say) as undo:
            undo.push("the control plane", restart.start)
            drill.act(f"stopping the control plane ({restart.how()})")
            restart.stop()
            drill.act("control plane stopped")
            if seconds:
                drill.wait(seconds - drill.elapsed())
            drill.act("starting the control plane")
            said = undo.run("the control plane")
            drill.restored(said)
            drill.fault_cleared_at = drill.restored_at
        whole = drill.wait_whole(timeout)
        if whole:
            drill.say(
                "whole: every watch reconnected, the controllers leading, every node and "
                "workload Ready"
            )
        else:
            for name in sorted(leaders.names - set(leaders.back)):
                drill.not_recovered.append(
                    {
                        "when": "at the end",
                        "workload": f"kube-system/lease/{name}",
                        "why": f"{name} has not taken its leader lease again",
                    }
                )
        report = drill.finish(whole)
    if report.connections:
        back = [x["back_after_seconds"] for x in report.connections if x["back_after_seconds"]]
        report.notes.append(
            f"{len(report.connections)} watch(es) lost their connection and "
            + (
                f"all reconnected within {max(back):.1f}s"
                if len(back) == len(report.connections)
                else "not all reconnected"
            )
        )
    else:
        report.notes.append("no watch noticed the restart (it was quicker than their reads)")
    report.notes.append(f"API away for {report.restored_after or 0:.1f}s (stop to answering)")
    return report
