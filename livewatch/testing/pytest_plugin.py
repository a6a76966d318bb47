"""The ``livewatch`` pytest plugin (entry point ``pytest11``), loaded wherever livewatch is
installed: light fixtures only. The server fixtures are opt-in: ``-p livewatch.testing.servers``."""

pytest_plugins = [
    "livewatch.testing.doubles",
    "livewatch.testing.media",
    "livewatch.testing.models",
]
