"""What seeing the whole segment costs: ``windows = "center"`` against ``"cover"`` (issue 13).

    python -m benchmarks.windows_bench [--quick] [--backends mxnet,openvino] [--resolutions 360p,720p]

The real `i3d` classifier (decode, preprocess, forward pass, as the daemon calls it) on the
benchmark's 10 s live segments (`benchmarks.media`, x264 ``veryfast``), with a randomly initialised
I3D-ResNet50 at GluonCV's zoo stride (32 frames every 2nd: ``step = 2``, so ``cover`` takes 5
windows of a 30 fps segment). For each backend and resolution the two modes take turns, segment by
segment, so a change in the machine's load falls on both. Prints seconds per segment (median, min,
max), the ratio, and the live streams this machine sustains in each mode (10 s / median: one
classifier using every core). Writes ``benchmarks/results/windows.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
from pathlib import Path

from .machine import cpu_info, load_average
from .media import RESOLUTIONS, SEGMENT_SECONDS, ensure_media
from .model import ensure_model

HERE = Path(__file__).resolve().parent
MODES = ("center", "cover")


def zoo_stride_model(cache: Path) -> Path:
    """The benchmark's random I3D with GluonCV's zoo stride (``step = 2``) in its model.json."""
    source = ensure_model(cache / "model")
    target = cache / "model-step2"
    if not (target / "model.json").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)
        meta = json.loads((target / "model.json").read_text())
        meta["step"] = 2
        (target / "model.json").write_text(json.dumps(meta))
    return target


async def measure(model: Path, backend: str, segments: list[Path], repeats: int) -> dict:
    from livewatch.model.i3d_classifier import I3DClassifier
    from livewatch.segment_files import file_segment

    classifiers = {mode: I3DClassifier(I3DClassifier.Options(
        model=str(model), backend=backend, windows=mode, device="cpu")) for mode in MODES}
    for classifier in classifiers.values():
        await classifier.start()
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    windows: dict[str, int] = {}
    try:
        for mode in MODES:  # warm-up: first pass at each batch size
            await classifiers[mode].classify(file_segment(segments[0]))
        for i in range(repeats):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                segment = segments[i % len(segments)]
                started = time.perf_counter()
                detection = await classifiers[mode].classify(file_segment(segment))
                seconds[mode].append(time.perf_counter() - started)
                assert detection.ok, detection.error
                windows[mode] = len(detection.windows)
    finally:
        for classifier in classifiers.values():
            await classifier.close()
    out = {}
    for mode in MODES:
        median = statistics.median(seconds[mode])
        out[mode] = {"median_s": round(median, 3), "min_s": round(min(seconds[mode]), 3),
                     "max_s": round(max(seconds[mode]), 3), "windows": windows[mode],
                     "streams": round(SEGMENT_SECONDS / median, 1)}
    out["cover_over_center"] = round(out["cover"]["median_s"] / out["center"]["median_s"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 segments a mode (default 7)")
    parser.add_argument("--backends", default="mxnet,openvino", help="comma-separated")
    parser.add_argument("--resolutions", default=",".join(RESOLUTIONS), help="comma-separated")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "windows.json")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    cpu = cpu_info()
    print(f"CPU: {cpu}")
    model = zoo_stride_model(args.cache)
    media = ensure_media(args.cache, args.resolutions.split(","))
    results = {"cpu": cpu, "load_before": load_average(), "repeats": repeats, "rows": {}}
    print(f"{'backend':<10} {'res':<6} {'center s':>9} {'cover s':>9} {'windows':>8} "
          f"{'cover/center':>13} {'streams center':>15} {'streams cover':>14}")
    for backend in args.backends.split(","):
        for name, segments in media.items():
            row = asyncio.run(measure(model, backend, segments[1:], repeats))
            results["rows"][f"{backend} {name}"] = row
            c, v = row["center"], row["cover"]
            print(f"{backend:<10} {name:<6} {c['median_s']:>9.2f} {v['median_s']:>9.2f} "
                  f"{c['windows']:>3} / {v['windows']:<3} {row['cover_over_center']:>12.2f}x "
                  f"{c['streams']:>15.1f} {v['streams']:>14.1f}", flush=True)
    results["load_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"(min..max per row in {args.out}; load average {results['load_before']} -> "
          f"{results['load_after']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
