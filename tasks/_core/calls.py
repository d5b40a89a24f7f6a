"""How invoke calls our tasks: pre-tasks that run once even when also named on the command line
(`as_typed`), and the one core flag of ours (`parallel_argument`).

invoke skips a task already run only when the two calls are equal, keyword arguments included;
a task named on the command line carries every flag at its default, a bare pre-task none, so
`inv cluster.create deploy.all` would create twice ("ready", then "already exists"). A pre-task
made by `as_typed` carries the same defaults, and the two calls are one."""

from __future__ import annotations

import inspect

from invoke import Argument, Call, Task


def as_typed(task: Task) -> Call:
    """A call of `task` equal to `inv <task>` typed without flags."""
    parameters = list(inspect.signature(task.body).parameters.values())[1:]  # after the context
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return Call(task, kwargs=defaults)


def parallel_argument() -> Argument:
    """`--parallel`, listed by both programs' --help; read (and removed) by
    `_cli.fanout.plan` before either program parses the command line."""
    return Argument(
        names=("parallel",),
        kind=bool,
        help="With several -H hosts: run them at once (lines labelled [host]; a summary at "
        "the end either way).",
    )
