"""The real daemon, end to end: `livewatch run` as a subprocess on a folder of live HLS streams.

Segments are published the way a live encoder does it (FFmpeg's ``hls_flags temp_file``, as
`HlsWriter` writes them): the segment under a temporary name, renamed, then the playlist rewritten
and renamed. They are copies of segments encoded beforehand, so no encoder competes with the
daemon for the CPU while it is measured. A segment counts as complete when the playlist that lists
it is in place; it counts as done when its row is in the local store (polled every 10 ms).

Phases:

- ``latency``: one segment at a time on an idle daemon, per resolution;
- ``backlog``: several segments at once, per resolution: the worker's sustained rate;
- ``stall``: a segment published while another is being classified: how long the source takes to
  see it, against the same on an idle daemon (if inference blocked the event loop, it would wait
  for the classification to finish);
- ``soak``: N segments through one stream, keeping a few queued; the daemon's resident memory
  after each, and its growth past warm-up.

And, on daemons of their own (`batching`): how fast a burst of segments clears with one worker
against several workers whose waiting clips share forward passes, the daemons taking turns.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


class Stream:
    """One stream folder that an 'encoder' publishes copies of ready-made segments into."""

    def __init__(self, folder: Path, window: int = 6, seconds: float = 10.0):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.window = window
        self.seconds = seconds
        self.names: list[str] = []
        self.start = datetime.now(timezone.utc)

    def publish(self, sources: list[Path]) -> tuple[list[Path], float]:
        """Write `sources` as the next segments, then list them; return their paths and the time
        the playlist listing them was in place. Segments that fell out of the window are
        deleted, as a live encoder's ``hls_delete`` does."""
        paths = []
        for src in sources:
            path = self.folder / f"seg{len(self.names):05d}.ts"
            tmp = path.with_name(f".{path.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)
            self.names.append(path.name)
            paths.append(path)
        first = max(0, len(self.names) - self.window)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(self.seconds)}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for n in range(first, len(self.names)):
            at = self.start + timedelta(seconds=n * self.seconds)
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:{at.isoformat(timespec='milliseconds')}",
                      f"#EXTINF:{self.seconds:.3f},", self.names[n]]
        playlist = self.folder / "index.m3u8"
        tmp = playlist.with_name(".index.m3u8.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, playlist)
        published = time.time()
        for name in self.names[: max(0, first - 2)]:  # keep two beyond the window, as FFmpeg does
            (self.folder / name).unlink(missing_ok=True)
        return paths, published


class Daemon:
    def __init__(self, workdir: Path, model_dir: Path, workers: int = 1, max_batch: int = 1,
                 backend: str = "mxnet", classifier: dict | None = None, env: dict | None = None):
        """`classifier`: more ``[classifier]`` options (e.g. ``decode_threads``,
        ``backend_options``); `env`: more environment for the daemon's process."""
        self.workdir = workdir
        self.env = env or {}
        self.live = workdir / "live"
        self.db = workdir / "detections.db"
        self.log_path = workdir / "daemon.log"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "livewatch.toml"
        config.write_text(f"""
[daemon]
workers = {workers}
shutdown_timeout = 60

[classifier]
type = "i3d"
model = "{model_dir}"
top_k = 5
max_batch = {max_batch}
backend = "{backend}"
{_toml(classifier or {})}
[[sources]]
type = "folder"
path = "{self.live}"

[[sinks]]
type = "local"
path = "{self.db}"

[[sinks]]
type = "stdout"
format = "json"
""")
        self.live.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._seen: dict[str, tuple[float, dict]] = {}
        self._rowid = 0
        self._conn: sqlite3.Connection | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start `livewatch run` and wait until its source watches the folder; returns seconds."""
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [LIVEWATCH, "run", "--config", str(self.config)], cwd=self.workdir,
            stdout=open(self.workdir / "stdout.jsonl", "w"), stderr=open(self.log_path, "w"),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        self._wait(lambda: "watching " in self.log_path.read_text(), timeout)
        return time.perf_counter() - t

    def _wait(self, predicate, timeout: float, step: float = 0.01):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}); log:\n{self.log_text()}")
            time.sleep(step)
        raise TimeoutError(f"timed out after {timeout}s; daemon log:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def _poll_store(self) -> None:
        if self._conn is None:
            if not self.db.exists():
                return
            self._conn = sqlite3.connect(self.db)
        rows = self._conn.execute(
            "SELECT rowid, uri, detection FROM detections WHERE rowid > ? ORDER BY rowid", (self._rowid,)
        ).fetchall()
        now = time.time()
        for rowid, uri, detection in rows:
            self._rowid = max(self._rowid, rowid)
            self._seen.setdefault(uri, (now, json.loads(detection)))

    def wait_done(self, paths: list[Path], timeout: float = 600.0) -> list[tuple[float, dict]]:
        """(time its row appeared, detection) for each of `paths`, once all are stored."""
        uris = [str(p.resolve()) for p in paths]

        def done():
            self._poll_store()
            return all(u in self._seen for u in uris)

        self._wait(done, timeout)
        return [self._seen[u] for u in uris]

    def memory(self) -> dict:
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
        return {"rss_mib": round(fields["VmRSS"], 1), "peak_mib": round(fields["VmHWM"], 1)}

    def stop(self) -> int:
        if self._conn is not None:
            self._conn.close()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _toml(options: dict) -> str:
    """``key = value`` lines (a dict as an inline table) for the daemon's config file."""
    def value(v) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in options.items())


