"""The Python Kubernetes client, pinned to the project's context.

Imported lazily by tasks that watch the cluster, so that `inv --list` never pays for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Context, Exit

from . import _command


@contextmanager
def api_client(c: Context) -> Iterator[Any]:
    """An ApiClient for the target cluster's context (never the current context)."""
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    t = _command.target(c)
    if _command.is_remote(c):
        from . import _tunnel

        with _tunnel.api_client(c, t) as client:
            yield client
        return
    try:
        client = kube_config.new_client_from_config(
            config_file=t.kubeconfig or None, context=t.context
        )
    except (ConfigException, OSError) as error:
        raise Exit(
            f"no kubeconfig context {t.context} ({error}); run `inv cluster.create`", code=1
        ) from None
    try:
        yield client
    finally:
        client.close()
