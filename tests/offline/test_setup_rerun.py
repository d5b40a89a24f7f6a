"""`scripts/setup` run again on a set-up checkout: every step says it is skipped (or what it did
and how long it took), nothing is reinstalled, no warning, and no network is needed.

It runs the real script on this checkout (which `scripts/test` has just set up) in a network
namespace of its own, so it has no network whether or not pytest itself runs in one."""

from __future__ import annotations

import os
import re
import socket
import subprocess

from support.cli import ROOT

VENV = ROOT / ".venv"
STAMP = VENV / ".prism-setup-pyproject.sha256"
STEP = re.compile(r"^setup: (?P<step>[^:]+): (?P<outcome>skipped \(.+\)|done in \d+\.\ds.*)$")


def without_network(argv: list[str]) -> list[str]:
    """argv in a new network namespace (only a loopback, and that one down), unless this
    process is in such a namespace already (scripts/test runs pytest in one)."""
    if [name for _, name in socket.if_nameindex()] == ["lo"]:
        return argv
    if os.geteuid() == 0:
        return ["unshare", "--net", "--", *argv]
    return ["unshare", "--user", "--map-current-user", "--net", "--", *argv]


def installed_files() -> dict[str, int]:
    """What a reinstall would rewrite: the console scripts, the package's metadata and the
    editable install's files in site-packages, and setup's stamp (path -> mtime in ns)."""
    site_packages = next(VENV.glob("lib/python3*/site-packages"))
    paths = [
        STAMP,
        *(VENV / "bin" / name for name in ("inv", "invoke", "prism")),
        *site_packages.glob("prism_tasks-*.dist-info/*"),
        *site_packages.glob("__editable__*prism_tasks*"),
    ]
    return {str(path): path.stat().st_mtime_ns for path in paths}


def test_second_setup_offline_skips_every_step_and_reinstalls_nothing() -> None:
    assert STAMP.is_file(), "run scripts/setup first (scripts/test does)"
    before = installed_files()
    result = subprocess.run(
        without_network([str(ROOT / "scripts" / "setup")]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower()
    assert result.stderr == ""
    *steps, last = result.stdout.splitlines()
    outcomes = {}
    for line in steps:
        match = STEP.match(line)
        assert match, f"not a step's line: {line!r}"
        outcomes[match["step"]] = match["outcome"]
    names = ["virtualenv", "packages", "byte-compile", ".env", "simulated-cluster binaries"]
    assert list(outcomes)[:5] == names
    # the Go steps, when Go is here: the schema, then each tool of scripts/tool-versions.env
    assert list(outcomes)[5:] in ([], ["k3d config schema", "actionlint", "kube-score"])
    for step in ("virtualenv", "packages", ".env"):
        assert outcomes[step].startswith("skipped ("), (step, outcomes[step])
    assert outcomes["packages"] == "skipped (prism-tasks[test] installed from this pyproject.toml)"
    assert re.fullmatch(r"setup: ready in \d+\.\ds; run tasks with \.venv/bin/inv .*", last)
    assert installed_files() == before
