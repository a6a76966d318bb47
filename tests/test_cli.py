"""The command line as a user runs it: the installed `livewatch` script, as a subprocess."""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from livewatch.contract import Detection, WindowResult
from livewatch.sinks.local import LocalStore

LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


def lw(*args, cwd=None, check=False):
    return subprocess.run([LIVEWATCH, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          check=check, timeout=120)


def test_help_lists_the_commands():
    out = lw("--help", check=True).stdout
    for command in ("run", "classify", "plugins", "detections"):
        assert f"  {command} " in out


def test_plugins_lists_builtins_with_options():
    out = lw("plugins", "--options", check=True).stdout
    assert "source     folder" in out and "sink       local" in out and "classifier i3d" in out
    assert "path: Path = 'livewatch-data/detections.db'" in out
    data = json.loads(lw("plugins", "--json", check=True).stdout)
    local = next(p for p in data if p["name"] == "local")
    assert local["options"][0]["name"] == "path" and local["distribution"] == "livewatch (built-in)"


def test_bad_config_fails_before_start_and_names_the_field(tmp_path):
    (tmp_path / "lw.toml").write_text(
        '[classifier]\ntype = "i3d"\ntop_k = 0\n\n[[sinks]]\ntype = "local"\npaht = "x.db"\n\n'
        '[[sinks]]\ntype = "nosuch"\n'
    )
    result = lw("run", "--config", tmp_path / "lw.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "classifier.top_k: Input should be greater than or equal to 1" in result.stderr
    assert "sinks.0.paht: unknown option" in result.stderr
    assert ("sinks.1.type: unknown sink type 'nosuch'; installed sinks: dynamodb, local, mqtt, "
            "sns, stdout, webhook") in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_backend_names_the_installed_ones(tmp_path):
    (tmp_path / "livewatch.toml").write_text('[classifier]\ntype = "i3d"\nbackend = "tensorrt"\n')
    result = lw("classify", tmp_path / "x.ts", cwd=tmp_path)
    assert result.returncode == 2
    assert ("classifier.backend: unknown backend type 'tensorrt'; installed backends: auto, "
            "mxnet, onnxruntime, openvino") in result.stderr
    assert "Value error" not in result.stderr and "Traceback" not in result.stderr
    out = lw("plugins", check=True).stdout
    assert "backend    onnxruntime  ONNX Runtime on the CPU" in out
    assert "from livewatch.model.backends.mxnet (livewatch (built-in))" in out


def test_detections_queries_the_configured_store(tmp_path):
    db = tmp_path / "data" / "d.db"
    store = LocalStore(db)
    now = datetime.now(timezone.utc)
    for i, (stream, minutes_ago) in enumerate([("cam1", 30), ("cam1", 5), ("cam2", 1)]):
        store.write(Detection(uri=f"/l/{i}.ts", stream=stream, sequence=i, label="walk",
                              probability=0.5, start=now - timedelta(minutes=minutes_ago)))
    store.close()
    (tmp_path / "livewatch.toml").write_text(f'[[sinks]]\ntype = "local"\npath = "{db}"\n')

    out = lw("detections", "--stream", "cam1", "--since", "10m", "--format", "json", cwd=tmp_path,
             check=True).stdout
    assert [json.loads(line)["uri"] for line in out.splitlines()] == ["/l/1.ts"]
    text = lw("detections", "--format", "text", cwd=tmp_path, check=True).stdout.splitlines()
    assert len(text) == 3 and "cam2 #2  walk  0.50" in text[-1]

    missing = lw("detections", "--db", tmp_path / "nope.db", cwd=tmp_path)
    assert missing.returncode == 2 and "no local store at" in missing.stderr
    bad = lw("detections", "--since", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2 and "use an age like 10m" in bad.stderr


def test_classify_refuses_an_unknown_windows_value(tmp_path):
    result = lw("classify", tmp_path / "x.ts", "--windows", "0")
    assert result.returncode == 2
    assert '"center", "cover" or a number of windows >= 1, not \'0\'' in result.stderr


def test_detections_windows_prints_the_window_timeline(tmp_path):
    db = tmp_path / "d.db"
    store = LocalStore(db)
    start = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
    windows = [WindowResult(start=5.0 * k, end=5.0 * (k + 1), frames=[125 * k, 125 * k + 124],
                            label=label, probability=0.7) for k, label in enumerate(["walk", "run"])]
    store.write(Detection(uri="/l/0.ts", stream="cam1", sequence=0, label="walk", probability=0.6,
                          start=start, windows=windows))
    store.close()

    out = lw("detections", "--db", db, "--windows", "--format", "json", check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["start"], r["end"], r["label"]) for r in rows] == [
        ("2026-11-28T06:00:00.000Z", "2026-11-28T06:00:05.000Z", "walk"),
        ("2026-11-28T06:00:05.000Z", "2026-11-28T06:00:10.000Z", "run")]
    since = lw("detections", "--db", db, "--windows", "--since", "2026-11-28T06:00:03Z",
               "--format", "text", check=True).stdout.splitlines()
    assert since == ["2026-11-28T06:00:05.000Z - 06:00:10.000Z  cam1 #0  run  0.70  "
                     "(frames 125-249)  /l/0.ts"]
