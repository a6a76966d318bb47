"""What the HTTP fronts share (`front.AwsFront`, `cloudformation.CloudFormationFront`,
`serving.EndpointFront`): an HTTP server in a thread on a free loopback port, started and stopped
as a context manager, and a request handler that can pass a request on to the server behind the
front and send its answer back. Each front keeps only what it stages.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from .aws import free_port

#: Request and answer headers that belong to one connection, not to the request.
HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "expect"}


class FrontHandler(BaseHTTPRequestHandler):
    """Keep-alive and quiet; `forward` and `send_back` pass a request through unchanged."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def forward(self, url: str, body: bytes | None, timeout: float,
                method: str = "POST") -> tuple[int, bytes, Mapping]:
        """Send `body` to `url` with this request's method and headers: (status, answer, its
        headers), whatever the status."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def send_back(self, status: int, answer: bytes, headers: Mapping,
                  drop: tuple[str, ...] = ("date", "server")) -> None:
        """Answer with `status`, `answer` and `headers`, less the hop-by-hop ones and `drop`
        (this server sends its own Date and Server)."""
        self.send_response(status)
        for k, v in dict(headers).items():
            if k.lower() not in HOP_BY_HOP and k.lower() not in drop:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class HttpFront:
    """A `ThreadingHTTPServer` on 127.0.0.1 with the handler class that `_handler()` returns."""

    thread_name = "http-front"

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.server.serve_forever, name=self.thread_name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError
