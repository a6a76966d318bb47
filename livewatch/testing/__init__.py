"""Helpers and pytest fixtures for livewatch and its plugin authors.

Installed as a pytest plugin (entry point ``pytest11``), so a plugin package's tests can use the
fixtures below without copying them: generated HLS streams and videos (`media`), small exported
I3D models (`models`), a local AWS emulator server (`aws`), dynalite, a second DynamoDB
(`dynalite`), and SageMaker's MXNet serving stack behind a local InvokeEndpoint (`serving`).
"""
