"""I3D models for tests, made offline: GluonCV's I3D-ResNet50 with random weights, exported to the
artifact format (see `livewatch.model.artifacts`).

Exporting takes a few seconds and writes ~110 MB, so the fixtures are session-scoped. The weights
do not depend on the input size (the network ends in a global average pool), so `tiny_i3d_dir`
reuses `random_i3d_dir`'s files through hard links and only declares a smaller input in
``model.json``: 8 frames resized to 171x128 and cropped to 112x112, 16x fewer input pixels per clip
than 32 frames at 224x224, for tests that run the daemon over many segments.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from livewatch.model.artifacts import (
    CLASSES_FILE,
    META_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelMeta,
    export_block,
    load_artifact,
    pack_model,
)

#: Labels of the random test models (UCF101-style, so detections look like the real thing).
TEST_CLASSES = ("archery", "basketball", "biking", "bowling", "diving")


def export_random_i3d(
    directory: str | os.PathLike,
    *,
    classes: list[str] | tuple[str, ...] = TEST_CLASSES,
    frames: int = 32,
    crop: int = 224,
    resize: tuple[int, int] = (340, 256),
    seed: int = 0,
    name: str = "random-i3d",
) -> Path:
    """Export a randomly initialised I3D-ResNet50 with `len(classes)` outputs to `directory`.

    The same seed gives the same weights. Nothing is downloaded: GluonCV would otherwise fetch
    the ImageNet ResNet50 (``pretrained_base``) and Kinetics400 weights (``use_kinetics_pretrain``).
    """
    import mxnet as mx
    from gluoncv.model_zoo import get_model

    mx.random.seed(seed)
    net = get_model("i3d_resnet50_v1_custom", nclass=len(classes), pretrained=False,
                    pretrained_base=False, use_kinetics_pretrain=False)
    meta = ModelMeta(name=name, version=f"seed{seed}", frames=frames, crop=crop, resize=resize)
    return export_block(net, Path(directory), classes=list(classes), meta=meta)


def with_input_shape(model_dir: Path, directory: Path, *, frames: int, crop: int,
                     resize: tuple[int, int], name: str, step: int = 1) -> Path:
    """The same network and weights (hard-linked, not copied) declared with another input size."""
    directory.mkdir(parents=True)
    for file in (SYMBOL_FILE, PARAMS_FILE, CLASSES_FILE):
        try:
            os.link(model_dir / file, directory / file)
        except OSError:  # another filesystem
            shutil.copy2(model_dir / file, directory / file)
    meta = load_artifact(model_dir).meta.model_copy(
        update=dict(name=name, frames=frames, step=step, crop=crop, resize=resize))
    (directory / META_FILE).write_text(meta.model_dump_json(indent=2, exclude_none=True) + "\n")
    return directory


def reference_forward(model_dir: str | os.PathLike, batch: np.ndarray) -> np.ndarray:
    """Softmax probabilities of an exported model through MXNet's Module API: a forward pass
    that shares no code with livewatch's `MXNetModel`, for tests to compare it against."""
    import mxnet as mx

    symbol, args, auxs = mx.model.load_checkpoint(str(Path(model_dir) / "model"), 0)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", batch.shape)], for_training=False)
    module.set_params(args, auxs)
    module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
    logits = module.get_outputs()[0].asnumpy().astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="session")
def random_i3d_dir(tmp_path_factory) -> Path:
    """A random I3D-ResNet50 over `TEST_CLASSES`: 32 frames at 224x224, as the real model."""
    return export_random_i3d(tmp_path_factory.mktemp("models") / "random-i3d")


@pytest.fixture(scope="session")
def tiny_i3d_dir(random_i3d_dir, tmp_path_factory) -> Path:
    """The same network reading 8 frames at 112x112 (resized to 171x128), every 8th (``step``
    8): a window spans 64 frames, so ``"cover"`` makes 4 windows of a 10 s, 25 fps segment (not 32
    at step 1): fast daemon tests."""
    return with_input_shape(random_i3d_dir, tmp_path_factory.mktemp("models") / "tiny-i3d",
                            frames=8, step=8, crop=112, resize=(171, 128), name="tiny-i3d")


