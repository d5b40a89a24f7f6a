"""What crosses the SSH connection besides commands: stdin streamed to a remote command, and the
Python Kubernetes client reaching the host's API server through a tunnel.

The "API server" is a small HTTPS server on the host's loopback whose certificate names only
`localhost`: the client reaches it through 127.0.0.1:<local port>, so a passing call proves that
TLS verification still checks the original name.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from invoke import Exit
from support.cli import make_context
from support.sshd import SshServer, ssh_keys, sshd_factory  # noqa: F401  (fixtures)

from tasks._core import command as _command
from tasks._core import target as _target
from tasks._kube import client as _kube
from tasks._remote import tunnel as _tunnel
from tasks._remote.hosts import HostConfig, HostConnection

TOKEN = "tunnel-test-token"
CONTEXT = "kwok-prism-local"
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T00:00:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}  # the context `_command.target` pins for the kwok provider


def certificate(name: str, issuer: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """(certificate, key): a CA when `issuer` is None, else a server cert for DNS `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ApiServer:
    """HTTPS on the host's 127.0.0.1, answering /version for a bearer token, counting requests."""

    def __init__(self, workdir: Path) -> None:
        self.ca = certificate("test-ca")
        cert, key = certificate("localhost", issuer=self.ca)
        (workdir / "server.pem").write_bytes(pem(cert) + pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / "server.pem")
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                authorized = self.headers.get("Authorization") == f"Bearer {TOKEN}"
                body = json.dumps(VERSION)
                self.send_response(200 if authorized else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kubeconfig(self, server: str, ca: Any = None) -> dict[str, Any]:
        import base64

        ca_data = base64.b64encode(pem((ca or self.ca)[0])).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": server, "certificate-authority-data": ca_data}}
            ],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": "c", "user": "u"}}],
            "current-context": CONTEXT,
        }


@pytest.fixture(scope="module")
def host(
    sshd_factory: Callable[..., SshServer],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SshServer, ApiServer]]:
    server = sshd_factory()
    api = ApiServer(tmp_path_factory.mktemp("api"))
    yield server, api
    api.httpd.shutdown()


def write_remote_kubeconfig(server: SshServer, config: dict[str, Any]) -> None:
    """The host's ~/.kube/config (its HOME is the sshd's own directory)."""
    path = server.home / ".kube" / "config"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
def connection(
    host: tuple[SshServer, ApiServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[HostConnection]:
    """A connection to the host as `inv -H` builds it, configured like this project."""
    import tasks

    server, _ = host
    monkeypatch.setenv("PRISM_CLUSTER_PROVIDER", "kwok")
    config = HostConfig(overrides={"connect_kwargs": {"key_filename": [str(server.key_path)]}})
    config.load_collection(tasks.ns.configuration())
    with HostConnection(server.address, config=config) as c:
        yield c


def test_the_ssh_socket_sends_small_packets_at_once(connection: HostConnection):
    """TCP_NODELAY: each API request through the tunnel is a small write, which with Nagle's
    algorithm waits for the server's delayed ACK (33 ms a request instead of 10)."""
    connection.open()
    sock = connection.transport.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_stdin_streams_to_the_remote_command_and_is_closed(connection: HostConnection):
    manifest = "kind: ConfigMap\n" * 65536  # 1 MiB; `wc` only ends once stdin is closed
    started = time.monotonic()
    result = _command.run(connection, ["wc", "-c"], input=manifest, hide=True)
    elapsed = time.monotonic() - started

    assert result.stdout.strip() == str(len(manifest))
    assert elapsed < 5  # invoke reading byte by byte, 10 ms apart, would need hours


def test_the_kubernetes_client_reaches_the_hosts_api_through_ssh(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    from kubernetes import client as k8s

    server, api = host
    write_remote_kubeconfig(server, api.kubeconfig(f"https://localhost:{api.port}"))
    forwards = server.forwards()

    with _kube.api_client(connection) as api_client:
        url = api_client.configuration.host
        version = k8s.VersionApi(api_client).get_code()

    assert version.git_version == "v1.32.4"  # the bearer token arrived
    assert url.startswith("https://127.0.0.1:")  # this machine's loopback, not the host's
    assert server.forwards() > forwards  # the bytes went through sshd's direct-tcpip


def test_tls_still_verifies_the_api_servers_certificate(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    from kubernetes import client as k8s

    server, api = host
    stranger_ca = certificate("another-ca")
    write_remote_kubeconfig(server, api.kubeconfig(f"https://localhost:{api.port}", stranger_ca))

    with (
        pytest.raises(Exit, match="cannot verify .* CERTIFICATE_VERIFY_FAILED"),
        _kube.api_client(connection) as api_client,
    ):
        api_client.configuration.retries = 0
        k8s.VersionApi(api_client).get_code()


def test_the_tunnel_closes_with_the_client(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    server, api = host
    write_remote_kubeconfig(server, api.kubeconfig(f"https://localhost:{api.port}"))

    with _kube.api_client(connection) as api_client:
        port = int(api_client.configuration.host.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_stopped_api_server_is_one_clear_error(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    from kubernetes import client as k8s

    server, api = host
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    write_remote_kubeconfig(server, api.kubeconfig(f"https://localhost:{port}"))

    with (
        pytest.raises(Exit, match=rf"cannot reach the Kubernetes API at localhost:{port}"),
        _kube.api_client(connection) as api_client,
    ):
        api_client.configuration.retries = 0
        k8s.VersionApi(api_client).get_code()


def test_a_host_without_the_context_says_to_create_the_cluster(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    server, api = host
    config = api.kubeconfig(f"https://localhost:{api.port}")
    config["contexts"][0]["name"] = config["current-context"] = "someone-else"
    write_remote_kubeconfig(server, config)

    with pytest.raises(Exit, match=rf"no kubeconfig context {CONTEXT} on host .*cluster\.create"):
        _tunnel.remote_kubeconfig(connection, _target.resolve(connection))


def test_wildcard_api_addresses_are_reached_on_the_hosts_loopback(
    host: tuple[SshServer, ApiServer], connection: HostConnection
):
    """k3d writes https://0.0.0.0:<port>; the tunnel dials the host's 127.0.0.1 and keeps the
    original name for verification (here: a cert without 0.0.0.0, so the call must fail TLS
    rather than connect somewhere else)."""
    from kubernetes import client as k8s

    server, api = host
    write_remote_kubeconfig(server, api.kubeconfig(f"https://0.0.0.0:{api.port}"))
    requests = len(api.requests)

    with (
        pytest.raises(Exit, match="not valid for '0.0.0.0'"),
        _kube.api_client(connection) as client,
    ):
        assert client.configuration.tls_server_name == "0.0.0.0"
        client.configuration.retries = 0
        k8s.VersionApi(client).get_code()
    assert len(api.requests) == requests  # reached the TLS handshake, refused there


def test_make_context_is_the_local_counterpart(monkeypatch: pytest.MonkeyPatch):
    """Locally, `_kube.api_client` never touches the tunnel module's SSH path."""
    assert not _command.is_remote(make_context())
