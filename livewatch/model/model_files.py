"""The files of a model directory, read with the standard library alone.

Shared by `livewatch.model.artifacts` (which validates them further, with pydantic) and by the
SageMaker serving code, which gets a copy of this module in ``model.tar.gz``'s ``code/`` (see
`livewatch.training.package`): so it keeps to Python 3.8 and imports nothing but the stdlib.
"""
from __future__ import annotations

import hashlib
import json
import os

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
CLASSES_FILE = "classes.txt"
META_FILE = "model.json"
REQUIRED_FILES = (SYMBOL_FILE, PARAMS_FILE, CLASSES_FILE)

#: What ``model.json`` may leave out: 32 consecutive frames (step 1), resized to 340x256, center-cropped to 224, with
#: ImageNet's mean and standard deviation.
DEFAULT_META = {"frames": 32, "step": 1, "crop": 224, "resize": (340, 256),
                "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def read_classes(directory: str | os.PathLike) -> tuple[str, ...]:
    """``classes.txt``: one label per line, blank lines skipped."""
    with open(os.path.join(directory, CLASSES_FILE)) as f:
        return tuple(line.strip() for line in f if line.strip())


def read_meta(directory: str | os.PathLike) -> dict:
    """``model.json`` as written (no defaults filled in), or {} without one; ValueError if it is
    not JSON."""
    path = os.path.join(directory, META_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, "rb") as f:
        return json.loads(f.read())


def model_identity(directory: str | os.PathLike, name: str | None = None,
                   version: str | None = None) -> tuple[str, str]:
    """(name, version) of a model: the given ones (from ``model.json`` or the archive), else the
    directory's name and a checksum of the weights."""
    name = name or os.path.basename(os.path.realpath(directory))
    return name, version or file_sha256(os.path.join(directory, PARAMS_FILE))[:12]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
