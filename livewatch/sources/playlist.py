"""What an HLS media playlist says about the segment files next to it (parsed with `m3u8`)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import m3u8

log = logging.getLogger("livewatch.sources.folder")


@dataclass(frozen=True)
class Entry:
    """One `#EXTINF` line of a playlist."""

    sequence: int
    start: datetime | None
    duration: float | None


def read_playlists(folder: str, paths: list[str]) -> dict[str, Entry] | None:
    """The segments the folder's media playlists list, by file name; None when it has none.

    Blocking. Master (variant) playlists are skipped. A playlist that cannot be parsed (an encoder
    that rewrites it in place, caught half-written) lists nothing this time rather than letting the
    folder fall back to the no-playlist rule.
    """
    found = False
    entries: dict[str, Entry] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                playlist = m3u8.loads(f.read())
        except FileNotFoundError:  # replaced or removed while we looked
            continue
        except ValueError as exc:
            log.warning("cannot parse playlist %s yet (%s); will read it again", path, exc)
            found = True
            continue
        if playlist.is_variant:
            continue
        found = True
        for seg in playlist.segments:
            name = _local_name(folder, seg.uri)
            if name is not None:
                entries[name] = Entry(seg.media_sequence, _aware(seg.current_program_date_time), seg.duration)
    return entries if found else None


def _local_name(folder: str, uri: str | None) -> str | None:
    """The file name a segment URI points to, if that file lies in `folder` itself."""
    if not uri:  # a playlist cut off after its #EXTINF line
        return None
    target = os.path.normpath(os.path.join(folder, unquote(urlsplit(uri).path)))
    parent, name = os.path.split(target)
    return name if parent == os.path.normpath(folder) else None


def _aware(start: datetime | None) -> datetime | None:
    """HLS requires a time zone in EXT-X-PROGRAM-DATE-TIME; read one without it as UTC."""
    if start is not None and start.tzinfo is None:
        return start.replace(tzinfo=timezone.utc)
    return start
