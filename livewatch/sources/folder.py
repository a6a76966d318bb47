"""The built-in `folder` source: live HLS segments that an encoder writes into a folder.

Layout: one stream per subfolder (`root/cam1/*.ts` + `cam1/index.m3u8` is stream "cam1"); segments
directly in the root belong to a stream named after the root folder (not after its playlist: the
name must not change when the playlist appears after the first segment). Finding and following the
stream folders is `watch.py`'s job; which files are complete and in what order they go out is
`stream.py`'s; `checkpoint.py` keeps what has been acknowledged, so that a restart neither repeats
nor skips a segment: emitted but unacknowledged segments come again, acknowledged ones never do.

The segment a playlist with EXT-X-ENDLIST lists last is the stream's last (`Segment.last`: its
events close). That holds when the playlist that first lists it also ends (ffmpeg's hls muxer
writes both at once); a segment emitted before the playlist gained EXT-X-ENDLIST stays unmarked
(its stream's last event stays open).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..components import Emit, Options, Source
from ..contract import Segment
from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..segment_files import open_segment_file
from .checkpoint import Checkpoint
from .playlist import Entry
from .scan import FileStat, folder_playlist, stat_file
from .watch import FolderWatcher

log = logging.getLogger("livewatch.sources.folder")

CHECKPOINT_NAME = ".livewatch-checkpoint.sqlite"


class FolderOptions(Options):
    path: Path = Field(description="the folder the encoder writes into")
    pattern: str = Field("*.ts", description="glob for segment file names")
    subfolders: bool = Field(True, description="each subfolder (one level) is a stream of its own")
    checkpoint: Path | None = Field(
        None, description=f"SQLite file of acknowledged segments; default: <path>/{CHECKPOINT_NAME}"
    )
    settle_seconds: float = Field(
        2.0, ge=0, description="seconds a file no playlist lists must stay unchanged to count as complete"
    )
    poll_interval: float = Field(2.0, gt=0, description="seconds between rescans (file events come sooner)")
    start_at: Literal["oldest", "live"] = Field(
        "oldest", description='"oldest": all not yet acknowledged; "live": only segments that appear from now on'
    )
    files: list[Path] = Field(
        default_factory=list,
        description="emit these files (relative to path, or absolute) in this order, then finish",
    )
    once: bool = Field(False, description="emit what is complete now, then finish")

    @model_validator(mode="after")
    def _files_are_not_live(self) -> "FolderOptions":
        if self.files and self.start_at == "live":
            raise ValueError('start_at="live" cannot apply to a list of `files`; remove one of them')
        return self


@dataclass(frozen=True)
class AckHandle:
    folder: str  # the key of its folder: "" for the root, the subfolder's name, or an absolute path
    name: str
    mtime_ns: int


class FolderSource(Source):
    """Live HLS segments from a folder an encoder writes into (one stream per subfolder)."""

    name = "folder"
    Options = FolderOptions
    options: FolderOptions

    @classmethod
    def for_path(cls, path: Path) -> FolderOptions:
        return FolderOptions(path=path)

    @classmethod
    def one_shot(cls, options: FolderOptions) -> FolderOptions:
        return FolderOptions.model_validate({**options.model_dump(), "once": True})

    def media_root(self) -> Path:
        return self.options.path

    def __init__(self, options: FolderOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self._root = os.path.abspath(options.path)
        self._files = [os.path.normpath(os.path.join(self._root, f)) for f in options.files]
        self._checkpoint_path = os.path.abspath(options.checkpoint or os.path.join(self._root, CHECKPOINT_NAME))
        self._checkpoint: Checkpoint | None = None
        self._watcher: FolderWatcher | None = None  # owns the stream state (made by start)

    async def start(self) -> None:
        if not os.path.isdir(self._root):
            raise ConfigError(f"folder source {self.instance!r}: {self._root} is not a folder")
        missing = [f for f in self._files if not os.path.isfile(f)]
        if missing:
            raise ConfigError(f"folder source {self.instance!r}: no such file: {', '.join(missing)}")
        try:
            self._checkpoint = await asyncio.to_thread(Checkpoint, self._checkpoint_path)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"folder source {self.instance!r}: cannot open checkpoint {self._checkpoint_path}: {exc}; "
                f"set `checkpoint` to a writable local path"
            ) from exc
        self._watcher = FolderWatcher(self._root, self.options, self._checkpoint, self._segment)
        count = await asyncio.to_thread(self._watcher.load)
        log.info("resumed from checkpoint %s with %d segments done", self._checkpoint_path, count)

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.to_thread(self._checkpoint.close)
            self._checkpoint = None

    async def run(self, emit: Emit) -> None:
        if self._files:
            await self._emit_files(emit)
            return
        log.info("watching %s for %s (checkpoint %s)", self._root, self.options.pattern, self._checkpoint_path)
        await self._watcher.run(emit)

    async def ack(self, segment: Segment) -> None:
        handle: AckHandle = segment.ack_handle
        await self._watcher.ack(handle.folder, handle.name, handle.mtime_ns)

    def acknowledged_files(self, folder: str = "") -> set[str]:
        """Names of the acknowledged files in `folder` (relative to the watched path; "" is the
        path itself), for a source that manages the files it hands on (the rtsp spool)."""
        return self._watcher.done_names(folder) if self._watcher is not None else set()

    async def release(self, segment: Segment) -> None:
        """Emit the segment again at its stream's next look (after the ones already emitted)."""
        handle: AckHandle = segment.ack_handle
        self._watcher.release(handle.folder, handle.name)

    async def _emit_files(self, emit: Emit) -> None:
        """The one-shot `files` list: emit each file not acknowledged yet, in the order given, and
        return once all are emitted (the daemon sees them through to their acks; a released one
        comes back on the next run). They are taken as complete; their folder's playlist, if any,
        fills in sequence, start and duration."""
        playlists: dict[str, dict[str, Entry] | None] = {}
        for path in self._files:
            folder, name = os.path.split(path)
            key = os.path.relpath(folder, self._root)
            key = "" if key == os.curdir else folder if key.split(os.sep)[0] == os.pardir else key
            stat = await asyncio.to_thread(stat_file, path)
            if stat is None:  # deleted since start(): emitted anyway, opening it says so
                log.warning("%s is gone before it could be read", path)
                stat = FileStat(size=0, mtime_ns=0)
            if self._watcher.is_done(key, name, stat.mtime_ns):
                log.info("%s is already done (checkpoint); skipped", path)
                continue
            if folder not in playlists:
                playlists[folder] = await asyncio.to_thread(folder_playlist, folder)
            entry = (playlists[folder] or {}).get(name)
            await emit(self._segment(path, os.path.basename(folder), key, stat, entry, time.time()))

    def _segment(
        self, path: str, stream: str, key: str, stat: FileStat, entry: Entry | None, seen_at: float
    ) -> Segment:
        return Segment(
            uri=path,
            stream=stream,
            open=functools.partial(open_segment_file, path),
            source=self.instance,
            sequence=entry.sequence if entry else None,
            start=entry.start if entry else None,
            duration=entry.duration if entry else None,
            last=entry.last if entry else False,
            ack_handle=AckHandle(key, os.path.basename(path), stat.mtime_ns),
            size=stat.size,
            arrived_at=seen_at,
        )


@hookimpl
def register_sources(register):
    register(FolderSource)
