"""Shared fixtures: an isolated configuration per test and one simulated cluster per session.

Tests live in folders named for what they need: `offline/` (nothing running), `cluster/` (the
simulated cluster), `ssh/` (a real sshd on loopback, some with the cluster too), `databases/`
(real PostgreSQL and Redis behind the cluster). Helpers and fakes are in `support/`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PRISM_* variable or real .env of the developer leaks into a test."""
    for key in list(os.environ):
        if key.startswith("PRISM_") and key not in ("PRISM_SIM_HOME",):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PRISM_DOTENV", str(tmp_path / "test.env"))
    monkeypatch.setenv("PRISM_DATA_DIR", str(tmp_path / "data"))
    from tasks._core import target as _target

    _target.forget_all()
    yield
    _target.forget_all()


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One simulated cluster (kwok provider) for the whole session, deleted at the end."""
    from support import sim

    cluster = sim.start(tmp_path_factory.mktemp("sim"))
    try:
        yield cluster
    finally:
        sim.stop(cluster)
