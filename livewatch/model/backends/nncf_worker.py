"""NNCF post-training quantization of an ONNX model, run in NNCF's own venv (``.venv/tools/nncf``).

    python nncf_worker.py MODEL.onnx WINDOWS.npy OUT.xml --mean M M M --std S S S

``WINDOWS.npy``: (N, T, crop, crop, 3) uint8 RGB windows, already resized and cropped as the
classifier crops them; each is normalised here into the model's (1, 3, T, crop, crop) input.
Imports only numpy, OpenVINO and NNCF (not livewatch: that venv cannot hold MXNet's numpy<1.24),
so it is run by path, as a script.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("windows")
    parser.add_argument("out")
    parser.add_argument("--mean", type=float, nargs=3, required=True)
    parser.add_argument("--std", type=float, nargs=3, required=True)
    args = parser.parse_args(argv)

    import nncf
    import numpy as np
    import openvino as ov

    windows = np.load(args.windows, mmap_mode="r")
    mean = np.array(args.mean, np.float32).reshape(3, 1, 1, 1)
    std = np.array(args.std, np.float32).reshape(3, 1, 1, 1)

    def transform(window):  # (T, H, W, 3) uint8 -> (1, 3, T, H, W) float32, as `to_tensor`
        x = np.asarray(window, np.float32).transpose(3, 0, 1, 2) / 255.0
        return ((x - mean) / std)[None].astype(np.float32)

    model = ov.Core().read_model(args.model)
    quantized = nncf.quantize(model, nncf.Dataset(list(range(len(windows))),
                                                  lambda i: transform(windows[i])),
                              subset_size=len(windows))
    ov.save_model(quantized, args.out)  # weights compressed: int8 where quantized
    print(json.dumps({"nncf": nncf.__version__, "openvino": ov.__version__.split("-")[0],
                      "calibration_windows": len(windows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
