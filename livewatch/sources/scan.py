"""Blocking reads of the watched folder: which stream folders exist, what one of them holds.

Run these in a thread (`asyncio.to_thread`): on a network filesystem a directory listing can stall.
Names starting with "." are skipped: they are temporary files (rsync, editors) and our checkpoint.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from fnmatch import fnmatch

from .playlist import Entry, read_playlists

PLAYLIST_SUFFIX = ".m3u8"


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Listing:
    """One look at a stream folder."""

    #: every name in the folder, to tell which remembered files are gone
    names: frozenset[str]
    #: segment files (matching the pattern), by name
    files: dict[str, FileStat]
    #: what the folder's media playlists list, by file name; None when it has no playlist
    playlist: dict[str, Entry] | None


def scan_folder(folder: str, pattern: str) -> Listing:
    """List one stream folder. Raises FileNotFoundError when the folder itself is gone; a file that
    vanishes during the scan is simply not listed."""
    names: set[str] = set()
    files: dict[str, FileStat] = {}
    playlists: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            names.add(entry.name)
            if entry.name.startswith("."):
                continue
            if entry.name.endswith(PLAYLIST_SUFFIX):
                playlists.append(entry.path)
            elif fnmatch(entry.name, pattern):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files[entry.name] = FileStat(st.st_size, st.st_mtime_ns)
    return Listing(frozenset(names), files, read_playlists(folder, sorted(playlists)))


def find_streams(root: str, pattern: str, subfolders: bool) -> list[str]:
    """The stream folders under `root`, as keys: "" for root itself when it holds segments or a
    playlist, and the name of each (non-hidden) subfolder when `subfolders` is on."""
    keys: list[str] = []
    root_has_segments = False
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if subfolders and entry.is_dir():
                keys.append(entry.name)
            elif entry.name.endswith(PLAYLIST_SUFFIX) or fnmatch(entry.name, pattern):
                root_has_segments = True
    return ([""] if root_has_segments else []) + sorted(keys)


def folder_playlist(folder: str) -> dict[str, Entry] | None:
    """What the folder's media playlists list, by file name; None when it has none."""
    try:
        with os.scandir(folder) as entries:
            paths = [e.path for e in entries if e.name.endswith(PLAYLIST_SUFFIX) and not e.name.startswith(".")]
    except FileNotFoundError:
        return None
    return read_playlists(folder, sorted(paths))


def stat_file(path: str) -> FileStat | None:
    """None when the file is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileStat(st.st_size, st.st_mtime_ns)
