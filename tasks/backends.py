"""Backing services of the guide (Redis, NATS, MinIO, Postgres, optional Kafka)."""

from __future__ import annotations

from invoke import Collection, task

from . import _settings

KNOWN = ("redis", "nats", "minio", "postgres", "kafka")


@task(name="list", default=True)
def list_(c):
    """List the backends this project can deploy and which are enabled."""
    enabled = set(_settings.load(c).backends.enabled.split(","))
    for name in KNOWN:
        print(f"{name:<9} {'enabled' if name in enabled else 'available'}")


ns = Collection("backends", list_)
_settings.configure(
    ns,
    "backends",
    {
        # The guide deploys these four; kafka is optional (ERRATA 5).
        "enabled": "redis,nats,minio,postgres",
    },
)
