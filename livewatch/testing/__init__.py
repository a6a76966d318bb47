"""Helpers and pytest fixtures for livewatch and its plugin authors.

Light, loaded wherever livewatch is installed (the ``livewatch`` pytest plugin, entry point
``pytest11``): test doubles (`doubles`: `ListSource`, `RecordingSink`, `fake_segment`), generated
HLS streams and videos (`media`) and small exported I3D models (`models`).

Heavy, opt-in (``pytest -p livewatch.testing.servers``, or ``-p livewatch.testing.aws`` for moto
alone): a local AWS emulator server (`aws`), dynalite, a second DynamoDB (`dynalite`), and
SageMaker's MXNet serving stack behind a local InvokeEndpoint (`serving`). ``-p
livewatch.testing.strict`` makes a run fail when a test was skipped in CI (`strict`); its
``require(missing, install)`` is how a server fixture says what is missing.

HTTP fronts over an emulator that stage what it never does, over real HTTP (imported
explicitly): DynamoDB's UnprocessedItems (`front.AwsFront`), CloudFormation's slow stack
statuses and events (`cloudformation.CloudFormationFront`), a slow SageMaker endpoint
(`serving.EndpointFront.slow`); the threaded server and pass-through they share: `http_front`.
"""
__all__ = ["ListSource", "RecordingSink", "fake_segment"]


def __getattr__(name: str):
    """The doubles, imported on first use: importing them here, before pytest loads them as a
    plugin (`pytest_plugin`), would keep pytest from rewriting their asserts."""
    if name in __all__:
        from . import doubles

        return getattr(doubles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
