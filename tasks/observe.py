"""Look at the running stack: pods, services and ingresses of the Prism namespaces."""

from __future__ import annotations

from invoke import Collection, task

from . import _command, _settings

NAMESPACES = ("prism", "prism-backends")


@task(default=True)
def pods(c):
    """Show pods, services and ingresses in the prism and prism-backends namespaces."""
    _command.require_reachable(c)
    for namespace in NAMESPACES:
        _command.kubectl(c, "get", "pods,svc,ingress", "-o", "wide", namespace=namespace, dry=False)


ns = Collection("observe", pods)
_settings.configure(
    ns,
    "observe",
    {
        "namespace": "observability",
    },
)
