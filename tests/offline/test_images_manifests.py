"""The rendered manifests follow the image configuration (images.tag, cluster.registry,
images.registry): the repository's overlays, rendered by the real `kubectl kustomize`, then
rewritten by kustomize's `images:` transformer; the pull policy goes with the mode; other images
are left alone."""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from invoke import Result
from support.cli import inv, make_context

from tasks import deploy
from tasks._deploy import images as _images
from tasks._deploy import render as _render

PRISM = {
    "prism-admin",
    "prism-proxy",
    "keyvalue-runner",
    "consumer-runner",
    "producer-runner",
    "mailbox-runner",
}
OTHERS = {
    "redis:7-alpine",
    "nats:2.10-alpine",
    "minio/minio:latest",
    "postgres:16-alpine",
}


@pytest.fixture(autouse=True)
def kubectl_on_path() -> None:
    """These tests render with kubectl's built-in kustomize; without it they fail, never skip."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with built-in kustomize) is not on PATH; install kubectl 1.29+")


@pytest.fixture
def kustomize_runs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories `kubectl kustomize` renders (the real one still runs)."""
    seen: list[Path] = []
    real = _render.kustomize

    def spy(c: Any, path: Path) -> list[dict[str, Any]]:
        seen.append(path)
        return real(c, path)

    monkeypatch.setattr(_render, "kustomize", spy)
    return seen


def rendered(overlay: str = "local") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the overlay as rendered, the same objects after the image rewrite)."""
    c = make_context()
    objects = _render.plan_objects(c, overlay, for_apply=False)
    return objects, _images.follow_config(c, copy.deepcopy(objects))


def prism_containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Workload name -> its container, for the workloads of the six Prism images."""
    found = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet") and obj["metadata"]["name"] in PRISM:
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            found[obj["metadata"]["name"]] = container
    return found


def other_images(objects: list[dict[str, Any]]) -> set[str]:
    return {
        ct["image"]
        for o in objects
        for ct in _images.containers(o)
        if _images.image_name(ct["image"]).rsplit("/", 1)[-1] not in PRISM
    }


def without_prism_images(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with the Prism containers' image and pull policy blanked: what must not
    change at all."""
    blank = copy.deepcopy(objects)
    for container in prism_containers(blank).values():
        container["image"] = container["imagePullPolicy"] = "-"
    return blank


def test_default_configuration_changes_nothing_and_runs_no_extra_kustomize(
    kustomize_runs: list[Path],
) -> None:
    before, after = rendered()
    assert after == before
    assert kustomize_runs == [_render.MANIFESTS / "overlays" / "local"]  # the overlay only
    for name, container in prism_containers(after).items():
        assert (container["image"], container["imagePullPolicy"]) == (f"{name}:latest", "Never")


def test_tag_in_import_mode(monkeypatch: pytest.MonkeyPatch, kustomize_runs: list[Path]) -> None:
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v1.2.3")
    before, after = rendered()
    containers = prism_containers(after)
    assert set(containers) == PRISM
    for name, container in containers.items():
        assert container["image"] == f"{name}:v1.2.3"
        assert container["imagePullPolicy"] == "Never"  # imported: never pulled
    assert other_images(after) == other_images(before) == OTHERS
    assert without_prism_images(after) == without_prism_images(before)
    assert len(kustomize_runs) == 2  # the overlay, then the rewrite


def test_registry_mode_with_a_fixed_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v1.2.3")
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    before, after = rendered()
    for name, container in prism_containers(after).items():
        assert container["image"] == f"k3d-prism-registry:5555/{name}:v1.2.3"
        assert container["imagePullPolicy"] == "Always"  # a reload reuses the tag
    assert other_images(after) == OTHERS
    assert without_prism_images(after) == without_prism_images(before)


def test_registry_mode_with_latest_pulls_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", "true")
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY_PORT", "5000")
    _, after = rendered("ci")
    for name, container in prism_containers(after).items():
        assert container["image"] == f"k3d-prism-registry:5000/{name}:latest"
        assert container["imagePullPolicy"] == "Always"


def test_a_registry_of_your_own_is_pulled_when_the_node_lacks_the_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_ENV", "staging")
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "ghcr.io/acme/prism")
    before, after = rendered("staging")
    containers = prism_containers(after)
    assert set(containers) == PRISM
    for name, container in containers.items():
        assert container["image"] == f"ghcr.io/acme/prism/{name}:0.1.0"  # staging's release
        assert container["imagePullPolicy"] == "IfNotPresent"
    assert other_images(after) == other_images(before)  # staging pins minio's release
    assert without_prism_images(after) == without_prism_images(before)


@pytest.mark.parametrize("provider", ["k3d", "kwok", "context"])
def test_a_registry_of_your_own_is_used_whatever_the_provider(
    monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", provider)
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    monkeypatch.setenv("PRISM_IMAGES_REGISTRY", "registry.example.com:5000/prism")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "build-42")
    _, after = rendered()
    assert {(ct["image"], ct["imagePullPolicy"]) for ct in prism_containers(after).values()} == {
        (f"registry.example.com:5000/prism/{name}:build-42", "IfNotPresent") for name in PRISM
    }


NEEDS_REGISTRY = (
    "the context provider's cluster cannot run images imported into k3d nodes "
    "(imagePullPolicy: Never): set PRISM_IMAGES_REGISTRY (images.registry) to the registry it "
    "pulls the Prism images from, e.g. ghcr.io/acme/prism"
)


@pytest.mark.parametrize("local_registry", ["false", "true"])
def test_a_shared_cluster_without_a_registry_of_its_own_is_refused(
    monkeypatch: pytest.MonkeyPatch, local_registry: str
) -> None:
    """Never imported there, never pulled: the pods would never start (ErrImageNeverPull). k3d's
    local registry (cluster.registry) is on this machine, out of a shared cluster's reach."""
    from invoke import Exit

    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")
    monkeypatch.setenv("PRISM_CLUSTER_REGISTRY", local_registry)
    with pytest.raises(Exit) as caught:
        rendered()
    assert caught.value.message == NEEDS_REGISTRY
    assert caught.value.code == 1


def test_only_configured_images_are_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_IMAGES_NAMES", "prism-proxy")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "dev")
    _, after = rendered()
    images = {name: ct["image"] for name, ct in prism_containers(after).items()}
    assert images == {
        name: f"{name}:dev" if name == "prism-proxy" else f"{name}:latest" for name in PRISM
    }


def test_the_rewrite_leaves_no_temporary_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v2")
    _, after = rendered()
    assert prism_containers(after)["prism-admin"]["image"] == "prism-admin:v2"
    assert list(scratch.iterdir()) == []


def test_image_names_as_kustomize_matches_them() -> None:
    assert _images.image_name("prism-admin:latest") == "prism-admin"
    assert _images.image_name("prism-admin") == "prism-admin"
    assert _images.image_name("k3d-prism-registry:5555/prism-admin:v1") == (
        "k3d-prism-registry:5555/prism-admin"
    )
    assert _images.image_name("localhost:5555/prism-admin") == "localhost:5555/prism-admin"
    assert _images.image_name("prism-admin@sha256:abc") == "prism-admin"


# --- every task that renders goes through the rewrite -----------------------------------------

CREDENTIALS = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_USER", "POSTGRES_PASSWORD",
               "POSTGRES_DB", "S3_ACCESS_KEY", "S3_SECRET_KEY")  # fmt: skip


