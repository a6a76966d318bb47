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
    return (f"{head}  {d.label}  {d.probability:.2f}  [{alts}]  ({timing})  {d.uri}"
            f"{format_timeline(d)}{format_damage(d)}")


def format_timeline(d: Detection) -> str:
    """The windows on one line, by their offset in the segment: ``  | 0.0s archery 0.81 | ...``
    (nothing for a single window: the segment's label says it all)."""
    if len(d.windows) < 2:
        return ""
    return "  | " + " | ".join(f"{w.start:.1f}s {w.label} {w.probability:.2f}" for w in d.windows)


def format_damage(d: Detection) -> str:
    parts = []
    if d.truncated:
        parts.append(f"truncated: {d.segment_frames} of {d.expected_frames} frames")
    if d.concealed_frames:
        parts.append(f"{d.concealed_frames} frame(s) concealed")
    parts += [n for n in d.notes if n.startswith("window refused")]
    return f"  ({'; '.join(parts)})" if parts else ""


def format_window(row: dict) -> str:
    """One stored window (a row of ``livewatch detections --windows``) as a readable line."""
    where = (f"{row['start']} - {row['end'][11:]}" if row["start"] else
             f"{row['at']} +{row['offset_start']:.1f}-{row['offset_end']:.1f} s")
    seq = f" #{row['sequence']}" if row["sequence"] is not None else ""
    return (f"{where}  {row['stream']}{seq}  {row['label']}  {row['probability']:.2f}  "
            f"(frames {row['first_frame']}-{row['last_frame']})  {row['uri']}")


def format_event(e: dict) -> str:
    """One event (a row of ``livewatch events``) as a readable line."""
    if e["clock"] == "program-date-time":
        where = f"{e['start']} - {e['end'][11:]}"
    else:
        where = f"{e['start']:.1f}-{e['end']:.1f} s (by sequence x duration)"
    return (f"{where}  {e['stream']}  {e['label']}  {e['state']}  {e['duration']:.1f} s  "
            f"peak {e['peak_probability']:.2f} mean {e['mean_probability']:.2f}  "
            f"{len(e['segments'])} segment(s)  rev {e['revision']}  {e['id']}")


def format_json(d: Detection) -> str:
    return d.model_dump_json()


def formatter_for(fmt: str, stream: TextIO) -> Callable[[Detection], str]:
    """``text``, ``json``, or ``auto``: text in a terminal, JSON lines when piped."""
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    return format_text if fmt == "text" else format_json
