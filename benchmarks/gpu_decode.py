"""`gpu_check`'s decoding side: does PyAV on the CPU keep up with the GPU's forward passes?

Segments are made where the check runs (x264 ``veryfast`` with B-frames, as `benchmarks.media`'s
``live`` profile: 10 s, keyframe every 2 s), then decoded by N worker processes at once, each
decoding whole segments one after another on one thread, as the daemon's decoder runs:

- ``window``: the daemon's decoder as it is (`livewatch.model.video.decode_clip`): one 32-frame
  window at step 2 (the zoo model's 32x2) from the middle of the segment, resized to 340x256;
- ``all``: every frame of the segment decoded and resized to 340x256, what whole-segment coverage
  (``windows = "cover"``, 5 windows of 32x2 at 30 fps) needs; with the daemon's own
  ``decode_segment(..., windows="cover")`` where the decoder has it (``via`` says which ran).
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESIZE = (340, 256)


def make_segments(folder: Path, sizes: dict[str, tuple[int, int]], count: int, seconds: float,
                  fps: int = 30) -> dict[str, list[Path]]:
    """`count` segments per resolution, encoded in parallel processes; reused when present."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = {(name, i): folder / f"{name}-{seconds:g}s-{i}.ts" for name in sizes for i in range(count)}
    todo = [(path, sizes[name], i, seconds, fps) for (name, i), path in jobs.items() if not path.is_file()]
    if todo:
        with _pool(min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(_encode, *zip(*todo)))
    return {name: [jobs[name, i] for i in range(count)] for name in sizes}


def _encode(path: Path, size: tuple[int, int], sequence: int, seconds: float, fps: int) -> Path:
    from livewatch.testing.media import write_video

    tmp = path.with_name(f".{path.name}")
    first = (sequence + 1) * round(seconds * fps)  # a segment from the middle of a stream
    write_video(tmp, seconds=seconds, fps=fps, size=size, gop_seconds=2, bframes=3,
                preset="veryfast", first_frame=first)
    os.replace(tmp, path)
    return path


def _pool(workers: int) -> ProcessPoolExecutor:
    """Fresh interpreters (spawn): the parent may hold CUDA and thread pools a fork would copy."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def decode_window(path: str) -> int:
    from livewatch.model.video import decode_clip

    return len(decode_clip(path, new_length=32, new_step=2, size=RESIZE).frames)


def decode_all(path: str) -> int:
    import av

    from livewatch.model import video

    if hasattr(video, "decode_segment"):  # the daemon's whole-segment decoder
        decoded = video.decode_segment(path, 32, 2, "cover", RESIZE)
        return sum(len(frames) for frames in decoded.frames)
    scale, frames = video.RgbScaler(*RESIZE), 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            scale(frame)
            frames += 1
    return frames


def throughput(files: list[Path], mode: str, workers: int, rounds: int = 2) -> dict:
    """Segments per second with `workers` processes each decoding segments back to back."""
    from livewatch.model import video

    fn = {"window": decode_window, "all": decode_all}[mode]
    jobs = [str(f) for f in files] * max(1, (workers * rounds + len(files) - 1) // len(files))
    jobs = jobs[: max(workers * rounds, 1)]
    with _pool(workers) as pool:
        list(pool.map(fn, [str(files[0])] * workers))  # start the workers, warm the file cache
        started = time.perf_counter()
        frames = list(pool.map(fn, jobs))
        seconds = time.perf_counter() - started
    via = {"window": "decode_clip", "all": "decode_segment(cover)" if hasattr(
        video, "decode_segment") else "every frame, RgbScaler"}[mode]
    return {"mode": mode, "via": via, "workers": workers, "segments": len(jobs),
            "seconds": round(seconds, 3),
            "segments_per_s": round(len(jobs) / seconds, 2), "frames_per_segment": frames[0],
            "ms_per_segment_per_worker": round(seconds * 1000 * workers / len(jobs), 1)}
