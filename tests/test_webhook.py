"""Event changes through the daemon to the `webhook` sink, against a local aiohttp receiver."""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from livewatch.components import Classifier
from livewatch.contract import Detection, WindowResult
from livewatch.daemon import Daemon
from livewatch.events import EventSettings
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalOptions, LocalSink
from livewatch.sinks.webhook import SIGNATURE_HEADER, WebhookOptions, WebhookSink, signature
from livewatch.testing import ListSource, fake_segment

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
SECRET = "s3cret"


class ScriptClassifier(Classifier):
    """A segment's bytes are its windows' labels, comma-separated: 2 s windows, probability 0.9."""

    name = "script"

    async def classify(self, segment):
        labels = segment.open().read().decode().split(",")
        return Detection.for_segment(segment, label=labels[0], probability=0.9, windows=[
            WindowResult(start=2.0 * i, end=2.0 * (i + 1), frames=[0, 1], label=label,
                         probability=0.9) for i, label in enumerate(labels)])


def segments(plan: list[str]) -> list:
    return [fake_segment(labels.encode(), uri=f"cam1/{n:05d}.ts", stream="cam1", sequence=n,
                         start=T0 + timedelta(seconds=4 * n), duration=4.0)
            for n, labels in enumerate(plan)]


PLAN = ["walk,walk", "walk,walk", "walk,walk", "run,run", "run,run", "run,run"]


class Receiver:
    """A webhook receiver on loopback: answers `statuses` in turn (then 200), records requests."""

    def __init__(self, statuses: list[int] = ()):
        self.statuses = list(statuses)
        self.requests: list[tuple[int, dict, bytes]] = []  # (status answered, headers, body)
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 200
        self.requests.append((status, dict(request.headers), body))
        return web.Response(status=status, text="ok" if status < 400 else "no")

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        await self.runner.cleanup()

    def delivered(self) -> list[dict]:
        """The changes answered 200, in order."""
        return [json.loads(body) for status, _, body in self.requests if status == 200]


async def run_daemon(tmp_path, port: int, plan: list[str], **webhook) -> WebhookSink:
    local = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    local.event_settings = EventSettings(update_seconds=3600)
    hook = WebhookSink(WebhookOptions(url=f"http://127.0.0.1:{port}/hook", secret=SECRET,
                                      retry_max_seconds=0.2, **webhook), instance="hook")
    daemon = Daemon([ListSource(segments(plan))], ScriptClassifier(), [local, hook],
                    DaemonSettings(health_listen="", shutdown_timeout=10))
    await asyncio.wait_for(daemon.run(handle_signals=False), 60)
    return hook


async def test_changes_are_signed_and_a_500_then_200_delivers_each_revision_once(tmp_path):
    receiver = Receiver([500])
    await receiver.start()
    try:
        await run_daemon(tmp_path, receiver.port, PLAN)
    finally:
        await receiver.stop()
    assert receiver.requests[0][0] == 500
    for _, headers, body in receiver.requests:
        assert headers[SIGNATURE_HEADER] == signature(SECRET, body)
        change = json.loads(body)
        assert headers["Idempotency-Key"] == f"{change['id']}:{change['revision']}"
    keys = [f"{c['id']}:{c['revision']}" for c in receiver.delivered()]
    assert len(keys) == len(set(keys))  # once per revision, the 500 retried
    last = {}
    for change in receiver.delivered():
        assert change["revision"] > last.get(change["id"], {"revision": -1})["revision"]
        last[change["id"]] = change
    final = sorted((c["event"]["label"], c["event"]["state"], c["revision"], c["event"]["start"],
                    c["event"]["end"]) for c in last.values())  # the last revision of each
    assert final == [("run", "open", 12, "2026-11-28T12:00:12.000Z", "2026-11-28T12:00:24.000Z"),
                     ("walk", "closed", 13, "2026-11-28T12:00:00.000Z", "2026-11-28T12:00:12.000Z")]
    assert receiver.delivered()[0]["type"] in ("opened", "closed")


