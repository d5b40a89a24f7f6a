"""`observe.logs --since/--tail` limit what the API server sends: each pod's log request carries
`sinceSeconds` / `tailLines` (the API answers for it; nothing is cut here). The API is faked
at the client's two calls, a request and a streamed GET; the task runs as the CLI runs it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support.cli import make_context

from tasks import observe
from tasks._core import target as _target
from tasks._kube import client as _kube

ADMIN = {
    "metadata": {"name": "prism-admin"},
    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "prism-admin"}}},
}
PODS = [
    {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "admin"}]},
        "status": {"phase": "Running"},
    }
    for name in ("prism-admin-a", "prism-admin-b")
]


@pytest.fixture
def log_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[tuple[str, str]]]]:
    """(path, query) of every streamed log request, from a cluster running prism-admin's two
    pods, each of which logs two lines."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    @contextmanager
    def api_client(c: Any) -> Iterator[object]:
        yield object()

    def request(api: Any, method: str, path: str, query: Any = ()) -> tuple[int, dict]:
        if path == "/apis/apps/v1/namespaces/prism/deployments":
            return 200, {"items": [ADMIN]}
        if path == "/api/v1/namespaces/prism/pods":
            assert list(query) == [("labelSelector", "app.kubernetes.io/name=prism-admin")]
            return 200, {"items": PODS}
        return 200, {"items": []}

    @contextmanager
    def streaming(api: Any, path: str, query: Any = ()) -> Iterator[list[bytes]]:
        seen.append((path, list(query)))
        yield [b"started\n", b"serving on :8080\n"]

    monkeypatch.setattr(_target, "require_reachable", lambda c: None)
    monkeypatch.setattr(_kube, "api_client", api_client)
    monkeypatch.setattr(_kube, "request", request)
    monkeypatch.setattr(_kube, "streaming", streaming)
    return seen


@pytest.mark.parametrize(
    ("flags", "limits"),
    [
        ({}, []),
        ({"since": "10m"}, [("sinceSeconds", "600")]),
        ({"tail": "1"}, [("tailLines", "1")]),
        ({"tail": "0"}, [("tailLines", "0")]),
        ({"since": "1h30m", "tail": "50"}, [("sinceSeconds", "5400"), ("tailLines", "50")]),
    ],
)
def test_since_and_tail_reach_every_pods_log_request(
    log_requests: list[tuple[str, list[tuple[str, str]]]],
    capsys: pytest.CaptureFixture[str],
    flags: dict[str, str],
    limits: list[tuple[str, str]],
) -> None:
    observe.logs(make_context(), "prism-admin", **flags)
    assert sorted(log_requests) == [
        (f"/api/v1/namespaces/prism/pods/{pod}/log", [*limits, ("container", "admin")])
        for pod in ("prism-admin-a", "prism-admin-b")
    ]
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == [
        "[prism-admin-a] serving on :8080",
        "[prism-admin-a] started",
        "[prism-admin-b] serving on :8080",
        "[prism-admin-b] started",
    ]
