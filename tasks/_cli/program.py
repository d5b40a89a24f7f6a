"""The `inv` and `prism` commands: invoke's own program, or fabric's when SSH flags are given.

`inv -H box deploy.all` runs the tasks (and each pre-task, once per host) on every host over SSH;
without -H/-i/--ssh-config ... fabric and paramiko are never imported, so `inv --list` stays as
fast as invoke's own `inv`. The plain program still knows fabric's flags (the same Arguments,
declared here without importing fabric): `inv --help` lists them, shell completion offers them,
and one given after a task name is refused instead of being ignored.

Completion (`inv --complete`, what invoke's completion scripts call) is invoke's - task names
and flags - plus the values this project knows without a cluster: overlay, backend, workload,
Service, image and provider names, and -H's hosts from ~/.ssh/config.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from invoke import Argument, FilesystemLoader, Program
from invoke.exceptions import Exit, ParseError
from invoke.parser import Parser, ParserContext

# Imported here, not when needed: in another project the loader has replaced `tasks` with that
# project's package by the time a task runs (tasks/__init__.py imports it anyway).
from .._core.calls import parallel_argument
from .._core.command import interrupted


def ssh_arguments() -> list[Argument]:
    """fabric.main.Fab's own core flags, as Fab declares them (a test compares the two)."""
    return [
        Argument(
            names=("H", "hosts"),
            help="Comma-separated host name(s) to execute tasks against.",
        ),
        Argument(
            names=("i", "identity"),
            kind=list,
            help="Path to runtime SSH identity (key) file. May be given multiple times.",
        ),
        Argument(
            names=("list-agent-keys",), kind=bool, help="Display ssh-agent key list, and exit."
        ),
        Argument(
            names=("prompt-for-login-password",),
            kind=bool,
            help="Request an upfront SSH-auth password prompt.",
        ),
        Argument(
            names=("prompt-for-passphrase",),
            kind=bool,
            help="Request an upfront SSH key passphrase prompt.",
        ),
        Argument(names=("S", "ssh-config"), help="Path to runtime SSH config file."),
        Argument(
            names=("t", "connect-timeout"),
            kind=int,
            help="Specifies default connection timeout, in seconds.",
        ),
    ]


def _flag(name: str) -> str:
    return f"-{name}" if len(name) == 1 else f"--{name}"


# Any of these, where invoke expects the first task name, selects the fabric program.
SSH_FLAGS = frozenset(_flag(name) for argument in ssh_arguments() for name in argument.names)


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
    """invoke's program; Ctrl-C in a task ends with one line and exit 130, not a silent 1.

    It declares fabric's SSH flags too, for `--help` and completion only: a command line that
    uses one before the tasks runs the fabric program instead (`wants_ssh`), and one after a
    task name would otherwise be taken as a core flag and silently ignored."""

    def core_args(self) -> list[Argument]:
        return [*super().core_args(), *ssh_arguments(), parallel_argument()]

    def parse_cleanup(self) -> None:
        if self.args.complete.value:
            complete(self)
        if self.args.parallel.value:
            raise ParseError("--parallel runs several hosts at once: give them with -H a,b")
        for argument in ssh_arguments():
            if self.args[argument.name].got_value:
                names = "/".join(_flag(name) for name in argument.names)
                raise ParseError(
                    f"{names} goes before the task names (as in `inv -H box deploy.all`), "
                    "where it makes the tasks run over SSH"
                )
        super().parse_cleanup()

    def execute(self) -> None:
        if any(str(call.name).split(".")[0] in TALK_TO_THE_API for call in self.tasks):
            from .._kube import client as _kube

            _kube.preload()
        try:
            super().execute()
        except KeyboardInterrupt:
            raise interrupted() from None


# The collections whose tasks use the Kubernetes client (its import starts early for them).
TALK_TO_THE_API = {"deploy", "backends", "backup", "observe", "chaos"}


