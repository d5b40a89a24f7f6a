"""`deploy.verify` on the simulated cluster: the stack's pods are played by real servers on
loopback (an HTTP health endpoint, a gRPC server with reflection, a metrics page, the NATS and
MinIO health pages, real Redis and PostgreSQL), reached through real port-forwards and execs.
Every check passes while they run, and each one fails, with its next step, when its server is
down."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping

import pytest
from support import dbservers
from support.cli import INV, ROOT
from support.dbservers import Postgres, Redis
from support.playing import Grpc, Http, Kafka
from support.sim import SimCluster

METRICS = '# TYPE prism_up gauge\nprism_up 1\nprism_requests_total{pattern="keyvalue"} 4\n'

pytestmark = pytest.mark.cluster

PODS: dict[str, Callable[[], object]] = {
    "admin": lambda: Http(8080, {"/admin/health": (200, '{"status":"healthy"}')}),
    "proxy": lambda: Grpc(50051, ["prism.interfaces.keyvalue.KeyValueBasicInterface"]),
    "metrics": lambda: Http(9090, {"/metrics": (200, METRICS)}),
    "nats": lambda: Http(8222, {"/healthz": (200, '{"status":"ok"}')}),
    "minio": lambda: Http(9000, {"/minio/health/live": (200, "")}),
}
CHECKS = {
    "admin": "admin health through a port-forward",
    "proxy": "proxy gRPC services (reflection) through a port-forward",
    "metrics": "proxy /metrics through a port-forward",
    "nats": "nats monitor /healthz",
    "minio": "minio /minio/health/live",
    "redis": "redis PING",
    "postgres": "postgres SELECT 1",
}


@pytest.fixture(scope="module")
def stack(sim_cluster: SimCluster) -> SimCluster:
    deployed = sim_cluster.inv("deploy.all", "--overlay", "ci", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return sim_cluster


@pytest.fixture(scope="module")
def databases() -> Iterator[tuple[Postgres, Redis]]:
    postgres, redis = dbservers.start_postgres(), dbservers.start_redis()
    yield postgres, redis
    postgres.stop()
    redis.stop()


@pytest.fixture
def servers() -> Iterator[dict[str, object]]:
    running = {name: start() for name, start in PODS.items()}
    yield running
    for server in running.values():
        server.stop()  # type: ignore[attr-defined]


def verify(
    stack: SimCluster, databases: tuple[Postgres, Redis], **extra: str
) -> subprocess.CompletedProcess[str]:
    postgres, redis = databases
    env = {
        **os.environ,
        **stack.env,
        "PRISM_BACKUP_POSTGRES_PORT": str(postgres.port),
        "PRISM_BACKUP_REDIS_PORT": str(redis.port),
        **extra,
    }
    return subprocess.run(
        [INV, "deploy.verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_check_passes_against_a_healthy_stack(
    stack: SimCluster, databases: tuple[Postgres, Redis], servers: dict[str, object]
) -> None:
    result = verify(stack, databases)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in ["every workload Ready", *CHECKS.values()]:
        assert any(line.startswith(f"✓ {check} (") for line in lines), (check, result.stdout)
    assert "prism.interfaces.keyvalue.KeyValueBasicInterface" in result.stdout
    assert "answered PONG" in result.stdout
    assert (
        "- admin health through the ingress: skipped (the simulated cluster carries"
        in result.stdout
    )
    assert lines[-1] == "8 passed, 0 failed, 2 skipped on cluster prism-ci"


@pytest.mark.parametrize("down", list(CHECKS))
def test_each_check_fails_with_its_next_step_when_its_server_is_down(
    stack: SimCluster,
    databases: tuple[Postgres, Redis],
    servers: dict[str, object],
    down: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres, redis = databases
    if down in servers:
        servers.pop(down).stop()  # type: ignore[attr-defined]
    elif down == "redis":
        monkeypatch.setattr(redis, "port", dbservers.free_port())  # nothing listens there
    else:
        monkeypatch.setattr(postgres, "port", dbservers.free_port())
    result = verify(stack, databases)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("✗ ")]
    assert len(failed) == 1 and failed[0].startswith(f"✗ {CHECKS[down]} ("), result.stdout
    assert "; next: `inv observe.logs" in failed[0] or "; next: PRISM_POSTGRES_*" in failed[0]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("7 passed, 1 failed, 2 skipped on cluster prism-ci; first failure: ")
    assert "Traceback" not in result.stderr


# A label no node has: the new pod of the rollout stays Pending, the old ones keep serving.
NOWHERE = {"prism.example/no-such-node": "true"}


def test_a_workload_not_ready_fails_its_check_with_the_next_step(
    stack: SimCluster, databases: tuple[Postgres, Redis], servers: dict[str, object]
) -> None:
    """consumer-runner (no other check uses it) rolled out onto no node: its Deployment is not
    Ready, and that check alone fails."""
    runner = ["deployment", "consumer-runner", "-n", "prism"]

    def place(selector: Mapping[str, str | None]) -> None:
        patch = {"spec": {"template": {"spec": {"nodeSelector": selector}}}}
        stack.kubectl("patch", *runner, "--type=merge", "-p", json.dumps(patch))

    place(NOWHERE)
    try:
        result = verify(stack, databases)
    finally:
        place(dict.fromkeys(NOWHERE))  # null: the key goes, the template is as deployed again
        stack.kubectl("rollout", "status", *runner, "--timeout=120s", timeout=150)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("✗ ")]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith("✗ every workload Ready ("), result.stdout
    assert failed[0].endswith(
        "not Ready: consumer-runner; next: `inv deploy.status`, `inv deploy.all`"
    ), failed[0]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "7 passed, 1 failed, 2 skipped on cluster prism-ci; first failure: every workload Ready: "
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_kafka_enabled_is_deployed_listed_and_verified_then_fails_when_it_is_down(
    stack: SimCluster, databases: tuple[Postgres, Redis], servers: dict[str, object]
) -> None:
    """backends.enabled with Kafka: deploy.status says it is not deployed yet, deploy.all
    deploys it (the ci overlay does not list it), deploy.status shows it (and marks it once
    Kafka is no longer enabled), deploy.verify asks it for Metadata."""
    enabled = {"PRISM_BACKENDS_ENABLED": "redis,nats,minio,postgres,kafka"}
    kafka = Kafka(9092, ["prism-events"])

    def kafka_row(status: subprocess.CompletedProcess[str]) -> str:
        rows = [
            line
            for line in status.stdout.splitlines()
            if line.split()[:3] == ["prism-backends", "StatefulSet", "kafka"]
        ]
        assert len(rows) == 1, status.stdout + status.stderr
        return rows[0]

    try:
        before = stack.inv("deploy.status", **enabled)
        assert before.returncode == 0, before.stdout + before.stderr
        assert "kafka: enabled, not deployed; fix: run `inv deploy.all`" in before.stdout
        deployed = stack.inv("deploy.all", "--timeout", "120", **enabled)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        status = stack.inv("deploy.status", **enabled)
        assert "not enabled" not in kafka_row(status)
        assert "kafka: enabled, not deployed" not in status.stdout
        no_longer = stack.inv("deploy.status")  # backends.enabled's default: no Kafka
        assert kafka_row(no_longer).endswith("not enabled (backends.enabled)")
        assert "kafka: deployed, not enabled (backends.enabled)" in no_longer.stdout
        result = verify(stack, databases, **enabled)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "✓ kafka metadata (" in result.stdout
        assert "Metadata: 1 broker(s), 1 topic(s)" in result.stdout
        kafka.stop()
        down = verify(stack, databases, **enabled)
        assert down.returncode == 1
        assert "✗ kafka metadata (" in down.stdout
        assert "next: `inv observe.logs kafka`" in down.stdout
    finally:
        with contextlib.suppress(OSError):
            kafka.stop()
        removed = stack.inv("backends.delete", "--only", "kafka", "--yes")
        assert removed.returncode == 0, removed.stdout + removed.stderr
