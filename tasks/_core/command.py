"""The one way an external command runs: an argument list, quoted with shlex.join, run by c.run.

Because everything goes through `run`, `inv --dry` prints the exact commands of any task, and a
fabric Connection (which is an invoke Context) runs the same commands on a remote host.
Read-only queries pass `dry=False` so that dry runs can still look at the cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

from invoke import Context, Exit, Result, UnexpectedExit
from invoke.runners import Local

from . import sim_binaries as _sim

# What to tell a user whose machine lacks a tool.
INSTALL_HINTS = {
    "kubectl": "install kubectl 1.29+: https://kubernetes.io/docs/tasks/tools/",
    "k3d": "install k3d 5.6+: https://k3d.io/#installation",
    "helm": "install helm 3.14+: https://helm.sh/docs/intro/install/ "
    "(or run scripts/build-sim-binaries.sh, which builds it)",
    "docker": "install Docker 24+: https://docs.docker.com/engine/install/",
    "kwokctl": "run scripts/build-sim-binaries.sh to build the simulated-cluster binaries",
    "pg_dump": "install the PostgreSQL client (apt-get install postgresql-client)",
}


def is_remote(c: Context) -> bool:
    """True for a fabric Connection: its commands run on another machine."""
    return hasattr(c, "host") and hasattr(c, "open")


def where(c: Context) -> str:
    """`user@host:port` of a remote connection, `local` for this machine."""
    if not is_remote(c):
        return "local"
    return f"{getattr(c, 'user', '')}@{getattr(c, 'host', '')}:{getattr(c, 'port', '')}"


def label(c: Any) -> str:
    """A remote host as the user wrote it after -H (`box`, `root@10.0.0.5:2222`)."""
    return str(getattr(c, "label", None) or c.host)


def require(c: Context, tool: str) -> None:
    """Fail early, with the fix, when a local tool is missing (remote hosts answer for
    themselves: their `command not found` surfaces as exit 127)."""
    import shutil  # not at import time: `inv --list` stays fast

    if is_remote(c) or shutil.which(tool, path=_path(c)):
        return
    hint = INSTALL_HINTS.get(tool, f"install {tool}")
    raise Exit(f"{tool} not found on PATH; {hint} (`inv doctor` checks every tool)")


def _path(c: Context) -> str:
    """PATH for local commands: the user's own tools first, then the simulated-cluster
    binaries (kwokctl, helm ...) that scripts/build-sim-binaries.sh built."""
    base = (c.config.get("run", {}).get("env", {}) or {}).get("PATH") or os.environ.get("PATH", "")
    return os.pathsep.join([base, str(_sim.bin_dir())])


class _Input(io.StringIO):
    """Text for a command's standard input, handed over in large chunks.

    invoke's runners read a non-terminal stream one character per loop (with a short sleep
    between reads), which makes a 10 kB manifest take over a minute to stream."""

    def read(self, size: int | None = -1) -> str:
        return super().read(-1 if size == 1 else size)


def run(
    c: Context,
    argv: Sequence[str],
    *,
    dry: bool | None = None,
    input: str | None = None,
    **kwargs: Any,
) -> Result:
    """Run one command. `dry=False` marks a read-only query that runs even under --dry;
    `input` is written to the command's standard input (never to a file)."""
    if dry is not False:
        _prefetched.clear()  # it may change what the prefetched queries would answer
    require(c, argv[0])
    if input is not None:
        kwargs["in_stream"] = _Input(input)
    if not is_remote(c):
        kwargs["env"] = {"PATH": _path(c), **kwargs.get("env", {})}
    if dry is not None:
        kwargs["dry"] = dry
    result = c.run(shlex.join(argv), **kwargs)
    assert result is not None  # c.run returns None only with disown=True, never used here
    return result


def query(c: Context, argv: Sequence[str], **kwargs: Any) -> Result:
    """A read-only command whose output we parse: runs under --dry, prints nothing, may fail."""
    kwargs.setdefault("hide", True)
    kwargs.setdefault("warn", True)
    kwargs.setdefault("echo", False)
    kwargs.setdefault("in_stream", False)  # never read the terminal for a query
    result = _asked_ahead(c, argv) or run(c, argv, dry=False, **kwargs)
    if result.exited == 127:  # the shell found no such command (remote hosts end up here)
        hint = INSTALL_HINTS.get(argv[0], f"install {argv[0]}")
        place = "on PATH" if not is_remote(c) else f"on host {getattr(c, 'host', '')}"
        raise Exit(f"{argv[0]} not found {place}; {hint}", code=127)
    return result


# Answers of queries asked ahead (`prefetch`), by (where, argv), with when they were asked:
# each is used once, within FRESH seconds, and all are dropped when a command that may change
# something runs.
_prefetched: dict[tuple[str, tuple[str, ...]], tuple[float, Result]] = {}
FRESH = 30.0


def _asked_ahead(c: Context, argv: Sequence[str]) -> Result | None:
    asked, answer = _prefetched.pop((where(c), tuple(argv)), (0.0, None))
    return answer if time.monotonic() - asked < FRESH else None


def _answered(c: Context, argv: Sequence[str]) -> bool:
    """Whether `argv` was asked ahead recently enough for its answer to be used."""
    asked, _ = _prefetched.get((where(c), tuple(argv)), (0.0, None))
    return time.monotonic() - asked < FRESH


