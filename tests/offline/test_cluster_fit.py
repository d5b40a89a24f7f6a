"""The rendered stack fits the configured cluster (tasks/_deploy/render.py: fit_cluster): the
Ingresses' class, prism-proxy's Service type, the claims' storage class. The repository's
overlays, rendered by the real `kubectl kustomize`, as every deploy, diff and render gets them."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from support.cli import inv, make_context

from tasks._deploy import render as _render


@pytest.fixture(autouse=True)
def kubectl_on_path() -> None:
    """These tests render with kubectl's built-in kustomize; without it they fail, never skip."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with built-in kustomize) is not on PATH; install kubectl 1.29+")


@pytest.fixture
def theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The context provider: a cluster this project did not create."""
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "context")
    monkeypatch.setenv("PRISM_CLUSTER_CONTEXT", "staging")


def rendered(overlay: str = "local") -> list[dict[str, Any]]:
    return _render.plan_objects(make_context(), overlay, for_apply=False)


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def claim_classes(objects: list[dict[str, Any]]) -> dict[str, str | None]:
    """Every claim (standalone, or a StatefulSet's template) -> its storageClassName."""
    found: dict[str, str | None] = {}
    for obj in objects:
        if obj["kind"] == "PersistentVolumeClaim":
            found[obj["metadata"]["name"]] = obj["spec"].get("storageClassName")
        elif obj["kind"] == "StatefulSet":
            for template in obj["spec"].get("volumeClaimTemplates", []):
                name = f"{obj['metadata']['name']}/{template['metadata']['name']}"
                found[name] = template["spec"].get("storageClassName")
    return found


# --- the Ingresses' class -------------------------------------------------------------------


def test_the_ingress_class_is_the_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_INGRESS_CLASS", "traefik")
    ingresses = of_kind(rendered(), "Ingress")
    assert len(ingresses) == 2
    assert {i["spec"]["ingressClassName"] for i in ingresses.values()} == {"traefik"}


def test_the_ingress_class_reaches_deploy_render(theirs: None) -> None:
    result = inv(
        "deploy.render",
        env={"PRISM_CLUSTER_INGRESS_CLASS": "alb", "PRISM_IMAGES_REGISTRY": "ghcr.io/acme/prism"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ingressClassName: alb") == 2
    assert "ingressClassName: nginx" not in result.stdout


# --- prism-proxy's Service type -------------------------------------------------------------


@pytest.mark.parametrize("service_type", ["NodePort", "ClusterIP"])
def test_the_proxy_service_takes_the_configured_type_and_no_other_service_changes(
    monkeypatch: pytest.MonkeyPatch, service_type: str
) -> None:
    default = of_kind(rendered(), "Service")
    monkeypatch.setenv("PRISM_CLUSTER_PROXY_SERVICE_TYPE", service_type)
    services = of_kind(rendered(), "Service")
    assert default["prism-proxy"]["spec"]["type"] == "LoadBalancer"
    assert services["prism-proxy"]["spec"]["type"] == service_type
    del services["prism-proxy"], default["prism-proxy"]
    assert services == default


def test_an_unknown_proxy_service_type_is_one_line_and_renders_nothing() -> None:
    result = inv("deploy.render", env={"PRISM_CLUSTER_PROXY_SERVICE_TYPE": "External"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "PRISM_CLUSTER_PROXY_SERVICE_TYPE (cluster.proxy_service_type)='External': choose one "
        "of LoadBalancer, NodePort, ClusterIP"
    ]


# --- the claims' storage class ----------------------------------------------------------------


def test_on_k3d_and_kwok_the_claims_use_the_manifests_local_storage() -> None:
    objects = rendered()
    assert set(claim_classes(objects).values()) == {"local-storage"}
    assert list(of_kind(objects, "StorageClass")) == ["local-storage"]


@pytest.mark.usefixtures("theirs")
def test_on_their_cluster_the_claims_take_its_default_class() -> None:
    objects = rendered()
    classes = claim_classes(objects)
    assert len(classes) == 6  # prism-admin's claim and five StatefulSet templates
    assert set(classes.values()) == {None}  # no storageClassName: the cluster's default
    assert of_kind(objects, "StorageClass") == {}  # ours is not added to their cluster


@pytest.mark.usefixtures("theirs")
def test_on_their_cluster_a_configured_storage_class_is_used_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_STORAGE_CLASS", "gp3")
    objects = rendered("ci")
    classes = claim_classes(objects)
    assert len(classes) == 6
    assert set(classes.values()) == {"gp3"}
    assert of_kind(objects, "StorageClass") == {}


def test_a_configured_storage_class_on_k3d_leaves_out_the_unused_local_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRISM_CLUSTER_STORAGE_CLASS", "fast-ssd")
    objects = rendered()
    assert set(claim_classes(objects).values()) == {"fast-ssd"}
    assert of_kind(objects, "StorageClass") == {}