@pytest.fixture(scope="session")
def random_i3d_tar(random_i3d_dir, tmp_path_factory) -> Path:
    """`random_i3d_dir` packed as SageMaker wants it: the files at the root, beside ``code/``."""
    root = tmp_path_factory.mktemp("model-tar")
    code = root / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("gluoncv==0.10.5.post0\n")
    return pack_model(random_i3d_dir, root / "model.tar.gz", code_dir=code, compresslevel=1)


def with_peaky_head(model_dir: Path, directory: Path, *, scale: float = 40.0, name: str | None = None,
                    center: np.ndarray | None = None, spread: float = 3.0) -> Path:
    """The same network with a sharper last layer: a random model's probabilities are
    near-uniform (every top-1 a coin toss under any rounding); a peaky head's are spread like a
    trained model's, so agreement tests mean something.

    Without `center`, the last layer's weights and bias are multiplied by `scale` (one label
    tends to win every input). With `center` (a batch of clips), its bias is set so that the
    mean logit over those clips is 0 for every class and its weights scaled so that the logits'
    spread is `spread`: the label then follows the input, as a trained model's does."""
    import mxnet as mx

    directory.mkdir(parents=True)
    symbol = mx.sym.load(str(model_dir / SYMBOL_FILE))
    weight = [a for a in symbol.list_arguments() if a.endswith("_weight")][-1]
    layer = weight[: -len("_weight")]
    params = mx.nd.load(str(model_dir / PARAMS_FILE))
    w, b = params[f"arg:{weight}"], params.get(f"arg:{layer}_bias")
    if center is None:
        params[f"arg:{weight}"] = w * scale
        if b is not None:
            params[f"arg:{layer}_bias"] = b * scale
    else:
        features = _features(model_dir, symbol, layer, center)  # (N, F): what the layer reads
        logits = features @ w.asnumpy().T
        deviation = logits - logits.mean(axis=0)
        k = spread / max(float(deviation.std()), 1e-12)
        params[f"arg:{weight}"] = w * k
        params[f"arg:{layer}_bias"] = mx.nd.array(-k * logits.mean(axis=0))
    mx.nd.save(str(directory / PARAMS_FILE), params)
    for file in (SYMBOL_FILE, CLASSES_FILE):
        shutil.copy2(model_dir / file, directory / file)
    meta = load_artifact(model_dir).meta
    meta = meta.model_copy(update=dict(name=name or f"{meta.name}-peaky",
                                       version=f"{meta.version}-peaky"))
    (directory / META_FILE).write_text(meta.model_dump_json(indent=2, exclude_none=True) + "\n")
    return directory


def _features(model_dir: Path, symbol, layer: str, batch: np.ndarray) -> np.ndarray:
    """The input of the fully connected `layer` for `batch`, through MXNet's Module API."""
    import mxnet as mx

    internals = symbol.get_internals()
    fc = next(internals[n] for n in internals.list_outputs()
              if n.startswith(f"{layer}_") and n.endswith("_output"))
    feature = fc.get_children()[0]
    _, args, auxs = mx.model.load_checkpoint(str(Path(model_dir) / "model"), 0)
    module = mx.mod.Module(feature, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, *batch.shape[1:]))], for_training=False)
    module.set_params({k: v for k, v in args.items() if k in feature.list_arguments()}, auxs,
                      allow_missing=False, allow_extra=True)
    out = []
    for clip in batch:
        module.forward(mx.io.DataBatch([mx.nd.array(clip[None])]), is_train=False)
        out.append(module.get_outputs()[0].asnumpy().reshape(1, -1))
    return np.concatenate(out).astype(np.float64)
