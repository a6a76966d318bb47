"""Data prep: a folder-per-class video collection (UCF101's layout) to GluonCV's setting files.

GluonCV's ``VideoClsCustom`` reads a setting file of lines ``<path relative to root> <frames>
<label index>``. `prepare` writes ``train.txt`` and ``val.txt`` so, plus ``classes.txt`` (label
names in index order), after opening every video: one that cannot be read is reported and left
out, never fatal. The split comes from UCF101's split files when given (``trainlist0N.txt`` lines
``Class/v_Class_g08_c01.avi 1``, ``testlist0N.txt`` lines ``Class/v_Class_g08_c01.avi``, and
``classInd.txt`` for the label order), else a seeded split per class.
"""
from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".ts", ".webm", ".m4v")
MIN_FRAMES = 3


@dataclass
class PrepResult:
    root: Path
    out: Path
    classes: list[str]
    train: list[tuple[str, int, int]] = field(default_factory=list)  # (relative path, frames, label)
    val: list[tuple[str, int, int]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)

    def summary(self) -> str:
        """One line per class: train and val counts; then the unreadable videos."""
        train = Counter(label for _, _, label in self.train)
        val = Counter(label for _, _, label in self.val)
        width = max((len(c) for c in self.classes), default=5)
        lines = [f"{'class':<{width}}  train    val"]
        lines += [f"{c:<{width}}  {train[i]:>5}  {val[i]:>5}" for i, c in enumerate(self.classes)]
        lines.append(f"{'total':<{width}}  {len(self.train):>5}  {len(self.val):>5}")
        if self.bad:
            lines.append(f"{len(self.bad)} unreadable video(s) left out:")
            lines += [f"  {path}: {why}" for path, why in self.bad]
        return "\n".join(lines)


def count_frames(path: str | os.PathLike) -> int:
    """Frames in a video's first video stream (from its packets: nothing is decoded, but the
    first frame is, to be sure the codec can read it). Raises ValueError saying why not."""
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            frames, decoded = 0, False
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                frames += 1
                if not decoded:
                    decoded = bool(stream.decode(packet)) or decoded
            if not decoded:  # a decoder with delay gives the first frame on the flush
                decoded = bool(stream.decode(None))
    except av.FFmpegError as exc:
        raise ValueError(f"FFmpeg cannot read it ({exc.strerror or exc})") from None
    if frames < MIN_FRAMES or not decoded:
        raise ValueError(f"only {frames} frame(s) could be read; at least {MIN_FRAMES} needed")
    return frames


def find_videos(root: Path) -> dict[str, list[str]]:
    """Class folder name -> video paths relative to `root`, sorted."""
    found: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = sorted(f"{folder.name}/{f.name}" for f in folder.iterdir()
                        if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        if videos:
            found[folder.name] = videos
    return found


def prepare(root: str | os.PathLike, out: str | os.PathLike | None = None, *,
            train_list: str | os.PathLike | None = None, test_list: str | os.PathLike | None = None,
            class_index: str | os.PathLike | None = None, val_fraction: float = 0.2,
            seed: int = 0) -> PrepResult:
    """Validate the videos under `root` and write GluonCV setting files into `out` (default:
    `root`). Paths in the setting files are relative to `root`."""
    root = Path(root)
    out = Path(out) if out else root
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of class folders")
    videos = find_videos(root)
    if class_index:
        classes = [line.split()[-1] for line in Path(class_index).read_text().splitlines() if line.strip()]
    else:
        classes = sorted(videos)
    if not classes:
        raise ValueError(f"{root} holds no class folders with videos ({', '.join(VIDEO_EXTENSIONS)})")
    label_of = {c: i for i, c in enumerate(classes)}
    result = PrepResult(root=root, out=out, classes=classes)
    if train_list or test_list:
        splits = {"train": _read_split(train_list), "val": _read_split(test_list)}
    else:
        splits = _random_split(videos, val_fraction, seed)
    for split, paths in splits.items():
        for rel in paths:
            label = label_of.get(rel.split("/")[0])
            if label is None:
                result.bad.append((rel, f"its folder is not a class ({', '.join(classes)})"))
                continue
            try:
                frames = count_frames(root / rel)
            except (ValueError, OSError) as exc:
                result.bad.append((rel, str(exc)))
                continue
            getattr(result, split).append((rel, frames, label))
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        rows = getattr(result, split)
        (out / f"{split}.txt").write_text("".join(f"{p} {n} {label}\n" for p, n, label in rows))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return result


def _read_split(path: str | os.PathLike | None) -> list[str]:
    if not path:
        return []
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


def _random_split(videos: dict[str, list[str]], val_fraction: float, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    train, val = [], []
    for paths in videos.values():
        paths = list(paths)
        rng.shuffle(paths)
        if val_fraction >= 1:  # a validation-only collection
            n_val = len(paths)
        else:  # a class with a single video keeps it for training
            n_val = round(len(paths) * val_fraction) if len(paths) > 1 else 0
        val += sorted(paths[:n_val])
        train += sorted(paths[n_val:])
    return {"train": train, "val": val}


def read_setting_file(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """The (relative path, frames, label) rows of a GluonCV setting file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[0], int(parts[1]), int(parts[2])))
    return rows
