"""SageMaker's MXNet serving stack, locally, for tests: multi-model-server running the
sagemaker-mxnet-inference handler on a packaged ``model.tar.gz``, behind a thin front that speaks
the SageMaker runtime's ``InvokeEndpoint`` route.

`ModelServer` does what the serving container does at start-up (sagemaker_inference's
``start_model_server``), with every path under a temporary folder instead of ``/opt/ml`` and
``/etc``, and without ``pip install -r code/requirements.txt`` (the test environment has PyAV):
the archive is unpacked into ``<root>/ml/model``, ``SAGEMAKER_PROGRAM=inference.py``, the code
folder on ``PYTHONPATH``, and ``multi-model-server --foreground`` (Java) with the handler service
``sagemaker_mxnet_serving_container.handler_service``, which calls the model's ``model_fn`` and
``transform_fn``. Its Python worker reads S3 through ``AWS_ENDPOINT_URL`` (a moto server).

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
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .aws import fake_aws_env
from .http_front import FrontHandler, HttpFront
from .processes import stop_process_group
from .strict import require

ENDPOINT_NAME = "livewatch-test"
HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"
ACCOUNT = "123456789012"


def low_free_port(host: str = "127.0.0.1") -> int:
    """A free port below 32767: multi-model-server refuses higher ones ("Invalid port number")."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 32766)
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32767")


def serving_stack_missing() -> str | None:
    """Why the serving stack cannot run here (None if it can)."""
    import importlib.util

    for module in ("mms", "sagemaker_inference", "sagemaker_mxnet_serving_container"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (the `test` extra installs it)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "multi-model-server needs Java (java on PATH or JAVA_HOME)"
    if not (Path(sys.executable).parent / "multi-model-server").exists():
        return "multi-model-server's command is not next to this Python"
    return None


class ModelServer:
    """multi-model-server + the sagemaker-mxnet-inference handler on `model_tar` (see module doc)."""

    def __init__(self, model_tar: Path, root: Path, *, aws_endpoint_url: str | None = None,
                 workers: int = 1, response_timeout: int = 60):
        self.model_tar, self.root = Path(model_tar), Path(root)
        self.aws_endpoint_url = aws_endpoint_url
        self.workers, self.response_timeout = workers, response_timeout
        self.port, self.management_port = low_free_port(), low_free_port()
        self.model_dir = self.root / "ml" / "model"
        self.log_path = self.root / "model-server.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self) -> Path:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.model_tar) as tar:  # as SageMaker unpacks it into /opt/ml/model
            tar.extractall(self.model_dir, filter="data")
        import sagemaker_inference

        defaults = Path(sagemaker_inference.__file__).parent / "etc"
        config = self.root / "mms.properties"
        config.write_text((defaults / "default-mms.properties").read_text() + "".join(
            f"{k}={v}\n" for k, v in {
                "model_store": "/",  # as the container: --models model=/opt/ml/model is under "/"
                "default_service_handler": HANDLER_SERVICE,
                "default_workers_per_model": self.workers,
                "default_response_timeout": self.response_timeout,
                "inference_address": self.url,
                "management_address": f"http://127.0.0.1:{self.management_port}",
                "vmargs": "-Xmx512m -XX:-UseContainerSupport -XX:+UseSerialGC",
            }.items()))
        (self.root / "tmp").mkdir(exist_ok=True)
        return config

    def _env(self) -> dict[str, str]:
        env = fake_aws_env(self.aws_endpoint_url)
        env.update({
            "SAGEMAKER_BASE_DIR": str(self.root / "ml"),
            "SAGEMAKER_PROGRAM": "inference.py",
            "PYTHONPATH": str(self.model_dir / "code"),
            "TEMP": str(self.root / "tmp"), "TMPDIR": str(self.root / "tmp"),  # MMS's pid file
            "LOG_LOCATION": str(self.root / "logs"), "METRICS_LOCATION": str(self.root / "logs"),
            # What sagemaker_mxnet_serving_container.serving sets: one thread per worker.
            "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1",
            "MXNET_CPU_PRIORITY_NTHREADS": "1", "MXNET_KVSTORE_REDUCTION_NTHREADS": "1",
        })
        return env

    def start(self, timeout: float = 120.0) -> "ModelServer":
        config = self._prepare()
        import sagemaker_inference

        log4j = Path(sagemaker_inference.__file__).parent / "etc" / "log4j2.xml"
        command = [str(Path(sys.executable).parent / "multi-model-server"), "--start", "--foreground",
                   "--mms-config", str(config), "--log-config", str(log4j),
                   "--model-store", "/", "--models", f"model={self.model_dir}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.root, env=self._env(), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready():
            failed = "Failed to load model" in self.log_tail()
            if failed or self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"multi-model-server did not serve {self.model_tar} within {timeout:.0f}s "
                                   f"(its log: {self.root}):\n{tail}")
            time.sleep(0.5)
        return self

    def ready(self) -> bool:
        """The model is loaded and a worker is up (MMS's management API says so)."""
        try:
            url = f"http://127.0.0.1:{self.management_port}/models/model"
            with urllib.request.urlopen(url, timeout=2) as response:
                described = json.loads(response.read())
        except (OSError, ValueError):
            return False
        described = described[0] if isinstance(described, list) else described
        return any(w.get("status") == "READY" for w in described.get("workers", []))

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process_group(process, timeout)  # Java and its Python workers, as a group

    def log_tail(self, lines: int = 60) -> str:
        texts = []
        for path in [self.log_path, *sorted((self.root / "logs").glob("*.log"))]:
            try:
                texts.append(f"--- {path.name}\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(texts)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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
