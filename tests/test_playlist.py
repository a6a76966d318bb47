"""The one playlist parser, for playlists in a folder and on S3 alike."""
from datetime import datetime, timezone

import pytest

from livewatch.sources.playlist import parse_playlist

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:00:00.000Z
#EXTINF:4.0,
seg41.ts
#EXTINF:4.0,
seg%2042.ts?token=abc
#EXTINF:4.0,
../other/seg43.ts
#EXTINF:4.0,
https://cdn.example.com/cam/seg44.ts
#EXTINF:3.5,
./seg45.ts
#EXTINF:4.0,
"""


@pytest.mark.parametrize("folder", ["/data/live/cam", "cams/cam", ""])
def test_entries_are_the_files_of_the_playlists_own_folder(folder):
    entries = parse_playlist(PLAYLIST, folder)
    assert list(entries) == ["seg41.ts", "seg 42.ts", "seg45.ts"]  # not elsewhere, not a URL
    first = entries["seg41.ts"]
    assert first.sequence == 41 and first.duration == 4.0
    assert first.start == datetime(2026, 11, 24, 19, 0, tzinfo=timezone.utc)
    assert entries["seg 42.ts"].start == datetime(2026, 11, 24, 19, 0, 4, tzinfo=timezone.utc)
    assert entries["seg45.ts"].sequence == 45 and entries["seg45.ts"].duration == 3.5


def test_a_master_playlist_lists_no_segments():
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"
    assert parse_playlist(master, "cam") is None


def test_a_program_date_time_without_a_zone_is_utc():
    text = ("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:00:00\n"
            "#EXTINF:4.0,\na.ts\n")
    assert parse_playlist(text, "x")["a.ts"].start.tzinfo == timezone.utc
