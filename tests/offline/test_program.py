"""Which program runs: plain invoke without SSH flags (and without importing fabric), fabric's
with them; `prism` is the same program under the project's name."""

from __future__ import annotations

import os
import pty
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import ROOT, inv

from tasks._cli.program import SSH_FLAGS, ssh_arguments, wants_ssh

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

    def arguments(program: Program) -> dict[tuple[str, ...], tuple[object, ...]]:
        return {a.names: (a.kind, a.default, a.help) for a in program.core_args()}

    theirs = {k: v for k, v in arguments(Fab()).items() if k not in arguments(Program())}
    ours = {a.names: (a.kind, a.default, a.help) for a in ssh_arguments()}
    assert ours == theirs
    assert {f"-{n}" if len(n) == 1 else f"--{n}" for names in theirs for n in names} == SSH_FLAGS


def loaded_modules(*args: str, terminal: bool = False, **env: str | None) -> set[str]:
    """The modules a real `inv ARGS` imports (python -X importtime lists every import), its
    standard output a pipe or a `terminal`; `env` changes the environment (None: unset)."""
    environment = {**os.environ, **env}
    leader, follower = pty.openpty() if terminal else (None, None)
    try:
        # the tasks run here print a line or two: the terminal's buffer holds them unread
        result = subprocess.run(
            [sys.executable, "-X", "importtime", str(BIN / "inv"), *args],
            cwd=ROOT,
            stdout=follower if terminal else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in environment.items() if v is not None},
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        for fd in (leader, follower):
            if fd is not None:
                os.close(fd)
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("args", [["--list"], ["--help"], ["--complete", "--", "inv", "-"]])
def test_plain_inv_imports_no_ssh_kubernetes_or_rich(args: list[str]):
    modules = loaded_modules(*args)
    assert "invoke" in modules
    assert not roots(modules) & {"fabric", "paramiko", "kubernetes", "rich"}


# backup.list prints through tasks/_core/output.py and needs no cluster
@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": None}], ids=["no-color", "pipe"])
def test_plain_output_does_not_import_rich(env: dict[str, str | None]):
    modules = loaded_modules("backup.list", **env)
    assert "tasks._core.output" in modules
    assert "rich" not in roots(modules)


def test_a_terminal_imports_rich_for_its_colours():
    modules = loaded_modules("backup.list", terminal=True, NO_COLOR=None, TERM="xterm")
    assert "rich.console" in modules
    assert "rich" not in roots(
        loaded_modules("backup.list", terminal=True, NO_COLOR="1", TERM="xterm")
    )


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


def test_help_lists_the_ssh_flags_as_the_fabric_program_does():
    plain, with_hosts = inv("--help"), inv("-H", "box", "--help")
    assert plain.returncode == with_hosts.returncode == 0
    assert plain.stdout == with_hosts.stdout
    assert "  -H STRING, --hosts=STRING" in plain.stdout
    assert "  -S STRING, --ssh-config=STRING" in plain.stdout
    assert "  --prompt-for-passphrase" in plain.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["doctor", "-H", "box"], "-H/--hosts"), (["doctor", "-i", "key"], "-i/--identity")],
)
def test_an_ssh_flag_after_a_task_name_is_refused_not_ignored(args: list[str], flag: str):
    # Without the refusal invoke would take it as a core flag and run doctor here, not on box.
    result = inv(*args)
    assert result.returncode == 1
    assert result.stderr == (
        f"{flag} goes before the task names (as in `inv -H box deploy.all`), "
        "where it makes the tasks run over SSH\n"
    )
    assert result.stdout == ""


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


# --- shell completion: invoke's, plus the SSH flags and the values this checkout knows ----


