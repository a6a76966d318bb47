"""livewatch's pipeline, stage by stage, as the `i3d` classifier runs it (`classify_segment`).

``python -m benchmarks.livewatch_worker`` serves requests (see `benchmarks.worker`). Backends:
``mxnet`` is `MXNetModel` as it is (hybridized, static memory, oneDNN fusion, OpenMP threads =
cores); ``mxnet-unfused`` is the same without the fusion (`benchmarks.baseline.load_unfused`);
``onnxruntime`` is `livewatch.model.backends.onnxruntime.OnnxModel`, as the classifier's ``backend =
"onnxruntime"`` loads it. Decoders: ``livewatch`` is `video.decode_clip` as it is; ``before`` is
the same with the decoding before the speed work (`benchmarks.baseline.decode_window_before`).

Stages: ``decode`` = open + `decode_clip` (demux, window, decode from the keyframe before it,
scale to 340x256 RGB); ``preprocess`` = `to_tensor`; ``infer`` = `predict` (softmax
probabilities as numpy); ``total`` = all of it plus the top-k, from the file name to the answer.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.worker import serve
from livewatch.model.artifacts import load_artifact
from livewatch.model.preprocess import to_tensor
from livewatch.model.video import decode_clip

from . import baseline


class Pipeline:
    def __init__(self, model_dir: str, backend: str, threads: int | None = None):
        artifact = load_artifact(Path(model_dir))
        if backend == "mxnet":
            from livewatch.model.backends.mxnet import MXNetModel

            self.model = MXNetModel.load(artifact, device="cpu", threads=threads)
        elif backend == "mxnet-unfused":
            self.model = baseline.load_unfused(artifact, threads=threads)
        elif backend == "onnxruntime":
            from livewatch.model.backends.onnxruntime import OnnxModel

            self.model = OnnxModel.load(artifact, threads=threads)
        elif backend.startswith("openvino-"):  # openvino-fp32, -bf16, -int8
            from livewatch.model.backends.openvino import OpenVinoModel

            self.model = OpenVinoModel.load(artifact, precision=backend.split("-", 1)[1],
                                            threads=threads)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.meta = artifact.meta

    def segment(self, path: str, decoder: str = "livewatch") -> dict:
        meta = self.meta
        swap = baseline.decoding_before() if decoder == "before" else contextlib.nullcontext()
        with swap:
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                clip = decode_clip(f, new_length=meta.frames, size=meta.resize)
            t1 = time.perf_counter()
            batch = to_tensor(clip.frames, crop=meta.crop, mean=meta.mean, std=meta.std)
            t2 = time.perf_counter()
            probs = self.model.predict(batch)[0]
            t3 = time.perf_counter()
            self.model.top_k(probs, 5)
            t4 = time.perf_counter()
        return {
            "decode_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3,
            "infer_ms": (t3 - t2) * 1e3, "total_ms": (t4 - t0) * 1e3,
            "label": int(np.argmax(probs)), "probability": float(probs.max()),
            "probs": [float(p) for p in probs], "num_frames": clip.num_frames,
        }

    def windows(self, paths: list[str], per_segment: int) -> dict:
        """Probabilities of `per_segment` evenly spread windows of each segment, one forward pass
        per window as the classifier makes it. Every frame is decoded and scaled by PyAV the
        same way in every worker, so all backends see the same pixels."""
        import av

        meta, out = self.meta, []
        for path in paths:
            with av.open(path) as container:
                frames = np.stack([f.to_ndarray(format="rgb24", width=meta.resize[0],
                                                height=meta.resize[1])
                                   for f in container.decode(container.streams.video[0])])
            last = max(0, len(frames) - meta.frames)
            for start in np.linspace(0, last, per_segment).round().astype(int):
                window = frames[start: start + meta.frames]
                if len(window) < meta.frames:  # a short video: repeat its last frame
                    window = np.concatenate([window, window[-1:].repeat(meta.frames - len(window), 0)])
                x = to_tensor(window, crop=meta.crop, mean=meta.mean, std=meta.std)
                out.append([float(p) for p in self.model.predict(x)[0]])
        return {"probs": out}

    def forward(self, batch: int, repeats: int) -> dict:
        """Forward passes alone on a random batch: ms per pass (warm up with ``repeats=0``)."""
        meta = self.meta
        x = np.random.default_rng(0).standard_normal(
            (batch, 3, meta.frames, meta.crop, meta.crop)).astype(np.float32)
        if repeats == 0:
            self.model.predict(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.model.predict(x)
            times.append((time.perf_counter() - t) * 1e3)
        return {"batch": batch, "ms": times}


def main() -> None:
    state: dict = {}

    def setup(model_dir: str, backend: str, threads: int | None = None) -> dict:
        t = time.perf_counter()
        state["p"] = Pipeline(model_dir, backend, threads)
        return {"load_ms": (time.perf_counter() - t) * 1e3,
                "omp_threads": os.environ.get("OMP_NUM_THREADS")}

    def matmul(libraries: list[str], seconds: float = 1.0) -> dict:
        from benchmarks.machine import matmul_gflops

        return matmul_gflops(libraries, seconds=seconds)

    def flops(symbol_file: str, shape: list[int]) -> dict:
        from benchmarks.machine import model_gflop

        return {"gflop": model_gflop(symbol_file, tuple(shape))}

    serve({
        "setup": setup,
        "segment": lambda path, decoder="livewatch": state["p"].segment(path, decoder),
        "forward": lambda batch=1, repeats=3: state["p"].forward(batch, repeats),
        "windows": lambda paths, per_segment=4: state["p"].windows(paths, per_segment),
        "runtime": lambda: dict(state["p"].model.runtime),
        "matmul": matmul,
        "checks": lambda path: {"same_pixels": baseline.same_pixels(path)},
        "flops": flops,
    })


if __name__ == "__main__":
    main()
