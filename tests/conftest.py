"""Shared fixtures: an isolated configuration per test and a runner for the real `inv`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Config, Context

from tasks._core import target as _target

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PRISM_* variable or real .env of the developer leaks into a test."""
    for key in list(os.environ):
        if key.startswith("PRISM_") and key not in ("PRISM_SIM_HOME",):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PRISM_DOTENV", str(tmp_path / "test.env"))
    monkeypatch.setenv("PRISM_DATA_DIR", str(tmp_path / "data"))

    _target.forget_all()
    yield
    _target.forget_all()


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


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One simulated cluster (kwok provider) for the whole session, deleted at the end."""
    import sim

    cluster = sim.start(tmp_path_factory.mktemp("sim"))
    try:
        yield cluster
    finally:
        sim.stop(cluster)
