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


def start_foreign(home: Path, name: str = "theirs") -> SimCluster:
    """A simulated cluster made the way someone else would: kwokctl and kubectl run directly,
    with no prism-tasks marker anywhere. It uses the dev environment's ports, so it runs beside
    the session's cluster. Its context is `kwok-<name>`."""
    import pytest
    import yaml

    from tasks._core import settings as _settings
    from tasks._core import sim_binaries as _sim
    from tasks._core import target as _target
    from tasks._providers import kwok as _kwok

    from .cli import make_context

    require_loopback_only()
    env = {**sim_env(home), "PRISM_ENV": "dev", "PRISM_CLUSTER_NAME": name}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        _target.forget_all()
        c = make_context()
        s = _settings.load(c)
        t = _target.resolve(c)
        kubectl = subprocess.run(["sh", "-c", "command -v kubectl"], capture_output=True, text=True)
        config = [
            _kwok.kwokctl_config(s, str(_sim.bin_dir()), kubectl.stdout.strip()),
            *_kwok.host_mappings(s),
        ]
        nodes = _kwok.nodes(s, t)
        log = Path(str(_kwok.log_path(s)))
        _target.forget_all()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("2026-01-01T00:00:00.000000000Z stdout F simulated by kwok\n")
    path = home / f"{name}-kwokctl.yaml"
    path.write_text(yaml.safe_dump_all(config, sort_keys=False))
    kubeconfig = home / "kubeconfig"
    created = subprocess.run(
        [str(_sim.bin_dir() / "kwokctl"), "--config", str(path), "create", "cluster",
         "--name", name, "--kubeconfig", str(kubeconfig), "--timeout", "180s"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if created.returncode != 0:
        raise RuntimeError(f"kwokctl create failed:\n{created.stdout}\n{created.stderr}")
    cluster = SimCluster(home=home, env=env, name=name)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(nodes))
    cluster.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=120s")
    return cluster


def stop_foreign(cluster: SimCluster) -> None:
    from tasks._core import sim_binaries as _sim

    subprocess.run(
        [str(_sim.bin_dir() / "kwokctl"), "delete", "cluster", "--name", cluster.name,
         "--kubeconfig", cluster.kubeconfig],
        env={**os.environ, **cluster.env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
