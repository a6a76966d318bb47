"""The I3D-ResNet50 graph for `gpu_check` without its 110 MB of weights: a skeleton made here, the
weights made again, deterministically, on the GPU machine.

``python -m benchmarks.gpu_weights`` (here, where MXNet is; `build`, ~10 s) exports the
benchmark's random I3D-ResNet50 (101 classes, `benchmarks.model`) to ONNX as the ``torch`` and
``onnxruntime`` backends read it, and writes `SKELETON`: the same graph with every convolution,
BatchNorm and dense tensor emptied (its dims kept). ~40 KB, made the same byte for byte each time
and carried to the GPU machine with the check (not in git), so that machine needs neither MXNet
nor a copy of the weights.

There, `regenerate` fills them in: He-initialised convolutions (normal, std sqrt(2 / fan_in)),
BatchNorm as the identity, a dense head; then `calibrate` does what training leaves in a network:
each BatchNorm's running mean and variance become the statistics of its input over calibration
clips (in graph order, one forward pass), so activations stay near unit scale as in a trained
network, and the head is centred and scaled on the same clips so that its softmax is peaky
(logits with a standard deviation of `HEAD_STD` across classes) and its top-1 class differs from
clip to clip. The clips that `gpu_check` scores are not the calibration clips.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SKELETON = Path(__file__).with_name("i3d_resnet50.skeleton.onnx")
HEAD_STD = 3.0
_ROLES = {"Conv": ("x", "conv_w", "conv_b"), "Gemm": ("x", "dense_w", "dense_b"),
          "BatchNormalization": ("x", "bn_gamma", "bn_beta", "bn_mean", "bn_var")}


def roles(model) -> dict[str, str]:
    """Initializer name -> what it is (conv_w, bn_var, dense_b, ...), from the nodes reading it."""
    out = {}
    for node in model.graph.node:
        for name, role in zip(node.input, _ROLES.get(node.op_type, ())):
            if role != "x":
                out[name] = role
    return out


def make_skeleton(onnx_path: Path, dest: Path = SKELETON) -> Path:
    """Empty the weight tensors of the ONNX model at `onnx_path` (shapes kept) into `dest`."""
    import onnx

    model = onnx.load(str(onnx_path))
    weights = roles(model)
    for init in model.graph.initializer:
        if init.name in weights:
            init.ClearField("raw_data")
            init.ClearField("float_data")
    onnx.save(model, str(dest))
    return dest


def regenerate(model, seed: int = 0):
    """Fill `model`'s emptied weight tensors in place (see the module's docstring); returns it."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    weights = roles(model)
    for k, init in enumerate(model.graph.initializer):
        role = weights.get(init.name)
        if role is None:
            continue
        shape = tuple(init.dims)
        if role == "conv_w":
            array = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif role == "dense_w":
            array = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif role in ("bn_gamma", "bn_var"):
            array = np.ones(shape)
        else:  # biases, BatchNorm's beta and mean
            array = np.zeros(shape)
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float32), init.name))
    return model


def calibrate(model, clips: np.ndarray, device: str = "cpu"):
    """Set BatchNorm statistics and centre and scale the head on `clips` (N, 3, T, H, W), in float32
    on `device`; updates `model`'s initializers in place and returns it."""
    import torch
    from onnx import numpy_helper

    from livewatch.model.onnx_torch import OnnxModule

    inits = {init.name: init for init in model.graph.initializer}
    module = OnnxModule(model, fold=False).to(device).eval()
    features: list[torch.Tensor] = []

    def hook(node, args):
        op, inputs, _, attrs = node
        if op == "BatchNormalization":
            x = args[0].double()
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
            for name, value in ((inputs[3], mean), (inputs[4], var)):
                inits[name].CopyFrom(numpy_helper.from_array(value.float().cpu().numpy(), name))
            args[3], args[4] = mean.to(args[0].dtype), var.to(args[0].dtype)
        elif op == "Gemm":
            features.append(args[0].double())
        return None

    module.hook = hook
    with torch.inference_mode():
        module(torch.from_numpy(clips).to(device))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    w = numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float64)
    feats = features[0].cpu().numpy()
    centred = feats - feats.mean(axis=0)
    scale = HEAD_STD / max(float((centred @ w.T).std()), 1e-12)
    w *= scale
    bias = -(feats.mean(axis=0) @ w.T)  # logits of the average clip: all zero
    inits[gemm.input[1]].CopyFrom(numpy_helper.from_array(w.astype(np.float32), gemm.input[1]))
    inits[gemm.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), gemm.input[2]))
    return model


def build(cache: Path, dest: Path = SKELETON) -> Path:
    """The skeleton of the benchmark's random I3D-ResNet50 (exported into `cache` unless it is
    there already) at `dest`. Needs MXNet."""
    from benchmarks.model import ensure_model
    from livewatch.model.artifacts import load_artifact
    from livewatch.model.backends.onnxruntime import export_onnx

    return make_skeleton(export_onnx(load_artifact(ensure_model(cache))), dest)


if __name__ == "__main__":  # python -m benchmarks.gpu_weights [CACHE_DIR [DEST]]
    path = build(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/.cache/model"),
                 Path(sys.argv[2]) if len(sys.argv) > 2 else SKELETON)
    print(path, path.stat().st_size, "bytes")
