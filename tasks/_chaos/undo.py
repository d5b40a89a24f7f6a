"""What puts the cluster back. A drill pushes each undo *before* it breaks the thing (so Ctrl-C
at any moment finds it), runs it itself on the normal path, and on Ctrl-C `restoring` runs
whatever is still pending, with Ctrl-C ignored until the cluster is as it was, then ends the
task with exit 130 and a line saying what was restored."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from invoke import Exit


class Interrupted(Exit):
    """Ctrl-C during a drill, after the cluster was put back (exit 130)."""


@dataclass
class Undo:
    """Pending restores, newest last; each is (what it restores, how)."""

    pending: list[tuple[str, Callable[[], str]]] = field(default_factory=list)

    def push(self, what: str, action: Callable[[], str]) -> None:
        self.pending.append((what, action))

    def run(self, what: str) -> str:
        """Run one pending restore now (the drill's normal path); returns what it says."""
        for index, (name, action) in enumerate(self.pending):
            if name == what:
                del self.pending[index]
                return action()
        return ""

    def run_all(self) -> list[str]:
        """Every pending restore, newest first; a failure is reported, and the rest still run."""
        done = []
        while self.pending:
            what, action = self.pending.pop()
            try:
                said = action()
                done.append(f"restored {what}" + (f": {said}" if said else ""))
            except Exit as error:
                done.append(f"could NOT restore {what}: {error.message}")
            except Exception as error:  # an API that went away mid-restore, for one
                done.append(f"could NOT restore {what}: {type(error).__name__}: {error}")
        return done


@contextmanager
def restoring(drill: str, undo: Undo, say: Callable[[str], None]) -> Iterator[Undo]:
    """Run the drill's body. On Ctrl-C undo what is pending and exit 130 saying so; on any
    other failure undo it too, say so, and let the failure end the task."""
    try:
        yield undo
    except KeyboardInterrupt:
        done = _undo_all(drill, undo, say, "interrupted")
        failed = any(line.startswith("could NOT") for line in done)
        if failed:
            summary = "some of it could NOT be restored (the lines above say what)"
        elif done:
            summary = "the cluster is as it was: " + "; ".join(done)
        else:
            summary = "nothing needed restoring (the fault was already undone)"
        raise Interrupted(f"interrupted (Ctrl-C) during {drill}: {summary}", code=130) from None
    except BaseException:
        _undo_all(drill, undo, say, "failed")
        raise


def _undo_all(drill: str, undo: Undo, say: Callable[[str], None], why: str) -> list[str]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if undo.pending:
            say(f"{why}: restoring what {drill} changed (Ctrl-C is ignored until done)")
        done = undo.run_all()
    finally:
        signal.signal(signal.SIGINT, previous)
    for line in done:
        say(f"  {line}")
    return done
