"""`model.tar.gz` for SageMaker's MXNet serving container, and `livewatch model info`.

The archive holds the model files at its root (what the in-process classifier reads, see
`livewatch.model.artifacts`) and ``code/`` for the container:

- ``code/inference.py`` and ``code/requirements.txt`` from the repository's ``model/code/``;
- ``code/livewatch/model/{video,packets,windows,preprocess,sampling,model_files,mxnet_net,
  thumbnails}.py`` and
  ``code/livewatch/errors.py``: copies, made at packaging time, of the modules the daemon reads a
  model directory, loads the network (oneDNN fusion), decodes and preprocesses with, under the
  same import names. So the endpoint does it with the daemon's own code — there is no
  second copy to keep in step in the repository — and the container needs only PyAV and Pillow
  (listed in requirements.txt; Pillow only for thumbnails) on top of what it has; a whole livewatch wheel would also install pydantic,
  click, watchfiles, ... into the container and tie its numpy to ours. SageMaker's MXNet 1.9
  serving images run Python 3.8, so these modules keep to its syntax and postpone their
  annotations (``tests/test_training.py`` checks; checked by hand on 3.8 with PyAV 12.3).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import livewatch
from livewatch.model.artifacts import ModelArtifact, pack_model
from livewatch.model.resolve import resolve_model

#: The daemon's modules the serving code imports, relative to the livewatch package.
SHARED_MODULES = ("errors.py", "model/video.py", "model/packets.py", "model/windows.py",
                  "model/preprocess.py", "model/sampling.py", "model/model_files.py",
                  "model/mxnet_net.py", "model/thumbnails.py")


def default_code_dir() -> Path:
    """The repository's ``model/code`` (next to the livewatch package in a checkout)."""
    return Path(livewatch.__file__).resolve().parents[1] / "model" / "code"


def build_code_dir(dest: Path, source: Path | None = None) -> Path:
    """Fill `dest` with the serving code: `source`'s files plus the daemon's shared modules."""
    source = source or default_code_dir()
    if not (source / "inference.py").is_file():
        raise FileNotFoundError(f"{source} has no inference.py; pass the serving code's folder "
                                "(the repository's model/code) with --code")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True)
    package = Path(livewatch.__file__).resolve().parent
    header = '"""Copied from livewatch by `livewatch model package`; do not edit."""\n'
    (dest / "livewatch" / "model").mkdir(parents=True, exist_ok=True)
    (dest / "livewatch" / "__init__.py").write_text(header)
    (dest / "livewatch" / "model" / "__init__.py").write_text(header)
    for rel in SHARED_MODULES:
        shutil.copy2(package / rel, dest / "livewatch" / rel)
    return dest


def package(model_dir: str | os.PathLike, archive: str | os.PathLike, *,
            code_dir: str | os.PathLike | None = None) -> Path:
    """Write `model_dir` and the serving code to `archive` (a model.tar.gz)."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        code = build_code_dir(Path(tmp) / "code", Path(code_dir) if code_dir else None)
        return pack_model(Path(model_dir), archive, code_dir=code)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe(spec: str) -> dict:
    """What `livewatch model info` prints: name, version, classes, input shape, checksums."""
    artifact: ModelArtifact = resolve_model(spec)
    meta = artifact.meta
    path = Path(spec)
    info = {
        "model": spec,
        "name": artifact.name,
        "version": artifact.version,
        "classes": list(artifact.classes),
        "input_shape": [1, 3, meta.frames, meta.crop, meta.crop],
        "step": meta.step,
        "resize": list(meta.resize),
        "mean": list(meta.mean),
        "std": list(meta.std),
        "params_sha256": sha256(artifact.params_file),
    }
    if path.is_file():
        info["archive_sha256"] = sha256(path)
        import tarfile

        with tarfile.open(path) as tar:
            info["code"] = sorted(n for n in tar.getnames() if n.startswith("code/") and n.endswith(".py"))
    return info


def format_info(info: dict) -> str:
    lines = [
        f"model:        {info['model']}",
        f"name:         {info['name']}  version {info['version']}",
        f"input shape:  {tuple(info['input_shape'])} (N, C, T, H, W), frames resized to "
        f"{info['resize'][0]}x{info['resize'][1]} then center-cropped",
        f"stride:       every {info['step']}. frame: a window spans {info['step'] * info['input_shape'][2]} "
        f"frames (GluonCV's new_step={info['step']})",
        f"normalise:    mean {tuple(info['mean'])} std {tuple(info['std'])}",
        f"classes ({len(info['classes'])}): {', '.join(info['classes'])}",
        f"params sha256:  {info['params_sha256']}",
    ]
    if "archive_sha256" in info:
        lines.append(f"archive sha256: {info['archive_sha256']}")
        lines.append(f"serving code:   {', '.join(info['code']) or 'none (no code/ folder)'}")
    return "\n".join(lines)
