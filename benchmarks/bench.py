"""livewatch against the reference pipeline, stage by stage and end to end: ``make bench``.

    make bench [QUICK=1] [BENCH_ARGS="--resolutions 720p --no-daemon ..."]
    python -m benchmarks.bench [--quick] [--repeats N] [--soak N] [--no-daemon] [--no-onnx]

``--quick`` (``QUICK=1``): 3 runs after 1 warm-up, the ``live`` profile only, a 20-segment soak:
about 2-3 minutes on 2 cores. The full run (7 runs, both profiles, 200-segment soak) about 10.

Pipelines, each in a worker process of its own (`benchmarks.worker`), called in turn, request by
request, on the same segment files, so a change in the machine's load falls on all of them:

- ``reference``: the original sample's endpoint (`benchmarks.reference_worker`);
- ``before``: livewatch before the speed work (`benchmarks.baseline`: its decoding, MXNet
  hybridized with static memory but without oneDNN fusion);
- ``+decode``: that with livewatch's decoding as it is now (non-reference frames before the
  window skipped, frames scaled on a second thread while the decoder goes on);
- ``livewatch``: the `i3d` classifier's code as it is (`benchmarks.livewatch_worker`): the above
  plus MXNet's oneDNN fusion;
- ``onnxrt``: the same with ``backend = "onnxruntime"`` (`livewatch.model.backends.onnxruntime`).

Then the OpenVINO phase (`benchmarks.openvino_bench`, ``--only-openvino`` for it alone): fused
MXNet fp32 against OpenVINO fp32 / bf16 / int8, forward pass and agreement.

Then the forward pass alone against the machine's matrix-multiply rate, the real daemon
(`benchmarks.daemon_run`), and whole ``cover`` segments through it with decoding overlapped with
the forward pass or not (`benchmarks.daemon_throughput`; alone: ``python -m
benchmarks.daemon_throughput --quick``). Writes ``benchmarks/results/latest.json`` and prints a table.
``benchmarks/results/`` and ``benchmarks/.cache/`` (segments, models) are not versioned: results
belong to the machine and the moment they were measured on; the run the README quotes is kept as
``benchmarks/reference-run.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import daemon_run, daemon_throughput, openvino_bench, report
from .machine import cpu_info, load_average
from .media import PROFILES, RESOLUTIONS, SEGMENT_SECONDS, ensure_media
from .worker import ROOT, Worker

HERE = Path(__file__).resolve().parent
STAGES = ("decode_ms", "preprocess_ms", "infer_ms", "total_ms")

#: column -> (worker, decoder); workers: name -> (module, setup arguments)
COLUMNS = {
    "reference": ("reference", None),
    "before": ("unfused", "before"),
    "+decode": ("unfused", "livewatch"),
    "livewatch": ("mxnet", "livewatch"),
    "onnxrt": ("onnxruntime", "livewatch"),
}
WORKERS = {
    "reference": ("benchmarks.reference_worker", {}),
    "unfused": ("benchmarks.livewatch_worker", {"backend": "mxnet-unfused"}),
    "mxnet": ("benchmarks.livewatch_worker", {"backend": "mxnet"}),
    "onnxruntime": ("benchmarks.livewatch_worker", {"backend": "onnxruntime"}),
}
#: columns whose probabilities must equal the "before" column's (the same pixels go in)
SAME_PROBS = ("+decode", "livewatch", "onnxrt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="few repeats, one profile, short soak: a smoke test of a few minutes")
    parser.add_argument("--repeats", type=int, default=None, help="measured runs per stage (default 7)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured runs first (default 2)")
    parser.add_argument("--soak", type=int, default=None, help="segments in the memory soak (default 200)")
    parser.add_argument("--resolutions", default=",".join(RESOLUTIONS), help="comma-separated")
    parser.add_argument("--profiles", default=None,
                        help="encoder profiles to measure stages on; the first one also runs the daemon")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon run")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime backend")
    parser.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO phase")
    parser.add_argument("--no-throughput", action="store_true",
                        help="skip whole segments through the daemon, overlapped or not "
                        "(`benchmarks.daemon_throughput`)")
    parser.add_argument("--only-openvino", action="store_true",
                        help="only the OpenVINO phase (forward pass and agreement, issue 17)")
    parser.add_argument("--no-int8", action="store_true",
                        help="OpenVINO phase: no int8 (`livewatch model quantize`, NNCF) column")
    parser.add_argument("--no-demo-model", action="store_true",
                        help="OpenVINO phase: skip the agreement on the demo's trained model")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="media and models")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.profiles = args.profiles or (PROFILES[0] if args.quick else ",".join(PROFILES))
    soak = args.soak if args.soak is not None else (20 if args.quick else 200)
    names = [n.strip() for n in args.resolutions.split(",") if n.strip()]
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    started = time.monotonic()

    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": cpu_info(), "load_start": load_average(),
        "settings": {"repeats": repeats, "warmup": args.warmup, "soak": soak, "quick": args.quick,
                     "profiles": profiles},
    }
    say(f"livewatch benchmark: {results['machine']['cores']} cores ({results['machine']['model']}), "
        f"load average {results['load_start']}")
    say("  segments and model (made once, then cached in benchmarks/.cache) ...")
    media = {p: ensure_media(args.cache / "media", names, p) for p in profiles}
    model_dir = (args.cache / "model").resolve()
    subprocess.run([sys.executable, "-m", "benchmarks.model", str(model_dir)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    onnx = not args.no_onnx and all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))
    if not args.no_onnx and not onnx:
        say("  (onnxruntime/onnx not installed: the onnx column is skipped)")
    logs = args.out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    openvino = not args.no_openvino and all(importlib.util.find_spec(m) for m in ("openvino", "onnx"))
    if not args.no_openvino and not openvino:
        say("  (openvino/onnx not installed: the OpenVINO phase is skipped)")
    workers: dict[str, Worker] = {}
    try:
        if args.only_openvino:
            raise _OnlyOpenVino
        for name, (module, setup) in WORKERS.items():
            if name == "onnxruntime" and not onnx:
                continue
            say(f"  loading {name} ...")
            workers[name] = Worker(name, module, log=open(logs / f"{name}.log", "w"))
            workers[name].setup = workers[name].call("setup", model_dir=str(model_dir), **setup)
        if workers["reference"].setup.get("av_imported"):
            raise RuntimeError("the reference worker imported PyAV; decord and PyAV must not share a process")
        first = media[profiles[0]][names[-1]][1]
        results["checks"] = {
            "reference_steps_same_as_dataset": workers["reference"].call("check", path=str(first))["same_as_dataset"],
            "decode_same_pixels_as_before": all(
                workers["mxnet"].call("checks", path=str(m[n][1]))["same_pixels"]
                for m in media.values() for n in names),
        }
        results["load_ms"] = {k: round(w.setup["load_ms"]) for k, w in workers.items() if "load_ms" in w.setup}
        matmul_before = matmul(workers)
        results["stages"] = {}
        for profile in profiles:
            say(f"stages, {profile} profile:")
            results["stages"][profile] = run_stages(workers, media[profile], repeats, args.warmup)
        results["forward"] = run_forward(workers, model_dir, repeats, matmul_before)
        results["memory_mib"] = {k: w.call("memory") for k, w in workers.items()}
    except _OnlyOpenVino:
        pass
    finally:
        for w in workers.values():
            w.close()
    if openvino:
        say("openvino: forward pass and agreement against fused MXNet fp32")
        results["openvino"] = openvino_bench.run(
            args.cache, model_dir, {p: ensure_media(args.cache / "media", names, p) for p in PROFILES},
            repeats=max(repeats, 5), windows=50 if args.quick else 100,
            logs=logs, demo=not args.no_demo_model, quantize=not args.no_int8,
            soak=0 if args.no_daemon else soak, say=say)

    if not args.no_daemon and not args.only_openvino:
        say(f"daemon: `livewatch run` on a folder of live streams ({profiles[0]} profile)")
        results["daemon"] = daemon_run.run(
            args.cache / "daemon", model_dir, media[profiles[0]], latency=3,
            backlog=3 if args.quick else 6, soak=soak, soak_resolution=names[0], say=say)
        results["daemon"]["profile"] = profiles[0]
        say("daemon: a burst of segments, 1 worker against 4 workers batching up to 4")
        results["batching"] = daemon_run.batching(
            args.cache / "batching", model_dir, media[profiles[0]], segments=4 if args.quick else 8,
            rounds=1 if args.quick else 2, say=say)
    if not args.no_daemon and not args.only_openvino and not args.no_throughput and openvino:
        say("daemon throughput: whole segments (cover), decoding overlapped with the forward pass or not")
        results["throughput"] = daemon_throughput.run(
            args.cache, resolutions=[n for n in names if n != "360p"] or names,
            segments=6 if args.quick else 8, rounds=2 if args.quick else 3,
            soak=30 if args.quick else soak, say=say)
    results["load_end"] = load_average()
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    if not args.only_openvino:
        print(report.render(results) + "\n")
    if "openvino" in results:
        print(openvino_bench.render(results["openvino"]))
    if "throughput" in results:
        print("\n" + daemon_throughput.render(results["throughput"]))
    shown = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    print(f"\nresults: {shown}  ({results['seconds']:.0f} s)")
    return 0


class _OnlyOpenVino(Exception):
    """--only-openvino: the stages and the forward-pass comparison of the other backends are skipped."""


def say(message: str) -> None:
    print(message, flush=True)


def run_stages(workers: dict[str, Worker], media: dict[str, list[Path]], repeats: int, warmup: int) -> dict:
    columns = {c: spec for c, spec in COLUMNS.items() if spec[0] in workers}
    order = list(columns)
    out = {}
    for name, files in media.items():
        segs = files[1:]
        samples: dict[str, list[dict]] = {c: [] for c in columns}
        agreement: dict[str, float] = {}
        for rep in range(warmup + repeats):
            path = str(segs[rep % len(segs)])
            probs = {}
            for column in order[rep % len(order):] + order[: rep % len(order)]:  # rotate who goes first
                worker, decoder = columns[column]
                request = {"path": path} if decoder is None else {"path": path, "decoder": decoder}
                r = workers[worker].call("segment", **request)
                probs[column] = r.pop("probs", None)
                if rep >= warmup:
                    samples[column].append(r)
            for column in SAME_PROBS:  # the same pixels in, so the same probabilities out
                if probs.get(column) and probs.get("before"):
                    diff = max(abs(a - b) for a, b in zip(probs[column], probs["before"]))
                    agreement[column] = max(agreement.get(column, 0.0), diff)
        out[name] = {
            "median": {c: {s: round(statistics.median(r[s] for r in rs), 1) for s in STAGES}
                       for c, rs in samples.items()},
            "samples": samples,
            "max_abs_prob_diff_vs_before": agreement,
            "segment_seconds": SEGMENT_SECONDS,
            "fps": RESOLUTIONS[name][1],
            "size": RESOLUTIONS[name][0],
        }
        m = out[name]["median"]
        say(f"  {name}: whole segment " + ", ".join(f"{c} {m[c]['total_ms']:.0f} ms" for c in m))
    return out


def matmul(workers: dict[str, Worker]) -> dict:
    rates = workers["mxnet"].call("matmul", libraries=["numpy", "mxnet"])
    if "onnxruntime" in workers:
        rates.update(workers["onnxruntime"].call("matmul", libraries=["onnxruntime"]))
    return rates


def run_forward(workers: dict[str, Worker], model_dir: Path, repeats: int, matmul_before: dict) -> dict:
    """The forward pass alone (batch 1 and 2) on each backend, the backends taking turns pass by
    pass, and the machine's GEMM rate: before the stages, between the passes and after them;
    the best of all is the limit the passes are compared with."""
    out = {"matmul_before": matmul_before, "gflop": workers["mxnet"].call(
        "flops", symbol_file=str(model_dir / "model-symbol.json"), shape=[1, 3, 32, 224, 224])["gflop"]}
    names = [n for n in ("unfused", "mxnet", "onnxruntime") if n in workers]
    times: dict[str, dict[int, list[float]]] = {n: {1: [], 2: []} for n in names}
    during: dict[str, float] = {}
    for batch, runs in ((1, repeats), (2, max(2, repeats // 2))):  # a new shape: warm up again
        for n in names:
            workers[n].call("forward", batch=batch, repeats=0)
        for rep in range(runs):
            for n in names[rep % len(names):] + names[: rep % len(names)]:
                times[n][batch] += workers[n].call("forward", batch=batch, repeats=1)["ms"]
            if batch == 1:  # the machine's rate now, between the passes: the load changes
                rates = workers["mxnet"].call("matmul", libraries=["mxnet"], seconds=0.3)
                for k, v in rates.items():
                    during[k] = max(during.get(k, 0.0), v)
    for n in names:
        b1, b2 = times[n][1], times[n][2]
        out[n] = {"batch1_ms": b1, "batch2_ms": b2, "batch1_median_ms": statistics.median(b1),
                  "batch1_best_ms": min(b1), "batch2_per_clip_median_ms": statistics.median(b2) / 2}
    out["matmul_during"] = during
    out["matmul_after"] = matmul(workers)
    out["matmul_gflops"] = max(*out["matmul_before"].values(), *during.values(),
                               *out["matmul_after"].values())
    say(f"forward pass: {out['gflop']:.1f} GFLOP per clip; best float32 matmul {out['matmul_gflops']:.0f} GFLOP/s")
    return out


if __name__ == "__main__":
    sys.exit(main())
