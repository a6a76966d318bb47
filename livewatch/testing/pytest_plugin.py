"""The ``livewatch`` pytest plugin: fixtures for livewatch's own tests and for plugin authors."""

pytest_plugins = [
    "livewatch.testing.media",
    "livewatch.testing.models",
    "livewatch.testing.aws",
    "livewatch.testing.dynalite",
    "livewatch.testing.serving",
]
