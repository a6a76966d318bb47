"""SageMaker's MXNet serving stack, locally, for tests: multi-model-server running the
sagemaker-mxnet-inference handler on a packaged ``model.tar.gz``, behind a thin front that speaks
the SageMaker runtime's ``InvokeEndpoint`` route.

`ModelServer` (`livewatch.testing.model_server`) runs multi-model-server with the
sagemaker-mxnet-inference handler on the archive, as the serving container does at start-up.

`EndpointFront` is an HTTP server in a thread that answers as the SageMaker runtime and control
plane do, for the endpoints it knows:

- ``POST /endpoints/{name}/invocations`` → forwarded to the model server's ``/invocations``; a
  container error comes back as ``ModelError`` (424, with ``OriginalStatusCode`` and
  ``OriginalMessage``), an unknown endpoint as ``ValidationError`` (400) and, while
  ``throttle(n)`` / ``unavailable(n)`` have requests left, ``ThrottlingException`` (429) /
  ``ServiceUnavailable`` (503); while ``slow(n, seconds)`` has requests left, each is held
  `seconds` before it is forwarded (a slow or hung container, for invocation timeouts);
- ``POST /`` with ``X-Amz-Target: SageMaker.DescribeEndpoint`` → ``InService``, or the
  ``ValidationException`` of a missing endpoint.

Fixtures (session-scoped; where the stack cannot run, no Java say, a failure naming what to
install in CI and under ``make test``, a skip elsewhere: `livewatch.testing.strict`):

``served_model_tar``
    `tiny_i3d_dir` packaged as ``livewatch model package`` does (model files + ``model/code``).
``sagemaker_endpoint``
    An `EndpointFront` serving `ENDPOINT_NAME` from a `ModelServer` on ``served_model_tar`` that
    reads S3 from the session's `moto_server`; ``front.model_server`` is the `ModelServer`.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .http_front import FrontHandler, HttpFront
from .model_server import ModelServer, serving_stack_missing
from .strict import require

ENDPOINT_NAME = "livewatch-test"
ACCOUNT = "123456789012"


class EndpointFront(HttpFront):
    """The SageMaker runtime's InvokeEndpoint (and DescribeEndpoint) for `endpoints`, each
    forwarding to a model server's ``/invocations`` (see the module doc)."""

    thread_name = "endpoint-front"

    def __init__(self, endpoints: dict[str, str], *, timeout: float = 70.0):
        self.endpoints = dict(endpoints)  # name -> model server URL
        self.timeout = timeout
        self.requests: list[str] = []  # endpoint names invoked, throttled ones included
        self._failures: list[tuple[int, str, str]] = []  # the next answers, before forwarding
        self._delays: list[float] = []  # seconds to hold each of the next invocations
        self._released = threading.Event()  # set by stop(): held requests give up at once
        self._lock = threading.Lock()
        self.model_server: ModelServer | None = None  # set by the fixture, for its logs
        super().__init__()

    def throttle(self, count: int) -> None:
        """Answer the next `count` invocations with 429 ThrottlingException (0: stop failing)."""
        self.fail(count, 429, "ThrottlingException", "Rate exceeded")

    def unavailable(self, count: int) -> None:
        """Answer the next `count` invocations with 503 ServiceUnavailable."""
        self.fail(count, 503, "ServiceUnavailable", "The service is unavailable. Please try again.")

    def fail(self, count: int, status: int, code: str, message: str) -> None:
        with self._lock:
            self._failures = [(status, code, message)] * count

    def slow(self, count: int, seconds: float) -> None:
        """Hold each of the next `count` invocations `seconds` before forwarding it (0: stop)."""
        with self._lock:
            self._delays = [seconds] * count

    def _next_delay(self) -> float:
        with self._lock:
            return self._delays.pop(0) if self._delays else 0.0

    def _next_failure(self) -> tuple[int, str, str] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def stop(self) -> None:
        self._released.set()
        super().stop()

    def _handler(self):
        front = self

        class Handler(FrontHandler):
            def _reply(self, status: int, body: bytes, content_type: str = "application/json",
                       headers: dict[str, str] | None = None) -> None:
                try:
                    self._send(status, body, content_type, headers)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    self.close_connection = True

            def _send(self, status, body, content_type, headers) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", f"front-{time.monotonic_ns()}")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, **extra) -> None:
                body = json.dumps({"__type": code, "message": message, **extra}).encode()
                self._reply(status, body, "application/x-amz-json-1.1" if not extra else
                            "application/json", {"x-amzn-ErrorType": code})

            def do_POST(self):
                body = self.read_body()
                target = self.headers.get("X-Amz-Target", "")
                if self.path == "/" and target.startswith("SageMaker."):
                    return self._control_plane(target.split(".", 1)[1], body)
                match = re.fullmatch(r"/endpoints/([^/]+)/invocations", self.path)
                if not match:
                    return self._error(404, "UnknownOperationException", f"no route {self.path}")
                name = urllib.request.unquote(match.group(1))
                front.requests.append(name)
                if name not in front.endpoints:
                    return self._error(400, "ValidationError",
                                       f"Endpoint {name} of account {ACCOUNT} not found.")
                if failure := front._next_failure():
                    return self._error(*failure)
                if (delay := front._next_delay()) and front._released.wait(delay):
                    return None  # the front is stopping
                request = urllib.request.Request(
                    front.endpoints[name] + "/invocations", data=body, method="POST",
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json"),
                             "Accept": self.headers.get("Accept", "application/json")})
                try:
                    with urllib.request.urlopen(request, timeout=front.timeout) as response:
                        payload = response.read()
                        return self._reply(200, payload, response.headers.get("Content-Type", "application/json"),
                                           {"x-Amzn-Invoked-Production-Variant": "AllTraffic"})
                except urllib.error.HTTPError as exc:  # the container answered with an error
                    original = exc.read().decode("utf-8", "replace")
                    return self._error(
                        424, "ModelError",
                        f"Received server error ({exc.code}) from primary with message \"{original}\".",
                        OriginalStatusCode=exc.code, OriginalMessage=original,
                        LogStreamArn=f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}")
                except OSError as exc:  # the container is down
                    return self._error(500, "InternalFailure", f"the model container failed: {exc}")

            def _control_plane(self, action: str, body: bytes) -> None:
                if action != "DescribeEndpoint":
                    return self._error(400, "UnknownOperationException", f"{action} is not emulated")
                name = json.loads(body or b"{}").get("EndpointName", "")
                arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name.lower()}"
                if name not in front.endpoints:
                    return self._error(400, "ValidationException", f'Could not find endpoint "{arn}".')
                self._reply(200, json.dumps({
                    "EndpointName": name, "EndpointArn": arn, "EndpointConfigName": name,
                    "EndpointStatus": "InService", "CreationTime": 0, "LastModifiedTime": 0,
                }).encode(), "application/x-amz-json-1.1")

        return Handler


@pytest.fixture(scope="session")
def served_model_tar(tiny_i3d_dir, tmp_path_factory) -> Path:
    reason = serving_stack_missing()
    require(reason and f"the SageMaker serving stack cannot run here: {reason}",
            "Java (apt-get install default-jre-headless) and the `test` extra; `make setup` does both")
    from livewatch.training.package import package

    return package(tiny_i3d_dir, tmp_path_factory.mktemp("package") / "model.tar.gz")


@pytest.fixture(scope="session")
def sagemaker_endpoint(served_model_tar, moto_server, tmp_path_factory):
    server = ModelServer(served_model_tar, tmp_path_factory.mktemp("serving"),
                         aws_endpoint_url=moto_server.endpoint_url)
    with server, EndpointFront({ENDPOINT_NAME: server.url}) as front:
        front.model_server = server
        yield front
