"""Event changes through the daemon to the `mqtt` sink, against a real mosquitto broker."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import aiomqtt
import pytest

from livewatch.daemon import Daemon
from livewatch.events import EventSettings
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalOptions, LocalSink
from livewatch.sinks.mqtt import MqttOptions, MqttSink
from livewatch.testing import ListSource
from livewatch.testing.mosquitto import Mosquitto
from test_webhook import PLAN, ScriptClassifier, segments


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path) as broker:
        yield broker


class Subscriber:
    """Collects every message under livewatch/# (retained ones included) in a task it owns."""

    def __init__(self, port: int):
        self.port, self.messages = port, []
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe("livewatch/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                self.messages.append((message.topic.value, message.payload.decode(), message.retain))

    async def __aenter__(self) -> "Subscriber":
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self.task

    def events(self) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.messages if t == "livewatch/events"]

    async def wait_for(self, check, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, self.messages
            await asyncio.sleep(0.02)


class GatedClassifier(ScriptClassifier):
    """Holds segment `at` until `gate` is set."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.gate = at, asyncio.Event()

    async def classify(self, segment):
        if segment.sequence == self.at:
            await self.gate.wait()
        return await super().classify(segment)


def daemon(tmp_path, port: int, classifier=None) -> Daemon:
    local = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    local.event_settings = EventSettings(update_seconds=3600)
    mqtt = MqttSink(MqttOptions(port=port, retries=20), instance="mqtt")
    return Daemon([ListSource(segments(PLAN))], classifier or ScriptClassifier(), [local, mqtt],
                  DaemonSettings(health_listen="", shutdown_timeout=10))


async def test_subscribers_see_new_and_end_in_order_and_the_retained_state(tmp_path, broker):
    async with Subscriber(broker.port) as sub:
        await asyncio.wait_for(daemon(tmp_path, broker.port).run(handle_signals=False), 60)
        await sub.wait_for(lambda: ("livewatch/available", "offline", False) in sub.messages)
    by_id: dict[str, list[dict]] = {}
    for change in sub.events():
        by_id.setdefault(change["after"]["id"], []).append(change)
    walk, run = sorted(by_id.values(), key=lambda cs: cs[0]["after"]["start"])
    assert [c["type"] for c in walk][-1] == "end" and walk[-1]["after"]["label"] == "walk"
    assert [c["type"] for c in run][0] == "new" and run[-1]["after"]["revision"] == 12
    for changes in by_id.values():  # revisions grow; before is what was published last
        assert [c["after"]["revision"] for c in changes] == sorted({c["after"]["revision"] for c in changes})
        assert all(b["before"] == a["after"] for a, b in zip(changes, changes[1:]))
    async with Subscriber(broker.port) as late:  # a later subscriber gets the retained state
        await late.wait_for(lambda: {t for t, _, r in late.messages if r} >= {
            "livewatch/cam1/activity", "livewatch/available"})
    retained = {t: p for t, p, r in late.messages if r}
    assert json.loads(retained["livewatch/cam1/activity"])["label"] == "run"
    assert retained["livewatch/available"] == "offline"


async def test_a_broker_restart_mid_stream_loses_no_change(tmp_path, broker):
    classifier = GatedClassifier(at=4)
    async with Subscriber(broker.port) as sub:
        running = asyncio.create_task(daemon(tmp_path, broker.port, classifier).run(handle_signals=False))
        await sub.wait_for(lambda: any(c["after"]["label"] == "run" for c in sub.events()))
    broker.restart()  # the daemon's connection drops; segment 4 is still being classified
    async with Subscriber(broker.port) as sub:
        classifier.gate.set()
        await asyncio.wait_for(running, 60)
        await sub.wait_for(lambda: any(c["after"]["label"] == "run" and c["after"]["revision"] == 12
                                       for c in sub.events()))


async def test_the_last_will_says_offline_when_the_daemon_is_killed(tmp_path, broker):
    script = ("import asyncio, sys\n"
              "from livewatch.sinks.mqtt import MqttOptions, MqttSink\n"
              "async def main():\n"
              f"    await MqttSink(MqttOptions(port={broker.port})).start()\n"
              "    print('ready', flush=True)\n"
              "    await asyncio.Event().wait()\n"
              "asyncio.run(main())\n")
    async with Subscriber(broker.port) as sub:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30) == "ready\n"
            await sub.wait_for(lambda: ("livewatch/available", "online", False) in sub.messages)
            os.kill(process.pid, signal.SIGKILL)
            await sub.wait_for(lambda: sub.messages[-1][:2] == ("livewatch/available", "offline"))
        finally:
            process.kill()
            process.wait()
