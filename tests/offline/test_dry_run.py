"""`inv --dry` as a user types it, on the simulated-cluster provider with stand-in tools: it
prints each step's plan once, names the objects a deploy would apply, and never claims that
anything is ready or installed."""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path

import pytest
from support.cli import inv

from tasks._core import sim_binaries as _sim

CREDENTIALS = (
    "PRISM_MINIO_ROOT_USER=minio-user\nPRISM_MINIO_ROOT_PASSWORD=minio-pass\n"
    "PRISM_POSTGRES_USER=pg-user\nPRISM_POSTGRES_PASSWORD=pg-pass\nPRISM_POSTGRES_DB=pg-db\n"
    "PRISM_S3_ACCESS_KEY=s3-access\nPRISM_S3_SECRET_KEY=s3-secret\n"
)

# kwokctl answers `get clusters` from a file; anything else that would change something fails
STAND_INS = {
    "kwokctl": 'case "$1" in get) cat "${0%/*}/clusters" ;; *) exit 99 ;; esac\n',
    "helm": "echo 'helm must not run in a dry run' >&2; exit 99\n",
}


def free_api_port() -> int:
    """An API port whose control-plane ports (it, and +1000 to +1004) are all free here, so
    that a cluster another test runs on this machine does not make `cluster.create` refuse."""
    for _ in range(100):
        port = random.randrange(20000, 40000)
        try:
            for candidate in (port, *range(port + 1000, port + 1005)):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port range found")


@pytest.fixture
def kwok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kwok provider with stand-ins for kwokctl and helm on PATH, and the pinned
    simulated-cluster binaries as scripts that only report their versions (the real kubectl
    renders the overlays). Returns the stand-ins' directory; `clusters` there lists the
    clusters kwokctl knows (none at first)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in STAND_INS.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}")
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "clusters").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PRISM_SIM_HOME", str(tmp_path / "sim"))
    pins = _sim.versions()
    reports = {
        "kube-apiserver": f"Kubernetes {pins['KUBE_VERSION']}",
        "kwokctl": f"kwokctl version {pins['KWOK_VERSION']}",
        "etcd": f"etcd Version: {pins['ETCD_VERSION'].lstrip('v')}",
    }
    sim_bin = _sim.bin_dir()
    sim_bin.mkdir(parents=True)
    for name in _sim.BINARIES:
        (sim_bin / name).write_text(f"#!/bin/sh\necho '{reports.get(name, name)}'\n")
        (sim_bin / name).chmod(0o755)
    (tmp_path / "test.env").write_text(CREDENTIALS)
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    monkeypatch.setenv("PRISM_CLUSTER_API_PORT", str(free_api_port()))
    monkeypatch.setenv("PRISM_CLUSTER_KUBECONFIG", str(tmp_path / "kubeconfig"))
    return bin_dir


def plan_lines(stdout: str) -> dict[str, str]:
    """Each deploy step's `→ step: would apply N objects (...)` line, by step."""
    found = re.findall(r"^→ (\w+): (would apply .*)$", stdout, re.M)
    return dict(found)


def test_dry_create_and_deploy_plans_the_cluster_once_and_names_every_object(
    kwok: Path, tmp_path: Path
) -> None:
    result = inv("--dry", "cluster.create", "deploy.all")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # cluster.create is deploy.all's pre-task too: its plan is printed once, not twice
    creates = re.findall(r"^kwokctl --config \S+ create cluster --name prism-local ", out, re.M)
    assert len(creates) == 1, out
    assert out.count("cluster prism-local: dry run, nothing was created\n") == 1
    assert not re.search(r"\bready\b", out), out  # nothing was created, so nothing is ready
    steps = plan_lines(out)
    assert list(steps) == ["foundation", "backends", "admin", "proxy", "runners", "ingress", "autoscaling"]  # fmt: skip
    assert steps["admin"] == (
        "would apply 3 objects (prism/configmap/prism-admin-config, prism/service/prism-admin, "
        "prism/deployment/prism-admin), as:"
    )
    assert steps["autoscaling"] == (
        "would apply 1 object (prism/horizontalpodautoscaler/prism-proxy-hpa), as:"
    )
    # objects of the same kind and name in two namespaces are told apart
    foundation = steps["foundation"]
    assert "namespace/prism, namespace/prism-backends, storageclass/local-storage" in foundation
    assert "prism/networkpolicy/default-deny" in foundation
    assert "prism-backends/networkpolicy/default-deny" in foundation
    assert out.count("apply --server-side --field-manager=prism-tasks") == len(steps)
    assert out.rstrip().endswith("dry run: nothing was applied")
    assert not (tmp_path / "data").exists()  # not even the cluster's config file was written


def test_dry_ingress_install_prints_the_helm_command_and_installs_nothing(kwok: Path) -> None:
    (kwok / "clusters").write_text("prism-local\n")
    result = inv("--dry", "ingress.install")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    helm = [line for line in lines if line.startswith("helm ")]
    assert len(helm) == 1, result.stdout
    assert " --kube-context kwok-prism-local " in helm[0]
    assert " upgrade --install ingress-nginx ingress-nginx " in helm[0]
    assert "--set controller.admissionWebhooks.enabled=false" in helm[0]
    assert lines[-1] == "dry run: the command above was printed, nothing was installed"
    assert not re.search(r"\bready\b", result.stdout), result.stdout


def test_dry_create_and_ingress_install_plans_both_for_a_cluster_not_there_yet(
    kwok: Path,
) -> None:
    result = inv("--dry", "cluster.create", "ingress.install")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "does not exist" not in result.stdout + result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("helm ")]) == 1
    assert result.stdout.rstrip().endswith(
        "dry run: the command above was printed, nothing was installed"
    )
