"""Bad input, the live lag policy, backpressure and health: the daemon keeps going, loses nothing.

Every failure has a fate: a segment's own defect is one acknowledged error detection; the model
failing on valid input is retried, the daemon not ready meanwhile. Faults are real: real broken
files decoded by the real decoder with a real (tiny, random) I3D model, files really deleted
while the daemon runs, a sink that really sleeps, and the health endpoint read over HTTP.
"""
import asyncio
import io
import json
import os
import subprocess
import threading
import time
import tracemalloc
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from livewatch.components import Classifier, Sink, Source
from livewatch.contract import Detection, Segment
from livewatch.daemon import Daemon
from livewatch.errors import ModelError
from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
from livewatch.model.loaded_model import LoadedModel
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalSink, LocalStore
from livewatch.sources.folder import FolderOptions, FolderSource
from livewatch.testing.daemon_process import LIVEWATCH
from livewatch.testing.media import HlsWriter, write_video


def stored(db: Path) -> dict[str, Detection]:
    store = LocalStore(db)
    try:
        return {d.uri: d for d in store.query(limit=10_000)}
    finally:
        store.close()


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mp2", rate=48000)
        samples = np.zeros((1, 1152 * 40), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_noise(path: Path, container: str, codec: str, frames: int, seed: int) -> Path:
    """`frames` of 320x180 noise at 25 fps, encoded with `codec` into `container`."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        rng = np.random.default_rng(seed)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (180, 320, 3), np.uint8),
                                               format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_mpeg2(path: Path, frames: int = 50) -> Path:
    """A valid MPEG-TS video, but MPEG-2 video: not a codec HLS carries."""
    return write_noise(path, "mpegts", "mpeg2video", frames, seed=0)


def write_matroska(path: Path, frames: int = 30) -> Path:
    """Valid H.264 video in a Matroska container (an encoder set to the wrong muxer)."""
    return write_noise(path, "matroska", "libx264", frames, seed=1)


class DeletingSink(Sink):
    """A sink that, on its first write, deletes a file the daemon has listed but not read yet."""

    name = "deleting"

    def __init__(self, victim: Path):
        super().__init__()
        self.victim = victim

    async def write(self, detection):
        if self.victim.exists():
            self.victim.unlink()


async def test_bad_input_each_gives_one_error_detection_and_the_daemon_goes_on(tmp_path, tiny_i3d_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    good = HlsWriter(folder, name="good", seconds=2.0, size=(320, 180))
    first, last = good.write_segment(), good.write_segment()
    whole = first.read_bytes()
    bad = {
        "zero-byte.ts": b"",
        "truncated.ts": whole[:1000],
        "random.ts": os.urandom(100_000),
        "oversized.ts": whole * (2_100_000 // len(whole) + 1),  # a real, valid, too-big segment
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    write_audio_only(folder / "audio-only.ts")
    write_video(folder / "one-frame.ts", seconds=0.04, size=(320, 180))
    write_video(folder / "two-frames.ts", seconds=0.08, size=(320, 180))
    write_mpeg2(folder / "mpeg2.ts")
    write_matroska(folder / "matroska.ts")
    gone = folder / "gone.ts"
    gone.write_bytes(whole)
    order = [first.name, "gone.ts", "zero-byte.ts", "truncated.ts", "random.ts", "oversized.ts",
             "audio-only.ts", "one-frame.ts", "two-frames.ts", "mpeg2.ts", "matroska.ts", last.name]

    db = tmp_path / "d.db"
    source = FolderSource(FolderOptions(path=folder, files=order, subfolders=False))
    daemon = Daemon(
        [source], I3DClassifier(I3DOptions(model=str(tiny_i3d_dir))),
        [DeletingSink(gone), LocalSink(LocalSink.Options(path=db))],
        DaemonSettings(queue_size=1, max_segment_mb=2.0, health_listen=""),
    )
    stats = await asyncio.wait_for(daemon.run(handle_signals=False), 120)

    rows = stored(db)
    assert sorted(rows) == sorted(str(folder / name) for name in order)  # one detection each
    errors = {Path(uri).name: d.error for uri, d in rows.items()}
    assert errors[first.name] is None and errors[last.name] is None  # it carried on to the end
    assert rows[str(folder / last.name)].label
    expected = {
        "gone.ts": "segment file is gone",
        "zero-byte.ts": "segment is empty (0 bytes)",
        # cut inside its first frame: what is left cannot be decoded
        "truncated.ts": ("segment too short: 1 decodable frame(s)",
                         "could not decode: no keyframe in the segment to start from"),
        "random.ts": "not a video: FFmpeg cannot read it",
        "oversized.ts": "segment too large: 2.",  # ... MB, the limit is 2 MB
        "audio-only.ts": "not a video: no video stream in segment (audio only?)",
        "one-frame.ts": "segment too short: 1 decodable frame(s)",
        "two-frames.ts": "segment too short: 2 decodable frame(s), at least 3 needed",
        "mpeg2.ts": "unsupported video codec 'mpeg2video': allowed are h264, hevc",
        "matroska.ts": "unsupported container 'matroska",
    }
    for name, message in expected.items():
        assert errors[name] and errors[name].startswith(message), (name, errors[name])
    assert "the limit is 2 MB (daemon.max_segment_mb); it was not read" in errors["oversized.ts"]
    assert (stats.classified, stats.failed, stats.released, stats.acked) == (2, 10, 0, 12)


async def test_a_segment_longer_than_the_limit_is_refused_before_decoding(tmp_path, tiny_i3d_dir):
    long = write_video(tmp_path / "long.mp4", seconds=8, fps=5, size=(160, 90))
    db = tmp_path / "d.db"
    daemon = Daemon(
        [FolderSource(FolderOptions(path=tmp_path, files=[long.name]))],
        I3DClassifier(I3DOptions(model=str(tiny_i3d_dir), max_segment_seconds=5)),
        [LocalSink(LocalSink.Options(path=db))], DaemonSettings(health_listen=""),
    )
    await asyncio.wait_for(daemon.run(handle_signals=False), 60)
    assert stored(db)[str(long)].error == "segment too long: 8 s, the limit is 5 s"


async def _run_one_stream(tmp_path, tiny_i3d_dir, policy):
    folder = tmp_path / policy
    writer = HlsWriter(folder, name="cam", seconds=2.0, size=(320, 180))
    segments = [writer.write_segment() for _ in range(5)]
    db = tmp_path / f"{policy}.db"
    daemon = Daemon(
        [FolderSource(FolderOptions(path=folder, files=[p.name for p in segments]))],
        I3DClassifier(I3DOptions(model=str(tiny_i3d_dir))),
        [LocalSink(LocalSink.Options(path=db))],
        DaemonSettings(queue_size=4, lag_policy=policy, health_listen=""),
    )
    stats = await asyncio.wait_for(daemon.run(handle_signals=False), 120)
    rows = stored(db)
    return stats, [rows[str(p)] for p in segments]


async def test_live_lag_policy_skips_to_the_newest_and_records_the_skips(tmp_path, tiny_i3d_dir):
    stats, rows = await _run_one_stream(tmp_path, tiny_i3d_dir, "live")
    # The first is classified while the other four queue up behind it: the three older of those
    # are skipped (each recorded), the newest is classified.
    assert [r.label is not None for r in rows] == [True, False, False, False, True]
    for skipped in rows[1:4]:
        assert skipped.error.startswith("skipped to stay live: ")
        assert 'of stream \'live\' were already waiting (daemon.lag_policy = "live")' in skipped.error
    assert (stats.classified, stats.skipped, stats.failed, stats.acked) == (2, 3, 0, 5)


async def test_lag_policy_all_classifies_every_segment(tmp_path, tiny_i3d_dir):
    stats, rows = await _run_one_stream(tmp_path, tiny_i3d_dir, "all")
    assert all(r.label and r.error is None for r in rows)
    assert (stats.classified, stats.skipped) == (5, 0)


class EndlessSource(Source):
    """A stream that never ends: a new 1 MB segment whenever the daemon will take one."""

    name = "endless"

    def __init__(self):
        super().__init__()
        self.emitted = 0

    async def run(self, emit):
        while True:
            payload = os.urandom(1_000_000)
            await emit(Segment(uri=f"mem://{self.emitted}", stream="s", sequence=self.emitted,
                               open=lambda p=payload: io.BytesIO(p), size=len(payload)))
            self.emitted += 1


class SizeClassifier(Classifier):
    name = "size"

    async def classify(self, segment):
        data = await asyncio.to_thread(lambda: segment.open().read())
        return Detection.for_segment(segment, label=f"{len(data)} bytes", probability=1.0)


class SlowSink(Sink):
    name = "slow"

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.written = seconds, 0

    async def write(self, detection):
        await asyncio.sleep(self.seconds)
        self.written += 1


async def test_a_slow_sink_holds_the_source_back_and_memory_stays_bounded():
    source, sink = EndlessSource(), SlowSink(0.05)
    settings = DaemonSettings(queue_size=3, workers=2, health_listen="")
    daemon = Daemon([source], SizeClassifier(), [sink], settings)
    tracemalloc.start()
    try:
        task = asyncio.create_task(daemon.run(handle_signals=False))
        depths, backlog = [], []
        for _ in range(40):  # 2 s: about 80 writes at 2 x 20 per second
            await asyncio.sleep(0.05)
            depths.append(daemon._queue.qsize())
            backlog.append(source.emitted - sink.written)
        _, peak = tracemalloc.get_traced_memory()
        daemon.stop()
        await asyncio.wait_for(task, 30)
    finally:
        tracemalloc.stop()
    assert sink.written >= 20  # it made progress
    assert max(depths) <= settings.queue_size
    # At most: queued + in flight + the one the source holds while it waits.
    assert max(backlog) <= settings.queue_size + settings.workers + 1
    assert peak < 30_000_000  # ~6 segments of 1 MB alive at once, not hundreds
    assert daemon.stats.acked == sink.written


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_health_endpoint_and_prometheus_metrics(tmp_path, tiny_i3d_dir):
    writer = HlsWriter(tmp_path / "live" / "cam", name="cam", seconds=2.0, size=(320, 180))
    writer.write_segment()
    (tmp_path / "live" / "junk").mkdir()
    (tmp_path / "live" / "junk" / "bad.ts").write_bytes(b"not video at all")
    # Watching the folder (not a one-shot list), so the daemon stays up until told to stop.
    source = FolderSource(FolderOptions(path=tmp_path / "live", settle_seconds=0.2,
                                        poll_interval=0.2))
    gate = asyncio.Event()

    class GatedSink(LocalSink):
        async def write(self, detection):
            await gate.wait()  # hold the daemon "ready" while the test reads the endpoint
            await super().write(detection)

    daemon = Daemon([source], I3DClassifier(I3DOptions(model=str(tiny_i3d_dir))),
                    [GatedSink(LocalSink.Options(path=tmp_path / "d.db"))],
                    DaemonSettings(health_listen="127.0.0.1:0"))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    for _ in range(600):
        if daemon.state == "ready" and daemon.stats.received == 2:
            break
        await asyncio.sleep(0.05)
    url = daemon.health.url
    status, body = await asyncio.to_thread(_get, url + "/livez")
    assert status == 200 and json.loads(body)["status"] == "alive"
    status, body = await asyncio.to_thread(_get, url + "/readyz")
    assert status == 200 and json.loads(body)["received"] == 2
    gate.set()
    for _ in range(600):
        if daemon.stats.acked == 2:
            break
        await asyncio.sleep(0.05)
    status, metrics = await asyncio.to_thread(_get, url + "/metrics")
    cam, junk = '{source="folder",stream="cam"}', '{source="folder",stream="junk"}'
    assert status == 200
    assert f"livewatch_segments_received_total{cam} 1.0" in metrics
    assert f"livewatch_segments_received_total{junk} 1.0" in metrics
    assert f"livewatch_segments_classified_total{cam} 1.0" in metrics
    assert f"livewatch_segments_failed_total{junk} 1.0" in metrics
    assert f"livewatch_segments_classified_total{junk}" not in metrics
    assert f"livewatch_segments_acknowledged_total{cam} 1.0" in metrics
    assert "livewatch_inference_seconds_count 1.0" in metrics
    assert 'livewatch_sink_write_seconds_count{sink="local"} 2.0' in metrics
    assert 'livewatch_lag_seconds{stream="cam"}' in metrics
    assert "livewatch_queue_depth 0.0" in metrics
    assert 'livewatch_model_runtime_info{backend="mxnet"} 1.0' in metrics  # what runs the model
    daemon.stop()
    status, body = await asyncio.to_thread(_get, url + "/readyz")
    assert status == 503 and json.loads(body)["status"] == "stopping"
    await asyncio.wait_for(task, 30)
    assert daemon.state == "stopped"
    with pytest.raises(OSError):  # the endpoint is gone with the daemon
        await asyncio.to_thread(urllib.request.urlopen, url + "/livez", timeout=2)


@pytest.mark.slow
def test_json_logs_name_the_segment_on_every_line_about_it(tmp_path, tiny_i3d_dir):
    writer = HlsWriter(tmp_path / "live" / "cam", name="cam", seconds=2.0, size=(320, 180))
    good = writer.write_segment()
    bad = tmp_path / "live" / "junk" / "bad.ts"  # no playlist: complete once it settles (2 s)
    bad.parent.mkdir()
    bad.write_bytes(b"garbage")
    time.sleep(2.5)
    result = subprocess.run(
        [LIVEWATCH, "run", "--once", "--folder", str(tmp_path / "live"), "--model", str(tiny_i3d_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "LIVEWATCH_DAEMON__LOG_FORMAT": "json",
             "LIVEWATCH_DAEMON__HEALTH_LISTEN": "", "LIVEWATCH_CONFIG": ""},
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about = {str(good): [], str(bad): []}
    for line in lines:
        for uri in about:
            if uri in line["message"]:
                about[uri].append(line)
    for uri, mentions in about.items():
        assert mentions, f"no log line about {uri}"
        assert all(line.get("segment") == uri for line in mentions), mentions
    assert any(line["level"] == "WARNING" and "not a video" in line["message"]
               for line in about[str(bad)])


# -- the model failing on valid input: transient, not an error detection --------------------------

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

    rows = stored(db)
    assert sorted(rows) == sorted([str(good), str(corrupt)])  # one detection each
    assert rows[str(good)].error is None and rows[str(good)].label  # labelled, no error detection
    assert rows[str(corrupt)].error and rows[str(corrupt)].label is None
    assert model.calls == 3  # two failures, one success: no extra pass
    assert rows[str(corrupt)].error.startswith(("not a video", "could not decode")), rows[str(corrupt)].error
    stats = daemon.stats
    assert (stats.classified, stats.failed, stats.released, stats.acked) == (1, 1, 0, 2)
