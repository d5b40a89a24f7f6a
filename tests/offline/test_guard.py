"""guide correction 20: destructive steps act only on clusters prism-tasks created or the user named."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from invoke import Exit
from support.cli import make_context

from tasks._core import guard as _guard
from tasks._core.target import Target

K3D = Target("k3d", "prism-local", "k3d-prism-local", "", "test")


def test_a_cluster_nobody_named_or_created_is_refused_in_one_line() -> None:
    with pytest.raises(Exit) as caught:
        _guard.require_owned(make_context(), K3D)
    assert str(caught.value.message) == (
        "cluster prism-local was not created by prism-tasks; name it explicitly with "
        "PRISM_CLUSTER_NAME=prism-local to act on it"
    )
    assert caught.value.code == 1


def test_creation_leaves_a_private_marker_that_makes_it_ours(tmp_path: Path) -> None:
    c = make_context()
    _guard.record_created(c, K3D)
    path = tmp_path / "data" / "local" / "clusters" / "k3d-prism-local.json"
    record = json.loads(path.read_text())
    assert {k: record[k] for k in ("provider", "name", "context", "environment")} == {
        "provider": "k3d",
        "name": "prism-local",
        "context": "k3d-prism-local",
        "environment": "local",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _guard.require_owned(c, K3D)


def test_the_marker_is_per_provider_and_name() -> None:
    c = make_context()
    _guard.record_created(c, K3D)
    for other in (
        Target("kwok", "prism-local", "kwok-prism-local", "", "test"),
        Target("k3d", "prism-dev", "k3d-prism-dev", "", "test"),
    ):
        assert not _guard.is_owned(c, other)


def test_the_marker_lives_in_the_environment_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _guard.record_created(make_context(), K3D)
    monkeypatch.setenv("PRISM_ENV", "dev")
    assert not _guard.is_owned(make_context(), K3D)


def test_naming_the_cluster_explicitly_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "prism-local")
    _guard.require_owned(make_context(), K3D)


def test_a_name_in_invoke_yaml_counts_as_explicit() -> None:
    _guard.require_owned(make_context(cluster={"name": "prism-local"}), K3D)


def test_forgetting_makes_a_later_cluster_of_that_name_foreign() -> None:
    c = make_context()
    _guard.record_created(c, K3D)
    _guard.forget(c, K3D)
    assert not _guard.is_owned(c, K3D)
    _guard.forget(c, K3D)  # idempotent


def test_dry_runs_record_nothing(tmp_path: Path) -> None:
    _guard.record_created(make_context(run={"dry": True}), K3D)
    assert not (tmp_path / "data").exists()


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.txt"
    _guard.write_atomically(target, "one\n")
    _guard.write_atomically(target, "two\n", mode=0o640)
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_confirm_without_a_terminal_refuses_unless_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(Exit, match=r"delete it all: refusing without --yes \(no terminal to ask\)"):
        _guard.confirm("delete it all?", yes=False)
    _guard.confirm("delete it all?", yes=True)  # --yes never asks


def test_confirm_accepts_only_an_explicit_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    _guard.confirm("delete it all?", yes=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "")
    with pytest.raises(Exit, match="cancelled; nothing was changed"):
        _guard.confirm("delete it all?", yes=False)
