"""The results as a table on stdout, and the issue's targets, each met or not with its figure."""
from __future__ import annotations

import statistics

BACKENDS = {"unfused": "MXNet, no fusion (before)", "mxnet": "livewatch MXNet (fused)",
            "onnxruntime": "livewatch ONNX Runtime"}


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"livewatch vs the reference pipeline: {m['cores']} cores, {m['model']} ({', '.join(m['isa'])}); "
        f"load average {_load(r['load_start'])} at start, {_load(r['load_end'])} at end",
        f"median of {r['settings']['repeats']} runs after {r['settings']['warmup']} warm-up runs per "
        f"10 s segment; ratio = reference / column (higher is better)",
    ]
    for profile, stages in r.get("stages", {}).items():
        lines += [""] + stage_table(profile, stages)
    lines += _steps(r) + _forward(r) + _memory(r) + _daemon(r) + [""] + targets(r)
    return "\n".join(lines)


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def stage_table(profile: str, stages: dict) -> list[str]:
    columns = list(next(iter(stages.values()))["median"])
    head = f"{profile + ' profile':<18}{'(ms)':<14}" + "".join(
        f"{c:>10}" if c == "reference" else f"{c:>10}{'ratio':>7}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, s in stages.items():
        med = s["median"]
        rows = [
            ("decode+sample", lambda c: med[c]["decode_ms"]),
            ("preprocess", lambda c: med[c]["preprocess_ms"]),
            ("  decode..preprocess", lambda c: med[c]["decode_ms"] + med[c]["preprocess_ms"]),
            ("inference", lambda c: med[c]["infer_ms"]),
            ("whole segment", lambda c: med[c]["total_ms"]),
            ("  whole segment, best", lambda c: min(x["total_ms"] for x in s["samples"][c])),
        ]
        for i, (label, value) in enumerate(rows):
            cells = ""
            for c in columns:
                v = value(c)
                cells += f"{v:>10.0f}" if c == "reference" else f"{v:>10.0f}{value('reference') / v:>6.2f}x"
            lines.append(f"{name if i == 0 else '':<7}{label:<25}{cells}")
        sps = {c: 1000.0 / med[c]["total_ms"] for c in columns}
        for label, factor, fmt in (("segments/s", 1, "{:>10.2f}"), ("streams sustained", s["segment_seconds"], "{:>10.1f}")):
            lines.append(f"{'':<7}{label:<25}" + "".join(
                fmt.format(sps[c] * factor) + ("" if c == "reference" else " " * 7) for c in columns))
        diffs = s.get("max_abs_prob_diff_vs_before") or {}
        if diffs:
            lines.append(f"{'':<7}max |probability difference| vs before: "
                         + ", ".join(f"{c} {v:.1e}" for c, v in diffs.items()))
    return lines


STEPS = (  # (what changed, stage, column before, column after)
    ("skip non-reference frames, scale beside the decoder", "decode_ms", "before", "+decode"),
    ("oneDNN fusion", "infer_ms", "+decode", "livewatch"),
    ("ONNX Runtime instead of fused MXNet", "infer_ms", "livewatch", "onnxrt"),
)


def _steps(r: dict) -> list[str]:
    """Each step's speed-up on its own stage (x > 1: faster), per profile and resolution."""
    lines = ["", "what each step bought (the stage it changes, median before / median after):"]
    for label, stage, a, b in STEPS:
        cells = []
        for profile, stages in r.get("stages", {}).items():
            for name, st in stages.items():
                med = st["median"]
                if a in med and b in med:
                    cells.append(f"{profile} {name} {med[a][stage] / med[b][stage]:.2f}x")
        if cells:
            lines.append(f"  {label} ({stage[:-3]}): " + ", ".join(cells))
    return lines


def _forward(r: dict) -> list[str]:
    f = r.get("forward")
    if not f:
        return []
    peak = f["matmul_gflops"]
    rates = {k: max(f["matmul_before"].get(k, 0), f.get("matmul_during", {}).get(k, 0),
                    f["matmul_after"].get(k, 0)) for k in f["matmul_before"]}
    lines = ["", f"forward pass, 1x3x32x224x224 = {f['gflop']:.1f} GFLOP (convolutions + dense layer)",
             "  float32 matmul 2048^3, best of before, between and after the passes: "
             + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()) + f" GFLOP/s -> limit {peak:.0f} GFLOP/s"]
    first = next(iter(r["stages"].values()))
    ref = statistics.median(s["median"]["reference"]["infer_ms"] for s in first.values())
    lines.append(f"  {'reference (plain SymbolBlock)':<30}{ref:7.0f} ms median {f['gflop'] / ref * 1e3:6.1f} GFLOP/s "
                 f"{f['gflop'] / ref * 1e3 / peak:5.0%}   (its inference stage, median over resolutions)")
    for name, label in BACKENDS.items():
        if name in f:
            x = f[name]
            med, best = x["batch1_median_ms"], x["batch1_best_ms"]
            lines.append(
                f"  {label:<30}{med:7.0f} ms median {f['gflop'] / med * 1e3:6.1f} GFLOP/s {f['gflop'] / med * 1e3 / peak:5.0%};"
                f" best {best:.0f} ms {f['gflop'] / best * 1e3 / peak:4.0%}; batch of 2: "
                f"{x['batch2_per_clip_median_ms']:.0f} ms per clip")
    return lines


