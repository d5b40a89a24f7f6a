"""The guide's "Verification and Testing" section, run rather than printed: the admin API's
health, the proxy's gRPC reflection listing and its metrics, and each enabled backend answering
its own protocol. One line per check with its time; a failure names its next step.

How each check reaches its server:
- HTTP, gRPC and Kafka go through `kubectl port-forward` to the Service, from this machine, so
  the check needs no tool inside the image (and no grpcurl here: gRPC's own reflection client).
- Redis and Postgres are asked by the client their image ships (redis-cli, psql) through
  `kubectl exec`, as the backups do, on the ports the backups use (backup.*_port).
- Through the ingress (k3d only): the host's HTTP port with the ingress host name as `Host`,
  which is what `curl http://prism.local:8080/admin/health` does once /etc/hosts has the name.
"""

from __future__ import annotations

import http.client
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invoke import Context, Exit

from .._core import postgres as _postgres
from .._core import target as _target
from . import forward as _forward

TIMEOUT = 10.0  # seconds one check's connection may take


class Failed(Exception):
    """A check that got an answer it should not have (or none)."""


@dataclass
class Check:
    name: str
    probe: Callable[[], str]  # returns what it saw; raises Failed
    fix: str
    skip: str = ""  # why this check does not apply here

    def ask(self) -> tuple[bool, str]:
        """Run the probe once: (passed, what it saw or why it failed)."""
        try:
            return True, self.probe()
        except Failed as error:
            return False, str(error)


@dataclass
class Outcome:
    check: Check
    seconds: float
    ok: bool | None  # None: skipped
    detail: str

    def text(self) -> str:
        if self.ok is None:
            return f"{self.check.name}: skipped ({self.detail})"
        return f"{self.check.name} ({self.seconds:.2f}s): {self.detail}"

    def line(self) -> str:
        return f"{'✓' if self.ok else '-' if self.ok is None else '✗'} {self.text()}"


# --- the protocols -------------------------------------------------------------------------


def http_get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    except (OSError, http.client.HTTPException) as error:
        raise Failed(f"no HTTP answer on port {port}: {error}") from None
    finally:
        connection.close()


def healthy(port: int, path: str, host: str | None = None) -> str:
    """An HTTP health endpoint answering 2xx."""
    status, body = http_get(port, path, host)
    shown = " ".join(body.decode(errors="replace").split())[:80]
    if not 200 <= status < 300:
        raise Failed(f"GET {path} answered {status} {shown}".rstrip())
    return f"GET {path} -> {status} {shown}".rstrip()


# As grpcurl: v1 first, then v1alpha, which older servers and grpcio-reflection's (1.85 still)
# offer alone. v1 is v1alpha renamed, message for message, so v1alpha's messages (the only ones
# grpcio-reflection ships) serve both.
REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)


def grpc_services(port: int) -> str:
    """What `grpcurl -plaintext HOST:PORT list` shows: the services the reflection API lists."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for service in REFLECTION_SERVICES:
            names = _listed_by(channel, service)
            if names is not None:
                break
        else:
            raise Failed("the server does not offer gRPC server reflection")
    if not names:
        raise Failed("the reflection API lists no service")
    return f"{len(names)} service(s): {', '.join(names)}"


def _listed_by(channel: Any, service: str) -> list[str] | None:
    """The services one reflection API version lists; None when the server does not offer it."""
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2

    info = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        for answer in info(iter([request]), timeout=TIMEOUT):
            return sorted(s.name for s in answer.list_services_response.service)
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise Failed(f"gRPC {code.name}: {error.details()}") from None
    raise Failed("the reflection stream ended without an answer")


def metrics(port: int) -> str:
    """Prometheus' text exposition format at /metrics, parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(port, "/metrics")
    if status != 200:
        raise Failed(f"GET /metrics answered {status}")
    try:
        families = list(text_string_to_metric_families(body.decode(errors="replace")))
    except ValueError as error:
        raise Failed(f"/metrics is not in Prometheus' text format: {error}") from None
    samples = sum(len(f.samples) for f in families)
    if not samples:
        raise Failed("/metrics has no samples")
    return f"{len(families)} metric families, {samples} samples"


