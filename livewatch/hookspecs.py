"""The hooks a livewatch plugin implements. Built-ins implement them exactly as third parties do.

Each hook receives a `register` callback, so one plugin can register zero, one or many classes.
"""
import pluggy

hookspec = pluggy.HookspecMarker("livewatch")
hookimpl = pluggy.HookimplMarker("livewatch")


@hookspec
def register_sources(register):
    """Register source classes (subclasses of `livewatch.components.Source`).

    :param register: call ``register(SourceClass)`` once per class; its ``name`` is the config type.
    """


@hookspec
def register_classifiers(register):
    """Register classifier classes (subclasses of `livewatch.components.Classifier`).

    :param register: call ``register(ClassifierClass)`` once per class.
    """


@hookspec
def register_sinks(register):
    """Register sink classes (subclasses of `livewatch.components.Sink`).

    :param register: call ``register(SinkClass)`` once per class.
    """


@hookspec
def register_backends(register):
    """Register inference runtimes for the ``i3d`` classifier (subclasses of
    `livewatch.model.backend.Backend`); its ``backend`` option names one.

    :param register: call ``register(BackendClass)`` once per class; its ``name`` is the option's value.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``livewatch`` command line.

    :param cli: the top-level ``click.Group``; add commands with ``@cli.command()``.
    """
