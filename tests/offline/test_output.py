"""Plain output for pipes, files and NO_COLOR; colour only on a terminal (a real pty here)."""

from __future__ import annotations

import os
import pty
import re
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


def run_on_a_terminal(env: dict[str, str], script: str = SCRIPT) -> str:
    """A script's output when its standard output is a terminal."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", script],
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


# --- what a deploy is waiting for: in place on a terminal, heartbeat lines otherwise ---------

WAITING = """
from tasks._kube.readiness import Progress
progress = Progress()
progress.waiting("admin", "… admin: waiting for prism-admin (0 of 1 updated replicas available)", heartbeat=False)
progress.waiting("proxy", "… proxy: waiting for prism-proxy (1 old replica pending termination)", heartbeat=True)
progress.say("  deployment prism/prism-admin ready", ok=True)
progress.done("admin")
progress.done("proxy")
progress.stop()
"""
ADMIN_WAITING = "… admin: waiting for prism-admin (0 of 1 updated replicas available)"
PROXY_WAITING = "… proxy: waiting for prism-proxy (1 old replica pending termination)"
CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows once `raw` is written: text, carriage returns, line feeds,
    erase-line and cursor-up (what rich's live status uses); colours and cursor visibility
    change nothing here."""
    lines, row, column = [""], 0, 0
    for match in CONTROL.finditer(raw):
        token, (argument, command) = match.group(), match.groups()
        if command == "K":
            lines[row] = ""
        elif command == "A":
            row = max(0, row - int(argument or 1))
        elif command:
            continue
        elif token == "\r":
            column = 0
        elif token == "\n":
            row, column = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        else:
            line = lines[row].ljust(column)
            lines[row] = line[:column] + token + line[column + len(token) :]
            column += len(token)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_on_a_terminal_what_is_awaited_updates_in_place_and_leaves_no_line() -> None:
    raw = run_on_a_terminal({"COLUMNS": "200"}, WAITING).replace("\r\n", "\n")  # no wrapping
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert f"{ADMIN_WAITING} · {PROXY_WAITING}" in plain  # shown, both at once, on one line
    assert screen(raw) == ["  ✓ deployment prism/prism-admin ready"]  # then gone


def test_plain_output_prints_only_the_heartbeats() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WAITING], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == f"{PROXY_WAITING}\n  ✓ deployment prism/prism-admin ready\n"
