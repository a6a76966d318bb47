"""Model artifacts: one on-disk format for both classifiers, and where a model comes from.

A model is a directory holding

- ``model-symbol.json`` and ``model-0000.params``: the network in MXNet's symbolic format, as
  ``HybridBlock.export(prefix, 0)`` writes it (input named ``data``, shape (N, 3, T, H, W));
- ``classes.txt``: one label per line, in the order of the network's outputs;
- ``model.json`` (optional): metadata, every key optional::

      {"name": "ucf101-finetuned", "version": "2024-05-01",
       "frames": 32, "crop": 224, "resize": [340, 256],
       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

  ``frames`` consecutive frames are read from the middle of a segment, resized to ``resize``
  (width, height), center-cropped to ``crop`` x ``crop`` and normalised with ``mean``/``std``.
  Without a name the directory's (or archive's) name is used; without a version, a checksum.

``model.tar.gz`` packs the same files at its root, beside the ``code/`` folder SageMaker's MXNet
serving container reads. `resolve_model` accepts a directory, a model.tar.gz, an ``s3://`` URI of
one, or a GluonCV model-zoo name; archives, downloads and zoo exports are kept in a cache
(``$LIVEWATCH_CACHE_DIR``, default ``~/.cache/livewatch/models``) so a restart reuses them.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livewatch.errors import ModelError

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
CLASSES_FILE = "classes.txt"
META_FILE = "model.json"
REQUIRED_FILES = (SYMBOL_FILE, PARAMS_FILE, CLASSES_FILE)


class ModelMeta(BaseModel):
    """The contents of ``model.json``; unknown keys are errors, so a typo never passes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    frames: int = Field(32, ge=1, description="consecutive frames per clip")
    crop: int = Field(224, ge=1, description="center crop, in pixels, of each resized frame")
    resize: tuple[int, int] = Field((340, 256), description="(width, height) before the crop")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelArtifact:
    directory: Path
    classes: tuple[str, ...]
    meta: ModelMeta  # name and version always filled in

    @property
    def name(self) -> str:
        return self.meta.name or ""

    @property
    def version(self) -> str:
        return self.meta.version or ""

    @property
    def symbol_file(self) -> Path:
        return self.directory / SYMBOL_FILE

    @property
    def params_file(self) -> Path:
        return self.directory / PARAMS_FILE


def default_cache_dir() -> Path:
    return Path(os.environ.get("LIVEWATCH_CACHE_DIR") or "~/.cache/livewatch/models").expanduser()


