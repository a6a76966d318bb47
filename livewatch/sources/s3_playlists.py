"""What the latest `.m3u8` of each stream on S3 says about its segments (media sequence, program
date-time, duration), so the `s3-events` source can fill them in. Parsing only; no AWS calls.

Only a segment that the playlist lists gets its values: an encoder writes a segment before the
playlist that lists it, so a segment seen first gets none (it is not guessed: a guess that differs
from the playlist's value on redelivery would give the same segment another time).
"""
from __future__ import annotations

import posixpath
from collections import OrderedDict

import m3u8

from .playlist import Entry, _aware

#: how many segments per stream are remembered (live playlists list far fewer)
MAX_ENTRIES = 2000


class PlaylistIndex:
    def __init__(self) -> None:
        self._entries: dict[str, OrderedDict[str, Entry]] = {}  # bucket/folder -> name -> entry

    def update(self, bucket: str, key: str, text: str) -> int:
        """Read the playlist `key`'s text; return how many segments it lists. Raises ValueError
        for a text that is not a playlist."""
        playlist = m3u8.loads(text)
        if playlist.is_variant:
            return 0
        folder = posixpath.dirname(key)
        entries = self._entries.setdefault(f"{bucket}/{folder}", OrderedDict())
        count = 0
        for seg in playlist.segments:
            if not seg.uri or "://" in seg.uri:
                continue
            path = posixpath.normpath(posixpath.join(folder, seg.uri.split("?")[0]))
            parent, name = posixpath.split(path)
            if parent != folder:
                continue
            entries[name] = Entry(seg.media_sequence, _aware(seg.current_program_date_time), seg.duration)
            entries.move_to_end(name)
            count += 1
        while len(entries) > MAX_ENTRIES:
            entries.popitem(last=False)
        return count

    def lookup(self, bucket: str, key: str) -> Entry | None:
        folder, name = posixpath.split(key)
        return self._entries.get(f"{bucket}/{folder}", {}).get(name)