def run(workdir: Path, model_dir: Path, media: dict[str, list[Path]], *, latency: int = 3,
        backlog: int = 6, soak: int = 200, soak_resolution: str = "360p", idle: float = 1.0,
        say=print) -> dict:
    """All phases on one daemon; returns the figures (see the module's docstring)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    daemon = Daemon(workdir, model_dir)
    streams = {name: Stream(daemon.live / name) for name in media}
    if soak:
        soak_stream = Stream(daemon.live / f"soak-{soak_resolution}")
    result: dict = {"resolutions": {}}
    try:
        result["startup_s"] = round(daemon.start(), 2)
        say(f"  daemon up in {result['startup_s']:.1f} s")
        for name, files in media.items():
            stream, segs = streams[name], files[1:]
            figures: dict = {"latency": []}
            for k in range(latency):  # one at a time, on an idle daemon
                time.sleep(idle)
                (path,), published = stream.publish([segs[k % len(segs)]])
                ((stored, det),) = daemon.wait_done([path])
                figures["latency"].append({
                    "e2e_ms": (stored - published) * 1e3, "daemon_latency_ms": det["latency_ms"],
                    "receive_ms": (arrived_at(det) - published) * 1e3,
                    "decode_ms": det["decode_ms"], "infer_ms": det["infer_ms"], "error": det["error"],
                })
            if backlog > 1 and not (soak and name == soak_resolution):
                time.sleep(idle)
                paths, published = stream.publish([segs[k % len(segs)] for k in range(backlog)])
                done = daemon.wait_done(paths)
                times = sorted(t for t, _ in done)
                figures["backlog"] = {
                    "segments": backlog,
                    "segments_per_s": (backlog - 1) / (times[-1] - times[0]),
                    "all_done_s": times[-1] - published,
                }
            result["resolutions"][name] = figures
            e2e = statistics.median(x["e2e_ms"] for x in figures["latency"])
            say(f"  {name}: end-to-end latency {e2e:.0f} ms (median of {latency})")
        idle_receive = statistics.median(
            x["receive_ms"] for r in result["resolutions"].values() for x in r["latency"])
        result["stall"] = _stall(daemon, streams, media, idle, idle_receive)
        say(f"  stall check: receive delay {result['stall']['busy_receive_ms']:.0f} ms while classifying "
            f"(idle: {result['stall']['idle_receive_ms']:.0f} ms)")
        if soak:
            result["soak"] = _soak(daemon, soak_stream, media[soak_resolution][1:], soak, say)
            result["soak"]["resolution"] = soak_resolution
            if soak_resolution in result["resolutions"]:
                result["resolutions"][soak_resolution]["backlog"] = {
                    "segments": soak, "segments_per_s": result["soak"]["segments_per_s"]}
        result["memory"] = daemon.memory()
    finally:
        result["exit_status"] = daemon.stop()
    errors = [line for line in daemon.log_text().splitlines() if " ERROR " in line]
    result["log_errors"] = errors[:5]
    return result


def batching(workdir: Path, model_dir: Path, media: dict[str, list[Path]], *,
             configs: tuple[tuple[int, int], ...] = ((1, 1), (4, 4)), segments: int = 8,
             rounds: int = 2, idle: float = 1.0, say=print) -> dict:
    """Bursts of `segments` at once through daemons configured as (workers, max_batch), taking
    turns burst by burst, after a warm-up burst each; per resolution and config: segments per
    second from the burst's publication to its last row, and the median latency within a burst."""
    if workdir.exists():
        shutil.rmtree(workdir)
    daemons = {cfg: Daemon(workdir / f"w{cfg[0]}b{cfg[1]}", model_dir, *cfg) for cfg in configs}
    result: dict = {"configs": [list(c) for c in configs], "segments": segments, "resolutions": {}}
    try:
        for daemon in daemons.values():
            daemon.start()
        for name, files in media.items():
            segs = files[1:]
            streams = {cfg: Stream(d.live / name) for cfg, d in daemons.items()}
            runs: dict = {f"{w}x{b}": [] for w, b in configs}
            for round_ in range(rounds + 1):  # round 0 warms up: new stream, new batch shapes
                for cfg, daemon in daemons.items():
                    time.sleep(idle)
                    paths, published = streams[cfg].publish(
                        [segs[k % len(segs)] for k in range(segments)])
                    done = daemon.wait_done(paths)
                    if round_ == 0:
                        continue
                    runs[f"{cfg[0]}x{cfg[1]}"].append({
                        "segments_per_s": segments / (max(t for t, _ in done) - published),
                        "latency_ms": statistics.median((t - published) * 1e3 for t, _ in done),
                        "errors": sum(1 for _, d in done if d["error"]),
                    })
            result["resolutions"][name] = {
                k: {"segments_per_s": statistics.median(x["segments_per_s"] for x in v),
                    "latency_ms": statistics.median(x["latency_ms"] for x in v),
                    "errors": sum(x["errors"] for x in v)} for k, v in runs.items()}
            say(f"  batching, {name}: " + ", ".join(
                f"{k} {v['segments_per_s']:.2f} seg/s" for k, v in result["resolutions"][name].items()))
    finally:
        for daemon in daemons.values():
            daemon.stop()
    return result


