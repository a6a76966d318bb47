"""backend = "auto": the fastest installed backend that agrees with fp32 MXNet, chosen at start-up."""
import logging
import time

import numpy as np
import pytest

from livewatch.contract import Segment
from livewatch.errors import ModelError
from livewatch.model.artifacts import load_artifact
from livewatch.model.backend import Backend, BackendOptions
from livewatch.model.backends.auto import self_check
from livewatch.model.i3d_classifier import I3DClassifier
from livewatch.model.loaded_model import LoadedModel
from livewatch.testing.models import with_peaky_head

PEAKY = np.array([0.7, 0.2, 0.05, 0.03, 0.02], np.float32)


def fake_backend(name: str, probs, seconds: float, fails: bool = False,
                 label_of=None) -> type[Backend]:
    """A backend whose model answers `probs` for every clip after `seconds`, or, given
    `label_of`, `probs` rolled to label_of(clip); one that `fails` cannot load."""
    class Model(LoadedModel):
        backend_name = name

        def __init__(self, artifact):
            self.artifact, self.load_ms = artifact, 0.0

        def _forward(self, batch):
            time.sleep(seconds)
            return np.stack([np.roll(probs, label_of(clip) if label_of else 0) for clip in batch])

    class Fake(Backend):
        @classmethod
        def load(cls, artifact, options):
            if fails:
                raise RuntimeError("no such unit on this CPU")
            return Model(artifact)

    Fake.name = name
    return Fake


def test_the_fastest_backend_that_agrees_wins(tiny_i3d_dir):
    artifact = load_artifact(tiny_i3d_dir)
    wrong = PEAKY[[1, 0, 2, 3, 4]]  # another top-1 label
    found = self_check(artifact, [
        ("mxnet", fake_backend("mxnet", PEAKY, 0.03), {}),
        ("fast-but-wrong", fake_backend("fast-but-wrong", wrong, 0.0), {}),
        ("close", fake_backend("close", PEAKY + [0.01, -0.01, 0, 0, 0], 0.005), {}),
        ("slow", fake_backend("slow", PEAKY, 0.06), {}),
        ("broken", fake_backend("broken", PEAKY, 0.0, fails=True), {}),
    ], BackendOptions(device="cpu"), passes=2)
    assert found["choice"] == "close"
    results = found["results"]
    assert results["fast-but-wrong"]["agrees"] is False
    assert results["close"]["max_abs_diff"] == pytest.approx(0.01, abs=1e-6)
    assert results["close"]["median_ms"] < results["mxnet"]["median_ms"] < results["slow"]["median_ms"]
    assert "no such unit" in results["broken"]["error"]


def looks_at_the_picture(name: str, seconds: float, flips_on_yellow: bool) -> type[Backend]:
    """A backend whose label follows the input: by the mean brightness, and, for one that
    `flips_on_yellow`, another label where more than 1 % of the pixels are the scene's bright
    yellow square (which no synthetic check clip has: noise, a ramp, flat grey)."""
    def label_of(clip):
        label = int(np.clip((clip.mean() + 2) * 1.25, 0, 4))
        r, g, b = clip[0], clip[1], clip[2]
        yellow = np.mean((r > 1.5) & (g > 1.5) & (b < -1.2)) > 0.01
        return (label + 1) % 5 if flips_on_yellow and yellow else label

    return fake_backend(name, PEAKY, seconds, label_of=label_of)


