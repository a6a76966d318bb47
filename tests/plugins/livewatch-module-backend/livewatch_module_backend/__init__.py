"""A backend plugin for livewatch's ``i3d`` classifier, packaged the way a third party would:
the exported network run through MXNet's symbolic Module API (no Gluon, no oneDNN fusion), a
runtime path that shares no code with livewatch's own backends. Select it with
``backend = "mxnet-module"``."""
import numpy as np
from pydantic import Field

from livewatch.errors import ModelError
from livewatch.hookspecs import hookimpl
from livewatch.model.backend import Backend, BackendOptions
from livewatch.model.loaded_model import LoadedModel


class ModuleOptions(BackendOptions):
    epoch: int = Field(0, ge=0, description="which saved epoch of model-NNNN.params to load")


class ModuleModel(LoadedModel):
    def __init__(self, artifact, module):
        self.artifact, self.module, self.load_ms = artifact, module, 0.0

    def _forward(self, batch):
        import mxnet as mx

        if self.module.data_shapes[0].shape != batch.shape:
            self.module.reshape(data_shapes=[("data", batch.shape)])
        self.module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
        logits = self.module.get_outputs()[0].asnumpy()
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


class ModuleBackend(Backend):
    """MXNet's Module API on the CPU."""

    name = "mxnet-module"
    Options = ModuleOptions
    modules = ("mxnet",)
    install = "pip install mxnet"

    @classmethod
    def load(cls, artifact, options):
        import mxnet as mx

        if options.device == "gpu":
            raise ModelError("backend 'mxnet-module' runs on the CPU")
        try:
            symbol, args, auxs = mx.model.load_checkpoint(str(artifact.directory / "model"), options.epoch)
        except Exception as exc:
            raise ModelError(f"cannot load {artifact.directory}: {exc}") from exc
        meta = artifact.meta
        module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
        module.bind(data_shapes=[("data", (1, 3, meta.frames, meta.crop, meta.crop))], for_training=False)
        module.set_params(args, auxs)
        return ModuleModel(artifact, module)


@hookimpl
def register_backends(register):
    register(ModuleBackend)
