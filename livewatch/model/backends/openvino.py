"""The I3D network on OpenVINO's CPU plugin: the ONNX export of the MXNet model, in fp32, bf16 or int8.

An optional backend (``pip install 'livewatch[openvino]'``; the i3d classifier's ``backend =
"openvino"``, ``backend_options = {precision = "bf16"}``; registered through
``register_backends``). It reads the ONNX export that the ONNX Runtime backend makes once beside
the model (`export_onnx`), or, for ``precision = "int8"``, the OpenVINO IR that ``livewatch model quantize``
wrote beside it (``model-int8.xml``/``.bin``).

Precision (``precision``):

- ``fp32``: OpenVINO's own float32 kernels (blocked layouts for the 3-D convolutions);
- ``bf16``: weights and activations in bfloat16 where the CPU computes it natively: AMX tiles
  (Intel Sapphire Rapids and later) or AVX512-BF16 (Intel Cooper Lake, AMD Zen 4 and later).
  Refused elsewhere: emulated bf16 would be slower than fp32 and less exact;
- ``int8``: the NNCF post-training quantized model (VNNI, AMX-INT8);
- ``auto``: bf16 where the CPU has a native bf16 unit, else fp32 (int8 only when asked, since it
  needs a calibration made by the user).

Threads: one stream, one inference request, ``threads`` (default: the cores this process may run
on) threads; the forward pass runs in the classifier's executor thread, which waits for it.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl

from ..artifacts import ModelArtifact
from ..backend import Backend, BackendOptions
from ..loaded_model import LoadedModel
from .onnxruntime import export_onnx, softmax

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
INT8_XML = "model-int8.xml"
INT8_META = "model-int8.json"
_OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the quantized layers are int8


def available() -> bool:
    """True when OpenVINO and onnx (for the export) can be imported."""
    try:
        import onnx  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def bf16_unit(flags: set[str] | None = None) -> str | None:
    """The CPU's native bf16 unit: ``"AMX"``, ``"AVX512-BF16"``, or None when it has neither."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def int8_unit(flags: set[str] | None = None) -> str | None:
    """The CPU's int8 dot-product unit: ``"AMX"``, ``"AVX512-VNNI"``, ``"AVX-VNNI"`` or None."""
    flags = cpu_flags() if flags is None else flags
    if "amx_int8" in flags and "amx_tile" in flags:
        return "AMX"
    if "avx512_vnni" in flags:
        return "AVX512-VNNI"
    if "avx_vnni" in flags:
        return "AVX-VNNI"
    return None