def test_on_the_users_own_segments_auto_drops_what_synthetic_clips_pass(tiny_i3d_dir, tmp_path):
    """The synthetic clips cannot show this backend's disagreement; windows of the user's
    segments (`check_segments`) do, and it is dropped there, with the share in the results."""
    from livewatch.testing.media import write_video

    artifact = load_artifact(tiny_i3d_dir)
    folder = tmp_path / "mine"
    (folder / "cam").mkdir(parents=True)
    for k in range(3):
        write_video(folder / "cam" / f"seg{k}.ts", seconds=2, fps=25, size=(320, 180),
                    first_frame=50 * k)
    (folder / "notes.txt").write_text("not video")
    cands = [("mxnet", looks_at_the_picture("mxnet", 0.02, False), {}),
             ("fast", looks_at_the_picture("fast", 0.0, True), {})]
    synthetic = self_check(artifact, cands, BackendOptions(device="cpu"), passes=1)
    assert synthetic["choice"] == "fast" and synthetic["results"]["fast"]["agrees"]
    own = self_check(artifact, cands, BackendOptions(device="cpu"), passes=1, segments=folder,
                     windows=12)
    fast = own["results"]["fast"]
    assert own["choice"] == "mxnet" and fast["agrees"] is False
    assert fast["windows"] == 12 and 0 < fast["top1_agreement"] < 0.98
    assert own["results"]["mxnet"]["top1_agreement"] == 1.0
    lenient = self_check(artifact, cands, BackendOptions(device="cpu"), passes=1, segments=folder,
                         windows=12, min_agreement=fast["top1_agreement"])
    assert lenient["choice"] == "fast"
    with pytest.raises(ModelError, match="has no video files"):
        self_check(artifact, cands, BackendOptions(device="cpu"), segments=tmp_path / "empty")


def test_mxnet_wins_when_nothing_else_agrees(tiny_i3d_dir):
    artifact = load_artifact(tiny_i3d_dir)
    found = self_check(artifact, [
        ("mxnet", fake_backend("mxnet", PEAKY, 0.02), {}),
        ("off", fake_backend("off", PEAKY + [-0.1, 0.1, 0, 0, 0], 0.0), {}),  # |dp| 0.1 > 0.05
    ], BackendOptions(device="cpu"), passes=1)
    assert found["choice"] == "mxnet" and found["results"]["off"]["agrees"] is False


@pytest.mark.slow  # every installed backend loads the model in a child process (~1 minute)
async def test_the_classifier_with_backend_auto_logs_its_choice(tiny_i3d_dir, tmp_path, caplog,
                                                                 video_factory):
    model = with_peaky_head(tiny_i3d_dir, tmp_path / "peaky")
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    segment = Segment(uri=str(video), stream="cam1", open=lambda: open(video, "rb"))
    detections = {}
    for backend in ("auto", "mxnet"):  # auto checks on windows of the segment's folder
        extra = {"check_segments": str(video.parent), "check_windows": 4} if backend == "auto" else {}
        classifier = I3DClassifier(I3DClassifier.Options(model=str(model), backend=backend,
                                                         backend_options=extra))
        with caplog.at_level(logging.INFO, logger="livewatch.model.backends.auto"):
            await classifier.start()
        try:
            detections[backend] = await classifier.classify(segment)
            if backend == "auto":
                chosen = classifier.runtime()["backend"]
        finally:
            await classifier.close()
    line = next(r.getMessage() for r in caplog.records if "backend auto chose" in r.getMessage())
    assert line.split("backend auto chose ")[1].startswith(chosen)
    assert f"on windows of {video.parent}" in line and "top-1 same on 100% of 4 windows" in line
    for name in ("mxnet", "onnxruntime", "openvino"):  # all installed here, all tried
        assert f"{name}" in line
    assert detections["auto"].label == detections["mxnet"].label
    assert detections["auto"].probability == pytest.approx(detections["mxnet"].probability, abs=0.05)


def test_auto_tries_int8_only_when_it_agreed_on_the_users_held_out_segments(tiny_i3d_dir, tmp_path):
    import json
    import os

    from livewatch.model.backends.openvino import INT8_META, OpenVinoBackend
    from livewatch.testing.models import with_input_shape

    model = with_input_shape(tiny_i3d_dir, tmp_path / "m", frames=8, crop=112, resize=(171, 128),
                             name="m")
    artifact = load_artifact(model)
    assert OpenVinoBackend.variants(artifact) == [{"precision": "auto"}]  # none quantized
    (model / "model-int8.xml").write_text("<net/>")
    for agreement, tried in ((0.9, False), (0.99, True)):
        (model / INT8_META).write_text(json.dumps({"top1_agreement": agreement}))
        assert ({"precision": "int8"} in OpenVinoBackend.variants(artifact)) is tried
    old = (model / "model-0000.params").stat().st_mtime - 10
    os.utime(model / "model-int8.xml", (old, old))  # older than the weights: stale
    assert OpenVinoBackend.variants(artifact) == [{"precision": "auto"}]
