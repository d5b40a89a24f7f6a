"""The fake shell itself: it answers only what a test prepared."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakes import changes, cmd, commands, ok, shell, tools  # noqa: F401  (fixture)


def test_an_unexpected_command_fails_the_test(tools: Path) -> None:  # noqa: F811
    from tasks._core import command as _command

    c = shell({cmd("k3d", "version"): ok("k3d version v5.6.3")})
    assert _command.query(c, ["k3d", "version"]).stdout.startswith("k3d version")
    with pytest.raises(NotImplementedError, match="k3d cluster delete"):
        _command.run(c, ["k3d", "cluster", "delete", "prism-local"])
    assert commands(c) == [["k3d", "version"], ["k3d", "cluster", "delete", "prism-local"]]
    assert changes(c) == [["k3d", "cluster", "delete", "prism-local"]]
