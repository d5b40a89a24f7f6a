"""Queries asked ahead in one shell (`command.prefetch`): each answer is exactly what asking
alone gives, is used once, and is dropped when a command that may change something runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Context

from tasks._core import command as _command

QUESTIONS = [
    ["sh", "-c", 'printf "two\\nlines\\n"; echo warning >&2; exit 3'],
    ["printf", "no newline at the end"],
    ["sh", "-c", "exit 0"],
    ["sh", "-c", "echo '  spaces kept  '; printf '\\n\\n' >&2"],
]


@pytest.fixture(autouse=True)
def nothing_kept() -> None:
    _command._prefetched.clear()


def asked(path: Path) -> list[str]:
    """A query that leaves a line in `path` each time it really runs."""
    return ["sh", "-c", f"echo ran >> {path}; echo answer"]


def test_each_answer_is_what_asking_alone_gives() -> None:
    c = Context()
    alone = [_command.query(c, argv) for argv in QUESTIONS]
    _command.prefetch(c, QUESTIONS)
    ahead = [_command.query(c, argv) for argv in QUESTIONS]
    assert [(r.stdout, r.stderr, r.exited) for r in ahead] == [
        (r.stdout, r.stderr, r.exited) for r in alone
    ]
    assert [r.ok for r in ahead] == [False, True, True, True]


def test_an_answer_asked_ahead_is_used_once(tmp_path: Path) -> None:
    c, log = Context(), tmp_path / "log"
    _command.prefetch(c, [asked(log)])
    assert _command.query(c, asked(log)).stdout == "answer\n"
    assert log.read_text() == "ran\n"  # asked once, in the prefetch
    _command.query(c, asked(log))
    assert log.read_text() == "ran\nran\n"  # the second time it runs again


def test_a_command_that_may_change_something_drops_what_was_asked(tmp_path: Path) -> None:
    c, log = Context(), tmp_path / "log"
    _command.prefetch(c, [asked(log)])
    _command.run(c, ["true"], hide=True, in_stream=False)
    _command.query(c, asked(log))
    assert log.read_text() == "ran\nran\n"


def test_an_answer_too_old_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c, log = Context(), tmp_path / "log"
    _command.prefetch(c, [asked(log)])
    monkeypatch.setattr(_command, "FRESH", 0.0)
    _command.query(c, asked(log))
    assert log.read_text() == "ran\nran\n"


def test_the_questions_run_side_by_side(tmp_path: Path) -> None:
    """Two questions that each wait for the other's mark can only both answer at once."""
    a, b = tmp_path / "a", tmp_path / "b"
    wait_for = "for i in $(seq 50); do [ -e {0} ] && break; sleep 0.1; done; [ -e {0} ]"
    first = ["sh", "-c", f"touch {a}; {wait_for.format(b)}"]
    second = ["sh", "-c", f"touch {b}; {wait_for.format(a)}"]
    c = Context()
    _command.prefetch(c, [first, second])
    assert _command.query(c, first).ok and _command.query(c, second).ok


def test_a_question_asked_ahead_and_not_used_yet_is_not_asked_again(tmp_path: Path) -> None:
    """What a pre-task asked ahead for the task after it (`cluster.next_questions`) is not
    asked a second time when that task asks ahead too."""
    c, log, other = Context(), tmp_path / "log", tmp_path / "other"
    _command.prefetch(c, [asked(log)])
    _command.prefetch(c, [asked(log), asked(other)])
    assert log.read_text() == "ran\n" and other.read_text() == "ran\n"
    assert _command.query(c, asked(log)).stdout == "answer\n"
    assert log.read_text() == "ran\n"
