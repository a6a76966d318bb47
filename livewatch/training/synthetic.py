"""A labelled video set that needs no download: camera motion over real-looking textured scenes.

Each video looks at a random textured picture (value noise at several scales plus shapes with hard
edges, so there is detail at every zoom) through a virtual camera that pans left, pans right, zooms
in or stays still, at a random speed, start and framing, with sensor noise. The label is the camera
motion, so it can only be learned from how frames change, not from what a single frame shows: a
model that scores well on held-out videos has learned motion, the thing I3D-style networks model.

`write_motion_dataset` writes UCF101's layout (one folder per class); `MotionScene` renders one
clip's frames, which `livewatch.training.live` also uses for the scripted live stream of the demo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MOTIONS = ("pan_left", "pan_right", "zoom_in", "still")


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) float32 picture in [0, 255]: multi-scale colour noise and shapes."""
    img = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((3, 1.0), (8, 0.6), (20, 0.35), (50, 0.2)):
        grid = rng.random((cells + 1, max(2, round(cells * width / height)) + 1, 3), dtype=np.float32)
        img += weight * _resize(grid, height, width)
    img = (img - img.min()) / (np.ptp(img) + 1e-6) * 200 + 25
    for _ in range(max(6, width * height // 2500)):  # hard edges: rectangles and discs
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.02, 0.12) * height
        rect, aspect = rng.random() < 0.5, rng.uniform(0.5, 2)
        ry, rx = r, (r * aspect if rect else r)
        y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        if rect:
            mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        patch = img[y0:y1, x0:x1]
        patch[mask] = 0.3 * patch[mask] + 0.7 * colour
    return img


def _resize(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a small (h, w, 3) grid to (height, width, 3)."""
    gh, gw, _ = grid.shape
    ys = np.linspace(0, gh - 1, height, dtype=np.float32)
    xs = np.linspace(0, gw - 1, width, dtype=np.float32)
    return _bilinear(grid, ys[:, None], xs[None, :])


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    h, w, _ = img.shape
    ys = np.clip(ys, 0, h - 1.001)
    xs = np.clip(xs, 0, w - 1.001)
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = np.broadcast_arrays(y0, x0)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class MotionScene:
    """One camera motion over one random picture; `frame(i)` renders frame i at `size`.

    Speeds are in output pixels per frame (pans) and scale per frame (zoom); `seed` picks the
    picture, the speed, the start and the framing.
    """

    motion: str
    size: tuple[int, int] = (128, 96)
    frames: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; known: {', '.join(MOTIONS)}")
        rng = np.random.default_rng(self.seed)
        width, height = self.size
        self.zoom = rng.uniform(0.8, 1.3)  # texture pixels per output pixel at the start
        self.speed = rng.uniform(3.0, 6.0)  # pans: output pixels per frame
        self.rate = rng.uniform(1.03, 1.05)  # zoom in: the view shrinks by this per frame
        self.noise = rng.uniform(1.0, 4.0)
        self.gain = rng.uniform(0.8, 1.15)
        if self.motion == "zoom_in":  # framed as the others half-way through: sharp throughout
            self.zoom *= self.rate ** (self.frames / 2)
        travel = self.speed * self.zoom * self.frames if self.motion.startswith("pan") else 0
        tex_w = int(width * self.zoom * 1.2 + travel) + 8
        tex_h = int(height * self.zoom * 1.2) + 8
        self.texture = texture(rng, tex_h, tex_w)
        self.cy = tex_h / 2 + rng.uniform(-0.05, 0.05) * height
        margin = width * self.zoom * 0.6 + 2
        self.cx0 = tex_w - margin if self.motion == "pan_left" else margin
        if self.motion in ("zoom_in", "still"):
            self.cx0 = tex_w / 2
        self._rng = np.random.default_rng(self.seed + 1)

    def frame(self, i: int) -> np.ndarray:
        """Frame `i` (0-based, clamped to the clip) as (height, width, 3) uint8 RGB."""
        i = min(max(i, 0), self.frames - 1)
        width, height = self.size
        scale, cx = self.zoom, self.cx0
        if self.motion == "pan_right":  # the camera turns right: the picture moves left
            cx += self.speed * self.zoom * i
        elif self.motion == "pan_left":
            cx -= self.speed * self.zoom * i
        elif self.motion == "zoom_in":
            scale /= self.rate ** i
        xs = cx + (np.arange(width, dtype=np.float32) - width / 2 + 0.5) * scale
        ys = self.cy + (np.arange(height, dtype=np.float32) - height / 2 + 0.5) * scale
        img = _bilinear(self.texture, ys[:, None], xs[None, :]) * self.gain
        img += self._rng.normal(0, self.noise, img.shape).astype(np.float32)
        return img.clip(0, 255).astype(np.uint8)


def write_motion_video(path: str | os.PathLike, motion: str, *, seconds: float = 2.0, fps: int = 15,
                       size: tuple[int, int] = (128, 96), seed: int = 0) -> Path:
    """Write one H.264 video (.mp4 or .ts by suffix) of `motion`."""
    path = Path(path)
    frames = max(1, round(seconds * fps))
    scene = MotionScene(motion, size=size, frames=frames, seed=seed)
    fmt = "mpegts" if path.suffix == ".ts" else "mp4"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options=x264_options(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene.frame(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def x264_options(fps: int, gop_seconds: float = 1.0) -> dict[str, str]:
    gop = max(1, round(gop_seconds * fps))
    return {"preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}


def write_motion_dataset(root: str | os.PathLike, *, per_class: int = 20, seconds: float = 2.0,
                         fps: int = 15, size: tuple[int, int] = (128, 96), seed: int = 0,
                         motions: tuple[str, ...] = MOTIONS, ext: str = ".mp4") -> list[tuple[Path, str]]:
    """Write `per_class` videos of each motion as ``root/<motion>/<motion>_<n><ext>``.

    Every video gets its own seed (derived from `seed`), so two sets made with different seeds
    share no picture: one can be the held-out test of a model trained on the other.
    """
    root = Path(root)
    written = []
    for k, motion in enumerate(motions):
        (root / motion).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            path = root / motion / f"{motion}_{n:03d}{ext}"
            vseed = seed * 1_000_003 + k * 10_007 + n
            written.append((write_motion_video(path, motion, seconds=seconds, fps=fps, size=size,
                                               seed=vseed), motion))
    return written
