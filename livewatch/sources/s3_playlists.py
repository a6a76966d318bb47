"""What the latest `.m3u8` of each stream on S3 says about its segments (media sequence, program
date-time, duration), so the `s3-events` source can fill them in. Parsing only; no AWS calls.

Only a segment that the playlist lists gets its values: an encoder writes a segment before the
playlist that lists it, so a segment seen first gets none (it is not guessed: a guess that differs
from the playlist's value on redelivery would give the same segment another time). Likewise a
segment is the stream's last (`Entry.last`) only when the playlist read before it has
EXT-X-ENDLIST and lists it last.
"""
from __future__ import annotations

import posixpath
from collections import OrderedDict

from .playlist import Entry, parse_playlist

#: how many segments per stream are remembered (live playlists list far fewer)
MAX_ENTRIES = 2000


class PlaylistIndex:
    def __init__(self) -> None:
        self._entries: dict[str, OrderedDict[str, Entry]] = {}  # bucket/folder -> name -> entry

    def update(self, bucket: str, key: str, text: str) -> int:
        """Read the playlist `key`'s text; return how many segments it lists. Raises ValueError
        for a text that is not a playlist."""
        folder = posixpath.dirname(key)
        listed = parse_playlist(text, folder)
        if listed is None:  # a master playlist
            return 0
        entries = self._entries.setdefault(f"{bucket}/{folder}", OrderedDict())
        for name, entry in listed.items():
            entries[name] = entry
            entries.move_to_end(name)
        count = len(listed)
        while len(entries) > MAX_ENTRIES:
            entries.popitem(last=False)
        return count

    def lookup(self, bucket: str, key: str) -> Entry | None:
        folder, name = posixpath.split(key)
        return self._entries.get(f"{bucket}/{folder}", {}).get(name)
