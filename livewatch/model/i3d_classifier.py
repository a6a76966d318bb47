"""The built-in ``i3d`` classifier: decode, preprocess and run the I3D model in this process.

All of a classifier's blocking work, model loading included, runs in one thread it owns, so the
event loop never waits on MXNet and MXNet is only ever called from one thread.

MXNet (~1.5 s to import) is imported only in that thread, when the model loads: this module is
imported by every ``livewatch`` command through the plugin manager.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from livewatch.components import Classifier, Options
from livewatch.contract import Detection, Label, ModelInfo, Segment
from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl

from .artifacts import resolve_model
from .preprocess import to_tensor
from .video import CODECS, MAX_SECONDS, decode_clip

if TYPE_CHECKING:
    from .loaded_model import LoadedModel


class I3DOptions(Options):
    model: str = Field(
        "i3d_resnet50_v1_ucf101",
        description="a model directory, a model.tar.gz, an s3:// URI of one, or a GluonCV "
        "model-zoo name (downloaded once into the cache)",
    )
    top_k: int = Field(5, ge=1, description="how many of the most probable labels to report")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where to run the model; auto: a GPU if MXNet sees one"
    )
    threads: int | None = Field(
        None, ge=1, description="OpenMP threads for MXNet, or ONNX Runtime's intra-op threads "
        "(default: OMP_NUM_THREADS, else all cores)"
    )
    backend: Literal["mxnet", "onnxruntime"] = Field(
        "mxnet", description="what runs the forward pass on the CPU: MXNet, or ONNX Runtime on "
        "an ONNX export of the same model (made once, beside it; needs the `onnx` extra)"
    )
    cache_dir: Path | None = Field(
        None, description="downloaded and unpacked models (default: $LIVEWATCH_CACHE_DIR or "
        "~/.cache/livewatch/models)"
    )
    codecs: list[str] = Field(
        list(CODECS), description="video codecs accepted (FFmpeg names); others are error "
        "detections, refused before decoding"
    )
    max_segment_seconds: float = Field(
        MAX_SECONDS, gt=0, description="a longer segment is an error detection, refused before "
        "decoding"
    )


class I3DClassifier(Classifier):
    """Classifies segments with an I3D model in this process (MXNet on CPU or GPU, or ONNX Runtime)."""

    name = "i3d"
    Options = I3DOptions
    concurrency = 1  # one executor thread: MXNet already uses every core for one clip

    def __init__(self, options: I3DOptions | None = None, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.model: LoadedModel | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"livewatch-{self.instance}")
        loop = asyncio.get_running_loop()
        self.model = await loop.run_in_executor(self._executor, load_model, self.options)

    async def classify(self, segment: Segment) -> Detection:
        if self.model is None or self._executor is None:
            raise RuntimeError(f"{self!r} was not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, detect, self.model, segment, self.options.top_k, self.options
        )

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        self.model = None
        if executor is not None:
            # Waits for a clip already running (seconds at most), off the event loop.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def load_model(options: I3DOptions) -> "LoadedModel":
    """Resolve `options.model` (downloading or unpacking it if needed) and load it. Blocking."""
    from .i3d import I3DModel

    artifact = resolve_model(options.model, options.cache_dir)
    if options.backend == "onnxruntime":
        if options.device == "gpu":
            raise ModelError("backend \"onnxruntime\" runs on the CPU; use device \"cpu\" or "
                             "\"auto\", or backend \"mxnet\" for the GPU")
        from .onnx_backend import OnnxModel

        return OnnxModel.load(artifact, threads=options.threads)  # same predict/top_k/meta
    return I3DModel.load(artifact, device=options.device, threads=options.threads)


def detect(model: "LoadedModel", segment: Segment, top_k: int = 5,
           options: I3DOptions | None = None) -> Detection:
    """Decode `segment`'s window, run the model on it and describe the result. Blocking.

    Raises SegmentError for a segment that is not decodable video. ``infer_ms`` counts the
    preprocessing (crop, normalise) and the forward pass; ``decode_ms`` the decoding.
    """
    meta = model.meta
    with segment.open() as f:
        limits = options or I3DOptions()
        clip = decode_clip(f, new_length=meta.frames, size=meta.resize, codecs=limits.codecs,
                           max_seconds=limits.max_segment_seconds)
    started = time.perf_counter()
    probs = model.predict(to_tensor(clip.frames, crop=meta.crop, mean=meta.mean, std=meta.std))[0]
    infer_ms = (time.perf_counter() - started) * 1000.0
    best = [Label(label=label, probability=p) for label, p in model.top_k(probs, top_k)]
    return Detection.for_segment(
        segment,
        label=best[0].label,
        probability=best[0].probability,
        top_k=best,
        model=ModelInfo(name=model.artifact.name, version=model.artifact.version),
        frames=clip.indices,
        decode_ms=round(clip.decode_ms, 1),
        infer_ms=round(infer_ms, 1),
    )


@hookimpl
def register_classifiers(register):
    register(I3DClassifier)
