#!/usr/bin/env bash
# The GPU check (issue 17; see benchmarks/gpu_check.py), for a GPU machine whose python3 has torch,
# onnx, onnxruntime and numpy but no PyAV, pydantic, m3u8 or watchfiles: cp312 wheels in .whl/.
#   benchmarks/gpu_check.sh --wheels   here, with network: download the wheels into .whl/
#   .venv/bin/python -m benchmarks.gpu_weights   here too: the weightless I3D graph it builds from
#   benchmarks/gpu_check.sh [ARGS]     there: install .whl/ into /tmp/site if needed, run the check
# The device call (this workplace's `run`): carry [".whl", "benchmarks/i3d_resnet50.skeleton.onnx"],
# timeout_s 420, command:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; benchmarks/gpu_check.sh --out $OUT 2>&1 | tee $OUT/gpu_check.log
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="av==18.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 m3u8==6.0.0 watchfiles==1.3.0"
if [ "${1:-}" = "--wheels" ]; then
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl $WHEELS
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import av, pydantic, m3u8, watchfiles" 2>/dev/null; then
    [ -d .whl ] || { echo "PyAV or pydantic missing and no .whl/ folder: run $0 --wheels here first" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
exec env PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check "$@"
