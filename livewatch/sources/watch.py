"""Following every stream folder under the watched root: one task per stream folder.

`FolderWatcher` owns the folder source's stream state: what is acknowledged (mirrored in the
checkpoint), the streams being followed, and (start_at="live") the files to skip. The source
asks it and tells it (`is_done`, `ack`, `release`); nothing else holds that state.

Watching: `watchfiles.awatch` (inotify and friends) wakes a stream as soon as its folder changes,
and every stream also rescans every `poll_interval`: the safety net for missed events and for
network filesystems (NFS, SMB), which send none. If file events cannot be had at all (e.g. the
inotify watch limit), that is logged and the rescans carry on alone. One task per stream keeps
streams independent: a stream waiting on a full queue holds up nobody else's pickup.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Callable, Protocol

from watchfiles import Change, awatch
from watchfiles._rust_notify import WatchfilesRustInternalError

from ..components import Emit
from ..contract import Segment
from .checkpoint import Checkpoint
from .playlist import Entry
from .scan import FileStat, find_streams, scan_folder
from .stream import Stream

log = logging.getLogger("livewatch.sources.folder")

#: awatch batches events for at most this long (its default is 1.6 s): an encoder writing a segment
#: changes it continuously, and the playlist's rename should not wait long behind that
WATCH_DEBOUNCE_MS = 300

#: (path, stream name, folder key, stat, playlist entry, seen_at) -> the Segment to emit
MakeSegment = Callable[[str, str, str, FileStat, Entry | None, float], Segment]


class WatchOptions(Protocol):
    """What the watcher reads of the folder source's options."""

    pattern: str
    subfolders: bool
    settle_seconds: float
    poll_interval: float
    once: bool
    start_at: str


