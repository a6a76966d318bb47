"""The OpenVINO backend: the MXNet model's ONNX export on OpenVINO, in fp32, bf16 or int8."""
import sys
from pathlib import Path

import numpy as np
import pytest

from livewatch.contract import Segment
from livewatch.errors import ModelError
from livewatch.metrics import Metrics
from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.openvino import (
    OpenVinoModel,
    bf16_unit,
    choose_precision,
    int8_path,
)
from livewatch.model.backends.mxnet import MXNetModel
from livewatch.model.i3d_classifier import I3DClassifier
from livewatch.testing.models import reference_forward, with_peaky_head

FP32_TOLERANCE = 1e-5  # softmax probabilities; measured ~5e-8
BF16_TOLERANCE = 0.05  # bf16 keeps 8 bits of mantissa; measured ~1e-3 on the peaky tiny model


@pytest.fixture(scope="module")
def peaky_dir(tiny_i3d_dir, tmp_path_factory) -> Path:
    """The tiny model with a peaky head (a random head gives near-uniform probabilities)."""
    return with_peaky_head(tiny_i3d_dir, tmp_path_factory.mktemp("ov") / "tiny-peaky")


@pytest.fixture(scope="module")
def clips(peaky_dir) -> np.ndarray:
    """Eight varied clips: noise, gradients and flat frames, normalised as the model's input."""
    meta = load_artifact(peaky_dir).meta
    rng = np.random.default_rng(7)
    shape = (3, meta.frames, meta.crop, meta.crop)
    ramp = np.linspace(-2, 2, meta.crop, dtype=np.float32)
    out = [rng.standard_normal(shape).astype(np.float32) * s for s in (0.5, 1.0, 2.0)]
    out += [np.broadcast_to(ramp * s, shape).copy() for s in (1.0, -1.0)]
    out += [np.full(shape, v, np.float32) for v in (-1.5, 0.0, 1.5)]
    return np.stack(out)


def test_fp32_and_bf16_agree_with_mxnet(peaky_dir, clips):
    artifact = load_artifact(peaky_dir)
    expected = reference_forward(peaky_dir, clips)
    assert len(set(expected.argmax(1))) > 1  # the clips do not all get the same label
    mxnet = MXNetModel.load(artifact, device="cpu").predict(clips)
    fp32 = OpenVinoModel.load(artifact, precision="fp32")
    assert (peaky_dir / "model.onnx").is_file()  # the ONNX export, beside the model
    np.testing.assert_allclose(fp32.predict(clips), mxnet, rtol=0, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(fp32.predict(clips), expected, rtol=0, atol=FP32_TOLERANCE)
    assert fp32.runtime["precision"] == "fp32"
    if bf16_unit() is None:  # this CPU has no native bf16: asking for it is an error
        with pytest.raises(ModelError, match="native bf16"):
            OpenVinoModel.load(artifact, precision="bf16")
        return
    bf16 = OpenVinoModel.load(artifact, precision="bf16")
    got = bf16.predict(clips)
    delta = float(np.abs(got - mxnet).max())
    print(f"bf16 on {bf16.unit}: max |probability difference| {delta:.2e}")
    assert delta < BF16_TOLERANCE
    assert list(got.argmax(1)) == list(mxnet.argmax(1))
    assert bf16.runtime == {"backend": "openvino", "precision": "bf16", "unit": bf16_unit()}


@pytest.mark.parametrize("flags, requested, chosen, unit", [
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "auto", "bf16", "AMX"),
    ({"avx512f", "avx512_bf16", "avx512_vnni"}, "auto", "bf16", "AVX512-BF16"),
    ({"avx512f", "avx512_vnni"}, "auto", "fp32", "AVX512"),
    ({"avx2", "fma"}, "auto", "fp32", "AVX2"),
    ({"avx512f", "avx512_bf16"}, "fp32", "fp32", "AVX512"),
    ({"avx512f", "avx512_vnni"}, "int8", "int8", "AVX512-VNNI"),
    ({"avx512f", "amx_int8", "amx_tile"}, "int8", "int8", "AMX"),
])
def test_precision_follows_the_cpu(flags, requested, chosen, unit):
    assert choose_precision(requested, flags) == (chosen, unit)


def test_bf16_without_a_native_unit_and_unknown_precisions_are_refused():
    with pytest.raises(ModelError, match="native bf16.*AMX or AVX512-BF16"):
        choose_precision("bf16", {"avx512f", "avx512_vnni"})
    with pytest.raises(ModelError, match="fp16"):
        choose_precision("fp16", set())
    with pytest.raises(ValueError, match="backend_options for backend 'openvino': precision"):
        I3DClassifier.Options(backend="openvino", backend_options={"precision": "fp16"})
    assert I3DClassifier.Options(backend="openvino").backend == "openvino"  # registered, installed


def test_int8_without_a_quantized_model_says_how_to_make_one(peaky_dir):
    artifact = load_artifact(peaky_dir)
    assert not int8_path(artifact).exists()
    with pytest.raises(ModelError, match="livewatch model quantize"):
        OpenVinoModel.load(artifact, precision="int8")


def test_missing_openvino_is_a_clear_error(peaky_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(ModelError, match=r"livewatch\[openvino\]"):
        OpenVinoModel.load(load_artifact(peaky_dir), precision="fp32")


async def test_the_classifier_runs_on_openvino_and_metrics_name_the_unit(peaky_dir, video_factory):
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    segment = Segment(uri=str(video), stream="cam1", open=lambda: open(video, "rb"))
    results = {}
    for backend in ("openvino", "mxnet"):
        extra = {"precision": "fp32"} if backend == "openvino" else {}
        classifier = I3DClassifier(I3DClassifier.Options(model=str(peaky_dir), backend=backend,
                                                         backend_options=extra, top_k=3))
        await classifier.start()
        try:
            results[backend] = await classifier.classify(segment)
            runtime = classifier.runtime()
        finally:
            await classifier.close()
    assert runtime == {"backend": "mxnet"}  # the last one: mxnet
    ov, mx = results["openvino"], results["mxnet"]
    assert ov.ok and ov.frames == mx.frames
    assert [t.label for t in ov.top_k] == [t.label for t in mx.top_k]
    assert ov.probability == pytest.approx(mx.probability, abs=FP32_TOLERANCE)

    metrics = Metrics()
    metrics.runtime.info({"backend": "openvino", "precision": "bf16", "unit": "AVX512-BF16"})
    assert ('livewatch_model_runtime_info{backend="openvino",precision="bf16",unit="AVX512-BF16"} 1.0'
            in metrics.exposition().decode())
