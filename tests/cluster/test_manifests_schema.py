"""Every overlay validated by the real API server's schemas (server-side dry run, strict fields)
on the simulated cluster: unknown or misspelt fields and wrong types are errors, nothing is
stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.sim import SimCluster

pytestmark = pytest.mark.cluster

OVERLAYS = sorted(
    p.name for p in (Path(__file__).resolve().parents[2] / "manifests" / "overlays").iterdir()
)


@pytest.fixture(scope="module")
def namespaces(sim_cluster: SimCluster) -> SimCluster:
    """The stack's namespaces exist (a dry run of namespaced objects needs them)."""
    for name in ("prism", "prism-backends"):
        manifest = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
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


def test_a_misspelt_field_is_caught(namespaces: SimCluster) -> None:
    """The check above can fail: a typo in a container field is rejected."""
    rendered = namespaces.inv("deploy.render", "--overlay", "ci").stdout
    result = server_dry_run(namespaces, rendered.replace("imagePullPolicy:", "imagePulPolicy:", 1))
    assert result.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].imagePulPolicy"' in result.stderr
