"""Whole segments through the real daemon: decoding overlapped with the forward pass, or not (issue 17).

    python -m benchmarks.daemon_throughput [--quick] [--resolutions 720p,1080p] [--soak N]

`livewatch run` (a subprocess: folder source, local store, stdout sink) with ``workers = 2`` and
``windows = "cover"`` on the benchmark's random I3D-ResNet50 at GluonCV's zoo stride (32 frames
every 2nd: 5 windows of a 10 s 30 fps segment), on the benchmark's 10 s live segments (x264
``veryfast``, B-frames; `benchmarks.media`). One daemon per configuration, all started first,
then taking turns burst by burst (who goes first rotates), so a change in the shared machine's
load falls on all of them:

- ``openvino serial``: ``decode_threads = 0``, the path before this work: decoding, thumbnails
  and the forward pass one after the other on one thread;
- ``openvino overlap``: ``decode_threads = 1`` (the default): the next segment decodes while this
  one is in its forward pass;
- ``openvino overlap threads=1``: the same with OpenVINO on one thread, leaving a core to the
  decoder (is sharing the cores worse than splitting them?);
- ``mxnet serial`` / ``mxnet overlap``: the reference backend, fp32.

OpenVINO runs int8 when a quantized model is there or can be made (``livewatch model quantize``
on the first segment of each resolution, which is never measured; agreement not required: this
is about speed), else bf16 where the CPU has a native unit, else fp32; the run says which.

A burst is `segments` segments published at once on one stream; seconds per segment at steady
state = (last row stored − first row stored) / (segments − 1), so the pipeline's filling is left
out; live streams sustained = 10 s ÷ that. Each daemon's resident memory is read after every
burst and its peak (VmHWM) at the end; then `soak` more segments through ``openvino overlap``
show whether its memory stays flat. Writes ``benchmarks/results/daemon_throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.openvino import bf16_unit, cpu_flags, int8_path

from .daemon_run import Daemon, Stream, _soak
from .machine import cpu_info, load_average
from .media import SEGMENT_SECONDS, ensure_media
from .windows_bench import zoo_stride_model
from .worker import ROOT

HERE = Path(__file__).resolve().parent
TARGET_S = 1.0  # issue 17: a whole 720p30 segment, `cover`, at most 1 s (10 streams on 2 cores)


def configs(precision: str) -> dict[str, tuple[str, dict]]:
    """name -> (backend, more [classifier] options)."""
    ov = {"backend_options": {"precision": precision}}
    return {
        "openvino serial": ("openvino", {**ov, "decode_threads": 0}),
        "openvino overlap": ("openvino", {**ov, "decode_threads": 1}),
        "openvino overlap threads=1": ("openvino", {**ov, "decode_threads": 1, "threads": 1}),
        "mxnet serial": ("mxnet", {"decode_threads": 0}),
        "mxnet overlap": ("mxnet", {"decode_threads": 1}),
    }


def openvino_precision(model: Path, calibration: list[Path], folder: Path, say) -> str:
    """int8 if a quantized model is there or `livewatch model quantize` makes one, else bf16 where
    the CPU computes it natively, else fp32."""
    artifact = load_artifact(model)
    path = int8_path(artifact)
    if not (path.is_file() and path.stat().st_mtime >= artifact.params_file.stat().st_mtime):
        folder.mkdir(parents=True, exist_ok=True)
        for seg in calibration:
            link = folder / f"{seg.parent.name}-{seg.name}"
            if not link.exists():
                link.symlink_to(seg.resolve())
        say(f"  int8: livewatch model quantize on {len(calibration)} unmeasured segments (once) ...")
        done = subprocess.run(
            [str(Path(sys.executable).with_name("livewatch")), "model", "quantize",
             str(model.resolve()), "--calibrate", str(folder.resolve()), "--windows",
             str(8 * len(calibration)), "--min-agreement", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            say(f"  int8: quantize failed:\n{done.stdout[-1500:]}")
    if path.is_file():
        return "int8"
    return "bf16" if bf16_unit(cpu_flags()) else "fp32"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(workdir: Path, model: Path, media: dict[str, list[Path]], chosen: dict, *,
            segments: int, rounds: int, soak: int, idle: float = 1.0, say=print) -> dict:
    if workdir.exists():
        shutil.rmtree(workdir)
    daemons = {
        name: Daemon(workdir / name.replace(" ", "-").replace("=", ""), model,
                     workers=2, backend=backend,
                     classifier={"windows": "cover", **extra},
                     env={"LIVEWATCH_DAEMON__HEALTH_LISTEN": f"127.0.0.1:{_free_port()}"})
        for name, (backend, extra) in chosen.items()}
    names = list(daemons)
    out: dict = {"configs": {n: {"backend": b, **x} for n, (b, x) in chosen.items()},
                 "segments": segments, "rounds": rounds, "resolutions": {}, "memory": {}}
    rss: dict[str, list[float]] = {n: [] for n in names}
    try:
        for name, daemon in daemons.items():
            say(f"  {name}: up in {daemon.start():.1f} s")
        for res, files in media.items():
            segs = files[1:]  # the first one calibrated the int8 model
            streams = {n: Stream(d.live / res) for n, d in daemons.items()}
            bursts: dict[str, list[dict]] = {n: [] for n in names}
            load_before = load_average()
            for round_ in range(rounds + 1):  # round 0 warms up: new stream, first passes
                order = names[round_ % len(names):] + names[: round_ % len(names)]
                for name in order:
                    time.sleep(idle)
                    paths, published = streams[name].publish(
                        [segs[k % len(segs)] for k in range(segments)])
                    done = daemons[name].wait_done(paths)
                    rss[name].append(daemons[name].memory()["rss_mib"])
                    if round_ == 0:
                        continue
                    times = sorted(t for t, _ in done)
                    dets = [d for _, d in done]
                    bursts[name].append({
                        "s_per_segment": (times[-1] - times[0]) / (segments - 1),
                        "first_s": times[0] - published,
                        "decode_ms": statistics.median(d["decode_ms"] for d in dets),
                        "infer_ms": statistics.median(d["infer_ms"] for d in dets),
                        "windows": statistics.median(len(d["windows"]) for d in dets),
                        "errors": sum(1 for d in dets if d["error"]),
                    })
            row = {}
            for name, runs in bursts.items():
                s = [b["s_per_segment"] for b in runs]
                row[name] = {
                    "s_per_segment": s, "min_s": min(s), "median_s": statistics.median(s),
                    "max_s": max(s), "streams": SEGMENT_SECONDS / statistics.median(s),
                    "decode_ms": statistics.median(b["decode_ms"] for b in runs),
                    "infer_ms": statistics.median(b["infer_ms"] for b in runs),
                    "windows": runs[0]["windows"], "errors": sum(b["errors"] for b in runs)}
            out["resolutions"][res] = {"rows": row, "load_before": load_before,
                                       "load_after": load_average()}
            say(f"  {res}: " + ", ".join(f"{n} {v['median_s']:.2f} s" for n, v in row.items())
                + f" per segment (load {load_before} -> {load_average()})")
        if soak and "openvino overlap" in daemons:
            res = "720p" if "720p" in media else next(iter(media))
            say(f"  soak: {soak} {res} segments through openvino overlap ...")
            out["soak"] = _soak(daemons["openvino overlap"],
                                Stream(daemons["openvino overlap"].live / f"soak-{res}"),
                                media[res][1:], soak, say)
            out["soak"]["resolution"] = res
        for name, daemon in daemons.items():
            out["memory"][name] = {**daemon.memory(), "rss_after_bursts_mib": rss[name]}
    finally:
        for name, daemon in daemons.items():
            status = daemon.stop()
            out["memory"].setdefault(name, {})["exit_status"] = status
            errors = [line for line in daemon.log_text().splitlines() if " ERROR " in line]
            if errors:
                out.setdefault("log_errors", {})[name] = errors[:3]
    return out


def render(r: dict) -> str:
    m = r["machine"]
    lines = [f"through `livewatch run` (workers = 2, windows = \"cover\", {r['segments']} segments "
             f"a burst, {r['rounds']} bursts each after a warm-up, daemons taking turns): "
             f"{m['cores']} cores, {m['model']} ({' '.join(m['isa'])}); openvino precision "
             f"{r['precision']}; load average {_load(r['load_start'])} at start, "
             f"{_load(r['load_end'])} at end",
             f"  {'':7}{'config':<29}{'s/segment: min':>15}{'median':>8}{'max':>6}{'streams':>9}"
             f"{'decode ms':>11}{'infer ms':>10}{'windows':>9}   serial/this"]
    for res, x in r["resolutions"].items():
        rows = x["rows"]
        for i, (name, v) in enumerate(rows.items()):
            serial = rows.get(f"{name.split()[0]} serial")
            ratio = f"{serial['median_s'] / v['median_s']:>10.2f}x" if serial and serial is not v else ""
            lines.append(f"  {res if i == 0 else '':<7}{name:<29}{v['min_s']:>15.2f}{v['median_s']:>8.2f}"
                         f"{v['max_s']:>6.2f}{v['streams']:>9.1f}{v['decode_ms']:>11.0f}"
                         f"{v['infer_ms']:>10.0f}{v['windows']:>9.0f}{ratio}"
                         + (f"  ({v['errors']} errors)" if v["errors"] else ""))
        lines.append(f"  {'':7}load average {_load(x['load_before'])} -> {_load(x['load_after'])}")
    lines.append("  peak resident memory (VmHWM, MiB): " + ", ".join(
        f"{n} {v['peak_mib']:.0f}" for n, v in r["memory"].items() if "peak_mib" in v))
    lines.append("  RSS after each burst (MiB): " + "; ".join(
        f"{n} {v['rss_after_bursts_mib'][0]:.0f} -> {v['rss_after_bursts_mib'][-1]:.0f}"
        for n, v in r["memory"].items() if v.get("rss_after_bursts_mib")))
    so = r.get("soak")
    if so:
        lines.append(f"  soak, openvino overlap: {so['segments']} {so['resolution']} segments, "
                     f"{so['segments_per_s']:.2f} seg/s; RSS after "
                     + ", ".join(f"{k}: {v:.0f}" for k, v in so["rss_mib_after"].items())
                     + f" MiB; highest {so['rss_mib_max']:.0f} MiB (trend past warm-up "
                     f"{so['slope_mib_per_100']:+.2f} MiB per 100)")
    lines += ["", "targets (issue 17):"]
    x = r["resolutions"].get("720p", {}).get("rows", {})
    if "openvino overlap" in x:
        best = min((n for n in x if n.startswith("openvino")), key=lambda n: x[n]["median_s"])
        v = x[best]
        lines.append(f"  [{'met' if v['median_s'] <= TARGET_S else 'NOT met'}] 720p30 whole segment, "
                     f"cover, <= {TARGET_S:.1f} s through the daemon: {best} {v['median_s']:.2f} s "
                     f"median ({v['streams']:.1f} streams)")
    peak = r["memory"].get("openvino overlap", {}).get("peak_mib")
    if peak:
        lines.append(f"  [{'met' if peak <= 1.2 * 1024 else 'NOT met'}] daemon resident <= 1.2 GiB "
                     f"with openvino: peak {peak:.0f} MiB")
    if so:
        first, second = so["rss_mib_max_halves"]
        flat = second - first <= max(20.0, 0.02 * so["rss_mib_max"])
        lines.append(f"  [{'met' if flat else 'NOT met'}] flat over {so['segments']} segments: highest "
                     f"RSS {first:.0f} MiB in the first half past warm-up, {second:.0f} MiB in the "
                     f"second (tolerance 20 MiB or 2%)")
    if r.get("log_errors"):
        lines.append(f"  ERROR lines in daemon logs: {r['log_errors']}")
    return "\n".join(lines)


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def run(cache: Path, *, resolutions: list[str], segments: int, rounds: int, soak: int,
        only: list[str] | None = None, say=print) -> dict:
    started = time.monotonic()
    result: dict = {"machine": cpu_info(), "load_start": load_average()}
    say(f"daemon throughput: {result['machine']['cores']} cores, {result['machine']['model']} "
        f"({' '.join(result['machine']['isa'])}), load average {result['load_start']}")
    media = ensure_media(cache / "media", resolutions)
    model = zoo_stride_model(cache)
    result["precision"] = openvino_precision(model, [f[0] for f in media.values()],
                                             cache / "calibration-step2", say)
    say(f"  openvino precision: {result['precision']}")
    chosen = configs(result["precision"])
    if only:
        chosen = {n: c for n, c in chosen.items() if n in only}
    result.update(measure(cache / "throughput", model, media, chosen, segments=segments,
                          rounds=rounds, soak=soak, say=say))
    result["load_end"] = load_average()
    result["seconds"] = round(time.monotonic() - started)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.daemon_throughput",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="6 segments a burst, 2 bursts, a 30-segment soak (default 8, 3, 200)")
    parser.add_argument("--resolutions", default="720p,1080p", help="comma-separated")
    parser.add_argument("--segments", type=int, default=None, help="segments a burst")
    parser.add_argument("--rounds", type=int, default=None, help="measured bursts per daemon")
    parser.add_argument("--soak", type=int, default=None, help="segments in the memory soak")
    parser.add_argument("--configs", default=None, help="comma-separated, a subset of: "
                        + ", ".join(configs("int8")))
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "daemon_throughput.json")
    args = parser.parse_args(argv)
    result = run(args.cache, resolutions=[r for r in args.resolutions.split(",") if r],
                 segments=args.segments or (6 if args.quick else 8),
                 rounds=args.rounds or (2 if args.quick else 3),
                 soak=args.soak if args.soak is not None else (30 if args.quick else 200),
                 only=[c.strip() for c in args.configs.split(",")] if args.configs else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + render(result))
    print(f"\nresults: {args.out}  ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
