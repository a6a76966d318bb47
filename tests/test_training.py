"""The model's side: data prep, training, packaging, info, serving code and the offline demo.

One small model is trained per session (the demo's: camera motions, `small3d`, 8 frames at
64x64, about a minute on two cores) and shared by the tests that need a trained model.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import livewatch
from livewatch.events import EventSettings
from livewatch.training.commands import register_commands
from livewatch.training.evaluate import accuracy_check, classify_videos
from livewatch.training.synthetic import MOTIONS, write_motion_dataset

REPO = Path(livewatch.__file__).resolve().parents[1]
SHAPE = dict(frames=8, crop=64, resize=(86, 64))


def cli() -> click.Group:
    group = click.Group()
    register_commands(group)
    return group


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(TrainResult, model.tar.gz, log) for the demo's model: a small3d network trained by the
    demo's own steps 1-2 (`demo.build_model`: generated camera-motion set, prep, train, package).
    The one trained model of the session; every test that needs a trained model shares it."""
    from livewatch.training.demo import build_model

    log: list[str] = []
    archive, result = build_model(tmp_path_factory.mktemp("training"), per_class=40, epochs=30,
                                  seed=1, echo=log.append, progress=False)
    return result, archive, "\n".join(log)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """A few one-second videos of two motions with `model prep`'s files: for command tests."""
    from livewatch.training.prep import prepare

    root = tmp_path_factory.mktemp("tiny-set")
    write_motion_dataset(root, per_class=4, seconds=1.0, size=(64, 48), motions=("pan_left", "still"))
    prepare(root, val_fraction=0.25)
    return root


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> list[tuple[Path, str]]:
    """Live-like MPEG-TS segments with pictures the model never saw (another seed)."""
    return write_motion_dataset(tmp_path_factory.mktemp("held-out"), per_class=10, seconds=3.0,
                                seed=99, ext=".ts")


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_training_reaches_90_percent_validation_accuracy(trained):
    result, archive, log = trained
    assert len(result.history) == 30
    assert "epoch 30/30: loss" in log and "val acc" in log and "(best)" in log
    assert f"kept epoch {result.best_epoch} (val acc {result.best_val_acc:.3f})" in log
    assert f"packaged {archive}" in log
    assert all(e.loss > 0 for e in result.history)
    assert result.best_val_acc >= 0.9, [round(e.val_acc, 2) for e in result.history]
    assert result.history[result.best_epoch - 1].val_acc == result.best_val_acc  # best epoch kept
    meta = json.loads((result.model_dir / "model.json").read_text())
    assert (meta["frames"], meta["crop"], tuple(meta["resize"])) == (8, 64, (86, 64))
    params = (result.model_dir / "model-0000.params").read_bytes()
    assert meta["version"] == hashlib.sha256(params).hexdigest()[:12]  # named by its weights
    assert (result.model_dir / "classes.txt").read_text().split() == sorted(MOTIONS)


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_package_classifies_held_out_segments_and_the_check_can_fail(trained, held_out):
    _, archive, _ = trained
    detections = classify_videos(archive, [p for p, _ in held_out])
    labels = [label for _, label in held_out]
    right = accuracy_check(detections, labels, threshold=0.9)
    assert right.passed, str(right)
    assert all(d.model.name == "camera-motion" for d in detections)

    shuffled = labels[:]
    random.Random(0).shuffle(shuffled)
    wrong = accuracy_check(detections, shuffled, threshold=0.9)
    assert not wrong.passed, str(wrong)  # the same check, with the labels shuffled, fails
    assert wrong.accuracy < 0.5


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_package_layout_ships_the_daemons_preprocessing(trained):
    _, archive, _ = trained
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {"model-symbol.json", "model-0000.params", "classes.txt", "model.json",
                "code/inference.py", "code/requirements.txt"} <= names
        for rel in ("model/video.py", "model/packets.py", "model/windows.py", "model/preprocess.py",
                    "model/sampling.py", "errors.py"):
            shipped = tar.extractfile(f"code/livewatch/{rel}").read()
            assert shipped == (REPO / "livewatch" / rel).read_bytes(), rel


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_model_info_prints_classes_input_shape_and_checksum(trained):
    _, archive, _ = trained
    result = CliRunner().invoke(cli(), ["model", "info", str(archive)])
    assert result.exit_code == 0, result.output
    assert "pan_left, pan_right, still, zoom_in" in result.output
    assert "(1, 3, 8, 64, 64)" in result.output
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in result.output
    as_json = json.loads(CliRunner().invoke(cli(), ["model", "info", str(archive), "--json"]).output)
    assert as_json["input_shape"] == [1, 3, 8, 64, 64]


