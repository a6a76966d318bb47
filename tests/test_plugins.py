"""The plugin system: built-ins and third parties register through the same hooks."""
import importlib.metadata
import re
import subprocess
import sys
import types
from pathlib import Path

import pluggy
import pytest

from livewatch import hookspecs
from livewatch.components import Sink
from livewatch.errors import ConfigError
from livewatch.plugins import DEFAULT_PLUGINS, Registry, make_plugin_manager
from livewatch.testing.distributions import env_with_site, install_distribution

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "tests" / "plugins" / "livewatch-files-sink"
#: every hook of the plugin manager (datasette's guard rail: the hook set, not a name prefix)
HOOKS = sorted(n for n in dir(make_plugin_manager(load_entry_points=False).hook) if not n.startswith("_"))
LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


def test_builtins_register_through_the_hooks():
    reg = Registry(make_plugin_manager(load_entry_points=False))
    names = {(e.kind, e.name): e for e in reg.entries.values()}
    assert ("source", "folder") in names
    assert ("classifier", "i3d") in names
    assert ("sink", "local") in names and ("sink", "stdout") in names
    assert {("source", "s3-events"), ("classifier", "sagemaker"), ("sink", "dynamodb")} <= names.keys()
    assert {e.plugin for e in names.values()} <= set(DEFAULT_PLUGINS)
    assert all(e.distribution == "livewatch (built-in)" for e in names.values())


def test_disabled_plugins_are_not_loaded(monkeypatch):
    monkeypatch.setenv("LIVEWATCH_DISABLED_PLUGINS", "livewatch.sinks.stdout")
    reg = Registry(make_plugin_manager(load_entry_points=False))
    assert ("sink", "stdout") not in reg.entries
    with pytest.raises(ConfigError, match=r"unknown sink type 'stdout'; installed sinks: dynamodb, local"):
        reg.get("sink", "stdout")


def test_name_clash_names_both_plugins():
    class Other(Sink):
        name = "local"

    clash = types.ModuleType("clashing_plugin")
    clash.register_sinks = hookspecs.hookimpl(lambda register: register(Other))
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(clash, name="clashing_plugin")
    with pytest.raises(ConfigError, match=r"named 'local': livewatch.sinks.local .* and clashing_plugin"):
        Registry(pm)


def test_registering_something_that_is_not_a_component_fails():
    bad = types.ModuleType("bad_plugin")
    bad.register_sources = hookspecs.hookimpl(lambda register: register(object))
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(bad, name="bad_plugin")
    with pytest.raises(ConfigError, match="not a subclass of livewatch.components.Source"):
        Registry(pm)


def test_misspelled_hook_in_an_entry_point_plugin_fails_loudly(monkeypatch):
    """A plugin that implements `register_sink` (no s) must not be silently ignored."""
    module = types.ModuleType("typo_plugin")
    module.register_sink = hookspecs.hookimpl(lambda register: None)
    monkeypatch.setitem(sys.modules, "typo_plugin", module)

    class Dist:
        metadata = {"name": "livewatch-typo"}
        version = "0.1"
        entry_points = [importlib.metadata.EntryPoint("typo", "typo_plugin", "livewatch")]

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [Dist()])
    with pytest.raises(pluggy.PluginValidationError, match="register_sink"):
        make_plugin_manager()


