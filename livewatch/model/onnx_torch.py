"""An ONNX graph run by PyTorch: the I3D export (`backends.onnxruntime.export_onnx`) as a `torch.nn.Module`.

Why not onnx2torch: it imports torchvision at import time (for two detection operators), and a
torchvision wheel only loads beside the exact torch build it was made for; the CPU-only torch that
CI installs has no matching torchvision on PyPI. The I3D export uses 18 operator types (3-D
convolutions, BatchNorm, ReLU, residual adds, pooling, a dense head, and the shape arithmetic
MXNet's exporter writes around its mean): each is one torch call here. Any other operator is
refused by name when the module is built, not halfway through a forward pass.

BatchNorm that follows a convolution is folded into it (`fold_batchnorm`), as every inference
runtime does: one kernel instead of two, and in float16 one rounding instead of two.

Tensors: float initializers become buffers, so ``module.to(device, torch.float16)`` and
``memory_format=torch.channels_last_3d`` apply to them. Integer tensors (shapes and the arithmetic
on them) stay on the CPU: the shape ops never wait on the GPU.
"""
from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

Node = tuple[str, tuple[str, ...], tuple[str, ...], dict]  # op, inputs, outputs, attributes


def _pads(x: torch.Tensor, pads: list[int] | None, value: float = 0.0) -> tuple[torch.Tensor, tuple]:
    """ONNX pads (all begins, then all ends): symmetric ones as the op's padding, others by F.pad."""
    dims = x.dim() - 2
    pads = list(pads or [0] * 2 * dims)
    begin, end = pads[:dims], pads[dims:]
    if begin == end:
        return x, tuple(begin)
    flat = [p for b, e in zip(reversed(begin), reversed(end)) for p in (b, e)]
    return F.pad(x, flat, value=value), (0,) * dims


def _conv(x, w, b=None, *, strides=None, pads=None, dilations=None, group=1, kernel_shape=None,
          auto_pad="NOTSET"):
    if auto_pad not in ("NOTSET", b"NOTSET"):
        raise ValueError(f"Conv auto_pad={auto_pad!r} is not supported")
    x, padding = _pads(x, pads)
    conv = (F.conv1d, F.conv2d, F.conv3d)[w.dim() - 3]
    dims = w.dim() - 2
    return conv(x, w, b, tuple(strides or [1] * dims), padding, tuple(dilations or [1] * dims), group)


def _max_pool(x, *, kernel_shape, strides=None, pads=None, ceil_mode=0, dilations=None,
              storage_order=0, auto_pad="NOTSET"):
    x, padding = _pads(x, pads, value=float("-inf"))
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(kernel_shape) - 1]
    return pool(x, tuple(kernel_shape), tuple(strides or [1] * len(kernel_shape)), padding,
                tuple(dilations or [1] * len(kernel_shape)), bool(ceil_mode))


def _batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1):
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)


def _reshape(x, shape, *, allowzero=0):
    dims = [x.shape[i] if s == 0 and not allowzero else s for i, s in enumerate(shape.tolist())]
    return x.reshape(dims)


def _unsqueeze(x, axes):
    rank = x.dim() + len(axes)
    for axis in sorted(int(a) % rank for a in axes.tolist()):
        x = x.unsqueeze(axis)
    return x


def _squeeze(x, axes=None):
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(int(a) % x.dim() for a in axes.tolist()))


def _scatter_nd(data, indices, updates, *, reduction="none"):
    out = data.clone()
    out[tuple(indices[..., i] for i in range(indices.shape[-1]))] = updates
    return out


def _gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = (a.t() if transA else a) @ (b.t() if transB else b)
    if alpha != 1.0:
        y = y * alpha
    return y if c is None else y + beta * c


def _flatten(x, *, axis=1):
    return x.reshape(prod(x.shape[:axis]), -1)


OPS: dict[str, Callable] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "Relu": lambda x: F.relu(x),
    "Add": lambda a, b: a + b,
    "MaxPool": _max_pool,
    "GlobalAveragePool": lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "ReduceMean": lambda x, *, axes=None, keepdims=1: x.mean(
        dim=tuple(axes) if axes is not None else tuple(range(x.dim())), keepdim=bool(keepdims)),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Identity": lambda x: x,
    "Dropout": lambda x, *rest, seed=None: x,  # inference: the identity
    "Shape": lambda x, *, start=0, end=None: torch.tensor(x.shape[start:end], dtype=torch.int64),
    "Equal": lambda a, b: a == b,
    "Where": lambda c, a, b: torch.where(c, a, b),
    "Tile": lambda x, repeats: x.repeat(repeats.tolist()),
    "ScatterND": _scatter_nd,
}


