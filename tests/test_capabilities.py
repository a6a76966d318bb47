"""Core reaches components only through the registry: --folder, --once and `livewatch detections`
look up a capability, so a third-party source or sink can offer it and a built-in can be disabled."""
import ast
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from livewatch import hookspecs
from livewatch.capabilities import detection_store, folder_source, one_shot
from livewatch.components import DetectionQuery, Options, Sink, Source
from livewatch.contract import Detection
from livewatch.errors import ConfigError
from livewatch.plugins import DEFAULT_PLUGINS, Registry, make_plugin_manager
from livewatch.settings import ComponentConfig
from livewatch.wiring import build_component

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "livewatch"
LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))
#: the built-in plugins: their modules, and the packages that hold nothing else
PLUGIN_PACKAGES = ("livewatch.sources", "livewatch.sinks", "livewatch.model.backends",
                   "livewatch.deploy", "livewatch.training")
#: test helpers, which may build on the built-ins (not imported by livewatch itself)
NOT_CORE = ("livewatch.testing",)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_plugin(name: str) -> bool:
    return name in DEFAULT_PLUGINS or any(name == p or name.startswith(p + ".") for p in PLUGIN_PACKAGES)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions, relative imports resolved."""
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import x`
    return names


CORE = sorted(m for m in map(module_name, PACKAGE.rglob("*.py"))
              if not is_plugin(m) and not m.startswith(NOT_CORE))


def test_the_core_list_is_what_we_think():
    assert {"livewatch.cli", "livewatch.classify", "livewatch.daemon", "livewatch.wiring",
            "livewatch.model.artifacts", "livewatch.model.backend"} <= set(CORE)
    assert not {"livewatch.sources.folder", "livewatch.model.i3d_classifier",
                "livewatch.model.backends.mxnet"} & set(CORE)
    assert all(is_plugin(m) for m in DEFAULT_PLUGINS)


@pytest.mark.parametrize("module", CORE)
def test_core_modules_import_no_builtin_plugin(module):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    plugins = sorted(n for n in imported(path) if n.startswith("livewatch") and is_plugin(n))
    assert not plugins, f"{module} imports built-in plugins: {plugins}"


class Recorded(Source):
    """A third-party source that can read a folder and run once."""

    name = "recorded"

    class Options(Options):
        root: Path
        once: bool = False

    @classmethod
    def for_path(cls, path):
        return cls.Options(root=path)

    @classmethod
    def one_shot(cls, options):
        return options.model_copy(update={"once": True})


class Archive(Sink):
    """A third-party sink that can be queried."""

    name = "archive"
    queryable = True

    class Options(Options):
        file: Path = Path("archive.jsonl")

    @classmethod
    def for_path(cls, path):
        return cls.Options(file=path)

    async def query(self, query):
        rows = [Detection.model_validate_json(line) for line in self.options.file.read_text().splitlines()]
        return [d for d in rows if query.stream in (None, d.stream)][-(query.limit or len(rows)):]


def registry_without(monkeypatch, disabled: str, *classes) -> Registry:
    monkeypatch.setenv("LIVEWATCH_DISABLED_PLUGINS", disabled)
    module = types.ModuleType("third_party")
    module.register_sources = hookspecs.hookimpl(
        lambda register: [register(c) for c in classes if issubclass(c, Source)])
    module.register_sinks = hookspecs.hookimpl(
        lambda register: [register(c) for c in classes if issubclass(c, Sink)])
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(module, name="third_party")
    return Registry(pm)


def test_a_third_party_source_serves_folder_and_once_with_the_builtin_disabled(monkeypatch, tmp_path):
    reg = registry_without(monkeypatch, "livewatch.sources.folder", Recorded)
    config = folder_source(reg, tmp_path, [])
    assert (config.type, config.options) == ("recorded", {"root": tmp_path})
    source = build_component("source", config, "sources.0", registry=reg)
    (once,) = one_shot([source])
    assert isinstance(once, Recorded) and once.options == Recorded.Options(root=tmp_path, once=True)


def test_several_sources_that_read_a_folder_the_configured_one_wins(monkeypatch, tmp_path):
    reg = registry_without(monkeypatch, "", Recorded)
    with pytest.raises(ConfigError, match=r"several sources can read a local folder \(--folder\): "
                       r"folder \(livewatch.sources.folder, livewatch \(built-in\)\), recorded \(third_party"):
        folder_source(reg, tmp_path, [])
    assert folder_source(reg, tmp_path, [ComponentConfig(type="recorded", root="x")]).type == "recorded"
    assert folder_source(reg, tmp_path, [ComponentConfig(type="folder", path="x")]).type == "folder"


def test_once_refuses_a_source_that_cannot_stop():
    class Endless(Source):
        name = "endless"

    with pytest.raises(ConfigError, match=r"--once: source 'cam' \(type 'endless'\) cannot stop"):
        one_shot([Endless(instance="cam")])


async def test_a_third_party_sink_answers_detections(monkeypatch, tmp_path):
    reg = registry_without(monkeypatch, "livewatch.sinks.local", Archive)
    file = tmp_path / "a.jsonl"
    file.write_text("".join(Detection(uri=f"/{i}.ts", stream=s, label="x").model_dump_json() + "\n"
                            for i, s in enumerate(["cam1", "cam2", "cam1"])))
    store = detection_store(reg, [], file)  # --db
    assert [d.uri for d in await store.query(DetectionQuery(stream="cam1"))] == ["/0.ts", "/2.ts"]
    configured = [ComponentConfig(type="stdout"), ComponentConfig(type="archive", file=str(file))]
    store = detection_store(reg, configured, None)  # the configured one, its options validated
    assert store.options.file == file and len(await store.query(DetectionQuery(limit=2))) == 2


def lw(*args, cwd, env):
    return subprocess.run([LIVEWATCH, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_a_disabled_builtin_leaves_a_clear_error(tmp_path):
    env = {**os.environ, "LIVEWATCH_DISABLED_PLUGINS": "livewatch.sources.folder,livewatch.sinks.local"}
    result = lw("run", "--once", "--folder", tmp_path, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert ("error: no installed source can read a local folder (--folder) (installed sources: "
            "hls, rtsp, s3-events;") in result.stderr
    (tmp_path / "livewatch.toml").write_text('[[sinks]]\ntype = "stdout"\n')
    result = lw("detections", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert ("error: no installed sink can read back stored detections (installed sinks: dynamodb, "
            "mqtt, sns, stdout, webhook;") in result.stderr
    assert "Traceback" not in result.stderr


def test_once_makes_an_hls_source_return_after_what_its_playlist_lists():
    """The built-in hls source offers the one-shot capability: `run --once` sets its `once`."""
    from livewatch.plugins import registry

    entry = registry().get("source", "hls")
    source = entry.cls(entry.cls.Options(url="http://127.0.0.1:9/live.m3u8"), instance="cam")
    (once,) = one_shot([source])
    assert once.options.once is True and once.instance == "cam" and source.options.once is False
