"""Segments that are local files: for ``livewatch classify`` and for sources that read a folder."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from .contract import Segment
from .errors import SegmentError


def open_segment_file(path: str | os.PathLike):
    """Open a segment file; one that is gone is a SegmentError (an error detection), not a crash."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise SegmentError(
            f"segment file is gone: {os.fspath(path)} was deleted before it could be read "
            "(an encoder that deletes old segments faster than they are classified?)"
        ) from None
    except IsADirectoryError:
        raise SegmentError(f"not a file: {os.fspath(path)} is a directory") from None


def file_segment(path: Path) -> Segment:
    """A segment for one local file, its folder's name as its stream."""
    path = path.absolute()
    return Segment(uri=str(path), stream=path.parent.name or "files",
                   open=functools.partial(open_segment_file, path),
                   size=path.stat().st_size if path.is_file() else None)