def _stall(daemon: Daemon, streams: dict[str, Stream], media: dict[str, list[Path]], idle: float,
           idle_receive_ms: float) -> dict:
    """Publish B while A (the largest resolution) is being classified; compare B's receive delay
    with an idle one."""
    names = list(media)
    big, other = names[-1], names[0]
    time.sleep(idle)
    (a,), _ = streams[big].publish([media[big][1]])
    time.sleep(0.4)  # A is being decoded or in the forward pass now (together they take longer)
    (b,), b_published = streams[other].publish([media[other][2]])
    ((a_stored, a_det), (_, b_det)) = daemon.wait_done([a, b])
    a_received, b_received = arrived_at(a_det), arrived_at(b_det)
    return {
        "busy_receive_ms": (b_received - b_published) * 1e3,
        "idle_receive_ms": idle_receive_ms,
        "received_before_a_done": b_received < a_stored,
        "a_classify_ms": (a_stored - a_received) * 1e3,
    }


def arrived_at(detection: dict) -> float:
    """When the source saw the segment complete: the detection's creation less its latency."""
    created = datetime.fromisoformat(detection["created_at"].replace("Z", "+00:00")).timestamp()
    return created - detection["latency_ms"] / 1e3


def soak_memory(workdir: Path, model_dir: Path, segments: list[Path], n: int, *, backend: str,
                say=print) -> dict:
    """Resident memory of `livewatch run` with `backend` over `n` segments of one stream."""
    if workdir.exists():
        shutil.rmtree(workdir)
    daemon = Daemon(workdir, model_dir, backend=backend)
    try:
        startup = daemon.start()
        result = _soak(daemon, Stream(daemon.live / "soak"), segments, n, say)
        result.update(backend=backend, startup_s=round(startup, 1), memory=daemon.memory())
    finally:
        result_status = daemon.stop()
    result["exit_status"] = result_status
    return result


def _soak(daemon: Daemon, stream: Stream, segs: list[Path], n: int, say) -> dict:
    """`n` segments through one stream, at most `ahead` waiting; memory after each."""
    ahead, published, done = 3, [], []
    rss: list[float] = []
    started = time.time()
    times = []
    while len(done) < n:
        while len(published) - len(done) < ahead and len(published) < n:
            batch = min(ahead - (len(published) - len(done)), n - len(published))
            paths, _ = stream.publish([segs[(len(published) + i) % len(segs)] for i in range(batch)])
            published += paths
        (stored, det), = daemon.wait_done([published[len(done)]])
        if det["error"]:
            raise RuntimeError(f"soak segment failed: {det['error']}")
        done.append(published[len(done)])
        times.append(stored)
        rss.append(daemon.memory()["rss_mib"])
        if len(done) % 50 == 0:
            say(f"  soak: {len(done)}/{n} segments, RSS {rss[-1]:.0f} MiB")
    warm = min(10, n - 1)
    tail = rss[warm:]
    slope = _slope(list(range(len(tail))), tail) * 100 if len(tail) > 2 else 0.0
    return {
        "segments": n,
        "rss_mib_after": {str(k): rss[k - 1] for k in (1, warm, n // 2, n) if k >= 1},
        "rss_mib_max": max(rss),
        "growth_mib_after_warmup": round(rss[-1] - rss[warm - 1], 1) if warm >= 1 else 0.0,
        # With several workers a sample may fall with a segment's frames held or not: compare
        # the highest of each half past warm-up (a leak raises the second), not two samples.
        "rss_mib_max_halves": [max(tail[: len(tail) // 2] or tail), max(tail[len(tail) // 2:] or tail)],
        "slope_mib_per_100": round(slope, 2),
        "segments_per_s": (n - 1) / (times[-1] - times[0]) if n > 1 else None,
        "seconds": time.time() - started,
    }


def _slope(x: list[float], y: list[float]) -> float:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    den = sum((a - mx) ** 2 for a in x)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / den if den else 0.0
