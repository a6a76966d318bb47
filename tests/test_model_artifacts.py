"""Model artifacts: every way of naming a model ends in the same loaded network, or a clear error."""
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from livewatch.errors import ModelError
from livewatch.model.artifacts import resolve_model
from livewatch.model.backends.mxnet import MXNetModel
from livewatch.testing.models import TEST_CLASSES, reference_forward, with_input_shape

UCF101_ZIP = "/gluon/models/i3d_resnet50_v1_ucf101-760d0981.zip"


@pytest.fixture(autouse=True)
def _private_model_cache(monkeypatch, tmp_path):
    """Nothing a test resolves lands in the user's own model cache."""
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "model-cache"))


def random_batch(frames=32, crop=224, seed=1):
    return np.random.RandomState(seed).standard_normal((1, 3, frames, crop, crop)).astype(np.float32)


def assert_same_prediction(probs, reference):
    assert probs.shape == reference.shape
    assert probs.argmax(axis=1).tolist() == reference.argmax(axis=1).tolist()
    np.testing.assert_allclose(probs, reference, atol=1e-5)


@pytest.fixture(scope="module")
def batch():
    return random_batch()


# -- directories and archives ----------------------------------------------------------------------


def test_a_directory_loads_and_predicts_as_mxnet_does(random_i3d_dir, batch):
    artifact = resolve_model(str(random_i3d_dir))
    assert artifact.directory == random_i3d_dir
    assert artifact.classes == TEST_CLASSES
    assert (artifact.name, artifact.version) == ("random-i3d", "seed0")
    assert (artifact.meta.frames, artifact.meta.crop, artifact.meta.resize) == (32, 224, (340, 256))

    model = MXNetModel.load(artifact, device="cpu")
    probs = model.predict(batch)
    assert_same_prediction(probs, reference_forward(random_i3d_dir, batch))
    top = model.top_k(probs[0], 3)
    assert [label for label, _ in top] == [TEST_CLASSES[i] for i in np.argsort(-probs[0])[:3]]
    assert top[0][1] == pytest.approx(float(probs[0].max()))


def test_a_model_tar_is_unpacked_once_and_predicts_the_same(random_i3d_tar, random_i3d_dir, batch, tmp_path):
    artifact = resolve_model(str(random_i3d_tar), cache_dir=tmp_path)
    assert artifact.directory.parent == tmp_path / "archives"
    assert (artifact.directory / "code" / "requirements.txt").is_file()  # SageMaker's layout
    assert artifact.classes == TEST_CLASSES

    marker = artifact.directory / "marker"
    marker.touch()
    again = resolve_model(str(random_i3d_tar), cache_dir=tmp_path)
    assert again.directory == artifact.directory and marker.exists()  # not extracted again

    probs = MXNetModel.load(artifact, device="cpu").predict(batch)
    assert_same_prediction(probs, reference_forward(random_i3d_dir, batch))


def test_files_in_one_top_level_folder_and_defaults_without_model_json(random_i3d_dir, tmp_path):
    archive = tmp_path / "ucf101" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:
        for name in ("model-symbol.json", "model-0000.params", "classes.txt"):
            tar.add(random_i3d_dir / name, arcname=f"export/{name}")
    artifact = resolve_model(str(archive), cache_dir=tmp_path / "cache")
    assert artifact.directory.name == "export"
    assert artifact.name == "ucf101"  # the archive's folder, as model.tar.gz says nothing
    assert len(artifact.version) == 12 and artifact.meta.frames == 32


def test_the_tiny_variant_reads_8_frames_at_112(tiny_i3d_dir):
    model = MXNetModel.load(resolve_model(str(tiny_i3d_dir)), device="cpu")
    assert (model.meta.frames, model.meta.crop, model.meta.resize) == (8, 112, (171, 128))
    small = random_batch(frames=8, crop=112)
    assert_same_prediction(model.predict(small), reference_forward(tiny_i3d_dir, small))


# -- errors a user can act on -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["./models/missing", "/no/such/dir/model.tar.gz", "~/nowhere/x"])
def test_a_missing_path_says_so(spec):
    with pytest.raises(ModelError, match=r"model path .* does not exist"):
        resolve_model(spec)


def test_a_directory_without_the_files_names_them(tmp_path):
    (tmp_path / "model-symbol.json").write_text("{}")
    with pytest.raises(ModelError, match=r"lacks model-0000\.params, classes\.txt"):
        resolve_model(str(tmp_path))


def test_a_tar_without_the_files_names_what_it_holds(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "weights.bin", arcname="weights.bin")
    with pytest.raises(ModelError, match=r"holds no model: .*\(found: weights\.bin\)"):
        resolve_model(str(archive), cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "archives").iterdir())  # nothing half-made is cached


def test_a_file_that_is_not_an_archive(tmp_path):
    (tmp_path / "model.params").write_bytes(b"not an archive " * 64)
    with pytest.raises(ModelError, match="not a model.tar.gz"):
        resolve_model(str(tmp_path / "model.params"))


def test_a_typo_in_model_json_is_named(random_i3d_dir, tmp_path):
    model_dir = with_input_shape(random_i3d_dir, tmp_path / "m", frames=8, crop=112,
                                 resize=(171, 128), name="m")
    (model_dir / "model.json").write_text('{"frame": 16}')
    with pytest.raises(ModelError, match=r"model\.json is invalid: frame: Extra inputs"):
        resolve_model(str(model_dir))


