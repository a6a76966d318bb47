"""Fine-tuning: train a backbone (`nets`) on GluonCV setting files (`prep`), keep the best epoch,
and export it in livewatch's model format (`livewatch.model.artifacts.export_block`).

The exported ``model.json`` records the input the network was trained on (frames, crop, resize,
mean, std), so the daemon and the serving code read clips exactly as validation did.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from livewatch.model.artifacts import META_FILE, PARAMS_FILE, ModelMeta, export_block
from livewatch.errors import ModelError
from livewatch.model.preprocess import MEAN, STD

from .nets import DEFAULT_BACKBONE, SMALL
from .prep import read_setting_file

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="folder with train.txt, val.txt and classes.txt (`model prep`)")
    out: Path = Field(description="the model directory to export (must not exist or be empty)")
    root: Path | None = Field(None, description="the videos' root (default: `data`)")
    backbone: str = DEFAULT_BACKBONE
    pretrained: bool = True
    frames: int = Field(32, ge=1)
    crop: int = Field(224, ge=8)
    resize: tuple[int, int] = (340, 256)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0)
    wd: float = Field(1e-4, ge=0)
    flip_prob: float = Field(0.0, ge=0, le=1, description="horizontal flips (they swap left and right)")
    gpus: int = Field(0, ge=0, description="GPUs to train on (0: the CPU)")
    seed: int = 0
    name: str | None = None
    version: str | None = None
    cache_mb: int = 1024
    progress: bool = True


@dataclass
class Epoch:
    epoch: int
    loss: float
    train_acc: float
    val_acc: float
    seconds: float


@dataclass
class TrainResult:
    model_dir: Path
    classes: list[str]
    best_epoch: int
    best_val_acc: float
    seconds: float
    history: list[Epoch] = field(default_factory=list)


def _import_mxnet(config: TrainConfig):
    """MKL-DNN cannot train zoo 3D networks on a CPU (see `nets`): turn it off for them.

    MXNet reads the switch once, so it must be set before MXNet runs anything: in a process that
    already used MXNet with MKL-DNN on (a test, a notebook), say so instead of failing deep inside
    the first backward pass."""
    zoo_on_cpu = config.backbone != SMALL and config.gpus == 0
    if zoo_on_cpu and "mxnet" not in sys.modules:
        os.environ.setdefault("MXNET_MKLDNN_ENABLED", "0")
        os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")  # one warning per op
    from livewatch.model.backends.mxnet import import_mxnet

    mx = import_mxnet()
    if (zoo_on_cpu and os.environ.get("MXNET_MKLDNN_ENABLED", "1") != "0"
            and mx.runtime.Features().is_enabled("MKLDNN")):
        raise RuntimeError(f"{config.backbone} cannot train on the CPU with MKL-DNN on (MXNet 1.9.1's "
                           "BatchNorm backward on 5-D input): set MXNET_MKLDNN_ENABLED=0 before "
                           "MXNet is imported, or run `livewatch model train` in its own process")
    return mx


def train(config: TrainConfig, echo: Callable[[str], None] = print) -> TrainResult:
    """Train, validate every epoch, export the best epoch to `config.out`. Blocking."""
    if config.out.is_dir() and any(config.out.iterdir()):  # before the training, not after it
        raise ModelError(f"cannot export a model into {str(config.out)!r}: it is not empty")
    mx = _import_mxnet(config)
    from mxnet import autograd, gluon

    from .data import ClipDataset
    from .nets import build_network

    started = time.perf_counter()
    root = config.root or config.data
    classes = [c.strip() for c in (config.data / "classes.txt").read_text().splitlines() if c.strip()]
    train_rows = read_setting_file(config.data / "train.txt")
    val_rows = read_setting_file(config.data / "val.txt")
    if not train_rows:
        raise ValueError(f"{config.data / 'train.txt'} lists no videos")
    mx.random.seed(config.seed)
    ctx = [mx.gpu(i) for i in range(config.gpus)] or [mx.cpu()]
    shape = dict(frames=config.frames, crop=config.crop, resize=config.resize, cache_mb=config.cache_mb)
    train_set = ClipDataset(root, train_rows, train=True, flip_prob=config.flip_prob,
                            seed=config.seed, **shape)
    val_set = ClipDataset(root, val_rows, train=False, **shape)
    net = build_network(config.backbone, len(classes), pretrained=config.pretrained, ctx=ctx[0])
    net.collect_params().reset_ctx(ctx)
    net.hybridize()
    steps = config.epochs * ((len(train_rows) + config.batch_size - 1) // config.batch_size)
    schedule = mx.lr_scheduler.CosineScheduler(max_update=max(steps, 1), base_lr=config.lr,
                                               final_lr=config.lr / 100)
    opt_params = {"learning_rate": config.lr, "wd": config.wd, "lr_scheduler": schedule}
    if config.optimizer == "sgd":
        opt_params["momentum"] = 0.9
    trainer = gluon.Trainer(net.collect_params(), config.optimizer, opt_params)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    echo(f"training {config.backbone} ({'pretrained' if config.pretrained else 'from scratch'}) "
         f"on {len(train_rows)} clips, validating on {len(val_rows)}; {len(classes)} classes; "
         f"input {config.frames}x{config.crop}x{config.crop} from {config.resize[0]}x{config.resize[1]}")
    best = (-1.0, 0)
    history: list[Epoch] = []
    with tempfile.TemporaryDirectory() as tmp:
        best_params = Path(tmp) / "best.params"
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            loss, acc = _train_epoch(mx, autograd, gluon, net, trainer, loss_fn, train_set, ctx,
                                     config, epoch)
            val_acc = evaluate_net(mx, net, val_set, ctx[0], config.batch_size) if len(val_set) else acc
            history.append(Epoch(epoch, loss, acc, val_acc, time.perf_counter() - t0))
            mark = ""
            if val_acc >= best[0]:  # a tie goes to the later, longer-trained epoch
                best = (val_acc, epoch)
                net.save_parameters(str(best_params))
                mark = "  (best)"
            echo(f"epoch {epoch}/{config.epochs}: loss {loss:.4f}, train acc {acc:.3f}, "
                 f"val acc {val_acc:.3f}, {history[-1].seconds:.1f}s{mark}")
        # A fresh network for the export: parameters a training graph has touched can be left in
        # MKL-DNN's layout, which MXNet refuses to save.
        net = build_network(config.backbone, len(classes), pretrained=False, ctx=mx.cpu())
        net.load_parameters(str(best_params), ctx=mx.cpu())
    meta = ModelMeta(name=config.name or config.out.name, version=config.version,
                     frames=config.frames, crop=config.crop, resize=config.resize, mean=MEAN, std=STD)
    export_block(net, config.out, classes=classes, meta=meta)
    if meta.version is None:  # the weights' checksum: every copy (directory, tar, endpoint) agrees
        with open(config.out / PARAMS_FILE, "rb") as f:
            meta.version = hashlib.file_digest(f, "sha256").hexdigest()[:12]
        (config.out / META_FILE).write_text(meta.model_dump_json(indent=2, exclude_none=True) + "\n")
    seconds = time.perf_counter() - started
    echo(f"kept epoch {best[1]} (val acc {best[0]:.3f}); exported to {config.out} in {seconds:.0f}s")
    return TrainResult(config.out, classes, best[1], best[0], seconds, history)


def _train_epoch(mx, autograd, gluon, net, trainer, loss_fn, dataset, ctx, config, epoch):
    from tqdm import tqdm

    total_loss, correct, seen = 0.0, 0, 0
    steps = (len(dataset) + config.batch_size - 1) // config.batch_size
    bar = tqdm(dataset.batches(config.batch_size, shuffle=True), total=steps, unit="batch",
               desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False,
               file=sys.stderr)
    for data, label in bar:
        xs = gluon.utils.split_and_load(mx.nd.array(data), ctx, even_split=False)
        ys = gluon.utils.split_and_load(mx.nd.array(label), ctx, even_split=False)
        with autograd.record():
            outs = [net(x) for x in xs]
            losses = [loss_fn(o, y) for o, y in zip(outs, ys)]
        autograd.backward(losses)
        trainer.step(len(data))
        total_loss += sum(float(l.sum().asscalar()) for l in losses)
        correct += sum(int((o.argmax(axis=1) == y).sum().asscalar()) for o, y in zip(outs, ys))
        seen += len(data)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate_net(mx, net, dataset, ctx, batch_size: int) -> float:
    """Accuracy of `net` on a validation ClipDataset (the daemon's window and preprocessing)."""
    correct = 0
    for data, label in dataset.batches(batch_size, shuffle=False):
        pred = net(mx.nd.array(data, ctx=ctx)).argmax(axis=1).asnumpy()
        correct += int((pred == label).sum())
    return correct / max(len(dataset), 1)
