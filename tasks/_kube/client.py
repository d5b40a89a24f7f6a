"""The Python Kubernetes client, pinned to the project's context.

Imported lazily by tasks that watch the cluster, so that `inv --list` never pays for it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from invoke import Context, Exit

from .._core import command as _command
from .._core import target as _target


def preload() -> None:
    """Import the Kubernetes client in a background thread. Its import is the largest single
    cost of a no-op deploy (about half a second: the kubeconfig loader pulls in every
    authentication library); tasks spend about as long waiting for kubectl and kwokctl before
    they first need the client, and the import runs in that wait. Importing it later, in the
    task, then finds it done, or waits for the rest (Python's import lock)."""

    def load() -> None:
        with contextlib.suppress(Exception):  # a broken install is reported where it is used
            import kubernetes.client
            import kubernetes.config  # noqa: F401

    threading.Thread(target=load, name="preload-kubernetes", daemon=True).start()


@contextmanager
def api_client(c: Context) -> Iterator[Any]:
    """An ApiClient for the target cluster's context (never the current context).

    A connection lost or a request refused inside the block ends the task with one line."""
    t = _target.resolve(c)
    with _explained(t), _client(c, t) as client:
        yield client


@contextmanager
def _client(c: Context, t: _target.Target) -> Iterator[Any]:
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    if _command.is_remote(c):
        from .._remote import tunnel as _tunnel

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


@contextmanager
def _explained(t: _target.Target) -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, SSLError

    try:
        yield
    except HTTPError as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, SSLError):
            raise Exit(
                f"cannot verify the Kubernetes API server of cluster {t.name} ({reason}); its "
                "kubeconfig belongs to another cluster: `inv cluster.kubeconfig` rewrites it",
                code=1,
            ) from None
        raise Exit(
            f"lost the connection to the Kubernetes API of cluster {t.name} ({error}); "
            "is it running? `inv cluster.status`",
            code=1,
        ) from None
    except ApiException as error:
        raise Exit(
            f"the Kubernetes API of cluster {t.name} refused a request: "
            f"{error.status} {error.reason}",
            code=1,
        ) from None


# --- plain requests: JSON in, dicts out -------------------------------------------------------


def request(
    api: Any,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    body: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """One API request through `api`'s connection pool and credentials: (HTTP status, body).

    Plain dicts skip the typed client's model classes, which cost more than the request."""
    method, url, headers, body, _ = api.param_serialize(
        method,
        path,
        query_params=list(query),
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=60)
    data = response.read()
    try:
        decoded = json.loads(data) if data else {}
    except ValueError:
        decoded = {"message": data.decode(errors="replace").strip()}
    return response.status, decoded


@contextmanager
def streaming(api: Any, path: str, query: Sequence[tuple[str, str]] = ()) -> Iterator[Any]:
    """A GET whose answer is read while it arrives (logs, watches): yields the open response
    (iterate it for lines) with no read timeout; closed when the block ends. A refused
    request raises Exit with the API's message."""
    method, url, headers, _, _ = api.param_serialize(
        "GET", path, query_params=list(query), auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, header_params=headers, _request_timeout=(10, None))
    raw = response.response  # urllib3's response, not yet read
    try:
        if response.status >= 300:
            data = raw.read()
            try:
                message = json.loads(data).get("message", response.status)
            except ValueError:
                message = data.decode(errors="replace").strip() or response.status
            raise Exit(str(message), code=1)
        yield raw
    finally:
        raw.release_conn()


def items(api: Any, path: str, selector: str, kind: str) -> list[dict[str, Any]]:
    """The objects of a list request, each with its `kind` (lists leave it out of items)."""
    status, found = request(api, "GET", path, [("labelSelector", selector)])
    if status >= 300:
        raise Exit(f"cannot list {path}: {found.get('message', status)}", code=1)
    return [{"kind": kind, **item} for item in found.get("items") or []]


class Resources:
    """Which REST path serves each kind: the API server's discovery, one request per
    group/version and only for the group/versions asked about (custom resources included)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.lock = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}  # one per apiVersion: discovered once
        self.found: dict[str, dict[str, tuple[str, bool]]] = {}  # apiVersion -> kind -> entry

    def path(self, obj: dict[str, Any], namespace: str = "default") -> str:
        """`/apis/apps/v1/namespaces/prism/deployments/prism-admin` for such an object."""
        collection, namespaced = self._served(obj.get("apiVersion", ""), obj.get("kind", ""))
        name = obj["metadata"]["name"]
        if namespaced:
            prefix, plural = collection.rsplit("/", 1)
            where = obj["metadata"].get("namespace") or namespace
            return f"{prefix}/namespaces/{where}/{plural}/{name}"
        return f"{collection}/{name}"

    def collection(self, api_version: str, kind: str) -> str:
        """The path that lists every object of a kind, in every namespace."""
        return self._served(api_version, kind)[0]

    def _served(self, version: str, kind: str) -> tuple[str, bool]:
        """(`/apis/apps/v1/deployments`, namespaced) for a kind the cluster serves; discovery
        the first time its group/version is asked about."""
        prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
        with self.lock:
            lock = self.locks.setdefault(version, threading.Lock())
        with lock:  # threads asking about other group/versions discover them meanwhile
            if version not in self.found:
                self.found[version] = self._discover(prefix)
        entry = self.found[version].get(kind)
        if entry is None:
            raise Exit(
                f"the cluster serves no {kind} in {version or '(no apiVersion)'}: "
                "check the manifest's apiVersion and kind (a custom resource needs its CRD first)",
                code=1,
            )
        plural, namespaced = entry
        return f"{prefix}/{plural}", namespaced

    def _discover(self, prefix: str) -> dict[str, tuple[str, bool]]:
        status, found = request(self.api, "GET", prefix)
        if status == 404:
            return {}
        if status >= 300:
            raise Exit(f"cannot read {prefix} from the API server: {found.get('message')}", code=1)
        return {
            r["kind"]: (r["name"], bool(r.get("namespaced")))
            for r in found.get("resources", [])
            if "/" not in r["name"]  # subresources such as deployments/scale
        }


def server_side_apply(
    api: Any, resources: Resources, obj: dict[str, Any], field_manager: str, dry_run: bool = False
) -> dict[str, Any]:
    """`kubectl apply --server-side --force-conflicts` of one object, with the server's strict
    field validation (an unknown or duplicate field is an error, not silently dropped).
    `dry_run`: the server checks everything it would check, and stores nothing."""
    query = [("fieldManager", field_manager), ("force", "true"), ("fieldValidation", "Strict")]
    if dry_run:
        query.append(("dryRun", "All"))
    status, answer = request(
        api,
        "PATCH",
        resources.path(obj),
        query,
        body=obj,
        content_type="application/apply-patch+yaml",
    )
    if status >= 300:
        meta = obj["metadata"]
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        raise Rejected(
            f"the API server rejected {obj['kind']} {where}{meta['name']}: "
            f"{answer.get('message', status)}; fix it in the overlay, then run the same task again",
            code=1,
        )
    return answer


class Rejected(Exit):
    """The API server refused an object (validation, admission, a kind it does not serve)."""


def namespaces(api: Any) -> dict[str, str]:
    """The namespaces that exist now: name -> UID (kube-system's UID names the cluster)."""
    status, found = request(api, "GET", "/api/v1/namespaces")
    if status >= 300:
        raise Exit(f"cannot list namespaces: {found.get('message', status)}", code=1)
    return {
        item["metadata"]["name"]: item["metadata"].get("uid", "")
        for item in found.get("items") or []
    }
