"""A backend from another distribution, installed as a user would, runs `livewatch classify`:
no core change, selected by name, its options validated by its own model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from livewatch.testing.distributions import env_with_site, install_distribution
from livewatch.testing.models import TEST_CLASSES

ROOT = Path(__file__).resolve().parents[1]
BACKEND_SRC = ROOT / "tests" / "plugins" / "livewatch-module-backend"
LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


@pytest.fixture(scope="session")
def module_backend_site(tmp_path_factory):
    return install_distribution(BACKEND_SRC, tmp_path_factory.mktemp("site"))


def classify(video, workdir: Path, env, backend: str, extra: str = ""):
    (workdir / "livewatch.toml").write_text(
        f'[classifier]\ntype = "i3d"\nmodel = "{workdir / "model"}"\nbackend = "{backend}"\n{extra}')
    return subprocess.run([LIVEWATCH, "classify", "--format", "json", str(video)], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_third_party_backend_classifies_without_core_changes(module_backend_site, tmp_path,
                                                               tiny_i3d_dir, video_factory):
    import shutil

    shutil.copytree(tiny_i3d_dir, tmp_path / "model")
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    env = env_with_site(module_backend_site)

    listed = subprocess.run([LIVEWATCH, "plugins"], env=env, capture_output=True, text=True,
                            check=True).stdout
    assert "backend    mxnet-module MXNet's Module API on the CPU" in listed
    assert "from module-backend (livewatch-module-backend 0.3.0)" in listed

    result = classify(video, tmp_path, env, "mxnet-module", "backend_options = {epoch = 0}\n")
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert theirs["label"] in TEST_CLASSES and len(theirs["frames"]) == 8
    assert theirs["model"]["name"] == "tiny-i3d"

    # The same network on the built-in backend: the same answer, to float32 rounding.
    ours = json.loads(classify(video, tmp_path, env, "mxnet").stdout)
    assert [t["label"] for t in theirs["top_k"]] == [t["label"] for t in ours["top_k"]]
    assert theirs["probability"] == pytest.approx(ours["probability"], abs=1e-5)

    bad = classify(video, tmp_path, env, "mxnet-module", "backend_options = {epoch = -1}\n")
    assert bad.returncode == 2
    assert "classifier: backend_options for backend 'mxnet-module': epoch: Input should be " \
           "greater than or equal to 0" in bad.stderr
    missing = classify(video, tmp_path, None, "mxnet-module")  # not installed here
    assert missing.returncode == 2
    assert ("unknown backend type 'mxnet-module'; installed backends: auto, mxnet, onnxruntime, "
            "openvino") in missing.stderr
