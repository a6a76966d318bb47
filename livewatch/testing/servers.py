"""Opt-in pytest plugin with the server fixtures (``pytest -p livewatch.testing.servers``): moto
(`aws`), dynalite (`dynalite`) and SageMaker's serving stack (`serving`). Each starts a process,
so they are not loaded into every pytest run where livewatch is installed."""

pytest_plugins = [
    "livewatch.testing.aws",
    "livewatch.testing.dynalite",
    "livewatch.testing.serving",
]
