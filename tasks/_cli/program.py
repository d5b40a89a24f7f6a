"""The `inv` and `prism` commands: invoke's own program, or fabric's when SSH flags are given.

`inv -H box deploy.all` runs the tasks (and each pre-task, once per host) on every host over SSH;
without -H/-i/--ssh-config ... nothing changes, and fabric and paramiko are never imported, so
`inv --list` stays as fast as invoke's own `inv`.
"""

from __future__ import annotations

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


def program(*, ssh: bool, **identity: Any) -> Program:
    """The plain invoke program, or (ssh=True) the fabric one with per-host execution."""
    if ssh:
        from .._remote import hosts as _hosts

        return _hosts.make_program(loader_class=ProjectLoader, **identity)
    return Program(loader_class=ProjectLoader, **identity)


def run(argv: list[str], **identity: Any) -> None:
    program(ssh=wants_ssh(argv[1:]), **identity).run(argv)


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
