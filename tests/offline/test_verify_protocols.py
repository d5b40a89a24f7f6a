"""The verify checks' protocol clients against small real servers on loopback: each passes on
a healthy answer and fails, with what it saw, on a wrong one or none."""

from __future__ import annotations

import socket
import threading

import pytest
from invoke import Exit
from support.cli import make_context
from support.playing import Grpc, Http, Kafka, free_port

from tasks._observe import verify as _verify

METRICS = """# HELP prism_requests_total Requests served.
# TYPE prism_requests_total counter
prism_requests_total{pattern="keyvalue"} 12
prism_requests_total{pattern="pubsub"} 3
# TYPE prism_up gauge
prism_up 1
"""


def test_health_passes_on_2xx_and_sends_the_ingress_host() -> None:
    """The server answers for `Host: prism.local` only, as the ingress controller does."""
    port = free_port()
    server = Http(port, {"/admin/health": (200, '{"status": "ok"}')}, host="prism.local")
    try:
        assert _verify.healthy(port, "/admin/health", "prism.local") == (
            'GET /admin/health -> 200 {"status": "ok"}'
        )
        with pytest.raises(_verify.Failed, match="answered 404 default backend"):
            _verify.healthy(port, "/admin/health")  # the same request without the host name
    finally:
        server.stop()


def test_health_fails_on_an_error_status_and_on_silence() -> None:
    port = free_port()
    server = Http(port, {"/admin/health": (503, "database down")})
    try:
        with pytest.raises(_verify.Failed, match="answered 503 database down"):
            _verify.healthy(port, "/admin/health")
    finally:
        server.stop()
    with pytest.raises(_verify.Failed, match=f"no HTTP answer on port {port}"):
        _verify.healthy(port, "/admin/health")


def test_grpc_listing_is_what_grpcurl_list_shows() -> None:
    port = free_port()
    server = Grpc(port, ["prism.v1.KeyValue", "prism.v1.PubSub"])
    try:
        assert _verify.grpc_services(port) == (
            "3 service(s): grpc.reflection.v1alpha.ServerReflection, prism.v1.KeyValue, "
            "prism.v1.PubSub"
        )
    finally:
        server.stop()


def test_grpc_reflection_v1_alone_is_listed_too() -> None:
    """A server offering only grpc.reflection.v1 (as newer servers do): asked first, as grpcurl
    asks it."""
    port = free_port()
    server = Grpc(port, ["prism.v1.KeyValue"], reflection="v1")
    try:
        assert _verify.grpc_services(port) == (
            "2 service(s): grpc.reflection.v1.ServerReflection, prism.v1.KeyValue"
        )
    finally:
        server.stop()


def test_grpc_without_reflection_or_server_fails_clearly() -> None:
    port = free_port()
    server = Grpc(port, [], reflection=None)
    try:
        with pytest.raises(_verify.Failed, match="does not offer gRPC server reflection"):
            _verify.grpc_services(port)
    finally:
        server.stop()
    with pytest.raises(_verify.Failed, match="gRPC UNAVAILABLE"):
        _verify.grpc_services(port)


def test_metrics_are_parsed() -> None:
    port = free_port()
    server = Http(port, {"/metrics": (200, METRICS)})
    try:
        assert _verify.metrics(port) == "2 metric families, 3 samples"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        ({"/metrics": (200, "")}, "/metrics has no samples"),
        ({"/metrics": (200, "this is { not metrics\n")}, "not in Prometheus' text format"),
        ({}, "GET /metrics answered 404"),
    ],
)
def test_metrics_that_are_not_metrics_fail(routes: dict, reason: str) -> None:
    port = free_port()
    server = Http(port, routes)
    try:
        with pytest.raises(_verify.Failed, match=reason):
            _verify.metrics(port)
    finally:
        server.stop()


def test_kafka_metadata_counts_brokers_and_topics() -> None:
    port = free_port()
    server = Kafka(port, ["prism-events", "prism-audit"])
    try:
        assert _verify.kafka_metadata(port) == "Metadata: 1 broker(s), 2 topic(s)"
    finally:
        server.stop()
    with pytest.raises(_verify.Failed, match="no Kafka answer"):
        _verify.kafka_metadata(port)


