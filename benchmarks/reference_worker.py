"""The reference pipeline, as the original sample's SageMaker endpoint ran it (never imports PyAV).

GluonCV's `VideoClsCustom` reading the segment with decord (``new_width=340, new_height=256``,
test-time window: 32 consecutive frames from the middle), `VideoGroupValTransform` (center crop
224, normalise), then the endpoint's model: the exported symbol with a softmax on top, loaded as a
plain `SymbolBlock` and called as is (no ``hybridize``). `VideoClsCustom.__getitem__` is split
into its own steps only to time them; `check` shows the split gives what ``dataset[0]`` gives.

Stages: ``decode`` = VideoReader + window + get_batch; ``preprocess`` = the transform, stacking
to (1, 3, 32, 224, 224) and ``nd.array``; ``infer`` = the forward pass and the endpoint's
argmax/max read back; ``total`` = all of it, from the file name to the answer.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from benchmarks.worker import serve

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
NEW_LENGTH = 32
CROP = 224


class Reference:
    def __init__(self, model_dir: str):
        import mxnet as mx
        from gluoncv.data import VideoClsCustom
        from gluoncv.data.transforms import video

        self.mx = mx
        symbol = mx.sym.load(os.path.join(model_dir, "model-symbol.json"))
        outputs = mx.symbol.softmax(data=symbol, name="softmax_label")
        self.net = mx.gluon.SymbolBlock(outputs, mx.sym.var("data"))
        self.net.load_parameters(os.path.join(model_dir, "model-0000.params"), ctx=mx.cpu())
        self.transform = video.VideoGroupValTransform(size=CROP, mean=MEAN, std=STD)
        self._dataset_cls = VideoClsCustom
        self._tmp = tempfile.mkdtemp(prefix="livewatch-bench-ref-")

    def dataset(self, path: str):
        """A one-video dataset, as the endpoint built one per request."""
        setting = os.path.join(self._tmp, "video_list.txt")
        with open(setting, "w") as f:
            f.write(f"{path} 10 1\n")  # the sample's dummy duration and label
        return self._dataset_cls(
            root="/", setting=setting, train=False, test_mode=True, num_segments=1,
            new_length=NEW_LENGTH, new_step=1, new_width=340, new_height=256,
            video_loader=True, use_decord=True, transform=self.transform,
        )

    def segment(self, path: str) -> dict:
        mx = self.mx
        t0 = time.perf_counter()
        ds = self.dataset(path)
        directory, _, _ = ds.clips[0]
        reader = ds.decord.VideoReader(directory, width=ds.new_width, height=ds.new_height, num_threads=1)
        duration = len(reader)
        offsets, skips = ds._sample_test_indices(duration)
        frames = ds._video_TSN_decord_batch_loader(directory, reader, duration, offsets, skips)
        t1 = time.perf_counter()
        clip = np.stack(self.transform(frames), axis=0)
        clip = clip.reshape((-1, NEW_LENGTH, 3, CROP, CROP)).transpose(0, 2, 1, 3, 4)
        data = mx.nd.array(clip)
        t2 = time.perf_counter()
        probs = self.net(data.astype("float32", copy=False))
        predicted = int(mx.nd.argmax(probs, axis=1).asnumpy()[0])
        probability = float(mx.nd.max(probs, axis=1).asnumpy()[0])
        t3 = time.perf_counter()
        return {
            "decode_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3,
            "infer_ms": (t3 - t2) * 1e3, "total_ms": (t3 - t0) * 1e3,
            "label": predicted, "probability": probability, "frames": len(frames),
            "num_frames": duration,
        }

    def check(self, path: str) -> dict:
        """The split steps give the array `dataset[0]` gives."""
        ds = self.dataset(path)
        whole = ds[0][0].asnumpy()
        reader = ds.decord.VideoReader(path, width=340, height=256, num_threads=1)
        offsets, skips = ds._sample_test_indices(len(reader))
        frames = ds._video_TSN_decord_batch_loader(path, reader, len(reader), offsets, skips)
        clip = np.stack(self.transform(frames), axis=0)
        clip = clip.reshape((-1, NEW_LENGTH, 3, CROP, CROP)).transpose(0, 2, 1, 3, 4)
        return {"same_as_dataset": bool(np.array_equal(whole, clip.astype(whole.dtype)))}


def main() -> None:
    state: dict = {}

    def setup(model_dir: str) -> dict:
        state["ref"] = Reference(model_dir)
        return {"av_imported": "av" in sys.modules, "omp_threads": os.environ.get("OMP_NUM_THREADS")}

    serve({
        "setup": setup,
        "segment": lambda path: state["ref"].segment(path),
        "check": lambda path: state["ref"].check(path),
    })


if __name__ == "__main__":
    main()
