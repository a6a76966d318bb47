"""The built-in ``i3d`` classifier: decode, preprocess and run the I3D model in this process.

Threads: the model is loaded and run in one thread the classifier owns (the *model thread*), so
the event loop never waits on the runtime and MXNet is only ever called from one thread.
Segments are decoded, preprocessed and thumbnailed in a second pool, ``decode_threads`` threads
(default 1), so segment N+1 decodes while segment N is in its forward pass (with
``daemon.workers`` >= 2 to have a segment N+1). ``decode_threads = 0`` decodes on the model
thread instead, one segment after the other: the serial path, for a single core.

Memory stays bounded without a queue of its own: each `classify` call holds its one segment's
frames and tensor from its decode until its detection, and the daemon makes at most
``daemon.workers`` calls at once; at most ``decode_threads`` of them decode at a time. Thread
budget on 2 cores: the runtime's threads (``threads``, default every core) plus one decoder
thread and its scaler thread (`video.py`: FFmpeg's decoder single-threaded, frames scaled beside
it); the OS shares the cores between them while both run (`benchmarks/daemon_throughput.py`
measures what that costs and buys).

Windows (``windows``): a segment is decoded once, in order, into its windows (`video.decode_segment`),
and all of them go through the network as one batch; the segment's labels are the mean of the
windows' probabilities (`describe`).

Batching (``max_batch`` > 1): when several segments are in classification at once
(``daemon.workers`` > 1 and a backlog), the segments decoded while others wait go through the
network together, up to ``max_batch`` segments (each with all its windows) per forward pass. A batch runs as soon as no other decode is
outstanding, so a lone segment never waits for company; a batched one waits for the decodes queued
beside it. Off by default: on a 2-core CPU a batch of 4 costs about what 4 single passes do.

Fates: whatever fails while decoding is the segment's (`SegmentError`), except reading it
(OSError), memory (MemoryError) and transient errors; whatever fails in the forward pass is
transient (the model's). `close` cancels the forward passes it owns, answers every waiting
caller with cancellation and shuts both pools down.

MXNet (~1.5 s to import) is imported only in the model thread, when the model loads: this module
is imported by every ``livewatch`` command through the plugin manager.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator

from livewatch.components import Classifier, Options
from livewatch.contract import Detection, Label, ModelInfo, Segment, WindowResult
from livewatch.errors import ConfigError, ModelError, SegmentError, TransientError
from livewatch.hookspecs import hookimpl
from livewatch.plugins import registry

from .backend import Backend, BackendOptions, Device
from .resolve import resolve_model
from .thumbnails import window_thumbnails
from .preprocess import to_tensor
from .video import CODECS, MAX_SECONDS, decode_segment

if TYPE_CHECKING:
    from .loaded_model import LoadedModel
    from .windows import Decoded

log = logging.getLogger(__name__)


class I3DOptions(Options):
    model: str = Field(
        "i3d_resnet50_v1_ucf101",
        description="a model directory, a model.tar.gz, an s3:// URI of one, or a GluonCV "
        "model-zoo name (downloaded once into the cache)",
    )
    top_k: int = Field(5, ge=1, description="how many of the most probable labels to report")
    device: Device = Field(
        "auto", description="where to run the model; auto: a GPU if the backend sees one"
    )
    threads: int | None = Field(
        None, ge=1, description="the backend's CPU threads: OpenMP threads for MXNet, ONNX "
        "Runtime's intra-op threads (default: OMP_NUM_THREADS, else all cores)"
    )
    backend: str = Field(
        "mxnet", description="what runs the forward pass: an installed backend (`livewatch "
        "plugins` lists them; built in: mxnet, and onnxruntime or openvino on an ONNX export of "
        "the same model, made once beside it, with the `onnx` or `openvino` extra)"
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="the backend's own options (`livewatch plugins "
        "--options` lists them), e.g. {spinning = true} for onnxruntime, {precision = \"bf16\"} "
        "for openvino"
    )
    max_batch: int = Field(
        1, ge=1, description="segments classified together in one forward pass when several "
        "are waiting (needs daemon.workers >= max_batch to have them); a GPU gains from it, a "
        "small CPU does not (`make bench`: no gain on 2 cores, more latency)"
    )
    cache_dir: Path | None = Field(
        None, description="downloaded and unpacked models (default: $LIVEWATCH_CACHE_DIR or "
        "~/.cache/livewatch/models)"
    )
    codecs: list[str] = Field(
        list(CODECS), description="video codecs accepted (FFmpeg names); others are error "
        "detections, refused before decoding"
    )
    windows: Literal["center", "cover"] | PositiveInt = Field(
        "cover", description='windows classified per segment: "center" (GluonCV\'s test '
        'window), N (GluonCV\'s num_segments=N test windows) or "cover" (enough windows spread '
        'evenly that every frame lies in one: ceil(frames / (model frames x step)))'
    )
    max_segment_seconds: float = Field(
        MAX_SECONDS, gt=0, description="a longer segment is an error detection, refused before "
        "decoding"
    )
    decode_threads: int = Field(
        1, ge=0, description="threads that decode segments while the model thread runs the "
        "forward pass of another (with daemon.workers >= 2); 0: decode on the model thread, one "
        "segment after the other (`make bench`: about as fast on 2 cores, where both paths keep "
        "the cores busy)"
    )
    thumbnails: bool = Field(
        True, description="keep a small JPEG of each window's middle frame (from the frames "
        "already decoded) for the web page; sinks that keep them store them (the local store)"
    )


    @field_validator("backend")
    @classmethod
    def _backend_is_installed(cls, name: str) -> str:
        find_backend(name)  # ValueError in words: a config error
        return name

    @model_validator(mode="after")
    def _backend_options_are_valid(self) -> "I3DOptions":
        backend_options(find_backend(self.backend), self)
        return self


class I3DClassifier(Classifier):
    """Classifies segments with an I3D model in this process, on any installed backend."""

    name = "i3d"
    Options = I3DOptions
    concurrency = 1  # one model thread: the runtime already uses every core for one batch

    def __init__(self, options: I3DOptions | None = None, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.model: LoadedModel | None = None
        self._executor: ThreadPoolExecutor | None = None  # the model thread
        self._decoder: ThreadPoolExecutor | None = None  # decode_threads threads; None: the model's
        self._closed = False
        self._decoding = 0  # decodes submitted and not finished
        self._ready: list[tuple[np.ndarray, asyncio.Future]] = []  # decoded, waiting for a batch
        self._batches: set[asyncio.Task] = set()  # forward passes in progress (owned here)

    async def start(self) -> None:
        self._closed = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"livewatch-{self.instance}")
        if self.options.decode_threads:
            self._decoder = ThreadPoolExecutor(
                self.options.decode_threads, thread_name_prefix=f"livewatch-{self.instance}-decode")
        loop = asyncio.get_running_loop()
        self.model = await loop.run_in_executor(self._executor, load_model, self.options)

    def runtime(self) -> dict[str, str]:
        return self.model.runtime if self.model is not None else {}

    async def classify(self, segment: Segment) -> Detection:
        if self.model is None or self._executor is None or self._closed:
            raise RuntimeError(f"{self!r} was not started")
        model, loop = self.model, asyncio.get_running_loop()
        decoder = self._decoder or self._executor
        result: asyncio.Future = loop.create_future()
        try:
            self._decoding += 1
            try:
                decoded, tensor, preprocess_ms = await loop.run_in_executor(
                    decoder, prepare, model, segment, self.options)
                self._ready.append((tensor, result))
            except (SegmentError, TransientError, OSError, MemoryError):
                raise  # reading the segment failed, or memory ran short: either may pass
            except Exception as exc:  # decoding is deterministic and runs no model: the segment's fault
                raise SegmentError(f"could not decode: {type(exc).__name__}: {exc}") from exc
            finally:
                self._decoding -= 1
                self._run_ready()  # with this clip, or without it if it failed: a batch may be due
            # Thumbnails on the decoder while the model thread runs this segment's forward pass.
            thumbs = (await self._in(decoder, window_thumbnails, decoded.frames)
                      if self.options.thumbnails else [])
            probs, forward_ms = await result
        finally:
            result.cancel()  # a caller gone (timed out, cancelled): its clip is not run for nobody
        detection = describe(model, segment, decoded, probs, preprocess_ms + forward_ms,
                             self.options.top_k)
        for window, thumbnail in zip(detection.windows, thumbs):
            window.thumbnail = thumbnail
        return detection

    async def _in(self, executor: ThreadPoolExecutor, fn, *args):
        """`fn(*args)` in `executor`; cancelled (not an error) when `close` came first."""
        if self._closed:
            raise asyncio.CancelledError(f"{self!r} closed")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def _run_ready(self) -> None:
        """Start a forward pass over the waiting clips once the batch is full, or once no other
        decode is outstanding (none will join it soon)."""
        self._ready = [(t, f) for t, f in self._ready if not f.done()]  # drop timed-out callers
        if self._closed:  # a decode that finished after close: its caller is cancelled
            for _, result in self._ready:
                result.cancel()
            self._ready.clear()
            return
        while self._ready and (len(self._ready) >= self.options.max_batch or self._decoding == 0):
            batch = self._ready[: self.options.max_batch]
            del self._ready[: len(batch)]
            task = asyncio.create_task(self._forward(batch), name=f"{self.instance}:forward")
            self._batches.add(task)
            task.add_done_callback(lambda done, batch=batch: self._settled(done, batch))

    def _settled(self, task: asyncio.Task, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        self._batches.discard(task)
        for _, result in batch:  # a forward pass cancelled (even before it began) cancels its callers
            result.cancel()  # no-op for those it answered

    async def _forward(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            probs, forward_ms = await self._in(
                self._executor, _timed_predict, self.model, [t for t, _ in batch])
            if len(batch) > 1:
                log.debug("forward pass over a batch of %d in %.0f ms", len(batch), forward_ms)
        except Exception as exc:  # the model failed: each segment of the batch gets the error
            for _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        rows = np.cumsum([len(t) for t, _ in batch])[:-1]  # each segment's windows are its rows
        for part, (_, result) in zip(np.split(probs, rows), batch):
            if not result.done():  # its caller may have timed out meanwhile
                result.set_result((part, forward_ms))

    async def close(self) -> None:
        self._closed = True  # from here on nothing new is submitted to either pool
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        for _, result in self._ready:
            result.cancel()
        self._ready.clear()
        pools = [p for p in (self._decoder, self._executor) if p is not None]
        self._executor = self._decoder = None
        self.model = None
        for pool in pools:
            # Waits for a decode or a forward pass already running (seconds at most), off the
            # event loop; what is queued is cancelled, and so are its callers.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def find_backend(name: str) -> type[Backend]:
    """The installed backend called `name`; ValueError that lists the installed ones, or says what
    to install when it cannot run here."""
    try:
        backend = registry().get("backend", name).cls
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if problem := backend.missing():
        raise ValueError(problem)
    return backend  # type: ignore[return-value]


def backend_options(backend: type[Backend], options: I3DOptions) -> BackendOptions:
    """The backend's validated options: the classifier's ``device`` and ``threads`` and its
    ``backend_options`` table. ValueError names a bad key."""
    shared = set(BackendOptions.model_fields)
    if clash := shared & options.backend_options.keys():
        raise ValueError(f"backend_options: set {', '.join(sorted(clash))} on the classifier itself")
    try:
        return backend.Options.model_validate(
            {**options.backend_options, "device": options.device, "threads": options.threads})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"backend_options for backend {backend.name!r}: {problems}") from None


def load_model(options: I3DOptions) -> "LoadedModel":
    """Resolve `options.model` (downloading or unpacking it if needed) and load it on the
    configured backend. Blocking."""
    try:
        backend = find_backend(options.backend)
        loader_options = backend_options(backend, options)
    except ValueError as exc:
        raise ConfigError(f"classifier.backend: {exc}") from None
    artifact = resolve_model(options.model, options.cache_dir)
    return backend.load(artifact, loader_options)


def prepare(model: "LoadedModel", segment: Segment,
            options: I3DOptions | None = None) -> tuple["Decoded", np.ndarray, float]:
    """Decode `segment`'s windows and make the model's input from them. Blocking.

    Returns the decoded windows, the (windows, 3, T, crop, crop) tensor and the preprocessing
    time in ms. Raises SegmentError for a segment that is not decodable video.
    """
    meta, limits = model.meta, options or I3DOptions()
    with segment.open() as f:
        decoded = decode_segment(f, new_length=meta.frames, new_step=meta.step, windows=limits.windows,
                                 size=meta.resize, codecs=limits.codecs,
                                 max_seconds=limits.max_segment_seconds,
                                 stated_seconds=segment.duration)
    started = time.perf_counter()
    tensor = np.concatenate([to_tensor(frames, crop=meta.crop, mean=meta.mean, std=meta.std)
                             for frames in decoded.frames])
    return decoded, tensor, (time.perf_counter() - started) * 1000.0


def _timed_predict(model: "LoadedModel", tensors: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """One forward pass over the (windows, 3, T, H, W) `tensors`; (N, classes) probabilities and ms."""
    started = time.perf_counter()
    probs = model.predict(np.concatenate(tensors) if len(tensors) > 1 else tensors[0])
    return probs, (time.perf_counter() - started) * 1000.0


def describe(model: "LoadedModel", segment: Segment, decoded: "Decoded", probs: np.ndarray,
             infer_ms: float, top_k: int = 5) -> Detection:
    """The detection for a segment's rows of the model's output, one per window: each window's
    labels, and the segment's from the mean of the windows' probabilities. ``infer_ms`` counts
    the preprocessing (crop, normalise) and the forward pass (the whole batch's, when batched);
    ``decode_ms`` the decoding."""
    probs = np.asarray(probs).reshape(len(decoded.windows), -1)

    def labels(row: np.ndarray) -> list[Label]:
        return [Label(label=label, probability=p) for label, p in model.top_k(row, top_k)]

    windows = []
    for span, row in zip(decoded.windows, probs):
        best = labels(row)
        windows.append(WindowResult(
            start=span.start, end=span.end, frames=[span.indices[0], span.indices[-1]],
            label=best[0].label, probability=best[0].probability, top_k=best,
            concealed_frames=span.concealed))
    best = labels(probs.mean(axis=0))
    return Detection.for_segment(
        segment,
        label=best[0].label,
        probability=best[0].probability,
        top_k=best,
        model=ModelInfo(name=model.artifact.name, version=model.artifact.version),
        frames=[i for span in decoded.windows for i in span.indices],
        decode_ms=round(decoded.decode_ms, 1),
        infer_ms=round(infer_ms, 1),
        windows=windows,
        concealed_frames=decoded.concealed_frames,
        segment_frames=decoded.num_frames,
        expected_frames=decoded.expected_frames,
        truncated=decoded.truncated,
        notes=decoded.notes,
    )


@hookimpl
def register_classifiers(register):
    register(I3DClassifier)
