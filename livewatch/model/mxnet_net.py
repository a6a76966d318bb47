"""An exported network loaded into MXNet as a Gluon SymbolBlock, hybridized with oneDNN fusion on
the CPU: the one way the MXNet backend (`livewatch.model.backends.mxnet`) and the SageMaker serving code
(``model/code/inference.py``, which gets a copy of this module) load a model.

Python 3.8 and no import but the stdlib at the top: the caller passes its imported `mx`.
"""
from __future__ import annotations

import os

from .model_files import PARAMS_FILE, SYMBOL_FILE


def load_block(mx, directory: str | os.PathLike, ctx):
    """The network of a model directory, its parameters on `ctx` (in their saved dtype).
    Raises MXNetError, ValueError or AssertionError for files MXNet cannot read."""
    data = mx.sym.var("data", dtype="float32")
    net = mx.gluon.SymbolBlock(mx.sym.load(os.path.join(directory, SYMBOL_FILE)), data)
    net.collect_params().load(os.path.join(directory, PARAMS_FILE), ctx=ctx, cast_dtype=True,
                              dtype_source="saved")
    return net


def hybridize(mx, net, ctx) -> None:
    """Static memory and shapes, and on a CPU where this MXNet build has oneDNN its subgraph pass,
    which fuses each convolution with its BatchNorm, ReLU and residual add (about twice as fast a
    forward pass; outputs agree to float32 rounding)."""
    net.hybridize(static_alloc=True, static_shape=True, **fusion(mx, ctx))


def fusion(mx, ctx) -> dict:
    """``backend="MKLDNN"`` (oneDNN fusion) on a CPU where this MXNet build has oneDNN."""
    if ctx.device_type == "cpu" and mx.runtime.Features().is_enabled("MKLDNN"):
        return {"backend": "MKLDNN"}
    return {}
