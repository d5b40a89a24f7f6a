"""A kept render is used only while nothing it was made of has changed (tasks/_deploy/cache.py).

Real kustomize (kubectl's) on a copy of manifests/: the tests change files in the copy the way
a developer edits an overlay or a base, and count the renders that reach kubectl."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Exit

import tasks
from tasks._core import command as _command
from tasks._core import settings as _settings
from tasks._deploy import cache as _cache
from tasks._deploy import render as _render

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with built-in kustomize) is not on PATH; install kubectl 1.29+")
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    return tmp_path / "manifests"


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setenv("PRISM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PRISM_ENV", "local")
    config = Config()
    config.load_collection(tasks.ns.configuration())
    return Context(config=config)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every `kubectl kustomize` the code runs."""
    seen: list[list[str]] = []
    real = _command.query

    def counting(c: Context, argv: Any, *args: Any, **kwargs: Any) -> Any:
        if list(argv[:2]) == ["kubectl", "kustomize"]:
            seen.append(list(argv))
        return real(c, argv, *args, **kwargs)

    monkeypatch.setattr(_command, "query", counting)
    return seen


def images(objects: list[dict[str, Any]], name: str) -> list[str]:
    return [
        container["image"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name
        for container in o["spec"]["template"]["spec"]["containers"]
    ]


def test_a_second_render_of_an_unchanged_tree_does_not_run_kustomize(
    tree: Path, context: Context, renders: list[list[str]]
) -> None:
    overlay = tree / "overlays" / "local"
    first = _render.kustomize(context, overlay)
    second = _render.kustomize(context, overlay)
    assert len(renders) == 1
    assert second == first and second is not first


def test_an_edited_base_is_rendered_again(
    tree: Path, context: Context, renders: list[list[str]]
) -> None:
    overlay = tree / "overlays" / "local"
    assert images(_render.kustomize(context, overlay), "redis") == ["redis:7-alpine"]
    statefulset = tree / "base" / "redis" / "redis-statefulset.yaml"
    statefulset.write_text(statefulset.read_text().replace("redis:7-alpine", "redis:7.2-alpine"))
    assert images(_render.kustomize(context, overlay), "redis") == ["redis:7.2-alpine"]
    assert len(renders) == 2


def test_a_new_file_in_a_component_is_rendered_again(
    tree: Path, context: Context, renders: list[list[str]]
) -> None:
    overlay = tree / "overlays" / "local"
    before = _render.kustomize(context, overlay)
    (tree / "overlays" / "local" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: prism}\n"
    )
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text().replace("resources:\n", "resources:\n- extra.yaml\n", 1)
    kustomization.write_text(text)
    after = _render.kustomize(context, overlay)
    assert len(after) == len(before) + 1
    assert len(renders) == 2


def test_a_kustomization_naming_something_remote_is_never_kept(tmp_path: Path) -> None:
    overlay = tmp_path / "remote"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources:\n- https://github.com/example/manifests//base?ref=main\n"
    )
    assert _cache.key(overlay) is None


def test_every_overlay_of_ours_reads_only_files_under_manifests() -> None:
    for overlay in (MANIFESTS / "overlays").iterdir():
        reached = _cache.sources(overlay)
        assert reached, overlay
        assert all(d.is_relative_to(MANIFESTS) for d in reached), overlay


def test_a_dry_run_keeps_nothing(tree: Path, context: Context) -> None:
    context.config.run.dry = True
    _render.kustomize(context, tree / "overlays" / "local")
    assert not (_settings.load(context).local_data_dir / "cache").exists()


def test_a_malformed_kustomization_is_left_to_kustomize_to_report(
    tree: Path, context: Context
) -> None:
    overlay = tree / "overlays" / "local"
    (overlay / "kustomization.yaml").write_text("resources: [unclosed\n")
    assert _cache.key(overlay) is None
    with pytest.raises(Exit, match="cannot render"):
        _render.kustomize(context, overlay)
