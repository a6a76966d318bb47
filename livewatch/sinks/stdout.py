"""The `stdout` sink: one JSON object per line when piped, a readable line in a terminal."""
from __future__ import annotations

import sys
from typing import Literal, TextIO

from pydantic import Field

from ..components import Options, Sink
from ..contract import Detection
from ..hookspecs import hookimpl


class StdoutOptions(Options):
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="json lines, readable text, or auto: text in a terminal, json when piped"
    )


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


def format_json(d: Detection) -> str:
    return d.model_dump_json()


def formatter_for(fmt: str, stream: TextIO):
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    return format_text if fmt == "text" else format_json


class StdoutSink(Sink):
    """Prints each detection on standard output."""

    name = "stdout"
    Options = StdoutOptions

    async def start(self) -> None:
        self._format = formatter_for(self.options.format, sys.stdout)

    async def write(self, detection: Detection) -> None:
        # A line to a pipe or terminal is small; print + flush is cheap enough to stay on the loop.
        print(self._format(detection), file=sys.stdout, flush=True)


@hookimpl
def register_sinks(register):
    register(StdoutSink)
