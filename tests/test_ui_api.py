"""The web UI's JSON API, its live event stream, its token rules and its file routes, over a
real local store through the aiohttp test client (the page itself: tests/test_ui_browser.py)."""
import asyncio
import json
from types import SimpleNamespace
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from livewatch.contract import Detection, Label, WindowResult
from livewatch.daemon import Daemon
from livewatch.errors import ConfigError
from livewatch.settings import DaemonSettings, UiSettings
from livewatch.sinks.local import LocalOptions, LocalSink, LocalStore
from livewatch.testing.doubles import ListSource
from livewatch.ui import app as ui_app
from livewatch.ui import check_exposure, create_app, mount
from livewatch.ui.security import safe_path

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def detection(n: int, stream: str = "cam", error: str | None = None, label: str = "walk") -> Detection:
    start = NOW - timedelta(minutes=10) + timedelta(seconds=4 * n)
    windows = [] if error else [
        WindowResult(start=0, end=2, frames=[0, 49], label=label, probability=0.7),
        WindowResult(start=2, end=4, frames=[50, 99], label="run", probability=0.6)]
    return Detection(uri=f"/live/{stream}/seg{n}.ts", stream=stream, sequence=n, start=start,
                     duration=4, label=None if error else label, probability=None if error else 0.65,
                     top_k=[] if error else [Label(label=label, probability=0.65)], error=error,
                     windows=windows)


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "detections.db"
    store = LocalStore(path)
    for n in range(3):
        store.write(detection(n))
    store.write(detection(3, error="cannot decode: no video stream"))
    store.write(detection(0, stream="door", label="open"))
    store.write(detection(1, stream="door", error="segment truncated"))
    store.close()
    return path


