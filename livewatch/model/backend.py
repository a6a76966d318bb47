"""What an inference runtime for the in-process ``i3d`` classifier provides: the `Backend` class.

A backend turns a model artifact into a `LoadedModel` (``predict``, ``top_k``, ``meta``,
``classes``); decoding, windows and batching stay in the classifier, the same for every backend.
Backends register through the ``register_backends`` hook, built-ins (``mxnet``, ``onnxruntime``
in `livewatch.model.backends`) exactly as third parties do, and the classifier's ``backend``
option names one.

This module stays light (no runtime is imported here): every ``livewatch`` command loads it.
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from livewatch.components import Options

from .loaded_model import LoadedModel

if TYPE_CHECKING:
    from .artifacts import ModelArtifact

Device = Literal["auto", "cpu", "gpu"]


class BackendOptions(Options):
    """What every backend receives. ``device`` and ``threads`` are the classifier's own options
    (the same for every backend); a backend adds its own fields in a subclass, which the
    classifier's ``backend_options`` table fills."""

    device: Device = Field("auto", description="where to run the model (set on the classifier)")
    threads: int | None = Field(None, ge=1, description="the runtime's CPU threads (set on the "
                                "classifier)")


class Backend:
    """An inference runtime. Subclasses set `name`, `summary` and `requires`, and implement `load`.

    Not instantiated: the classifier calls the class methods from its own executor thread.
    """

    #: the classifier's ``backend = "..."``
    name: ClassVar[str] = ""
    #: one line for ``livewatch plugins``
    summary: ClassVar[str] = ""
    #: the backend's options; subclass `BackendOptions` to add fields
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: the importable modules it needs (`available` checks them without importing them)
    modules: ClassVar[tuple[str, ...]] = ()
    #: how to install what it needs, shown when it is not available
    install: ClassVar[str] = ""

    @classmethod
    def available(cls) -> bool:
        """True when what the backend needs can be imported here (cheap: nothing is imported)."""
        return all(importlib.util.find_spec(m) is not None for m in cls.modules)

    @classmethod
    def missing(cls) -> str | None:
        """None when `available`; else a sentence that says what to install."""
        if cls.available():
            return None
        return f"backend {cls.name!r} needs {', '.join(cls.modules)}: {cls.install}"

    @classmethod
    def variants(cls, artifact: "ModelArtifact") -> list[dict]:
        """The ``backend_options`` that ``backend = "auto"`` tries for `artifact` (default: one,
        the defaults)."""
        return [{}]

    @classmethod
    def load(cls, artifact: "ModelArtifact", options: BackendOptions) -> LoadedModel:
        """Load and warm up `artifact`'s network; raise `ModelError` in words when it cannot.
        Blocking; called from the classifier's executor thread."""
        raise NotImplementedError
