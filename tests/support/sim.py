"""The simulated cluster for tests: created once per session through the real tasks, inside the
loopback-only network namespace that scripts/test provides."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli import inv

CREDENTIALS = (
    "PRISM_MINIO_ROOT_USER=minio-user\nPRISM_MINIO_ROOT_PASSWORD=minio-pass\n"
    "PRISM_POSTGRES_USER=prism\nPRISM_POSTGRES_PASSWORD=pg-pass\nPRISM_POSTGRES_DB=prism\n"
    "PRISM_S3_ACCESS_KEY=s3-access\nPRISM_S3_SECRET_KEY=s3-secret\n"
)


def require_loopback_only() -> None:
    """Refuse to start a simulated cluster where its fake addresses could be reached."""
    import socket

    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise RuntimeError(
            f"network interfaces {interfaces}: the simulated cluster runs only in a "
            "loopback-only network namespace; run the tests with scripts/test"
        )


@dataclass
class SimCluster:
    """Environment of one simulated cluster, for `inv` and kubectl calls against it."""

    home: Path
    env: dict[str, str]
    name: str = "prism-ci"

    @property
    def kubeconfig(self) -> str:
        return self.env["PRISM_CLUSTER_KUBECONFIG"]

    @property
    def context(self) -> str:
        return f"kwok-{self.name}"

    def inv(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return inv(*args, env={**self.env, **extra})

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "--context", self.context, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECACHEDIR": str(self.home / "kube-cache")},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


def sim_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    dotenv = home / "sim.env"
    dotenv.write_text(CREDENTIALS)
    return {
        "PRISM_ENV": "ci",
        "PRISM_CLUSTER_PROVIDER": "kwok",
        "PRISM_CLUSTER_KUBECONFIG": str(home / "kubeconfig"),
        "PRISM_DATA_DIR": str(home / "data"),
        "PRISM_DOTENV": str(dotenv),
        "KWOK_WORKDIR": str(home / "kwok"),  # kwokctl's state, apart from the user's ~/.kwok
        "KUBECACHEDIR": str(home / "kube-cache"),
    }


def start(home: Path) -> SimCluster:
    require_loopback_only()
    cluster = SimCluster(home=home, env=sim_env(home))
    result = cluster.inv("cluster.create")
    if result.returncode != 0:
        raise RuntimeError(f"cluster.create failed:\n{result.stdout}\n{result.stderr}")
    return cluster


def stop(cluster: SimCluster) -> None:
    result = cluster.inv("cluster.delete")
    if result.returncode != 0:
        raise RuntimeError(f"cluster.delete failed:\n{result.stdout}\n{result.stderr}")
