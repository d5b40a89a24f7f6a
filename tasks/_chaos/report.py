"""What a drill found, for people (the recovery table and its detail lines) and for CI (the
`--json` document; its keys are listed in docs/chaos.md and are stable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# verdict -> whether it is a success (exit 0)
VERDICTS = {
    "undisturbed": True,  # no workload lost readiness
    "self-healed": True,  # every disrupted workload was Ready again before the fault was undone
    "healed after restore": True,  # some only once the node / backend / API was back
    "not whole": False,  # something was still not Ready when --timeout ran out
    "blocked": False,  # drain: an eviction a PodDisruptionBudget never allowed
    "interrupted": False,  # Ctrl-C (chaos.run's table)
    "error": False,  # the drill could not run (chaos.run's table)
    "not run": False,  # chaos.run stopped before it
}
HEADER = ("drill", "started", "disrupted workloads", "time to whole", "verdict")


@dataclass
class Workload:
    """One workload that lost readiness during the drill (seconds after the drill started)."""

    name: str  # namespace/kind/name, kind in lower case: prism/deployment/prism-admin
    lost: float
    back: float | None = None  # Ready again (for good); None: not by the end
    healed: str = ""  # "during" the fault, "after restore", or "" (not)

    def document(self) -> dict[str, Any]:
        return {
            "workload": self.name,
            "not_ready_after_seconds": round(self.lost, 1),
            "ready_again_after_seconds": None if self.back is None else round(self.back, 1),
            "healed": self.healed or None,
        }


@dataclass
class Recovery:
    drill: str
    target: str
    provider: str
    started: datetime
    workloads: list[Workload] = field(default_factory=list)
    restored_after: float | None = None
    whole_after: float | None = None
    verdict: str = "not whole"
    evicted: list[str] = field(default_factory=list)
    rescheduled: list[dict[str, Any]] = field(default_factory=list)
    not_recovered: list[dict[str, str]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return VERDICTS.get(self.verdict, False)

    @property
    def disrupted(self) -> list[str]:
        return [w.name for w in self.workloads]

    def row(self) -> list[str]:
        names = [w.name.rsplit("/", 1)[-1] for w in self.workloads]
        disrupted = f"{len(names)}: {', '.join(names)}" if names else "none"
        whole = "-" if self.whole_after is None else f"{self.whole_after:.1f}s"
        return [
            f"{self.drill} {self.target}".strip(),
            self.started.astimezone().strftime("%H:%M:%S"),
            disrupted,
            whole,
            self.verdict,
        ]

    def details(self) -> list[str]:
        """The lines under the table: what was evicted, rescheduled, what never recovered."""
        lines = []
        for pod in self.evicted:
            lines.append(f"evicted: {pod}")
        for moved in self.rescheduled:
            ready = moved["ready_after_seconds"]
            when = f"Ready after {ready:.1f}s" if ready is not None else "not Ready"
            again = f" (created {moved['times']} times)" if moved.get("times", 1) > 1 else ""
            lines.append(
                f"rescheduled: {moved['pod']} on {moved['node'] or '(unscheduled)'}, {when}{again}"
            )
        for item in self.not_recovered:
            lines.append(f"{item['when']}: {item['workload']}: {item['why']}")
        for link in self.connections:
            back = link["back_after_seconds"]
            again = f"back after {back:.1f}s" if back is not None else "never back"
            lines.append(
                f"watch of {link['watch']}s: lost after {link['lost_after_seconds']:.1f}s "
                f"({link['reason']}), {again}"
            )
        lines += [f"note: {note}" for note in self.notes]
        return lines

    def document(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "target": self.target,
            "provider": self.provider,
            "started": self.started.isoformat(timespec="seconds"),
            "disrupted": self.disrupted,
            "time_to_whole_seconds": None
            if self.whole_after is None
            else round(self.whole_after, 1),
            "restored_after_seconds": None
            if self.restored_after is None
            else round(self.restored_after, 1),
            "verdict": self.verdict,
            "ok": self.ok,
            "workloads": [w.document() for w in self.workloads],
            "evicted": list(self.evicted),
            "rescheduled": list(self.rescheduled),
            "not_recovered": list(self.not_recovered),
            "connections": list(self.connections),
            "notes": list(self.notes),
        }


def placeholder(
    drill: str, target: str, provider: str, started: datetime, verdict: str
) -> Recovery:
    """A row for a drill that did not get to report (interrupted, failed, not run)."""
    return Recovery(drill, target, provider, started, verdict=verdict)
