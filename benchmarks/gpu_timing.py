"""`gpu_check`'s timings: `TorchModel.predict` as the classifier calls it (host float32 in,
probabilities out), the bare forward pass on a batch already on the device, and the same pass
replayed as a CUDA graph (what launching its ~140 kernels from Python costs)."""
from __future__ import annotations

import time

import numpy as np


def timings(loaded, batch: np.ndarray, torch, repeats: int | None) -> dict:
    repeats = repeats or {1: 30, 5: 20}.get(len(batch), 10)
    warmup = min(3, repeats)
    for _ in range(warmup):  # the first pass at a new shape runs cuDNN's autotuner
        loaded.predict(batch)
    predict = []
    for _ in range(repeats):
        t = time.perf_counter()
        loaded.predict(batch)
        predict.append((time.perf_counter() - t) * 1000)
    x = torch.from_numpy(batch).to(loaded.device).to(loaded.dtype)
    if loaded.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    forward = []
    with torch.inference_mode():
        for _ in range(repeats):
            _sync(torch, loaded.device)
            t = time.perf_counter()
            loaded.module(x)
            _sync(torch, loaded.device)
            forward.append((time.perf_counter() - t) * 1000)
    med = float(np.median(predict))
    out = {"predict_ms": _stats(predict), "forward_ms": _stats(forward), "repeats": repeats,
           "ms_per_clip": round(med / len(batch), 2), "clips_per_s": round(1000 * len(batch) / med, 1),
           "forward_clips_per_s": round(1000 * len(batch) / float(np.median(forward)), 1)}
    if loaded.device.type == "cuda":
        out["cuda_graph_ms"] = _graph_replay(loaded.module, x, torch, repeats)
    return out


def _graph_replay(module, x, torch, repeats: int) -> dict | str:
    """The same forward pass captured once as a CUDA graph and replayed: what launching ~140
    kernels from Python costs (not used by the backend; a measurement of what it could gain)."""
    try:
        static = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(2):
                    module(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                module(static)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t = time.perf_counter()
            graph.replay()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
        del graph
        return _stats(times)
    except Exception as exc:  # a measurement only: say why it could not be made
        return f"{type(exc).__name__}: {exc}"


def median_text(stats: dict | str) -> str:
    return f"{stats['median']:.1f} ms" if isinstance(stats, dict) else stats


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(ms: list[float]) -> dict:
    return {"min": round(min(ms), 2), "median": round(float(np.median(ms)), 2), "max": round(max(ms), 2)}
