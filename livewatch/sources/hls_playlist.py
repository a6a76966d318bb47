"""What a live HLS playlist fetched by URL says (RFC 8216), parsed with `m3u8`: a media playlist's
segments, or a master playlist's variants and the one to follow.

Pure functions over text, so the `hls` source's logic is testable without a server. Segment URIs,
key URIs and variant URIs come back absolute (resolved against the playlist's own URL).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urljoin

import m3u8


class NotAPlaylist(ValueError):
    """The text is not an HLS playlist (no #EXTM3U, or m3u8 cannot parse it)."""


@dataclass(frozen=True)
class Key:
    """An `#EXT-X-KEY`: AES-128 needs the key at `uri`; `iv` None means the media sequence."""

    method: str
    uri: str | None
    iv: bytes | None


@dataclass(frozen=True)
class MediaSegment:
    sequence: int
    uri: str
    duration: float | None
    start: datetime | None  # from EXT-X-PROGRAM-DATE-TIME, carried forward by m3u8
    discontinuity: bool
    byterange: tuple[int, int] | None  # (offset, length) in the resource at `uri`
    key: Key | None  # None or METHOD=NONE: clear
    last: bool = False  # the stream's last: the playlist lists it last and has EXT-X-ENDLIST

    @property
    def id(self) -> str:
        """What tells two segments apart for the checkpoint: the URI, and the range in it."""
        return f"{self.uri}@{self.byterange[0]}" if self.byterange else self.uri


@dataclass(frozen=True)
class MediaPlaylist:
    segments: list[MediaSegment]
    target_duration: float
    media_sequence: int
    ended: bool  # EXT-X-ENDLIST: no segment will ever be added

    @property
    def last_sequence(self) -> int | None:
        return self.segments[-1].sequence if self.segments else None


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: tuple[int, int] | None
    codecs: str


def parse(text: str, url: str) -> MediaPlaylist | list[Variant]:
    """A media playlist, or a master playlist's variants (at least one). Raises NotAPlaylist."""
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise NotAPlaylist(f"{url} is not an HLS playlist (it does not start with #EXTM3U)")
    try:
        playlist = m3u8.loads(text, uri=url)
    except Exception as exc:  # m3u8 raises ValueError, ParseError, AttributeError...
        raise NotAPlaylist(f"{url}: cannot parse the playlist: {exc}") from exc
    if playlist.is_variant:
        variants = [
            Variant(
                urljoin(url, p.uri),
                p.stream_info.bandwidth or 0,
                tuple(p.stream_info.resolution) if p.stream_info.resolution else None,
                p.stream_info.codecs or "",
            )
            for p in playlist.playlists
        ]
        if not variants:
            raise NotAPlaylist(f"{url}: a master playlist without any variant")
        return variants
    return _media(playlist, url)


def _media(playlist: m3u8.M3U8, url: str) -> MediaPlaylist:
    first = playlist.media_sequence or 0
    segments = []
    next_offset: dict[str, int] = {}  # a BYTERANGE without @offset follows the previous range
    for i, seg in enumerate(playlist.segments):
        if not seg.uri:  # a playlist cut off after its #EXTINF line
            break
        uri = urljoin(url, seg.uri)
        byterange = None
        if seg.byterange:
            length, _, offset = str(seg.byterange).partition("@")
            start = int(offset) if offset else next_offset.get(uri, 0)
            byterange = (start, int(length))
            next_offset[uri] = start + int(length)
        segments.append(
            MediaSegment(
                sequence=first + i,
                uri=uri,
                duration=seg.duration,
                start=_aware(seg.current_program_date_time),
                discontinuity=bool(seg.discontinuity),
                byterange=byterange,
                key=_key(seg.key, url),
            )
        )
    ended = bool(playlist.is_endlist)
    if ended and segments:
        segments[-1] = replace(segments[-1], last=True)
    return MediaPlaylist(segments, float(playlist.target_duration or 10), first, ended)


def _key(key, url: str) -> Key | None:
    if key is None or not key.method or key.method.upper() == "NONE":
        return None
    iv = bytes.fromhex(key.iv[2:] if key.iv.lower().startswith("0x") else key.iv) if key.iv else None
    return Key(key.method.upper(), urljoin(url, key.uri) if key.uri else None, iv)


def _aware(start: datetime | None) -> datetime | None:
    """HLS requires a time zone in EXT-X-PROGRAM-DATE-TIME; read one without it as UTC."""
    if start is not None and start.tzinfo is None:
        return start.replace(tzinfo=timezone.utc)
    return start


def pick_variant(variants: list[Variant], choice: str) -> Variant:
    """`highest` / `lowest` bandwidth, a bandwidth (`"800000"`: the closest), or a resolution
    (`"640x360"`: that one, else the closest height). Variants without video are never picked
    when one with video exists (CODECS naming only audio, e.g. `mp4a.40.2`)."""
    video = [v for v in variants if not audio_only(v)] or variants
    if choice == "highest":
        return max(video, key=lambda v: v.bandwidth)
    if choice == "lowest":
        return min(video, key=lambda v: v.bandwidth)
    if "x" in choice:
        width, height = (int(n) for n in choice.lower().split("x"))
        exact = [v for v in video if v.resolution == (width, height)]
        if exact:
            return max(exact, key=lambda v: v.bandwidth)
        sized = [v for v in video if v.resolution] or video
        return min(sized, key=lambda v: abs((v.resolution or (0, 0))[1] - height))
    return min(video, key=lambda v: abs(v.bandwidth - int(choice)))


def audio_only(variant: Variant) -> bool:
    codecs = [c.strip().lower() for c in variant.codecs.split(",") if c.strip()]
    return bool(codecs) and all(c.startswith(("mp4a", "ac-3", "ec-3", "opus", "mp3")) for c in codecs)