# Completion of values. Invoke completes task names and flags only (after a flag that takes a
# value it prints nothing, and the shell offers file names); these are the values known from
# this checkout's files and settings, without asking a cluster.
def _overlays(program: Program) -> list[str]:
    from .._deploy import render as _render

    return sorted(p.name for p in (_render.MANIFESTS / "overlays").iterdir() if p.is_dir())


def _components(kinds: tuple[str, ...]) -> list[str]:
    """Base components with a `<name>-<kind>.yaml` of one of these kinds (the file naming of
    manifests/README.md): their Deployments/StatefulSets, or their Services."""
    from .._deploy import render as _render

    return sorted(
        p.name
        for p in (_render.MANIFESTS / "base").iterdir()
        if any((p / f"{p.name}-{kind}.yaml").is_file() for kind in kinds)
    )


def _backends(program: Program) -> list[str]:
    from .._deploy import render as _render

    return _render.available_backends()


def _images(program: Program) -> list[str]:
    from invoke import Context

    from .._core import settings as _settings

    names = _settings.load(Context(config=program.config)).images.names
    return [n.strip() for n in str(names).split(",") if n.strip()]


def _providers(program: Program) -> list[str]:
    from .._core.target import PROVIDERS

    return list(PROVIDERS)


def _ssh_hosts(program: Program) -> list[str]:
    """The `Host` names of ~/.ssh/config, patterns (*, ?, !) left out."""
    try:
        text = (Path.home() / ".ssh" / "config").read_text()
    except (OSError, UnicodeDecodeError):
        return []
    hosts: list[str] = []
    for line in text.splitlines():
        words = line.replace("=", " ", 1).split()
        if len(words) > 1 and words[0].lower() == "host":
            hosts += [w for w in words[1:] if not set(w) & set("*?!")]
    return sorted(set(hosts))


# (task name prefix, argument name) -> (its names, a comma-separated list?, only these names?);
# "" is every task, and the core flags.
VALUES: dict[tuple[str, str], tuple[Callable[[Program], list[str]], bool, bool]] = {
    ("", "overlay"): (_overlays, False, True),
    ("", "provider"): (_providers, False, True),
    ("", "app"): (lambda program: _components(("deployment", "statefulset")), False, True),
    ("observe.forward", "services"): (lambda program: _components(("service",)), True, True),
    ("", "backend"): (_backends, False, True),
    ("backends.", "only"): (_backends, True, True),
    ("images.", "only"): (_images, True, True),
    ("", "hosts"): (_ssh_hosts, True, False),  # any host name will do
}


def complete(program: Program) -> None:
    """`--complete`: invoke's candidates, or the names an argument's value can be.

    The completion scripts pass the command line up to the cursor without an empty last word,
    so `--overlay local` may be a finished value or one still being typed: then both the names
    and invoke's candidates are printed, and the shell keeps those that match the word."""
    from types import SimpleNamespace

    from invoke.completion.complete import complete as invoke_complete

    tokens = shlex.split(program.core.remainder)
    if tokens and Path(tokens[0]).name in program.binary_names:
        tokens = tokens[1:]  # also `.venv/bin/inv`, which invoke would take for a task name
    try:
        values = _value_candidates(program, tokens)
    except Exception:  # completion must never print a traceback into the shell
        values = None
    if values is not None:
        names, finished = values
        for name in names:
            print(name)
        if not finished:
            raise Exit
    remainder = " ".join([program.binary_names[0], *map(shlex.quote, tokens)])
    invoke_complete(
        names=program.binary_names,
        core=SimpleNamespace(remainder=remainder),  # type: ignore[arg-type]
        initial_context=program.initial_context,
        collection=program.collection,
        parser=program._make_parser(),
    )


