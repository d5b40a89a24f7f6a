"""`inv doctor`: which tools are here, are they new enough, how to get what is missing - and
whether `inv` is still this project's program."""

from __future__ import annotations

import contextlib
import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

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

# What each provider needs besides kubectl and helm (the context provider: nothing more).
PROVIDER_TOOLS = {"k3d": {"k3d", "docker"}, "kwok": {"kwokctl"}}


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


def probe(c: Context, check: Check) -> tuple[State, str, str]:
    """What is installed of one tool: its state, the version found ("" if none), the detail."""
    try:
        result = _command.query(c, list(check.argv), timeout=20)
    except Exit:
        return (State.MISSING, "", _command.INSTALL_HINTS.get(check.tool, ""))
    if result.exited == 127:
        return (State.MISSING, "", _command.INSTALL_HINTS.get(check.tool, ""))
    version = parse_version(check.tool, result.stdout)
    if not result.ok or version is None:
        return (State.BROKEN, "", _command.why(result))
    shown = ".".join(map(str, version))
    if version[:2] < check.minimum:
        want = ".".join(map(str, check.minimum))
        hint = _command.INSTALL_HINTS.get(check.tool, "")
        return (State.OLD, shown, f"{shown} (need {want}+; {hint})")
    return (State.OK, shown, shown)


# --- the console scripts -----------------------------------------------------------------
# pyproject.toml installs `inv` and `invoke` as this project's program (invoke's command line
# plus fabric's -H). invoke installs scripts of the same names, so reinstalling or upgrading
# invoke puts its own back, silently: everything still runs, but `-H` is gone.

DISTRIBUTION = "prism-tasks"
MARK = b"tasks._cli.program"  # what every script of ours imports
ENTRY_FIX = (
    "`inv doctor --fix` puts ours back (so does scripts/setup; meanwhile .venv/bin/prism is the "
    "same program)"
)


def is_ours(path: Path) -> bool:
    try:
        return MARK in path.read_bytes()
    except OSError:
        return False