def test_prep_reports_a_corrupt_video_and_goes_on(tmp_path):
    root = tmp_path / "videos"
    write_motion_dataset(root, per_class=3, seconds=1.0, motions=("pan_left", "still"))
    (root / "still" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    truncated = (root / "pan_left" / "pan_left_000.mp4").read_bytes()[:300]
    (root / "pan_left" / "cut.mp4").write_bytes(truncated)
    result = CliRunner().invoke(cli(), ["model", "prep", str(root), "--out", str(tmp_path / "set"),
                                        "--val-fraction", "0.34"])
    assert result.exit_code == 0, result.output
    assert "2 unreadable video(s) left out" in result.output
    assert "still/broken.mp4" in result.output and "pan_left/cut.mp4" in result.output
    rows = [line.split() for line in (tmp_path / "set" / "train.txt").read_text().splitlines()]
    rows += [line.split() for line in (tmp_path / "set" / "val.txt").read_text().splitlines()]
    assert len(rows) == 6 and all(int(n) == 15 for _, n, _ in rows)
    assert not any("broken" in p or "cut" in p for p, _, _ in rows)
    assert (tmp_path / "set" / "classes.txt").read_text().split() == ["pan_left", "still"]


def test_prep_honours_ucf101_split_files(tmp_path):
    root = tmp_path / "UCF"
    write_motion_dataset(root, per_class=2, seconds=1.0, motions=("pan_left", "still"))
    (tmp_path / "classInd.txt").write_text("1 still\n2 pan_left\n")
    (tmp_path / "trainlist01.txt").write_text("still/still_000.mp4 1\npan_left/pan_left_000.mp4 2\n")
    (tmp_path / "testlist01.txt").write_text("still/still_001.mp4\npan_left/pan_left_001.mp4\n")
    from livewatch.training.prep import prepare

    result = prepare(root, tmp_path / "out", train_list=tmp_path / "trainlist01.txt",
                     test_list=tmp_path / "testlist01.txt", class_index=tmp_path / "classInd.txt")
    assert result.classes == ["still", "pan_left"]
    assert [(p, y) for p, _, y in result.train] == [("still/still_000.mp4", 0), ("pan_left/pan_left_000.mp4", 1)]
    assert [p for p, _, _ in result.val] == ["still/still_001.mp4", "pan_left/pan_left_001.mp4"]


def test_serving_code_stays_python_3_8_compatible():
    """SageMaker's MXNet 1.9 serving images run Python 3.8: the shipped modules must parse there,
    and annotations (``list[int]``, ``X | None``) must not be evaluated at import."""
    import ast

    from livewatch.training.package import SHARED_MODULES

    files = [REPO / "model" / "code" / "inference.py"] + [REPO / "livewatch" / rel for rel in SHARED_MODULES]
    for path in files:
        tree = ast.parse(path.read_text(), feature_version=(3, 8))
        annotated = any(isinstance(node, ast.arg) and node.annotation is not None
                        or isinstance(node, (ast.FunctionDef, ast.AnnAssign))
                        and getattr(node, "returns", getattr(node, "annotation", None)) is not None
                        for node in ast.walk(tree))
        future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                     and any(a.name == "annotations" for a in node.names) for node in tree.body)
        assert future or not annotated, f"{path}: add `from __future__ import annotations`"


def test_serving_code_imports_only_what_the_container_has():
    """The container has the stdlib, numpy, MXNet, boto3, PyAV and Pillow (requirements.txt), and the
    livewatch modules copied beside inference.py: no pydantic, no other livewatch module."""
    import ast

    from livewatch.training.package import SHARED_MODULES

    shipped = {"livewatch", "livewatch.model"} | {
        "livewatch." + rel.removesuffix(".py").replace("/", ".") for rel in SHARED_MODULES}
    container = {"numpy", "mxnet", "boto3", "botocore", "av", "PIL", "sagemaker_inference"}
    files = [REPO / "model" / "code" / "inference.py"] + [REPO / "livewatch" / rel for rel in SHARED_MODULES]
    for path in files:
        inside = path.is_relative_to(REPO / "livewatch")
        package = ".".join(("livewatch", *path.relative_to(REPO / "livewatch").parent.parts)) if inside else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if node.level:  # relative: only inside the shipped livewatch package
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    names = [f"{base}.{node.module}" if node.module else base]
                else:
                    names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert (name in shipped or top in container or top in sys.stdlib_module_names), \
                    f"{path.name} imports {name}, which the serving container does not have"


