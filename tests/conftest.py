"""Shared fixtures: an isolated configuration per test and one simulated cluster per session.

Tests live in folders named for what they need: `offline/` (nothing running), `cluster/` (the
simulated cluster), `ssh/` (a real sshd on loopback, some with the cluster too), `databases/`
(real PostgreSQL and Redis behind the cluster). Helpers and fakes are in `support/`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# Started as a background job of a non-interactive shell (`pytest ... &`), this process and every
# `inv` the tests start would ignore SIGINT, and the Ctrl-C tests would wait for an interrupt
# that never comes. A handler (unlike "ignore") is not inherited across exec: the children get
# the default, and Python's own Ctrl-C handling, back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
