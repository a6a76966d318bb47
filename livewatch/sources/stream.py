"""One stream folder: which of its files are complete segments, and in what order to emit them.

A segment is complete when the folder's playlist lists it: encoders write the segment, then the
playlist. A folder without a playlist (an encoder that never writes one) uses the settle rule: a
file is complete once its size and mtime stayed unchanged for `settle_seconds` of our own clock
(the file's mtime alone would trust a network server's clock). When a playlist exists it is the
authority: an unlisted file is in progress, unless it is older than every file the playlist lists,
i.e. it fell out of the playlist's window while nobody watched; those go through the settle rule.

Order: segments that fell out of the window first (by mtime), then listed ones by media sequence,
then unlisted ones of a folder without playlist by mtime (file names in natural order break ties).
Emission stops at the first segment that is not complete yet, so a stream is emitted in order even
across scans; a file still growing has the newest mtime and sorts last, so it holds up nothing.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from .playlist import Entry
from .scan import FileStat, Listing


@dataclass(frozen=True)
class Ready:
    """A complete segment, next in its stream's order."""

    name: str
    stat: FileStat
    entry: Entry | None


class Stream:
    def __init__(
        self,
        name: str,
        folder: str,
        key: str,
        done: dict[str, int],
        settle_seconds: float,
        existing: dict[str, FileStat] | None = None,
    ):
        self.name = name
        self.folder = folder
        #: the folder as the checkpoint names it: "" for the watched folder, else the subfolder
        self.key = key
        #: file name -> mtime_ns of each acknowledged segment; shared with the source's checkpoint
        self.done = done
        #: emitted (or skipped by start_at="live") and not acknowledged yet: not to be emitted again
        self.taken: set[str] = set()
        #: set to look at the folder now instead of at the next rescan
        self.wake = asyncio.Event()
        self._settle_seconds = settle_seconds
        self._settling: dict[str, tuple[FileStat, float]] = {}
        #: start_at="live": the files as they were when the source started, not to be emitted
        #: unless they changed since (a segment being written then)
        self._existing = dict(existing or {})

    def forget_missing(self, listing: Listing) -> list[str]:
        """Drop what is remembered about files that are gone; returns the acknowledged ones, which
        the checkpoint can forget too (this is what keeps the checkpoint bounded)."""
        gone = [name for name in self.done if name not in listing.names]
        for name in gone:
            del self.done[name]
        self.taken.intersection_update(listing.names)
        for name in [n for n in self._settling if n not in listing.names]:
            del self._settling[name]
        return gone

    def select(self, listing: Listing, now: float) -> tuple[list[Ready], float | None]:
        """The complete segments to emit now, in order, and in how many seconds a file that is
        still settling may be complete (None: nothing is settling)."""
        files, playlist = listing.files, listing.playlist
        oldest_listed = min((files[n].mtime_ns for n in playlist or () if n in files), default=None)
        candidates = []
        recheck: float | None = None
        for name, stat in files.items():
            if name in self.taken or self.done.get(name) == stat.mtime_ns:
                continue
            entry = playlist.get(name) if playlist is not None else None
            if entry is not None:
                candidates.append(((1, entry.sequence, _natural(name)), name, stat, entry, True))
            elif playlist is not None and (oldest_listed is None or stat.mtime_ns >= oldest_listed):
                candidates.append(((2, stat.mtime_ns, _natural(name)), name, stat, None, False))
            else:
                wait = self._settle_wait(name, stat, now)
                if wait > 0:
                    recheck = wait if recheck is None else min(recheck, wait)
                phase = 2 if playlist is None else 0
                candidates.append(((phase, stat.mtime_ns, _natural(name)), name, stat, None, wait <= 0))
        candidates.sort(key=lambda c: c[0])
        ready = []
        for _, name, stat, entry, complete in candidates:
            if not complete:
                break
            self.taken.add(name)
            self._settling.pop(name, None)
            if self._existing.pop(name, None) != stat:
                ready.append(Ready(name, stat, entry))
        return ready, recheck

    def _settle_wait(self, name: str, stat: FileStat, now: float) -> float:
        """Seconds until this file has kept its size and mtime for settle_seconds (0: it has)."""
        seen = self._settling.get(name)
        if seen is None or seen[0] != stat:
            seen = self._settling[name] = (stat, now)
        return max(0.0, seen[1] + self._settle_seconds - now)


def _natural(name: str) -> tuple:
    """seg9.ts before seg10.ts: digit runs compare as numbers."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name)))