def completions(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """What `inv --complete` prints for a command line (as invoke's completion scripts call it)."""
    result = inv("--complete", "--", "inv", *words, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def directories(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


OVERLAYS = directories(ROOT / "manifests" / "overlays")
BACKENDS = sorted(
    p.parent.name
    for p in (ROOT / "manifests" / "base").glob("*/kustomization.yaml")
    if "app.kubernetes.io/component: backend" in p.read_text()
)
WORKLOADS = sorted(
    p.parent.name
    for p in (ROOT / "manifests" / "base").glob("*/*.yaml")
    if p.name in (f"{p.parent.name}-deployment.yaml", f"{p.parent.name}-statefulset.yaml")
)


def test_completion_offers_the_ssh_flags():
    flags = completions("-")
    assert {"-H", "--hosts", "-i", "--identity", "-S", "--ssh-config", "-t"} <= set(flags)
    assert "--prompt-for-passphrase" in flags and "--list" in flags
    assert "--hosts" in completions("--ho")


def test_completion_after_ssh_flags_offers_the_tasks_and_their_flags():
    assert "deploy.all" in completions("-H", "box")
    assert "--overlay" in completions("-H", "box", "deploy.all", "--ov")


def test_overlay_flag_completes_overlay_names():
    assert len(OVERLAYS) > 1
    assert completions("deploy.all", "--overlay") == OVERLAYS
    assert completions("deploy.all", "-o") == OVERLAYS
    assert completions("deploy.all", "--overlay", "lo") == OVERLAYS  # the shell keeps `local`


def test_a_finished_value_is_followed_by_the_task_names():
    # `--overlay local` may still be typed on (more names) or done (a task comes next).
    offered = completions("deploy.all", "--overlay", "local")
    assert offered[: len(OVERLAYS)] == OVERLAYS
    assert "deploy.verify" in offered[len(OVERLAYS) :]


def test_flag_equals_value_forms_of_each_shell():
    # zsh and fish pass `--overlay=lo` as one word; bash splits it at "=".
    assert completions("deploy.all", "--overlay=lo") == [f"--overlay={o}" for o in OVERLAYS]
    assert completions("deploy.all", "--overlay", "=") == OVERLAYS
    assert completions("deploy.all", "--overlay", "=", "lo") == OVERLAYS


def test_backend_lists_complete_the_next_backend():
    assert completions("backends.deploy", "--only") == BACKENDS
    assert completions("backends.deploy", "--only", "redis,n") == [
        f"redis,{b}" for b in BACKENDS if b != "redis"
    ]


def test_positional_workload_names():
    assert "prism-proxy" in WORKLOADS and "redis" in WORKLOADS
    # `observe.logs` may still be typed on: the task name stays among the candidates.
    assert completions("observe.logs") == [*WORKLOADS, "observe.logs"]
    assert completions("observe.logs", "pri") == WORKLOADS
    assert completions("deploy.restart", "--app") == WORKLOADS


def test_image_names_follow_the_settings():
    assert completions("images.build", "--only", env={"PRISM_IMAGES_NAMES": "one,two"}) == [
        "one",
        "two",
    ]


def test_hosts_complete_from_ssh_config(tmp_path: Path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host box alt *.example !skip\n  User me\nHost=other\nMatch host x\n"
    )
    home = {"HOME": str(tmp_path)}
    assert completions("-H", env=home) == ["alt", "box", "other"]
    assert completions("-H", "box,", env=home) == ["box,alt", "box,other"]
    # Any host name will do: after one, the tasks come too.
    assert completions("-H", "box", env=home)[:3] == ["alt", "box", "other"]
    assert "deploy.all" in completions("-H", "box", env=home)


def test_a_path_to_inv_is_the_program_not_a_task():
    result = inv("--complete", "--", ".venv/bin/inv", "deploy.all", "--overlay")
    assert result.stdout.splitlines() == OVERLAYS


def bash_complete(line: list[str]) -> list[str]:
    """Tab on the last word of `line` in a real bash with `inv --print-completion-script bash`
    loaded (its function gets COMP_WORDS, the current word and the previous one)."""
    script = inv("--print-completion-script", "bash").stdout
    words = " ".join(shlex.quote(w) for w in line)
    program = (
        f"{script}\nCOMP_WORDS=({words}); COMP_CWORD={len(line) - 1}\n"
        f"_complete_invoke inv {shlex.quote(line[-1])} {shlex.quote(line[-2])}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", program],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_bash_completes_values_flags_and_ssh_flags():
    assert bash_complete(["inv", "deploy.all", "--overlay", "lo"]) == ["local"]
    assert bash_complete(["inv", "-H", "box", "deploy.all", "--ov"]) == ["--overlay"]
    assert bash_complete(["inv", "--hos"]) == ["--hosts"]
    assert bash_complete(["inv", "observe.logs", "prism-p"]) == ["prism-proxy"]