def prefetch(c: Context, argvs: Sequence[Sequence[str]], timeout: int = 60) -> None:
    """Ask several read-only commands at once, in one shell: they run side by side, and on a
    -H host that is one SSH session instead of one each (each costs a round trip and a
    login shell). The `query` calls that follow get these answers instead of running them
    again. A shell that fails as a whole leaves nothing kept: the queries then run alone.
    Questions already asked ahead and not used yet are not asked again."""
    argvs = [argv for argv in argvs if not _answered(c, argv)]
    if not argvs:
        return
    boundary = os.urandom(8).hex()
    steps, report = [], []
    for i, argv in enumerate(argvs):
        steps.append(
            f'{{ {shlex.join(argv)}; echo $? > "$d/{i}.rc"; }} > "$d/{i}.out" 2> "$d/{i}.err" &'
        )
        report.append(
            f'printf "%s {i} %s\\n" {boundary} "$(cat "$d/{i}.rc")"; cat "$d/{i}.out"; '
            f'printf "\\n%s-err\\n" {boundary}; cat "$d/{i}.err"; printf "\\n%s-end\\n" {boundary}'
        )
    script = "\n".join(
        ["d=$(mktemp -d) || exit 1", "trap 'rm -rf \"$d\"' EXIT", *steps, "wait", *report]
    )
    shell = run(
        c, ["sh", "-c", script], dry=False, hide=True, warn=True, echo=False, in_stream=False,
        timeout=timeout,
    )  # fmt: skip
    if not shell.ok:
        return
    found = re.finditer(
        rf"^{boundary} (\d+) (\d+)\n(.*?)\n{boundary}-err\n(.*?)\n{boundary}-end$",
        shell.stdout,
        re.S | re.M,
    )
    for match in found:
        argv = tuple(argvs[int(match.group(1))])
        answer = Result(
            stdout=match.group(3),
            stderr=match.group(4),
            exited=int(match.group(2)),
            command=shlex.join(argv),
            hide=("stdout", "stderr"),
        )
        _prefetched[(where(c), argv)] = (time.monotonic(), answer)


def why(result: Result) -> str:
    """The last line a failed command printed (its error, as a rule), or its exit code."""
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.exited}"


def write_file(c: Context, path: PurePath, text: str) -> None:
    """Write a file where the commands run (this machine or the remote host), owner-only;
    the text travels on standard input, so it never shows up in a command line."""
    script = (
        f"umask 077 && mkdir -p {shlex.quote(str(path.parent))} && cat > {shlex.quote(str(path))}"
    )
    run(c, ["sh", "-c", script], input=text)


class QueryFailed(Exit):
    """A read-only command that could not answer: "could not look" is never "nothing there"."""


def ask(c: Context, argv: Sequence[str], what: str, **kwargs: Any) -> str:
    """The output of a read-only command that must answer; raises QueryFailed naming `what`."""
    result = query(c, argv, **kwargs)
    if not result.ok:
        raise QueryFailed(f"cannot {what}: `{shlex.join(argv)}` failed: {why(result)}", code=1)
    return str(result.stdout)


def ask_json(c: Context, argv: Sequence[str], what: str, **kwargs: Any) -> Any:
    """Like `ask`, parsed as JSON; output that is not JSON is a failure too."""
    output = ask(c, argv, what, **kwargs)
    try:
        return json.loads(output or "null")
    except json.JSONDecodeError as error:
        raise QueryFailed(
            f"cannot {what}: `{argv[0]}` printed something that is not JSON ({error})", code=1
        ) from None


def interrupted() -> Exit:
    """Ctrl-C as one line and exit 130 (the shell's code for SIGINT); tasks that must undo
    something catch KeyboardInterrupt themselves first and say what they left."""
    return Exit("interrupted (Ctrl-C); the lines above say what was done", code=130)


class InterruptibleLocal(Local):
    """invoke's local runner, except that Ctrl-C stops the task, not only the command.

    invoke forwards ^C to the running command and then waits for it as if nothing happened: a
    query run with warn=True returns a failed result and the task carries on (a restore would
    go on to its next step). This runner also signals the command and, once it has ended,
    raises KeyboardInterrupt, so the task's own clean-up runs and the program says
    "interrupted" (exit 130)."""

    interrupted = False
    # invoke decides this in _setup; a Ctrl-C landing before that must still reach the clean-up
    # in run()'s `finally` (which reads it) as KeyboardInterrupt, not as an AttributeError.
    using_pty = False

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        self.interrupted = True
        with contextlib.suppress(OSError, ValueError):  # its standard input may be closed
            super().send_interrupt(interrupt)
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            # Without a terminal (`kill`, a CI runner) only this process got the signal: pass
            # it to the command and everything it started, deepest first.
            for pid in [*_descendants(process.pid), process.pid]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGINT)

    def run(self, command: str, **kwargs: Any) -> Result | None:
        try:
            result = super().run(command, **kwargs)
        except UnexpectedExit:
            if self.interrupted:
                raise KeyboardInterrupt from None
            raise
        if self.interrupted:
            raise KeyboardInterrupt
        return result


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, deepest first, as far as a terminal's Ctrl-C
    would reach them: daemons that left for a session of their own (a simulated cluster's
    control plane, started by kwokctl) are left alone. From /proc; none elsewhere."""
    children: dict[int, list[int]] = {}
    session = os.getsid(0)
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[3]) == session:  # fields: state ppid pgrp session ...
                        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []

    def walk(parent: int) -> None:
        for child in children.get(parent, []):
            walk(child)
            found.append(child)

    walk(pid)
    return found
