"""`livewatch demo`: the whole chain, offline, on a laptop, with a known answer.

1. write a labelled video set of camera motions (`synthetic`) and its setting files (`prep`);
2. train a small network on it (`train`, backbone ``small3d``) and package it (`package`);
3. play a scripted live HLS stream into a folder in real time (`live`) while the daemon — the
   folder source, the in-process classifier loading the model.tar.gz, the local SQLite sink —
   classifies it;
4. print each detection against the script as it arrives, with its window timeline, then the
   accuracy of the segments and of the windows. Where the script changes motion, the change comes
   in the middle of a segment (``"a>b"``): its windows should show ``a`` then ``b``.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from livewatch.components import Sink
from livewatch.contract import Detection

from .live import motion_at
from .synthetic import MOTIONS

#: The demo's input: small enough to train on two CPU cores in about a minute.
DEMO_SHAPE = dict(frames=8, crop=64, resize=(86, 64))
DEMO_VIDEO = dict(fps=15, size=(128, 96))


@dataclass
class DemoResult:
    script: list[str]
    frames: int = 30  # per segment (what `motion_at` needs to place a window)
    detections: dict[int, Detection] = field(default_factory=dict)
    seconds: float = 0.0
    train_seconds: float = 0.0
    val_acc: float | None = None
    model: Path | None = None

    @property
    def correct(self) -> int:  # a segment that changes motion: either of its motions
        return sum(1 for n, d in self.detections.items() if d.label in self.script[n].split(">"))

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.script) if self.script else 0.0

    def window_marks(self, n: int) -> list[tuple[str, str]]:
        """(scripted, detected) for each window of segment `n`, scripted at the window's middle."""
        d = self.detections.get(n)
        if d is None:
            return []
        return [(motion_at(self.script[n], (w.frames[0] + w.frames[1]) // 2, self.frames), w.label)
                for w in d.windows]

    @property
    def window_counts(self) -> tuple[int, int]:
        marks = [m for n in self.detections for m in self.window_marks(n)]
        return sum(1 for want, got in marks if want == got), len(marks)


class TimelineSink(Sink):
    """Keeps every detection in memory and reports it (the demo's view of the daemon)."""

    name = "timeline"

    def __init__(self, on_detection: Callable[[Detection], None]):
        super().__init__()
        self.on_detection = on_detection
        self.seen: dict[str, Detection] = {}
        self.changed = asyncio.Event()

    async def write(self, detection: Detection) -> None:
        if detection.uri not in self.seen:
            self.on_detection(detection)
        self.seen[detection.uri] = detection
        self.changed.set()


def make_script(segments: int, seed: int = 0) -> list[str]:
    """A scripted sequence of motions: every motion at least once, in runs like a real camera;
    every other change of motion comes in the middle of a segment (``"a>b"``)."""
    rng = random.Random(seed)
    script: list[str] = []
    while len(script) < segments:
        order = list(MOTIONS)
        rng.shuffle(order)
        for motion in order:
            script += [motion] * rng.choice((1, 1, 2))
    script = script[:segments]
    changes = [n for n in range(len(script) - 1) if script[n] != script[n + 1]]
    for n in changes[::2]:
        script[n] = f"{script[n]}>{script[n + 1]}"
    return script


def build_model(work: Path, *, per_class: int = 40, epochs: int = 30, seed: int = 1,
                echo: Callable[[str], None] = print, progress: bool = True):
    """Steps 1 and 2: the dataset, the trained model, the model.tar.gz. Returns (tar, TrainResult)."""
    from .package import package
    from .prep import prepare
    from .synthetic import write_motion_dataset
    from .train import TrainConfig, train

    data = work / "data"
    started = time.perf_counter()
    write_motion_dataset(data, per_class=per_class, seconds=2.0, seed=seed, **DEMO_VIDEO)
    prep = prepare(data, val_fraction=0.25, seed=seed)
    echo(f"wrote {per_class} videos per class in {time.perf_counter() - started:.0f}s:\n{prep.summary()}")
    result = train(TrainConfig(data=data, out=work / "model", backbone="small3d", pretrained=False,
                               epochs=epochs, batch_size=8, optimizer="adam", lr=0.003, seed=seed,
                               name="camera-motion", progress=progress, **DEMO_SHAPE), echo=echo)
    tar = package(result.model_dir, work / "model.tar.gz")
    echo(f"packaged {tar}")
    return tar, result


async def play_and_detect(work: Path, model: Path, script: list[str], *, seconds: float = 2.0,
                          seed: int = 1000, echo: Callable[[str], None] = print,
                          timeout: float = 60.0) -> dict[int, Detection]:
    """Step 3: the live stream and the daemon, side by side; returns detections by segment."""
    from livewatch.daemon import Daemon
    from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
    from livewatch.settings import DaemonSettings
    from livewatch.sinks.local import LocalOptions, LocalSink
    from livewatch.sources.folder import FolderOptions, FolderSource

    from .live import ScriptedStream

    live = work / "live"
    shutil.rmtree(live, ignore_errors=True)  # a previous run's segments and checkpoint
    stream = ScriptedStream(live / "cam1", script, seconds=seconds, seed=seed, **DEMO_VIDEO)
    by_uri: dict[str, int] = {}
    began = time.monotonic()

    def show(d: Detection) -> None:
        n = by_uri.get(d.uri, d.sequence if d.sequence is not None else -1)
        want = script[n] if 0 <= n < len(script) else "?"
        got = d.label if d.ok else f"error: {d.error}"
        mark = "ok" if d.label in want.split(">") else "WRONG"
        frames = stream.frames
        windows = "  ".join(
            f"{w.label}{'' if w.label == motion_at(want, (w.frames[0] + w.frames[1]) // 2, frames) else '(!)'}"
            for w in d.windows) if want != "?" else ""
        echo(f"{time.monotonic() - began:6.1f}s  #{n:<3} script {want:<18} detected {got:<10} "
             f"p={d.probability or 0:.2f}  latency {d.latency_ms or 0:5.0f} ms  {mark}"
             f"{'  windows: ' + windows if windows else ''}")

    timeline = TimelineSink(show)
    source = FolderSource(FolderOptions(path=live, poll_interval=0.5, settle_seconds=0.5))
    classifier = I3DClassifier(I3DOptions(model=str(model), cache_dir=work / "cache", device="cpu"))
    sinks = [LocalSink(LocalOptions(path=work / "detections.sqlite")), timeline]
    daemon = Daemon([source], classifier, sinks, DaemonSettings(log_level="WARNING"))
    running = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        while classifier.model is None and not running.done():  # the stream starts once it can be read
            await asyncio.sleep(0.1)
        if running.done():
            running.result()
        echo(f"playing {len(script)} segments of {seconds:g}s into {stream.folder} in real time")
        began = start = time.monotonic()
        for n in range(len(script)):
            await asyncio.sleep(max(0.0, start + (n + 1) * seconds - time.monotonic()))
            path = await asyncio.to_thread(stream.write_segment)
            by_uri[str(path)] = n
        deadline = time.monotonic() + timeout
        while len(timeline.seen) < len(script) and time.monotonic() < deadline:
            if running.done():
                break
            timeline.changed.clear()
            try:
                await asyncio.wait_for(timeline.changed.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
    finally:
        daemon.stop()
        await running
    return {by_uri[uri]: d for uri, d in timeline.seen.items() if uri in by_uri}


def run_demo(work: Path, *, segments: int = 12, seconds: float = 2.0, model: Path | None = None,
             per_class: int = 40, epochs: int = 30, seed: int = 1,
             echo: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """The whole demo (steps 1-4). With `model`, steps 1-2 are skipped and that model is used."""
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    result = DemoResult(script=make_script(segments, seed),
                        frames=max(1, round(seconds * DEMO_VIDEO["fps"])))
    if model is None:
        model, trained = build_model(work, per_class=per_class, epochs=epochs, seed=seed, echo=echo,
                                     progress=progress)
        result.train_seconds, result.val_acc = trained.seconds, trained.best_val_acc
    result.model = model
    result.detections = asyncio.run(_quiet(play_and_detect(work, model, result.script, seconds=seconds,
                                                           seed=seed * 7919 + 1000, echo=echo)))
    result.seconds = time.perf_counter() - started
    echo(timeline_table(result))
    return result


async def _quiet(coro):
    """Run `coro` without asyncio's "exception was never retrieved" report for a cancelled
    future: the daemon's stop() leaves one behind (a gather of the cancelled source tasks)."""
    loop = asyncio.get_running_loop()

    def handler(loop, context):
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return await coro


def timeline_table(result: DemoResult) -> str:
    lines = ["", "segment  scripted            detected    probability  windows (scripted/detected)",
             "-------  ------------------  ----------  -----------  ---------------------------"]
    for n, want in enumerate(result.script):
        d = result.detections.get(n)
        got = "(none)" if d is None else (d.label or "error")
        prob = f"{d.probability:.2f}" if d is not None and d.probability is not None else "-"
        windows = " ".join(f"{w}/{g}" if w != g else w for w, g in result.window_marks(n))
        wrong = "" if got in want.split(">") else "<- wrong"
        lines.append(f"{n:>7}  {want:<18}  {got:<10}  {prob:>11}  {windows} {wrong}".rstrip())
    right, total = result.window_counts
    if total:
        lines.append(f"\nwindow accuracy: {right}/{total} = {right / total:.0%}")
    lines.append(f"{'' if total else chr(10)}accuracy: {result.correct}/{len(result.script)} = {result.accuracy:.0%} "
                 f"(total {result.seconds:.0f}s"
                 + (f", training {result.train_seconds:.0f}s, val acc {result.val_acc:.0%})"
                    if result.val_acc is not None else ")"))
    return "\n".join(lines)
