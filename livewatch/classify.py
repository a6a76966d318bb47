"""`livewatch classify FILE...`: the daemon's classifier and stdout format, without the daemon."""
from __future__ import annotations

import sys
from pathlib import Path

from .contract import Detection
from .delivery import classify_segment
from .errors import TransientError
from .output import formatter_for
from .segment_files import file_segment
from .settings import ComponentConfig, load_settings
from .wiring import build_component


async def classify_files(config: Path | None, files: list[Path], model: str | None = None,
                         fmt: str = "auto", windows: str | int | None = None) -> bool:
    """Print one detection per file; returns False if any file could not be classified."""
    settings = load_settings(config)
    classifier_config = settings.classifier
    if model:
        classifier_config = ComponentConfig(**{**classifier_config.model_dump(), "model": model})
    if windows is not None:
        classifier_config = ComponentConfig(**{**classifier_config.model_dump(), "windows": windows})
    classifier = build_component("classifier", classifier_config, "classifier")
    formatter = formatter_for(fmt, sys.stdout)
    all_ok = True
    await classifier.start()
    try:
        for path in files:
            segment = file_segment(path)
            try:
                detection = await classify_segment(classifier, segment, settings.daemon.segment_timeout)
            except TransientError as exc:
                detection = Detection.failed(segment, f"temporary failure, try again: {exc}")
            all_ok &= detection.ok
            print(formatter(detection.with_latency_from(segment)), flush=True)
    finally:
        await classifier.close()
    return all_ok
