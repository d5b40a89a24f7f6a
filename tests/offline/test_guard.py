"""guide correction 20: destructive steps act only on clusters prism-tasks created or the user named."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from invoke import Exit
from support.cli import inv, make_context
from support.fakes import changes, cmd, commands, ok, shell, tools  # noqa: F401  (fixture)

from tasks import ingress, observe
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


# --- a cluster this project did not create: the allow-list (cluster.allowed_contexts) ---------

STAGING = Target("context", "staging", "staging", "", "an existing cluster, by its context")
FIX = (
    "prism-tasks changes a cluster it did not create only when allowed; add staging to "
    "PRISM_CLUSTER_ALLOWED_CONTEXTS (comma-separated) or to the cluster.allowed_contexts list "
    "in invoke.yaml"
)


def test_a_context_not_allowed_is_refused_with_a_fix_that_keeps_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_ALLOWED_CONTEXTS", "dev, qa,")
    with pytest.raises(Exit) as caught:
        _guard.require_owned(make_context(), STAGING)
    assert caught.value.message == (
        f"context staging is not in cluster.allowed_contexts (now: dev, qa): {FIX}"
    )
    assert caught.value.code == 1


def test_an_empty_allow_list_says_so() -> None:
    with pytest.raises(Exit) as caught:
        _guard.require_owned(make_context(), STAGING)
    assert caught.value.message == (
        f"context staging is not in cluster.allowed_contexts (now empty): {FIX}"
    )


@pytest.mark.parametrize("allowed", [["dev", "staging"], "dev, staging"], ids=["list", "string"])
def test_the_allow_list_is_a_yaml_list_or_a_comma_separated_string(allowed: object) -> None:
    _guard.require_owned(make_context(cluster={"allowed_contexts": allowed}), STAGING)


def test_the_environment_replaces_the_allow_list_of_invoke_yaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_ALLOWED_CONTEXTS", "qa")
    with pytest.raises(Exit, match=r"\(now: qa\)"):
        _guard.require_owned(make_context(cluster={"allowed_contexts": ["staging"]}), STAGING)


def test_naming_the_cluster_does_not_stand_in_for_the_allow_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_NAME", "staging")
    with pytest.raises(Exit, match="is not in cluster.allowed_contexts"):
        _guard.require_owned(make_context(), STAGING)


# --- the Helm installs change the cluster: guarded like the deploys --------------------------


@pytest.fixture
def staging(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811  (the fixture)
    """The context provider on their cluster `staging`, not in the allow-list."""
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    monkeypatch.setenv("PRISM_CLUSTER_ALLOWED_CONTEXTS", "dev")


READYZ = ("kubectl", "--context", "staging", "get", "--raw", "/readyz")
CONTEXTS = ("kubectl", "config", "get-contexts", "-o", "name")
NOT_ALLOWED = r"^context staging is not in cluster.allowed_contexts \(now: dev\)"


@pytest.mark.usefixtures("staging")
def test_observe_install_on_a_context_not_allowed_installs_nothing() -> None:
    c = shell({cmd(*READYZ): ok("ok")})
    with pytest.raises(Exit, match=NOT_ALLOWED):
        observe.install(c)
    assert commands(c) == [list(READYZ)]  # no helm at all


@pytest.mark.usefixtures("staging")
def test_ingress_install_on_a_context_not_allowed_installs_nothing() -> None:
    c = shell({cmd(*CONTEXTS): ok("dev\nstaging\n")})
    with pytest.raises(Exit, match=NOT_ALLOWED):
        ingress.install(c)
    assert commands(c) == [list(CONTEXTS)]


@pytest.mark.usefixtures("staging")
def test_ingress_install_on_an_allowed_context_installs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_ALLOWED_CONTEXTS", "dev,staging")
    helm = ["helm", "--kube-context", "staging", "--namespace", "ingress-nginx", "upgrade",
            "--install", "ingress-nginx", "ingress-nginx", "--repo",
            "https://kubernetes.github.io/ingress-nginx", "--version", "4.10.0",
            "--create-namespace", "--wait", "--timeout", "300s"]  # fmt: skip
    c = shell({cmd(*CONTEXTS): ok("staging\n"), cmd(*helm): ok()})
    ingress.install(c)
    assert changes(c) == [helm]


def test_observe_install_on_a_k3d_cluster_not_ours_installs_nothing(
    tools: Path,  # noqa: F811  (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
    readyz = ("kubectl", "--context", "k3d-prism-local", "get", "--raw", "/readyz")
    c = shell({cmd(*readyz): ok("ok")})
    with pytest.raises(Exit, match="cluster prism-local was not created by prism-tasks"):
        observe.install(c)
    assert commands(c) == [list(readyz)]


def test_ingress_install_on_a_simulated_cluster_not_ours_installs_nothing(
    tools: Path,  # noqa: F811  (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    listing = ("kwokctl", "get", "clusters")
    c = shell({cmd(*listing): ok("prism-local\n")})
    with pytest.raises(Exit, match="cluster prism-local was not created by prism-tasks"):
        ingress.install(c)
    assert commands(c) == [list(listing)]


@pytest.mark.usefixtures("staging")
def test_a_dry_observe_install_on_a_context_not_allowed_prints_the_commands() -> None:
    """--dry changes nothing, so it needs no permission: it shows what would be installed."""
    result = inv("--dry", "observe.install", env={"NO_COLOR": "1", "PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "helm --kube-context staging --namespace observability upgrade --install" in (
        re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    )
