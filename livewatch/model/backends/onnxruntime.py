"""The ``onnxruntime`` backend: the network exported from the same MXNet model, same `predict`.

An optional backend (``pip install 'livewatch[onnx]'``; the i3d classifier's ``backend =
"onnxruntime"``; ``backend_options = {spinning = true}`` keeps its threads spinning). Its outputs agree with MXNet's to float32 rounding; on the 2-core benchmark
machine its forward pass took about as long as MXNet's with oneDNN fusion (see the README's
Performance section), and it needs less memory.

Export (`export_onnx`) works around three known problems of MXNet 1.9's ONNX exporter:

- it always targets the newest opset the installed ``onnx`` knows, where its ``ReduceMean`` (axes
  as an attribute) is no longer valid; we ask for opset 13 and skip the exporter's own graph check,
  which validates against the newest opset, then check the finished model against opset 13;
- it lists every weight as a graph input as well as an initializer, so ONNX Runtime must treat
  them as overridable and will not fold BatchNorm into the convolutions; we list them as
  initializers only;
- it imports ``onnx.mapping``, which onnx 1.15 removed; we supply an equivalent when it is missing.

The export lands next to the model (``model.onnx``) or, when that folder is read-only, in the
model cache; an existing export is reused when it is newer than the params file.

Threads: ONNX Runtime's intra-op pool gets one thread per core by default, and spinning is off:
threads left spinning after a forward pass would slow the decoding of the next segment.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import types
from pathlib import Path
from unittest import mock

import numpy as np
from pydantic import Field

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl
from livewatch.model.artifacts import ModelArtifact, default_cache_dir
from livewatch.model.backend import Backend, BackendOptions
from livewatch.model.loaded_model import LoadedModel

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 13


class OnnxModel(LoadedModel):
    """A loaded ONNX Runtime session for an I3D artifact: `predict` as `MXNetModel.predict`."""

    backend_name = "onnxruntime"

    def __init__(self, artifact: ModelArtifact, session, onnx_path: Path, load_ms: float):
        self.artifact = artifact
        self.session = session
        self.onnx_path = onnx_path
        self.load_ms = load_ms
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, artifact: ModelArtifact, *, threads: int | None = None, spinning: bool = False,
             onnx_path: Path | None = None) -> "OnnxModel":
        """Export `artifact` to ONNX unless done before, open a session and warm it up."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the onnx backend needs onnxruntime and onnx: pip install onnxruntime onnx") from exc
        started = time.perf_counter()
        path = onnx_path or export_onnx(artifact)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        model = cls(artifact, session, path, load_ms=0.0)
        meta = artifact.meta
        model.predict(np.zeros((1, 3, meta.frames, meta.crop, meta.crop), np.float32))
        model.load_ms = (time.perf_counter() - started) * 1000.0
        log.info("model %s %s loaded on ONNX Runtime %s in %.0f ms", artifact.name,
                 artifact.version, ort.__version__, model.load_ms)
        return model

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            (logits,) = self.session.run(None, {self._input: batch})
        except Exception as exc:
            raise ModelError(f"model {self.artifact.name} failed on a {batch.shape} batch: {exc}") from exc
        return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def export_onnx(artifact: ModelArtifact, path: Path | None = None) -> Path:
    """Write `artifact`'s network as ONNX (batch size left free) and return its path."""
    path = path or _default_path(artifact)
    if path.is_file() and path.stat().st_mtime >= artifact.params_file.stat().st_mtime:
        return path
    import onnx

    from .mxnet import import_mxnet

    mx = import_mxnet()  # with its OpenMP pool bounded, as for the MXNet backend
    _ensure_onnx_mapping(onnx)
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    meta = artifact.meta
    symbol, args, auxs = mx.model.load_checkpoint(str(artifact.directory / "model"), 0)
    shape = (1, 3, meta.frames, meta.crop, meta.crop)
    started = time.perf_counter()
    # The exporter checks the bare graph against the newest opset; the model is checked below.
    with mock.patch.object(onnx.checker, "check_graph", lambda *a, **k: None):
        try:
            graph = MXNetGraph().create_onnx_graph_proto(
                symbol, {**args, **auxs}, [shape], [onnx.TensorProto.FLOAT], opset_version=OPSET,
                dynamic=True, dynamic_input_shapes=[("N", *shape[1:])],
            )
        except Exception as exc:
            raise ModelError(f"cannot export {artifact.directory} to ONNX: {exc}") from exc
    weights = {init.name for init in graph.initializer}
    kept = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)
    model = onnx.helper.make_model(graph, producer_name="livewatch",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # what opset 13 runtimes read
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    log.info("exported %s to %s (opset %d) in %.0f ms", artifact.name, path, OPSET,
             (time.perf_counter() - started) * 1000)
    return path


def _default_path(artifact: ModelArtifact) -> Path:
    if os.access(artifact.directory, os.W_OK):
        return artifact.directory / ONNX_FILE
    return default_cache_dir() / "onnx" / f"{artifact.name}-{artifact.version}" / ONNX_FILE


def _ensure_onnx_mapping(onnx) -> None:
    """MXNet's exporter uses ``onnx.mapping``, gone since onnx 1.15: rebuild its two tables."""
    if hasattr(onnx, "mapping"):
        return
    to_tensor: dict = _DtypeKeys()
    to_np: dict = {}
    for code in onnx.TensorProto.DataType.values():
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code))
        except (KeyError, TypeError, ValueError):
            continue
        to_np[code] = dtype
        to_tensor.setdefault(dtype, code)
    shim = types.ModuleType("onnx.mapping")
    shim.NP_TYPE_TO_TENSOR_TYPE = to_tensor
    shim.TENSOR_TYPE_TO_NP_TYPE = to_np
    onnx.mapping = shim
    sys.modules["onnx.mapping"] = shim


class _DtypeKeys(dict):
    """Keys normalised with np.dtype, so ``np.float32`` and ``np.dtype('float32')`` both work."""

    def __getitem__(self, key):
        return super().__getitem__(np.dtype(key))

    def setdefault(self, key, default=None):
        return super().setdefault(np.dtype(key), default)


class OnnxRuntimeOptions(BackendOptions):
    spinning: bool = Field(False, description="keep ONNX Runtime's threads spinning between "
                           "forward passes (lower latency, but they slow the next decode)")


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU, on an ONNX export of the model made once beside it."""

    name = "onnxruntime"
    summary = "ONNX Runtime on the CPU, on an ONNX export of the same model (made once)"
    Options = OnnxRuntimeOptions
    modules = ("onnxruntime", "onnx", "mxnet")  # mxnet: the export is made from the MXNet model
    install = "pip install 'livewatch[onnx]'"

    @classmethod
    def load(cls, artifact: ModelArtifact, options: OnnxRuntimeOptions) -> OnnxModel:
        if options.device == "gpu":
            raise ModelError("backend \"onnxruntime\" runs on the CPU; use device \"cpu\" or "
                             "\"auto\", or backend \"mxnet\" for the GPU")
        return OnnxModel.load(artifact, threads=options.threads, spinning=options.spinning)


@hookimpl
def register_backends(register):
    register(OnnxRuntimeBackend)