def kafka_metadata(port: int) -> str:
    """A Kafka Metadata request (v0, all topics) and the broker and topic counts it answers."""
    client = b"prism-verify"
    body = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _read(conn, 4))
            answer = _read(conn, size)
    except OSError as error:
        raise Failed(f"no Kafka answer on port {port}: {error}") from None
    try:
        correlation, brokers = struct.unpack_from(">ii", answer, 0)
        offset = 8
        for _ in range(brokers):
            offset += 4  # node id
            (length,) = struct.unpack_from(">h", answer, offset)
            offset += 2 + length + 4  # host, port
        (topics,) = struct.unpack_from(">i", answer, offset)
    except struct.error:
        raise Failed("the answer is not a Kafka Metadata response") from None
    if correlation != 1 or brokers < 1:
        raise Failed(f"unexpected Metadata answer (correlation {correlation}, {brokers} brokers)")
    return f"Metadata: {brokers} broker(s), {topics} topic(s)"


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed mid-answer")
        data += chunk
    return data


# --- through the cluster ---------------------------------------------------------------------


def forwarded(
    c: Context, namespace: str, service: str, port: int, probe: Callable[[int], str]
) -> Callable[[], str]:
    """`probe` run against a local port forwarded to the Service's `port`."""

    def run() -> str:
        try:
            with _forward.forwarding(c, namespace, f"svc/{service}", [(0, port)]) as forward:
                return probe(forward.ports[port])
        except Exit as error:
            raise Failed(str(error.message)) from None

    return run


def in_pod(
    c: Context, namespace: str, pod: str, script: str, expect: str, secret: str | None = None
) -> Callable[[], str]:
    """A shell line run in the pod (`secret` on its first line of input); passes when its
    output's last line is `expect`."""

    def run() -> str:
        argv = ["exec", *(["-i"] if secret is not None else []), pod, "--", "sh", "-c", script]
        extra = {"in_stream": False} if secret is None else {"input": secret + "\n"}
        result = _target.kubectl(
            c, *argv, namespace=namespace, hide=True, warn=True, dry=False, **extra
        )
        seen = (result.stdout.strip().splitlines() or [""])[-1]
        if result.failed or seen != expect:
            said = (
                " ".join((result.stderr or result.stdout).split())[:160] or f"exit {result.exited}"
            )
            raise Failed(said)
        return f"answered {seen}"

    return run


def workloads_ready(c: Context) -> Callable[[], str]:
    """`kubectl get pods -n prism / -n prism-backends`, judged: every workload Ready."""

    def run() -> str:
        import json

        from .._kube.readiness import is_ready

        result = _target.kubectl(
            c, "get", "deployments,statefulsets", "--all-namespaces",
            "-l", "app.kubernetes.io/part-of=prism", "-o", "json",
            hide=True, warn=True, dry=False,
        )  # fmt: skip
        if result.failed:
            raise Failed(" ".join(result.stderr.split())[:160])
        items = json.loads(result.stdout or "{}").get("items", [])
        if not items:
            raise Failed("no Prism workloads")
        waiting = sorted(i["metadata"]["name"] for i in items if not is_ready(i))
        if waiting:
            raise Failed(f"not Ready: {', '.join(waiting)}")
        return f"{len(items)} of {len(items)} Ready"

    return run


def run_all(checks: list[Check], say: Callable[[str], None] | None = None) -> list[Outcome]:
    """Run the checks in order, each line printed as it ends (coloured on a terminal), or
    handed to `say`."""
    from .._core import output as _output

    outcomes = []
    for check in checks:
        started = time.monotonic()
        if check.skip:
            outcome = Outcome(check, 0.0, None, check.skip)
        else:
            try:
                outcome = Outcome(check, 0.0, True, check.probe())
            except Failed as error:
                outcome = Outcome(check, 0.0, False, f"{error}; next: {check.fix}")
            outcome.seconds = time.monotonic() - started
        if say is None:
            _output.line(outcome.ok, outcome.text())
        else:
            say(outcome.line())
        outcomes.append(outcome)
    return outcomes


