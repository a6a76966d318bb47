"""Model artifacts: one on-disk format for both classifiers, and where a model comes from.

A model is a directory holding

- ``model-symbol.json`` and ``model-0000.params``: the network in MXNet's symbolic format, as
  ``HybridBlock.export(prefix, 0)`` writes it (input named ``data``, shape (N, 3, T, H, W));
- ``classes.txt``: one label per line, in the order of the network's outputs;
- ``model.json`` (optional): metadata, every key optional::

      {"name": "ucf101-finetuned", "version": "2024-05-01",
       "frames": 32, "step": 1, "crop": 224, "resize": [340, 256],
       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

  ``frames`` frames, every ``step``-th (GluonCV's ``new_length`` and ``new_step``: the stride the
  model was trained with), make a window of a segment; each is resized to ``resize``
  (width, height), center-cropped to ``crop`` x ``crop`` and normalised with ``mean``/``std``.
  Without a name the directory's (or archive's) name is used; without a version, a checksum.

``model.tar.gz`` packs the same files at its root, beside the ``code/`` folder SageMaker's MXNet
serving container reads. `find_model` accepts a directory, a model.tar.gz, an ``s3://`` URI of
one, or a GluonCV model-zoo name (the last two through registered `Resolver`s, see
`livewatch.model.resolve`); archives, downloads and zoo exports are kept in a cache
(``$LIVEWATCH_CACHE_DIR``, default ``~/.cache/livewatch/models``) so a restart reuses them.
"""
from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from livewatch.errors import ModelError

from .model_files import (  # noqa: F401  (the format's names, used from here too)
    CLASSES_FILE,
    DEFAULT_META,
    META_FILE,
    PARAMS_FILE,
    REQUIRED_FILES,
    SYMBOL_FILE,
    file_sha256,
    model_identity,
    read_classes,
    read_meta,
)


class ModelMeta(BaseModel):
    """The contents of ``model.json``; unknown keys are errors, so a typo never passes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    frames: int = Field(DEFAULT_META["frames"], ge=1,
                        description="frames per window (GluonCV's new_length)")
    step: int = Field(DEFAULT_META["step"], ge=1, strict=True,
                      description="a window takes every step-th frame (GluonCV's new_step): the "
                      "stride the model was trained with")
    crop: int = Field(DEFAULT_META["crop"], ge=1,
                      description="center crop, in pixels, of each resized frame")
    resize: tuple[int, int] = Field(DEFAULT_META["resize"],
                                    description="(width, height) before the crop")
    mean: tuple[float, float, float] = DEFAULT_META["mean"]
    std: tuple[float, float, float] = DEFAULT_META["std"]


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


@dataclass(frozen=True)
class Resolver:
    """Where the models of some names come from: `fetch(spec, cache)` finds, downloads or exports
    the model `spec` names, for every `spec` that `handles(spec)` accepts. Blocking."""

    name: str
    handles: Callable[[str], bool]
    fetch: Callable[[str, Path], ModelArtifact]


#: Registered resolvers, asked in registration order (each module registers its own on import;
#: `livewatch.model.resolve` imports the built-in ones).
RESOLVERS: dict[str, Resolver] = {}


def register_resolver(resolver: Resolver) -> Resolver:
    RESOLVERS[resolver.name] = resolver
    return resolver


def looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.startswith((".", "~"))
            or spec.endswith((".tar.gz", ".tgz")))


def find_model(spec: str, cache_dir: Path | str | None = None) -> ModelArtifact:
    """A local model directory or model.tar.gz, else what the first registered resolver that
    handles `spec` fetches. Blocking: call it from an executor. Use
    `livewatch.model.resolve.resolve_model`, which registers the built-in resolvers first."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_artifact(path)
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ModelError(f"model {spec!r} is a file but not a model.tar.gz archive")
        checksum = file_sha256(path)
        root = unpack_model_tar(path, cache / "archives" / checksum[:16])
        return load_artifact(root, name=archive_name(path.as_posix()), version=checksum[:12])
    for resolver in RESOLVERS.values():
        if resolver.handles(spec):
            return resolver.fetch(spec, cache)
    if looks_like_path(spec):
        raise ModelError(f"model path {spec!r} does not exist")
    raise ModelError(f"model {spec!r} is not a local directory or model.tar.gz, and no model "
                     f"resolver handles it (registered: {', '.join(RESOLVERS) or 'none'})")


def load_artifact(directory: Path, *, name: str | None = None, version: str | None = None) -> ModelArtifact:
    """Read a model directory's classes and metadata (the network itself is loaded by MXNetModel).

    `name` and `version` are defaults that ``model.json`` overrides.
    """
    missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
    if missing:
        raise ModelError(f"model directory {str(directory)!r} lacks {', '.join(missing)} "
                         f"(a model needs {', '.join(REQUIRED_FILES)})")
    classes = read_classes(directory)
    if not classes:
        raise ModelError(f"{directory / CLASSES_FILE} lists no labels")
    meta_path = directory / META_FILE
    try:
        meta = ModelMeta.model_validate(read_meta(directory))
    except ValueError as exc:  # not JSON, or pydantic's ValidationError (a ValueError too)
        problems = ("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                    if isinstance(exc, ValidationError) else f"not JSON ({exc})")
        raise ModelError(f"{meta_path} is invalid: {problems}") from None
    meta_name, meta_version = model_identity(directory, meta.name or name, meta.version or version)
    meta = meta.model_copy(update={"name": meta_name, "version": meta_version})
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
