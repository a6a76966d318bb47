"""What the machine can do: float32 matrix-multiply GFLOP/s, the model's FLOPs, the load.

`matmul_gflops` and `model_gflop` import numpy/MXNet; call them from a worker process.
"""
from __future__ import annotations

import json
import os
import platform
import time


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    isa = [x for x in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {x}" in flags]
    return {"model": model, "cores": len(os.sched_getaffinity(0)), "isa": isa,
            "python": platform.python_version()}


def matmul_gflops(libraries: list[str], n: int = 2048, seconds: float = 1.0) -> dict:
    """Best float32 GEMM rate (n x n times n x n) with each of `libraries` available here:
    ``numpy`` (its OpenBLAS), ``mxnet`` (``nd.dot``, OpenBLAS; ``FullyConnected``, oneDNN),
    ``onnxruntime`` (a one-node MatMul graph, MLAS), ``openvino`` (a MatMul chain on OpenVINO's CPU
    plugin in f32, and in bf16 where the CPU computes bf16 natively: the ceiling of the bf16 path).

    The best (not the median) of each: the question is what the cores can do at all.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n**3

    def best(fn) -> float:
        fn()  # warm-up
        rates, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(rates) < 3:
            t = time.perf_counter()
            fn()
            rates.append(flop / (time.perf_counter() - t) / 1e9)
        return round(max(rates), 1)

    out: dict = {}
    if "numpy" in libraries:
        out["numpy"] = best(lambda: a @ b)
    if "mxnet" in libraries:
        import mxnet as mx

        xa, xb = mx.nd.array(a), mx.nd.array(b)
        out["mxnet_dot"] = best(lambda: mx.nd.dot(xa, xb).wait_to_read())
        out["mxnet_onednn"] = best(lambda: mx.nd.FullyConnected(
            xa, xb, no_bias=True, num_hidden=n).wait_to_read())
    if "onnxruntime" in libraries:
        out["onnxruntime"] = best(_ort_matmul(a, b))
    if "openvino" in libraries:
        from livewatch.model.backends.openvino import bf16_unit

        for precision in ("f32", "bf16") if bf16_unit() else ("f32",):
            out[f"openvino_{precision}"] = _ov_matmul_rate(a, b, precision, best)
    return out


def _ov_matmul_rate(a, b, precision: str, best) -> float:
    """GEMM GFLOP/s on OpenVINO in `precision`: four chained n x n products in one inference,
    so that the f32 -> bf16 conversion of the input is a small part of the work."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    n, chain = a.shape[0], 4
    x = ops.parameter([n, n], np.float32)
    y = x
    for k in range(chain):
        y = ops.matmul(y, ops.constant(b / np.float32(n) if k else b), False, False)
    compiled = ov.Core().compile_model(ov.Model([y], [x]), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(len(os.sched_getaffinity(0)))})
    request = compiled.create_infer_request()
    return round(best(lambda: request.infer({0: a})) * chain, 1)


def _ort_matmul(a, b):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = a.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the backend
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {"a": a, "b": b}
    return lambda: session.run(None, feeds)


def model_gflop(symbol_file: str, shape: tuple[int, ...]) -> float:
    """FLOPs of one forward pass (multiply and add counted as 2) of the convolutions and
    fully-connected layers, which are all but a fraction of a percent of an I3D's work."""
    import mxnet as mx

    sym = mx.sym.load(symbol_file)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=shape)
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    arg_shapes = dict(zip(sym.list_arguments(), sym.infer_shape(data=shape)[0]))
    nodes = json.loads(sym.tojson())["nodes"]
    total = 0.0
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        out = shapes[node["name"] + "_output"]
        weight = next(arg_shapes[nodes[i[0]]["name"]] for i in node["inputs"]
                      if nodes[i[0]]["name"].endswith("_weight"))
        macs_per_output = 1
        for d in weight[1:]:  # (out_ch, in_ch / groups, *kernel) or (units, in_features)
            macs_per_output *= d
        elements = 1
        for d in out:
            elements *= d
        total += 2.0 * elements * macs_per_output
    return total / 1e9

