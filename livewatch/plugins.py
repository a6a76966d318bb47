"""The plugin manager: built-ins and entry-point plugins, registered through the same hooks.

Rules:
- Third-party plugins are found through the ``livewatch`` entry-point group.
- ``LIVEWATCH_DISABLED_PLUGINS`` (comma-separated plugin names, built-ins included, e.g.
  ``livewatch.sinks.stdout``) blocks plugins; ``LIVEWATCH_TRACE_PLUGINS=1`` writes every hook call
  (its arguments and results) to stderr. Every hook is called through ``pm.hook``, so all are traced.
- Name clash: two plugins that register the same type name for the same kind of component are an
  error that names both; disable one of them to choose.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass
from functools import cache

import pluggy

from . import hookspecs
from .components import Classifier, Component, Sink, Source
from .errors import ConfigError
from .model.backend import Backend

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "livewatch"

DEFAULT_PLUGINS = (
    "livewatch.sources.folder",
    "livewatch.sources.s3_events",
    "livewatch.sources.hls",
    "livewatch.sources.rtsp",
    "livewatch.model.i3d_classifier",
    "livewatch.model.sagemaker_classifier",
    "livewatch.sinks.local",
    "livewatch.sinks.stdout",
    "livewatch.sinks.dynamodb",
    "livewatch.sinks.webhook",
    "livewatch.sinks.mqtt",
    "livewatch.sinks.sns",
    "livewatch.deploy.commands",
    "livewatch.training.commands",
    "livewatch.model.backends.mxnet",
    "livewatch.model.backends.onnxruntime",
    "livewatch.model.backends.torch_cuda",
    "livewatch.model.backends.openvino",
    "livewatch.model.backends.auto",
)

KINDS = {"source": Source, "classifier": Classifier, "sink": Sink, "backend": Backend}


@dataclass(frozen=True)
class Registered:
    kind: str
    name: str
    cls: type[Component] | type[Backend]
    plugin: str  # the plugin (module or entry point) that registered it
    distribution: str  # "livewatch (built-in)" or "package version"

    @property
    def summary(self) -> str:
        doc_lines = (self.cls.__doc__ or "").strip().splitlines()
        return self.cls.summary or (doc_lines[0] if doc_lines else "")


class Registry:
    """Every source, classifier, sink and backend class that the loaded plugins registered."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.entries: dict[tuple[str, str], Registered] = {}
        dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
        hooks = {
            "source": "register_sources",
            "classifier": "register_classifiers",
            "sink": "register_sinks",
            "backend": "register_backends",
        }
        # Each plugin's implementation is called on its own, through a subset of the hook (so
        # tracing and wrappers see the call), so the registry knows which plugin and which
        # distribution registered each class: `livewatch plugins` shows it, clashes name both.
        for kind, hook_name in hooks.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                dist = dists.get(id(impl.plugin))
                where = f"{dist.project_name} {dist.version}" if dist else "livewatch (built-in)"
                others = [p for p in pm.get_plugins() if p is not impl.plugin]
                pm.subset_hook_caller(hook_name, remove_plugins=others)(
                    register=lambda cls, k=kind, p=impl.plugin_name, w=where: self._add(k, cls, p, w)
                )

    def _add(self, kind: str, cls: type[Component] | type[Backend], plugin: str, where: str) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)) or not cls.name:
            raise ConfigError(
                f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a subclass of "
                f"{base.__module__}.{base.__name__} with a `name`"
            )
        key = (kind, cls.name)
        if key in self.entries:
            other = self.entries[key]
            raise ConfigError(
                f"two plugins register a {kind} named {cls.name!r}: {other.plugin} ({other.distribution}) "
                f"and {plugin} ({where}); disable one with LIVEWATCH_DISABLED_PLUGINS"
            )
        self.entries[key] = Registered(kind, cls.name, cls, plugin, where)

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self.entries[(kind, name)]
        except KeyError:
            known = ", ".join(sorted(n for k, n in self.entries if k == kind)) or "none"
            raise ConfigError(
                f"unknown {kind} type {name!r}; installed {kind}s: {known} "
                f"(`livewatch plugins` lists them and where they come from)"
            ) from None

    def of_kind(self, kind: str) -> list[Registered]:
        return sorted((e for e in self.entries.values() if e.kind == kind), key=lambda e: e.name)


def _disabled() -> set[str]:
    return {p.strip() for p in os.environ.get("LIVEWATCH_DISABLED_PLUGINS", "").split(",") if p.strip()}


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("livewatch")
    pm.add_hookspecs(hookspecs)
    for name in _disabled():
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if pm.is_blocked(module_name):
            continue
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()  # a misspelled hook implementation fails loudly
    if os.environ.get("LIVEWATCH_TRACE_PLUGINS"):
        # On stderr, not through logging: commands other than `run` configure no log handler.
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(
            "".join(f"livewatch plugin trace: {line}\n" for line in msg.splitlines())))
        pm.enable_tracing()
    return pm


@cache
def registry() -> Registry:
    """The process-wide registry (built once; tests build their own with `Registry(pm)`)."""
    return Registry(make_plugin_manager())


def extend_cli(cli) -> None:
    registry().pm.hook.register_commands(cli=cli)
