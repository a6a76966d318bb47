"""The built-in `hls` source: a live HLS stream by URL (a CDN, MediaPackage, nginx, a camera gateway).

It reloads the media playlist as RFC 8216 section 6.3.4 says (the target duration after a change,
half of it when unchanged), downloads each new segment into memory (decrypting AES-128) and emits
it in media sequence order; `hls_follow.py` decides what is new, what was missed and when the
sequence starts over. Outages (connection errors, timeouts, 5xx) are retried forever with capped
backoff; a listed segment that answers 404 is an error detection saying it is gone; segments that
left the playlist's window unseen become one error detection per missed range (`uri` ending in
`#missed-FIRST-LAST`). The checkpoint (the folder source's SQLite table, one row per acknowledged
segment) makes a restart resume after the last acknowledged segment.
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, field_validator

from ..components import Emit, Options, Source
from ..contract import Segment
from ..errors import ConfigError, SegmentError
from ..hookspecs import hookimpl
from . import hls_fetch as http
from .checkpoint import Checkpoint
from .hls_follow import Follower, Missed
from .hls_health import StreamHealth
from .hls_playlist import MediaPlaylist, MediaSegment, NotAPlaylist, Variant, audio_only, parse, pick_variant

log = logging.getLogger("livewatch.sources.hls")

class HlsOptions(Options):
    url: AnyHttpUrl = Field(description="the live playlist (media, or master: see `variant`)")
    variant: str = Field(
        "highest", description='of a master playlist: "highest" or "lowest" bandwidth, a bandwidth '
        '(bits/s, the closest) or a resolution ("640x360")'
    )
    stream: str | None = Field(None, description="stream name in detections; default: from the URL")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers, e.g. a token")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to connect to the server")
    read_timeout: float = Field(30.0, gt=0, description="seconds without a byte from the server")
    request_timeout: float = Field(120.0, gt=0, description="seconds for one whole request")
    verify_tls: bool = Field(True, description="check the server's TLS certificate")
    checkpoint: Path | None = Field(
        None, description="SQLite file of acknowledged segments; default: "
        ".livewatch-hls-<source name>.sqlite in the working directory"
    )
    backoff_max: float = Field(30.0, gt=0, description="longest wait between two tries in an outage")
    max_segment_mb: float | None = Field(
        None, gt=0, description="a bigger segment is an error detection, not read to its end; "
        "default: daemon.max_segment_mb"
    )
    once: bool = Field(False, description="emit what the playlist lists now (or until "
                       "EXT-X-ENDLIST), then finish")

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        if value not in ("highest", "lowest") and not re.fullmatch(r"\d+|\d+x\d+", value):
            raise ValueError('use "highest", "lowest", a bandwidth (800000) or a resolution (640x360)')
        return value


@dataclass(frozen=True)
class AckHandle:
    id: str  # the segment's id in the checkpoint (its URI, and byte offset)
    sequence: int
    epoch: int


class HlsSource(Source):
    """A live HLS stream by URL: every segment in order, outages retried, gaps recorded."""

    name = "hls"
    Options = HlsOptions

    @classmethod
    def one_shot(cls, options: HlsOptions) -> HlsOptions:
        """``run --once``: what the playlist lists now, then return."""
        return HlsOptions.model_validate({**options.model_dump(), "once": True})
    options: HlsOptions

    def __init__(self, options: HlsOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.url = str(options.url)
        self.stream = options.stream or stream_name(self.url)
        self._checkpoint_path = os.path.abspath(options.checkpoint or f".livewatch-hls-{self.instance}.sqlite")
        self._checkpoint: Checkpoint | None = None
        self._session = None
        self._follower: Follower | None = None
        self._media_url: str | None = None  # the variant followed, once the master was read
        self._reader: http.SegmentReader | None = None
        self._health: StreamHealth | None = None
        self._ended_logged = False
        self._loaded: MediaPlaylist | None = None
        #: the segment this process emitted last, while no EXT-X-ENDLIST said it was the last one
        self._unmarked: str | None = None

    @property
    def _limit(self) -> int:
        mb = self.options.max_segment_mb or getattr(self.daemon_settings, "max_segment_mb", 64.0)
        return int(mb * 1_000_000)

    async def start(self) -> None:
        try:
            self._checkpoint = await asyncio.to_thread(Checkpoint, self._checkpoint_path)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"hls source {self.instance!r}: cannot open checkpoint {self._checkpoint_path}: "
                              f"{exc}; set `checkpoint` to a writable local path") from exc
        done = (await asyncio.to_thread(self._checkpoint.load)).get(self.stream, {})
        self._follower = Follower(done)
        self._health = StreamHealth(self.instance, self.stream, self.metrics)
        o = self.options
        self._session = http.make_session(o.headers, o.connect_timeout, o.read_timeout, o.verify_tls)
        self._reader = http.SegmentReader(self._session, o.request_timeout)
        try:
            self._loaded = await self._load(strict=True)
        except (http.Refused, NotAPlaylist, NoVideo) as exc:
            raise ConfigError(f"hls source {self.instance!r}: {exc}") from None
        except http.Unreachable as exc:
            log.warning("hls source %r: %s; not reachable yet, retrying in the background", self.instance, exc)
        log.info("hls source %r follows %s as stream %r (checkpoint %s, %d segments done)",
                 self.instance, self._media_url or self.url, self.stream, self._checkpoint_path, len(done))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._checkpoint is not None:
            await asyncio.to_thread(self._checkpoint.close)
            self._checkpoint = None

    async def run(self, emit: Emit) -> None:
        while True:
            began = time.monotonic()
            playlist, self._loaded = self._loaded, None  # the one start() read, the first time
            if playlist is None:
                playlist = await http.retry_forever(self._load, initial=0.5, maximum=self.options.backoff_max,
                                                    on_retry=self._health.retrying)
            self._health.reachable()
            changed = self._health.changed(playlist)
            await self._emit_new(playlist, emit)
            if self.options.once:
                return
            if playlist.ended and not self._ended_logged:
                self._ended_logged = True
                log.info("hls source %r: the playlist ended (EXT-X-ENDLIST); watching for a new one",
                         self.instance)
            self._health.check_stall(playlist)
            # RFC 8216 6.3.4: the target duration after a change, half of it when unchanged,
            # counted from when the last load began.
            wait = playlist.target_duration * (1.0 if changed else 0.5)
            await asyncio.sleep(max(0.0, began + wait - time.monotonic()))

    async def _load(self, strict: bool = False) -> MediaPlaylist:
        """The media playlist now. Raises Unreachable (retried); `strict` (at start): Refused,
        NotAPlaylist or NoVideo too, for a config error."""
        try:
            if self._media_url is None:
                found = await self._get_playlist(self.url)
                if isinstance(found, list):
                    variant = self._pick(found)
                    self._media_url = variant.uri
                    found = await self._get_playlist(self._media_url)
                    if isinstance(found, list):
                        raise NotAPlaylist(f"{self._media_url}: a master playlist inside a master playlist")
                else:
                    self._media_url = self.url
                return found
            found = await self._get_playlist(self._media_url)
            if isinstance(found, list):
                raise NotAPlaylist(f"{self._media_url} became a master playlist")
            return found
        except http.Gone as exc:
            self._media_url = None  # read the master again: the variant may have moved
            raise http.Unreachable(f"playlist gone ({exc})") from None
        except (http.Refused, NotAPlaylist, NoVideo, http.TooLarge) as exc:
            if strict and not isinstance(exc, http.TooLarge):
                raise
            raise http.Unreachable(str(exc)) from None

    async def _get_playlist(self, url: str) -> MediaPlaylist | list[Variant]:
        body = await http.get(self._session, url, limit=16 * 2**20, total_timeout=self.options.request_timeout)
        return parse(body.decode("utf-8", errors="replace"), url)

    def _pick(self, variants: list[Variant]) -> Variant:
        variant = pick_variant(variants, self.options.variant)
        if len(variants) > 1:
            log.info("hls source %r: variant %s (%d bit/s, %s) of %d", self.instance, variant.uri,
                     variant.bandwidth, "x".join(map(str, variant.resolution or ())) or "?", len(variants))
        if audio_only(variant):
            raise NoVideo(f"{self.url} has no video variant (CODECS: {variant.codecs})")
        return variant

    async def _emit_new(self, playlist: MediaPlaylist, emit: Emit) -> None:
        update = self._follower.update(playlist)
        if update.forget:
            await asyncio.to_thread(self._checkpoint.remove, self.stream, update.forget)
        if update.reset:
            log.warning("hls source %r: the media sequence started over at %d (an encoder restart?); "
                        "following the new sequence", self.instance, playlist.media_sequence)
        if update.missed:
            await emit(self._missed(update.missed))
        for i, segment in enumerate(update.new):
            if segment.discontinuity:
                log.info("hls source %r: discontinuity before sequence %d", self.instance, segment.sequence)
            try:
                await emit(await self._segment(segment))
                self._unmarked = None if segment.last else segment.id
            except http.Unreachable as exc:
                log.warning("hls source %r: segment %d not fetched (%s); trying again", self.instance,
                            segment.sequence, exc)
                for later in update.new[i:]:
                    self._follower.taken.discard(later.id)
                # from here on, what leaves the window before the next try is a missed range
                self._follower.next_sequence = segment.sequence
                return
        await self._mark_end(playlist, emit)

    async def _mark_end(self, playlist: MediaPlaylist, emit: Emit) -> None:
        """EXT-X-ENDLIST that came after the stream's last segment went out unmarked (an encoder
        that ends the playlist in a write of its own): once that segment is acknowledged, emit it
        again, marked `last`. Its detection replaces the first (the same URI), so the stream's
        events close; it costs one more classification. Only for a segment this process emitted:
        after a restart an ended stream's last segment is not classified again."""
        end = playlist.segments[-1] if playlist.ended and playlist.segments else None
        if end is None or end.id != self._unmarked or end.id not in self._follower.done:
            return
        self._unmarked = None
        log.info("hls source %r: the playlist ended after segment %d; emitting it again, marked "
                 "as the stream's last", self.instance, end.sequence)
        self._follower.taken.add(end.id)
        try:
            await emit(await self._segment(end))
        except http.Unreachable as exc:
            self._follower.taken.discard(end.id)
            self._unmarked = end.id  # the next reload tries again
            log.warning("hls source %r: segment %d not fetched again (%s); trying again",
                        self.instance, end.sequence, exc)

    async def _segment(self, seg: MediaSegment) -> Segment:
        """The segment's bytes in memory, decrypted; one that can never be read is an error
        detection (its `open` raises SegmentError). Raises Unreachable to try again later."""
        uri = seg.uri + (f"#bytes={seg.byterange[0]}-{seg.byterange[1]}" if seg.byterange else "")
        try:
            data = await self._reader.read(seg, limit=self._limit)
            return self._make(seg, uri, data=data)
        except http.Gone as exc:
            why = f"segment gone: {exc}, though the playlist listed it (sequence {seg.sequence})"
        except http.Refused as exc:
            why = f"segment refused: {exc} (sequence {seg.sequence}); check `headers`"
        except http.TooLarge:
            why = (f"segment too large: more than {self._limit / 1e6:g} MB (max_segment_mb); it was "
                   "not read")
        except (ValueError, KeyError) as exc:  # a bad key or padding, an unknown METHOD
            why = f"cannot decrypt segment {seg.sequence}: {exc}"
        log.warning("hls source %r: %s", self.instance, why)
        return self._make(seg, uri, error=why)

    def _make(self, seg: MediaSegment, uri: str, data: bytes | None = None, error: str | None = None) -> Segment:
        return Segment(
            uri=uri, stream=self.stream, open=lambda: _open(data, error), source=self.instance,
            sequence=seg.sequence, start=seg.start, duration=seg.duration,
            ack_handle=AckHandle(seg.id, seg.sequence, self._follower.epoch),
            size=len(data) if data is not None else None,
            start_clock="program-date-time" if seg.start else None, last=seg.last,
        )

    def _missed(self, missed: Missed) -> Segment:
        began = self._health.outage_began
        since = f" (unreachable from {time.strftime('%H:%M:%S', time.gmtime(began))} UTC)" if began else ""
        why = (f"segments missed: media sequence {missed.first}..{missed.last} ({missed.count} "
               f"segments) left the playlist's window before the source could read them{since}")
        log.warning("hls source %r: %s", self.instance, why)
        if (metrics := self.metrics) is not None:
            metrics.missed.labels(self.stream, self.instance).inc(missed.count)
        return Segment(
            uri=f"{self._media_url or self.url}#missed-{missed.first}-{missed.last}", stream=self.stream,
            open=lambda: _open(None, why), source=self.instance, sequence=missed.first,
            ack_handle=AckHandle(missed.id, missed.last, self._follower.epoch),
        )

    async def ack(self, segment: Segment) -> None:
        handle: AckHandle = segment.ack_handle
        self._follower.taken.discard(handle.id)
        if handle.epoch != self._follower.epoch:
            return  # from before a sequence reset: its id may be reused by the new sequence
        await asyncio.to_thread(self._checkpoint.add, self.stream, handle.id, handle.sequence)
        self._follower.done[handle.id] = handle.sequence

    async def release(self, segment: Segment) -> None:
        """Fetch it again at the next reload, if the playlist still lists it."""
        self._follower.taken.discard(segment.ack_handle.id)
        if segment.last and segment.ack_handle.id in self._follower.done:
            self._unmarked = segment.ack_handle.id  # emitted again to mark it: that again too


class NoVideo(Exception):
    """The stream has no video to classify."""


def _open(data: bytes | None, error: str | None):
    if error is not None:
        raise SegmentError(error)
    return io.BytesIO(data)


def stream_name(url: str) -> str:
    """`https://cdn/live/cam1/index.m3u8` -> "cam1"; `.../cam1.m3u8` -> "cam1"."""
    path = PurePosixPath(urlsplit(url).path)
    generic = {"index", "playlist", "master", "chunklist", "live", "stream", "prog_index", "main", ""}
    for part in [path.stem, *reversed(path.parent.parts)]:
        if part.lower() not in generic and part != "/":
            return part
    return urlsplit(url).hostname or "hls"


@hookimpl
def register_sources(register):
    register(HlsSource)