class Values:
    """The names an argument's value can be; `is_list`: comma-separated (`--only redis,nats`);
    `exhaustive`: no other value is valid (so one that is not a name is still being typed).
    (A plain class: a NamedTuple costs `inv --list` a third of a millisecond to define.)"""

    __slots__ = ("exhaustive", "is_list", "names")

    def __init__(self, names: list[str], is_list: bool, exhaustive: bool) -> None:
        self.names, self.is_list, self.exhaustive = names, is_list, exhaustive

    def matching(self, typed: str, prefix: str = "") -> list[str]:
        """Candidates for a value being typed; in a list, for the item after the last comma."""
        if not self.is_list or "," not in typed:
            return [prefix + name for name in self.names]
        done = typed.rpartition(",")[0]
        given = set(done.split(","))
        return [f"{prefix}{done},{name}" for name in self.names if name not in given]


def _value_candidates(program: Program, tokens: list[str]) -> tuple[list[str], bool] | None:
    """(names to print, whether invoke's candidates follow them: the value may be finished),
    or None when the word being completed is not a value this project knows."""
    if not tokens:
        return None
    *before, last = tokens
    if last.startswith("-") and "=" in last:  # zsh and fish keep `--overlay=lo` one word
        flag, _, typed = last.partition("=")
        values = _flag_values(program, _context(program, before), flag)
        return (values.matching(typed, flag + "="), False) if values else None
    if last == "=" and before:  # bash splits `--overlay=` at the "=" ...
        *before, last = before
    elif before[-1:] == ["="]:  # ... and `--overlay=lo` into three words
        before = before[:-1]
    context = _context(program, before)
    values = _flag_values(program, context, last)
    if values is not None:  # `--overlay ` with nothing typed after it yet
        return values.names, False
    if last.startswith("-"):
        return None
    # `--overlay lo` (a value after its flag) or `observe.logs pri` (a positional argument)
    values = _flag_values(program, context, before[-1]) if before else None
    values = values or _positional_values(program, context)
    if values is not None:
        names = values.matching(last)
        finished = last in names or not (values.exhaustive or last.endswith(","))
        return names, finished
    # `observe.logs`: the task (maybe still being typed), then its positional argument's names
    context = _context(program, tokens)
    values = _positional_values(program, context) if context.name == last else None
    return ([*values.names, last], False) if values is not None else None


def _context(program: Program, tokens: list[str]) -> ParserContext:
    """The parser context (the core flags', or a task's) that these tokens end in."""
    try:
        contexts: list[ParserContext] = program._make_parser().parse_argv(tokens)
    except ParseError as error:
        contexts = [error.context] if error.context is not None else []
    return contexts[-1] if contexts and contexts[-1].name else program.initial_context


def _flag_values(program: Program, context: ParserContext, flag: str) -> Values | None:
    """The values of a flag of this context (or a core flag) that takes a known kind of value."""
    # (Lexicon: `in` and [] see the short-flag aliases, .get does not.)
    if flag in context.flags:
        task, argument = context.name or "", context.flags[flag]
    elif flag in program.initial_context.flags:
        task, argument = "", program.initial_context.flags[flag]
    else:
        return None
    return _lookup(program, task, argument.names) if argument.takes_value else None


def _positional_values(program: Program, context: ParserContext) -> Values | None:
    missing = context.missing_positional_args if context.name else []
    return _lookup(program, context.name or "", missing[0].names) if missing else None


def _lookup(program: Program, task: str, names: tuple[str, ...]) -> Values | None:
    for (prefix, argument), (function, is_list, exhaustive) in VALUES.items():
        if argument in names and task.startswith(prefix):
            return Values(function(program), is_list, exhaustive)
    return None


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
            ssh = wants_ssh(argv[1:])
            if ssh:
                from . import fanout as _fanout

                plan = _fanout.plan(argv[1:], ProjectProgram(**identity))
                if len(plan.hosts) > 1:
                    sys.exit(_fanout.fan_out(argv[0], plan))
                hosts = ["-H", *plan.hosts] if plan.hosts else []  # before a `--` remainder
                argv = [argv[0], *hosts, *plan.core, *plan.rest]
            program(ssh=ssh, **identity).run(argv)
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
