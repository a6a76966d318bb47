"""What the classifier needs of a loaded model, whatever runs its forward pass (MXNet or ONNX
Runtime): its artifact's metadata and classes, `predict` and `top_k`."""
from __future__ import annotations

import numpy as np

from .artifacts import ModelArtifact, ModelMeta


class LoadedModel:
    """Subclasses set `artifact` and implement `_forward` (a checked float32 batch -> softmax)."""

    artifact: ModelArtifact
    load_ms: float
    backend_name: str = ""  # as the classifier's `backend` option names it

    @property
    def meta(self) -> ModelMeta:
        return self.artifact.meta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.artifact.classes

    @property
    def runtime(self) -> dict[str, str]:
        """What runs the forward pass (backend, precision, unit), for the log and ``/metrics``."""
        return {"backend": self.backend_name or type(self).__name__}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, T, H, W) float32 -> (N, num_classes) softmax probabilities."""
        if batch.ndim != 5 or batch.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, T, H, W) batch, got shape {batch.shape}")
        return self._forward(batch)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def top_k(self, probs: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The `k` most probable (label, probability) pairs of one row of `predict`, best first."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.classes[i], float(probs[i])) for i in order]
