"""`inv doctor`: which tools are here, are they new enough, and how to get what is missing."""

from __future__ import annotations

import contextlib
import json
import re
from enum import StrEnum
from typing import NamedTuple

from invoke import Context, Exit, task

from ._core import command as _command
from ._core import sim_binaries as _sim
from ._core import target as _target


class Check(NamedTuple):
    tool: str
    minimum: tuple[int, int]
    argv: tuple[str, ...]


# The guide's minimums ("Verify installations").
CHECKS = {
    "kubectl": Check("kubectl", (1, 29), ("kubectl", "version", "--client", "-o", "json")),
    "helm": Check("helm", (3, 14), ("helm", "version", "--short")),
    "k3d": Check("k3d", (5, 6), ("k3d", "version")),
    "docker": Check("docker", (24, 0), ("docker", "--version")),
    "kwokctl": Check("kwokctl", (0, 6), ("kwokctl", "--version")),
}


class State(StrEnum):
    """What `probe` found out about one tool."""

    OK = "ok"
    OLD = "old"
    MISSING = "missing"
    BROKEN = "broken"


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(tool: str, output: str) -> tuple[int, ...] | None:
    """The first version number in a tool's `--version` output."""
    if tool == "kubectl":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            output = json.loads(output)["clientVersion"]["gitVersion"]
    match = _VERSION.search(output)
    return tuple(int(part or 0) for part in match.groups()) if match else None


def probe(c: Context, check: Check) -> tuple[State, str]:
    """(state, detail) for one tool."""
    try:
        result = _command.query(c, list(check.argv), timeout=20)
    except Exit:
        return State.MISSING, _command.INSTALL_HINTS.get(check.tool, "")
    if result.exited == 127:
        return State.MISSING, _command.INSTALL_HINTS.get(check.tool, "")
    version = parse_version(check.tool, result.stdout)
    if not result.ok or version is None:
        return State.BROKEN, _command.why(result)
    shown = ".".join(map(str, version))
    if version[:2] < check.minimum:
        want = ".".join(map(str, check.minimum))
        return State.OLD, f"{shown} (need {want}+; {_command.INSTALL_HINTS.get(check.tool, '')})"
    return State.OK, shown


@task(help={"provider": "Check the tools of this provider: auto, k3d or kwok (default: config)."})
def doctor(c, provider=None):
    """Check tools and versions against the guide's minimums; exit non-zero if one is missing."""
    t = _target.resolve(c, provider)
    required = {"kubectl", "helm"} | ({"k3d", "docker"} if t.provider == "k3d" else {"kwokctl"})
    failures = []
    print(f"provider: {t.provider} ({t.reason})")
    for name, check in CHECKS.items():
        state, detail = probe(c, check)
        need = "required" if name in required else "optional"
        print(f"  {name:<9} {state.value:<8} {detail}  [{need}]")
        if name in required and state is not State.OK:
            failures.append(name)
    if t.provider == "kwok" and not _command.is_remote(c):
        absent = _sim.missing()
        where = _sim.bin_dir()
        if absent:
            print(f"  simulated-cluster binaries missing in {where}: {', '.join(absent)}")
            print("    build them: scripts/build-sim-binaries.sh")
            failures.append("simulated-cluster binaries")
        else:
            print(f"  simulated-cluster binaries ok in {where}")
    if t.provider == "k3d" or _target.docker_answers(c):
        print("  docker daemon answers")
    else:
        print("  docker daemon not answering: k3d cannot run here; the kwok provider can")
    if failures:
        raise Exit(f"doctor: missing or too old: {', '.join(failures)}", code=1)
    print("doctor: all required tools present")