@dataclass(frozen=True)
class Stack:
    """What the checks need to know about the deployed stack and where it runs."""

    provider: str
    backends: tuple[str, ...]
    has_ingress: bool
    ingress_host: str
    http_port: int
    grpc_port: int
    postgres_port: int
    redis_port: int
    postgres_user: str
    postgres_db: str
    postgres_password: str


def logs(app: str) -> str:
    """The next step of a check that failed on one app."""
    return f"`inv observe.logs {app}` and `inv observe.check`"


def checks(c: Context, stack: Stack) -> list[Check]:
    """The checks for this stack, in the guide's order."""
    on_k3d = "" if stack.provider == "k3d" else "the simulated cluster carries no ingress traffic"
    found = [
        Check("every workload Ready", workloads_ready(c), "`inv deploy.status`, `inv deploy.all`"),
        Check(
            "admin health through the ingress",
            lambda: healthy(stack.http_port, "/admin/health", stack.ingress_host),
            f"`inv ingress.install`, then {logs('prism-admin')}",
            skip=on_k3d or ("" if stack.has_ingress else "the overlay has no Ingress"),
        ),
        Check(
            "admin health through a port-forward",
            forwarded(c, "prism", "prism-admin", 8080, lambda p: healthy(p, "/admin/health")),
            logs("prism-admin"),
        ),
        Check(
            "proxy gRPC services (reflection) through a port-forward",
            forwarded(c, "prism", "prism-proxy", 50051, grpc_services),
            logs("prism-proxy"),
        ),
        Check(
            "proxy gRPC through the load balancer",
            lambda: grpc_services(stack.grpc_port),
            f"`inv cluster.status` (the k3d port {stack.grpc_port}), then {logs('prism-proxy')}",
            skip=on_k3d and "the simulated cluster has no load balancer",
        ),
        Check(
            "proxy /metrics through a port-forward",
            forwarded(c, "prism", "prism-proxy", 9090, metrics),
            logs("prism-proxy"),
        ),
    ]
    by_backend = backend_checks(c, stack)
    found += [by_backend[b] for b in stack.backends if b in by_backend]
    return found


def backend_checks(c: Context, stack: Stack) -> dict[str, Check]:
    """Each backend's check in its own protocol, by backend name."""
    select_1 = _postgres.READ_PASSWORD + _postgres.psql(
        stack.postgres_port, stack.postgres_user, stack.postgres_db, "-tAc", "SELECT 1"
    )
    return {
        "redis": Check(
            "redis PING",
            in_pod(
                c,
                "prism-backends",
                "redis-0",
                f"redis-cli -h 127.0.0.1 -p {stack.redis_port} PING",
                "PONG",
            ),
            logs("redis"),
        ),
        "postgres": Check(
            "postgres SELECT 1",
            in_pod(
                c,
                "prism-backends",
                "postgres-0",
                select_1,
                "1",
                secret=stack.postgres_password,
            ),
            f"PRISM_POSTGRES_* in .env, then {logs('postgres')}",
        ),
        "nats": Check(
            "nats monitor /healthz",
            forwarded(c, "prism-backends", "nats", 8222, lambda p: healthy(p, "/healthz")),
            logs("nats"),
        ),
        "minio": Check(
            "minio /minio/health/live",
            forwarded(
                c, "prism-backends", "minio", 9000, lambda p: healthy(p, "/minio/health/live")
            ),
            logs("minio"),
        ),
        "kafka": Check(
            "kafka metadata",
            forwarded(c, "prism-backends", "kafka", 9092, kafka_metadata),
            logs("kafka"),
        ),
    }


def require_passed(outcomes: list[Outcome], cluster: str) -> str:
    """The summary line; raises when any check failed."""
    failed = [o for o in outcomes if o.ok is False]
    passed = sum(o.ok is True for o in outcomes)
    skipped = sum(o.ok is None for o in outcomes)
    summary = f"{passed} passed, {len(failed)} failed, {skipped} skipped on cluster {cluster}"
    if failed:
        raise Exit(f"{summary}; first failure: {failed[0].check.name}: {failed[0].detail}", code=1)
    return summary
