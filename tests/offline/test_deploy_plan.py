"""The deploy plan, without a cluster: what each step applies and what counts as Ready."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from invoke import Context, Exit
from support.cli import inv, make_context

from tasks._deploy import render as _render
from tasks._kube.readiness import is_ready

CREDENTIALS = (
    "PRISM_MINIO_ROOT_USER=minio-user\nPRISM_MINIO_ROOT_PASSWORD=minio-pass\n"
    "PRISM_POSTGRES_USER=pg-user\nPRISM_POSTGRES_PASSWORD=pg-pass\nPRISM_POSTGRES_DB=pg-db\n"
    "PRISM_S3_ACCESS_KEY=s3-access\nPRISM_S3_SECRET_KEY=s3-secret\n"
)


@pytest.fixture
def c(tmp_path: Path) -> Context:
    (tmp_path / "test.env").write_text(CREDENTIALS)
    return make_context()


def names(objects: list[dict], kind: str | None = None) -> set[str]:
    return {o["metadata"]["name"] for o in objects if kind is None or o["kind"] == kind}


@pytest.mark.parametrize("overlay", ["local", "ci", "dev", "staging", "prod"])
def test_every_object_belongs_to_exactly_one_step(c: Context, overlay: str) -> None:
    objects = _render.plan_objects(c, overlay)
    for obj in objects:
        steps = [s.name for s in _render.STEPS if obj in _render.objects_of(objects, s)]
        assert len(steps) == 1, (obj["kind"], obj["metadata"]["name"], steps)


def test_steps_follow_the_guide_order_with_only_real_dependencies() -> None:
    order = {step.name: i for i, step in enumerate(_render.STEPS)}
    for step in _render.STEPS:
        assert all(order[dep] < order[step.name] for dep in step.after)
    after = {step.name: set(step.after) for step in _render.STEPS}
    assert after["backends"] == after["admin"] == {"foundation"}  # these two run side by side
    assert after["runners"] == {"backends", "proxy"}


def test_local_plan_has_the_guide_workloads_in_their_steps(c: Context) -> None:
    objects = _render.plan_objects(c, "local")
    by_step = {s.name: _render.objects_of(objects, s) for s in _render.STEPS}
    assert names(by_step["backends"], "StatefulSet") == {"redis", "nats", "minio", "postgres"}
    assert names(by_step["admin"], "Deployment") == {"prism-admin"}
    assert names(by_step["proxy"], "Deployment") == {"prism-proxy"}
    assert names(by_step["runners"]) >= {
        "keyvalue-runner",
        "consumer-runner",
        "producer-runner",
        "mailbox-runner",
    }


def test_secrets_come_from_the_environment_base64_encoded(c: Context) -> None:
    secrets = {
        o["metadata"]["name"]: o for o in _render.plan_objects(c, "local") if o["kind"] == "Secret"
    }
    assert set(secrets) == {"minio-credentials", "postgres-credentials", "mailbox-s3-credentials"}
    decoded = {
        k: base64.b64decode(v).decode() for k, v in secrets["postgres-credentials"]["data"].items()
    }
    assert decoded == {
        "POSTGRES_USER": "pg-user",
        "POSTGRES_PASSWORD": "pg-pass",
        "POSTGRES_DB": "pg-db",
    }


def test_missing_credential_stops_before_anything_is_applied(tmp_path: Path, c: Context) -> None:
    (tmp_path / "test.env").write_text(CREDENTIALS.replace("PRISM_S3_SECRET_KEY=s3-secret\n", ""))
    with pytest.raises(Exit, match="PRISM_S3_SECRET_KEY is not set"):
        _render.plan_objects(c, "local")


def test_render_leaves_secrets_out(c: Context) -> None:
    assert "Secret" not in {o["kind"] for o in _render.plan_objects(c, "local", for_apply=False)}


def test_backend_subset_keeps_only_the_chosen_backends(c: Context) -> None:
    objects = _render.plan_objects(c, "local", only_backends=["redis", "postgres"])
    assert _render.backend_names(objects) == {"redis", "postgres"}
    assert "prism-admin" in names(objects)  # the rest of the stack is untouched


def test_backend_outside_the_overlay_is_added_from_base(c: Context) -> None:
    objects = _render.plan_objects(c, "local", only_backends=["kafka"])
    assert _render.backend_names(objects) == {"kafka"}
    assert "kafka" in names(objects, "StatefulSet")


def test_unknown_backend_is_one_clear_error(c: Context) -> None:
    with pytest.raises(Exit, match="unknown backend 'mysql'; choose from: kafka, minio, nats"):
        _render.plan_objects(c, "local", only_backends=["mysql"])


def test_unknown_overlay_lists_the_known_ones(c: Context) -> None:
    with pytest.raises(
        Exit, match="unknown overlay 'qa'; choose one of: ci, dev, local, prod, staging"
    ):
        _render.plan_objects(c, "qa")


def test_statefulset_claims_are_named_like_the_controller_names_them(c: Context) -> None:
    objects = _render.plan_objects(c, "local", for_apply=False)
    backends = [o for o in objects if _render.labels(o).get(_render.TIER) == "backend"]
    assert set(_render.claims(backends)) == {
        "data-redis-0",
        "data-nats-0",
        "data-minio-0",
        "data-postgres-0",
    }


def workload(
    replicas: int, ready: int, updated: int, generation: int = 1, observed: int = 1
) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "observedGeneration": observed,
        },
    }


@pytest.mark.parametrize(
    ("obj", "ready"),
    [
        (workload(2, 2, 2), True),
        (workload(2, 1, 2), False),  # a replica not Ready yet
        (workload(2, 2, 1), False),  # rollout of a new spec still running
        (workload(2, 2, 2, generation=3, observed=2), False),  # controller has not seen the change
    ],
)
def test_ready_means_current_spec_fully_rolled_out(obj: dict, ready: bool) -> None:
    assert is_ready(obj) is ready


def test_backends_enabled_decides_what_render_includes() -> None:
    """backends.enabled is the one switch, whatever the overlay lists: narrowed to Redis, the
    local overlay renders no Postgres, NATS or MinIO; Kafka (in no overlay) comes in once
    enabled, without editing a kustomization."""
    import yaml

    narrowed = inv("deploy.render", "--overlay", "local", env={"PRISM_BACKENDS_ENABLED": "redis"})
    assert narrowed.returncode == 0, narrowed.stderr
    objects = [o for o in yaml.safe_load_all(narrowed.stdout) if o]
    assert _render.backend_names(objects) == {"redis"}
    assert "redis" in names(objects, "StatefulSet")
    assert not names(objects, "StatefulSet") & {"postgres", "nats", "minio"}
    with_kafka = inv(
        "deploy.render",
        "--overlay",
        "ci",
        env={"PRISM_BACKENDS_ENABLED": "redis,nats,minio,postgres,kafka"},
    )
    assert with_kafka.returncode == 0, with_kafka.stderr
    assert "name: kafka\n" in with_kafka.stdout


def test_backends_list_as_json() -> None:
    import json

    from support.cli import inv

    result = inv("backends.list", "--json", env={"PRISM_BACKENDS_ENABLED": "redis,kafka"})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == {
        "backends": [
            {"name": name, "enabled": name in ("redis", "kafka")}
            for name in ["kafka", "minio", "nats", "postgres", "redis"]
        ]
    }
