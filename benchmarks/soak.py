"""Soak: several live streams through the real daemon for minutes, in real time; nothing lost.

``make soak`` (or ``python -m benchmarks.soak --streams 4 --minutes 10``). Each stream publishes
one ready-made 10 s segment every 10 s of wall time, the way a live encoder does (temp file,
rename, playlist rewritten, old segments deleted past the window); the daemon (`livewatch run`, a
subprocess, random I3D-ResNet50, local store) classifies them. At the end it prints, and writes
as JSON: segments published / stored / errors per stream, lag (segment complete → detection
stored) percentiles, the daemon's resident memory over time, and whether every published segment
ended as exactly one detection.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from .daemon_run import Daemon, Stream
from .media import SEGMENT_SECONDS, ensure_media
from .model import ensure_model

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def soak(workdir: Path, model_dir: Path, segments: list[Path], streams: int, minutes: float,
         interval: float, say=print) -> dict:
    if workdir.exists():
        shutil.rmtree(workdir)  # a fresh store and checkpoint each run
    workdir.mkdir(parents=True)
    port = _free_port()
    os.environ["LIVEWATCH_DAEMON__HEALTH_LISTEN"] = f"127.0.0.1:{port}"  # its own, to read back
    daemon = Daemon(workdir, model_dir)
    feeds = {f"cam{i}": Stream(daemon.live / f"cam{i}", seconds=SEGMENT_SECONDS)
             for i in range(streams)}
    published: dict[str, tuple[str, float]] = {}  # uri -> (stream, time its playlist listed it)
    memory: list[tuple[float, float]] = []
    started = None
    try:
        say(f"daemon up in {daemon.start():.1f} s; {streams} streams for {minutes:g} min, "
            f"one segment per stream every {interval:g} s")
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < minutes * 60:
            for offset, (name, feed) in enumerate(feeds.items()):
                # Streams are staggered across the interval, as independent encoders would be.
                due = started + tick * interval + offset * interval / streams
                while time.monotonic() < due:  # watch the store meanwhile: lag to ~20 ms
                    daemon._poll_store()
                    time.sleep(min(0.02, max(0.0, due - time.monotonic())))
                (path,), at = feed.publish([segments[(tick + offset) % len(segments)]])
                published[str(path.resolve())] = (name, at)
            tick += 1
            daemon._poll_store()
            memory.append((round(time.monotonic() - started, 1), daemon.memory()["rss_mib"]))
            if tick % 6 == 0:
                say(f"  {memory[-1][0]:5.0f} s: published {len(published)}, stored "
                    f"{len(daemon._seen)}, RSS {memory[-1][1]:.0f} MiB")
        say("publishing stopped; waiting for the last detections")
        done = daemon.wait_done([Path(uri) for uri in published], timeout=600)
        metrics = _read_metrics(f"http://127.0.0.1:{port}/metrics")
        peak = daemon.memory()["peak_mib"]
    finally:
        exit_status = daemon.stop()
    rows = dict(zip(published, done))
    lags = [stored - published[uri][1] for uri, (stored, _) in rows.items()]
    daemon_ms = [d["latency_ms"] for _, d in rows.values() if d.get("latency_ms") is not None]
    per_stream = {}
    for name in feeds:
        mine = [rows[u][1] for u, (s, _) in published.items() if s == name]
        per_stream[name] = {"published": len(mine), "stored": len(mine),
                            "errors": sum(1 for d in mine if d["error"])}
    rss = [m for _, m in memory]
    warm = max(1, len(rss) // 10)
    return {
        "streams": streams, "minutes": minutes, "interval_s": interval,
        "published": len(published), "stored": len(rows),
        "exactly_one_each": _stored_once(daemon.db, published),
        "errors": sum(s["errors"] for s in per_stream.values()),
        "error_examples": sorted({d["error"] for _, d in rows.values() if d["error"]})[:3],
        "per_stream": per_stream,
        "lag_s": {"p50": round(statistics.median(lags), 2), "p95": round(percentile(lags, 0.95), 2),
                  "max": round(max(lags), 2)},
        "daemon_latency_s": {"p50": round(statistics.median(daemon_ms) / 1e3, 2),
                             "p95": round(percentile(daemon_ms, 0.95) / 1e3, 2),
                             "max": round(max(daemon_ms) / 1e3, 2)},
        "rss_mib": {"after_warmup": rss[warm - 1], "end": rss[-1], "max": max(rss),
                    "growth_after_warmup": round(rss[-1] - rss[warm - 1], 1), "peak_hwm": peak},
        "memory_timeline": memory,
        "daemon_metrics": metrics,
        "exit_status": exit_status,
    }


def _stored_once(db: Path, published: dict) -> bool:
    import sqlite3

    with sqlite3.connect(db) as conn:
        counts = dict(conn.execute("SELECT uri, COUNT(*) FROM detections GROUP BY uri"))
    return set(counts) == set(published) and all(c == 1 for c in counts.values())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_metrics(url: str) -> dict:
    """The daemon's own counters, from its /metrics."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    wanted = ("livewatch_segments_", "livewatch_lag_seconds")
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith(wanted) and "_created{" not in line}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=float(SEGMENT_SECONDS),
                        help="seconds between a stream's segments (10: real time)")
    parser.add_argument("--resolution", default="360p", help="360p, 720p or 1080p")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json")
    args = parser.parse_args(argv)

    segments = ensure_media(args.cache / "media", [args.resolution])[args.resolution]
    model_dir = ensure_model(args.cache / "model")
    result = soak(args.cache / "soak", model_dir, segments, args.streams, args.minutes, args.interval)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    r = result
    print(f"\nsoak: {r['streams']} streams x {r['minutes']:g} min at {args.resolution}: "
          f"{r['published']} published, {r['stored']} stored, {r['errors']} errors, "
          f"exactly one detection each: {r['exactly_one_each']}")
    print(f"lag (complete -> stored): p50 {r['lag_s']['p50']} s, p95 {r['lag_s']['p95']} s, "
          f"max {r['lag_s']['max']} s; the daemon's own latency (seen -> written): "
          f"p50 {r['daemon_latency_s']['p50']} s, p95 {r['daemon_latency_s']['p95']} s")
    print(f"memory: {r['rss_mib']['after_warmup']:.0f} MiB after warm-up, {r['rss_mib']['end']:.0f} MiB "
          f"at the end (growth {r['rss_mib']['growth_after_warmup']:+.0f} MiB), peak {r['rss_mib']['peak_hwm']:.0f} MiB")
    print(f"results: {args.out}")
    ok = r["exactly_one_each"] and r["stored"] == r["published"] and r["exit_status"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