def choose_precision(precision: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(the precision to run, the unit that runs it) for the requested `precision`."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    flags = cpu_flags() if flags is None else flags
    bf16 = bf16_unit(flags)
    if precision == "auto":
        return ("bf16", bf16) if bf16 else ("fp32", "AVX512" if "avx512f" in flags else "AVX2")
    if precision == "bf16":
        if not bf16:
            raise ModelError("precision \"bf16\" needs a CPU with native bf16 (AMX or "
                             "AVX512-BF16) and this one has neither; use \"fp32\" or \"auto\"")
        return "bf16", bf16
    if precision == "int8":
        return "int8", int8_unit(flags) or "no VNNI (slow int8)"
    return "fp32", "AVX512" if "avx512f" in flags else "AVX2"


def int8_path(artifact: ModelArtifact) -> Path:
    """Where ``livewatch model quantize`` stores `artifact`'s int8 model (beside the ONNX export)."""
    from .onnxruntime import _default_path

    return _default_path(artifact).with_name(INT8_XML)


def int8_trusted(artifact: ModelArtifact, threshold: float = 0.98) -> bool:
    """A fresh int8 model whose recorded held-out top-1 agreement is at least `threshold`."""
    import json

    path = int8_path(artifact)
    try:
        if path.stat().st_mtime < artifact.params_file.stat().st_mtime:
            return False
        figures = json.loads(path.with_name(INT8_META).read_text())
    except (OSError, ValueError):
        return False
    return float(figures.get("top1_agreement", 0.0)) >= threshold


class OpenVinoModel(LoadedModel):
    """A compiled OpenVINO model for an I3D artifact: `predict` as `MXNetModel.predict`."""

    def __init__(self, artifact: ModelArtifact, compiled, path: Path, precision: str, unit: str,
                 load_ms: float):
        self.artifact = artifact
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.path = path
        self.precision = precision
        self.unit = unit
        self.load_ms = load_ms

    @property
    def runtime(self) -> dict[str, str]:
        """What runs the forward pass, for the log and ``/metrics``."""
        return {"backend": "openvino", "precision": self.precision, "unit": self.unit}

    @classmethod
    def load(cls, artifact: ModelArtifact, *, precision: str = "auto", threads: int | None = None,
             path: Path | None = None, flags: set[str] | None = None) -> "OpenVinoModel":
        """Export `artifact` to ONNX unless done before (int8: read its quantized IR), compile it
        for the CPU in the chosen precision and warm it up."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelError("backend \"openvino\" needs OpenVINO: pip install "
                             "'livewatch[openvino]' (or openvino onnx)") from exc
        started = time.perf_counter()
        chosen, unit = choose_precision(precision, flags)
        if path is None:
            if chosen == "int8":
                path = int8_path(artifact)
                if not path.is_file():
                    raise ModelError(
                        f"precision \"int8\" needs a quantized model at {path}: make it with "
                        f"`livewatch model quantize {artifact.directory} --calibrate DIR`")
                if path.stat().st_mtime < artifact.params_file.stat().st_mtime:
                    raise ModelError(f"the int8 model {path} is older than {artifact.params_file}: "
                                     "quantize the model again (`livewatch model quantize`)")
            else:
                path = export_onnx(artifact)
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": _OV_HINT[chosen],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads or len(os.sched_getaffinity(0))),
        }
        try:
            network = core.read_model(str(path))
            compiled = core.compile_model(network, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            raise ModelError(f"OpenVINO cannot load {path}: {exc}") from exc
        model = cls(artifact, compiled, Path(path), chosen, unit, load_ms=0.0)
        meta = artifact.meta
        probs = model.predict(np.zeros((1, 3, meta.frames, meta.crop, meta.crop), np.float32))
        if probs.shape[1] != len(artifact.classes):
            raise ModelError(f"{path} outputs {probs.shape[1]} scores but the model lists "
                             f"{len(artifact.classes)} labels")
        model.load_ms = (time.perf_counter() - started) * 1000.0
        log.info("model %s %s loaded on OpenVINO %s in %.0f ms: %s (requested %s) on %s, %s",
                 artifact.name, artifact.version, ov.__version__, model.load_ms, chosen,
                 precision, cpu_model(), unit)
        return model

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            result = self.request.infer({0: batch})
        except Exception as exc:
            raise ModelError(f"model {self.artifact.name} failed on a {batch.shape} batch: {exc}") from exc
        return softmax(np.asarray(result[0]))


class OpenVinoOptions(BackendOptions):
    precision: Precision = Field(
        "auto", description="auto: bf16 where the CPU computes it natively (AMX or AVX512-BF16), "
        "else fp32; int8 needs `livewatch model quantize MODEL --calibrate DIR` first")


class OpenVinoBackend(Backend):
    """OpenVINO on the CPU, on the ONNX export (fp32, bf16) or an NNCF int8 model."""

    name = "openvino"
    summary = "OpenVINO on the CPU: fp32, bf16 on AMX/AVX512-BF16, or int8 (livewatch model quantize)"
    Options = OpenVinoOptions
    modules = ("openvino", "onnx", "mxnet")  # mxnet: the export is made from the MXNet model
    install = "pip install 'livewatch[openvino]'"

    @classmethod
    def variants(cls, artifact: ModelArtifact) -> list[dict]:
        """bf16 or fp32 as the CPU suits, and int8 when ``livewatch model quantize`` made one that
        agreed with fp32 MXNet on the user's held-out segments (``model-int8.json``) at least as
        often as its default threshold asks: a few synthetic clips cannot show that."""
        return [{"precision": "auto"}] + ([{"precision": "int8"}] if int8_trusted(artifact) else [])

    @classmethod
    def load(cls, artifact: ModelArtifact, options: OpenVinoOptions) -> OpenVinoModel:
        if options.device == "gpu":
            raise ModelError("backend \"openvino\" runs on the CPU here; use device \"cpu\" or "
                             "\"auto\", or backend \"mxnet\" for the GPU")
        return OpenVinoModel.load(artifact, precision=options.precision, threads=options.threads)


@hookimpl
def register_backends(register):
    register(OpenVinoBackend)
