"""Every failure has a fate, through the real daemon, folder source, i3d classifier and local
store: the model failing on valid input is transient (retried, the daemon not ready meanwhile, one
labelled detection in the end); a corrupt segment is one acknowledged error detection."""
import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from livewatch.daemon import Daemon
from livewatch.errors import ModelError
from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
from livewatch.model.loaded_model import LoadedModel
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalSink, LocalStore
from livewatch.sources.folder import FolderOptions, FolderSource
from livewatch.testing.media import HlsWriter


class FailingModel(LoadedModel):
    """The real loaded model, whose forward pass fails as the MXNet backend's does on a GPU out of
    memory, `failures` times; the next call waits for `go`, then runs the real forward pass."""

    def __init__(self, inner: LoadedModel, failures: int):
        self.inner, self.failures = inner, failures
        self.artifact, self.load_ms = inner.artifact, inner.load_ms
        self.calls = 0
        self.go = threading.Event()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls <= self.failures:
            raise ModelError(f"model {self.artifact.name} failed on a {batch.shape} batch: "
                             "[CUDA] out of memory")
        if not self.go.wait(60):
            raise AssertionError("the test never let the model run")
        return self.inner.predict(batch)


class FlakyI3D(I3DClassifier):
    """The real i3d classifier, its loaded model wrapped in `FailingModel`."""

    async def start(self):
        await super().start()
        self.model = FailingModel(self.model, failures=2)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def _until(check, what, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_model_that_fails_twice_is_retried_and_a_corrupt_segment_is_an_error(
        tmp_path, tiny_i3d_dir):
    cam = HlsWriter(tmp_path / "live" / "cam", name="cam", seconds=2.0, size=(320, 180))
    good = cam.write_segment()
    (tmp_path / "live" / "junk").mkdir()
    corrupt = tmp_path / "live" / "junk" / "corrupt.ts"
    corrupt.write_bytes(good.read_bytes()[:188] + bytes(range(256)) * 200)  # TS header, then junk

    db = tmp_path / "d.db"
    source = FolderSource(FolderOptions(path=tmp_path / "live", settle_seconds=0.2,
                                        poll_interval=0.2))
    classifier = FlakyI3D(I3DOptions(model=str(tiny_i3d_dir)))
    daemon = Daemon([source], classifier, [LocalSink(LocalSink.Options(path=db))],
                    DaemonSettings(health_listen="127.0.0.1:0", classifier_retry_max_seconds=0.05))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await _until(lambda: isinstance(classifier.model, FailingModel) and classifier.model.calls >= 3,
                     "the third forward pass")
        model, url = classifier.model, daemon.health.url
        status, body = await asyncio.to_thread(_get, url + "/readyz")
        assert status == 503, body
        assert json.loads(body)["status"] == "unavailable"
        assert "out of memory" in json.loads(body)["reason"]
        _, metrics = await asyncio.to_thread(_get, url + "/metrics")
        assert "livewatch_ready 0.0" in metrics
        assert "livewatch_classifier_retries_total 2.0" in metrics

        model.go.set()  # the model works again
        await _until(lambda: daemon.stats.acked == 2, "both segments acknowledged")
        status, body = await asyncio.to_thread(_get, url + "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready", body
        _, metrics = await asyncio.to_thread(_get, url + "/metrics")
        assert "livewatch_ready 1.0" in metrics
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 60)

    store = LocalStore(db)
    try:
        rows = {d.uri: d for d in store.query()}
    finally:
        store.close()
    assert sorted(rows) == sorted([str(good), str(corrupt)])  # one detection each
    assert rows[str(good)].error is None and rows[str(good)].label  # labelled, no error detection
    assert rows[str(corrupt)].error and rows[str(corrupt)].label is None
    assert model.calls == 3  # two failures, one success: no extra pass
    assert rows[str(corrupt)].error.startswith(("not a video", "could not decode")), rows[str(corrupt)].error
    stats = daemon.stats
    assert (stats.classified, stats.failed, stats.released, stats.acked) == (1, 1, 0, 2)
