"""From validated settings to component instances: each section's options are checked by its
plugin's own pydantic model, so every config error surfaces before the daemon starts."""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from .components import Classifier, Component, Sink, Source
from .errors import ConfigError
from .plugins import Registry, registry as default_registry
from .settings import ComponentConfig, Settings, describe_validation_error


@dataclass
class Components:
    sources: list[Source]
    classifier: Classifier
    sinks: list[Sink]


def build_component(kind: str, config: ComponentConfig, where: str, instance: str | None = None,
                    registry: Registry | None = None) -> Component:
    """One plugin instance from its config section; ConfigError names the bad fields."""
    registry = registry or default_registry()
    try:
        cls = registry.get(kind, config.type).cls
    except ConfigError as exc:
        raise ConfigError(f"  {where}.type: {exc}") from None
    try:
        options = cls.Options.model_validate(config.options)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, prefix=where).split("\n", 1)[1]) from None
    return cls(options, instance=instance or config.name or config.type)


def build(settings: Settings, registry: Registry | None = None) -> Components:
    """Every component the settings name; all config problems are reported together."""
    problems: list[str] = []

    def make(kind: str, config: ComponentConfig, where: str, instance: str) -> Component | None:
        try:
            return build_component(kind, config, where, instance, registry)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
            return None

    if not settings.sources:
        problems.append("  sources: at least one source is needed (e.g. [[sources]] type = \"folder\")")
    if not settings.sinks:
        problems.append("  sinks: at least one sink is needed (e.g. [[sinks]] type = \"local\")")
    source_names = [c.name or _default_name(c, settings.sources, i) for i, c in enumerate(settings.sources)]
    sink_names = [c.name or _default_name(c, settings.sinks, i) for i, c in enumerate(settings.sinks)]
    sources = [make("source", c, f"sources.{i}", source_names[i]) for i, c in enumerate(settings.sources)]
    classifier = make("classifier", settings.classifier, "classifier",
                      settings.classifier.name or settings.classifier.type)
    sinks = [make("sink", c, f"sinks.{i}", sink_names[i]) for i, c in enumerate(settings.sinks)]
    for kind, names in (("source", source_names), ("sink", sink_names)):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"  {kind}s: instance names must be unique, repeated: {', '.join(dupes)}")
    if problems:
        raise ConfigError("\n".join(["invalid configuration:", *problems]))
    for component in [*sources, classifier, *sinks]:  # e.g. the local store keeps events
        component.event_settings = settings.events
    return Components(sources=sources, classifier=classifier, sinks=sinks)  # type: ignore[arg-type]


def _default_name(config: ComponentConfig, configs: list[ComponentConfig], index: int) -> str:
    """`folder` when there is one folder source, `folder-1`, `folder-2`... when there are several."""
    same = [c for c in configs if c.type == config.type and not c.name]
    if len(same) == 1:
        return config.type
    return f"{config.type}-{same.index(config) + 1}"