def test_deploy_render_prints_the_configured_images() -> None:
    result = inv(
        "deploy.render",
        "--overlay",
        "local",
        env={"PRISM_IMAGES_TAG": "v1.2.3", "PRISM_CLUSTER_REGISTRY": "true"},
    )
    assert result.returncode == 0, result.stderr
    assert "image: k3d-prism-registry:5555/prism-proxy:v1.2.3" in result.stdout
    assert "image: prism-proxy:latest" not in result.stdout
    assert "image: redis:7-alpine" in result.stdout


def test_deploy_render_for_a_shared_cluster_names_the_registry_setting() -> None:
    shared = {"PRISM_CLUSTER_PROVIDER": "context", "PRISM_CLUSTER_CONTEXT": "staging"}
    refused = inv("deploy.render", env=shared)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [NEEDS_REGISTRY]

    result = inv("deploy.render", env={**shared, "PRISM_IMAGES_REGISTRY": "ghcr.io/acme/prism"})
    assert result.returncode == 0, result.stderr
    assert "image: ghcr.io/acme/prism/prism-proxy:latest" in result.stdout
    assert "imagePullPolicy: Never" not in result.stdout
    assert result.stdout.count("imagePullPolicy: IfNotPresent") >= len(PRISM)


def test_deploy_steps_apply_the_configured_images_and_keep_secrets_off_disk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks._deploy import plan as _plan

    for var in CREDENTIALS:
        monkeypatch.setenv(f"PRISM_{var}", "x")
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v9")
    applied: list[dict[str, Any]] = []
    written: list[str] = []
    real_transform = _images._transform

    def transform(c: Any, s: Any, objects: list[dict[str, Any]], targets: Any) -> Any:
        written.extend(o["kind"] for o in objects)
        return real_transform(c, s, objects, targets)

    def run_plan(c: Any, objects: list[dict[str, Any]], steps: Any, wait: int) -> list[Any]:
        applied.extend(objects)
        return []

    monkeypatch.setattr(_images, "_transform", transform)
    monkeypatch.setattr(_plan, "run_plan", run_plan)
    deploy.deploy_steps(make_context(run={"dry": True}), ("admin", "proxy"), "local", None)
    assert prism_containers(applied)["prism-proxy"]["image"] == "prism-proxy:v9"
    assert "Secret" in {o["kind"] for o in applied}  # sent to the cluster ...
    assert "Secret" not in written and written  # ... but never written to a file


def diff_input(monkeypatch: pytest.MonkeyPatch) -> str:
    """What `inv --dry deploy.diff --overlay local` on the kwok provider hands `kubectl diff`."""
    from tasks._core import target as _target

    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    sent: list[str] = []

    def kubectl(c: Any, *args: str, input: str = "", **kwargs: Any) -> Result:
        sent.append(input)
        return Result(exited=0)

    monkeypatch.setattr(_target, "kubectl", kubectl)
    deploy.diff(make_context(run={"dry": True}), overlay="local")
    return sent[0]


def test_deploy_diff_compares_the_configured_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_IMAGES_TAG", "v9")
    sent = diff_input(monkeypatch)
    assert "image: prism-admin:v9" in sent
    assert "image: prism-admin:latest" not in sent


def test_deploy_diff_compares_the_enabled_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """backends.enabled reaches the diff: Kafka (no overlay lists it) is added, the backends
    left out of PRISM_BACKENDS_ENABLED are not compared."""
    import yaml

    monkeypatch.setenv("PRISM_BACKENDS_ENABLED", "redis,kafka")
    objects = [o for o in yaml.safe_load_all(diff_input(monkeypatch)) if o]
    assert _render.backend_names(objects) == {"redis", "kafka"}
    assert ("StatefulSet", "kafka") in {(o["kind"], o["metadata"]["name"]) for o in objects}
