"""How detections look on a terminal or a pipe: a readable line, or one JSON object per line.

Used by ``livewatch classify`` and ``livewatch detections`` and by the ``stdout`` sink.
"""
from __future__ import annotations

from typing import Callable, TextIO

from .contract import Detection


def format_text(d: Detection) -> str:
    when = (d.start.isoformat(timespec="seconds") if d.start else d.created_at)
    seq = f" #{d.sequence}" if d.sequence is not None else ""
    head = f"{when}  {d.stream}{seq}"
    if d.error:
        return f"{head}  ERROR  {d.error}  ({d.uri})"
    alts = ", ".join(f"{a.label} {a.probability:.2f}" for a in d.top_k[1:3])
    timing = f"decode {d.decode_ms or 0:.0f} ms, infer {d.infer_ms or 0:.0f} ms"
    return f"{head}  {d.label}  {d.probability:.2f}  [{alts}]  ({timing})  {d.uri}"


def format_json(d: Detection) -> str:
    return d.model_dump_json()


def formatter_for(fmt: str, stream: TextIO) -> Callable[[Detection], str]:
    """``text``, ``json``, or ``auto``: text in a terminal, JSON lines when piped."""
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    return format_text if fmt == "text" else format_json
