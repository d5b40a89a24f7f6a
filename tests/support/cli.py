"""Run the real `inv` of this virtualenv as a user would, or build the Context it would build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from invoke import Config, Context

ROOT = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))


def inv(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run the real `inv` of this virtualenv, as a user would."""
    return subprocess.run(
        [INV, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def make_context(**overrides: object) -> Context:
    """An invoke Context carrying the collection's defaults, as `inv` would build it."""
    import tasks

    config = Config(overrides=overrides)
    config.load_collection(tasks.ns.configuration())
    return Context(config=config)
