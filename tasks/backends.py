"""Backing services of the guide (Redis, NATS, MinIO, Postgres, and optional Kafka)."""

from __future__ import annotations

import time

from invoke import Collection, Context, Exit, task

from ._core import settings as _settings
from ._core import target as _target

ONLY_HELP = "Comma-separated backends, e.g. redis,postgres (default: backends.enabled)."


def chosen(c: Context, only: str | None) -> list[str]:
    from ._deploy import render as _render

    if not only:
        return _render.enabled_backends(_settings.load(c))
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise Exit("no backend chosen; pass --only redis,postgres or set backends.enabled", code=1)
    return names


@task(
    help={
        "only": ONLY_HELP,
        "overlay": "Overlay to take the backends from (default: the environment's).",
        "timeout": "Seconds to wait for the backends to become Ready.",
    }
)
def deploy(c, only=None, overlay=None, timeout=None):
    """Deploy the chosen backends (namespaces, storage and Secrets first) and wait for them."""
    from ._core import guard as _guard
    from ._deploy import plan as _plan
    from ._deploy import render as _render

    s = _settings.load(c)
    wait = _settings.seconds(timeout, s.deploy.timeout)
    started = time.monotonic()
    objects = _render.plan_objects(c, overlay or s.overlay, only_backends=chosen(c, only))
    t = _target.require_reachable(c)
    if not _guard.is_dry(c):
        _guard.require_owned(c, t)  # the .env credentials go only where we may put them
    steps = [step for step in _render.STEPS if step.name in ("foundation", "backends")]
    outcomes = _plan.run_plan(c, objects, steps, wait)
    _plan.summarize(outcomes, time.monotonic() - started)


@task(help={"only": ONLY_HELP})
def status(c, only=None):
    """Show the chosen backends' workloads with ready/desired replicas."""
    _target.require_reachable(c)
    selector = f"app.kubernetes.io/component=backend,app.kubernetes.io/name in ({','.join(chosen(c, only))})"
    _target.kubectl(
        c, "get", "statefulsets,pods,pvc", "-l", selector, namespace="prism-backends", dry=False
    )


@task(
    help={
        "only": ONLY_HELP,
        "yes": "Do not ask for confirmation (claims and their data are deleted too).",
    }
)
def delete(c, only=None, yes=False):
    """Delete the chosen backends and their claims (asks first unless --yes)."""
    from ._deploy import render as _render

    _target.require_reachable(c)
    names = chosen(c, only)
    t = _target.resolve(c)
    from ._core import guard as _guard

    _guard.require_owned(c, t)
    _guard.confirm(f"delete {', '.join(names)} and their data from cluster {t.name}?", yes)
    objects = _render.plan_objects(
        c, _settings.load(c).overlay, only_backends=names, for_apply=False
    )
    doomed = [o for o in objects if _render.labels(o).get(_render.TIER) == "backend"]
    _target.kubectl(
        c,
        "delete",
        "--ignore-not-found",
        "-f",
        "-",
        input=_render.to_yaml(doomed),
    )
    claims = _render.claims(doomed)
    if claims:
        _target.kubectl(
            c, "delete", "pvc", *claims, "--ignore-not-found", namespace="prism-backends"
        )
    if claims and t.provider == "kwok":
        # The simulated cluster's volumes are pre-bound to these claims; a new claim of the
        # same name needs a fresh one (the deploy engine creates it).
        from ._providers import kwok as _kwok

        volumes = [_kwok.volume_name("prism-backends", claim) for claim in claims]
        _target.kubectl(c, "delete", "pv", *volumes, "--ignore-not-found")


@task(
    name="list",
    default=True,
    help={"json": "Print a JSON document (keys in the README) instead of text."},
)
def list_(c, json=False):
    """List the backends this project can deploy and which are enabled."""
    from ._deploy import render as _render

    enabled = set(chosen(c, None))
    names = _render.available_backends()
    if json:
        from ._core import output as _output

        _output.print_json({"backends": [{"name": n, "enabled": n in enabled} for n in names]})
        return
    for name in names:
        print(f"{name:<9} {'enabled' if name in enabled else 'available'}")


ns = Collection("backends", deploy, status, delete, list_)
_settings.configure(
    ns,
    "backends",
    {
        # The guide deploys these four; kafka is optional (guide correction 5).
        "enabled": "redis,nats,minio,postgres",
    },
)
