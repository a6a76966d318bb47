"""What an HLS media playlist says about the segment files next to it (parsed with `m3u8`):
one parser for the folder source's playlists on disk and the s3-events source's on S3."""
from __future__ import annotations

import logging
import posixpath
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
    last: bool = False  # the stream's last: listed last by a playlist that has EXT-X-ENDLIST


def parse_playlist(text: str, folder: str) -> dict[str, Entry] | None:
    """The segments a media playlist's `text` lists that lie in `folder` itself (a path, or an S3
    key prefix; "/"-separated), by file name, in playlist order; None for a master (variant)
    playlist. The playlist's last segment is `last` when it has EXT-X-ENDLIST. Raises ValueError
    for a text that is not a playlist."""
    playlist = m3u8.loads(text)
    if playlist.is_variant:
        return None
    entries: dict[str, Entry] = {}
    listed = [seg for seg in playlist.segments if seg.uri]
    for n, seg in enumerate(listed):
        name = _name_in(folder, seg.uri)
        if name is not None:
            entries[name] = Entry(seg.media_sequence, _aware(seg.current_program_date_time),
                                  seg.duration, last=playlist.is_endlist and n == len(listed) - 1)
    return entries


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
                listed = parse_playlist(f.read(), folder)
        except FileNotFoundError:  # replaced or removed while we looked
            continue
        except ValueError as exc:
            log.warning("cannot parse playlist %s yet (%s); will read it again", path, exc)
            found = True
            continue
        if listed is not None:
            found = True
            entries.update(listed)
    return entries if found else None


def _name_in(folder: str, uri: str | None) -> str | None:
    """The file name a segment URI points to, if that file lies in `folder` itself (not for an
    absolute URL, nor a file in another folder)."""
    if not uri:  # a playlist cut off after its #EXTINF line
        return None
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc:
        return None
    target = posixpath.normpath(posixpath.join(folder, unquote(parts.path)))
    parent, name = posixpath.split(target)
    return name if posixpath.normpath(parent or ".") == posixpath.normpath(folder or ".") else None


def _aware(start: datetime | None) -> datetime | None:
    """HLS requires a time zone in EXT-X-PROGRAM-DATE-TIME; read one without it as UTC."""
    if start is not None and start.tzinfo is None:
        return start.replace(tzinfo=timezone.utc)
    return start
