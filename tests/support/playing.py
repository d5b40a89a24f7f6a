"""Small real servers on loopback that play the stack's pods: the simulated cluster forwards a
pod's port P to 127.0.0.1:P, so whatever listens there answers for the pod."""

from __future__ import annotations

import http.server
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping
from concurrent import futures
from typing import Any, Literal


class Http:
    """An HTTP server answering fixed (status, body) per path; 404 elsewhere.

    With `host`, it answers as an ingress controller does: only requests whose `Host` header
    names that host reach the routes; any other gets the default backend's 404."""

    def __init__(
        self, port: int, routes: Mapping[str, tuple[int, str]], host: str | None = None
    ) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if host is not None and self.headers.get("Host") != host:
                    status, body = 404, "default backend - 404"
                else:
                    status, body = routes.get(self.path, (404, "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Grpc:
    """A gRPC server offering server reflection, listing `services` (nothing else served).

    `reflection` is the reflection API's version: v1alpha (what grpcio-reflection serves), v1
    (what newer servers serve, alone), or None for a server without reflection."""

    def __init__(
        self,
        port: int,
        services: list[str],
        reflection: Literal["v1alpha", "v1"] | None = "v1alpha",
    ) -> None:
        import grpc
        from grpc_reflection.v1alpha import reflection as grpc_reflection
        from grpc_reflection.v1alpha import reflection_pb2

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        if reflection == "v1alpha":
            names = [*services, grpc_reflection.SERVICE_NAME]
            grpc_reflection.enable_server_reflection(names, self.server)
        elif reflection == "v1":
            # v1 is v1alpha renamed, message for message: grpcio's servicer, under v1's name
            v1 = "grpc.reflection.v1.ServerReflection"
            servicer = grpc_reflection.ReflectionServicer([*services, v1])
            info = grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(v1, {"ServerReflectionInfo": info}),)
            )
        if not self.server.add_insecure_port(f"127.0.0.1:{port}"):
            raise OSError(f"cannot listen on 127.0.0.1:{port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


class Kafka:
    """Answers every request with a Metadata v0 response: one broker, `topics` topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        def answer(correlation: int) -> bytes:
            host = b"kafka-0"
            body = struct.pack(">ii", correlation, 1)
            body += struct.pack(">ih", 0, len(host)) + host + struct.pack(">i", 9092)
            body += struct.pack(">i", len(topics))
            for topic in topics:
                name = topic.encode()
                body += struct.pack(">hh", 0, len(name)) + name + struct.pack(">i", 0)
            return struct.pack(">i", len(body)) + body

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                size = struct.unpack(">i", conn.recv(4))[0]
                request = conn.recv(size)
                correlation = struct.unpack_from(">i", request, 4)[0]
                conn.sendall(answer(correlation))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