def test_classes_that_do_not_match_the_network(tiny_i3d_dir, tmp_path):
    model_dir = with_input_shape(tiny_i3d_dir, tmp_path / "m", frames=8, crop=112,
                                 resize=(171, 128), name="m")
    (model_dir / "classes.txt").unlink()
    (model_dir / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(ModelError, match="lists 3 labels but the network outputs 5 scores"):
        MXNetModel.load(resolve_model(str(model_dir)), device="cpu")


def test_corrupt_weights_are_a_model_error(tiny_i3d_dir, tmp_path):
    model_dir = with_input_shape(tiny_i3d_dir, tmp_path / "m", frames=8, crop=112,
                                 resize=(171, 128), name="m")
    (model_dir / "model-0000.params").unlink()
    (model_dir / "model-0000.params").write_bytes(b"truncated download")
    with pytest.raises(ModelError, match=r"cannot load the model in .*/m'"):
        MXNetModel.load(resolve_model(str(model_dir)), device="cpu")


def test_an_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(ModelError, match=r"'i3d_resnet50_v1_ufc101' is not .* GluonCV model-zoo "
                                         r"name; .*: .*i3d_resnet50_v1_ucf101"):
        resolve_model("i3d_resnet50_v1_ufc101")


# -- the GluonCV model zoo, against a local stand-in for its repository -----------------------------


@pytest.fixture
def model_repo(monkeypatch, tmp_path):
    """An HTTP server posing as GluonCV's repository: it records the paths asked for and answers
    with a zip whose params file fails GluonCV's hash check."""
    requested = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr(Path(self.path).stem + ".params", b"not the weights")
            self.send_response(200)
            self.send_header("Content-Length", str(len(buf.getvalue())))
            self.end_headers()
            self.wfile.write(buf.getvalue())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("MXNET_HOME", raising=False)
    yield SimpleNamespace(requested=requested, url=f"http://127.0.0.1:{server.server_port}/")
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_zoo_name_downloads_through_gluoncv(model_repo, tmp_path):
    with pytest.raises(ModelError) as err:
        resolve_model("i3d_resnet50_v1_ucf101", cache_dir=tmp_path)
    assert model_repo.requested == [UCF101_ZIP]
    message = str(err.value)
    assert f"could not download the weights of GluonCV model 'i3d_resnet50_v1_ucf101' from {model_repo.url}" in message
    assert "different hash" in message  # GluonCV's own check ran on what it downloaded
    assert "local model directory or model.tar.gz" in message
    assert not (tmp_path / "zoo").exists()


def test_a_zoo_download_without_network_says_what_to_do(monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{closed_port}/")
    monkeypatch.delenv("MXNET_HOME", raising=False)
    with pytest.raises(ModelError, match=r"(?s)ConnectionError.*Without network access, point the "
                                         r"model option at a local model directory"):
        resolve_model("i3d_resnet50_v1_kinetics400", cache_dir=tmp_path)


def test_an_exported_zoo_model_is_found_in_the_cache(model_repo, tiny_i3d_dir, tmp_path):
    with_input_shape(tiny_i3d_dir, tmp_path / "zoo" / "i3d_resnet50_v1_ucf101", frames=8, crop=112,
                     resize=(171, 128), name="i3d_resnet50_v1_ucf101")
    artifact = resolve_model("i3d_resnet50_v1_ucf101", cache_dir=tmp_path)
    assert artifact.directory == tmp_path / "zoo" / "i3d_resnet50_v1_ucf101"
    assert artifact.name == "i3d_resnet50_v1_ucf101"
    assert model_repo.requested == []


def test_the_cache_dir_defaults_to_the_environment(model_repo, tiny_i3d_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path))
    with_input_shape(tiny_i3d_dir, tmp_path / "zoo" / "i3d_resnet50_v1_hmdb51", frames=8, crop=112,
                     resize=(171, 128), name="i3d_resnet50_v1_hmdb51")
    assert resolve_model("i3d_resnet50_v1_hmdb51").directory.parent == tmp_path / "zoo"


# -- s3://, against the moto server (livewatch.testing.aws) over real HTTP -----------------------------------------------


def fake_model_tar(path: Path, classes: str) -> bytes:
    """A model.tar.gz with the right files; their content only matters once the model loads."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("model-symbol.json", b"{}"), ("model-0000.params", b"\0" * 64),
                           ("classes.txt", classes.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


@pytest.mark.slow
def test_an_s3_model_is_downloaded_once_per_etag(aws_env, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    key = "ucf101/model.tar.gz"
    s3.put_object(Bucket="models", Key=key, Body=fake_model_tar(tmp_path / "a.tar.gz", "run\nwalk\n"))
    etag = s3.head_object(Bucket="models", Key=key)["ETag"].strip('"')

    cache = tmp_path / "cache"
    artifact = resolve_model(f"s3://models/{key}", cache_dir=cache)
    assert artifact.classes == ("run", "walk")
    assert (artifact.name, artifact.version) == ("ucf101", etag[:12])
    (artifact.directory / "marker").touch()
    assert (resolve_model(f"s3://models/{key}", cache_dir=cache).directory / "marker").exists()

    s3.put_object(Bucket="models", Key=key, Body=fake_model_tar(tmp_path / "b.tar.gz", "jump\n"))
    updated = resolve_model(f"s3://models/{key}", cache_dir=cache)
    assert updated.classes == ("jump",) and updated.directory != artifact.directory
    assert list(cache.rglob(".*")) == []  # no downloads or half-unpacked folders left behind

    with pytest.raises(ModelError, match=r"model 's3://models/nope/model.tar.gz' not found on S3"):
        resolve_model("s3://models/nope/model.tar.gz", cache_dir=cache)


# -- threads ------------------------------------------------------------------------------------------


def test_threads_bound_the_openmp_pool_when_mxnet_loads():
    code = (
        "import ctypes, os; from livewatch.model.backends.mxnet import import_mxnet; import_mxnet(threads=1); "
        "print(os.environ['OMP_NUM_THREADS'], ctypes.CDLL('libgomp.so.1').omp_get_max_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["1", "1"]