def registry_with(**hooks):
    module = types.ModuleType("extra_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookspecs.hookimpl(fn))
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(module, name="extra_plugin")
    return Registry(pm)


def test_hook_register_sources():
    from livewatch.components import Source

    class A(Source):
        name = "a"

    class B(Source):
        name = "b"

    reg = registry_with(register_sources=lambda register: (register(A), register(B)))
    assert reg.get("source", "a").cls is A and reg.get("source", "b").cls is B
    assert reg.get("source", "a").plugin == "extra_plugin"


def test_hook_register_classifiers():
    from livewatch.components import Classifier

    class C(Classifier):
        name = "c"

    reg = registry_with(register_classifiers=lambda register: register(C))
    assert reg.get("classifier", "c").cls is C
    assert [e.name for e in reg.of_kind("classifier")] == ["c", "i3d", "sagemaker"]


def test_hook_register_sinks():
    class S(Sink):
        """Sends detections somewhere else."""

        name = "elsewhere"

    reg = registry_with(register_sinks=lambda register: register(S))
    assert reg.get("sink", "elsewhere").summary == "Sends detections somewhere else."


async def test_hook_register_backends(monkeypatch, tiny_i3d_dir, video_factory):
    """A backend registered through the hook runs the i3d classifier's forward passes: the
    classifier decodes and batches, the backend only predicts."""
    import numpy as np

    from livewatch.contract import Segment
    from livewatch.model.backend import Backend, BackendOptions
    from livewatch.model.i3d_classifier import I3DClassifier
    from livewatch.model.loaded_model import LoadedModel

    seen = []

    class Constant(LoadedModel):
        def __init__(self, artifact, favourite):
            self.artifact, self.load_ms, self.favourite = artifact, 0.0, favourite

        def _forward(self, batch):
            seen.append(batch.shape)
            probs = np.full((len(batch), len(self.classes)), 0.1 / (len(self.classes) - 1))
            probs[:, self.classes.index(self.favourite)] = 0.9
            return probs

    class ConstantOptions(BackendOptions):
        favourite: str = "bowling"

    class ConstantBackend(Backend):
        """Always says the same thing."""

        name = "constant"
        Options = ConstantOptions

        @classmethod
        def load(cls, artifact, options):
            return Constant(artifact, options.favourite)

    reg = registry_with(register_backends=lambda register: register(ConstantBackend))
    entry = reg.get("backend", "constant")
    assert (entry.cls, entry.plugin, entry.summary) == (ConstantBackend, "extra_plugin",
                                                        "Always says the same thing.")
    assert [e.name for e in reg.of_kind("backend")] == ["auto", "constant", "mxnet", "onnxruntime",
                                                        "openvino", "torch"]
    monkeypatch.setattr("livewatch.model.i3d_classifier.registry", lambda: reg)
    with pytest.raises(ValueError, match="backend_options for backend 'constant': colour"):
        I3DClassifier.Options(backend="constant", backend_options={"colour": "red"})

    options = I3DClassifier.Options(model=str(tiny_i3d_dir), backend="constant",
                                    backend_options={"favourite": "diving"})
    video = video_factory("segment.ts", seconds=2, fps=25, size=(320, 180))
    classifier = I3DClassifier(options)
    await classifier.start()
    try:
        detection = await classifier.classify(
            Segment(uri=str(video), stream="cam1", open=lambda: open(video, "rb")))
    finally:
        await classifier.close()
    assert (detection.label, detection.probability) == ("diving", pytest.approx(0.9))
    assert len(detection.frames) == 8  # the classifier decoded the model's window
    assert seen == [(1, 3, 8, 112, 112)]


def test_a_backend_that_cannot_run_here_says_what_to_install(monkeypatch):
    from click.testing import CliRunner

    from livewatch.cli import cli
    from livewatch.model.backend import Backend
    from livewatch.model.i3d_classifier import I3DClassifier

    class Far(Backend):
        """Runs on a runtime this machine lacks."""

        name = "far"
        modules = ("numpy", "no_such_runtime_here")
        install = "pip install far-runtime"

    reg = registry_with(register_backends=lambda register: register(Far))
    monkeypatch.setattr("livewatch.model.i3d_classifier.registry", lambda: reg)
    monkeypatch.setattr("livewatch.plugins.registry", lambda: reg)
    assert not Far.available() and reg.get("backend", "mxnet").cls.available()
    with pytest.raises(ValueError, match=r"backend 'far' needs numpy, no_such_runtime_here: "
                       r"pip install far-runtime"):
        I3DClassifier.Options(backend="far")
    out = CliRunner().invoke(cli, ["plugins"]).output
    assert re.search(r"backend    far +Runs on a runtime this machine lacks.\n.*from extra_plugin.*\n"
                     r" +not available: backend 'far' needs", out)


@pytest.fixture(scope="session")
def files_sink_site(tmp_path_factory):
    """The third-party plugin installed as a real distribution into its own site folder."""
    return install_distribution(PLUGIN_SRC, tmp_path_factory.mktemp("site"))


def with_site(site):
    return env_with_site(site)


def test_third_party_plugin_is_listed_with_its_distribution(files_sink_site):
    out = subprocess.run([LIVEWATCH, "plugins"], env=with_site(files_sink_site),
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"sink\s+files\s+Writes each detection to its own JSON file", out)
    assert "from files (livewatch-files-sink 1.2.0)" in out
    assert "from livewatch.sinks.local (livewatch (built-in))" in out


def test_hook_register_commands(files_sink_site, tmp_path):
    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "x.json").write_text("{}")
    env = with_site(files_sink_site)
    help_text = subprocess.run([LIVEWATCH, "--help"], env=env, capture_output=True, text=True).stdout
    assert "files-summary" in help_text
    out = subprocess.run([LIVEWATCH, "files-summary", str(tmp_path)], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "cam1: 1"


def test_the_hook_set_is_the_hookspecs():
    assert HOOKS == sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "livewatch_spec"))
    assert len(HOOKS) >= 5


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    text = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert re.search(rf"def test_hook_{hook}\(", text), f"hook {hook} has no test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_the_readme(hook):
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^#+ `?{hook}\(", readme, re.M), f"hook {hook} has no README heading"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_is_typed_and_documented(hook):
    import inspect

    spec = getattr(hookspecs, hook)
    signature = inspect.signature(spec)
    assert signature.parameters and all(
        p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())
    assert all(f":param {name}:" in spec.__doc__ for name in signature.parameters)


