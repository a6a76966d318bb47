"""GluonCV model-zoo I3D models, exported once to the artifact format so they load like any other.

The weights are fetched by GluonCV itself (``get_model(name, pretrained=True, root=...)``), so
``MXNET_GLUON_REPO`` (a mirror) and ``MXNET_HOME`` (its own weights cache) work as GluonCV
documents them. The exported model lands in ``<cache>/zoo/<name>``; later starts load it from
there without importing GluonCV's downloader at all.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from pathlib import Path

from livewatch.errors import ModelError

from .artifacts import (
    ModelArtifact,
    ModelMeta,
    Resolver,
    export_block,
    load_artifact,
    looks_like_path,
    register_resolver,
)

#: The zoo family this classifier runs: I3D over ResNet, 32 frames at 224x224.
ZOO_NAME = re.compile(r"^i3d_(nl\d+_)?resnet\d+_v1_\w+$")


#: The input each zoo model was trained on, (frames, step) = GluonCV's (new_length, new_step), as
#: GluonCV's model-zoo tables give its "Clip Length" ("32 (64/2)": 32 frames over 64, every 2nd):
#: docs/model_zoo/csv_tables/Action_Recognitions/{UCF101,HMDB51,Kinetics400,Something-Something-V2}.csv
ZOO_INPUT = {
    "i3d_resnet50_v1_ucf101": (32, 2),
    "i3d_resnet50_v1_hmdb51": (32, 2),
    "i3d_resnet50_v1_kinetics400": (32, 2),
    "i3d_resnet101_v1_kinetics400": (32, 2),
    "i3d_nl5_resnet50_v1_kinetics400": (32, 2),
    "i3d_nl10_resnet50_v1_kinetics400": (32, 2),
    "i3d_nl5_resnet101_v1_kinetics400": (32, 2),
    "i3d_nl10_resnet101_v1_kinetics400": (32, 2),
    "i3d_resnet50_v1_sthsthv2": (16, 2),
}
DEFAULT_ZOO_INPUT = (32, 2)  # every I3D-ResNet of the tables but one is 32 (64/2)

#: Seconds a stalled download may wait for the server (GluonCV's downloader sets no timeout).
DOWNLOAD_TIMEOUT = 60.0


@contextlib.contextmanager
def socket_timeout(seconds: float):
    """A timeout for the blocking sockets opened meanwhile (asyncio's own are non-blocking)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


@contextlib.contextmanager
def without_torch():
    """GluonCV 0.10 refuses to be imported where torch 2 can be (its ``__init__`` checks torch's
    version for its PyTorch half, which livewatch does not use), as with the ``gpu`` extra: hide
    torch while GluonCV is first imported."""
    if "gluoncv" in sys.modules:
        yield
        return
    saved = sys.modules.get("torch")
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved


def zoo_names() -> list[str]:
    """The GluonCV I3D-ResNet models with published weights (all take 32 frames at 224x224)."""
    with without_torch():
        from gluoncv.model_zoo.model_store import pretrained_model_list

    return sorted(n for n in pretrained_model_list() if ZOO_NAME.match(n))


def fetch_zoo_model(name: str, cache: Path) -> ModelArtifact:
    dest = cache / "zoo" / name
    if dest.is_dir():
        return load_artifact(dest)
    known = zoo_names()
    if name not in known:
        raise ModelError(
            f"model {name!r} is not a local directory, a model.tar.gz, an s3:// URI or a GluonCV "
            f"model-zoo name; the zoo's I3D models are: {', '.join(known)}"
        )
    with without_torch():
        from gluoncv.model_zoo import get_model
        from gluoncv.model_zoo.model_store import apache_repo_url, short_hash

    repo = os.environ.get("MXNET_GLUON_REPO", apache_repo_url)
    try:
        # GluonCV prints its progress to stdout, where the stdout sink writes JSON lines.
        with contextlib.redirect_stdout(sys.stderr), socket_timeout(DOWNLOAD_TIMEOUT):
            net = get_model(name, pretrained=True, root=str(cache / "gluoncv"))
    except Exception as exc:  # requests' errors, a truncated zip, GluonCV's hash check: all say why
        raise ModelError(
            f"could not download the weights of GluonCV model {name!r} from {repo} "
            f"({type(exc).__name__}: {exc}). Without network access, point the model option at a "
            f"local model directory or model.tar.gz instead (or set MXNET_GLUON_REPO to a mirror)"
        ) from exc
    frames, step = ZOO_INPUT.get(name, DEFAULT_ZOO_INPUT)
    meta = ModelMeta(name=name, version=short_hash(name), frames=frames, step=step)
    export_block(net, dest, classes=list(net.classes), meta=meta)
    return load_artifact(dest)


# Any bare name (not a path, not a URI) is a zoo name; a wrong one gets the list of right ones.
register_resolver(Resolver("gluoncv-zoo", handles=lambda spec: not looks_like_path(spec),
                           fetch=fetch_zoo_model))
