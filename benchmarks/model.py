"""The benchmark's models: a randomly initialised I3D-ResNet50 (same compute as the trained one;
nothing is downloaded), exported once to the artifact format. Its ONNX export is made beside it
by the onnxruntime worker on first use (`livewatch.model.backends.onnxruntime.export_onnx`).

For the OpenVINO phase (`benchmarks.openvino_bench`) also: the same network with a peaky head
(``--peaky SRC SEGMENT...``: its head centred on windows of those segments, so its labels follow
the input and its probabilities spread like a trained model's: top-1 agreement means something), and the demo's trained model (``--demo``: `livewatch demo`'s dataset and training,
its quick sizes; the dataset's videos are kept beside it for the agreement check).

Run as ``python -m benchmarks.model DIR [--peaky SRC | --demo]`` in a process of its own: it
imports MXNet through `livewatch.testing.models`, and the parent keeps MXNet (and its OpenMP pool)
out of its process.
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


def ensure_peaky(directory: Path, source: Path, segments: list[Path]) -> Path:
    """The random I3D with its head centred on windows of `segments`: labels follow the input."""
    if (directory / "model-0000.params").is_file():
        return directory
    import av
    import numpy as np

    from livewatch.model.artifacts import load_artifact
    from livewatch.model.preprocess import to_tensor
    from livewatch.testing.models import with_peaky_head

    meta, clips = load_artifact(source).meta, []
    for path in segments:
        with av.open(str(path)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24", width=meta.resize[0], height=meta.resize[1])
                               for f in container.decode(container.streams.video[0])])
        for start in np.linspace(0, len(frames) - meta.frames, 3).astype(int):
            clips.append(to_tensor(frames[start: start + meta.frames], crop=meta.crop,
                                   mean=meta.mean, std=meta.std)[0])
    return with_peaky_head(source, directory, center=np.stack(clips), name="random-i3d-peaky")


def ensure_demo(work: Path) -> Path:
    """`livewatch demo --quick`'s training (small3d, 8x64x64): the model directory."""
    model = work / "model"
    if (model / "model-0000.params").is_file():
        return model
    from livewatch.model.backends.mxnet import import_mxnet
    from livewatch.training.commands import QUICK
    from livewatch.training.demo import build_model

    import_mxnet()
    _, result = build_model(work, per_class=QUICK["per_class"], epochs=QUICK["epochs"],
                            echo=lambda m: print(m, file=sys.stderr), progress=False)
    return result.model_dir


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if sys.argv[2:3] == ["--peaky"]:
        print(ensure_peaky(target, Path(sys.argv[3]), [Path(p) for p in sys.argv[4:]]))
    elif sys.argv[2:3] == ["--demo"]:
        print(ensure_demo(target))
    else:
        print(ensure_model(target))
