"""The `stdout` sink: one JSON object per line when piped, a readable line in a terminal."""
from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field

from ..components import Options, Sink
from ..contract import Detection
from ..hookspecs import hookimpl
from ..output import formatter_for


class StdoutOptions(Options):
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="json lines, readable text, or auto: text in a terminal, json when piped"
    )


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
