"""The ``mxnet`` backend: an exported MXNet model loaded as a Gluon SymbolBlock (CPU or GPU).

Threads: MXNet runs its operators on its own engine threads with an OpenMP pool whose size libgomp
and MXNet read from ``OMP_NUM_THREADS`` once, when libmxnet is loaded; changing it afterwards has
no effect. So the first `import_mxnet` sets it, unless the user did: to `threads`, else to the
cores this process may run on (``os.sched_getaffinity``). One pool as large as the cores suits a
small CPU: a second one (or more threads than cores) only adds contention.

Not thread-safe: call `load` and `predict` from one thread (the classifier's own executor).
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl
from livewatch.model.artifacts import ModelArtifact
from livewatch.model.backend import Backend, BackendOptions, Device
from livewatch.model.loaded_model import LoadedModel
from livewatch.model.mxnet_net import hybridize, load_block

log = logging.getLogger(__name__)


def import_mxnet(threads: int | None = None):
    """Import MXNet with a bounded OpenMP pool (see the module's docstring) and return it."""
    wanted = str(threads or os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    if "mxnet" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = wanted
    elif threads and os.environ.get("OMP_NUM_THREADS") != wanted:
        log.warning("MXNet was imported before threads=%s was set; it keeps OMP_NUM_THREADS=%s",
                    threads, os.environ.get("OMP_NUM_THREADS", "all cores"))
    import mxnet

    return mxnet


class MXNetModel(LoadedModel):
    """A loaded, warmed-up MXNet model: `predict` returns softmax probabilities per class."""

    backend_name = "mxnet"

    def __init__(self, artifact: ModelArtifact, net, ctx, load_ms: float):
        self.artifact = artifact
        self.net = net
        self.ctx = ctx
        self.load_ms = load_ms

    @classmethod
    def load(cls, artifact: ModelArtifact, *, device: Device = "auto",
             threads: int | None = None) -> "MXNetModel":
        """Import the symbol and params on `device` (``auto``: the first GPU if MXNet sees one),
        hybridize with static memory and run one warm-up forward pass at the model's input shape,
        so the first segment does not pay for graph building.

        On the CPU the graph also goes through MXNet's oneDNN subgraph pass, which fuses each
        convolution with its BatchNorm, ReLU and residual add: without it every BatchNorm runs
        on its own with a layout reorder before and after it, and the forward pass takes about
        twice as long (`make bench`: ``+decode`` against ``livewatch``). Outputs agree to float32
        rounding.
        """
        mx = import_mxnet(threads)
        started = time.perf_counter()
        ctx = _context(mx, device)
        try:
            net = load_block(mx, artifact.directory, ctx)
        except (mx.base.MXNetError, ValueError, AssertionError) as exc:
            raise ModelError(f"cannot load the model in {str(artifact.directory)!r}: {exc}") from exc
        hybridize(mx, net, ctx)
        model = cls(artifact, net, ctx, load_ms=0.0)
        meta = artifact.meta
        probs = model.predict(np.zeros((1, 3, meta.frames, meta.crop, meta.crop), np.float32))
        if probs.shape[1] != len(artifact.classes):
            raise ModelError(
                f"{artifact.directory / 'classes.txt'} lists {len(artifact.classes)} labels but "
                f"the network outputs {probs.shape[1]} scores"
            )
        model.load_ms = (time.perf_counter() - started) * 1000.0
        log.info("model %s %s loaded on %s in %.0f ms (%d classes, %d frames at %dx%d)",
                 artifact.name, artifact.version, ctx, model.load_ms, len(artifact.classes),
                 meta.frames, meta.crop, meta.crop)
        return model

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import mxnet as mx  # already loaded by `load`; not at the top, see import_mxnet

        try:
            logits = self.net(mx.nd.array(batch, ctx=self.ctx, dtype=np.float32))
            return mx.nd.softmax(logits, axis=-1).asnumpy()
        except mx.base.MXNetError as exc:
            raise ModelError(f"model {self.artifact.name} failed on a {batch.shape} batch: {exc}") from exc


def _context(mx, device: Device):
    gpus = mx.context.num_gpus()
    if device == "gpu" and gpus == 0:
        raise ModelError("device 'gpu' was requested but MXNet sees no GPU (a CPU-only mxnet "
                         "build, or no visible CUDA device); use device 'auto' or 'cpu'")
    return mx.gpu(0) if device == "gpu" or (device == "auto" and gpus) else mx.cpu()


class MXNetBackend(Backend):
    """MXNet with oneDNN fusion on the CPU, or CUDA on a GPU (device "auto" picks a GPU it sees)."""

    name = "mxnet"
    summary = "MXNet: oneDNN-fused on the CPU, or a GPU (the default)"
    modules = ("mxnet",)
    install = "pip install mxnet (or mxnet-cu112 for a GPU)"

    @classmethod
    def load(cls, artifact: ModelArtifact, options: BackendOptions) -> MXNetModel:
        return MXNetModel.load(artifact, device=options.device, threads=options.threads)


@hookimpl
def register_backends(register):
    register(MXNetBackend)
