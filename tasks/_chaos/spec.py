"""What a user writes: durations (`--for 60s`) and the scenario file of `chaos.run`.

A scenario is YAML: a list of drills, each a one-key mapping from the drill's name to its
options, with pauses between them.

    pause: 10s              # between drills (optional; default 5s)
    drills:
      - drain: {node: kwok-prism-ci-agent-0}
      - pause: 30s          # instead of the default, once
      - backend-outage: {backend: redis, for: 30s}
      - node-down: {random: true, for: 60s}
      - api-restart: {}

Everything is checked before the first drill starts; a mistake is one line naming the drill
and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke import Exit

MAX_SECONDS = 86400
DEFAULT_PAUSE = 5
_DURATION = re.compile(r"(\d+)([smh])")
_UNIT = {"s": 1, "m": 60, "h": 3600}

# drill -> (its options, the ones it needs: a tuple of alternatives)
DRILLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "node-down": (("node", "random", "for", "timeout"), ("node", "random")),
    "drain": (("node", "timeout"), ("node",)),
    "backend-outage": (("backend", "for", "timeout"), ("backend",)),
    "api-restart": (("for", "timeout"), ()),
}
DURATION_KEYS = ("for", "timeout")


def seconds(value: object, default: int, flag: str = "--for", zero_ok: bool = False) -> int:
    """`60`, `60s`, `2m`, `1m30s` as whole seconds; None or "" is the default."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if isinstance(value, bool):
        text = "?"
    if text.isdigit():
        number = int(text)
    else:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise Exit(
                f"{flag} {value!r} is not a duration; write it like 60, 60s, 2m or 1m30s", code=1
            )
        number = sum(int(n) * _UNIT[u] for n, u in parts)
    low = 0 if zero_ok else 1
    if not low <= number <= MAX_SECONDS:
        raise Exit(f"{flag} {value!r} must be between {low} and {MAX_SECONDS} seconds", code=1)
    return number


@dataclass(frozen=True)
class Step:
    """One item of a scenario: a drill with its options, or a pause (`drill == "pause"`)."""

    drill: str
    options: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    def label(self) -> str:
        return f"drills[{self.index}] ({self.drill})"


@dataclass(frozen=True)
class Scenario:
    path: Path
    steps: tuple[Step, ...]
    pause: int

    def drills(self) -> list[Step]:
        return [step for step in self.steps if step.drill != "pause"]


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file; every mistake is one line."""
    import yaml

    where = Path(path)
    name = f"scenario {where}"
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Exit(f"{name}: no such file", code=1) from None
    except IsADirectoryError:
        raise Exit(f"{name} is a directory; give a YAML file", code=1) from None
    except (OSError, UnicodeDecodeError) as error:
        raise Exit(f"cannot read {name}: {error}", code=1) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise Exit(f"{name} is not YAML: {problem}{at}", code=1) from None
    return parse(document, where)


def parse(document: Any, path: Path) -> Scenario:
    name = f"scenario {path}"
    if not isinstance(document, dict) or "drills" not in document:
        raise Exit(
            f"{name}: expected a mapping with `drills:`, a list such as "
            "`- drain: {node: NAME}` (see docs/chaos.md)",
            code=1,
        )
    for key in document:
        if key not in ("drills", "pause"):
            raise Exit(
                f"{name}: unknown key {key!r}{_closest(str(key), ('drills', 'pause'))}; "
                "a scenario has: drills, pause",
                code=1,
            )
    pause = seconds(document.get("pause"), DEFAULT_PAUSE, f"{name}: pause", zero_ok=True)
    items = document["drills"]
    if not isinstance(items, list) or not items:
        raise Exit(f"{name}: `drills` must be a non-empty list of drills", code=1)
    steps = [_step(item, index, name) for index, item in enumerate(items)]
    if all(step.drill == "pause" for step in steps):
        raise Exit(f"{name}: only pauses, no drill to run", code=1)
    return Scenario(path, tuple(steps), pause)


def _step(item: Any, index: int, name: str) -> Step:
    where = f"{name}: drills[{index}]"
    if not isinstance(item, dict) or len(item) != 1:
        raise Exit(
            f"{where} must be one drill, written `- DRILL: {{options}}` "
            f"(drills: {', '.join(DRILLS)}; or `- pause: 10s`)",
            code=1,
        )
    ((drill, options),) = item.items()
    drill = str(drill)
    if drill == "pause":
        return Step("pause", {"for": seconds(options, 0, f"{where}: pause", zero_ok=True)}, index)
    if drill not in DRILLS:
        raise Exit(
            f"{where}: unknown drill {drill!r}{_closest(drill, DRILLS)}; "
            f"choose one of: {', '.join(DRILLS)}, pause",
            code=1,
        )
    where = f"{where} ({drill})"
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise Exit(f"{where}: its options must be a mapping, e.g. {{for: 60s}}", code=1)
    allowed, needs = DRILLS[drill]
    checked: dict[str, Any] = {}
    for key, value in options.items():
        key = str(key)
        if key not in allowed:
            raise Exit(
                f"{where}: unknown key {key!r}{_closest(key, allowed)}; "
                f"{drill} takes: {', '.join(allowed)}",
                code=1,
            )
        if key in DURATION_KEYS:
            zero_ok = drill == "api-restart" and key == "for"
            checked[key] = seconds(value, 0, f"{where}: {key}", zero_ok=zero_ok)
        elif key == "random":
            if not isinstance(value, bool):
                raise Exit(f"{where}: random must be true or false, not {value!r}", code=1)
            checked[key] = value
        else:
            if not isinstance(value, str) or not value.strip():
                raise Exit(f"{where}: {key} must be a name, not {value!r}", code=1)
            checked[key] = value.strip()
    if needs and not any(checked.get(key) for key in needs):
        raise Exit(f"{where}: needs {' or '.join(needs)}", code=1)
    if drill == "node-down" and checked.get("node") and checked.get("random"):
        raise Exit(f"{where}: give node or random: true, not both", code=1)
    return Step(drill, checked, index)


def _closest(word: str, known: Any) -> str:
    from difflib import get_close_matches

    found = get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.7)
    return f" (did you mean {found[0]}?)" if found else ""
