"""How tasks print. Plain text when the output is a pipe or a file, when `NO_COLOR` is set
(no-color.org) or `TERM=dumb`; on a terminal, colour and status lines that update in place,
through `rich` (imported only then, so `inv --list` and scripts never pay for it).

Every function writes the same words either way: tests read the plain form, people the
coloured one. `--json` documents go through `print_json`, never through styling."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

STYLES = {True: ("✓", "green"), False: ("✗", "bold red"), None: ("-", "dim")}
_console: Any = None
_lock = threading.Lock()


def styled(stream: Any = None) -> bool:
    """Whether to colour what goes to `stream` (standard output by default)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def console() -> Any:
    """The one rich Console for standard output (only called when `styled()`)."""
    global _console
    with _lock:
        if _console is None:
            from rich.console import Console

            _console = Console(highlight=False, soft_wrap=True)
        return _console


def say(text: str, style: str = "") -> None:
    """One line, in `style` (a rich style such as "green" or "bold red") on a terminal."""
    if styled():
        from rich.markup import escape

        console().print(escape(text), style=style or None)
    else:
        print(text, flush=True)


def mark(ok: bool | None) -> str:
    """✓ / ✗ / - (passed, failed, skipped), coloured on a terminal."""
    symbol, style = STYLES[ok]
    if not styled():
        return symbol
    return f"\x1b[{_ANSI[style]}m{symbol}\x1b[0m"


_ANSI = {"green": "32", "bold red": "1;31", "dim": "2"}


def line(ok: bool | None, text: str) -> None:
    """A result line: its mark, then the text (an indented text keeps its indent before the
    mark)."""
    symbol, style = STYLES[ok]
    body = text.lstrip(" ")
    indent = text[: len(text) - len(body)]
    if styled():
        from rich.markup import escape

        console().print(f"{indent}[{style}]{symbol}[/] {escape(body)}")
    else:
        print(f"{indent}{symbol} {body}", flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows in aligned columns, as plain text."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], styles: Sequence[str] = ()
) -> None:
    """A table: plain aligned columns, or a rich table with a bold header on a terminal."""
    if not styled():
        print(table(header, rows), flush=True)
        return
    from rich import box
    from rich.table import Table

    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in header:
        shown.add_column(name, style=None, header_style="bold")
    for i, row in enumerate(rows):
        shown.add_row(*(str(cell) for cell in row), style=styles[i] if i < len(styles) else None)
    console().print(shown)


def print_json(document: Any) -> None:
    """A `--json` document: indented, keys in the order given, UTF-8 as is."""
    print(json.dumps(document, indent=2, ensure_ascii=False), flush=True)


class Status:
    """What is still being waited for: on a terminal one spinner line that updates in place,
    showing every key's text; in plain output a line only when `update` is told to print
    (heartbeats stay sparse in logs). `say` prints a permanent line above it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.texts: dict[str, str] = {}
        self.live: Any = None

    def say(self, text: str, ok: bool | None = None) -> None:
        with self.lock:
            if ok is None:
                say(text)
            else:
                line(ok, text)

    def update(self, key: str, text: str, plain: bool = True) -> None:
        """Set `key`'s text; printed as a line in plain mode when `plain`."""
        with self.lock:
            if not styled():
                if plain:
                    print(text, flush=True)
                return
            self.texts[key] = text
            self._render()

    def clear(self, key: str) -> None:
        with self.lock:
            if self.texts.pop(key, None) is not None:
                self._render()

    def stop(self) -> None:
        with self.lock:
            self.texts.clear()
            self._render()

    def _render(self) -> None:
        shown = " · ".join(self.texts.values())
        if not shown:
            if self.live is not None:
                self.live.stop()
                self.live = None
            return
        from rich.markup import escape

        if self.live is None:
            self.live = console().status(escape(shown), spinner="dots")
            self.live.start()
        else:
            self.live.update(escape(shown))