def resolve_model(spec: str, cache_dir: Path | str | None = None) -> ModelArtifact:
    """Find, fetch or unpack the model `spec` names. Blocking: call it from an executor."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if spec.startswith("s3://"):
        from .artifacts_s3 import fetch_s3_model  # boto3 is an optional dependency

        return fetch_s3_model(spec, cache)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_artifact(path)
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ModelError(f"model {spec!r} is a file but not a model.tar.gz archive")
        checksum = _sha256(path)
        root = unpack_model_tar(path, cache / "archives" / checksum[:16])
        return load_artifact(root, name=archive_name(path.as_posix()), version=checksum[:12])
    if os.sep in spec or "/" in spec or spec.startswith((".", "~")) or spec.endswith((".tar.gz", ".tgz")):
        raise ModelError(f"model path {spec!r} does not exist")
    from .artifacts_zoo import fetch_zoo_model  # gluoncv imports MXNet: pay for it only here

    return fetch_zoo_model(spec, cache)


def load_artifact(directory: Path, *, name: str | None = None, version: str | None = None) -> ModelArtifact:
    """Read a model directory's classes and metadata (the network itself is loaded by MXNetModel).

    `name` and `version` are defaults that ``model.json`` overrides.
    """
    missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
    if missing:
        raise ModelError(f"model directory {str(directory)!r} lacks {', '.join(missing)} "
                         f"(a model needs {', '.join(REQUIRED_FILES)})")
    classes = tuple(
        line.strip() for line in (directory / CLASSES_FILE).read_text().splitlines() if line.strip()
    )
    if not classes:
        raise ModelError(f"{directory / CLASSES_FILE} lists no labels")
    meta_path = directory / META_FILE
    try:
        meta = ModelMeta.model_validate_json(meta_path.read_bytes()) if meta_path.is_file() else ModelMeta()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ModelError(f"{meta_path} is invalid: {problems}") from None
    meta = meta.model_copy(update={
        "name": meta.name or name or directory.resolve().name,
        "version": meta.version or version or _sha256(directory / PARAMS_FILE)[:12],
    })
    return ModelArtifact(directory=directory, classes=classes, meta=meta)


def unpack_model_tar(archive: Path, dest: Path) -> Path:
    """Unpack a model.tar.gz into `dest` unless a previous start did; return the model's folder.

    `dest` appears complete or not at all, and only if the archive holds a model.
    """
    if not dest.is_dir():
        with _staging(dest) as tmp:
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ModelError(f"cannot unpack {str(archive)!r}: {exc}") from exc
            if _find_root(tmp) is None:
                found = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
                raise ModelError(f"{str(archive)!r} holds no model: {', '.join(REQUIRED_FILES)} "
                                 f"must be at the archive's root (found: {found})")
    return unpacked_root(dest)


def unpacked_root(dest: Path) -> Path:
    """The folder holding the model files in an unpacked archive."""
    root = _find_root(dest)
    if root is None:
        raise ModelError(f"the cached model {str(dest)!r} is incomplete; delete it and start again")
    return root


def _find_root(tree: Path) -> Path | None:
    """The archive's root, or else its only top-level folder besides code/, if it holds the files."""
    folders = [p for p in tree.iterdir() if p.is_dir() and p.name != "code"]
    candidates = [tree, folders[0]] if len(folders) == 1 else [tree]
    return next((c for c in candidates if all((c / f).is_file() for f in REQUIRED_FILES)), None)


def pack_model(directory: Path, archive: Path, *, code_dir: Path | None = None,
               compresslevel: int = 6) -> Path:
    """Write `directory`'s model files (and `code_dir` as ``code/``) to a model.tar.gz."""
    load_artifact(directory)  # refuse to pack an incomplete model
    with tarfile.open(archive, "w:gz", compresslevel=compresslevel) as tar:
        for name in (*REQUIRED_FILES, META_FILE):
            if (directory / name).is_file():
                tar.add(directory / name, arcname=name)
        if code_dir is not None:
            tar.add(code_dir, arcname="code")
    return archive


def export_block(net, directory: Path, *, classes: list[str], meta: ModelMeta) -> Path:
    """Export a Gluon HybridBlock to a model directory (complete or not at all).

    One forward pass at the input shape `meta` describes builds the graph to export, and fails
    here, not at serving time, if the network does not accept that shape.
    """
    import mxnet as mx

    if directory.is_dir() and any(directory.iterdir()):
        raise ModelError(f"cannot export a model into {str(directory)!r}: it is not empty")
    with _staging(directory) as tmp:
        net.hybridize()
        out = net(mx.nd.zeros((1, 3, meta.frames, meta.crop, meta.crop)))
        if out.shape[-1] != len(classes):
            raise ModelError(f"the network has {out.shape[-1]} outputs but {len(classes)} classes")
        net.export(str(tmp / "model"), 0)
        (tmp / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes))
        (tmp / META_FILE).write_text(meta.model_dump_json(indent=2, exclude_none=True) + "\n")
    return directory


def archive_name(path: str) -> str:
    """``models/ucf101/model.tar.gz`` -> ``ucf101``; ``ucf101-v2.tar.gz`` -> ``ucf101-v2``."""
    p = PurePosixPath(path)
    stem = re.sub(r"\.(tar\.gz|tgz)$", "", p.name)
    return p.parent.name if stem == "model" and p.parent.name else stem


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """Build a directory next to `dest` and rename it into place if the block succeeds.

    Two processes filling the same cache entry at once both succeed; the first rename wins.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        yield tmp
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
