"""Plain output for pipes, files and NO_COLOR; colour only on a terminal (a real pty here)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from support.cli import ROOT

from tasks._core import output

SCRIPT = """
from tasks._core import output
output.line(True, "admin ready")
output.line(False, "proxy failed")
output.print_table(("step", "seconds"), [("admin", "0.8")])
"""


def run_on_a_terminal(env: dict[str, str]) -> str:
    """SCRIPT's output when its standard output is a terminal."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, "TERM": "xterm", **env},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the child is done
            break
        if not data:
            break
        chunks.append(data)
    child.wait(30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_a_terminal_gets_colour() -> None:
    shown = run_on_a_terminal({})
    assert "\x1b[" in shown
    assert "admin ready" in shown and "proxy failed" in shown


def test_no_color_on_a_terminal_is_plain() -> None:
    shown = run_on_a_terminal({"NO_COLOR": "1"}).replace("\r\n", "\n")
    assert "\x1b[" not in shown
    assert shown == "✓ admin ready\n✗ proxy failed\nstep   seconds\nadmin  0.8\n"


def test_a_pipe_is_plain() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == "✓ admin ready\n✗ proxy failed\nstep   seconds\nadmin  0.8\n"


def test_json_documents_keep_key_order_and_text() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from tasks._core import output; output.print_json({'b': 'é', 'a': 1})"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout == '{\n  "b": "é",\n  "a": 1\n}\n'


def test_styled_asks_the_stream() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    assert output.styled(Tty()) is (
        not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    )
    assert output.styled(open(os.devnull, "w")) is False  # noqa: SIM115