def _memory(r: dict) -> list[str]:
    mem = {k: v["peak_mib"] for k, v in r.get("memory_mib", {}).items()}
    if "daemon" in r and "memory" in r["daemon"]:
        mem["daemon"] = r["daemon"]["memory"]["peak_mib"]
    if not mem:
        return []
    return ["", "peak resident memory per process (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items())]


def _daemon(r: dict) -> list[str]:
    d = r.get("daemon")
    if not d:
        return []
    lines = ["", f"daemon: `livewatch run` as it is (1 worker, {d.get('backend', 'mxnet')}), {d.get('profile', '')} segments, up in "
                 f"{d['startup_s']:.1f} s; latency = playlist lists the segment -> its row is in the local store",
             f"{'':<7}{'latency ms':>11}{'max':>7}{'in daemon':>11}{'segments/s':>12}{'streams':>9}"]
    for name, x in d["resolutions"].items():
        e2e = [y["e2e_ms"] for y in x["latency"]]
        inside = statistics.median(y["daemon_latency_ms"] for y in x["latency"])
        sps = x.get("backlog", {}).get("segments_per_s")
        tail = f"{sps:12.2f}{sps * 10:9.1f}" if sps else ""
        lines.append(f"{name:<7}{statistics.median(e2e):11.0f}{max(e2e):7.0f}{inside:11.0f}{tail}")
    st = d.get("stall")
    if st:
        lines.append(f"  event loop: a segment published while another was in classification was taken in "
                     f"{st['busy_receive_ms']:.0f} ms (idle daemon: {st['idle_receive_ms']:.0f} ms; that "
                     f"classification took {st['a_classify_ms']:.0f} ms)")
    so = d.get("soak")
    if so:
        lines.append(f"  soak: {so['segments']} {so['resolution']} segments in {so['seconds']:.0f} s; RSS after "
                     + ", ".join(f"{k}: {v:.0f}" for k, v in so["rss_mib_after"].items())
                     + f" MiB; growth after warm-up {so['growth_mib_after_warmup']:+.1f} MiB "
                     f"(trend {so['slope_mib_per_100']:+.2f} MiB per 100)")
    if d.get("log_errors"):
        lines.append(f"  ERROR lines in the daemon's log: {len(d['log_errors'])}, first: {d['log_errors'][0]}")
    return lines + _batching(r)


def _batching(r: dict) -> list[str]:
    b = r.get("batching")
    if not b:
        return []
    (w1, b1), (wn, bn) = b["configs"][0], b["configs"][-1]
    one, many = f"{w1}x{b1}", f"{wn}x{bn}"
    lines = [f"  a burst of {b['segments']} segments at once: {w1} worker against {wn} workers whose "
             f"waiting clips share forward passes (max_batch {bn}); daemons taking turns",
             f"{'':<7}{'seg/s ' + one:>14}{'seg/s ' + many:>14}{'ratio':>8}{'median latency ms':>20}"]
    for name, x in b["resolutions"].items():
        a, c = x[one], x[many]
        errors = a["errors"] + c["errors"]
        lines.append(f"{name:<7}{a['segments_per_s']:14.2f}{c['segments_per_s']:14.2f}"
                     f"{c['segments_per_s'] / a['segments_per_s']:7.2f}x"
                     f"{a['latency_ms']:11.0f} -> {c['latency_ms']:.0f}"
                     + (f"  ({errors} errors)" if errors else ""))
    return lines


def targets(r: dict) -> list[str]:
    out = ["targets (issue 6), on the " + (next(iter(r.get("stages", {})), "?")) + " profile:"]

    def line(ok: bool | None, text: str) -> None:
        out.append(f"  [{'met' if ok else 'NOT met'}] {text}")

    stages = next(iter(r.get("stages", {}).values()), {})
    if "1080p" in stages:
        med = stages["1080p"]["median"]
        ref = med["reference"]["decode_ms"] + med["reference"]["preprocess_ms"]
        ratios = {c: ref / (med[c]["decode_ms"] + med[c]["preprocess_ms"]) for c in ("before", "livewatch") if c in med}
        line(ratios.get("livewatch", 0) >= 3, "1080p decode+sample+preprocess >= 3x (stretch 4x): "
             + ", ".join(f"{c} {v:.2f}x" for c, v in ratios.items()))
    if "720p" in stages:
        med = stages["720p"]["median"]
        ref = med["reference"]["total_ms"]
        best = min((c for c in ("livewatch", "onnxrt") if c in med), key=lambda c: med[c]["total_ms"])
        line(ref / med[best]["total_ms"] >= 2.5,
             f"720p whole segment >= 2.5x with the fastest backend: {best} {ref / med[best]['total_ms']:.2f}x")
        mx = {c: ref / med[c]["total_ms"] for c in ("before", "livewatch") if c in med}
        line(mx.get("livewatch", 0) >= 1.3, "720p whole segment >= 1.3x with MXNet: "
             + ", ".join(f"{c} {v:.2f}x" for c, v in mx.items()))
    f = r.get("forward")
    if f:
        fracs = {name: f["gflop"] / f[name]["batch1_best_ms"] * 1e3 / f["matmul_gflops"]
                 for name in BACKENDS if name in f}
        line(max(v for n, v in fracs.items() if n != "unfused") >= 0.8,
             f"forward pass >= 80% of the matmul rate ({f['matmul_gflops']:.0f} GFLOP/s; best vs best): "
             + ", ".join(f"{BACKENDS[n]} {v:.0%}" for n, v in fracs.items()))
    d = r.get("daemon")
    if d and d.get("stall"):
        s = d["stall"]
        ok = s["received_before_a_done"] and s["busy_receive_ms"] < s["idle_receive_ms"] + 250
        line(ok, f"no event-loop stall: a segment was taken in {s['busy_receive_ms']:.0f} ms during inference "
                 f"(idle: {s['idle_receive_ms']:.0f} ms)")
    if d and d.get("soak"):
        so = d["soak"]
        flat = abs(so["growth_mib_after_warmup"]) <= max(20.0, 0.02 * so["rss_mib_max"])
        line(flat, f"memory flat over {so['segments']} segments: {so['growth_mib_after_warmup']:+.1f} MiB "
                   f"after warm-up (tolerance: 20 MiB or 2%)")
    return out
