"""The OpenVINO phase of ``make bench`` (issue 17): fused MXNet fp32 against OpenVINO fp32, bf16
(where the CPU has a native bf16 unit) and int8 (where ``livewatch model quantize`` made one).

- **Forward pass per clip** (1x3x32x224x224), the backends taking turns pass by pass, each in a
  worker process of its own (`benchmarks.livewatch_worker`): min / median / max of each and the
  ratios MXNet ÷ OpenVINO of the medians and of the bests.
- **What the cores allow**: OpenVINO's GEMM rate in f32 and bf16 around the passes, each backend's
  rate on the I3D, and so the most bf16 can gain over fused MXNet on this CPU (`ceiling`).
- **Agreement** with fp32 MXNet: top-1 and max |Δprobability| over windows spread through varied
  segments (moving pictures, 360p/720p/1080p, the x264 ``live`` and the ``lowlatency`` encoder
  profiles), on a randomly initialised I3D-ResNet50 with a peaky head (`benchmarks.model`), and on
  the demo's trained model over its own labelled videos.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.openvino import bf16_unit, cpu_flags, cpu_model, int8_path, int8_unit

from . import daemon_run
from .worker import ROOT, Worker

FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def run(cache: Path, base_model: Path, media: dict[str, dict[str, list[Path]]], *, repeats: int,
        windows: int, logs: Path, demo: bool, quantize: bool, soak: int,
        say: Callable[[str], None]) -> dict:
    flags = cpu_flags()
    out: dict = {"cpu": cpu_model(), "flags": [f for f in FLAGS if f in flags],
                 "bf16_unit": bf16_unit(flags), "int8_unit": int8_unit(flags)}
    say(f"openvino: {out['cpu']}, flags {' '.join(out['flags']) or 'none'}; native bf16: "
        f"{out['bf16_unit'] or 'no'}; int8 dot products: {out['int8_unit'] or 'no'}")
    firsts = [str(files[0]) for by_res in media.values() for files in by_res.values()]  # not measured
    peaky = _model(cache / "model-peaky-centred", "--peaky", str(base_model), *firsts)
    if quantize and not int8_path(load_artifact(peaky)).is_file():
        out["quantize"] = _quantize(peaky, [Path(f) for f in firsts], cache / "calibration", say)
    backends = _backends(peaky, out["bf16_unit"])
    segments = [files[k] for by_res in media.values() for files in by_res.values()
                for k in range(1, len(files))]
    per_segment = max(2, -(-windows // len(segments)))
    with _workers(peaky, backends, logs) as workers:
        out["runtime"] = {n: w.call("runtime") for n, w in workers.items()}
        before = gemm_rates(workers)
        out["forward"] = forward(workers, repeats)
        say("  forward pass per clip (ms): " + ", ".join(
            f"{n} {v['median_ms']:.0f} (best {v['min_ms']:.0f})" for n, v in out["forward"].items()))
        gflop = workers["mxnet"].call("flops", symbol_file=str(peaky / "model-symbol.json"),
                                      shape=[1, 3, 32, 224, 224])["gflop"]
        out["ceiling"] = ceiling(out["forward"], gflop, before, gemm_rates(workers))
        if "bf16_max_speedup" in out["ceiling"]:
            say(f"  bf16 can be at most {out['ceiling']['bf16_max_speedup']:.2f}x fused MXNet on "
                "this CPU (its bf16 GEMM rate over MXNet's rate on the I3D)")
        out["agreement"] = {"random-i3d-peaky": agreement(workers, segments, per_segment)}
        out["memory_mib"] = {n: w.call("memory") for n, w in workers.items()}
    if demo:
        say("  the demo's trained model (trained once, then cached) ...")
        trained = _model(cache / "demo", "--demo")
        videos = sorted((cache / "demo" / "data").glob("*/*.mp4"))
        picked = videos[:: max(1, len(videos) // 20)][:20]  # every class, spread
        if quantize and not int8_path(load_artifact(trained)).is_file():
            others = [v for v in videos if v not in picked][::2]
            out["quantize_demo"] = _quantize(trained, others, cache / "calibration-demo", say)
        with _workers(trained, _backends(trained, out["bf16_unit"]), logs) as workers:
            out["agreement"]["demo-trained"] = agreement(workers, [str(v) for v in picked],
                                                         max(3, -(-windows // len(picked))))
    if soak:
        say(f"  daemon with backend openvino: resident memory over {soak} 360p segments ...")
        segs = next(iter(media.values()))["360p"][1:]
        out["daemon_soak"] = daemon_run.soak_memory(cache / "daemon-openvino", peaky, segs, soak,
                                                    backend="openvino", say=say)
    for model, by_backend in out["agreement"].items():
        say(f"  agreement on {model}: " + ", ".join(
            f"{n} top-1 {a['top1_same']}/{a['windows']}, max |dp| {a['max_abs_diff']:.1e}"
            for n, a in by_backend.items()))
    return out


def _quantize(model_dir: Path, segments: list[Path], folder: Path, say) -> dict:
    """`livewatch model quantize` on the segments the agreement check does not use."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, seg in enumerate(segments):
        link = folder / f"{i:02d}-{seg.parent.parent.name}-{seg.parent.name}{seg.suffix}"
        if not link.exists():
            link.symlink_to(seg.resolve())
    say(f"  int8: livewatch model quantize on {len(segments)} segments (once, then cached) ...")
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("livewatch")), "model", "quantize",
                           str(model_dir), "--calibrate", str(folder), "--windows",
                           str(8 * len(segments)), "--min-agreement", "0"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        say(f"  int8: quantize failed, no int8 column:\n{done.stdout[-2000:]}")
        return {"error": done.stdout[-2000:]}
    say("  int8: " + done.stdout.strip().splitlines()[-1])
    return {"seconds": round(time.monotonic() - started),
            **json.loads((model_dir / "model-int8.json").read_text())}


