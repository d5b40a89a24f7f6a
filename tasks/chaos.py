"""Resilience drills: disrupt one workload of the stack on the project's own cluster."""

from __future__ import annotations

from invoke import Collection, Exit, task

from . import _command, _settings


@task(
    name="kill-pod",
    help={
        "app": "The workload's `app` label, e.g. prism-proxy or redis (required).",
        "namespace": "Namespace of the workload (default: prism).",
    },
)
def kill_pod(c, app, namespace=None):
    """Delete one pod of a workload and let its controller replace it."""
    _command.require_reachable(c)
    namespace = namespace or _settings.load(c).chaos.namespace
    names = _command.kubectl(
        c,
        "get",
        "pods",
        "-l",
        f"app={app}",
        "-o",
        "jsonpath={.items[*].metadata.name}",
        namespace=namespace,
        dry=False,
        hide=True,
    ).stdout.split()
    if not names:
        raise Exit(f"no pod with app={app} in namespace {namespace}; see `inv observe`", code=1)
    _command.kubectl(c, "delete", "pod", names[0], "--wait=false", namespace=namespace)
    print(f"deleted pod {names[0]}; its controller will start a replacement")


ns = Collection("chaos", kill_pod)
_settings.configure(ns, "chaos", {"namespace": "prism"})
