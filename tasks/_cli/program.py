"""The `inv` and `prism` commands: invoke's own program, or fabric's when SSH flags are given.

`inv -H box deploy.all` runs the tasks (and each pre-task, once per host) on every host over SSH;
without -H/-i/--ssh-config ... nothing changes, and fabric and paramiko are never imported, so
`inv --list` stays as fast as invoke's own `inv`.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from invoke import FilesystemLoader, Program
from invoke.exceptions import ParseError
from invoke.parser import Parser

# fabric.main.Fab's own core flags (tests compare this with fabric's list): any of them, where
# invoke expects the first task name, selects the fabric program.
SSH_FLAGS = frozenset(
    {
        "-H",
        "--hosts",
        "-i",
        "--identity",
        "--list-agent-keys",
        "--prompt-for-login-password",
        "--prompt-for-passphrase",
        "-S",
        "--ssh-config",
        "-t",
        "--connect-timeout",
    }
)


def wants_ssh(args: Sequence[str]) -> bool:
    """Does the command line carry an SSH flag among the core flags (before any task name)?

    Invoke's own parser reads the core flags and stops at the first token it does not know,
    which is a task name on a plain command line and `-H` on `inv --dry -H box deploy.all`.
    A flag after a task name (`deploy.all -t 60`) belongs to that task and does not count.
    """
    if not any(_could_be_ssh_flag(arg) for arg in args):
        return False  # the common case, decided without building a parser
    parser = Parser(initial=Program().initial_context, ignore_unknown=True)
    try:
        unparsed = parser.parse_argv(list(args)).unparsed
    except ParseError:
        return False  # invoke reports it, exactly as before
    return bool(unparsed) and unparsed[0] in SSH_FLAGS


def _could_be_ssh_flag(arg: str) -> bool:
    """A cheap pre-check: a long SSH flag, or a short-flag cluster with H, i, S or t in it."""
    if arg.startswith("--"):
        return arg.split("=", 1)[0] in SSH_FLAGS
    return arg.startswith("-") and any(letter in arg[1:] for letter in "HiSt")


class ProjectLoader(FilesystemLoader):
    """Invoke's loader, aware that the console script has already imported this `tasks` package.

    Re-executing tasks/__init__.py would build a second collection from the same modules; and
    in another project, whose `tasks` would otherwise resolve `from . import x` to our modules,
    this package is forgotten first.
    """

    def load(self, name: str | None = None) -> tuple[ModuleType, str]:
        name = name or self.config.tasks.collection_name
        ours = sys.modules.get((__package__ or "").partition(".")[0])
        if ours is not None and name == ours.__name__:
            spec = self.find(name)
            if spec is not None and spec.origin is not None and spec.origin == ours.__file__:
                return ours, str(Path(spec.origin).parent.parent)
            for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
                del sys.modules[module]
        return super().load(name)


class ProjectProgram(Program):
    """invoke's program; Ctrl-C in a task ends with one line and exit 130, not a silent 1."""

    def execute(self) -> None:
        from .._core.command import interrupted

        try:
            super().execute()
        except KeyboardInterrupt:
            raise interrupted() from None


def program(*, ssh: bool, **identity: Any) -> Program:
    """The plain invoke program, or (ssh=True) the fabric one with per-host execution."""
    if ssh:
        from .._remote import hosts as _hosts

        return _hosts.make_program(loader_class=ProjectLoader, **identity)
    return ProjectProgram(loader_class=ProjectLoader, **identity)


def run(argv: list[str], **identity: Any) -> None:
    """Run the program; whatever escapes the tasks ends here in one line and a non-zero exit.

    Invoke already turns `Exit` and failed commands into a message and an exit code. This is
    the boundary for the rest: an OS error (a full disk, a directory where a file should be),
    a value error, a broken pipe (`inv deploy.status | head -1`), Ctrl-C. `--debug` (invoke's
    own flag) keeps the traceback."""
    # `kill` (SIGTERM) is handled as Ctrl-C: the task's clean-up runs (partial files go, a
    # restore says what it left) instead of the process vanishing mid-write.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        try:
            program(ssh=wants_ssh(argv[1:]), **identity).run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except SystemExit:
        raise
    except BrokenPipeError:
        # The reader went away: say nothing more (stdout is gone) and exit like `head` expects.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except KeyboardInterrupt:  # outside the tasks (invoke's own handler covers those)
        sys.exit(130)
    except Exception as error:
        if _debugging(argv):
            raise
        print(f"error: {one_line(error)} (`--debug` shows where)", file=sys.stderr)
        sys.exit(1)


def _debugging(argv: Sequence[str]) -> bool:
    return any(arg in ("-d", "--debug") for arg in argv[1:])


def one_line(error: BaseException) -> str:
    """An exception as one line a user can act on."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, ValueError) else f"{type(error).__name__}: {text}"


def inv() -> None:
    """`inv`: invoke's command line, plus fabric's SSH flags."""
    from invoke import __version__

    run(
        sys.argv,
        name="Invoke",
        binary="inv[oke]",
        binary_names=["invoke", "inv"],
        version=__version__,
    )


def prism() -> None:
    """`prism`: the same program under the project's own name."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("prism-tasks")
    except PackageNotFoundError:
        ours = "unknown"
    run(sys.argv, name="Prism", binary="prism", binary_names=["prism"], version=ours)
