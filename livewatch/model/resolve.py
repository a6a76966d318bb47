"""`resolve_model`: a model directory, a model.tar.gz, an ``s3://`` URI of one, or a GluonCV
model-zoo name, as an artifact on disk.

`livewatch.model.artifacts` knows local models and keeps a registry of resolvers for the rest;
each resolver module registers itself on import (``artifacts_s3``: ``s3://`` URIs,
``artifacts_zoo``: bare names). This module imports the built-in ones, so that neither they nor
artifacts need to import each other lazily. boto3 and GluonCV are imported only when used.
"""
from __future__ import annotations

from pathlib import Path

from . import artifacts_s3, artifacts_zoo  # noqa: F401  (each registers its resolver)
from .artifacts import ModelArtifact, find_model


def resolve_model(spec: str, cache_dir: Path | str | None = None) -> ModelArtifact:
    """Find, fetch or unpack the model `spec` names. Blocking: call it from an executor."""
    return find_model(spec, cache_dir)