def _load_serving_module(code_dir: Path):
    """model/code/inference.py as the container imports it: from its own code/ folder."""
    for name in [m for m in sys.modules if m == "livewatch_serving"]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location("livewatch_serving", code_dir / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_serving_code_answers_as_the_in_process_classifier(trained, held_out, aws_env, tmp_path):
    import boto3

    _, archive, _ = trained
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    serving = _load_serving_module(tmp_path / "model" / "code")
    model = serving.model_fn(str(tmp_path / "model"))
    segment, _ = held_out[1]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="live")
    s3.put_object(Bucket="live", Key="cam1/seg.ts", Body=segment.read_bytes())
    expected = classify_videos(archive, [segment])[0]

    body, content_type = serving.transform_fn(
        model, json.dumps({"S3_VIDEO_PATH": "s3://live/cam1/seg.ts", "MODEL_MAX_FRAMES": 32}),
        "application/json", "application/json")
    answer = json.loads(body)
    assert content_type == "application/json"
    assert answer["label"] == expected.label
    assert answer["probability"] == pytest.approx(expected.probability, abs=1e-5)
    assert answer["frames"] == expected.frames
    assert [(w["frames"], w["label"]) for w in answer["windows"]] == [
        (w.frames, w.label) for w in expected.windows]  # "cover" on both sides
    assert len(answer["windows"]) > 1 and answer["concealed_frames"] == 0
    assert answer["model"] == {"name": "camera-motion", "version": expected.model.version}
    assert "MODEL_MAX_FRAMES=32 ignored" in answer["note"]

    versioned = json.loads(serving.transform_fn(
        model, json.dumps({"version": 1, "uri": "s3://live/cam1/seg.ts", "top_k": 2}))[0])
    assert versioned["label"] == expected.label and len(versioned["top_k"]) == 2
    center = json.loads(serving.transform_fn(model, json.dumps(
        {"version": 1, "uri": "s3://live/cam1/seg.ts", "windows": "center"}))[0])
    assert len(center["windows"]) == 1
    # The request's and the segment's own defects are answered 4xx (the container's toolkit sends
    # the status): never retried. A model failing on valid input stays a 500 (tried again later).
    with pytest.raises(Exception, match="windows") as raised:
        serving.transform_fn(model, json.dumps({"version": 1, "uri": "s3://live/cam1/seg.ts",
                                                "windows": 0}))
    assert _refused(raised.value) == (400, "ValueError")
    with pytest.raises(Exception, match="S3_VIDEO_PATH") as raised:
        serving.transform_fn(model, json.dumps({"video": "x"}))
    assert _refused(raised.value) == (400, "ValueError")
    with pytest.raises(Exception, match="top_k") as raised:
        serving.transform_fn(model, json.dumps({"version": 1, "uri": "s3://live/cam1/seg.ts", "top_k": 0}))
    assert _refused(raised.value) == (400, "ValueError")
    with pytest.raises(Exception, match="NoSuchKey") as raised:
        serving.transform_fn(model, json.dumps({"S3_VIDEO_PATH": "s3://live/cam1/gone.ts"}))
    assert _refused(raised.value) == (404, "NoSuchKey")
    s3.put_object(Bucket="live", Key="cam1/notes.ts", Body=b"not a video at all" * 100)
    with pytest.raises(Exception, match="not a video|could not|unsupported") as raised:
        serving.transform_fn(model, json.dumps({"S3_VIDEO_PATH": "s3://live/cam1/notes.ts"}))
    assert _refused(raised.value) == (422, "SegmentError"), raised.value


def _refused(exc: BaseException) -> tuple[int, str]:
    """The status the serving toolkit answers `exc` with, and the error it stands for."""
    from sagemaker_inference.errors import GenericInferenceToolkitError

    assert isinstance(exc, GenericInferenceToolkitError), exc
    return exc.status_code, type(exc.__cause__).__name__