def test_trace_plugins_traces_every_hook_call(files_sink_site):
    """`livewatch --help` calls every hook once per implementing plugin; the trace shows each."""
    env = {**with_site(files_sink_site), "LIVEWATCH_TRACE_PLUGINS": "1"}
    result = subprocess.run([LIVEWATCH, "--help"], env=env, capture_output=True, text=True, check=True)
    trace = [line for line in result.stderr.splitlines() if line.startswith("livewatch plugin trace: ")]
    pm = make_plugin_manager(load_entry_points=False)
    for hook in HOOKS:
        calls = sum(line.endswith(f"  {hook} [hook]") for line in trace)
        finished = sum(f"  finish {hook} -->" in line for line in trace)
        # register_* hooks: once per built-in implementing it, plus the files plugin's
        expected = 1 if hook == "register_commands" else len(getattr(pm.hook, hook).get_hookimpls())
        expected += hook == "register_sinks"
        assert (calls, finished) == (expected, expected), hook
    assert "files-summary" in result.stdout
    quiet = subprocess.run([LIVEWATCH, "--help"], env=with_site(files_sink_site), capture_output=True,
                           text=True, check=True)
    assert "plugin trace" not in quiet.stderr


@pytest.mark.slow
def test_daemon_runs_with_a_third_party_sink(files_sink_site, tmp_path, tiny_i3d_dir):
    from livewatch.testing.media import HlsWriter

    cam = HlsWriter(tmp_path / "live" / "cam7", name="index", seconds=4.0, size=(320, 180))
    cam.write_segment()
    cam.write_segment()
    (tmp_path / "livewatch.toml").write_text(f"""
[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"

[[sources]]
type = "folder"
path = "{tmp_path / 'live'}"

[[sinks]]
type = "files"
folder = "{tmp_path / 'out'}"
""")
    result = subprocess.run([LIVEWATCH, "run", "--once"], cwd=tmp_path, env=with_site(files_sink_site),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "out" / "cam7").glob("*.json"))
    assert len(written) == 2
    import json
    uris = sorted(json.loads(p.read_text())["uri"] for p in written)
    assert uris == sorted(str(p) for p in cam.segments)
