"""The hooks a livewatch plugin implements. Built-ins implement them exactly as third parties do.

Each ``register_*`` hook receives a `register` callback, so one plugin can register zero, one or
many classes. Core code calls every hook through ``pm.hook`` (`livewatch.plugins`), so
``LIVEWATCH_TRACE_PLUGINS=1`` traces them all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from .components import Classifier, Sink, Source
    from .model.backend import Backend

hookspec = pluggy.HookspecMarker("livewatch")
hookimpl = pluggy.HookimplMarker("livewatch")


@hookspec
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Register source classes (subclasses of `livewatch.components.Source`).

    :param register: call ``register(SourceClass)`` once per class; its ``name`` is the config type.
    """


@hookspec
def register_classifiers(register: Callable[[type[Classifier]], None]) -> None:
    """Register classifier classes (subclasses of `livewatch.components.Classifier`).

    :param register: call ``register(ClassifierClass)`` once per class.
    """


@hookspec
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Register sink classes (subclasses of `livewatch.components.Sink`).

    :param register: call ``register(SinkClass)`` once per class.
    """


@hookspec
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register inference runtimes for the ``i3d`` classifier (subclasses of
    `livewatch.model.backend.Backend`); its ``backend`` option names one.

    :param register: call ``register(BackendClass)`` once per class; its ``name`` is the option's value.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``livewatch`` command line.

    :param cli: the top-level ``click.Group``; add commands with ``@cli.command()``.
    """