class FolderWatcher:
    def __init__(self, root: str, options: WatchOptions, checkpoint: Checkpoint,
                 make_segment: MakeSegment):
        self.root = root
        self.options = options
        self.checkpoint = checkpoint
        self.make_segment = make_segment
        self.checkpoint_path = str(checkpoint.path)
        self._done: dict[str, dict[str, int]] = {}  # folder key -> file name -> mtime_ns, acknowledged
        self._streams: dict[str, Stream] = {}  # folder key -> the stream being followed
        self._existing: dict[str, dict[str, FileStat]] = {}  # start_at="live": the files at the start

    # -- the state: loaded once, then changed only through these ------------------------------

    def load(self) -> int:
        """Blocking: the checkpoint's rows, less (and pruned of) those whose file is gone, and
        with start_at="live" the files there now. Returns how many segments are done."""
        done = self.checkpoint.load()
        for folder, names in done.items():
            gone = [n for n in names if not os.path.exists(os.path.join(self.root, folder, n))]
            if gone:
                self.checkpoint.remove(folder, gone)
            for name in gone:
                del names[name]
        self._done = done
        if self.options.start_at == "live":
            self._existing = self._snapshot()
        return sum(map(len, done.values()))

    def _snapshot(self) -> dict[str, dict[str, FileStat]]:
        existing = {}
        for key in find_streams(self.root, self.options.pattern, self.options.subfolders):
            try:
                existing[key] = scan_folder(os.path.join(self.root, key), self.options.pattern).files
            except FileNotFoundError:
                continue
        return existing

    def done_names(self, key: str) -> set[str]:
        """The acknowledged files of the folder `key` (a snapshot)."""
        return set(self._done.get(key, {}))

    def is_done(self, key: str, name: str, mtime_ns: int) -> bool:
        return self._done.get(key, {}).get(name) == mtime_ns

    async def ack(self, key: str, name: str, mtime_ns: int) -> None:
        """Never emit this file (at this mtime) again, also after a restart."""
        await asyncio.to_thread(self.checkpoint.add, key, name, mtime_ns)
        self._done.setdefault(key, {})[name] = mtime_ns
        if (stream := self._streams.get(key)) is not None:
            stream.taken.discard(name)

    def release(self, key: str, name: str) -> None:
        """Emit the file again at its stream's next look (after the ones already emitted)."""
        if (stream := self._streams.get(key)) is not None:
            stream.taken.discard(name)
            stream.wake.set()

    # -- following ----------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        """Follow the streams until cancelled; with `once`, until each has had its one pass."""
        async with asyncio.TaskGroup() as tasks:
            await self._discover(tasks, emit, initial=True)
            if self.options.once:
                return  # the task group waits for every stream to finish its pass
            tasks.create_task(self._watch(tasks, emit), name="folder:events")
            while True:  # new stream folders that no event announced
                await asyncio.sleep(self.options.poll_interval)
                await self._discover(tasks, emit)

    async def _discover(self, tasks: asyncio.TaskGroup, emit: Emit, initial: bool = False) -> None:
        """Start following every stream folder not followed yet."""
        opts = self.options
        try:
            keys = await asyncio.to_thread(find_streams, self.root, opts.pattern, opts.subfolders)
        except OSError as exc:
            log.warning("cannot list %s (%s); trying again in %ss", self.root, exc, opts.poll_interval)
            return
        new = [k for k in keys if k not in self._streams]
        names = ", ".join(k or os.path.basename(self.root) for k in new)
        if initial:
            log.info("found %d stream(s) in %s: %s", len(new), self.root, names or "none yet")
        elif new:
            log.info("found new stream(s) in %s: %s", self.root, names)
        for key in new:
            stream = Stream(
                name=key or os.path.basename(self.root),
                folder=os.path.join(self.root, key),
                key=key,
                done=self._done.setdefault(key, {}),
                settle_seconds=opts.settle_seconds,
                existing=self._existing.pop(key, None),
            )
            self._streams[key] = stream
            tasks.create_task(self._follow(stream, emit), name=f"folder:{stream.name}")

    async def _follow(self, stream: Stream, emit: Emit) -> None:
        """Look at one stream folder whenever it changes or the rescan interval passes, and emit
        its complete segments in order (each `emit` may wait: that is backpressure)."""
        opts = self.options
        first_look = time.monotonic()
        listing = None
        while True:
            try:
                listing = await asyncio.to_thread(scan_folder, stream.folder, opts.pattern)
            except FileNotFoundError:
                log.info("stream %s: folder %s is gone; stopped following it", stream.name, stream.folder)
                del self._streams[stream.key]
                if stream.done:
                    await asyncio.to_thread(self.checkpoint.remove, stream.key, list(stream.done))
                    stream.done.clear()
                return
            except OSError as exc:
                log.warning("stream %s: cannot list %s (%s); trying again", stream.name, stream.folder, exc)
                recheck = None
            else:
                gone = stream.forget_missing(listing)
                if gone:
                    await asyncio.to_thread(self.checkpoint.remove, stream.key, gone)
                ready, recheck = stream.select(listing, time.monotonic())
                seen_at = time.time()
                for item in ready:
                    sequence = "unknown" if item.entry is None else item.entry.sequence
                    log.info("new segment %s (stream %s, sequence %s)", item.name, stream.name, sequence)
                    path = os.path.join(stream.folder, item.name)
                    await emit(self.make_segment(path, stream.name, stream.key, item.stat, item.entry, seen_at))
            if opts.once and (recheck is None or time.monotonic() - first_look >= opts.settle_seconds):
                self._report_left(stream, listing)
                return
            timeout = opts.poll_interval if recheck is None else min(opts.poll_interval, recheck)
            try:
                async with asyncio.timeout(timeout):
                    await stream.wake.wait()
            except TimeoutError:
                pass
            stream.wake.clear()

    @staticmethod
    def _report_left(stream, listing) -> None:
        """With `once`, say which files this pass leaves for a later run: nothing goes unmentioned."""
        if listing is None:
            return
        left = sorted(n for n, st in listing.files.items()
                      if n not in stream.taken and stream.done.get(n) != st.mtime_ns)
        if left:
            log.warning("stream %s: %d file(s) not complete yet (not in the playlist, or still "
                        "growing), left for a later run: %s", stream.name, len(left), ", ".join(left))

    async def _watch(self, tasks: asyncio.TaskGroup, emit: Emit) -> None:
        """Wake the streams whose folders change; look for new stream folders when the root does."""
        try:
            async for changes in awatch(
                self.root,
                watch_filter=self._relevant,
                debounce=WATCH_DEBOUNCE_MS,
                recursive=self.options.subfolders,
            ):
                rediscover = False
                for change, path in changes:
                    parts = Path(os.path.relpath(path, self.root)).parts
                    stream = self._streams.get(parts[0] if len(parts) == 2 else "")
                    if stream is not None:
                        stream.wake.set()
                    # a new entry in the root may be a new stream folder
                    rediscover |= stream is None or (len(parts) == 1 and change == Change.added)
                if rediscover:
                    await self._discover(tasks, emit)
        except (OSError, WatchfilesRustInternalError) as exc:
            log.warning("no file events for %s (%s); rescanning every %ss", self.root, exc, self.options.poll_interval)

    def _relevant(self, _change: Change, path: str) -> bool:
        """A change in the root or a stream folder, not to a hidden file (a temp file being
        written, our checkpoint) nor to a checkpoint kept elsewhere in the tree."""
        parts = Path(os.path.relpath(path, self.root)).parts
        return (
            0 < len(parts) <= 2
            and not any(p.startswith(".") for p in parts)  # also ".." for a path outside the root
            and not path.startswith(self.checkpoint_path)
        )
