"""livewatch as it was before the speed work, for the benchmark's "what each step bought" columns.

Two functions, each the committed code before one change, so the benchmark can measure that
change on its own against the same segments in the same run:

- `decode_window_before`: `video._decode` before it skipped non-reference B-frames ahead of the
  window (``skip_frame = "NONREF"``) and before it kept swscale single-threaded (PyAV 14+ gives
  a new scaler context an automatic thread pool);
- `load_unfused`: `MXNetModel.load` before it asked for MXNet's oneDNN subgraph fusion
  (``hybridize(..., backend="MKLDNN")``): hybridized with static memory, and nothing else.

`same_pixels` checks on a real segment that the current decoder gives exactly these frames.
"""
from __future__ import annotations

import contextlib
import time

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from livewatch.errors import SegmentError
from livewatch.model import video


def decode_window_before(
    stream: av.VideoStream, packets: list[av.Packet], indices: list[int], size: tuple[int, int]
) -> dict[int, np.ndarray]:
    """`video._decode` before the speed work (decodes every frame from the keyframe)."""
    presentation = sorted(p.pts for p in packets)
    index_of = {pts: i for i, pts in enumerate(presentation)}
    wanted = set(indices)
    first_pts = presentation[indices[0]]
    start = max((k for k, p in enumerate(packets) if p.is_keyframe and p.pts <= first_pts), default=0)
    width, height = size
    scaler = VideoReformatter()
    frames: dict[int, np.ndarray] = {}
    try:
        for packet in [*packets[start:], None]:
            for frame in stream.decode(packet):
                i = index_of.get(frame.pts)
                if i in wanted:
                    rgb = scaler.reformat(frame, width, height, "rgb24", interpolation=video.BILINEAR)
                    frames[i] = rgb.to_ndarray()
            if len(frames) == len(wanted):
                return frames
    except av.FFmpegError as e:
        raise SegmentError(f"could not decode: {e}") from e
    raise SegmentError("could not decode: frames missing")


@contextlib.contextmanager
def decoding_before():
    """Within the block, `video.decode_clip` decodes as before the speed work.

    For the benchmark's single-threaded workers only: it swaps a module attribute.
    """
    current = video._decode
    video._decode = decode_window_before
    try:
        yield
    finally:
        video._decode = current


def same_pixels(path: str) -> bool:
    """The current decoder gives the frames the one before it gave, for `path`."""
    now = video.decode_clip(path)
    with decoding_before():
        before = video.decode_clip(path)
    return now.indices == before.indices and bool(np.array_equal(now.frames, before.frames))


def load_unfused(artifact, *, threads: int | None = None):
    """`MXNetModel.load` on the CPU without oneDNN fusion (as before the speed work)."""
    from livewatch.model.backends.mxnet import MXNetModel, import_mxnet

    mx = import_mxnet(threads)
    started = time.perf_counter()
    data = mx.sym.var("data", dtype="float32")
    net = mx.gluon.SymbolBlock(mx.sym.load(str(artifact.symbol_file)), data)
    net.collect_params().load(str(artifact.params_file), ctx=mx.cpu(), cast_dtype=True,
                              dtype_source="saved")
    net.hybridize(static_alloc=True, static_shape=True)
    model = MXNetModel(artifact, net, mx.cpu(), load_ms=0.0)
    meta = artifact.meta
    model.predict(np.zeros((1, 3, meta.frames, meta.crop, meta.crop), np.float32))
    model.load_ms = (time.perf_counter() - started) * 1000.0
    return model
