"""`gpu_check`'s classifier step: the real ``i3d`` classifier with ``backend = "torch"``, as the
daemon drives it: many segments in classification at once (``daemon.workers``), each decoded
and preprocessed on the classifier's one executor thread, the waiting clips sharing forward passes
up to ``max_batch``. Segments per second end to end, against the forward pass alone.

The artifact format wants MXNet's two files; the torch backend reads only the ``model.onnx``
beside them (newer than the params file, so never exported again): empty placeholders stand in.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np


def write_model_dir(directory: Path, model, classes: tuple[str, ...], meta) -> Path:
    """A model directory holding `model` (an ``onnx.ModelProto`` with weights) as its export."""
    import onnx

    from livewatch.model.artifacts import CLASSES_FILE, META_FILE, PARAMS_FILE, SYMBOL_FILE
    from livewatch.model.backends.onnxruntime import ONNX_FILE

    directory.mkdir(parents=True, exist_ok=True)
    (directory / SYMBOL_FILE).write_text("{}\n")
    (directory / PARAMS_FILE).write_bytes(b"")
    (directory / CLASSES_FILE).write_text("\n".join(classes) + "\n")
    (directory / META_FILE).write_text(meta.model_dump_json(exclude_none=True) + "\n")
    onnx.save(model, str(directory / ONNX_FILE))  # written last: newer than the params file
    return directory


def run(model_dir: Path, files: list[Path], *, device: str, max_batch: int, concurrent: int,
        rounds: int = 2) -> dict:
    """`rounds` timed rounds of `concurrent` segments at once (after one untimed round)."""
    return asyncio.run(_run(model_dir, files, device, max_batch, concurrent, rounds))


async def _run(model_dir, files, device, max_batch, concurrent, rounds) -> dict:
    from livewatch.contract import Segment
    from livewatch.model.i3d_classifier import I3DClassifier

    options = I3DClassifier.Options(model=str(model_dir), backend="torch", device=device,
                                    max_batch=max_batch, top_k=1)
    classifier = I3DClassifier(options)
    await classifier.start()
    jobs = [files[k % len(files)] for k in range(concurrent)]

    async def one_round(tag: str):
        segments = [Segment(uri=f"{path}#{tag}{k}", stream=f"s{k}", open=lambda p=path: open(p, "rb"))
                    for k, path in enumerate(jobs)]
        return await asyncio.gather(*(classifier.classify(s) for s in segments))

    try:
        await one_round("warm")  # cuDNN autotunes the batch sizes this run makes
        started = time.perf_counter()
        detections = [d for r in range(rounds) for d in await one_round(f"r{r}")]
        seconds = time.perf_counter() - started
    finally:
        await classifier.close()
    errors = sorted({d.error for d in detections if not d.ok})
    return {"max_batch": max_batch, "concurrent": concurrent, "segments": len(detections),
            "seconds": round(seconds, 2), "segments_per_s": round(len(detections) / seconds, 2),
            "decode_ms_median": round(float(np.median([d.decode_ms for d in detections])), 1),
            "infer_ms_median": round(float(np.median([d.infer_ms for d in detections])), 1),
            "labels": len({d.label for d in detections}), "errors": errors}
