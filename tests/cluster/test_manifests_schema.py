"""Every overlay validated by the real API server's schemas (server-side dry run, strict fields)
on the simulated cluster: unknown or misspelt fields and wrong types are errors, nothing is
stored. The namespaces enforce Pod Security "restricted" as the overlays label them, and the API
server warns about any pod template that would break it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

OVERLAYS = sorted(
    p.name for p in (Path(__file__).resolve().parents[2] / "manifests" / "overlays").iterdir()
)


RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}
# What the API server says of a workload whose pod template breaks the namespace's profile.
POD_SECURITY_WARNING = "would violate PodSecurity"


@pytest.fixture(scope="module")
def namespaces(sim_cluster: SimCluster) -> SimCluster:
    """The stack's namespaces exist (a dry run of namespaced objects needs them), enforcing
    Pod Security as the overlays label them."""
    for name in ("prism", "prism-backends"):
        manifest = (
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {RESTRICTED}}}\n"
        )
        sim_cluster.kubectl("apply", "-f", "-", input=manifest)
    return sim_cluster


def server_dry_run(cluster: SimCluster, manifests: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifests, check=False
    )


def top_level_objects(rendered: str) -> int:
    return rendered.count("\nkind: ") + rendered.startswith("kind: ")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_the_api_servers_strict_validation(
    namespaces: SimCluster, overlay: str
) -> None:
    rendered = namespaces.inv("deploy.render", "--overlay", overlay)
    assert rendered.returncode == 0, rendered.stderr
    result = server_dry_run(namespaces, rendered.stdout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == top_level_objects(rendered.stdout)
    assert POD_SECURITY_WARNING not in result.stderr, result.stderr


def test_kafka_meets_the_profile_too(namespaces: SimCluster) -> None:
    """Kafka is deployed from its base alone (PRISM_BACKENDS_ENABLED), outside any overlay."""
    rendered = namespaces.inv("deploy.render", "--overlay", "ci", PRISM_BACKENDS_ENABLED="kafka")
    assert rendered.returncode == 0, rendered.stderr
    assert "name: kafka\n" in rendered.stdout
    result = server_dry_run(namespaces, rendered.stdout)
    assert result.returncode == 0, result.stderr
    assert POD_SECURITY_WARNING not in result.stderr, result.stderr


def test_a_pod_template_that_breaks_the_profile_is_warned_about(namespaces: SimCluster) -> None:
    """The check above can fail: a container allowed to escalate its privileges is named."""
    rendered = namespaces.inv("deploy.render", "--overlay", "ci").stdout
    escalating = rendered.replace(
        "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 1
    )
    result = server_dry_run(namespaces, escalating)
    assert result.returncode == 0, result.stderr  # the workload is accepted; its pods would not be
    assert f'{POD_SECURITY_WARNING} "restricted:latest": allowPrivilegeEscalation != false' in (
        result.stderr
    )


def test_a_misspelt_field_is_caught(namespaces: SimCluster) -> None:
    """The check above can fail: a typo in a container field is rejected."""
    rendered = namespaces.inv("deploy.render", "--overlay", "ci").stdout
    result = server_dry_run(namespaces, rendered.replace("imagePullPolicy:", "imagePulPolicy:", 1))
    assert result.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].imagePulPolicy"' in result.stderr
