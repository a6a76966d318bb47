"""Backbones for fine-tuning: a GluonCV model-zoo network with its head replaced, or `small3d`.

- ``i3d_resnet50_v1`` (default): GluonCV's ``i3d_resnet50_v1_custom``, which starts from the
  Kinetics400 I3D-ResNet50 weights (downloaded once into ``~/.mxnet/models``) with a new head:
  the original sample's network.
- any other GluonCV action-recognition name (``r2plus1d_resnet18_kinetics400``,
  ``c3d_kinetics400``, ``slowfast_4x16_resnet50_kinetics400``, ...): the pretrained network with
  its ``fc`` replaced by one for the dataset's classes.
- ``small3d``: a four-layer 3D CNN (~0.3 M parameters) on frames and frame differences, for CPUs, tests and the offline demo; it
  trains from scratch in seconds. It is not from the zoo.

MXNet 1.9.1's CPU (MKL-DNN) backward pass of BatchNorm on 5-D input fails ("Check failed:
!is_view"), which stops every zoo 3D network from training on a CPU. `small3d` normalises on a
4-D view of the same data (the same statistics, per channel), which MKL-DNN handles; for zoo
networks on a CPU, `livewatch.training.train` turns MKL-DNN off (correct, ~20x slower).
"""
from __future__ import annotations

SMALL = "small3d"
DEFAULT_BACKBONE = "i3d_resnet50_v1"


def build_network(backbone: str, nclass: int, *, pretrained: bool = True, ctx=None):
    """The network to fine-tune, initialised (pretrained weights where asked), on `ctx`."""
    import mxnet as mx

    ctx = ctx or mx.cpu()
    if backbone == SMALL:
        net = Small3D(nclass)
        net.initialize(mx.init.Xavier(magnitude=2.0), ctx=ctx)
        return net
    from gluoncv.model_zoo import get_model

    if backbone == DEFAULT_BACKBONE:
        net = get_model("i3d_resnet50_v1_custom", nclass=nclass, pretrained=False,
                        pretrained_base=pretrained, use_kinetics_pretrain=pretrained, ctx=ctx)
        net.collect_params().reset_ctx(ctx)
        return net
    try:
        net = get_model(backbone, pretrained=pretrained, pretrained_base=False, ctx=ctx)
    except TypeError:  # a model that takes no pretrained_base
        net = get_model(backbone, pretrained=pretrained, ctx=ctx)
    if not pretrained:
        net.initialize(mx.init.Xavier(), ctx=ctx, force_reinit=True)
    replace_head(net, nclass, ctx)
    return net


def replace_head(net, nclass: int, ctx) -> None:
    """Swap the classifier layer (``fc``, or ``output``) for a new one with `nclass` outputs."""
    import mxnet as mx
    from mxnet.gluon import nn

    attr = next((a for a in ("fc", "output") if isinstance(getattr(net, a, None), nn.Dense)), None)
    if attr is None:
        raise ValueError(f"{type(net).__name__} has no `fc` or `output` Dense layer to replace")
    old = getattr(net, attr)
    in_units = old.weight.shape[1]
    with net.name_scope():
        head = nn.Dense(nclass, in_units=in_units, weight_initializer=mx.init.Normal(0.01))
    head.initialize(ctx=ctx)
    setattr(net, attr, head)


def _small3d_class():
    from mxnet.gluon import HybridBlock, nn

    class Norm(HybridBlock):
        """BatchNorm of a 5-D (N, C, T, H, W) tensor computed on its (N, C, T*H, W) view."""

        def __init__(self, channels: int, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.bn = nn.BatchNorm(in_channels=channels)

        def hybrid_forward(self, F, x):
            return F.reshape_like(self.bn(F.reshape(x, shape=(0, 0, -1, 0))), x)

    class Small3DNet(HybridBlock):
        """RGB and RGB-difference input (TSN's motion modality, computed in the graph), four
        Conv3D-BatchNorm-ReLU layers, global average pooling and a dense head."""

        def __init__(self, nclass: int, widths=(16, 32, 64, 128), dropout: float = 0.3, **kwargs):
            super().__init__(**kwargs)
            strides = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
            with self.name_scope():
                self.features = nn.HybridSequential(prefix="")
                for width, stride in zip(widths, strides):
                    self.features.add(nn.Conv3D(width, (3, 3, 3), strides=stride, padding=1,
                                                use_bias=False), Norm(width), nn.Activation("relu"))
                self.features.add(nn.GlobalAvgPool3D(), nn.Flatten(), nn.Dropout(dropout))
                self.fc = nn.Dense(nclass)

        def hybrid_forward(self, F, x):
            later = F.slice_axis(x, axis=2, begin=1, end=None)
            x = F.concat(later, later - F.slice_axis(x, axis=2, begin=0, end=-1), dim=1)
            return self.fc(self.features(x))

    return Small3DNet


def Small3D(nclass: int):  # noqa: N802 - a class made on first use, so MXNet loads lazily
    return _small3d_class()(nclass)
