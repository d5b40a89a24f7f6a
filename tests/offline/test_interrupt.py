"""Ctrl-C while a task runs a command: the task stops with KeyboardInterrupt (so its own
clean-up runs and the program exits 130), wherever in invoke's runner the signal lands."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from invoke import Context

from tasks._core.command import InterruptibleLocal


def test_ctrl_c_during_a_command_stops_the_task_not_only_the_command() -> None:
    runner = InterruptibleLocal(Context())
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run("sleep 30", hide=True, warn=True, in_stream=False)
    finally:
        timer.cancel()
    assert runner.process.poll() is not None, "the command was left running"


def test_ctrl_c_before_the_runner_has_decided_on_a_pty_is_still_an_interrupt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal can land in invoke's own set-up, before it sets `using_pty`, which the
    clean-up in its `finally` reads: that used to turn Ctrl-C into an AttributeError (exit 1,
    the task's undo skipped)."""

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(InterruptibleLocal, "_unify_kwargs_with_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        InterruptibleLocal(Context()).run("true", hide=True)
