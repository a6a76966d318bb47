"""A small JPEG of each window's middle frame, from the frames already decoded for the model
(no second decode): what the web page shows beside a detection. Blocking (run it off the loop)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

QUALITY = 70


def window_thumbnails(frames: np.ndarray, quality: int = QUALITY) -> list[bytes]:
    """One JPEG per window of `frames` (uint8, (windows, T, height, width, 3) RGB)."""
    out = []
    for window in frames:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(window[len(window) // 2])).save(
            buffer, "JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out