@pytest.mark.slow
def test_demo_plays_a_scripted_live_stream_and_detects_it(trained, tmp_path):
    """`livewatch demo` with the session's model (the demo's own steps 1-2 made it, see `trained`):
    a live stream played in real time, the daemon's detections against the script, the accuracy."""
    _, archive, _ = trained
    result = CliRunner().invoke(cli(), ["demo", "--model", str(archive), "--segments", "6",
                                        "--workdir", str(tmp_path), "--min-accuracy", "0.8"])
    assert result.exit_code == 0, result.output
    out = result.output
    timeline = [line for line in out.splitlines() if " script " in line and " detected " in line]
    assert len(timeline) == 6, out  # one line per live segment, as it is detected
    table = out[out.index("segment  scripted"):]
    assert len([line for line in table.splitlines() if line[:7].strip().isdigit()]) == 6, out
    correct = int(out.split("accuracy: ")[1].split("/")[0])
    assert correct >= 5, out
    assert (tmp_path / "detections.sqlite").is_file()  # the local sink stored them
    assert len(list((tmp_path / "live" / "cam1").glob("*.ts"))) == 6


@pytest.mark.slow
def test_a_segment_that_changes_activity_midway_gets_windows_labelled_accordingly(trained, tmp_path):
    """`livewatch run --once` as a user runs it, on a live folder whose 4 s segment shows one
    trained motion, then another: the windows in each half carry that half's motion, and
    `livewatch detections --windows` lists them with absolute times."""
    import subprocess
    import sys

    from livewatch.training.demo import DEMO_VIDEO
    from livewatch.training.live import ScriptedStream, motion_at

    _, archive, _ = trained
    live, db = tmp_path / "live", tmp_path / "d.db"
    stream = ScriptedStream(live / "cam1", ["pan_left>pan_right", "pan_right>pan_left"], seconds=4.0,
                            seed=2024, **DEMO_VIDEO)
    segments = [stream.write_segment(), stream.write_segment()]
    (tmp_path / "livewatch.toml").write_text(
        f'[classifier]\ntype = "i3d"\nmodel = "{archive}"\ncache_dir = "{tmp_path / "cache"}"\n\n'
        f'[[sinks]]\ntype = "local"\npath = "{db}"\n')
    livewatch = str(Path(sys.executable).with_name("livewatch"))
    run = subprocess.run([livewatch, "run", "--folder", str(live), "--once"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([livewatch, "detections", "--windows", "--format", "json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [json.loads(line) for line in listed.splitlines()]
    assert {r["uri"] for r in rows} == {str(p) for p in segments}
    assert len(rows) == 2 * 8  # 60 frames each, 8-frame windows: "cover" makes 8
    right = 0
    for row in rows:
        n = segments.index(Path(row["uri"]))
        want = motion_at(stream.script[n], (row["first_frame"] + row["last_frame"]) // 2, stream.frames)
        right += row["label"] == want
        assert row["start"] is not None and row["start"] < row["end"]  # absolute (program date-time)
    assert right >= 13, rows  # of 16 windows (the two that straddle each change may go either way)


def test_model_train_command_reports_epochs_with_a_progress_bar_and_exports(tiny_set, tmp_path):
    """As a user runs it, in a process of its own (MXNet training does not share this one's
    engine with the many models the suite has loaded in other threads)."""
    out = tmp_path / "model"
    result = subprocess.run([
        str(Path(sys.executable).with_name("livewatch")),
        "model", "train", str(tiny_set), "--out", str(out), "--backbone", "small3d",
        "--no-pretrained", "--epochs", "2", "--frames", "4", "--step", "2", "--crop", "32",
        "--resize", "43x32", "--batch-size", "2", "--optimizer", "adam", "--lr", "0.003",
        "--name", "tiny"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "small3d (from scratch) on 6 clips, validating on 2" in result.stdout
    for epoch in (1, 2):
        assert f"epoch {epoch}/2: loss " in result.stdout and "val acc" in result.stdout
    assert "kept epoch" in result.stdout
    assert "epoch 1/2" in result.stderr and "batch" in result.stderr  # tqdm's bar
    assert {p.name for p in out.iterdir()} == {"model-symbol.json", "model-0000.params",
                                               "classes.txt", "model.json"}
    assert (out / "classes.txt").read_text().split() == ["pan_left", "still"]
    assert json.loads((out / "model.json").read_text())["step"] == 2  # what it trained with
    info = CliRunner().invoke(cli(), ["model", "info", str(out)])
    assert "stride:       every 2. frame: a window spans 8 frames" in info.output, info.output
    detections = classify_videos(out, [tiny_set / "still" / "still_000.mp4"])
    assert detections[0].ok and detections[0].label in ("pan_left", "still")
    assert detections[0].model.name == "tiny"

    again = CliRunner().invoke(cli(), ["model", "train", str(tiny_set), "--out", str(out),
                                       "--backbone", "small3d", "--no-pretrained"])
    assert again.exit_code != 0 and "not empty" in str(again.exception)  # refused before training
    assert "epoch" not in again.output


def test_the_default_backbone_is_kinetics_pretrained_i3d_and_scratch_downloads_nothing(monkeypatch):
    """The default starts from the zoo's Kinetics400 I3D-ResNet50 weights; --no-pretrained asks
    the zoo for none (nothing is downloaded here: the zoo is replaced by a recorder)."""
    import gluoncv.model_zoo

    from livewatch.training.commands import train_command
    from livewatch.training.nets import build_network

    defaults = {p.name: p.default for p in train_command.params}
    assert defaults["backbone"] == "i3d_resnet50_v1" and defaults["pretrained"] is True
    calls = []

    class Net:
        def collect_params(self):
            return self

        def reset_ctx(self, ctx):
            pass

    def get_model(name, **kwargs):
        calls.append((name, kwargs))
        return Net()

    monkeypatch.setattr(gluoncv.model_zoo, "get_model", get_model)
    build_network("i3d_resnet50_v1", 4, pretrained=True)
    build_network("i3d_resnet50_v1", 4, pretrained=False)
    (name, pretrained), (_, scratch) = calls
    assert name == "i3d_resnet50_v1_custom" and pretrained["nclass"] == 4
    assert pretrained["use_kinetics_pretrain"] and pretrained["pretrained_base"]
    assert not scratch["use_kinetics_pretrain"] and not scratch["pretrained_base"]
    assert not scratch["pretrained"]


@pytest.mark.slow
def test_the_zoo_i3d_fine_tunes_from_scratch_and_the_classifier_reads_it(tiny_set, tmp_path):
    """The real I3D-ResNet50 (not small3d) trains one epoch on the CPU and exports. In its own
    process: MKL-DNN must be off before MXNet starts (see livewatch.training.nets)."""
    out = tmp_path / "i3d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MXNET_")}
    proc = subprocess.run(
        [sys.executable, "-c", "from livewatch.cli import main; main()", "model", "train",
         str(tiny_set), "--out", str(out), "--no-pretrained", "--epochs", "1", "--frames", "8",
         "--crop", "64", "--resize", "86x64", "--batch-size", "3", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "training i3d_resnet50_v1 (from scratch)" in proc.stdout
    assert "epoch 1/1: loss" in proc.stdout
    detection = classify_videos(out, [tiny_set / "pan_left" / "pan_left_000.mp4"])[0]
    assert detection.ok and detection.label in ("pan_left", "still"), detection
    assert len(detection.top_k) == 2


def test_sagemaker_training_entry_point_honours_sm_channels_and_model_dir(tiny_set, tmp_path,
                                                                         monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("train_sagemaker", REPO / "model" / "train_sagemaker.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()  # SageMaker creates it, empty
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(tiny_set))
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("SM_CHANNEL_VAL", raising=False)
    monkeypatch.delenv("SM_CHANNEL_VALIDATION", raising=False)
    # Hyperparameters as SageMaker passes them: underscores, strings, and an S3 model_dir to ignore.
    assert entry.main(["--backbone", "small3d", "--pretrained", "False", "--epochs", "1",
                       "--frames", "4", "--crop", "32", "--resize", "43x32", "--batch_size", "4",
                       "--val_fraction", "0.25", "--model_dir", "s3://bucket/job/model"]) == 0
    names = {str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file()}
    assert {"model-symbol.json", "model-0000.params", "classes.txt", "code/inference.py",
            "code/requirements.txt", "code/livewatch/model/video.py"} <= names
    assert (model_dir / "classes.txt").read_text().split() == ["pan_left", "still"]
    detection = classify_videos(model_dir, [tiny_set / "still" / "still_001.mp4"])[0]
    assert detection.ok, detection

    # A validation channel: every one of its videos validates, none of train's is held out.
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(tiny_set))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "second"))
    entry.main(["--backbone", "small3d", "--pretrained", "false", "--epochs", "1", "--frames", "4",
                "--crop", "32", "--resize", "43x32"])
    assert "training small3d (from scratch) on 8 clips, validating on 8" in capsys.readouterr().out
    assert (tmp_path / "second" / "code" / "inference.py").is_file()

    monkeypatch.delenv("SM_CHANNEL_TRAIN")
    assert entry.main(["--epochs", "1"]) == 2  # no training channel: says so, exits 2


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_model_package_command_builds_an_archive_the_classifier_accepts(trained, held_out, tmp_path):
    result, archive, _ = trained
    out = tmp_path / "again.tar.gz"
    run = CliRunner().invoke(cli(), ["model", "package", str(result.model_dir), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() in run.output
    assert "code/inference.py" in run.output
    segment, label = held_out[0]
    from_dir, from_tar = classify_videos(result.model_dir, [segment])[0], classify_videos(out, [segment])[0]
    assert from_tar.ok and from_tar.label == from_dir.label
    assert from_tar.probability == pytest.approx(from_dir.probability, abs=1e-6)


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_packaged_serving_code_uses_its_own_copy_of_the_daemons_modules(trained, tmp_path):
    """The container has no livewatch: inference.py must import the modules shipped beside it."""
    _, archive, _ = trained
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    code = tmp_path / "model" / "code"
    probe = ("import importlib.util, sys\n"
             f"spec = importlib.util.spec_from_file_location('inference', {str(code / 'inference.py')!r})\n"
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
             "import livewatch.model.video as v, livewatch.model.preprocess as p\n"
             "import livewatch.model.model_files as f, livewatch.model.mxnet_net as n\n"
             "print(v.__file__); print(p.__file__); print(f.__file__); print(n.__file__)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = proc.stdout.split()
    assert len(files) == 4 and all(f.startswith(str(code)) for f in files), files


@pytest.mark.slow  # the session's trained model: about a minute and a half, once
def test_model_evaluate_command_passes_on_held_out_segments(trained, held_out):
    _, archive, _ = trained
    folder = held_out[0][0].parent.parent
    result = CliRunner().invoke(cli(), ["model", "evaluate", str(archive), str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("PASS: ")


def test_demo_quick_shrinks_the_run_and_explicit_options_win(monkeypatch):
    import livewatch.training.demo as demo_module

    calls = []

    class Result:
        accuracy = 0.5

    def fake_run_demo(work, **kwargs):
        calls.append(kwargs)
        return Result()

    monkeypatch.setattr(demo_module, "run_demo", fake_run_demo)
    assert CliRunner().invoke(cli(), ["demo"]).exit_code == 1  # 50% < --min-accuracy 75%
    assert CliRunner().invoke(cli(), ["demo", "--quick", "--min-accuracy", "0.5"]).exit_code == 0
    assert CliRunner().invoke(cli(), ["demo", "--quick", "--epochs", "25",
                                      "--min-accuracy", "0.5"]).exit_code == 0
    full, quick, quick_25 = calls
    for size in ("per_class", "epochs", "segments"):  # --quick: a smaller run in every respect
        assert 0 < quick[size] < full[size], size
    assert quick_25["epochs"] == 25  # an explicit option wins over --quick's choice
    assert {k: v for k, v in quick_25.items() if k != "epochs"} == {
        k: v for k, v in quick.items() if k != "epochs"}


def test_the_demo_script_changes_motion_mid_segment_and_scores_windows():
    from livewatch.contract import Detection, WindowResult
    from livewatch.training.demo import DemoResult, make_script, timeline_table
    from livewatch.training.live import motion_at

    script = make_script(12, seed=1)
    assert any(">" in entry for entry in script)
    assert all(m in MOTIONS for entry in script for m in entry.split(">"))
    assert [motion_at("still>zoom_in", i, 30) for i in (0, 14, 15, 29)] == [
        "still", "still", "zoom_in", "zoom_in"]
    result = DemoResult(script=["still>zoom_in"], frames=30)
    windows = [WindowResult(start=0, end=1, frames=[f, f + 7], label=label, probability=0.9)
               for f, label in [(0, "still"), (7, "still"), (15, "zoom_in"), (22, "still")]]
    result.detections = {0: Detection(uri="x", stream="cam1", label="still", probability=0.6,
                                      windows=windows)}
    assert result.correct == 1 and result.window_counts == (3, 4)
    table = timeline_table(result)
    assert "still still zoom_in zoom_in/still" in table and "window accuracy: 3/4 = 75%" in table


def _classify_into(store: Path, live: Path, model: Path, cache: Path, workers: int) -> None:
    """Run the daemon once over `live` with the demo's model into the local store `store`."""
    from livewatch.daemon import Daemon
    from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
    from livewatch.settings import DaemonSettings
    from livewatch.sinks.local import LocalOptions, LocalSink
    from livewatch.sources.folder import FolderOptions, FolderSource

    sink = LocalSink(LocalOptions(path=store))
    sink.event_settings = EVENTS
    daemon = Daemon([FolderSource(FolderOptions(path=live, once=True, settle_seconds=0))],
                    I3DClassifier(I3DOptions(model=str(model), cache_dir=cache, device="cpu")),
                    [sink], DaemonSettings(workers=workers, log_level="WARNING", health_listen=""))
    stats = asyncio.run(daemon.run(handle_signals=False))
    assert not stats.released


#: one window of the demo's model is 8 frames at 15 fps (0.53 s): events of 1 s and more
EVENTS = EventSettings(min_probability=0.5, max_gap=1.0, min_duration=1.0)


def _truth(script: list[str], seconds: float) -> list[tuple[str, float, float]]:
    """(motion, start, end) runs of the script, in seconds from its first segment."""
    marks = []  # (time, motion) where each motion begins
    for n, entry in enumerate(script):
        for k, motion in enumerate(entry.split(">")):
            marks.append((n * seconds + k * seconds / 2, motion))
    runs: list[list] = []
    for at, motion in marks:
        if not runs or runs[-1][0] != motion:
            runs.append([motion, at, None])
    for run, following in zip(runs, runs[1:] + [[None, len(script) * seconds, None]]):
        run[2] = following[1]
    return [tuple(r) for r in runs]


@pytest.mark.slow  # the session's trained model, and three passes over a 14-segment stream
def test_events_from_the_demo_model_match_the_script_in_any_order(trained, tmp_path):
    from datetime import datetime

    from livewatch.events import derive, windows_of
    from livewatch.sinks.local import LocalStore
    from livewatch.training.demo import DEMO_VIDEO
    from livewatch.training.live import ScriptedStream

    _, archive, _ = trained
    script = ["pan_left", "pan_left", "pan_left>still", "still", "still", "zoom_in", "zoom_in",
              "zoom_in>pan_right", "pan_right", "pan_right", "still", "still>pan_left",
              "pan_left", "pan_left"]
    stream = ScriptedStream(tmp_path / "live" / "cam1", script, seconds=2.0, seed=4242, **DEMO_VIDEO)
    for _ in script:
        stream.write_segment()
    seconds = stream.frames / stream.fps
    shutil.copytree(tmp_path / "live", tmp_path / "again")  # the folder source checkpoints the first
    _classify_into(tmp_path / "one.db", tmp_path / "live", archive, tmp_path / "cache", workers=1)
    one = LocalStore(tmp_path / "one.db", EVENTS)
    events = one.events()
    origin = stream.start_time.timestamp()

    def placed(e: dict) -> tuple[str, float, float]:
        if e["clock"] == "sequence":
            return e["label"], e["start"], e["end"]
        return (e["label"], datetime.fromisoformat(e["start"]).timestamp() - origin,
                datetime.fromisoformat(e["end"]).timestamp() - origin)

    got = [placed(e) for e in events]
    window = 8 / stream.fps
    truth = _truth(script, seconds)
    assert len(got) == len(truth), (got, truth)
    for (label, start, end), (want, t0, t1) in zip(got, truth):
        assert label == want and abs(start - t0) <= window + 0.01 and abs(end - t1) <= window + 0.01, (
            got, truth)

    _classify_into(tmp_path / "three.db", tmp_path / "again", archive, tmp_path / "cache", workers=3)
    detections = one.query()
    shuffled = LocalStore(tmp_path / "shuffled.db", EVENTS)
    for d in random.Random(7).sample(detections, k=len(detections)):
        shuffled.write(d)

    def key(events: list[dict]) -> list[tuple]:
        return [(e["id"], e["label"], e["start"], e["end"], [Path(s).name for s in e["segments"]],
                 e["state"], e["revision"]) for e in events]

    assert key(LocalStore(tmp_path / "three.db", EVENTS).events()) == key(events)
    assert shuffled.events() == events
    assert [e.to_dict() for e in derive([w for d in detections for w in windows_of(d)], EVENTS)] == events
