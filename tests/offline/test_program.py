"""Which program runs: plain invoke without SSH flags (and without importing fabric), fabric's
with them; `prism` is the same program under the project's name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import ROOT, inv

from tasks._cli.program import SSH_FLAGS, wants_ssh

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "args",
    [
        ["-H", "box", "deploy.all"],
        ["--hosts=box", "deploy.all"],
        ["-Hbox", "deploy.all"],
        ["--dry", "-H", "box", "cluster.create"],
        ["-eH", "box", "doctor"],
        ["-i", "key", "doctor"],
        ["--ssh-config", "cfg", "doctor"],
        ["-H", "box", "--list"],
    ],
)
def test_ssh_flags_before_the_tasks_select_fabric(args: list[str]):
    assert wants_ssh(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--list"],
        ["--dry", "cluster.create"],
        ["deploy.all", "-t", "60"],  # a task's own flag (--timeout), not --connect-timeout
        ["deploy.all", "-H", "box"],  # after a task name: that task's argument
        ["--bogus"],
        ["-f"],  # invoke's own parse error, reported by invoke
    ],
)
def test_without_ssh_flags_invoke_runs_alone(args: list[str]):
    assert not wants_ssh(args)


def test_ssh_flags_are_exactly_fabrics_own():
    from fabric.main import Fab
    from invoke import Program

    def flags(program: Program) -> set[str]:
        names = set()
        for argument in program.core_args():
            for name in argument.names:
                names.add(f"-{name}" if len(name) == 1 else f"--{name}")
        return names

    assert flags(Fab()) - flags(Program()) == SSH_FLAGS


def loaded_modules(*args: str) -> set[str]:
    """The modules a real `inv ARGS` imports (python -X importtime lists every import)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / "inv"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_plain_inv_list_imports_neither_fabric_nor_paramiko():
    modules = loaded_modules("--list")
    assert "invoke" in modules
    assert not {m for m in modules if m.split(".")[0] in ("fabric", "paramiko", "kubernetes")}


def test_inv_with_hosts_loads_fabric():
    assert "fabric" in loaded_modules("-H", "box", "--list")


def test_plain_inv_list_is_invokes_own():
    theirs = subprocess.run(
        [sys.executable, "-c", "from invoke.main import program; program.run()", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = inv("--list")
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout
    assert "cluster.create" in ours.stdout


def test_prism_lists_the_same_tasks():
    prism = subprocess.run(
        [str(BIN / "prism"), "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert prism.returncode == 0, prism.stderr
    assert prism.stdout == inv("--list").stdout


def test_prism_version_names_the_project():
    prism = subprocess.run(
        [str(BIN / "prism"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert prism.stdout.startswith("Prism ")


def test_help_with_hosts_offers_fabrics_flags():
    result = inv("-H", "box", "--help")
    assert "--ssh-config" in result.stdout
    assert "--prompt-for-passphrase" in result.stdout
    assert "--ssh-config" not in inv("--help").stdout


def test_console_scripts_are_ours():
    for name in ("inv", "invoke", "prism"):
        assert "from tasks._cli.program import" in (BIN / name).read_text(), name


def test_other_projects_tasks_load_instead_of_ours(tmp_path: Path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("from .cluster import hello\n")
    (tmp_path / "tasks" / "cluster.py").write_text(
        'from invoke import task\n\n@task\ndef hello(c):\n    print("their hello")\n'
    )
    result = subprocess.run(
        [str(BIN / "inv"), "hello"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "their hello\n"