def _backends(model_dir: Path, bf16: str | None) -> list[str]:
    names = ["mxnet", "openvino-fp32"]
    if bf16:
        names.append("openvino-bf16")
    if int8_path(load_artifact(model_dir)).is_file():
        names.append("openvino-int8")
    return names


def _model(directory: Path, *args: str) -> Path:
    done = subprocess.run([sys.executable, "-m", "benchmarks.model", str(directory.resolve()), *args],
                          cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


class _workers(dict):
    """The backends' worker processes on one model, closed on exit."""

    def __init__(self, model_dir: Path, backends: list[str], logs: Path):
        super().__init__()
        try:
            for name in backends:
                self[name] = Worker(name, "benchmarks.livewatch_worker",
                                    log=open(logs / f"ov-{name}.log", "w"))
                self[name].setup = self[name].call("setup", model_dir=str(model_dir), backend=name)
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for w in self.values():
            w.close()


def forward(workers: dict[str, Worker], repeats: int) -> dict:
    """Passes at batch 1, the backends taking turns (who goes first rotates)."""
    names = list(workers)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:
        workers[n].call("forward", batch=1, repeats=0)  # warm-up
    for rep in range(repeats):
        for n in names[rep % len(names):] + names[: rep % len(names)]:
            times[n] += workers[n].call("forward", batch=1, repeats=1)["ms"]
    out = {n: {"ms": [round(t, 1) for t in ts], "min_ms": min(ts), "median_ms": statistics.median(ts),
               "max_ms": max(ts)} for n, ts in times.items()}
    base = out["mxnet"]
    for n in names[1:]:
        out[n]["speedup_median"] = base["median_ms"] / out[n]["median_ms"]
        out[n]["speedup_best"] = base["min_ms"] / out[n]["min_ms"]
    return out


def gemm_rates(workers: dict[str, Worker]) -> dict:
    """OpenVINO's GEMM rate in f32 and (where native) bf16, measured in a worker between passes."""
    return workers["mxnet"].call("matmul", libraries=["openvino"], seconds=0.5)


# The GEMM rate each backend's arithmetic is bounded by (int8 has none measured here).
_GEMM_OF = {"mxnet": "openvino_f32", "openvino-fp32": "openvino_f32", "openvino-bf16": "openvino_bf16"}


def ceiling(forward: dict, gflop: float, *rates: dict) -> dict:
    """What the cores allow: each backend's rate on the I3D at its best pass, beside the GEMM rate
    of its precision (the best measured before and after the passes), and the most that bf16 can
    gain over fused MXNet on this CPU: the bf16 GEMM rate over MXNet's rate on the I3D. Where bf16
    arithmetic is only twice as fast as f32 (AVX512-BF16) and MXNet already runs near the f32
    rate, that ceiling is below 2.5x whatever the bf16 kernels do; AMX lifts it."""
    gemm = {k: max(r[k] for r in rates if k in r) for k in {k for r in rates for k in r}}
    i3d = {n: gflop / (v["min_ms"] / 1e3) for n, v in forward.items()}
    out = {"gflop": gflop, "gemm_gflops": gemm, "i3d_gflops": i3d,
           "share_of_gemm": {n: i3d[n] / gemm[_GEMM_OF[n]] for n in i3d if _GEMM_OF.get(n) in gemm}}
    if "openvino_bf16" in gemm:
        out["bf16_max_speedup"] = gemm["openvino_bf16"] / i3d["mxnet"]
    return out


def agreement(workers: dict[str, Worker], paths: list[str], per_segment: int) -> dict:
    probs = {n: w.call("windows", paths=[str(p) for p in paths], per_segment=per_segment)["probs"]
             for n, w in workers.items()}
    ref = probs["mxnet"]
    out = {}
    for n, rows in probs.items():
        if n == "mxnet":
            continue
        same = sum(_argmax(a) == _argmax(b) for a, b in zip(rows, ref))
        out[n] = {"windows": len(ref), "segments": len(paths), "top1_same": same,
                  "top1_share": same / len(ref),
                  "max_abs_diff": max(abs(x - y) for a, b in zip(rows, ref) for x, y in zip(a, b)),
                  "labels_seen": len({_argmax(b) for b in ref})}
    return out


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def render(ov: dict) -> str:
    lines = [f"OpenVINO against fused MXNet fp32 on {ov['cpu']} (flags: {' '.join(ov['flags'])}; "
             f"native bf16: {ov['bf16_unit'] or 'none'}; int8: {ov['int8_unit'] or 'no VNNI/AMX'})",
             "  forward pass per clip, 1x3x32x224x224, backends taking turns (ms):",
             f"    {'':16}{'min':>7}{'median':>8}{'max':>7}   ratio median   ratio best"]
    for n, v in ov["forward"].items():
        ratio = (f"   {v['speedup_median']:>10.2f}x  {v['speedup_best']:>10.2f}x"
                 if "speedup_median" in v else "")
        lines.append(f"    {n:16}{v['min_ms']:>7.0f}{v['median_ms']:>8.0f}{v['max_ms']:>7.0f}{ratio}")
    c = ov.get("ceiling")
    if c:
        lines.append("  what the cores allow: GEMM on OpenVINO " + ", ".join(
            f"{k.removeprefix('openvino_')} {v:.0f}" for k, v in sorted(c["gemm_gflops"].items()))
            + f" GFLOP/s; the I3D ({c['gflop']:.1f} GFLOP per clip) at its best pass: " + ", ".join(
            f"{n} {v:.0f}" + (f" ({c['share_of_gemm'][n]:.0%} of {_GEMM_OF[n].removeprefix('openvino_')}"
                              " GEMM)" if n in c["share_of_gemm"] else "")
            for n, v in c["i3d_gflops"].items()) + " GFLOP/s")
        if "bf16_max_speedup" in c:
            lines.append(f"  so bf16 can be at most {c['bf16_max_speedup']:.2f}x fused MXNet on "
                         "this CPU (bf16 GEMM rate / MXNet's I3D rate)")
    for model, by_backend in ov["agreement"].items():
        lines.append(f"  agreement with MXNet fp32, {model}:")
        for n, a in by_backend.items():
            lines.append(f"    {n:16}top-1 same on {a['top1_same']}/{a['windows']} windows "
                         f"({a['segments']} segments, {a['labels_seen']} labels seen), "
                         f"max |dp| {a['max_abs_diff']:.1e}")
    for key, model in (("quantize", "random-i3d-peaky"), ("quantize_demo", "demo-trained")):
        q = ov.get(key)
        if q and "error" not in q:
            lines.append(f"  int8 of {model} (NNCF {q['nncf']}): calibrated on {q['calibration_windows']} "
                         f"windows, held-out top-1 {q['top1_agreement']:.1%} of {q['held_out_windows']}, "
                         f"max |dp| {q['max_abs_diff']:.1e}, {q['seconds']} s")
    s = ov.get("daemon_soak")
    if s:
        after = ", ".join(f"{k}: {v:.0f}" for k, v in s["rss_mib_after"].items())
        lines.append(f"  daemon, backend openvino ({s['segments']} segments, "
                     f"{s['segments_per_s']:.2f} seg/s): RSS after {after} MiB; peak "
                     f"{s['memory']['peak_mib']:.0f} MiB; growth after warm-up "
                     f"{s['growth_mib_after_warmup']:+.1f} MiB")
    if "memory_mib" in ov:
        lines.append("  peak resident memory per process (MiB): " + ", ".join(
            f"{n} {m['peak_mib']:.0f}" for n, m in ov["memory_mib"].items()))
    return "\n".join(lines)
