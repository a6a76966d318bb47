"""Does a packaged model classify videos it never saw? Run through the daemon's own classifier.

`classify_videos` loads the model (a directory or a model.tar.gz) with the in-process ``i3d``
classifier and classifies each file as the daemon would a segment; `accuracy_check` compares the
labels with the expected ones and says whether the model passes.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from livewatch.contract import Detection, Segment


@dataclass
class Check:
    accuracy: float
    threshold: float
    total: int
    wrong: list[tuple[str, str, str | None]]  # (uri, expected, got)

    @property
    def passed(self) -> bool:
        return self.accuracy >= self.threshold

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: {self.accuracy:.1%} of {self.total} correct "
                f"(needs {self.threshold:.0%}); {len(self.wrong)} wrong")


def segment_for(path: str | os.PathLike, stream: str = "eval") -> Segment:
    path = os.fspath(path)
    return Segment(uri=path, stream=stream, open=lambda: open(path, "rb"))


async def classify_videos_async(model: str, paths: list[Path], *, cache_dir: Path | None = None
                                ) -> list[Detection]:
    from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions

    classifier = I3DClassifier(I3DOptions(model=model, cache_dir=cache_dir, device="cpu"))
    await classifier.start()
    try:
        return [await classifier.classify(segment_for(p)) for p in paths]
    finally:
        await classifier.close()


def classify_videos(model: str | os.PathLike, paths: list[Path], *, cache_dir: Path | None = None
                    ) -> list[Detection]:
    """One detection per file, from the in-process classifier. Blocking."""
    return asyncio.run(classify_videos_async(os.fspath(model), list(paths), cache_dir=cache_dir))


def accuracy_check(detections: list[Detection], expected: list[str], threshold: float = 0.9) -> Check:
    """Compare each detection's label with the expected one (in the same order)."""
    if len(detections) != len(expected) or not expected:
        raise ValueError(f"{len(detections)} detections for {len(expected)} expected labels")
    wrong = [(d.uri, e, d.label) for d, e in zip(detections, expected) if d.label != e]
    return Check(1 - len(wrong) / len(expected), threshold, len(expected), wrong)
