"""The torch backend (the GPU path): its options here, its behaviour in `torch_backend_checks.py`.

Those checks run with ``.venv/tools/torch``'s Python, which ``make setup`` makes: ``.venv`` plus a
CPU build of torch. torch cannot join ``.venv`` itself: GluonCV 0.10 refuses to be imported beside
torch 2 (``gluoncv/check.py``), and the tests and the model zoo import GluonCV. No GPU is needed.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from livewatch.model.artifacts import load_artifact
from livewatch.model.backends.onnxruntime import export_onnx
from livewatch.model.i3d_classifier import I3DClassifier
from livewatch.testing.models import with_input_shape

ROOT = Path(__file__).resolve().parent.parent
TORCH_PYTHON = Path(sys.prefix) / "tools" / "torch" / "bin" / "python"
CHECKS = ROOT / "tests" / "torch_backend_checks.py"


@pytest.mark.slow
def test_torch_backend_checks_pass_in_the_torch_venv(tiny_i3d_dir, tmp_path):
    if not TORCH_PYTHON.is_file():
        pytest.fail(f"{TORCH_PYTHON} is missing: `make setup` makes it (.venv plus torch)")
    model_dir = with_input_shape(tiny_i3d_dir, tmp_path / "model", frames=8, crop=112,
                                 resize=(171, 128), name="tiny-i3d")
    export_onnx(load_artifact(model_dir))  # beside the model: the checks read it, MXNet-free
    skeleton = tmp_path / "skeleton.onnx"  # the GPU check's weightless I3D-ResNet50, made here
    subprocess.run([sys.executable, "-m", "benchmarks.gpu_weights", str(tmp_path / "i3d-resnet50"),
                    str(skeleton)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    env = {**os.environ, "LIVEWATCH_TORCH_CHECK_MODEL": str(model_dir),
           "LIVEWATCH_TORCH_CHECK_SKELETON": str(skeleton),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [str(TORCH_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'checks'}", str(CHECKS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    expected = len(re.findall(r"^(?:async )?def test_", CHECKS.read_text(), re.MULTILINE))
    assert re.search(rf"\b{expected} passed", report) and not re.search(r"\b[1-9][0-9]* skipped", report), report


def test_without_torch_the_backend_says_what_to_install():
    # .venv has no torch (see above), as a machine without the gpu extra
    with pytest.raises(ValueError, match=r"backend 'torch' needs torch, onnx: pip install "
                       r"'livewatch\[gpu\]'"):
        I3DClassifier.Options(backend="torch")
