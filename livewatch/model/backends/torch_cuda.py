"""The ``torch`` backend, for a GPU: the model's ONNX export run by PyTorch, in float16 on CUDA.

An optional backend (``pip install 'livewatch[gpu]'``; the i3d classifier's ``backend = "torch"``).
The network comes from the same ONNX export the ``onnxruntime`` backend reads (made once beside the
model, `backends.onnxruntime.export_onnx`), turned into a torch module by
`livewatch.model.onnx_torch.OnnxModule` with each BatchNorm folded into its convolution.

On a CUDA device it runs in float16 (``backend_options = {precision = "auto"}``; ``"bf16"`` and
``"fp32"`` on request) with channels-last 3-D tensors and cuDNN's autotuner on; the first forward
pass at a new batch size pays for the autotuning once. Several clips in one forward pass (the
classifier's ``max_batch``) is where a GPU gains: see the README's Performance section, GPU.

Without a CUDA device (``device = "auto"``) it runs on the CPU in float32 and says so in the log:
correct, but slower than the ``mxnet`` and ``onnxruntime`` backends there. ``device = "gpu"``
without one is an error.

Not thread-safe: call `load` and `predict` from one thread (the classifier's own executor).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl
from livewatch.model.artifacts import ModelArtifact
from livewatch.model.backend import Backend, BackendOptions
from livewatch.model.loaded_model import LoadedModel

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp16", "bf16", "fp32"]


class TorchModel(LoadedModel):
    """A loaded, warmed-up torch module for an I3D artifact: `predict` as `MXNetModel.predict`."""

    def __init__(self, artifact: ModelArtifact, module, device, dtype, channels_last: bool,
                 load_ms: float = 0.0):
        self.artifact = artifact
        self.module = module
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.load_ms = load_ms

    @classmethod
    def load(cls, artifact: ModelArtifact, *, device: str = "auto", precision: Precision = "auto",
             threads: int | None = None, channels_last: bool = True,
             onnx_path: Path | None = None) -> "TorchModel":
        """Export `artifact` to ONNX unless done before, build the torch module and warm it up."""
        try:
            import onnx
        except ImportError as exc:
            raise ModelError(f"the torch backend needs torch and onnx: {INSTALL}") from exc
        from .onnxruntime import export_onnx

        path = onnx_path or export_onnx(artifact)
        return cls.from_onnx(artifact, onnx.load(str(path)), device=device, precision=precision,
                             threads=threads, channels_last=channels_last)

    @classmethod
    def from_onnx(cls, artifact: ModelArtifact, model, *, device: str = "auto",
                  precision: Precision = "auto", threads: int | None = None,
                  channels_last: bool = True, warmup: bool = True) -> "TorchModel":
        """Build from an in-memory ``onnx.ModelProto`` (the network `artifact` describes)."""
        try:
            import torch
        except ImportError as exc:
            raise ModelError(f"the torch backend needs torch and onnx: {INSTALL}") from exc
        from livewatch.model.onnx_torch import OnnxModule

        started = time.perf_counter()
        target = _device(torch, device)
        dtype = _dtype(torch, target, precision)
        if target.type == "cpu" and threads:
            torch.set_num_threads(threads)
        if target.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotune each conv's algorithm per shape, once
        try:
            module = OnnxModule(model).eval()
        except ValueError as exc:
            raise ModelError(f"the torch backend cannot run {artifact.name}: {exc}") from exc
        channels_last = channels_last and target.type == "cuda"
        module = module.to(target, dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last_3d)
        loaded = cls(artifact, module, target, dtype, channels_last)
        if warmup:
            meta = artifact.meta
            probs = loaded.predict(np.zeros((1, 3, meta.frames, meta.crop, meta.crop), np.float32))
            if probs.shape[1] != len(artifact.classes):
                raise ModelError(f"{artifact.name} lists {len(artifact.classes)} labels but the "
                                 f"network outputs {probs.shape[1]} scores")
        loaded.load_ms = (time.perf_counter() - started) * 1000.0
        log.info("model %s %s loaded on torch %s (%s, %s%s) in %.0f ms", artifact.name,
                 artifact.version, torch.__version__, describe_device(torch, target),
                 str(dtype).removeprefix("torch."), ", channels-last" if channels_last else "",
                 loaded.load_ms)
        return loaded

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        try:
            with torch.inference_mode():
                if self.device.type == "cuda":
                    x = x.pin_memory().to(self.device, non_blocking=True)
                x = x.to(self.dtype)  # cast here, on the device: a CPU cast would cost a pass there
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                logits = self.module(x).float()
                return torch.softmax(logits, dim=-1).cpu().numpy()
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError too
            raise ModelError(f"model {self.artifact.name} failed on a {tuple(batch.shape)} batch "
                             f"on {self.device}: {exc}") from exc


INSTALL = "pip install 'livewatch[gpu]' (a CUDA build of torch for a GPU)"


def _device(torch, device: str):
    if torch.cuda.is_available() and device in ("auto", "gpu"):
        return torch.device("cuda", torch.cuda.current_device())
    if device == "gpu":
        raise ModelError(f"device 'gpu' was requested but torch sees no CUDA device "
                         f"({_why_no_cuda(torch)}); use device 'auto' or 'cpu'")
    if device == "auto":
        log.warning("torch backend: no CUDA device (%s); running on the CPU in float32, slower "
                    "than the mxnet and onnxruntime backends there", _why_no_cuda(torch))
    return torch.device("cpu")


def _why_no_cuda(torch) -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but no GPU is visible"


def _dtype(torch, target, precision: Precision):
    if target.type != "cuda":
        if precision in ("fp16", "bf16"):
            log.warning("torch backend: precision %r needs a CUDA device; float32 on the CPU",
                        precision)
        return torch.float32
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16,
            "fp32": torch.float32}[precision]


def describe_device(torch, device) -> str:
    """'cuda:0 NVIDIA H200 (CUDA 13.0)' or 'cpu'."""
    if device.type != "cuda":
        return "cpu"
    return f"{device} {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"


class TorchOptions(BackendOptions):
    precision: Precision = Field(
        "auto", description="on a CUDA device: fp16 (auto), bf16 or fp32 (PyTorch's default: TF32 "
        "convolutions); the CPU always runs fp32")
    channels_last: bool = Field(
        True, description="channels-last 3-D tensors on a CUDA device (faster fp16 convolutions)")


class TorchBackend(Backend):
    """PyTorch on the model's ONNX export: float16 on a CUDA GPU, batched; float32 on the CPU."""

    name = "torch"
    summary = "PyTorch on the ONNX export of the same model: fp16 on a CUDA GPU (the `gpu` extra)"
    Options = TorchOptions
    modules = ("torch", "onnx")
    install = INSTALL

    @classmethod
    def load(cls, artifact: ModelArtifact, options: TorchOptions) -> TorchModel:
        return TorchModel.load(artifact, device=options.device, precision=options.precision,
                               threads=options.threads, channels_last=options.channels_last)


@hookimpl
def register_backends(register):
    register(TorchBackend)