def console_scripts() -> dict[str, Any]:
    """This package's console scripts (name -> entry point) as installed in this Python."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return {}
    return {e.name: e for e in dist.entry_points.select(group="console_scripts")}


def scripts_beside(python: Path) -> list[dict[str, str]]:
    """Our console scripts in the directory of this Python (a virtualenv's bin/): name, path,
    state ("ours", "replaced" by another program's script, or "missing")."""
    found = []
    for name in sorted(console_scripts()):
        path = python.parent / name
        state = "ours" if is_ours(path) else "replaced" if path.exists() else "missing"
        found.append({"name": name, "path": str(path), "state": state})
    return found


def inv_on_path(python: Path) -> dict[str, Any] | None:
    """The `inv` a shell would run, when it is not the one beside this Python."""
    import shutil

    found = shutil.which("inv")
    if found is None or Path(found).resolve() == (python.parent / "inv").resolve():
        return None
    return {"path": found, "ours": is_ours(Path(found))}


def fix_scripts(python: Path, scripts: list[dict[str, str]]) -> list[str]:
    """Write our console scripts over replaced or missing ones, as pip writes them.

    Only in a virtualenv (the scripts beside its Python are its own, nothing system-wide),
    only the names this package declares, each written whole and then renamed into place."""
    import os
    import sys
    import tempfile

    if sys.prefix == sys.base_prefix:
        raise Exit(
            f"doctor --fix: {sys.executable} is not a virtualenv's Python; run scripts/setup",
            code=1,
        )
    entries = console_scripts()
    fixed = []
    for script in scripts:
        if script["state"] == "ours":
            continue
        entry = entries[script["name"]]
        function = entry.attr.split(".")[0]
        text = (
            f"#!{python}\nimport sys\nfrom {entry.module} import {function}\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n"
            f"    sys.exit({entry.attr}())\n"
        )
        descriptor, temporary = tempfile.mkstemp(dir=python.parent, prefix=f".{script['name']}.")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
            os.chmod(temporary, 0o755)
            os.replace(temporary, script["path"])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        fixed.append(script["name"])
    return fixed


def _say_entry_points(
    python: Path, scripts: list[dict[str, str]], wrong: list[dict[str, str]], on_path: Any
) -> None:
    from ._core import output as _output

    if not scripts:
        _output.say(f"  {DISTRIBUTION} is not installed for {python}; run scripts/setup", "red")
    elif wrong:
        names = ", ".join(f"{s['path']} ({s['state']})" for s in wrong)
        _output.say(f"  not this project's program, -H is gone: {names}", "bold red")
        _output.say(f"    fix: {ENTRY_FIX}", "red")
    else:
        names = ", ".join(s["name"] for s in scripts)
        print(f"  entry points ours: {names} in {python.parent}")
    if on_path and not on_path["ours"]:
        _output.say(
            f"  note: the `inv` on PATH is {on_path['path']}, another program (no -H); "
            f"activate the virtualenv or run {python.parent / 'inv'}",
            "yellow",
        )


@task(
    help={
        "provider": "Check the tools of this provider: auto, k3d, kwok or context (default: config).",
        "json": "Print a JSON document (keys in the README) instead of text.",
        "fix": "Put this project's inv/invoke/prism scripts back where another program's are.",
    }
)
def doctor(c, provider=None, json=False, fix=False):
    """Check tools and versions against the guide's minimums; exit non-zero if one is missing."""
    import sys

    from ._core import output as _output

    if _command.is_remote(c):
        c.open()  # type: ignore[attr-defined]  # an unreachable host is one line, not N missing tools
    t = _target.resolve(c, provider)
    required = {"kubectl", "helm"} | PROVIDER_TOOLS.get(t.provider, set())
    text = not json
    problems = []
    if text:
        print(f"provider: {t.provider} ({t.reason})")
    tools = []
    for name, check in CHECKS.items():
        state, version, detail = probe(c, check)
        need = "required" if name in required else "optional"
        if text:
            print(f"  {name:<9} {state.value:<8} {detail}  [{need}]")
        if name in required and state is not State.OK:
            problems.append(name)
        tools.append(
            {
                "name": name,
                "state": state.value,
                "version": version,
                "minimum": ".".join(map(str, check.minimum)),
                "required": name in required,
                "detail": detail,
            }
        )
    binaries = None
    if t.provider == "kwok" and not _command.is_remote(c):
        binaries = {"dir": str(_sim.bin_dir()), "missing": _sim.missing()}
        if binaries["missing"]:
            problems.append("simulated-cluster binaries")
            if text:
                absent = ", ".join(binaries["missing"])
                print(f"  simulated-cluster binaries missing in {binaries['dir']}: {absent}")
                print("    build them: scripts/build-sim-binaries.sh")
        elif text:
            print(f"  simulated-cluster binaries ok in {binaries['dir']}")
    daemon = t.provider == "k3d" or _target.docker_answers(c)
    if text:
        print(
            "  docker daemon answers"
            if daemon
            else "  docker daemon not answering: k3d cannot run here; the kwok provider can"
        )

    # The program itself runs here, with -H or without: its scripts are this machine's.
    python = Path(sys.executable)
    scripts = scripts_beside(python)
    if fix:
        fixed = fix_scripts(python, scripts)
        scripts = scripts_beside(python)
        if text:
            print(f"  fixed: {', '.join(fixed)}" if fixed else "  nothing to fix")
    wrong = [s for s in scripts if s["state"] != "ours"]
    on_path = inv_on_path(python)
    if text:
        _say_entry_points(python, scripts, wrong, on_path)
    entry_points_ok = bool(scripts) and not wrong
    if json:
        _output.print_json(
            {
                "provider": t.provider,
                "reason": t.reason,
                "tools": tools,
                "simulated_cluster_binaries": binaries,
                "docker_daemon": daemon,
                "entry_points": scripts,
                "inv_on_path": on_path,
                "problems": problems + ([] if entry_points_ok else ["entry points"]),
                "ok": not problems and entry_points_ok,
            }
        )
    failed = [f"missing or too old: {', '.join(problems)}"] if problems else []
    if not entry_points_ok:
        failed.append("`inv` is not this project's program (`inv doctor --fix`)")
    if failed:
        raise Exit(f"doctor: {'; '.join(failed)}", code=1)
    if text:
        print("doctor: all required tools present")
