"""Settings: TOML file < LIVEWATCH_ environment < CLI overrides, and errors that name the field."""
import pytest

from livewatch.errors import ConfigError
from livewatch.settings import ComponentConfig, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith("LIVEWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text):
    path = tmp_path / "lw.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_setup():
    s = load_settings()
    assert [c.type for c in s.sources] == ["folder"]
    assert s.classifier.type == "i3d"
    assert [c.type for c in s.sinks] == ["local", "stdout"]
    assert s.daemon.workers == 1


def test_file_then_env_then_cli(tmp_path, monkeypatch):
    path = write(tmp_path, """
[daemon]
workers = 2
queue_size = 7

[classifier]
type = "i3d"
model = "/models/from-file"
top_k = 3

[[sources]]
type = "folder"
path = "/from/file"
""")
    s = load_settings(path)
    assert s.daemon.workers == 2 and s.daemon.queue_size == 7
    assert s.classifier.options == {"model": "/models/from-file", "top_k": 3}
    assert s.sources[0].options == {"path": "/from/file"}

    monkeypatch.setenv("LIVEWATCH_DAEMON__WORKERS", "3")
    monkeypatch.setenv("LIVEWATCH_CLASSIFIER__MODEL", "/models/from-env")
    s = load_settings(path)
    assert s.daemon.workers == 3 and s.daemon.queue_size == 7  # env overrides one key, file keeps the rest
    assert s.classifier.options == {"model": "/models/from-env", "top_k": 3}

    s = load_settings(path, daemon={"workers": 4}, sources=[ComponentConfig(type="folder", path="/cli")])
    assert s.daemon.workers == 4
    assert s.sources[0].options == {"path": "/cli"}


def test_indexed_env_lists(monkeypatch):
    monkeypatch.setenv("LIVEWATCH_SINKS__0__TYPE", "stdout")
    monkeypatch.setenv("LIVEWATCH_SINKS__1__TYPE", "local")
    monkeypatch.setenv("LIVEWATCH_SINKS__1__PATH", "/data/d.db")
    s = load_settings()
    assert [c.type for c in s.sinks] == ["stdout", "local"]
    assert s.sinks[1].options == {"path": "/data/d.db"}


def test_bad_daemon_field_names_the_field_and_the_file(tmp_path):
    path = write(tmp_path, "[daemon]\nworkers = 0\nqueu_size = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert str(path) in text
    assert "daemon.workers: Input should be greater than or equal to 1" in text
    assert "daemon.queu_size: unknown option" in text


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.toml.* not found"):
        load_settings(tmp_path / "nope.toml")


def test_toml_syntax_error_is_clear(tmp_path):
    path = write(tmp_path, "[daemon\nworkers = 1\n")
    with pytest.raises(ConfigError, match="lw.toml"):
        load_settings(path)


def test_livewatch_toml_in_the_working_directory_is_read(tmp_path):
    (tmp_path / "livewatch.toml").write_text("[daemon]\nshutdown_timeout = 5\n")
    assert load_settings().daemon.shutdown_timeout == 5
