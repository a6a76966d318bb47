"""What the command line asks of components, looked up in the registry instead of named.

``run --folder`` needs a source that can read a local folder (`Source.for_path`), ``run --once``
sources that can stop when what exists now is done (`Source.one_shot`), and ``detections`` a
sink that can read back what it stored (`Sink.queryable`, `Sink.query`, and `Sink.for_path` for
``--db``). A third-party source or sink that offers the same serves these commands too, and
disabling a built-in (``LIVEWATCH_DISABLED_PLUGINS``) leaves a clear error when nothing else does.

When several installed components offer a capability, the configured one wins; if none is
configured and more than one is installed, that is an error naming them (disable one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .components import Sink, Source
from .errors import ConfigError
from .plugins import Registered, Registry
from .settings import ComponentConfig
from .wiring import build_component


def offers(cls: type, base: type, method: str) -> bool:
    """Whether `cls` overrides `base`'s `method` (a capability it declares)."""
    def function(owner: type):
        attr = getattr(owner, method)
        return getattr(attr, "__func__", attr)  # a classmethod, or a staticmethod's function

    return function(cls) is not function(base)


def _pick(registry: Registry, kind: str, what: str, fits: Callable[[type], bool],
          configured: list[ComponentConfig]) -> Registered:
    candidates = [e for e in registry.of_kind(kind) if fits(e.cls)]
    if not candidates:
        installed = ", ".join(e.name for e in registry.of_kind(kind)) or "none"
        raise ConfigError(f"no installed {kind} can {what} (installed {kind}s: {installed}; "
                          "`livewatch plugins` lists them, LIVEWATCH_DISABLED_PLUGINS may hide one)")
    chosen = [e for e in candidates if e.name in {c.type for c in configured}] or candidates
    if len(chosen) > 1:
        names = ", ".join(f"{e.name} ({e.plugin}, {e.distribution})" for e in chosen)
        raise ConfigError(f"several {kind}s can {what}: {names}; configure one, or disable the "
                          "others with LIVEWATCH_DISABLED_PLUGINS")
    return chosen[0]


def folder_source(registry: Registry, path: Path, configured: list[ComponentConfig]) -> ComponentConfig:
    """The config section of a source that reads the local folder `path` (``run --folder``)."""
    entry = _pick(registry, "source", "read a local folder (--folder)",
                  lambda cls: offers(cls, Source, "for_path"), configured)
    options = entry.cls.for_path(path)
    return ComponentConfig(type=entry.name, **options.model_dump(exclude_defaults=True))


def one_shot(sources: list[Source]) -> list[Source]:
    """The same sources, each made to finish once what exists now is delivered (``run --once``)."""
    out = []
    for source in sources:
        options = type(source).one_shot(source.options)
        if options is None:
            raise ConfigError(f"--once: source {source.instance!r} (type {source.name!r}) cannot "
                              "stop when what exists now is done; use --folder, or a config "
                              "without it")
        out.append(type(source)(options, instance=source.instance))
    return out


def detection_store(registry: Registry, configured: list[ComponentConfig], db: Path | None) -> Sink:
    """A sink that can read back stored detections (``livewatch detections``): one for the file
    `db` when given, else the first configured queryable sink (built from its validated
    section), else an installed queryable sink with its default options. Not started."""
    if db is not None:
        entry = _pick(registry, "sink", "read stored detections from a file (--db)",
                      lambda cls: cls.queryable and offers(cls, Sink, "for_path"), configured)
        return entry.cls(entry.cls.for_path(db), instance=entry.name)
    for i, config in enumerate(configured):
        if registry.get("sink", config.type).cls.queryable:
            return build_component("sink", config, f"sinks.{i}", registry=registry)
    entry = _pick(registry, "sink", "read back stored detections",
                  lambda cls: cls.queryable and _has_defaults(cls), [])
    try:
        return entry.cls(entry.cls.Options(), instance=entry.name)
    except ValueError as exc:
        raise ConfigError(f"sink {entry.name!r} needs options to read detections: configure it "
                          f"in [[sinks]] ({exc})") from None


def _has_defaults(cls: type) -> bool:
    """Whether `cls` can be built with its default options (a remote table's sink cannot)."""
    try:
        cls.Options()
    except ValueError:
        return False
    return True


def table_store(registry: Registry, table: str, configured: list[ComponentConfig]) -> Sink:
    """A sink that reads back the remote results table `table` (``ui --dynamodb``), with the
    configured section's options (region, endpoint) where one of its type is configured."""
    entry = _pick(registry, "sink", "read a results table (--dynamodb)",
                  lambda cls: cls.queryable and offers(cls, Sink, "for_table"), configured)
    options = entry.cls.for_table(table)
    for config in configured:
        if config.type == entry.name:
            options = entry.cls.Options(**{**config.options, "table": table})
    return entry.cls(options, instance=entry.name)


def media_roots(settings) -> list[Path]:
    """The folders the configured sources' segment files lie in (``livewatch ui``), built from
    their validated sections (not started)."""
    roots = []
    for i, config in enumerate(settings.sources):
        try:
            source = build_component("source", config, f"sources.{i}")
        except (ConfigError, ValueError):
            continue  # a source that cannot be built here plays nothing
        if (root := source.media_root()) is not None:
            roots.append(root)
    return roots