async def client_for(store_path, token=None, status=None) -> TestClient:
    root = web.Application()
    mount(root, create_app(LocalSink(LocalOptions(path=store_path)), token, status))
    client = TestClient(TestServer(root, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_api_lists_streams_detections_windows_and_errors(store_path):
    client = await client_for(store_path)
    try:
        streams = (await (await client.get("/ui/api/streams")).json())["streams"]
        assert [s["stream"] for s in streams] == ["cam", "door"]
        cam = streams[0]
        assert cam["counts"] == {"detections": 4, "classified": 3, "errors": 1}
        assert cam["health"] == "error" and cam["error"].startswith("cannot decode")

        got = (await (await client.get("/ui/api/detections", params={"stream": "cam"})).json())
        assert [d["sequence"] for d in got["detections"]] == [0, 1, 2, 3]  # oldest first
        since = (NOW - timedelta(minutes=10) + timedelta(seconds=6)).isoformat()
        got = await (await client.get("/ui/api/detections",
                                      params={"stream": "cam", "since": since, "limit": "1"})).json()
        assert [d["sequence"] for d in got["detections"]] == [3]  # the newest one

        rows = (await (await client.get("/ui/api/windows", params={"stream": "cam"})).json())["windows"]
        assert [(r["sequence"], r["n"], r["label"]) for r in rows] == [
            (0, 0, "walk"), (0, 1, "run"), (1, 0, "walk"), (1, 1, "run"), (2, 0, "walk"), (2, 1, "run")]
        assert rows[1]["start"] < rows[2]["start"]

        errors = (await (await client.get("/ui/api/errors", params={"stream": "door"})).json())["errors"]
        assert [e["error"] for e in errors] == ["segment truncated"]
        assert len((await (await client.get("/ui/api/errors")).json())["errors"]) == 2

        bad = await client.get("/ui/api/detections", params={"since": "yesterday"})
        assert bad.status == 400
    finally:
        await client.close()


async def test_page_is_served_with_a_policy_that_forbids_inline_script(store_path):
    client = await client_for(store_path)
    try:
        page = await client.get("/", allow_redirects=True)
        assert page.status == 200 and str(page.url).endswith("/ui/")
        assert '<script src="static/app.js"' in await page.text()
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert (await client.get("/ui/static/app.js")).status == 200
    finally:
        await client.close()


def test_page_script_inserts_text_only():
    """Labels, stream names and errors are inserted as text: no API that parses markup."""
    script = (ui_app.STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


async def test_a_new_detection_arrives_on_the_event_stream(store_path):
    client = await client_for(store_path)
    try:
        response = await client.get("/ui/api/live")
        assert response.headers["Content-Type"] == "text/event-stream"
        assert (await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)).startswith(b"retry:")
        store = LocalStore(store_path)
        await asyncio.to_thread(store.write, detection(9, label="jump"))
        store.close()
        event = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        name, data = event.decode().strip().split("\n", 1)
        assert name == "event: detection"
        got = json.loads(data.removeprefix("data: "))
        assert (got["uri"], got["label"]) == ("/live/cam/seg9.ts", "jump")
        response.close()
    finally:
        await client.close()


async def test_event_streams_end_when_the_server_shuts_down(store_path):
    client = await client_for(store_path)
    response = await client.get("/ui/api/live")
    await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
    await asyncio.wait_for(client.close(), 5)  # not the 60 s aiohttp waits for open handlers


async def test_a_token_is_required_when_set(store_path):
    client = await client_for(store_path, token="s3cret")
    try:
        for path in ("/ui/", "/ui/api/streams", "/ui/api/live", "/ui/static/app.js"):
            assert (await client.get(path)).status == 401, path
        assert (await client.get("/ui/api/streams", params={"token": "wrong"})).status == 401
        wrong = await client.get("/ui/api/streams", headers={"Authorization": "Bearer s3cre"})
        assert wrong.status == 401
        ok = await client.get("/ui/api/streams", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        page = await client.get("/ui/", params={"token": "s3cret"})
        assert page.status == 200 and "HttpOnly" in page.headers["Set-Cookie"]
        assert (await client.get("/ui/api/streams")).status == 200  # the cookie now
    finally:
        await client.close()


def test_non_loopback_addresses_need_a_token():
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_exposure(host, None)
    for host in ("0.0.0.0", "", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError, match="without a token"):
            check_exposure(host, None)
        check_exposure(host, "s3cret")


async def test_the_daemon_refuses_a_public_ui_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVEWATCH_UI_TOKEN", raising=False)
    sink = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    daemon = Daemon([ListSource([])], SimpleNamespace(), [sink], DaemonSettings(health_listen="0.0.0.0:0"),
                    ui=UiSettings())
    with pytest.raises(ConfigError, match="LIVEWATCH_UI_TOKEN"):
        await daemon.run(handle_signals=False)
    assert daemon.health is None  # nothing was bound
    monkeypatch.setenv("LIVEWATCH_UI_TOKEN", "s3cret")
    assert daemon._ui_app() is not None
    assert Daemon([], SimpleNamespace(), [sink], DaemonSettings(health_listen="0.0.0.0:0"),
                  ui=UiSettings(enabled=False))._ui_app() is None


async def test_file_routes_refuse_traversal_absolute_paths_and_symlinks_out(store_path, tmp_path,
                                                                          monkeypatch):
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<p>page</p>")
    (static / "app.css").write_text("body {}")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (static / "leak.txt").symlink_to(secret)
    (static / "inside.css").symlink_to(static / "app.css")  # a link that stays inside is fine
    monkeypatch.setattr(ui_app, "STATIC", static)
    client = await client_for(store_path)
    try:
        assert await (await client.get("/ui/static/app.css")).text() == "body {}"
        assert (await client.get("/ui/static/inside.css")).status == 200
        for path in ("/ui/static/..%2Fsecret.txt", "/ui/static/%2E%2E/secret.txt",
                     "/ui/static/sub/..%2F..%2Fsecret.txt", f"/ui/static/%2F{str(secret)[1:]}",
                     "/ui/static/leak.txt", "/ui/static/..%5Csecret.txt"):
            response = await client.get(path)
            assert response.status in (403, 404), path
            assert "secret" not in await response.text(), path
        assert (await client.get("/ui/static/missing.css")).status == 404
    finally:
        await client.close()
    with pytest.raises(web.HTTPForbidden):
        safe_path(static, "../secret.txt")
    with pytest.raises(web.HTTPForbidden):
        safe_path(static, str(secret))
    with pytest.raises(web.HTTPForbidden):
        safe_path(static, "leak.txt")


async def test_thumbnails_are_served_by_key_from_the_store_only(tmp_path):
    path = tmp_path / "detections.db"
    d = detection(5)
    d.windows[1].thumbnail = b"\xff\xd8 a jpeg"
    window = json.loads(d.model_dump_json())["windows"][1]  # the bytes never enter its JSON
    assert "thumbnail" not in window and window["thumbnail_uri"] is None
    store = LocalStore(path)
    store.write(d)
    store.close()
    client = await client_for(path)
    try:
        got = await client.get("/ui/api/thumbnail", params={"uri": d.uri, "n": "1"})
        assert got.status == 200 and got.content_type == "image/jpeg"
        assert await got.read() == b"\xff\xd8 a jpeg"
        for params in ({"uri": d.uri, "n": "0"}, {"uri": "/live/cam/../cam/seg5.ts", "n": "1"},
                       {"uri": str(path), "n": "1"}, {"uri": "/etc/passwd", "n": "0"}):
            assert (await client.get("/ui/api/thumbnail", params=params)).status == 404, params
        assert (await client.get("/ui/api/thumbnail", params={"uri": d.uri, "n": "-1"})).status == 400
        assert (await client.get("/ui/api/thumbnail", params={"uri": d.uri})).status == 400
    finally:
        await client.close()
    store = LocalStore(path)  # a redelivery without thumbnails leaves none behind
    store.write(detection(5))
    assert store.thumbnail(d.uri, 1) is None
    store.close()


async def test_a_stored_segment_plays_as_mp4_and_nothing_else_is_served(tmp_path, video_factory):
    import av

    from livewatch.ui.app import MEDIA

    live = tmp_path / "live"
    (live / "cam").mkdir(parents=True)
    clip = video_factory("clip.ts", seconds=2.0, size=(160, 96))
    good = live / "cam" / "seg0.ts"
    good.write_bytes(clip.read_bytes())
    outside = tmp_path / "outside.ts"
    outside.write_bytes(clip.read_bytes())
    (live / "cam" / "link.ts").symlink_to(outside)
    unlisted = live / "cam" / "unlisted.ts"
    unlisted.write_bytes(clip.read_bytes())
    uris = {"good": str(good), "link": str(live / "cam" / "link.ts"), "outside": str(outside),
            "dotdot": str(live / "cam" / ".." / ".." / "outside.ts"), "s3": "s3://bucket/cam/seg0.ts"}
    path = tmp_path / "detections.db"
    store = LocalStore(path)
    for n, uri in enumerate(uris.values()):
        store.write(detection(n).model_copy(update={"uri": uri}))
    store.close()
    root = web.Application()
    ui = create_app(LocalSink(LocalOptions(path=path)), media=[live])
    mount(root, ui)
    client = TestClient(TestServer(root, host="127.0.0.1"))
    await client.start_server()
    try:
        got = await client.get("/ui/api/segment", params={"stream": "cam", "uri": uris["good"]})
        assert got.status == 200 and got.content_type == "video/mp4"
        mp4 = tmp_path / "got.mp4"
        mp4.write_bytes(await got.read())
        with av.open(str(mp4)) as played, av.open(str(clip)) as original:
            assert played.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in played.decode(video=0)) == sum(1 for _ in original.decode(video=0))
        # In byte ranges too: a browser seeks only in a resource it can fetch in ranges.
        whole = mp4.read_bytes()
        assert got.headers["Accept-Ranges"] == "bytes"
        for asked, first, last in (("bytes=0-99", 0, 99), ("bytes=100-", 100, len(whole) - 1),
                                   ("bytes=-10", len(whole) - 10, len(whole) - 1)):
            ranged = await client.get("/ui/api/segment", params={"stream": "cam", "uri": uris["good"]},
                                      headers={"Range": asked})
            assert ranged.status == 206 and await ranged.read() == whole[first:last + 1], asked
            assert ranged.headers["Content-Range"] == f"bytes {first}-{last}/{len(whole)}"
        beyond = await client.get("/ui/api/segment", params={"stream": "cam", "uri": uris["good"]},
                                  headers={"Range": f"bytes={len(whole)}-"})
        assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"
        refused = {"link": 403, "outside": 403, "dotdot": 403, "s3": 404}
        for name, status in refused.items():  # all stored: refused for where they lead
            response = await client.get("/ui/api/segment", params={"stream": "cam", "uri": uris[name]})
            assert response.status == status, name
        not_stored = await client.get("/ui/api/segment", params={"stream": "cam", "uri": str(unlisted)})
        assert not_stored.status == 404  # inside the folder, but the store does not know it
        other_stream = await client.get("/ui/api/segment", params={"stream": "door", "uri": uris["good"]})
        assert other_stream.status == 404
        assert ui[MEDIA] == [live]
    finally:
        await client.close()
    no_media = await client_for(path)  # no folder given: nothing plays
    try:
        response = await no_media.get("/ui/api/segment", params={"stream": "cam", "uri": uris["good"]})
        assert response.status == 404
    finally:
        await no_media.close()


async def test_events_come_from_a_sink_that_keeps_them(store_path):
    class WithEvents(LocalSink):
        async def query_events(self, query):
            event = {"id": "e1", "stream": "cam", "label": "walk", "state": "open"}
            return [event] if query.stream in (None, "cam") else []

    root = web.Application()
    mount(root, create_app(WithEvents(LocalOptions(path=store_path))))
    client = TestClient(TestServer(root, host="127.0.0.1"))
    await client.start_server()
    try:
        got = await (await client.get("/ui/api/events", params={"stream": "cam"})).json()
        assert [e["id"] for e in got["events"]] == ["e1"]
        assert (await (await client.get("/ui/api/events", params={"stream": "door"})).json()) == {"events": []}
    finally:
        await client.close()
    client = await client_for(store_path)  # the local store keeps the events its windows make
    try:
        events = (await (await client.get("/ui/api/events")).json())["events"]
        assert events and {e["stream"] for e in events} == {"cam", "door"}
        assert [e["start"] for e in events] == sorted(e["start"] for e in events)
        door = (await (await client.get("/ui/api/events", params={"stream": "door"})).json())["events"]
        assert [(e["stream"], e["label"]) for e in door] == [("door", "open"), ("door", "run")]
    finally:
        await client.close()