async def test_a_400_is_logged_and_not_retried(tmp_path, caplog):
    receiver = Receiver([400] * 100)
    await receiver.start()
    try:
        with caplog.at_level(logging.ERROR, logger="livewatch.sinks.webhook"):
            await run_daemon(tmp_path, receiver.port, PLAN[:3])
    finally:
        await receiver.stop()
    keys = [h["Idempotency-Key"] for _, h, _ in receiver.requests]
    assert keys and len(keys) == len(set(keys))
    assert "refused" in caplog.text and "HTTP 400" in caplog.text


async def test_changes_a_down_receiver_missed_are_delivered_after_a_restart(tmp_path):
    receiver = Receiver()
    await receiver.start()
    port = receiver.port
    await receiver.stop()  # down while the daemon runs: nothing gets through
    await run_daemon(tmp_path, port, PLAN, retries=1)
    receiver = Receiver()
    await receiver.start(port)
    try:
        await run_daemon(tmp_path, port, [])  # a restart with nothing new: re-derived, sent
    finally:
        await receiver.stop()
    got = sorted((c["event"]["label"], c["type"], c["revision"]) for c in receiver.delivered())
    assert got == [("run", "opened", 12), ("walk", "closed", 13)]


def test_filters_choose_labels_streams_probability_and_change_types():
    from livewatch.notify import EventChange

    hook = WebhookSink(WebhookOptions(url="http://127.0.0.1:9/x", labels=["run"], streams=["cam1"],
                                      min_probability=0.8, changes=["opened", "closed"]))
    event = {"id": "e", "revision": 2, "label": "run", "stream": "cam1", "peak_probability": 0.9}
    assert hook.wants(EventChange("opened", event))
    assert not hook.wants(EventChange("updated", event))
    assert not hook.wants(EventChange("opened", {**event, "label": "walk"}))
    assert not hook.wants(EventChange("opened", {**event, "stream": "cam2"}))
    assert not hook.wants(EventChange("opened", {**event, "peak_probability": 0.5}))


async def test_detections_true_posts_detections_too_with_their_own_key(tmp_path):
    receiver = Receiver()
    await receiver.start()
    try:
        await run_daemon(tmp_path, receiver.port, PLAN[:2], detections=True, changes=["closed"])
    finally:
        await receiver.stop()
    posted = [json.loads(body) for _, _, body in receiver.requests]
    assert [p["detection"]["uri"] for p in posted if p["type"] == "detection"] == [
        "cam1/00000.ts", "cam1/00001.ts"]
    assert {h["Idempotency-Key"] for _, h, b in receiver.requests
            if json.loads(b)["type"] == "detection"} == {"detection:cam1/00000.ts",
                                                         "detection:cam1/00001.ts"}
    assert not [p for p in posted if p["type"] == "opened"]  # the changes filter


async def test_a_receiver_that_was_down_gets_every_change_once_it_is_back(tmp_path):
    receiver = Receiver()
    await receiver.start()
    port = receiver.port
    await receiver.stop()  # down while the segments are classified
    local = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    local.event_settings = EventSettings(update_seconds=3600)
    hook = WebhookSink(WebhookOptions(url=f"http://127.0.0.1:{port}/hook", retries=0), instance="hook")
    source = ListSource(segments(PLAN), hold_open=True)
    daemon = Daemon([source], ScriptClassifier(), [local, hook], DaemonSettings(health_listen=""))
    running = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await asyncio.wait_for(source.exhausted.wait(), 30)
        deadline = asyncio.get_running_loop().time() + 30
        while len(source.acked) < len(PLAN):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        receiver = Receiver()
        await receiver.start(port)  # back: the notifier's next try delivers what waited
        while {(c["event"]["label"], c["type"]) for c in receiver.delivered()} != {
                ("walk", "closed"), ("run", "opened")}:
            assert asyncio.get_running_loop().time() < deadline, receiver.delivered()
            await asyncio.sleep(0.02)
    finally:
        daemon.stop()
        await running
        await receiver.stop()
    assert [c["revision"] for c in receiver.delivered()] == [13, 12]  # each once