def test_a_non_kafka_server_is_not_taken_for_kafka() -> None:
    """Redis on the Kafka port, say: it answers an error line and hangs up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"-ERR unknown command\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(_verify.Failed, match="connection closed mid-answer"):
            _verify.kafka_metadata(port)
        thread.join(5)


def test_summary_fails_with_the_first_failure_and_its_next_step() -> None:
    def bad() -> str:
        raise _verify.Failed("GET /admin/health answered 503")

    checks = [
        _verify.Check("ok", lambda: "fine", "nothing"),
        _verify.Check("admin", bad, "`inv observe.logs prism-admin`"),
        _verify.Check("ingress", lambda: "unused", "x", skip="no ingress here"),
    ]
    lines: list[str] = []
    outcomes = _verify.run_all(checks, lines.append)
    assert lines[0].startswith("✓ ok (") and lines[0].endswith("s): fine")
    assert lines[1].startswith("✗ admin (")
    assert lines[1].endswith("GET /admin/health answered 503; next: `inv observe.logs prism-admin`")
    assert lines[2] == "- ingress: skipped (no ingress here)"
    with pytest.raises(
        Exception, match=r"1 passed, 1 failed, 1 skipped on cluster c; first failure: admin"
    ):
        _verify.require_passed(outcomes, "c")


K3D_ONLY = ("admin health through the ingress", "proxy gRPC through the load balancer")


def test_on_k3d_verify_reaches_the_ingress_and_the_load_balancer_on_the_host_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`deploy.verify` on k3d asks the host's HTTP port with `Host: prism.local` (the server
    answers for that name only, as the ingress controller does) and the load balancer's gRPC
    port; once those servers are gone, both fail with their next step. The other checks need a
    cluster (tests/databases/test_verify.py) and are left out here."""
    from tasks import deploy
    from tasks._core import target as _target

    http_port, grpc_port = free_port(), free_port()
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "k3d")
    monkeypatch.setenv("PRISM_CLUSTER_HTTP_PORT", str(http_port))
    monkeypatch.setenv("PRISM_CLUSTER_GRPC_PORT", str(grpc_port))
    monkeypatch.setenv("PRISM_BACKENDS_ENABLED", "redis")  # no Postgres credentials needed
    k3d = _target.Target("k3d", "prism-local", "k3d-prism-local", "", "PRISM_CLUSTER_PROVIDER")
    monkeypatch.setattr(_target, "require_reachable", lambda c: k3d)
    lines: list[str] = []
    run_all = _verify.run_all

    def k3d_only(checks: list[_verify.Check], say: object = None) -> list[_verify.Outcome]:
        return run_all([check for check in checks if check.name in K3D_ONLY], lines.append)

    monkeypatch.setattr(_verify, "run_all", k3d_only)
    admin = Http(http_port, {"/admin/health": (200, "healthy")}, host="prism.local")
    proxy = Grpc(grpc_port, ["prism.interfaces.keyvalue.KeyValueBasicInterface"])
    try:
        deploy.verify(make_context())
    finally:
        admin.stop()
        proxy.stop()
    assert len(lines) == 2, lines
    assert lines[0].startswith("✓ admin health through the ingress (")
    assert lines[0].endswith("GET /admin/health -> 200 healthy")
    assert lines[1].startswith("✓ proxy gRPC through the load balancer (")
    assert lines[1].endswith("prism.interfaces.keyvalue.KeyValueBasicInterface")

    lines.clear()
    with pytest.raises(Exit) as failed:
        deploy.verify(make_context())
    assert failed.value.code == 1
    assert str(failed.value.message).startswith(
        "0 passed, 2 failed, 0 skipped on cluster prism-local; "
        "first failure: admin health through the ingress: "
    )
    assert lines[0].startswith("✗ admin health through the ingress (")
    assert f"no HTTP answer on port {http_port}" in lines[0]
    assert lines[0].endswith(
        "; next: `inv ingress.install`, then `inv observe.logs prism-admin` and `inv observe.check`"
    )
    assert lines[1].startswith("✗ proxy gRPC through the load balancer (")
    assert lines[1].endswith(
        f"; next: `inv cluster.status` (the k3d port {grpc_port}), then "
        "`inv observe.logs prism-proxy` and `inv observe.check`"
    )
