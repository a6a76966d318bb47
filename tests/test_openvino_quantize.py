"""`livewatch model quantize`: NNCF int8 calibrated on the user's segments, checked before it is kept."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from livewatch.errors import ModelError
from livewatch.model.artifacts import load_artifact
from livewatch.model.backends import openvino_quantize
from livewatch.model.backends.openvino import INT8_META, OpenVinoModel, int8_path
from livewatch.model.backends.mxnet import MXNetModel
from livewatch.testing.media import write_video
from livewatch.testing.models import with_peaky_head

LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


@pytest.fixture(scope="module")
def peaky_dir(tiny_i3d_dir, tmp_path_factory) -> Path:
    return with_peaky_head(tiny_i3d_dir, tmp_path_factory.mktemp("q") / "tiny-peaky")


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> Path:
    """Six short segments from different points of a moving picture, two sizes."""
    folder = tmp_path_factory.mktemp("calibration")
    (folder / "cam").mkdir()
    for i in range(6):
        write_video(folder / "cam" / f"seg{i}.ts", seconds=1.2, fps=15,
                    size=(320, 180) if i % 2 else (480, 270), first_frame=i * 37)
    return folder


@pytest.mark.slow  # NNCF runs in its own venv, as a subprocess (~1 minute on 2 cores)
def test_quantize_writes_an_int8_model_with_its_agreement_figures(peaky_dir, segments):
    here = peaky_dir.parent  # relative paths, as a user in the model's folder types them
    result = subprocess.run(
        [LIVEWATCH, "model", "quantize", os.path.relpath(peaky_dir, here), "--calibrate",
         os.path.relpath(segments, here), "--windows", "24", "--min-agreement", "0.5"],
        capture_output=True, text=True, timeout=600, cwd=here)
    assert result.returncode == 0, result.stderr
    artifact = load_artifact(peaky_dir)
    path = int8_path(artifact)
    assert path == peaky_dir / "model-int8.xml" and path.with_suffix(".bin").is_file()
    assert "FakeQuantize" in path.read_text() or "i8" in path.read_text()  # really quantized
    figures = json.loads(path.with_name(INT8_META).read_text())
    assert figures["calibration_windows"] + figures["held_out_windows"] == 24
    assert figures["held_out_windows"] == 8  # 2 of the 6 segments, 4 windows each
    assert 0.5 <= figures["top1_agreement"] <= 1.0 and figures["min_agreement"] == 0.5
    assert f"{figures['top1_agreement']:.1%}" in result.stdout

    int8 = OpenVinoModel.load(artifact, precision="int8")
    assert int8.runtime["precision"] == "int8"
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 112, 112)).astype(np.float32)
    fp32 = MXNetModel.load(artifact, device="cpu").predict(x)
    assert np.abs(int8.predict(x) - fp32).max() < 0.2  # int8, yet the same network


def test_a_model_below_the_threshold_is_refused_and_nothing_is_written(peaky_dir, segments,
                                                                       monkeypatch, tmp_path):
    model = with_peaky_head(peaky_dir, tmp_path / "model", scale=1.0)  # its own folder

    def fake_nncf(python, artifact, onnx_path, windows, out):
        assert np.load(windows).shape[1:] == (8, 112, 112, 3)  # cropped uint8 windows
        out.write_text("<net/>")
        out.with_suffix(".bin").write_bytes(b"")
        return {"nncf": "test", "openvino": "test"}

    checked = []
    monkeypatch.setenv("LIVEWATCH_NNCF_PYTHON", "python-with-nncf")
    monkeypatch.setattr(openvino_quantize, "_run_nncf", fake_nncf)
    monkeypatch.setattr(openvino_quantize, "export_onnx", lambda artifact: artifact.directory / "x.onnx")
    monkeypatch.setattr(openvino_quantize, "_check", lambda artifact, xml, videos, n: checked.append(
        (xml.is_file(), len(videos), n)) or {"held_out_windows": 8, "top1_agreement": 0.875,
                                             "max_abs_diff": 0.3, "mean_abs_diff": 0.1})
    with pytest.raises(ModelError, match=r"refused.*87\.5% of 8 held-out windows.*98\.0%"):
        openvino_quantize.quantize(str(model), segments, windows=24, min_agreement=0.98)
    assert checked == [(True, 2, 4)]  # checked on the held-out segments before anything is kept
    assert sorted(p.name for p in model.iterdir()) == [
        "classes.txt", "model-0000.params", "model-symbol.json", "model.json"]


def test_calibration_needs_segments(peaky_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEWATCH_NNCF_PYTHON", "python-with-nncf")
    (tmp_path / "notes.txt").write_text("no video here")
    with pytest.raises(ModelError, match="found 0 video files"):
        openvino_quantize.quantize(str(peaky_dir), tmp_path)
