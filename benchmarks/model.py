"""The benchmark's models: a randomly initialised I3D-ResNet50 (same compute as the trained one;
nothing is downloaded), exported once to the artifact format. Its ONNX export is made beside it
by the onnxruntime worker on first use (`livewatch.model.backends.onnxruntime.export_onnx`).

Run as ``python -m benchmarks.model DIR`` in a process of its own: it imports MXNet through
`livewatch.testing.models`, and the parent keeps MXNet (and its OpenMP pool) out of its process.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: UCF101 has 101 classes: the classifier head of the model the sample serves.
NUM_CLASSES = 101


def ensure_model(directory: Path) -> Path:
    """Export the random I3D into `directory` unless a previous run did."""
    if (directory / "model-0000.params").is_file():
        return directory
    from livewatch.testing.models import export_random_i3d

    classes = [f"class{i:03d}" for i in range(NUM_CLASSES)]
    return export_random_i3d(directory, classes=classes, seed=0, name="random-i3d-ucf101")


if __name__ == "__main__":
    print(ensure_model(Path(sys.argv[1])))
