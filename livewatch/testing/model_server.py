"""multi-model-server running SageMaker's MXNet handler on a packaged ``model.tar.gz``, locally.

`ModelServer` does what the serving container does at start-up (sagemaker_inference's
``start_model_server``), with every path under a temporary folder instead of ``/opt/ml`` and
``/etc``, and without ``pip install -r code/requirements.txt`` (the test environment has PyAV):
the archive is unpacked into ``<root>/ml/model``, ``SAGEMAKER_PROGRAM=inference.py``, the code
folder on ``PYTHONPATH``, and ``multi-model-server --foreground`` (Java) with the handler service
``sagemaker_mxnet_serving_container.handler_service``, which calls the model's ``model_fn`` and
``transform_fn``. Its Python worker reads S3 through ``AWS_ENDPOINT_URL`` (a moto server).
`livewatch.testing.serving` puts it behind the SageMaker runtime's InvokeEndpoint route.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from .aws import fake_aws_env
from .processes import stop_process_group

HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"


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
