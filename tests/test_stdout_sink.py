"""The stdout sink's readable line: the segment, its window timeline, and how it was read."""
from datetime import datetime, timezone

from livewatch.contract import Detection, Label, WindowResult
from livewatch.output import format_json, format_text


def detection(**fields) -> Detection:
    windows = [WindowResult(start=s, end=s + 2.56, frames=[f, f + 62], label=label, probability=p,
                            top_k=[Label(label=label, probability=p)])
               for s, f, label, p in [(0.0, 0, "walk", 0.81), (2.48, 62, "walk", 0.64),
                                      (4.96, 124, "run", 0.55), (7.44, 186, "run", 0.9)]]
    return Detection(uri="/live/cam1/seg7.ts", stream="cam1", sequence=7,
                     start=datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc), label="walk",
                     probability=0.52, top_k=[Label(label="walk", probability=0.52),
                                              Label(label="run", probability=0.45)],
                     decode_ms=40, infer_ms=300, windows=windows, **fields)


def test_a_terminal_line_shows_the_window_timeline():
    line = format_text(detection())
    assert "\n" not in line
    assert line == ("2026-11-28T06:00:00+00:00  cam1 #7  walk  0.52  [run 0.45]  (decode 40 ms, "
                    "infer 300 ms)  /live/cam1/seg7.ts  | 0.0s walk 0.81 | 2.5s walk 0.64 | "
                    "5.0s run 0.55 | 7.4s run 0.90")


def test_the_line_says_what_was_concealed_or_truncated():
    line = format_text(detection(concealed_frames=3, truncated=True, segment_frames=130,
                                 expected_frames=250))
    assert line.endswith("7.4s run 0.90  (truncated: 130 of 250 frames; 3 frame(s) concealed)")


def test_json_carries_the_windows():
    d = detection(concealed_frames=2)
    assert Detection.model_validate_json(format_json(d)) == d
