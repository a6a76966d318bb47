"""The optional ONNX Runtime backend: the same model exported from MXNet, the same outputs."""
from pathlib import Path

import numpy as np
import pytest

from livewatch.contract import Segment
from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.mxnet import MXNetModel
from livewatch.model.i3d_classifier import I3DClassifier
from livewatch.testing.models import reference_forward, with_input_shape

# The onnx extra is part of the test set-up (make setup): missing, this module fails, never skips.
from livewatch.model.backends.onnxruntime import OnnxModel, export_onnx  # noqa: E402

TOLERANCE = 1e-5  # on softmax probabilities; measured differences are ~1e-8


@pytest.fixture(autouse=True)
def _private_model_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "model-cache"))


def test_onnx_export_agrees_with_mxnet(tiny_i3d_dir, tmp_path):
    artifact = load_artifact(tiny_i3d_dir)
    path = export_onnx(artifact, tmp_path / "model.onnx")
    onnx_model = OnnxModel.load(artifact, onnx_path=path)
    mxnet_model = MXNetModel.load(artifact, device="cpu")
    meta = artifact.meta
    batch = np.random.default_rng(1).standard_normal(
        (2, 3, meta.frames, meta.crop, meta.crop)).astype(np.float32)  # a batch of 2: N is free

    got = onnx_model.predict(batch)
    assert got.shape == (2, len(artifact.classes))
    np.testing.assert_allclose(got, mxnet_model.predict(batch), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got, reference_forward(tiny_i3d_dir, batch), rtol=0, atol=TOLERANCE)
    assert export_onnx(artifact, path) == path  # reused: not exported again
    assert onnx_model.top_k(got[0], 3) == mxnet_model.top_k(got[0], 3)


async def test_the_classifier_runs_on_onnxruntime_when_asked(tiny_i3d_dir, tmp_path, video_factory):
    model_dir = with_input_shape(tiny_i3d_dir, tmp_path / "model", frames=8, crop=112,
                                 resize=(171, 128), name="tiny-i3d")
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    options = I3DClassifier.Options(model=str(model_dir), backend="onnxruntime", top_k=3)
    segment = Segment(uri=str(video), stream="cam1", open=lambda: open(video, "rb"))
    results = {}
    for backend in ("onnxruntime", "mxnet"):
        classifier = I3DClassifier(options.model_copy(update={"backend": backend}))
        await classifier.start()
        try:
            results[backend] = await classifier.classify(segment)
        finally:
            await classifier.close()
    assert (Path(model_dir) / "model.onnx").is_file()  # exported beside the model, once
    onnx_det, mxnet_det = results["onnxruntime"], results["mxnet"]
    assert onnx_det.ok and onnx_det.frames == mxnet_det.frames
    assert [t.label for t in onnx_det.top_k] == [t.label for t in mxnet_det.top_k]
    assert onnx_det.probability == pytest.approx(mxnet_det.probability, abs=TOLERANCE)


def test_backend_option_is_validated():
    assert I3DClassifier.Options().backend == "mxnet"
    with pytest.raises(ValueError, match=r"unknown backend type 'tensorrt'; installed backends: "
                       r"auto, mxnet, onnxruntime, openvino"):
        I3DClassifier.Options(backend="tensorrt")


def test_backend_options_are_validated_by_the_backend():
    options = I3DClassifier.Options(backend="onnxruntime", backend_options={"spinning": True})
    assert options.backend_options == {"spinning": True}
    with pytest.raises(ValueError, match=r"backend_options for backend 'mxnet': spinning: Extra"):
        I3DClassifier.Options(backend="mxnet", backend_options={"spinning": True})
    with pytest.raises(ValueError, match=r"set threads on the classifier itself"):
        I3DClassifier.Options(backend="onnxruntime", backend_options={"threads": 2})