class OnnxModule(torch.nn.Module):
    """Runs the nodes of an ONNX graph (one input, one output) in their topological order."""

    def __init__(self, model: onnx.ModelProto, *, fold: bool = True):
        super().__init__()
        graph = model.graph
        consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        nodes: list[Node] = [
            (n.op_type, tuple(n.input), tuple(n.output),
             {a.name: _attribute(a) for a in n.attribute}) for n in graph.node
        ]
        unknown = sorted({op for op, *_ in nodes} - OPS.keys())
        if unknown:
            raise ValueError(f"ONNX operator(s) {', '.join(unknown)} are not supported by the "
                             f"torch backend (it knows {', '.join(sorted(OPS))})")
        if fold:
            nodes = fold_batchnorm(nodes, consts)
        used = {name for _, inputs, _, _ in nodes for name in inputs}
        self._buffers_of: dict[str, str] = {}  # ONNX name -> buffer attribute
        self._cpu: dict[str, torch.Tensor] = {}  # integer/bool constants, kept on the CPU
        for name, array in consts.items():
            if name not in used:
                continue
            tensor = torch.from_numpy(np.array(array))
            if tensor.is_floating_point():
                attr = f"c{len(self._buffers_of)}"
                self.register_buffer(attr, tensor)
                self._buffers_of[name] = attr
            else:
                self._cpu[name] = tensor
        self.nodes = nodes
        inputs = [i.name for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ValueError(f"expected one input and one output, got {inputs} and "
                             f"{[o.name for o in graph.output]}")
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        # name -> the last node that reads it: the forward pass drops each tensor after that node
        self._last_use = {name: k for k, (_, ins, _, _) in enumerate(nodes) for name in ins}
        self._last_use.pop(self.output_name, None)
        #: called as hook(node, args) before each node; a result other than None replaces the op's
        self.hook: Callable[[Node, list], torch.Tensor | None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = dict(self._cpu)
        env.update((name, getattr(self, attr)) for name, attr in self._buffers_of.items())
        env[self.input_name] = x
        for k, node in enumerate(self.nodes):
            op, inputs, outputs, attrs = node
            args = [env[i] if i else None for i in inputs]
            result = self.hook(node, args) if self.hook is not None else None
            if result is None:
                result = OPS[op](*args, **attrs)
            env[outputs[0]] = result
            for name in inputs:  # what no later node reads is freed now: memory for the next layers
                if self._last_use.get(name) == k:
                    env.pop(name, None)  # pop: a node may read one tensor twice
        return env[self.output_name]


def fold_batchnorm(nodes: list[Node], consts: dict[str, np.ndarray]) -> list[Node]:
    """Fold each BatchNormalization that alone reads a convolution's output into that convolution's
    weights (float64 arithmetic); `consts` gains the new weights. The other nodes are unchanged."""
    readers: dict[str, int] = {}
    for _, inputs, _, _ in nodes:
        for name in inputs:
            readers[name] = readers.get(name, 0) + 1
    producer = {outputs[0]: k for k, (_, _, outputs, _) in enumerate(nodes)}
    out, folded = list(nodes), set()
    for k, (op, inputs, outputs, attrs) in enumerate(nodes):
        if op != "BatchNormalization" or len(outputs) != 1:
            continue
        j = producer.get(inputs[0])
        if j is None or nodes[j][0] != "Conv" or readers.get(inputs[0]) != 1:
            continue
        _, conv_in, _, conv_attrs = nodes[j]
        if not all(name in consts for name in (*conv_in[1:], *inputs[1:5])):
            continue
        gamma, beta, mean, var = (consts[n].astype(np.float64) for n in inputs[1:5])
        weight = consts[conv_in[1]].astype(np.float64)
        bias = consts[conv_in[2]].astype(np.float64) if len(conv_in) > 2 and conv_in[2] else 0.0
        factor = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
        w_name, b_name = f"{outputs[0]}__folded_w", f"{outputs[0]}__folded_b"
        consts[w_name] = (weight * factor.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        consts[b_name] = ((bias - mean) * factor + beta).astype(np.float32)
        out[j] = ("Conv", (conv_in[0], w_name, b_name), outputs, conv_attrs)
        folded.add(k)
    return [node for k, node in enumerate(out) if k not in folded]


def _attribute(attr: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return torch.from_numpy(numpy_helper.to_array(value).copy())
    return list(value) if isinstance(value, (list, tuple)) else value
