"""The torch backend (the GPU path) on the CPU: the same ONNX export as ONNX Runtime, the same outputs.

Run by `test_torch_backend.py` with the Python of ``.venv/tools/torch`` (``.venv`` plus torch: GluonCV
0.10 refuses to import beside torch 2, so torch stays out of ``.venv``); not collected on its own
(its name does not start with ``test_``). The tiny I3D and its ONNX export come from the outer run,
in ``$LIVEWATCH_TORCH_CHECK_MODEL``. No test needs a GPU: CUDA's absence is what they run with.
"""
import logging
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from livewatch.contract import Segment
from livewatch.errors import ModelError
from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.onnxruntime import ONNX_FILE, OnnxModel
from livewatch.model.i3d_classifier import I3DClassifier

try:
    import torch
except ImportError as exc:  # a failure, not a skip
    raise ImportError("run with .venv/tools/torch/bin/python (make setup makes it)") from exc

from livewatch.model.backends.torch_cuda import TorchModel  # noqa: E402
from livewatch.model.onnx_torch import OnnxModule  # noqa: E402

TOLERANCE = 1e-5  # on softmax probabilities, against ONNX Runtime; measured ~4e-7


@pytest.fixture(autouse=True)
def _private_model_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The tiny I3D (8 frames at 112x112) with its ONNX export beside it (made by the outer run)."""
    path = Path(os.environ["LIVEWATCH_TORCH_CHECK_MODEL"])
    assert (path / ONNX_FILE).is_file(), f"no ONNX export in {path}"
    return path


@pytest.fixture(scope="module")
def tiny_onnx(model_dir):
    return load_artifact(model_dir), model_dir / ONNX_FILE


def test_the_torch_module_agrees_with_onnxruntime(tiny_onnx):
    artifact, path = tiny_onnx
    reference = OnnxModel.load(artifact, onnx_path=path)
    model = TorchModel.load(artifact, device="cpu", onnx_path=path)
    meta = artifact.meta
    batch = np.random.default_rng(2).standard_normal(
        (3, 3, meta.frames, meta.crop, meta.crop)).astype(np.float32)  # N is free

    got = model.predict(batch)
    assert got.shape == (3, len(artifact.classes)) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference.predict(batch), rtol=0, atol=TOLERANCE)
    assert model.top_k(got[1], 3) == reference.top_k(got[1], 3)
    # Every BatchNorm of I3D-ResNet50 follows a convolution and is folded into it.
    ops = [op for op, *_ in model.module.nodes]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 53
    assert model.device.type == "cpu" and model.dtype == torch.float32


def test_without_cuda_auto_falls_back_to_the_cpu_and_gpu_is_refused(tiny_onnx, monkeypatch, caplog):
    artifact, path = tiny_onnx
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also where CI has a GPU
    with caplog.at_level(logging.WARNING, logger="livewatch.model.backends.torch_cuda"):
        model = TorchModel.load(artifact, device="auto", precision="fp16", onnx_path=path)
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert "no CUDA device" in caplog.text and "running on the CPU in float32" in caplog.text
    assert "precision 'fp16' needs a CUDA device" in caplog.text
    with pytest.raises(ModelError, match=r"device 'gpu' was requested but torch sees no CUDA "
                       r"device \(torch .* (is a CPU-only build|no GPU is visible)\)"):
        TorchModel.load(artifact, device="gpu", onnx_path=path)


async def test_the_classifier_runs_on_torch_when_asked(model_dir, tmp_path, video_factory):
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    options = I3DClassifier.Options(model=str(model_dir), backend="torch", device="cpu", top_k=3,
                                    backend_options={"precision": "fp32"})
    segment = Segment(uri=str(video), stream="cam1", open=lambda: open(video, "rb"))
    results = {}
    for backend in ("torch", "onnxruntime"):
        classifier = I3DClassifier(options.model_copy(update={
            "backend": backend, "backend_options": options.backend_options if backend == "torch" else {}}))
        await classifier.start()
        try:
            results[backend] = await classifier.classify(segment)
        finally:
            await classifier.close()
    assert "mxnet" not in sys.modules  # the export beside the model was read, not made again
    got, reference = results["torch"], results["onnxruntime"]
    assert got.ok and got.frames == reference.frames
    assert [t.label for t in got.top_k] == [t.label for t in reference.top_k]
    assert got.probability == pytest.approx(reference.probability, abs=TOLERANCE)


def test_backend_options_are_validated_by_the_torch_backend():
    options = I3DClassifier.Options(backend="torch", backend_options={"precision": "bf16"})
    assert options.backend_options == {"precision": "bf16"}
    with pytest.raises(ValueError, match=r"backend_options for backend 'torch': precision: Input "
                       r"should be 'auto', 'fp16', 'bf16' or 'fp32'"):
        I3DClassifier.Options(backend="torch", backend_options={"precision": "int8"})


def _graph(nodes, initializers, out_channels=4):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 3, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 3, 3, 3])
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in initializers.items()]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 13)])


def _conv_bn(rng, name, source, out, c_in=2, c_out=4):
    nodes = [
        helper.make_node("Conv", [source, f"{name}_w"], [f"{name}_c"], kernel_shape=[1, 3, 3],
                         pads=[0, 1, 1, 0, 1, 1]),
        helper.make_node("BatchNormalization", [f"{name}_c", f"{name}_g", f"{name}_b",
                                                f"{name}_m", f"{name}_v"], [out], epsilon=1e-3),
    ]
    inits = {f"{name}_w": rng.standard_normal((c_out, c_in, 1, 3, 3)),
             f"{name}_g": rng.uniform(0.5, 2, c_out), f"{name}_b": rng.standard_normal(c_out),
             f"{name}_m": rng.standard_normal(c_out), f"{name}_v": rng.uniform(0.5, 2, c_out)}
    return nodes, inits


def test_batchnorm_is_folded_only_where_it_alone_reads_a_convolution():
    rng = np.random.default_rng(3)
    a_nodes, a_inits = _conv_bn(rng, "a", "x", "a_out")
    b_nodes, b_inits = _conv_bn(rng, "b", "x", "b_out")
    nodes = [*a_nodes, *b_nodes,
             helper.make_node("Relu", ["b_c"], ["b_relu"]),  # a second reader of conv b's output
             helper.make_node("Add", ["a_out", "b_out"], ["s"]),
             helper.make_node("Add", ["s", "b_relu"], ["t"]),
             helper.make_node("Add", ["t", "t"], ["u"]),  # one tensor read twice by its last reader
             helper.make_node("MaxPool", ["u"], ["y"], kernel_shape=[1, 3, 3], pads=[0, 1, 1, 0, 1, 1],
                              strides=[1, 2, 2])]
    model = _graph(nodes, {**a_inits, **b_inits})
    onnx.checker.check_model(model)
    x = torch.from_numpy(rng.standard_normal((2, 2, 3, 5, 5)).astype(np.float32))
    plain, folded = OnnxModule(model, fold=False).eval(), OnnxModule(model).eval()
    with torch.inference_mode():
        expected, got = plain(x), folded(x)
    assert [op for op, *_ in folded.nodes].count("BatchNormalization") == 1  # b's is kept
    assert got.shape == (2, 4, 3, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_an_operator_it_does_not_know_is_refused_by_name():
    model = _graph([helper.make_node("LpNormalization", ["x"], ["y"])], {})
    with pytest.raises(ValueError, match=r"ONNX operator\(s\) LpNormalization are not supported "
                       r"by the torch backend"):
        OnnxModule(model)


def test_the_gpu_checks_network_is_i3d_resnet50_with_calibrated_made_up_weights(model_dir):
    from benchmarks import gpu_weights

    path = Path(os.environ["LIVEWATCH_TORCH_CHECK_SKELETON"])  # made by the outer run (MXNet)
    skeleton = onnx.load(str(path))
    export = onnx.load(str(model_dir / ONNX_FILE))
    assert [n.op_type for n in skeleton.graph.node] == [n.op_type for n in export.graph.node]
    assert path.stat().st_size < 100_000  # shapes only, no weights
    regenerated = gpu_weights.regenerate(onnx.load(str(path)), seed=0)
    again = gpu_weights.regenerate(onnx.load(str(path)), seed=0)
    assert regenerated.SerializeToString() == again.SerializeToString()  # deterministic
    for dim in regenerated.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "S"  # any clip size: 8 frames at 64x64 here
    rng = np.random.default_rng(4)
    clips = rng.standard_normal((6, 3, 8, 64, 64)).astype(np.float32)
    clips += rng.standard_normal((6, 3, 1, 1, 1)).astype(np.float32)  # each clip its own colour
    gpu_weights.calibrate(regenerated, clips)

    module = OnnxModule(regenerated).eval()
    with torch.inference_mode():
        logits = module(torch.from_numpy(clips)).double().numpy()
    assert logits.shape == (6, 101)
    centred = logits - logits.mean(axis=0)  # the head is centred and scaled on these clips
    assert np.abs(logits.mean(axis=0)).max() < 1e-3
    assert centred.std() == pytest.approx(gpu_weights.HEAD_STD, rel=1e-3)
    assert len(set(logits.argmax(axis=1).tolist())) > 1  # not one class for every clip


def test_gluoncv_model_zoo_names_resolve_beside_torch():
    # GluonCV 0.10's __init__ raises "Legacy torch==2... detected" where torch 2 is importable
    assert "gluoncv" not in sys.modules
    from livewatch.model.artifacts_zoo import zoo_names

    assert "i3d_resnet50_v1_ucf101" in zoo_names()
    assert sys.modules["torch"] is torch  # back in place
