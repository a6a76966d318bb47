"""Following one live media playlist from reload to reload: which segments are new (in media
sequence order), which range fell out of the window unseen, and when the sequence starts over.

State: `done` (segment id -> media sequence of each acknowledged segment, shared with the
checkpoint), `taken` (emitted, not acknowledged yet) and `next_sequence` (the first sequence not
seen listed yet). A segment is new when it is neither done nor taken, so one emitted but never
acknowledged before a crash comes again after the restart, and an acknowledged one never does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .hls_playlist import MediaPlaylist, MediaSegment


@dataclass(frozen=True)
class Missed:
    """Media sequences `first`..`last` were never listed while we looked: they are lost."""

    first: int
    last: int

    @property
    def id(self) -> str:
        return f"missed:{self.first}-{self.last}"

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class Update:
    new: list[MediaSegment] = field(default_factory=list)
    missed: Missed | None = None
    reset: bool = False  # the media sequence started over (an encoder restart)
    forget: list[str] = field(default_factory=list)  # checkpoint rows no longer needed


class Follower:
    def __init__(self, done: dict[str, int]):
        self.done = done
        self.taken: set[str] = set()
        #: the first media sequence not listed yet; from the checkpoint after a restart
        self.next_sequence: int | None = max(done.values()) + 1 if done else None
        #: bumped at every sequence reset: acknowledgements of older segments are not recorded
        self.epoch = 0
        self._previous: tuple[int, int] | None = None  # the last playlist's first and last sequence

    def update(self, playlist: MediaPlaylist) -> Update:
        update = Update()
        if not playlist.segments:
            return update
        first, last = playlist.media_sequence, playlist.last_sequence
        if self._is_reset(playlist):
            update.reset = True
            update.forget = list(self.done)
            self.done.clear()
            self.taken.clear()
            self.epoch += 1
            self.next_sequence = None
        elif self.next_sequence is not None and first > self.next_sequence:
            update.missed = Missed(self.next_sequence, first - 1)
        self._previous = (first, last)
        for segment in playlist.segments:
            if segment.id not in self.done and segment.id not in self.taken:
                self.taken.add(segment.id)
                update.new.append(segment)
        self.next_sequence = max(self.next_sequence or 0, last + 1)
        update.forget += self._prunable(playlist)
        return update

    def _is_reset(self, playlist: MediaPlaylist) -> bool:
        if self._previous is not None:  # RFC 8216 6.2.1: neither may go back in one stream
            return playlist.media_sequence < self._previous[0] or playlist.last_sequence < self._previous[1]
        # The first look after a restart: the encoder restarted while we were down when the whole
        # window lies before what was acknowledged and none of it was acknowledged.
        listed = {s.id for s in playlist.segments}
        return (self.next_sequence is not None and playlist.last_sequence < self.next_sequence - 1
                and not listed & self.done.keys())

    def _prunable(self, playlist: MediaPlaylist) -> list[str]:
        """Acknowledged segments no longer listed, less the newest row (it keeps `next_sequence`
        across a restart): forgetting them keeps the checkpoint as small as the window."""
        listed = {s.id for s in playlist.segments}
        newest = max(self.done, key=self.done.__getitem__, default=None)
        gone = [i for i in self.done if i not in listed and i != newest]
        for i in gone:
            del self.done[i]
        return gone
