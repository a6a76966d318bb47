"""The GPU check (issue 17): the ``torch`` backend's forward pass on a GPU, its agreement with
float32, and whether CPU decoding keeps up. Under 5 minutes on one H200 with 16 cores.

    benchmarks/gpu_check.sh                          # on the GPU machine (installs .whl/ first)
    python -m benchmarks.gpu_check --device cpu --quick   # here: the same steps, small and slow

What it does, in order (decoding first, before CUDA is initialised in this process):

1. makes 10 s H.264 segments at 720p30 and 1080p30 and measures decode throughput with N worker
   processes (`gpu_decode`): the daemon's one-window decode and the whole-segment decode that
   ``windows = "cover"`` needs;
2. builds I3D-ResNet50 from the skeleton made here and carried along (`gpu_weights`: graph and shapes, no weights),
   fills in deterministic weights and calibrates BatchNorm and a peaky head on 12 clips;
3. times `TorchModel.predict` (float32 host batch in, probabilities out, as the classifier
   calls it), the bare forward pass (input already on the GPU) and its CUDA-graph replay
   (`gpu_timing`) at batch 1, 5 (one segment's "cover" windows at 32x2) and 16, in fp16, fp32
   (PyTorch's default: TF32 convolutions), bf16, and fp16 without channels-last;
4. compares each precision's probabilities with ONNX Runtime float32 on the CPU (the unfolded
   graph: an independent implementation) over 64 other clips: decoded windows of the segments
   at several offsets and steps, and synthetic ones (moving, still, flipped, dimmed, noisy);
5. runs the ``i3d`` classifier itself with ``backend = "torch"`` over those segments, many at once
   as the daemon's workers give them to it, with ``max_batch`` 1 and 16 (`gpu_classifier`);
6. prints the machine, a table and a JSON summary, and writes it to ``$OUT/gpu_check.json``
   (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import gpu_classifier, gpu_decode, gpu_weights
from benchmarks.gpu_timing import median_text, timings
from benchmarks.gpu_clips import make_clips

NUM_CLASSES = 101


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["auto", "gpu", "cpu"], default="gpu")
    p.add_argument("--quick", action="store_true", help="small clips and segments (a CPU smoke run)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "benchmarks/results"))
    p.add_argument("--work", type=Path, default=Path("/tmp/livewatch-gpu-check"))
    p.add_argument("--clips", type=int, help="clips scored for agreement (64; quick: 16)")
    p.add_argument("--batches", help="batch sizes timed (1,5,16; quick: 1,2)")
    p.add_argument("--repeats", type=int, help="timed passes per batch size (30/20/10; quick: 3)")
    p.add_argument("--seconds", type=float, help="segment length (10; quick: 2)")
    args = p.parse_args(argv)
    q = args.quick
    frames, crop, resize = (8, 112, (171, 128)) if q else (32, 224, (340, 256))
    batches = tuple(int(b) for b in (args.batches or ("1,2" if q else "1,5,16")).split(","))
    report: dict = {"started": _now(), "quick": q, "device_asked": args.device,
                    "clip": {"frames": frames, "crop": crop, "resize": list(resize)}}
    report["machine"] = machine()
    _say(f"machine: {json.dumps(report['machine'])}")

    # 1. Decoding, before this process touches CUDA.
    sizes = {"720p": (1280, 720), "1080p": (1920, 1080)}
    segments = gpu_decode.make_segments(args.work / "segments", sizes, count=1 if q else 2,
                                        seconds=args.seconds or (2 if q else 10))
    cores = os.cpu_count() or 1
    workers = [2] if q else sorted({1, cores // 2, cores})
    decode, errors = [], []
    for name, files in segments.items():
        for mode in ("window", "all"):
            for n in workers:
                try:
                    row = {"resolution": name, **gpu_decode.throughput(files, mode, n)}
                except Exception as exc:  # keep going: the GPU part matters more
                    errors.append(f"decode {name} {mode} x{n}: {type(exc).__name__}: {exc}")
                    _say(f"decode {name} {mode} x{n} FAILED: {exc}")
                    continue
                decode.append(row)
                _say(f"decode {name} {mode:6s} x{n:<2d}: {row['segments_per_s']:6.2f} segments/s "
                     f"({row['ms_per_segment_per_worker']:.0f} ms per segment per worker, {row['via']})")
    report["decode"], report["errors"] = decode, errors
    args.out.mkdir(parents=True, exist_ok=True)
    _save(args.out, report)

    # 2. The network and its clips.
    import onnx
    import torch

    from livewatch.model.artifacts import ModelArtifact, ModelMeta
    from livewatch.model.backends.torch_cuda import TorchModel, describe_device

    calibration, clips, kinds = make_clips(segments, frames=frames, crop=crop, resize=resize,
                                           count=args.clips or (16 if q else 64),
                                           calibration=6 if q else 12)
    report["clips"] = {"agreement": len(clips), "calibration": len(calibration), "kinds": kinds}
    if not gpu_weights.SKELETON.is_file():
        raise SystemExit(f"{gpu_weights.SKELETON} is missing: make it where MXNet is "
                         "(`.venv/bin/python -m benchmarks.gpu_weights`) and bring it along")
    model = onnx.load(str(gpu_weights.SKELETON))
    if q:  # the skeleton declares 32x224x224; the network takes any size (global pooling)
        for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
            dim.dim_param = "S"
    started = time.perf_counter()
    gpu_weights.regenerate(model, seed=0)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    gpu_weights.calibrate(model, calibration, device="cuda" if cuda else "cpu")
    report["weights_s"] = round(time.perf_counter() - started, 2)
    artifact = ModelArtifact(directory=args.work, classes=tuple(f"class{i:03d}" for i in range(NUM_CLASSES)),
                             meta=ModelMeta(name="random-i3d-resnet50", version="seed0",
                                            frames=frames, crop=crop, resize=resize))
    report["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version() if cuda else None,
                       "tf32_convolutions": torch.backends.cudnn.allow_tf32,
                       "device": describe_device(torch, torch.device("cuda" if cuda else "cpu"))}
    _say(f"torch: {json.dumps(report['torch'])}; weights made and calibrated in {report['weights_s']} s")

    # 3. Timings (fp16 first: the headline), each precision's probabilities kept for 4.
    precisions = ("fp16", "fp32", "bf16") if cuda else ("fp32",)
    variants = [(p, True) for p in precisions] + ([("fp16", False)] if cuda else [])
    report["forward"], report["agreement"] = [], {}
    probs = {}
    for precision, channels_last in variants:
        label = precision + ("" if channels_last or not cuda else ", no channels-last")
        try:
            loaded = TorchModel.from_onnx(artifact, model, device=args.device, precision=precision,
                                          channels_last=channels_last)
            for b in batches if channels_last else (max(batches),):
                row = {"precision": label, "batch": b, **timings(
                    loaded, clips[np.arange(b) % len(clips)], torch, args.repeats or (3 if q else None))}
                report["forward"].append(row)
                _say(f"{label:24s} batch {b:2d}: predict {row['predict_ms']['median']:8.1f} ms median "
                     f"({row['predict_ms']['min']:.1f}..{row['predict_ms']['max']:.1f}), "
                     f"{row['clips_per_s']:7.1f} clips/s; forward only {row['forward_ms']['median']:.1f} ms"
                     + (f", as a CUDA graph {median_text(row['cuda_graph_ms'])}" if "cuda_graph_ms" in row else ""))
            if channels_last:
                probs[precision] = np.concatenate(
                    [loaded.predict(clips[i:i + 16]) for i in range(0, len(clips), 16)])
            del loaded
        except Exception as exc:  # keep what the other variants measure
            report["errors"].append(f"{label}: {type(exc).__name__}: {exc}")
            _say(f"{label} FAILED: {exc}")
        if cuda:
            report.setdefault("gpu_memory_peak_mib", {})[label] = round(torch.cuda.max_memory_allocated() / 2**20)
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.empty_cache()
        _save(args.out, report)

    # 4. Agreement with float32 on the CPU.
    started = time.perf_counter()
    reference = _onnxruntime(model, clips)
    report["reference_s"] = round(time.perf_counter() - started, 1)
    for precision, got in probs.items():
        report["agreement"][precision] = agreement(reference, got)
        _say(f"{precision} vs ONNX Runtime fp32 (CPU): {json.dumps(report['agreement'][precision])}")

    # 5. The classifier as the daemon drives it: decode + preprocess + batched forward passes.
    report["classifier"] = []
    try:
        model_dir = gpu_classifier.write_model_dir(args.work / "model", model, artifact.classes,
                                                   artifact.meta)
        files = [f for fs in segments.values() for f in fs]
        for max_batch in (1, max(batches)):
            row = gpu_classifier.run(model_dir, files, device=args.device, max_batch=max_batch,
                                     concurrent=max(batches), rounds=1 if q else 2)
            report["classifier"].append(row)
            _say(f"classifier, {row['concurrent']} segments at once, max_batch {max_batch}: "
                 f"{row['segments_per_s']} segments/s (decode {row['decode_ms_median']} ms, "
                 f"infer {row['infer_ms_median']} ms median per segment){row['errors'] or ''}")
    except Exception as exc:
        report["errors"].append(f"classifier: {type(exc).__name__}: {exc}")
        _say(f"classifier FAILED: {exc}")
    _save(args.out, report)

    report["summary"] = summary(report)
    report["finished"] = _now()
    _save(args.out, report)
    print(json.dumps(report["summary"], indent=1))
    _say(f"wrote {args.out / 'gpu_check.json'}")
    return report


def _save(out: Path, report: dict) -> None:
    """Written after each step too, so a run cut short still leaves what it measured."""
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")


def _onnxruntime(model, clips: np.ndarray) -> np.ndarray:
    """Float32 probabilities from ONNX Runtime on the CPU: the reference."""
    import onnxruntime as ort

    from livewatch.model.backends.onnxruntime import softmax

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([softmax(session.run(None, {name: clips[i:i + 8]})[0])
                           for i in range(0, len(clips), 8)])


def agreement(reference: np.ndarray, probs: np.ndarray) -> dict:
    """Top-1 agreement and probability differences of `probs` against `reference`."""
    top_ref, top = reference.argmax(axis=1), probs.argmax(axis=1)
    ordered = np.sort(reference, axis=1)
    return {"clips": len(reference), "top1_agree": int((top_ref == top).sum()),
            "top1_agreement": round(float((top_ref == top).mean()), 4),
            "max_abs_dprob": float(np.abs(reference - probs).max()),
            "reference_distinct_top1": int(len(set(top_ref.tolist()))),
            "reference_top1_prob_median": round(float(np.median(ordered[:, -1])), 3),
            "reference_margin_min": round(float((ordered[:, -1] - ordered[:, -2]).min()), 4)}


def summary(report: dict) -> dict:
    """The headline: clips/s per precision and batch, and decode against inference per segment."""
    best = {(r["precision"], r["batch"]): r for r in report["forward"]}
    out = {"gpu": report["machine"].get("gpu"), "torch": report["torch"],
           "clips_per_s": {f"{p} b{b}": r["clips_per_s"] for (p, b), r in best.items()},
           "agreement": {p: {k: a[k] for k in ("top1_agreement", "max_abs_dprob", "clips")}
                         for p, a in report["agreement"].items()}}
    if not report["forward"]:
        return out
    fastest = max(report["forward"], key=lambda r: r["clips_per_s"])
    windows = max(b for _, b in best if b <= 5)  # "cover" at 32x2, 30 fps: 5 windows a segment
    cover = best.get(("fp16", windows)) or best.get(("fp32", windows)) or fastest
    most = max((r["workers"] for r in report["decode"]), default=0)
    keeps_up = {}
    for row in report["decode"]:
        if row["workers"] != most:
            continue
        need = cover["clips_per_s"] / windows if row["mode"] == "all" else fastest["clips_per_s"]
        keeps_up[f"{row['resolution']} {row['mode']}"] = {
            "decode_segments_per_s": row["segments_per_s"], "workers": row["workers"],
            "infer_segments_per_s": round(need, 2),
            "infer_as": (f"{cover['precision']} batch {cover['batch']}, {windows} windows a segment"
                         if row["mode"] == "all" else
                         f"{fastest['precision']} batch {fastest['batch']}, one window a segment"),
            "decode_keeps_up": row["segments_per_s"] >= need}
    out["decode_vs_infer"] = keeps_up
    out["classifier_segments_per_s"] = {f"max_batch {r['max_batch']}": r["segments_per_s"]
                                        for r in report.get("classifier", [])}
    return out


def machine() -> dict:
    info = {"cpu_cores": os.cpu_count(), "python": platform.python_version(),
            "cpu": _first_line("/proc/cpuinfo", "model name")}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        if smi.returncode == 0 and smi.stdout.strip():
            name, driver, memory = (s.strip() for s in smi.stdout.splitlines()[0].split(","))
            info.update(gpu=name, driver=driver, gpu_memory=memory)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        info["gpu"] = None
    for module in ("av", "onnx", "onnxruntime", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def _first_line(path: str, key: str) -> str:
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), "")
    except OSError:
        return ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _say(text: str) -> None:
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {text}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
