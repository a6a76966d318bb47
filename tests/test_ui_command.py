"""``livewatch ui --store PATH``: the page over a store without a daemon, as a user starts it."""
import contextlib
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from livewatch.sinks.local import LocalStore
from livewatch.testing.aws import free_port
from livewatch.testing.daemon_process import LIVEWATCH

from test_ui_api import detection


def get_json(url: str, deadline: float, proc: subprocess.Popen) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


@contextlib.contextmanager
def ui_server(args: list[str], cwd: Path, env: dict) -> Iterator[str]:
    """`livewatch ui ARGS` on a free loopback port, up; yields its API's base URL."""
    port = free_port()
    proc = subprocess.Popen([LIVEWATCH, "ui", *args, "--listen", f"127.0.0.1:{port}"], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/ui/api"
        get_json(f"{base}/streams", time.monotonic() + 60, proc)  # up
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def test_ui_command_serves_a_store(tmp_path):
    db = tmp_path / "detections.db"
    store = LocalStore(db)
    store.write(detection(0, stream="cam", label="wave"))
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LIVEWATCH_UI_TOKEN"}
    proc = subprocess.Popen([LIVEWATCH, "ui", "--store", str(db), "--listen", f"127.0.0.1:{port}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        body = get_json(f"http://127.0.0.1:{port}/ui/api/streams", time.monotonic() + 60, proc)
        assert [(s["stream"], s["label"]) for s in body["streams"]] == [("cam", "wave")]
        assert body["daemon"] is None
    finally:
        proc.terminate()
        proc.wait(30)


def test_ui_command_refuses_a_public_address_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LIVEWATCH_UI_TOKEN"}
    done = subprocess.run([LIVEWATCH, "ui", "--store", str(tmp_path / "d.db"), "--listen",
                           f"0.0.0.0:{free_port()}"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2
    assert "without a token" in done.stderr


def test_segments_play_from_the_configured_local_sources_folders(tmp_path):
    from livewatch.capabilities import media_roots
    from livewatch.settings import ComponentConfig, Settings

    settings = Settings(sources=[ComponentConfig(type="folder", path=str(tmp_path / "live")),
                                 ComponentConfig(type="hls", url="http://127.0.0.1:9/live.m3u8")])
    assert media_roots(settings) == [tmp_path / "live"]  # an hls stream's segments are not files


def test_run_refuses_a_public_listener_without_a_token(tmp_path, tiny_i3d_dir):
    (tmp_path / "livewatch.toml").write_text(f"""
[daemon]
health_listen = "0.0.0.0:{free_port()}"

[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"

[[sources]]
type = "folder"
path = "{tmp_path / 'live'}"
""")
    env = {k: v for k, v in os.environ.items() if k != "LIVEWATCH_UI_TOKEN"}
    done = subprocess.run([LIVEWATCH, "run"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "without a token" in done.stderr and "ui.token" in done.stderr
