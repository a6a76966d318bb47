"""``livewatch model quantize MODEL --calibrate DIR``: an int8 model for ``precision = "int8"``.

NNCF's post-training quantization, calibrated on the user's own segments:

1. windows spread through the video files under DIR (a few hundred: ``windows``), resized and
   center-cropped as the classifier does; the segments are split in two, a calibration part and
   a held-out part (``held_out``, by segment, so that no held-out window shares a segment with a
   calibration one);
2. NNCF quantizes the model's ONNX export on the calibration part, in its own venv
   (``.venv/tools/nncf``, see `nncf_worker`): NNCF's pins clash with MXNet's numpy<1.24;
3. the int8 model and MXNet fp32 classify the held-out windows: when their top-1 labels agree on
   fewer than ``min_agreement`` of them, nothing is written and the command fails; otherwise the
   int8 model is stored beside the ONNX export (``model-int8.xml``/``.bin``) with the agreement
   figures in ``model-int8.json``.
"""
from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from livewatch.errors import ModelError

from ..artifacts import ModelArtifact
from ..resolve import resolve_model
from .onnxruntime import export_onnx
from ..preprocess import to_tensor
from ..sample_windows import VIDEO_SUFFIXES, spread_windows, video_files
from .openvino import INT8_META, OpenVinoModel, int8_path

log = logging.getLogger(__name__)

_RUN_SCRIPT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
MIN_AGREEMENT = 0.98  # top-1 agreement with fp32 MXNet on the held-out windows


@dataclass
class Quantized:
    path: Path
    calibration_windows: int
    held_out_windows: int
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    min_agreement: float
    segments: int
    seconds: float
    nncf: str = ""
    openvino: str = ""
    created_at: str = ""


def nncf_python() -> str:
    """The interpreter that has NNCF: $LIVEWATCH_NNCF_PYTHON, the venv `make setup` makes
    (``.venv/tools/nncf``), or this one if it can import nncf."""
    if os.environ.get("LIVEWATCH_NNCF_PYTHON"):
        return os.environ["LIVEWATCH_NNCF_PYTHON"]
    tool = Path(sys.prefix) / "tools" / "nncf" / "bin" / "python"
    if tool.is_file():
        return str(tool)
    import importlib.util

    if importlib.util.find_spec("nncf"):
        return sys.executable
    raise ModelError("NNCF is not installed: `make setup` installs it in .venv/tools/nncf (its "
                     "pins clash with MXNet's numpy), or set LIVEWATCH_NNCF_PYTHON to a Python "
                     "that has nncf and openvino")


def quantize(model: str, calibrate: Path, *, windows: int = 300, held_out: float = 0.25,
             min_agreement: float = MIN_AGREEMENT, cache_dir: Path | None = None,
             seed: int = 0) -> Quantized:
    """Make, check and store `model`'s int8 version (see the module's docstring). Blocking."""
    started = time.perf_counter()
    python = nncf_python()
    artifact = resolve_model(model, cache_dir)
    videos = video_files(calibrate)
    if len(videos) < 2:
        raise ModelError(f"--calibrate {calibrate}: found {len(videos)} video files "
                         f"({', '.join(VIDEO_SUFFIXES)}); at least 2 segments are needed, "
                         "a few dozen to be representative")
    random.Random(seed).shuffle(videos)
    n_held = min(len(videos) - 1, max(1, round(len(videos) * held_out)))
    held, calib = videos[:n_held], videos[n_held:]
    per_segment = max(1, -(-windows // len(videos)))
    onnx_path = export_onnx(artifact)
    final = int8_path(artifact)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=final.parent) as tmp:
        calib_file = Path(tmp) / "calibration.npy"
        count = _write_windows(artifact, calib, per_segment, calib_file)
        log.info("calibrating on %d windows of %d segments (%d segments held out)", count,
                 len(calib), len(held))
        out = Path(tmp) / final.name
        versions = _run_nncf(python, artifact, onnx_path, calib_file, out)
        calib_file.unlink()
        result = _check(artifact, out, held, per_segment)
        result.update(calibration_windows=count, min_agreement=min_agreement,
                      segments=len(videos), nncf=versions["nncf"], openvino=versions["openvino"])
        if result["top1_agreement"] < min_agreement:
            raise ModelError(
                f"refused: the int8 model's top-1 label agrees with fp32 MXNet on "
                f"{result['top1_agreement']:.1%} of {result['held_out_windows']} held-out windows, "
                f"below the required {min_agreement:.1%} (max |probability difference| "
                f"{result['max_abs_diff']:.3f}); nothing was written. Calibrate on more, or more "
                "varied, segments, or lower --min-agreement")
        for suffix in (".bin", ".xml"):  # the .xml last: it is what `load` looks for
            os.replace(out.with_suffix(suffix), final.with_suffix(suffix))
    quantized = Quantized(path=final, seconds=round(time.perf_counter() - started, 1),
                          created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          **result)
    figures = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(quantized).items()}
    figures["calibrate"] = str(calibrate)
    final.with_name(INT8_META).write_text(json.dumps(figures, indent=2) + "\n")
    return quantized


def _run_nncf(python: str, artifact: ModelArtifact, onnx_path: Path, windows: Path, out: Path) -> dict:
    """Quantize `onnx_path` into `out` (IR) in NNCF's venv; its and OpenVINO's versions."""
    meta = artifact.meta
    # Not `python nncf_worker.py`: its folder would come first on sys.path, and this package's
    # openvino.py would shadow OpenVINO. runpy leaves sys.path alone; cwd is the scratch folder,
    # so every path goes absolute (a model given as a relative path works too).
    done = subprocess.run(
        [python, "-c", _RUN_SCRIPT, str(Path(__file__).with_name("nncf_worker.py")),
         *(str(p.resolve()) for p in (onnx_path, windows, out)), "--mean", *map(str, meta.mean), "--std", *map(str, meta.std)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent)
    if done.returncode != 0:
        raise ModelError(f"NNCF failed to quantize {onnx_path}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_windows(artifact: ModelArtifact, videos: list[Path], per_segment: int, out: Path) -> int:
    meta = artifact.meta
    rows = [w for v in videos for w in spread_windows(artifact, v, per_segment)]
    if not rows:
        raise ModelError("no calibration window could be decoded")
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8,
                                      shape=(len(rows), meta.frames, meta.crop, meta.crop, 3))
    for i, row in enumerate(rows):
        array[i] = row
    array.flush()
    return len(rows)


def _check(artifact: ModelArtifact, int8_xml: Path, videos: list[Path], per_segment: int) -> dict:
    """Top-1 agreement and probability differences of the int8 model against MXNet fp32."""
    from .mxnet import MXNetModel

    meta = artifact.meta
    fp32 = MXNetModel.load(artifact, device="cpu")
    int8 = OpenVinoModel.load(artifact, precision="int8", path=int8_xml)
    same, diffs = 0, []
    for video in videos:
        for window in spread_windows(artifact, video, per_segment):
            x = to_tensor(window, crop=meta.crop, mean=meta.mean, std=meta.std)
            a, b = fp32.predict(x)[0], int8.predict(x)[0]
            same += int(a.argmax() == b.argmax())
            diffs.append(float(np.abs(a - b).max()))
    if not diffs:
        raise ModelError("no held-out window could be decoded")
    return {"held_out_windows": len(diffs), "top1_agreement": same / len(diffs),
            "max_abs_diff": max(diffs), "mean_abs_diff": float(np.mean(diffs))}

